"""Trajectory log: written as the episode runs, read back whole, robust to a killed writer."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miroenv import RecordTrajectory, ResearchEnv, ScriptedPolicy, read_trajectories, run_episode
from miroenv.demo import ACTIONS
from miroenv.jsonl import JsonlError
from miroenv.scoring import score_trajectories


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


def test_an_action_with_lone_surrogates_is_kept_verbatim_with_its_repair(
    demo_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir, sandbox="none"), path)
    env.reset(seed=0, options={"task_id": "turing-award-first"})
    action = "thinking \ud800 about it \udfff"
    env.step(action)
    env.close()
    (trajectory,) = read_trajectories(path)
    assert trajectory.steps[0].action == action
    assert trajectory.steps[0].model_extra == {
        "action_repairs": {"lone_surrogates": 2, "replaced_with": "U+FFFD"}
    }
    path.read_bytes().decode("utf-8")  # the file itself is valid UTF-8


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


def test_a_last_line_torn_inside_a_multibyte_character_is_ignored(demo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    env.reset(seed=0, options={"task_id": "ada-standard"})
    env.step("<think>Zürich</think> still looking")
    env.close()
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex("ü".encode()) + 1])  # the step line ends halfway through the "ü"
    (trajectory,) = read_trajectories(path)
    assert trajectory.steps == [] and not trajectory.complete
    (row,) = score_trajectories([path], "gaia").rows  # `miroenv score` reads it the same way
    assert not row.complete and row.steps == 0


def test_a_rerun_appending_after_a_torn_tail_keeps_every_earlier_episode(
    demo_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "t.jsonl"
    env = RecordTrajectory(ResearchEnv(demo_dir), path)
    for task_id in ("ada-standard", "turing-award-first"):
        run_episode(env, ScriptedPolicy(ACTIONS[task_id]), task_id=task_id, seed=0)
    env.reset(seed=0, options={"task_id": "babbage-eniac-gap"})
    env.step(ACTIONS["babbage-eniac-gap"][0])
    env.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data.splitlines()[-1]) // 2 - 1])  # killed mid-line

    rerun = RecordTrajectory(ResearchEnv(demo_dir), path)
    run_episode(rerun, ScriptedPolicy(ACTIONS["ada-standard"]), task_id="ada-standard", seed=1)
    rerun.close()
    episodes = read_trajectories(path)
    assert [(t.header.env["task"]["task_id"], t.complete) for t in episodes] == [
        ("ada-standard", True),
        ("turing-award-first", True),
        ("babbage-eniac-gap", False),
        ("ada-standard", True),
    ]
    assert episodes[2].steps == []  # its only step was the torn line
    assert all(t.footer.reward == 1.0 for t in episodes if t.footer is not None)


RECORDER = """
import sys
from miroenv import RecordTrajectory, ResearchEnv, ScriptedPolicy, run_episode
from miroenv.demo import ACTIONS

PAD = "<think>" + "é" * 40_000 + "</think>\\n"  # long multibyte lines, so a kill often lands mid-write
snapshot, out, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3])
env = RecordTrajectory(ResearchEnv(snapshot, sandbox="none"), out)
order = sorted(ACTIONS)
for number in range(episodes):
    task_id = order[number % len(order)]
    actions = [PAD + a if isinstance(a, str) else a for a in ACTIONS[task_id]]
    run_episode(env, ScriptedPolicy(actions), task_id=task_id, seed=number)
env.close()
"""


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _cut_last_line(path: Path, rng: random.Random) -> None:
    """Cut the file inside its last line, as power loss after a kill can leave it (often inside an "é")."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: rng.randrange(start + 1, len(data))])


def _summary(path: Path) -> list[tuple[str, bool, int]]:
    return [(t.header.episode_id, t.complete, len(t.steps)) for t in read_trajectories(path)]


def test_recordings_killed_at_random_points_and_rerun_appending_keep_every_finished_episode(
    demo_dir: Path, tmp_path: Path
) -> None:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    path = tmp_path / "runs.jsonl"
    command = [sys.executable, str(script), str(demo_dir), str(path)]
    here = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's miroenv
    rng = random.Random(5)
    earlier: list[tuple[str, bool, int]] = []
    for kills in range(1, 7):
        start = _size(path)
        process = subprocess.Popen(
            [*command, "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=here
        )
        try:
            deadline = time.monotonic() + 60
            while _size(path) == start and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 1.0))
            process.send_signal(signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL, process.communicate()[1].decode()
        finally:
            if process.poll() is None:
                process.kill()
        if kills % 2:
            _cut_last_line(path, rng)
        now = _summary(path)  # never raises, however the last run was cut
        assert now[: len(earlier)] == earlier, "an earlier episode changed when a rerun appended"
        assert len(now) > len(earlier) and sum(not complete for _, complete, _ in now) <= kills
        earlier = now
    final = subprocess.run([*command, "5"], capture_output=True, timeout=300, env=here)
    assert final.returncode == 0, final.stderr.decode()

    episodes = read_trajectories(path)
    assert _summary(path)[: len(earlier)] == earlier
    assert len(episodes) == len(earlier) + 5 and all(t.complete for t in episodes[-5:])
    for trajectory in episodes:
        task_id = trajectory.header.env["task"]["task_id"]
        recorded = [a.split("</think>\n", 1)[1] if isinstance(a, str) else a for a in trajectory.actions()]
        assert recorded == ACTIONS[task_id][: len(recorded)]
        assert [s.index for s in trajectory.steps] == list(range(1, len(trajectory.steps) + 1))
        if trajectory.footer is not None:
            assert trajectory.footer.steps == len(trajectory.steps) == len(ACTIONS[task_id])
            assert trajectory.footer.reward == 1.0 or task_id == "birth-years-product"  # no sandbox here
