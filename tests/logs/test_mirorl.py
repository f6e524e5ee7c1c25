"""MiroRL rollouts: all 128 real ones import, and every tool observation replays byte for byte."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from miroenv import ResearchEnv, read_trajectories
from miroenv.logs import ImportSummary, import_mirorl, parse_rollout
from miroenv.logs.mirorl import split_prompt, split_response
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.replay import replay_files
from miroenv.web.base import ToolResultRecord
from miroenv.web.snapshot import Snapshot, SnapshotWriter

ROLLOUTS = 128
TOOL_OBSERVATIONS = 159


def raw_turns(response: str) -> tuple[list[str], list[str]]:
    """Assistant and user turns by a plain split on role lines (valid for this data: no role line in content)."""
    parts = re.split(r"\nuser\n|\nassistant\n", response)
    return parts[0::2], parts[1::2]


def test_all_rollouts_import(mirorl_import: tuple[Path, ImportSummary]) -> None:
    out, summary = mirorl_import
    assert (summary.episodes, summary.steps, summary.tool_calls) == (ROLLOUTS, 287, TOOL_OBSERVATIONS)
    assert summary.unrecorded == 0 and summary.warnings == []
    assert summary.tool_results + summary.occurrence_results == 143
    assert summary.profiles == [
        json.loads((out / "snapshot" / "recorded_profiles.json").read_text())[0]["name"]
    ]
    episodes = read_trajectories(out / "trajectories.jsonl")
    assert len(episodes) == ROLLOUTS and all(t.complete for t in episodes)
    manifest = json.loads((out / "snapshot" / "manifest.json").read_text())
    assert manifest["capture_date"] == "2025-06-16"
    assert manifest["counts"]["tool_results"] == 143


def test_trajectories_hold_exactly_what_the_log_holds(
    mirorl_import: tuple[Path, ImportSummary], rollouts: list[dict[str, Any]]
) -> None:
    out, _ = mirorl_import
    for row, trajectory in zip(rollouts, read_trajectories(out / "trajectories.jsonl"), strict=True):
        system, user = split_prompt(row["prompt_str"])
        assert row["prompt_str"] == f"system\n{system}\nuser\n{user}\nassistant\n"
        assert trajectory.header.observation == f"{system}\n\n{user}"
        assistant, results = raw_turns(row["response_str"])
        assert [s.action for s in trajectory.steps] == assistant
        assert [s.observation for s in trajectory.steps] == [*results, ""]
        task = trajectory.header.env["task"]
        assert task["answer"] == row["ground_truth"] and task["date"] == "2025-06-16"
        assert task["question"] == row["extra_info"]["question"]
        assert trajectory.header.env["summary_turn"] is False
        assert trajectory.footer is not None and trajectory.footer.terminated


def test_every_tool_observation_replays_identically(mirorl_import: tuple[Path, ImportSummary]) -> None:
    out, _ = mirorl_import
    report = replay_files([out / "trajectories.jsonl"], out / "snapshot")
    assert report.totals == {
        "trajectories": ROLLOUTS,
        "identical_trajectories": ROLLOUTS,
        "steps": 287,
        "differing_steps": 0,
        "tool_observations": TOOL_OBSERVATIONS,
        "identical_tool_observations": TOOL_OBSERVATIONS,
        "answer_mismatches": 0,
        "reward_mismatches": 0,
    }
    assert all(t.notes == [] for t in report.trajectories)


def test_same_call_with_different_results_replays_each_one(mirorl_import: tuple[Path, ImportSummary]) -> None:
    out, _ = mirorl_import
    trajectory = next(
        t
        for t in read_trajectories(out / "trajectories.jsonl")
        if t.header.env["task"]["task_id"] == "testData-0039"
    )
    calls = [s.calls[0]["arguments"] for s in trajectory.steps if s.calls]
    assert calls == [{"q": "Frank J. Basciano death date", "gl": "us", "hl": "en"}] * 3
    observations = [s.observation for s in trajectory.steps if s.calls]
    assert len(set(observations)) == 3
    report = replay_files([out / "trajectories.jsonl"], out / "snapshot")
    assert report.trajectories[38].identical and report.trajectories[38].identical_tool_observations == 3


def test_a_changed_result_is_reported_at_the_steps_that_got_it(
    mirorl_import: tuple[Path, ImportSummary], tmp_path: Path
) -> None:
    out, _ = mirorl_import
    snapshot = tmp_path / "snapshot"
    shutil.copytree(out / "snapshot", snapshot)
    arguments = {"url": "https://en.wikipedia.org/wiki/Mischa_Cotlar", "includeMarkdown": False}
    with SnapshotWriter(snapshot) as writer:
        writer.add_tool_result(
            ToolResultRecord(server="tool-google-search", tool="scrape", arguments=arguments, result="{}")
        )
    report = replay_files([out / "trajectories.jsonl"], snapshot)
    differing = {(t.task_id, tuple(t.differing_steps)) for t in report.trajectories if not t.identical}
    assert differing == {("testData-0069", (2,))}
    changed = report.trajectories[68]
    assert changed.first_difference is not None and "+{}" in changed.first_difference
    assert (
        changed.answer_match is True and changed.identical_tool_observations == changed.tool_observations - 1
    )


def test_searches_and_pages_serve_other_profiles(
    mirorl_import: tuple[Path, ImportSummary], rollouts: list[dict[str, Any]]
) -> None:
    out, _ = mirorl_import
    snapshot = Snapshot(out / "snapshot")
    cotlar = snapshot.page("https://en.wikipedia.org/wiki/Mischa_Cotlar")
    assert cotlar.title == "Mischa Cotlar - Wikipedia" and cotlar.text.startswith(
        "Mischa Cotlar\n\nFrom Wikipedia"
    )
    release_notes = snapshot.page("https://www.aseprite.org/release-notes/")
    assert release_notes.metadata["truncated"] is True and release_notes.text.startswith(
        "Aseprite\n\nRelease Notes"
    )
    _, results = raw_turns(rollouts[0]["response_str"])
    logged = json.loads(results[0])
    env = ResearchEnv(snapshot, out / "snapshot" / "tasks.jsonl", profile="mirothinker_v1")
    env.reset(options={"task_id": "testData-0001"})
    call = McpXmlFormat().render_call(
        parse_rollout(rollouts[0], "x")
        .steps[0]
        .calls[0]
        .call.model_copy(update={"server": "search_and_scrape_webpage"})
    )
    observation, *_ = env.step(call)
    env.close()
    snapshot.close()
    assert json.loads(observation)["organic"] == logged["organic"]


def test_role_lines_inside_content_do_not_split_turns() -> None:
    call = (
        '<use_mcp_tool>\n<server_name>s</server_name>\n<tool_name>scrape</tool_name>\n<arguments>\n{"url": "u"}\n'
        "</arguments>\n</use_mcp_tool>"
    )
    thinking = "<think>\nthe page says\nuser\nthen\nassistant\nlines\n</think>\n\n"
    page = "chat transcript\nassistant\nhello\nuser\nbye"
    json_result = '{\n  "text": "a"\n}'
    response = (
        f"{thinking}{call}\nuser\n{page}\nassistant\n<think>\nok\n</think>\n{call}\nuser\n{json_result}"
        "\nassistant\n<think>\ndone\n</think>\n\\boxed{x}"
    )
    assert split_response(response) == [
        (f"{thinking}{call}", page),
        (f"<think>\nok\n</think>\n{call}", json_result),
        ("<think>\ndone\n</think>\n\\boxed{x}", None),
    ]


def test_a_rollout_cut_before_its_answer_has_no_footer(
    rollouts: list[dict[str, Any]], tmp_path: Path
) -> None:
    row = dict(rollouts[0])
    row["response_str"] = row["response_str"][: row["response_str"].index("\nassistant\n")]
    episode = parse_rollout(row, "cut")
    assert [s.kind for s in episode.steps] == ["tools"]
    assert episode.answer is None and not episode.finished
    source = tmp_path / "cut.jsonl"
    source.write_text(json.dumps(row) + "\n", encoding="utf-8")
    import_mirorl([source], tmp_path / "out")
    (trajectory,) = read_trajectories(tmp_path / "out" / "trajectories.jsonl")
    assert trajectory.footer is None
    report = replay_files([tmp_path / "out" / "trajectories.jsonl"], tmp_path / "out")
    (result,) = report.trajectories
    assert result.identical and result.answer_match is None and result.identical_tool_observations == 1
