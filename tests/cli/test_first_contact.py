"""A base install: every `--help` works, a command that needs an extra names it, the demo runs and cleans up.

The optional packages are made unimportable by `blocker/sitecustomize.py` on PYTHONPATH, so these run against
this checkout's venv as if it had no extras; `test_fresh_venv_without_extras` does a real `pip install` of the
working tree into a new virtualenv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from miroenv.cli.app import ROOT_COMMANDS, SNAPSHOT_COMMANDS, command_paths
from miroenv.extras import EXTRA_MODULES
from tests.cli import first_contact

BLOCKER = Path(__file__).resolve().parent / "blocker"
BLOCKED = sorted(
    {*(m for modules in EXTRA_MODULES.values() for m in modules), "htmldate", "justext", "courlan", "bm25s"}
)
MIROENV = [str(Path(sys.executable).with_name("miroenv"))]


def _base_install_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that cannot import any extra's packages, with a private TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PYTHONPATH": str(BLOCKER),
        "MIROENV_TEST_BLOCKED_MODULES": ",".join(BLOCKED),
        "TMPDIR": str(tmp),
        "COLUMNS": "100",
    }


def _run(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `args` from `tmp_path` (outside the checkout) without the extras."""
    return subprocess.run(
        args,
        cwd=tmp_path,
        env=_base_install_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_the_blocker_hides_every_extra(tmp_path: Path) -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    try: importlib.import_module(m)\n    except ModuleNotFoundError: print(m)\n"
    done = _run([sys.executable, "-c", code, *BLOCKED], tmp_path)
    assert done.stdout.split() == BLOCKED, done.stderr


def test_every_help_exits_0_without_extras(tmp_path: Path) -> None:
    driver = (
        "import json, sys\n"
        "from miroenv.cli.app import app, command_paths\n"
        "codes = {}\n"
        "for path in [(), *command_paths()]:\n"
        "    try:\n"
        "        app([*path, '--help'], prog_name='miroenv')\n"
        "    except SystemExit as exc:\n"
        "        codes[' '.join(path)] = exc.code\n"
        "print(json.dumps(codes), file=sys.stderr)\n"
    )
    done = _run([sys.executable, "-c", driver], tmp_path, timeout=300)
    codes = json.loads(done.stderr.strip().splitlines()[-1])
    assert len(codes) == 1 + len(command_paths()) >= 20
    assert {path for path, code in codes.items() if code not in (0, None)} == set(), done.stderr
    assert "snapshot import" in codes and "sandbox build" in codes and "serve-mcp" in codes
    assert "Traceback" not in done.stderr
    assert done.stdout.count("Usage: miroenv") == len(codes)


@pytest.mark.parametrize("path", [["--help"], ["snapshot", "import", "--help"], ["serve-mcp", "--help"]])
def test_help_in_a_real_process_without_extras(path: list[str], tmp_path: Path) -> None:
    done = _run([*MIROENV, *path], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Usage: miroenv" in done.stdout and done.stderr == ""


def test_top_level_help_imports_no_command_module_and_no_gymnasium(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom miroenv.cli import app\n"
        "try:\n    app(['--help'], prog_name='miroenv')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('miroenv.cli.', 'gymnasium', 'miroenv.env'))), file=sys.stderr)\n"
    )
    done = _run([sys.executable, "-c", code], tmp_path)
    assert done.stderr.strip().splitlines()[-1] == "['miroenv.cli.app']"
    for name, entry in ROOT_COMMANDS.items():
        assert name in done.stdout and entry.help.split()[0] in done.stdout


def test_warc_import_exits_2_naming_the_import_extra(tmp_path: Path) -> None:
    (tmp_path / "x.warc").write_bytes(b"WARC/1.0\r\n\r\n")
    done = _run([*MIROENV, "snapshot", "import", "warc", "x.warc", "--out", "d"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: snapshot import warc needs the 'import' extra (no module named 'bs4'): "
        "pip install 'miroenv[import]'"
    ]
    assert not (tmp_path / "d").exists()


def test_export_and_html_dir_import_name_the_extra_too(demo_dir: Path, tmp_path: Path) -> None:
    export = _run([*MIROENV, "snapshot", "export", str(demo_dir), "--warc", "o.warc.gz"], tmp_path)
    assert export.returncode == 2 and "snapshot export needs the 'import' extra" in export.stderr
    assert not (tmp_path / "o.warc.gz").exists()
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.html").write_text("<html><body><p>Hello</p></body></html>")
    html = _run([*MIROENV, "snapshot", "import", "html-dir", "pages", "--out", "d"], tmp_path)
    assert (
        html.returncode == 2 and "needs the 'import' extra" in html.stderr and "Traceback" not in html.stderr
    )


def test_demo_runs_without_extras_and_leaves_no_temp_folder(tmp_path: Path) -> None:
    done = _run([*MIROENV, "demo", "--quiet", "--out", "t.jsonl"], tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "mean reward 1.000 over 5 episodes" in done.stdout
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_static_table_matches_the_commands() -> None:
    import typer

    from miroenv.cli.app import app, load_all_commands

    load_all_commands()
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    snapshot = root.commands["snapshot"]
    assert isinstance(snapshot, typer.core.TyperGroup)
    for table, group in ((ROOT_COMMANDS, root), (SNAPSHOT_COMMANDS, snapshot)):
        assert set(group.commands) == set(table)
        for name, entry in table.items():
            command = group.commands[name]
            assert (command.help or "").strip().splitlines()[0] == entry.help, name
            callback = command.callback
            if callback is not None and entry.module != "miroenv.cli.app":
                assert callback.__module__ == entry.module, name


@pytest.mark.slow
def test_fresh_venv_without_extras(tmp_path: Path) -> None:
    """pip install of the working tree, no extras, into a new venv: the same checks as CI's first contact."""
    assert first_contact.main(["--under", str(tmp_path)]) == 0
