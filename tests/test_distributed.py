"""The Ray env pool on a local Ray cluster started here: scripted episodes match a local env, results stream
as they complete, a killed actor's episodes come back as infra errors while the others finish, timeouts
free the batch, and everything shuts down."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from miroenv import ResearchEnv, load_actions  # noqa: E402
from miroenv.distributed import EnvPool, EnvResult, ResetRequest, StepRequest  # noqa: E402

TASKS = ["ada-standard", "babbage-eniac-gap", "turing-award-first", "baby-first-program"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local two-CPU Ray cluster for this module, shut down at the end."""
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()
    assert not ray.is_initialized()


def slow_env_factory(demo_dir: Path) -> Callable[[], Any]:
    """An env factory whose envs sleep on an action ``SLEEP <seconds>`` (then treat it as an empty reply).

    Built in a function so Ray pickles it by value: the workers need not import this test module."""
    snapshot, tasks = str(demo_dir), str(demo_dir / "tasks.jsonl")

    def make() -> Any:
        import time as _time

        from miroenv import ResearchEnv as _Env

        class SlowEnv(_Env):
            def step(self, action: Any) -> Any:
                if isinstance(action, str) and action.startswith("SLEEP "):
                    _time.sleep(float(action.split()[1]))
                    action = "no tool call"
                return super().step(action)

        return SlowEnv(snapshot, tasks, sandbox="none")

    return make


def _reset_all(pool: EnvPool) -> list[EnvResult]:
    results = pool.reset_batch(
        [ResetRequest(env_id=i, options={"task_id": TASKS[i % len(TASKS)]}) for i in range(pool.num_envs)]
    ).gather()
    assert all(r.ok and r.kind == "reset" for r in results), [r.info.get("infra_error") for r in results]
    return results


def test_scripted_episodes_match_a_local_env(ray_cluster: None, demo_dir: Path) -> None:
    scripts = load_actions(demo_dir / "actions.jsonl")
    env_kwargs = {"snapshot": demo_dir, "tasks": demo_dir / "tasks.jsonl", "sandbox": "none"}
    expected: dict[str, list[str]] = {}
    local = ResearchEnv(demo_dir, demo_dir / "tasks.jsonl", sandbox="none")
    try:
        for task_id in TASKS:
            observation, _ = local.reset(options={"task_id": task_id})
            observations = [observation]
            for action in scripts[task_id]:
                observation, _, terminated, truncated, _ = local.step(action)
                observations.append(observation)
                if terminated or truncated:
                    break
            expected[task_id] = observations
    finally:
        local.close()

    with EnvPool(2, 2, env_kwargs, num_cpus_per_actor=0.5) as pool:
        assert pool.num_envs == 4 and pool.scheduling_strategy == "SPREAD"
        where = pool.describe()
        assert [d["actor"] for d in where] == [0, 1]
        assert [d["env_ids"] for d in where] == [[0, 1], [2, 3]]
        assert len({d["pid"] for d in where}) == 2 and all(d["node_id"] for d in where)

        seen: dict[int, list[str]] = {i: [r.observation] for i, r in enumerate(_reset_all(pool))}
        final: dict[int, EnvResult] = {}
        turn = 0
        while len(final) < pool.num_envs:
            actions = {i: scripts[TASKS[i]][turn] for i in range(pool.num_envs) if i not in final}
            batch = pool.step_batch(actions)
            assert len(batch) == len(actions)
            ordered = batch.gather()
            assert [r.env_id for r in ordered] == list(actions)
            for result in ordered:
                assert result.ok and result.kind == "step"
                seen[result.env_id].append(result.observation)
                if result.done:
                    final[result.env_id] = result
            turn += 1

        for env_id, task_id in enumerate(TASKS):
            assert seen[env_id] == expected[task_id]
            assert final[env_id].terminated and final[env_id].reward == 1.0
            assert final[env_id].info["task_id"] == task_id and final[env_id].info["env_id"] == env_id

        with pytest.raises(ValueError, match="only once"):
            pool.step_batch([StepRequest(0, "a"), StepRequest(0, "b")])
        with pytest.raises(ValueError, match="outside"):
            pool.reset_batch([7])
    with pytest.raises(RuntimeError, match="closed"):
        pool.reset_batch([0])


def test_env_kwargs_are_checked(demo_dir: Path) -> None:
    with pytest.raises(ValueError, match="kind string"):
        EnvPool(1, 1, {"snapshot": demo_dir, "sandbox": object()})
    with pytest.raises(ValueError, match="snapshot"):
        EnvPool(1, 1, {"tasks": demo_dir / "tasks.jsonl"})
    with pytest.raises(ValueError, match="unknown env_kwargs: colour"):
        EnvPool(1, 1, {"snapshot": demo_dir, "colour": "blue"})
    with pytest.raises(ValueError, match="exactly one"):
        EnvPool(1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        EnvPool(0, 1, {"snapshot": demo_dir})


def test_results_arrive_as_they_complete(ray_cluster: None, demo_dir: Path) -> None:
    with EnvPool(1, 2, env_factory=slow_env_factory(demo_dir), num_cpus_per_actor=0.5) as pool:
        _reset_all(pool)
        started = time.monotonic()
        order = [r.env_id for r in pool.step_batch({0: "SLEEP 1.5", 1: "SLEEP 0.1"})]
        assert order == [1, 0]
        # both envs of one actor step at the same time: two 1 s sleeps take about 1 s, not 2
        _reset_all(pool)
        started = time.monotonic()
        results = pool.step_batch({1: "SLEEP 1.0", 0: "SLEEP 1.0"}).gather()
        assert time.monotonic() - started < 1.8
        assert [r.env_id for r in results] == [1, 0] and all(r.ok for r in results)


def test_killed_actor_episodes_come_back_as_infra_errors(ray_cluster: None, demo_dir: Path) -> None:
    with EnvPool(2, 2, env_factory=slow_env_factory(demo_dir), num_cpus_per_actor=0.5) as pool:
        _reset_all(pool)
        victim = pool.describe()[0]
        started = time.monotonic()
        batch = pool.step_batch({i: "SLEEP 2" for i in range(4)})
        time.sleep(0.5)  # the steps are under way
        ray.kill(pool.actors[0])
        streamed = list(batch)
        assert time.monotonic() - started < 15
        assert sorted(r.env_id for r in streamed) == [0, 1, 2, 3]
        by_env = {r.env_id: r for r in streamed}
        for env_id in (0, 1):
            result = by_env[env_id]
            assert not result.ok and result.truncated and not result.terminated
            assert result.info["error_kinds"] == ["infra"]
            assert result.infra_error is not None
            assert result.infra_error["kind"] == "actor_died" and result.infra_error["actor"] == 0
        for env_id in (2, 3):
            result = by_env[env_id]
            assert result.ok and result.observation and result.info["task_id"] == TASKS[env_id]
            assert "infra" not in result.info["error_kinds"]

        # the lost episodes answer at once until reset; the survivors keep going
        after = {r.env_id: r for r in pool.step_batch({0: "x", 2: "x"}).gather()}
        assert after[0].infra_error is not None and after[0].infra_error["kind"] == "episode_lost"
        assert after[2].ok

        # a reset replaces the dead actor with a fresh one
        _reset_all(pool)
        replacement = pool.describe()[0]
        assert replacement["pid"] != victim["pid"] and replacement["env_ids"] == [0, 1]
        assert all(r.ok for r in pool.step_batch({i: "SLEEP 0" for i in range(4)}).gather())


def test_a_hung_request_times_out_without_holding_the_batch(ray_cluster: None, demo_dir: Path) -> None:
    with EnvPool(1, 2, env_factory=slow_env_factory(demo_dir), num_cpus_per_actor=0.5, timeout=30) as pool:
        _reset_all(pool)
        started = time.monotonic()
        batch = pool.step_batch([StepRequest(0, "SLEEP 20", timeout=1.0), StepRequest(1, "SLEEP 0.2")])
        results = batch.gather()
        assert time.monotonic() - started < 5
        hung, fine = results
        assert hung.infra_error is not None and hung.infra_error["kind"] == "timeout"
        assert fine.ok and fine.env_id == 1
        lost = pool.step_batch({0: "x"}).gather()[0]
        assert lost.infra_error is not None and lost.infra_error["kind"] == "episode_lost"


def test_each_actor_runs_code_in_its_own_sandbox_backend(ray_cluster: None, demo_dir: Path) -> None:
    scripts = load_actions(demo_dir / "actions.jsonl")["birth-years-product"]
    env_kwargs = {"snapshot": str(demo_dir), "tasks": str(demo_dir / "tasks.jsonl"), "sandbox": "process"}
    with EnvPool(1, 1, env_kwargs, num_cpus_per_actor=0.5) as pool:
        pool.reset_batch([ResetRequest(0, options={"task_id": "birth-years-product"})]).gather()
        observations = [pool.step_batch({0: action}).gather()[0] for action in scripts]
    assert all(r.ok for r in observations)
    assert "3470280" in observations[2].observation
    assert observations[-1].terminated and observations[-1].reward == 1.0


def test_an_actor_that_cannot_start_reports_infra_errors(ray_cluster: None, tmp_path: Path) -> None:
    with EnvPool(1, 2, {"snapshot": tmp_path / "missing"}, num_cpus_per_actor=0.5, timeout=60) as pool:
        started = time.monotonic()
        results = pool.reset_batch([0, 1]).gather()
        assert time.monotonic() - started < 30
    assert [r.env_id for r in results] == [0, 1]
    for result in results:
        assert result.infra_error is not None and result.infra_error["kind"] == "actor_died"
        assert "missing" in result.infra_error["message"]


SPREAD_SCRIPT = """
import sys
import ray
from ray.cluster_utils import Cluster
from miroenv.distributed import EnvPool

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "include_dashboard": False})
cluster.add_node(num_cpus=4)
try:
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()
    for strategy in ("DEFAULT", "SPREAD"):
        kwargs = {"snapshot": sys.argv[1], "sandbox": "none"}
        with EnvPool(2, 1, kwargs, num_cpus_per_actor=1, scheduling_strategy=strategy) as pool:
            nodes = {d["node_id"] for d in pool.describe()}
            assert all(r.ok for r in pool.reset_batch([0, 1]).gather())
        print(strategy, "NODES", len(nodes))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def test_actors_spread_over_the_nodes_of_a_two_node_cluster(tmp_path: Path, demo_dir: Path) -> None:
    """Two raylets on this machine make a two-node cluster: Ray's default packs both actors on one node,
    the pool's SPREAD puts one on each. Run in a subprocess: a process connects to one Ray cluster only."""
    import subprocess
    import sys

    script = tmp_path / "spread.py"
    script.write_text(SPREAD_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(demo_dir)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DEFAULT NODES 1" in done.stdout
    assert "SPREAD NODES 2" in done.stdout
