"""`AsyncResearchEnv` and `run_episodes`: same episodes as the sync env, overlapping, deterministic."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv, ScriptedPolicy, aio, run_episode
from miroenv.aio import AsyncResearchEnv, EpisodePolicy, run_episodes
from miroenv.demo import ACTIONS, TASKS
from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.process import ProcessSandboxBackend

TIMING_KEYS = ("duration", "elapsed")


def strip_timings(value: Any) -> Any:
    """`value` without the wall-clock fields (durations, elapsed time): the env's only nondeterminism."""
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if not any(t in str(k) for t in TIMING_KEYS)}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


@pytest.fixture(autouse=True, scope="module")
def _stop_shared_pool() -> Iterator[None]:
    """Stop the shared worker threads after this module, so later tests that fork see no extra threads."""
    yield
    with aio._shared_lock:
        if aio._shared_executor is not None:
            aio._shared_executor.shutdown(wait=True)
            aio._shared_executor = None


def scripted(env: AsyncResearchEnv, task_id: str | None) -> EpisodePolicy:
    assert task_id is not None
    return ScriptedPolicy(ACTIONS[task_id])


@pytest.fixture(scope="module")
def sandbox_kind() -> str:
    """`process` where namespaced process sandboxes work here, else `none` (the Python task is skipped)."""
    try:
        ProcessSandboxBackend(isolation="namespaces").close()
    except (SandboxError, OSError):
        return "none"
    return "process"


def test_astep_matches_the_sync_env(demo_dir: Path) -> None:
    task_id = "babbage-eniac-gap"
    sync_env = ResearchEnv(demo_dir)
    expected = run_episode(sync_env, ScriptedPolicy(ACTIONS[task_id]), task_id=task_id, seed=3)
    sync_env.close()

    async def main() -> list[str]:
        async with AsyncResearchEnv.make(demo_dir) as env:
            observation, info = await env.areset(seed=3, options={"task_id": task_id})
            observations = [observation]
            assert info["task_id"] == task_id
            for action in ACTIONS[task_id]:
                observation, reward, terminated, truncated, info = await env.astep(action)
                observations.append(observation)
                if terminated or truncated:
                    break
            assert terminated and float(reward) == 1.0
            assert env.messages()[0]["role"] == "system"
            assert len(env.context()) == len(env.messages())
            return observations

    assert asyncio.run(main()) == expected.observations


def test_calls_on_one_env_never_overlap(demo_dir: Path) -> None:
    active = 0
    peak = 0
    guard = threading.Lock()

    class Slow(ResearchEnv):
        def step(self, action: Any) -> Any:
            nonlocal active, peak
            with guard:
                active += 1
                peak = max(peak, active)
            time.sleep(0.01)
            try:
                return super().step(action)
            finally:
                with guard:
                    active -= 1

    async def main() -> None:
        env = AsyncResearchEnv(Slow(demo_dir))
        await env.areset(seed=0, options={"task_id": "ada-standard"})
        await asyncio.gather(*(env.astep("<think>x</think> still thinking") for _ in range(5)))
        await env.aclose()
        await env.aclose()  # idempotent
        with pytest.raises(RuntimeError, match="closed"):
            await env.astep("x")

    asyncio.run(main())
    assert peak == 1


def test_different_envs_overlap(demo_dir: Path) -> None:
    class Sleepy(ResearchEnv):
        def step(self, action: Any) -> Any:
            time.sleep(0.2)  # stands in for a sandbox round trip: releases the GIL
            return super().step(action)

    async def main() -> float:
        envs = [AsyncResearchEnv(Sleepy(demo_dir)) for _ in range(8)]
        await asyncio.gather(*(e.areset(seed=i) for i, e in enumerate(envs)))
        start = time.perf_counter()
        await asyncio.gather(*(e.astep("no tool call here") for e in envs))
        elapsed = time.perf_counter() - start
        await asyncio.gather(*(e.aclose() for e in envs))
        return elapsed

    assert asyncio.run(main()) < 0.2 * 8 / 2


def test_a_cancelled_step_keeps_the_env_locked_until_it_finishes(demo_dir: Path) -> None:
    class Sleepy(ResearchEnv):
        def step(self, action: Any) -> Any:
            time.sleep(0.2)
            return super().step(action)

    async def main() -> None:
        env = AsyncResearchEnv(Sleepy(demo_dir))
        await env.areset(seed=0, options={"task_id": "ada-standard"})
        task = asyncio.ensure_future(env.astep("thinking"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        _, _, _, _, info = await env.astep("thinking again")
        assert info["turn"] == 2  # the cancelled step ran to its end first
        await env.aclose()

    asyncio.run(main())


def test_run_episodes_returns_in_input_order_and_raises_policy_errors(demo_dir: Path) -> None:
    task_ids = ["baby-first-program", "ada-standard", "turing-award-first", "babbage-eniac-gap"]

    async def main() -> None:
        envs = [AsyncResearchEnv.make(demo_dir) for _ in range(3)]
        runs = await run_episodes(envs, scripted, task_ids, seeds=[0, 1, 2, 3], concurrency=3)
        assert [r.task_id for r in runs] == task_ids
        assert [r.index for r in runs] == [0, 1, 2, 3]
        assert all(r.result.reward == 1.0 and r.result.terminated for r in runs)

        def broken(env: AsyncResearchEnv, task_id: str | None) -> EpisodePolicy:
            def act(observation: str) -> str:
                raise ZeroDivisionError("policy bug")

            return act

        with pytest.raises(ZeroDivisionError):
            await run_episodes(envs, broken, task_ids, concurrency=2)
        with pytest.raises(ValueError):
            await run_episodes(envs, scripted, task_ids, seeds=[1])
        assert await run_episodes(envs, scripted, []) == []
        await asyncio.gather(*(e.aclose() for e in envs))

    asyncio.run(main())


@pytest.fixture(scope="module")
def determinism_runs(demo_dir: Path, sandbox_kind: str) -> Iterator[dict[int, list[Any]]]:
    """16 scripted episodes (tasks cycled, seeds 0..15) run with concurrency 1 and 16."""
    ids = [t.task_id for t in TASKS if sandbox_kind != "none" or t.task_id != "birth-years-product"]
    task_ids = [ids[i % len(ids)] for i in range(16)]

    async def run(concurrency: int) -> list[Any]:
        envs = [AsyncResearchEnv.make(demo_dir, sandbox=sandbox_kind) for _ in range(concurrency)]
        try:
            return await run_episodes(
                envs, scripted, task_ids, seeds=list(range(16)), concurrency=concurrency, keep_steps=True
            )
        finally:
            await asyncio.gather(*(e.aclose() for e in envs))

    yield {c: asyncio.run(run(c)) for c in (1, 16)}


def test_concurrency_1_and_16_give_identical_trajectories(determinism_runs: dict[int, list[Any]]) -> None:
    serial, concurrent = determinism_runs[1], determinism_runs[16]
    assert len(serial) == len(concurrent) == 16
    for a, b in zip(serial, concurrent, strict=True):
        assert (a.task_id, a.seed) == (b.task_id, b.seed)
        assert a.result.terminated and a.result.reward == 1.0, a.task_id
        assert len(a.steps) == len(b.steps)
        for x, y in zip(a.steps, b.steps, strict=True):
            assert x.observation == y.observation
            assert x.action == y.action
            assert (x.reward, x.terminated, x.truncated) == (y.reward, y.terminated, y.truncated)
            assert strip_timings(x.info) == strip_timings(y.info)


def test_inline_mode_runs_on_the_loop_thread_with_the_same_results(demo_dir: Path) -> None:
    task_ids = ["ada-standard", "babbage-eniac-gap", "baby-first-program"]

    async def main(inline: bool) -> list[Any]:
        envs = [AsyncResearchEnv.make(demo_dir, inline=inline) for _ in range(3)]
        runs = await run_episodes(envs, scripted, task_ids, seeds=[1, 2, 3], keep_steps=True)
        await asyncio.gather(*(e.aclose() for e in envs))
        return [[(v.observation, v.reward, strip_timings(v.info)) for v in r.steps] for r in runs]

    assert asyncio.run(main(True)) == asyncio.run(main(False))
