"""Fault injection: a seeded, pure schedule; failures that read like the real ones (a real sandbox is killed);
`info["faults"]` consistent with the calls; the same seed replays the same trajectory, another seed does not."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from miroenv import RecordTrajectory, ResearchEnv, ScriptedPolicy, Trajectory, read_trajectories, run_episode
from miroenv.demo import ACTIONS, TASKS
from miroenv.sandbox.base import SandboxBackend, SandboxError
from miroenv.sandbox.client import AgentSandbox
from miroenv.sandbox.docker import DockerSandbox, DockerSandboxBackend, default_image, docker_status
from miroenv.sandbox.process import ProcessSandbox, ProcessSandboxBackend
from miroenv.testing import (
    FaultInjection,
    FaultPlan,
    SnapshotBuilder,
    create_sandbox_call,
    first_difference,
    python_call,
    sandbox_id,
    scrape_call,
    search_call,
    tool_call,
)
from miroenv.testing.faults import FAULT_KINDS, FaultKind
from miroenv.tools.python import SANDBOXES_KEY
from miroenv.tools.runner import run_call
from miroenv.web import Snapshot
from miroenv.web.base import Page, SearchRequest
from miroenv.web.record.errors import RecordingError
from miroenv.web.record.retry import RetryPolicy
from miroenv.web.record.serper import SerperClient

PAGE = "https://example.org/answer"
PAGE_TEXT = "# Answer\n\n" + "The answer to everything is 42. " * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return (
        SnapshotBuilder("faults")
        .page(PAGE, PAGE_TEXT, title="Answer")
        .search("the answer", [PAGE])
        .task("t1", "What is the answer?", answer="42")
        .build(tmp_path_factory.mktemp("faults") / "snapshot")
    )


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module", params=["docker", "process"])
def backend(request: pytest.FixtureRequest) -> Iterator[SandboxBackend]:
    made: SandboxBackend
    if request.param == "docker":
        usable, reason = docker_status(default_image())
        if not usable:
            _skip_or_fail(f"Docker sandboxes unavailable: {reason}")
        made = DockerSandboxBackend(pool_size=1)
    else:
        try:
            made = ProcessSandboxBackend()
        except SandboxError as exc:
            _skip_or_fail(f"process sandboxes unavailable: {exc}")
            raise
    yield made
    made.close()


# ------------------------------------------------------------------ the schedule


def test_the_schedule_is_a_pure_function_of_seed_task_call_and_tool() -> None:
    plan = FaultPlan(seed=7, rates={"rate_limit": 0.3, "timeout": 0.2})
    calls = [
        (task, index, tool)
        for task in ("a", "b")
        for index in range(1, 200)
        for tool in ("google_search", "scrape")
    ]
    first = [plan.fault_for(*call) for call in calls]
    assert first == [
        FaultPlan(seed=7, rates={"rate_limit": 0.3, "timeout": 0.2}).fault_for(*c) for c in calls
    ]
    assert first != [
        FaultPlan(seed=8, rates={"rate_limit": 0.3, "timeout": 0.2}).fault_for(*c) for c in calls
    ]
    assert {plan.fault_for("a", i, "scrape") for i in range(1, 200)} == {"timeout", None}


def test_rates_set_the_frequency_of_each_kind() -> None:
    plan = FaultPlan(seed=1, rates={"rate_limit": 0.25, "timeout": 0.1})
    counts = Counter(plan.fault_for("t", index, "google_search") for index in range(1, 20_001))
    assert abs(counts["rate_limit"] / 20_000 - 0.25) < 0.015
    assert abs(counts["timeout"] / 20_000 - 0.1) < 0.01
    assert FaultPlan(seed=1, rates={"rate_limit": 0.0}).kinds_for("google_search") == []


def test_rates_that_cannot_be_met_are_refused_naming_the_tool() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FaultPlan(seed=0, rates={"timeout": 1.5})
    with pytest.raises(ValueError, match=r"can hit google_search add up to 1\.3"):
        FaultPlan(seed=0, rates={"rate_limit": 0.8, "timeout": 0.5})
    assert FaultPlan(seed=0, rates={"rate_limit": 1.0, "sandbox_crash": 1.0}).rates["rate_limit"] == 1.0


# ------------------------------------------------------------------ each kind, as the real failure reads


class _Always429(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(429)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def _real_429_message(query: str) -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always429)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = SerperClient(
        f"http://127.0.0.1:{server.server_address[1]}", "key", retry=RetryPolicy(base_delay=0.0)
    )
    try:
        client.search(SearchRequest(q=query))
    except RecordingError as exc:
        return str(exc)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    raise AssertionError("the server answered 429 but the search succeeded")


def _step_with(
    tiny: Path, rates: dict[str, float], action: Any, **env_kwargs: Any
) -> tuple[str, dict[str, Any]]:
    env = FaultInjection(ResearchEnv(tiny, **env_kwargs), seed=0, rates=rates)  # type: ignore[arg-type]
    try:
        env.reset(seed=0, options={"task_id": "t1"})
        observation, _, _, _, info = env.step(action)
    finally:
        env.close()
    return observation, info


def test_rate_limit_reads_like_a_real_serper_429(tiny: Path) -> None:
    observation, info = _step_with(tiny, {"rate_limit": 1.0}, search_call("  the answer "))
    assert observation == _real_429_message("the answer")
    assert info["faults"] == [
        {
            "call_index": 1,
            "tool": "google_search",
            "server": "search_and_scrape_webpage",
            "kind": "rate_limit",
            "error_kind": "infra",
            "detail": "HTTP 429 on every attempt",
        }
    ]
    assert info["error_kinds"] == ["infra"] and info["errors"]["infra"] == 1


def test_a_rate_limited_query_is_not_counted_as_used(tiny: Path) -> None:
    env = FaultInjection(ResearchEnv(tiny), seed=0, rates={"rate_limit": 1.0})
    try:
        env.reset(seed=0, options={"task_id": "t1"})
        env.step(search_call("the answer"))
        env.close()
        plain = ResearchEnv(tiny)
        plain.reset(seed=0, options={"task_id": "t1"})
        observation, *_ = plain.step(search_call("the answer"))
        plain.close()
    finally:
        env.close()
    assert "already been used" not in observation and PAGE in observation


def test_timeout_reads_like_the_watchdog_and_uses_the_env_limit(tiny: Path) -> None:
    observation, info = _step_with(tiny, {"timeout": 1.0}, scrape_call(PAGE, "answer"), tool_timeout_s=7.5)
    assert observation == (
        "Tool call to scrape_and_extract_info on jina_scrape_llm_summary failed. Error: timed out after 7.5 s"
    )
    assert info["faults"][0]["kind"] == "timeout" and info["calls"][0]["error_kind"] == "infra"


def test_truncated_and_empty_pages_come_back_as_successful_reads_of_less(tiny: Path) -> None:
    observation, info = _step_with(tiny, {"truncated_page": 1.0}, scrape_call(PAGE, "answer"))
    result = json.loads(observation)
    kept = result["scrape_stats"]["char_count"]
    assert result["success"] is True and 0.1 * len(PAGE_TEXT) <= kept < 0.9 * len(PAGE_TEXT)
    [fault] = info["faults"]
    assert fault["kind"] == "truncated_page" and fault["error_kind"] is None
    assert fault["detail"] == f"{PAGE}: {kept} of {len(PAGE_TEXT)} characters delivered"
    assert info["error_kinds"] == []

    observation, info = _step_with(tiny, {"empty_page": 1.0}, scrape_call(PAGE, "answer"))
    result = json.loads(observation)
    assert result["success"] is True and result["extracted_info"] == ""
    assert result["scrape_stats"]["char_count"] == 0 and info["faults"][0]["kind"] == "empty_page"


def test_a_fault_that_cannot_apply_is_not_reported(tiny: Path) -> None:
    observation, info = _step_with(tiny, {"empty_page": 1.0}, scrape_call("https://nowhere.org/x", "answer"))
    assert "is not in this snapshot" in observation
    assert info["faults"] == [] and info["error_kinds"] == ["tool"]


STALLED = "https://example.org/stalled"


class _StalledSite(Snapshot):
    """A snapshot served as a live web whose page at STALLED hangs until released (a stuck live site)."""

    live = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.answered = threading.Event()

    def page(self, url: str) -> Page:
        if url != STALLED:
            return super().page(url)
        self.release.wait(30)
        try:
            return super().page(url)
        finally:
            self.answered.set()


def test_a_damaged_call_abandoned_by_the_watchdog_damages_no_later_call(tmp_path: Path) -> None:
    rates: dict[FaultKind, float] = {"truncated_page": 0.5}
    tool = "scrape_and_extract_info"
    seed = next(
        seed
        for seed in range(1000)
        if [FaultPlan(seed=seed, rates=rates).fault_for("t1", i, tool) for i in (1, 2, 3)]
        == ["truncated_page", None, None]
    )
    path = (
        SnapshotBuilder("stalled")
        .page(PAGE, PAGE_TEXT, title="Answer")
        .page(STALLED, "A page that takes its time.")
        .task("t1", "What is the answer?", answer="42")
        .build(tmp_path / "snapshot")
    )
    web = _StalledSite(path)
    env = FaultInjection(ResearchEnv(web, path / "tasks.jsonl", tool_timeout_s=0.2), seed=seed, rates=rates)
    try:
        env.reset(seed=0, options={"task_id": "t1"})
        observation, _, _, _, info = env.step(scrape_call(STALLED, "anything"))
        assert observation == (
            "Tool call to scrape_and_extract_info on jina_scrape_llm_summary failed. Error: timed out after 0.2 s"
        )
        assert info["faults"] == [] and info["error_kinds"] == ["infra"]

        assert not web.answered.is_set()  # the abandoned call is still inside its damaged read
        observation, _, _, _, info = env.step(scrape_call(PAGE, "answer"))
        assert json.loads(observation)["scrape_stats"]["char_count"] == len(PAGE_TEXT)
        assert info["faults"] == [] and info["error_kinds"] == []

        web.release.set()
        assert web.answered.wait(30)
        observation, _, _, _, info = env.step(scrape_call(PAGE, "answer"))
        assert json.loads(observation)["scrape_stats"]["char_count"] == len(PAGE_TEXT)
        assert info["faults"] == [] and env.episode_faults == []
    finally:
        web.release.set()
        env.close()


def _killed(sandbox: AgentSandbox) -> bool:
    if isinstance(sandbox, DockerSandbox):
        import docker  # type: ignore[import-untyped]

        return not docker.from_env().api.inspect_container(sandbox.container_id)["State"]["Running"]
    assert isinstance(sandbox, ProcessSandbox)
    try:
        os.kill(sandbox.host_pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{sandbox.host_pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] == "Z"


def test_sandbox_crash_kills_the_sandbox_and_later_calls_find_it_gone(
    tiny: Path, backend: SandboxBackend
) -> None:
    env = FaultInjection(
        ResearchEnv(tiny, sandbox=backend),
        seed=0,
        rates={"sandbox_crash": 1.0},
        targets={"sandbox_crash": ("run_python_code",)},
    )
    try:
        env.reset(seed=0, options={"task_id": "t1"})
        env.step(create_sandbox_call())
        ctx = env.unwrapped._episode.ctx  # type: ignore[attr-defined]
        [(public_id, sandbox)] = ctx.state[SANDBOXES_KEY].items()
        observation, _, _, _, info = env.step(python_call("6 * 7", task_id="t1"))
        assert _killed(sandbox)
        assert observation == (
            f"[ERROR]: Failed to run code in sandbox {public_id} after 3 attempts. Exception type: AgentGoneError, "
            f"Details: sandbox {public_id} is no longer usable: the agent's channel closed or sent data while idle"
        )
        assert [f["kind"] for f in info["faults"]] == ["sandbox_crash"] and info["error_kinds"] == ["infra"]
        again, _, _, _, info = env.step(python_call("1", task_id="t1"))
        assert again == observation and info["faults"] == [] and info["error_kinds"] == ["infra"]
        env.step(create_sandbox_call())
        fresh, _, _, _, info = env.step(
            tool_call("run_command", {"command": "echo alive", "sandbox_id": sandbox_id("t1", 2)})
        )
        assert "stdout='alive\\n'" in fresh and info["faults"] == []
    finally:
        env.close()


def test_wrapping_needs_a_research_env_and_close_restores_the_runner(tiny: Path) -> None:
    with pytest.raises(TypeError, match="wraps a ResearchEnv"):
        FaultInjection(gym.make("CartPole-v1"), seed=0)
    base = ResearchEnv(tiny)
    env = FaultInjection(base, seed=0)
    assert base.call_runner is env.injector
    env.close()
    assert base.call_runner is run_call


# ------------------------------------------------------------------ reproducibility on the demo

RATES: dict[FaultKind, float] = {
    "rate_limit": 0.3,
    "timeout": 0.1,
    "truncated_page": 0.25,
    "empty_page": 0.15,
    "sandbox_crash": 0.5,
}


def _run_demo(
    demo_dir: Path, out: Path, seed: int, task_ids: list[str]
) -> tuple[list[Trajectory], list[Any]]:
    """Every listed demo task with its scripted actions under faults drawn from `seed`."""
    env = RecordTrajectory(FaultInjection(ResearchEnv(demo_dir, sandbox="auto"), seed=seed, rates=RATES), out)
    faults: list[Any] = []
    try:
        for task_id in task_ids:
            run_episode(
                env,
                ScriptedPolicy(ACTIONS[task_id]),
                task_id=task_id,
                seed=0,
                on_step=lambda view: faults.extend(view.info.get("faults", [])),
            )
    finally:
        env.close()
    return read_trajectories(out), faults


def _by_task(trajectories: list[Trajectory]) -> dict[str, Trajectory]:
    return {t.header.env["task"]["task_id"]: t for t in trajectories}


def test_same_seed_gives_identical_trajectories_and_another_seed_different_ones(
    demo_dir: Path, tmp_path: Path
) -> None:
    tasks = [t.task_id for t in TASKS]
    first, first_faults = _run_demo(demo_dir, tmp_path / "a.jsonl", 11, tasks)
    second, second_faults = _run_demo(demo_dir, tmp_path / "b.jsonl", 11, tasks)
    assert len(first) == len(second) == len(tasks)
    for one, two in zip(first, second, strict=True):
        assert first_difference(one, two) is None
        assert [s.observation for s in one.steps] == [s.observation for s in two.steps]
    assert first_faults == second_faults
    assert {f["kind"] for f in first_faults} == set(FAULT_KINDS), first_faults
    recorded = [fault for t in first for step in t.steps for fault in getattr(step, "faults", [])]
    assert recorded == first_faults  # the trajectory log keeps what was injected, step by step

    other, other_faults = _run_demo(demo_dir, tmp_path / "c.jsonl", 12, tasks)
    assert other_faults != first_faults
    assert any(first_difference(one, two) is not None for one, two in zip(first, other, strict=True))


def test_faults_do_not_depend_on_episode_order_or_threads(demo_dir: Path, tmp_path: Path) -> None:
    tasks = [t.task_id for t in TASKS]
    forward, _ = _run_demo(demo_dir, tmp_path / "forward.jsonl", 5, tasks)
    backward, _ = _run_demo(demo_dir, tmp_path / "backward.jsonl", 5, tasks[::-1])
    with ThreadPoolExecutor(len(tasks)) as pool:
        threaded = list(
            pool.map(lambda t: _run_demo(demo_dir, tmp_path / f"thread-{t}.jsonl", 5, [t])[0][0], tasks)
        )
    expected = _by_task(forward)
    for trajectory in [*backward, *threaded]:
        task_id = trajectory.header.env["task"]["task_id"]
        assert first_difference(expected[task_id], trajectory) is None, task_id


def test_info_faults_agree_with_the_calls_they_hit(demo_dir: Path, tmp_path: Path) -> None:
    env = FaultInjection(ResearchEnv(demo_dir, sandbox="auto"), seed=3, rates=RATES)
    seen = 0
    try:
        for task in TASKS:
            env.reset(seed=0, options={"task_id": task.task_id})
            for action in ACTIONS[task.task_id]:
                _, _, terminated, truncated, info = env.step(action)
                first_index = (
                    info["budget"]["tool_calls"]
                    - len([c for c in info["calls"] if c["error_kind"] != "format"])
                    + 1
                )
                for fault in info["faults"]:
                    call = info["calls"][fault["call_index"] - first_index]
                    assert (call["tool"], call["error_kind"]) == (fault["tool"], fault["error_kind"])
                    if fault["error_kind"] is not None:
                        assert fault["error_kind"] in info["error_kinds"]
                    seen += 1
                if terminated or truncated:
                    break
            assert [f.call_index for f in env.episode_faults] == sorted(
                {f.call_index for f in env.episode_faults}
            )
    finally:
        env.close()
    assert seen >= 3
