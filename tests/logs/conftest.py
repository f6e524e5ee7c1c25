"""Fixtures for the log importer tests: the real MiroRL rollouts, imported once per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miroenv.logs import ImportSummary, import_mirorl


@pytest.fixture(scope="session")
def rollouts_path(shared_data: Path) -> Path:
    """The 128 real MiroRL rollouts (read in place, never copied)."""
    return shared_data / "mirorl_rollouts" / "testData.jsonl"


@pytest.fixture(scope="session")
def rollouts(rollouts_path: Path) -> list[dict[str, Any]]:
    """The rollouts as dicts, in file order."""
    return [
        json.loads(line) for line in rollouts_path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


@pytest.fixture(scope="session")
def mirorl_import(
    rollouts_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ImportSummary]:
    """All rollouts imported once: (output directory, summary)."""
    out = tmp_path_factory.mktemp("mirorl") / "import"
    return out, import_mirorl([rollouts_path], out)
