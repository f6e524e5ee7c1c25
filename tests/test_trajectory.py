"""Trajectory log: written as the episode runs, read back whole, robust to a killed writer."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from miroenv import RecordTrajectory, ResearchEnv, ScriptedPolicy, read_trajectories, run_episode
from miroenv.demo import ACTIONS
from miroenv.jsonl import JsonlError


def test_episode_is_logged_with_header_steps_and_footer(demo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    result = run_episode(
        env, ScriptedPolicy(ACTIONS["babbage-eniac-gap"]), task_id="babbage-eniac-gap", seed=5
    )
    env.close()
    (trajectory,) = read_trajectories(path)
    header = trajectory.header
    assert header.env["snapshot"]["name"] == "demo-history-of-computing"
    assert header.env["snapshot"]["content_hash"].startswith("sha256:")
    assert header.env["task"]["task_id"] == "babbage-eniac-gap" and header.env["seed"] == 5
    assert header.env["miroenv_version"] and header.env["config"]["max_tool_calls"] == 600
    assert header.observation == result.observations[0]
    assert [s.observation for s in trajectory.steps] == result.observations[1:]
    assert trajectory.actions() == ACTIONS["babbage-eniac-gap"]
    assert trajectory.steps[1].error_kinds == ["tool"]
    assert trajectory.steps[0].calls[0]["tool"] == "google_search"
    assert trajectory.footer is not None
    assert (trajectory.footer.answer, trajectory.footer.reward) == ("155", 1.0)
    assert trajectory.footer.reward_components == {"correct": 1.0}
    assert trajectory.footer.tool_calls == result.tool_calls == 5
    assert trajectory.footer.errors == {"format": 0, "tool": 2, "infra": 0}


def test_several_episodes_in_one_file_and_one_footer_each(demo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    for task_id in ("ada-standard", "turing-award-first"):
        run_episode(env, ScriptedPolicy(ACTIONS[task_id]), task_id=task_id, seed=0)
    env.step("after the end")
    env.close()
    kinds = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert kinds.count("header") == 2 and kinds.count("footer") == 2
    assert [t.header.env["task"]["task_id"] for t in read_trajectories(path)] == [
        "ada-standard",
        "turing-award-first",
    ]


def _run_then_die(demo_dir: str, path: str, steps: int) -> None:
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    env.reset(seed=0, options={"task_id": "babbage-eniac-gap"})
    for action in ACTIONS["babbage-eniac-gap"][:steps]:
        env.step(action)
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_process_leaves_every_finished_step_readable(demo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    proc = multiprocessing.get_context("fork").Process(
        target=_run_then_die, args=(str(demo_dir), str(path), 3)
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    (trajectory,) = read_trajectories(path)
    assert not trajectory.complete
    assert [s.index for s in trajectory.steps] == [1, 2, 3]


def test_torn_last_line_is_ignored_but_corruption_elsewhere_is_an_error(
    demo_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    run_episode(env, ScriptedPolicy(ACTIONS["ada-standard"]), task_id="ada-standard", seed=0)
    env.close()
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    (trajectory,) = read_trajectories(path)
    assert not trajectory.complete and len(trajectory.steps) == 5
    path.write_text(lines[0] + "{broken\n" + "".join(lines[1:]))
    with pytest.raises(JsonlError, match=r"t\.jsonl:2: not valid JSON"):
        read_trajectories(path)
    path.write_text(lines[1])
    with pytest.raises(ValueError, match="before any header"):
        read_trajectories(path)
