"""Re-scoring trajectories without re-running tools: stored rewards come back exactly, summaries add up."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from miroenv import (
    RecordTrajectory,
    ResearchEnv,
    ScriptedPolicy,
    load_actions,
    read_trajectories,
    run_episode,
)
from miroenv.cli import app
from miroenv.env import EnvConfig
from miroenv.rewards import FormatPenalty, GaiaReward, Reward, ToolCallCost, WeightedSum
from miroenv.scoring import reward_context, score_trajectories

runner = CliRunner()

DIRECT_ANSWERS: dict[str, list[Any]] = {
    "ada-standard": ["I recall the standard.", "\\boxed{MIL-STD-1815 standard}"],
    "turing-award-first": ["It was Perlis.", "\\boxed{Perlis}"],
    "babbage-eniac-gap": ["Simple arithmetic.", "\\boxed{155}"],
    "baby-first-program": ["I do not know.", "No idea, sorry."],
}
"""Answers without tool calls: partly right, right, and none at all (through the summary turn)."""


def record_episodes(
    snapshot: Path,
    out: Path,
    scripts: Mapping[str, Sequence[Any]],
    reward: str | Reward = "gaia",
    config: EnvConfig | None = None,
) -> Path:
    """Run scripted episodes through the real env and record them to `out` (appending)."""
    env = RecordTrajectory(
        ResearchEnv(snapshot, snapshot / "tasks.jsonl", reward=reward, config=config, sandbox="auto"), out
    )
    try:
        for seed, (task_id, actions) in enumerate(scripts.items()):
            run_episode(env, ScriptedPolicy(list(actions)), task_id=task_id, seed=seed)
    finally:
        env.close()
    return out


def mixed_episodes(snapshot: Path, out: Path, reward: str | Reward) -> Path:
    """The demo's tool-using episodes plus the direct answers above, all under `reward`."""
    record_episodes(snapshot, out, load_actions(snapshot / "actions.jsonl"), reward)
    return record_episodes(snapshot, out, DIRECT_ANSWERS, reward)


def test_demo_trajectories_rescore_to_their_stored_gaia_rewards(demo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    result = runner.invoke(app, ["demo", "--quiet", "--snapshot", str(demo_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output

    report = score_trajectories([out], "gaia")
    assert [row.task_id for row in report.rows] == [
        "ada-standard",
        "babbage-eniac-gap",
        "turing-award-first",
        "birth-years-product",
        "baby-first-program",
    ]
    assert all(row.reproduced for row in report.rows)
    assert report.summary.compared == report.summary.reproduced == 5
    assert report.summary.accuracy == 1.0 and report.summary.mean_reward == 1.0
    footers = [t.footer for t in read_trajectories(out)]
    assert [row.tool_calls for row in report.rows] == [f.tool_calls for f in footers if f is not None]
    assert report.summary.mean_tool_calls == sum(row.tool_calls for row in report.rows) / 5 == 3.2
    assert report.summary.errors == {"format": 1, "tool": 2, "infra": 0}
    assert report.written == []

    cli = runner.invoke(app, ["score", str(out), "--reward", "gaia", "--check"])
    assert cli.exit_code == 0, cli.output
    assert "5/5 rewards reproduce the ones stored at run time" in cli.output


@pytest.mark.parametrize("reward", ["gaia", "f1", "em", "contains"])
def test_rescoring_reproduces_run_time_rewards_including_partial_ones(
    demo_dir: Path, tmp_path: Path, reward: str
) -> None:
    path = mixed_episodes(demo_dir, tmp_path / f"{reward}.jsonl", reward)
    stored = [t.footer.reward for t in read_trajectories(path) if t.footer is not None]
    report = score_trajectories([path], reward)
    assert [row.reward for row in report.rows] == stored
    assert report.summary.reproduced == report.summary.compared == 9
    assert report.rows[-1].answer is None and report.rows[-1].reward == 0.0
    if reward == "f1":
        partial = {row.task_id: row.reward for row in report.rows[4:]}
        assert partial["ada-standard"] == pytest.approx(2 / 3)
        assert partial["turing-award-first"] == pytest.approx(2 / 3)
        assert report.summary.accuracy == 6 / 9
        assert 0 < report.summary.mean_reward < 1


def test_composed_reward_with_counters_is_reproduced(demo_dir: Path, tmp_path: Path) -> None:
    def make() -> WeightedSum:
        return WeightedSum([(GaiaReward(), 1.0), (FormatPenalty(0.1), 1.0), (ToolCallCost(0.01), 1.0)])

    path = mixed_episodes(demo_dir, tmp_path / "weighted.jsonl", make())
    trajectories = read_trajectories(path)
    report = score_trajectories([path], make())
    assert report.summary.reproduced == report.summary.compared == 9
    for row, trajectory in zip(report.rows, trajectories, strict=True):
        assert trajectory.footer is not None
        assert row.components == trajectory.footer.reward_components
    assert {row.reward for row in report.rows} != {0.0, 1.0}


def test_other_reward_is_not_compared_and_truncated_episodes_keep_their_counters(
    demo_dir: Path, tmp_path: Path
) -> None:
    path = record_episodes(
        demo_dir,
        tmp_path / "t.jsonl",
        {"babbage-eniac-gap": load_actions(demo_dir / "actions.jsonl")["babbage-eniac-gap"]},
        config=EnvConfig(max_turns=3),
    )
    (trajectory,) = read_trajectories(path)
    ctx = reward_context(trajectory)
    assert ctx.truncated and not ctx.terminated and ctx.answer is None and ctx.turns == 3
    assert ctx.tool_errors == 1
    report = score_trajectories([path], "f1")
    (row,) = report.rows
    assert row.reproduced is None and row.stored_reward_name == "gaia"
    assert row.truncated_by == "turns" and row.errors["tool"] == 1


def test_episode_cut_off_without_footer_is_scored_as_unanswered(demo_dir: Path, tmp_path: Path) -> None:
    path = record_episodes(
        demo_dir,
        tmp_path / "t.jsonl",
        {"babbage-eniac-gap": load_actions(demo_dir / "actions.jsonl")["babbage-eniac-gap"]},
    )
    lines = path.read_text(encoding="utf-8").splitlines()
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:40], encoding="utf-8")
    report = score_trajectories([torn], "gaia")
    (row,) = report.rows
    assert not row.complete and row.answer is None and row.reward == 0.0
    assert row.stored_reward is None and row.reproduced is None
    assert row.errors == {"format": 0, "tool": 2, "infra": 0}
    assert row.tool_calls == 5 and row.steps == 6


def test_check_fails_when_a_stored_reward_no_longer_reproduces(demo_dir: Path, tmp_path: Path) -> None:
    path = record_episodes(demo_dir, tmp_path / "t.jsonl", DIRECT_ANSWERS)
    lines = path.read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if '"type":"footer"' in line)
    footer = json.loads(lines[index])
    footer["reward"] = 0.5
    lines[index] = json.dumps(footer)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = runner.invoke(app, ["score", str(path), "--check"])
    assert result.exit_code == 1, result.output
    assert "3/4 rewards reproduce" in result.output


def test_json_output_and_errors(demo_dir: Path, tmp_path: Path) -> None:
    path = record_episodes(demo_dir, tmp_path / "t.jsonl", DIRECT_ANSWERS)
    other = record_episodes(demo_dir, tmp_path / "u.jsonl", {"babbage-eniac-gap": ["x", "\\boxed{155}"]})
    result = runner.invoke(app, ["score", str(path), str(other), "--reward", "em", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["reward"] == "em" and len(data["rows"]) == 5
    assert data["summary"]["episodes"] == 5 and data["summary"]["accuracy"] == pytest.approx(2 / 5)
    assert {row["path"] for row in data["rows"]} == {str(path), str(other)}

    bad = runner.invoke(app, ["score", str(path), "--reward", "bleu"])
    assert bad.exit_code == 2 and "unknown reward" in bad.output
    missing = runner.invoke(app, ["score", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    no_model = runner.invoke(app, ["score", str(path), "--reward", "judge"], env={"MIROENV_JUDGE_MODEL": ""})
    assert no_model.exit_code == 2 and "model" in no_model.output
