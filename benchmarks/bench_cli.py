"""CLI start-up benchmark (issue 12): wall and CPU time of `miroenv --help`, a nested `--help` and `import miroenv`.

Each case runs N times as a fresh process (`python -m miroenv.cli ...`, stdout discarded); wall time is
measured around the process and CPU time (user + system) from the children's rusage. `--baseline COMMIT`
measures the same cases on that commit's tree (`git archive`, put first on PYTHONPATH, same interpreter and
packages) for a before/after table. Prints Markdown rows and writes JSON.

Run: `python benchmarks/bench_cli.py [--runs 20] [--baseline 5093a95] [--out runs/bench_cli.json]`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES: dict[str, list[str]] = {
    "miroenv --help": ["-m", "miroenv.cli", "--help"],
    "miroenv snapshot import --help": ["-m", "miroenv.cli", "snapshot", "import", "--help"],
    "miroenv serve-mcp --help": ["-m", "miroenv.cli", "serve-mcp", "--help"],
    "python -c 'import miroenv'": ["-c", "import miroenv"],
    "python -c pass (interpreter start)": ["-c", "pass"],
}


def _once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process running `python args` from a folder with no package."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True, cwd=env["HOME_FOR_BENCH"]
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(runs: int, source: Path | None) -> dict[str, dict[str, float]]:
    """p50 and min of wall and CPU time per case, `source` first on PYTHONPATH when given."""
    neutral = tempfile.mkdtemp(prefix="miroenv-bench-cwd-")  # `-m`/`-c` put the cwd first on sys.path
    env = {**os.environ, "COLUMNS": "100", "HOME_FOR_BENCH": neutral}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    results: dict[str, dict[str, float]] = {}
    for name, args in CASES.items():
        _once(args, env)  # warm the page cache and .pyc files
        samples = [_once(args, env) for _ in range(runs)]
        walls, cpus = [w for w, _ in samples], [c for _, c in samples]
        results[name] = {
            "wall_p50": statistics.median(walls),
            "wall_min": min(walls),
            "cpu_p50": statistics.median(cpus),
            "cpu_min": min(cpus),
        }
    os.rmdir(neutral)
    return results


def baseline_tree(commit: str, scratch: Path) -> Path:
    """The `miroenv` package of `commit`, extracted under `scratch` (for PYTHONPATH)."""
    archive = scratch / "tree.tar"
    with archive.open("wb") as handle:
        subprocess.run(["git", "archive", commit, "miroenv"], cwd=ROOT, stdout=handle, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(scratch / "tree", filter="data")
    return scratch / "tree"


def main() -> None:
    """Measure this tree (and optionally a baseline commit); print Markdown rows, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--baseline", default=None, help="A commit to measure too, e.g. the one before lazy CLI."
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_cli.json")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "runs": args.runs,
        "current": measure(args.runs, ROOT),
    }
    if args.baseline:
        with tempfile.TemporaryDirectory(prefix="miroenv-bench-cli-") as scratch:
            report["baseline_commit"] = args.baseline
            report["baseline"] = measure(args.runs, baseline_tree(args.baseline, Path(scratch)))
    report["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| case | tree | wall p50 | wall min | CPU p50 | CPU min |\n|---|---|---|---|---|---|")
    for tree in ("baseline", "current"):
        for name, row in report.get(tree, {}).items():
            label = f"{tree} ({args.baseline})" if tree == "baseline" else "this tree"
            print(
                f"| `{name}` | {label} | {row['wall_p50']:.3f} s | {row['wall_min']:.3f} s | "
                f"{row['cpu_p50']:.3f} s | {row['cpu_min']:.3f} s |"
            )
    print(f"load average {report['loadavg_start']} -> {report['loadavg_end']} on {report['cpus']} CPUs")


if __name__ == "__main__":
    main()
