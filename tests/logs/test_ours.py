"""miroenv's own trajectories become a snapshot of their tool results and replay against it offline."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from miroenv import read_trajectories
from miroenv.cli import app
from miroenv.logs import import_ours
from miroenv.replay import replay_files
from miroenv.sandbox import make_backend
from miroenv.web.snapshot import Snapshot

runner = CliRunner()


def test_demo_trajectories_replay_from_their_own_tool_results(demo_dir: Path, tmp_path: Path) -> None:
    recorded = tmp_path / "demo.jsonl"
    result = runner.invoke(app, ["demo", "--snapshot", str(demo_dir), "--out", str(recorded), "--quiet"])
    assert result.exit_code == 0, result.output
    summary = import_ours([recorded], tmp_path / "out")
    assert (summary.episodes, summary.steps, summary.tool_calls) == (5, 27, 16)
    snapshot = Snapshot(tmp_path / "out" / "snapshot")
    assert snapshot.capture_date == "2025-11-13" and snapshot.index() is None
    assert snapshot.manifest.counts["pages"] == 0
    repeated = {"q": "Charles Babbage birth date"}
    assert snapshot.tool_result("search_and_scrape_webpage", "google_search", repeated) is None
    snapshot.close()
    copies = read_trajectories(tmp_path / "out" / "trajectories.jsonl")
    assert all(t.header.env["task"]["date"] == "2025-11-13" for t in copies)
    assert copies[0].header.model_extra is not None
    assert copies[0].header.model_extra["source"]["snapshot"]["name"] == "demo-history-of-computing"
    backend = make_backend("auto")  # sandbox results are not recorded by default: they run again
    try:
        report = replay_files([tmp_path / "out" / "trajectories.jsonl"], tmp_path / "out", sandbox=backend)
    finally:
        backend.close()
    assert report.identical, [t.first_difference for t in report.trajectories]
    assert report.totals["identical_tool_observations"] == 16
    assert all(t.notes == [] for t in report.trajectories)
    refused = json.dumps(copies[1].steps[1].observation)
    assert "has already been used" in refused


def test_skipped_tools_are_not_recorded(tmp_path: Path, demo_dir: Path) -> None:
    recorded = tmp_path / "demo.jsonl"
    runner.invoke(app, ["demo", "--snapshot", str(demo_dir), "--out", str(recorded), "--quiet"])
    summary = import_ours([recorded], tmp_path / "out", skip_tools={"google_search"})
    snapshot = Snapshot(tmp_path / "out" / "snapshot")
    assert snapshot.manifest.counts["searches"] == 0
    assert summary.tool_results == snapshot.manifest.counts["tool_results"] == 7  # 5 scrapes, 2 sandbox calls
    snapshot.close()
