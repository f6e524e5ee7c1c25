"""The `miroenv` command line: demo, run, snapshot info and build-demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from miroenv import read_trajectories
from miroenv.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_demo_prints_rewards_and_writes_trajectories(tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "miroenv.cli", "demo", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for task_id in (
        "ada-standard",
        "babbage-eniac-gap",
        "turing-award-first",
        "birth-years-product",
        "baby-first-program",
    ):
        assert f"reward {task_id}: 1.00" in result.stdout
    assert "→ google_search" in result.stdout and "summary prompt sent" in result.stdout
    assert "episode 5/5 done" in result.stdout
    assert "→ run_python_code" in result.stdout and "3470280" in result.stdout
    trajectories = read_trajectories(out)
    assert len(trajectories) == 5 and all(t.complete for t in trajectories)


def test_demo_builds_its_snapshot_when_run_elsewhere(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", "--quiet", "--out", "t.jsonl"])
    assert result.exit_code == 0, result.output
    assert "mean reward 1.000 over 5 episodes" in result.output
    assert "→" not in result.output


def test_run_replays_actions_against_a_snapshot(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    result = runner.invoke(
        app,
        [
            "run",
            "--snapshot",
            str(demo_dir),
            "--tasks",
            str(demo_dir / "tasks.jsonl"),
            "--actions",
            str(demo_dir / "actions.jsonl"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rewards = [t.footer.reward for t in read_trajectories(out) if t.footer]
    assert rewards == [1.0] * 5


def test_run_reports_bad_input_clearly(demo_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "tasks.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    result = runner.invoke(
        app,
        [
            "run",
            "--snapshot",
            str(demo_dir),
            "--tasks",
            str(bad),
            "--actions",
            str(demo_dir / "actions.jsonl"),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
    )
    assert result.exit_code == 2
    assert "tasks.jsonl:1: invalid task" in " ".join(result.output.split())
    result = runner.invoke(
        app,
        ["run", "--snapshot", str(tmp_path), "--tasks", str(bad), "--actions", str(bad), "--out", "o.jsonl"],
    )
    assert result.exit_code == 2 and "no snapshot manifest" in " ".join(result.output.split())


def test_snapshot_info_verifies_hash(demo_dir: Path) -> None:
    result = runner.invoke(app, ["snapshot", "info", str(demo_dir)])
    assert result.exit_code == 0, result.output
    assert "content hash verified" in result.output
    manifest = json.loads((demo_dir / "manifest.json").read_text())
    assert manifest["counts"]["pages"] == 12


def test_snapshot_search_uses_the_tool_path(demo_dir: Path) -> None:
    result = runner.invoke(
        app, ["snapshot", "search", str(demo_dir), "Turing Award first recipient", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert [item["link"] for item in payload["organic"]][:1] == ["https://en.wikipedia.org/wiki/Turing_Award"]
    assert all("huggingface.co" not in item["link"] for item in payload["organic"])
    result = runner.invoke(
        app, ["snapshot", "search", str(demo_dir), "who designed ENIAC", "--num", "2", "--json"]
    )
    organic = json.loads(result.output)["organic"]
    assert len(organic) == 2 and organic[0]["link"] == "https://en.wikipedia.org/wiki/ENIAC"
    table = runner.invoke(app, ["snapshot", "search", str(demo_dir), "who designed ENIAC"])
    assert table.exit_code == 0 and "(index)" in table.output


def test_snapshot_get_resolves_spellings_and_reports_misses(demo_dir: Path) -> None:
    result = runner.invoke(
        app, ["snapshot", "get", str(demo_dir), "http://en.wikipedia.org/wiki/ENIAC/", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["url"] == "https://en.wikipedia.org/wiki/ENIAC" and "15 February 1946" in record["text"]
    miss = runner.invoke(app, ["snapshot", "get", str(demo_dir), "https://en.wikipedia.org/wiki/ENIA"])
    assert miss.exit_code == 1
    assert "closest URL" in " ".join(miss.output.split()) and "wiki/ENIAC" in miss.output


def test_demo_runs_without_any_isolated_sandbox_and_says_why(tmp_path: Path) -> None:
    """No Docker image and no namespaces (an unmapped user namespace): the demo still runs every task,
    says why code execution is off, and only the sandbox task loses its reward."""
    import os
    import shutil

    if shutil.which("unshare") is None:
        raise AssertionError("util-linux `unshare` is needed for this test")
    tmp_path.chmod(0o777)
    out = tmp_path / "demo.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "MIROENV_ALLOW_UNISOLATED"}
    env["MIROENV_SANDBOX_IMAGE"] = "miroenv-no-such-image:never"
    result = subprocess.run(
        ["unshare", "--user", sys.executable, "-m", "miroenv.cli", "demo", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "no isolated sandbox here" in result.stdout
    assert "sandbox backend: none" in result.stdout
    assert "reward turing-award-first: 1.00" in result.stdout
    trajectories = read_trajectories(out)
    assert len(trajectories) == 5
    assert {t.header.env["sandbox"]["isolation"] for t in trajectories} == {"disabled"}
    infra = [t.footer.errors["infra"] for t in trajectories if t.footer is not None]
    assert infra == [0, 0, 0, 1, 0]  # only the sandbox task's create_sandbox, reported as infra
