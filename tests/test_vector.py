"""Vector envs: Gymnasium's `SyncVectorEnv` / `AsyncVectorEnv` on `miroenv/Research-v0`, and
`ConcurrentVectorEnv`, in every autoreset mode, giving the same episodes for the same seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

import miroenv  # noqa: F401 - registers miroenv/Research-v0
from miroenv import ResearchEnv, ScriptedPolicy
from miroenv.demo import ACTIONS
from miroenv.spaces import UnicodeText
from miroenv.vector import ConcurrentVectorEnv

NUM_ENVS = 4
STEPS = 16
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


def drive(vec: VectorEnv[Any, Any, Any], mode: AutoresetMode, seed: int = 7) -> list[Any]:
    """Play the demo's scripted actions on every sub-env for `STEPS` steps, resetting the way `mode` wants;
    the trace of everything the vector env returned (minus timings)."""
    observations, infos = vec.reset(seed=seed)
    n = vec.num_envs
    policies = [ScriptedPolicy(ACTIONS[infos["task_id"][i]]) for i in range(n)]
    trace: list[Any] = [("reset", list(observations), list(infos["task_id"]))]
    ended = np.zeros(n, dtype=np.bool_)
    for _ in range(STEPS):
        actions = tuple(
            "" if (mode == AutoresetMode.NEXT_STEP and ended[i]) else policies[i](observations[i])
            for i in range(n)
        )
        observations, rewards, terminated, truncated, infos = vec.step(actions)
        for i in range(n):
            if (mode == AutoresetMode.NEXT_STEP and ended[i]) or (
                mode == AutoresetMode.SAME_STEP and (terminated[i] or truncated[i])
            ):
                policies[i] = ScriptedPolicy(ACTIONS[infos["task_id"][i]])
        ended = terminated | truncated
        step: list[Any] = [list(observations), rewards.tolist(), terminated.tolist(), truncated.tolist()]
        step.append([str(t) for t in infos["task_id"]])
        if mode == AutoresetMode.SAME_STEP and ended.any():
            step.append([infos["final_obs"][i] for i in range(n) if ended[i]])
            step.append([infos["final_info"]["answer"][i] for i in range(n) if ended[i]])
        trace.append(step)
        if mode == AutoresetMode.DISABLED and ended.any():
            observations, reset_infos = vec.reset(options={"reset_mask": ended.copy()})
            for i in np.flatnonzero(ended):
                policies[i] = ScriptedPolicy(ACTIONS[reset_infos["task_id"][i]])
            trace.append(("partial reset", list(observations), np.flatnonzero(ended).tolist()))
            ended[:] = False
    return trace


def assert_episodes_ended(trace: list[Any]) -> None:
    ends = sum(sum(step[2]) + sum(step[3]) for step in trace if isinstance(step, list))
    assert ends >= NUM_ENVS, "the trace must cover whole episodes and their autoresets"


@pytest.fixture(scope="module")
def reference(demo_dir: Path) -> dict[AutoresetMode, list[Any]]:
    """Each mode's trace through Gymnasium's SyncVectorEnv (made with `gym.make_vec`)."""
    traces = {}
    for mode in MODES:
        vec = gym.make_vec(
            "miroenv/Research-v0",
            num_envs=NUM_ENVS,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": mode},
            snapshot=demo_dir,
        )
        assert vec.single_observation_space == UnicodeText(50_000_000)
        traces[mode] = drive(vec, mode)
        vec.close()
        assert_episodes_ended(traces[mode])
    return traces


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_async_vector_env_matches_sync(
    demo_dir: Path, reference: dict[AutoresetMode, list[Any]], mode: AutoresetMode
) -> None:
    # "spawn": a forked child of a process with running threads (the asyncio API's pool) can deadlock
    vec = gym.make_vec(
        "miroenv/Research-v0",
        num_envs=NUM_ENVS,
        vectorization_mode="async",
        vector_kwargs={"autoreset_mode": mode, "shared_memory": False, "context": "spawn"},
        snapshot=demo_dir,
    )
    try:
        assert drive(vec, mode) == reference[mode]
    finally:
        vec.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("workers", [1, NUM_ENVS])
def test_concurrent_vector_env_matches_sync_whatever_the_concurrency(
    demo_dir: Path, reference: dict[AutoresetMode, list[Any]], mode: AutoresetMode, workers: int
) -> None:
    vec = ConcurrentVectorEnv.from_snapshot(NUM_ENVS, demo_dir, max_workers=workers, autoreset_mode=mode)
    assert vec.max_workers == workers
    assert vec.metadata["autoreset_mode"] == mode
    try:
        assert drive(vec, mode) == reference[mode]
    finally:
        vec.close()


def test_concurrent_vector_env_api(demo_dir: Path) -> None:
    vec = ConcurrentVectorEnv([lambda: ResearchEnv(demo_dir)] * 3, autoreset_mode="Disabled")
    observations, infos = vec.reset(seed=[5, 6, 7], options={"task_id": "ada-standard"})
    assert vec.observation_space.contains(observations)
    assert list(infos["task_id"]) == ["ada-standard"] * 3
    assert infos["_task_id"].all()
    assert vec.np_random_seed == (5, 6, 7)
    assert vec.get_attr("summary_turn") == (True, True, True)
    assert [len(t) for t in vec.call("tools_openai")] == [len(vec.envs[0].unwrapped.tools_openai())] * 3  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        vec.step(("a", "b"))
    with pytest.raises(ValueError):
        vec.reset(seed=[1])
    with pytest.raises(TypeError):
        vec.reset(options={"reset_mask": [True, False, True]})
    _, _, terminated, _, _ = vec.step(("done", "done", "<think>still going"))
    _, rewards, terminated, _, _ = vec.step(("\\boxed{MIL-STD-1815}", "\\boxed{no}", "\\boxed{x}"))
    assert terminated.all() and rewards.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(RuntimeError, match="reset them"):
        vec.step(("a", "b", "c"))
    vec.close()


def test_from_snapshot_checks_a_tasks_files_attachments_against_the_given_root(
    demo_dir: Path, tmp_path: Path
) -> None:
    tasks_dir, files_dir = tmp_path / "tasks", tmp_path / "files"
    tasks_dir.mkdir()
    files_dir.mkdir()
    (files_dir / "notes.txt").write_text("Babbage")
    tasks_file = tasks_dir / "tasks.jsonl"
    tasks_file.write_text('{"task_id": "t", "question": "q?", "answer": "a", "files": ["notes.txt"]}\n')
    vec = ConcurrentVectorEnv.from_snapshot(
        2, demo_dir, tasks_file, attachments_root=files_dir, sandbox="none"
    )
    try:
        assert [env.unwrapped.tasks[0].files for env in vec.envs] == [(str(files_dir / "notes.txt"),)] * 2
    finally:
        vec.close()
