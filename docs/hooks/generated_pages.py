"""mkdocs hook: adds the pages generated from the code, the CLI reference and the benchmark results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    """Generate `cli.md` from the Typer app and `benchmarks.md` from benchmarks/README.md at build time."""
    from miroenv.cli.reference import cli_reference_markdown

    benchmarks = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "cli.md", content=cli_reference_markdown()))
    files.append(File.generated(config, "benchmarks.md", content=benchmarks))
    return files
