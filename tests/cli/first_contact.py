"""A new user's first contact: install miroenv with no extras into a fresh virtualenv and try the CLI.

`python3 tests/cli/first_contact.py [--clone] [REPO]` (standard library only, so CI runs it before any venv
exists) makes a folder under the temp directory, puts the source there (`--clone`: `git clone` of REPO's HEAD,
as a new user gets it; otherwise a copy of the working tree), creates a virtualenv, runs `pip install SOURCE`
(no extras) and then checks, from a folder outside the source: `miroenv --help` and every subcommand's
`--help` exit 0; `miroenv snapshot import warc` exits 2 naming the `import` extra; `miroenv demo` runs and
leaves no `miroenv-demo-*` folder in its (private) TMPDIR; then, with the `import` extra alone added, a
folder of HTML imports and its page is found by `snapshot search`. It exits 1, naming each failure, when one
fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COPY_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "site", "runs", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)
LIST_COMMANDS = "import json; from miroenv.cli.app import command_paths; print(json.dumps(command_paths()))"
FIND_EXTRAS = (
    "import importlib.util, json; from miroenv.extras import EXTRA_MODULES; "
    "print(json.dumps(sorted(m for ms in EXTRA_MODULES.values() for m in ms if importlib.util.find_spec(m))))"
)


def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run `command`, capturing its output as text (stdin closed)."""
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def pip_install(bin_dir: Path, requirement: str, work: Path) -> str:
    """`pip install REQUIREMENT` into the venv of `bin_dir`; what went wrong, or "" when it worked."""
    command = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    done = _run([*command, requirement], work, dict(os.environ), 900)
    if done.returncode != 0:
        return f"pip install {requirement} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return ""


def install(repo: Path, work: Path, clone: bool) -> Path:
    """The source (cloned or copied) and a fresh venv with `pip install SOURCE` under `work`; the venv's bin."""
    source = work / "miroenv"
    if clone:
        subprocess.run(["git", "clone", "--quiet", str(repo), str(source)], check=True, timeout=300)
    else:
        shutil.copytree(repo, source, ignore=COPY_IGNORED)
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    bin_dir = work / "venv" / "bin"
    failure = pip_install(bin_dir, str(source), work)
    if failure:
        raise RuntimeError(failure)
    return bin_dir


def check(bin_dir: Path, work: Path) -> list[str]:
    """Every first-contact check against the installed `miroenv`; the failures (empty when all passed)."""
    cwd = work / "elsewhere"
    tmp = work / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "100"}
    env.pop("PYTHONPATH", None)
    miroenv = str(bin_dir / "miroenv")
    python = str(bin_dir / "python")
    failures: list[str] = []

    extras = json.loads(_run([python, "-c", FIND_EXTRAS], cwd, env, 60).stdout or "null")
    if extras != []:
        failures.append(f"the base install has packages of extras: {extras}")
    listed = _run([python, "-c", LIST_COMMANDS], cwd, env, 120)
    if listed.returncode != 0:
        return [*failures, f"listing the commands failed:\n{listed.stderr}"]
    paths: list[list[str]] = [[], *json.loads(listed.stdout)]
    for path in paths:
        done = _run([miroenv, *path, "--help"], cwd, env, 120)
        if done.returncode != 0 or "Traceback" in done.stderr or "Usage: miroenv" not in done.stdout:
            failures.append(f"miroenv {' '.join([*path, '--help'])} exited {done.returncode}:\n{done.stderr}")
    print(
        f"first contact: {len(paths)} --help pages exit 0" if not failures else "first contact: --help failed"
    )

    (cwd / "x.warc").write_bytes(b"WARC/1.0\r\n\r\n")
    done = _run([miroenv, "snapshot", "import", "warc", "x.warc", "--out", "imported"], cwd, env, 120)
    lines = done.stderr.strip().splitlines()
    named = (
        len(lines) == 1
        and "needs the 'import' extra" in lines[0]
        and "pip install 'miroenv[import]'" in lines[0]
    )
    if done.returncode != 2 or not named or (cwd / "imported").exists():
        failures.append(
            f"snapshot import warc exited {done.returncode}, want 2 and one line naming the extra:\n{done.stderr}"
        )

    done = _run([miroenv, "demo", "--quiet", "--out", "demo.jsonl"], cwd, env, 600)
    if done.returncode != 0 or "mean reward 1.000 over 5 episodes" not in done.stdout:
        failures.append(
            f"miroenv demo exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    left = sorted(p.name for p in tmp.iterdir() if p.name.startswith("miroenv-demo-"))
    if left:
        failures.append(f"miroenv demo left {left} in TMPDIR")
    print("first contact: demo ran" if not failures else "first contact: failures below")
    return failures


ARTICLE = (
    "<html><head><title>The Analytical Engine</title></head><body><article><h1>The Analytical Engine</h1>"
    + "<p>Charles Babbage designed the Analytical Engine, a mechanical general-purpose computer, in 1837. "
    "Ada Lovelace published the first algorithm intended for it in 1843.</p>" * 6 + "</article></body></html>"
)


def check_import_extra(bin_dir: Path, source: Path, work: Path) -> list[str]:
    """Add the `import` extra alone to the venv, then import a folder of HTML and search it; the failures."""
    failure = pip_install(bin_dir, f"{source}[import]", work)
    if failure:
        return [failure]
    cwd = work / "with-import"
    (cwd / "pages").mkdir(parents=True)
    (cwd / "pages" / "engine.html").write_text(ARTICLE)
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("PYTHONPATH", None)
    miroenv = str(bin_dir / "miroenv")
    failures: list[str] = []
    done = _run([miroenv, "snapshot", "import", "html-dir", "pages", "--out", "snap"], cwd, env, 300)
    if done.returncode != 0:
        failures.append(
            f"with [import], snapshot import html-dir exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    else:
        found = _run(
            [miroenv, "snapshot", "search", "snap", "Analytical Engine Lovelace", "--json"], cwd, env, 120
        )
        if found.returncode != 0 or "html-dir.invalid/engine" not in found.stdout:
            failures.append(
                f"with [import], snapshot search did not find the page:\n{found.stdout}{found.stderr}"
            )
    print(
        "first contact: the import extra alone imports and searches"
        if not failures
        else "first contact: [import] failed"
    )
    return failures


def main(argv: list[str] | None = None) -> int:
    """Install into a fresh folder, run the checks, print the failures; exit status 1 when there are any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "repo", nargs="?", type=Path, default=ROOT, help="Repository (default: this checkout)."
    )
    parser.add_argument("--clone", action="store_true", help="git clone REPO's HEAD instead of copying it.")
    parser.add_argument("--keep", action="store_true", help="Keep the folder (printed) for inspection.")
    parser.add_argument("--under", type=Path, default=None, help="Parent folder (default: the temp dir).")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="miroenv-first-contact-", dir=args.under))
    try:
        bin_dir = install(args.repo.resolve(), work, args.clone)
        failures = check(bin_dir, work)
        failures += check_import_extra(bin_dir, work / "miroenv", work)
    finally:
        if args.keep:
            print(f"first contact: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
