"""`miroenv trajectories import` and `miroenv replay`: real rollouts and demo runs replay byte for byte, and a
changed page is reported at exactly the steps that read it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from miroenv import read_trajectories
from miroenv.cli import app
from miroenv.replay import replay_files
from miroenv.sandbox import make_backend
from miroenv.web.snapshot import Snapshot, SnapshotWriter

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
ENIAC = "https://en.wikipedia.org/wiki/ENIAC"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`miroenv demo` run through the CLI against a copy of snapshots/demo: (snapshot copy, trajectories)."""
    base = tmp_path_factory.mktemp("demo-run")
    snapshot = base / "demo"
    shutil.copytree(ROOT / "snapshots" / "demo", snapshot)
    out = base / "demo.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "miroenv.cli",
            "demo",
            "--snapshot",
            str(snapshot),
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return snapshot, out


def test_demo_trajectory_replays_identically(demo_run: tuple[Path, Path]) -> None:
    snapshot, trajectories = demo_run
    result = runner.invoke(app, ["replay", str(trajectories), "--snapshot", str(snapshot), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["identical"] is True
    assert report["totals"]["trajectories"] == 5
    assert report["totals"]["identical_tool_observations"] == report["totals"]["tool_observations"] == 16
    assert all(t["answer_match"] and t["reward_match"] for t in report["trajectories"])
    text = runner.invoke(app, ["replay", str(trajectories), "--snapshot", str(snapshot)])
    assert text.exit_code == 0 and "5/5 trajectories identical" in text.output


def test_changed_page_is_reported_at_the_steps_that_read_it(
    demo_run: tuple[Path, Path], tmp_path: Path
) -> None:
    snapshot, trajectories = demo_run
    changed = tmp_path / "changed"
    shutil.copytree(snapshot, changed)
    original = Snapshot(snapshot).page(ENIAC)
    with SnapshotWriter(changed) as writer:
        writer.add_page(ENIAC, text="# ENIAC\n\nENIAC was dedicated in 1950.", title=original.title)
    readers = {
        (position, step.index)
        for position, trajectory in enumerate(read_trajectories(trajectories), start=1)
        for step in trajectory.steps
        if any(call["arguments"].get("url") == ENIAC for call in step.calls)
    }
    assert readers == {(2, 5)}
    backend = make_backend("auto")
    try:
        report = replay_files([trajectories], changed, sandbox=backend)
    finally:
        backend.close()
    differing = {(t.position, i) for t in report.trajectories for i in t.differing_steps}
    assert differing == readers
    babbage = report.trajectories[1]
    assert babbage.first_difference is not None and "dedicated in 1950" in babbage.first_difference
    assert babbage.answer_match and babbage.reward_match
    result = runner.invoke(app, ["replay", str(trajectories), "--snapshot", str(changed)])
    assert result.exit_code == 1
    assert "differs" in result.output and "differing steps: 5" in result.output
    assert "4/5 trajectories identical" in result.output


def test_real_rollouts_import_and_replay_twice_the_same(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "mirorl_rollouts" / "testData.jsonl"
    out = tmp_path / "mirorl"
    imported = runner.invoke(app, ["trajectories", "import", "mirorl", str(source), "--out", str(out)])
    assert imported.exit_code == 0, imported.output
    assert "imported 128 mirorl episodes" in imported.output
    command = ["replay", str(out / "trajectories.jsonl"), "--snapshot", str(out)]
    first, second = runner.invoke(app, [*command, "--json"]), runner.invoke(app, [*command, "--json"])
    assert first.exit_code == second.exit_code == 0
    assert first.output == second.output
    totals = json.loads(first.output)["totals"]
    assert totals["identical_tool_observations"] == totals["tool_observations"] == 159
    assert totals["identical_trajectories"] == 128
    text_first, text_second = runner.invoke(app, command), runner.invoke(app, command)
    assert text_first.output == text_second.output
    assert "128/128 trajectories identical; 159/159 tool observations identical" in " ".join(
        text_first.output.split()
    )


def test_bad_inputs_exit_with_status_2(tmp_path: Path, demo_run: tuple[Path, Path]) -> None:
    _, trajectories = demo_run
    assert runner.invoke(app, ["replay", str(trajectories), "--snapshot", str(tmp_path)]).exit_code == 2
    missing = runner.invoke(
        app, ["trajectories", "import", "mirorl", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "no such file" in missing.output
    unknown = runner.invoke(
        app, ["trajectories", "import", "warc", str(trajectories), "--out", str(tmp_path)]
    )
    assert unknown.exit_code == 2 and "unknown format" in unknown.output
