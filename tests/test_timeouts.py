"""Timeouts: a hung tool call is cut off at its limit and never holds up other episodes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from miroenv import ResearchEnv
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.web import SearchRequest, SearchResponse, Snapshot


class HangingWeb(Snapshot):
    """The demo snapshot, except that searching for 'hang' blocks until released (a stuck live backend)."""

    live = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = threading.Event()

    def search(self, request: SearchRequest) -> SearchResponse:
        if request.q == "hang":
            self.release.wait(30)
        return super().search(request)


def search(q: str) -> str:
    call = ToolCall(server="search_and_scrape_webpage", name="google_search", arguments={"q": q})
    return str(McpXmlFormat().render_call(call))


def test_hung_call_is_an_infra_error_at_its_timeout(demo_dir: Path) -> None:
    web = HangingWeb(demo_dir)
    env = ResearchEnv(web, demo_dir / "tasks.jsonl", tool_timeout_s=0.3)
    env.reset(seed=0)
    start = time.monotonic()
    observation, _, terminated, truncated, info = env.step(search("hang"))
    elapsed = time.monotonic() - start
    web.release.set()
    assert 0.3 <= elapsed < 2.0
    assert info["error_kinds"] == ["infra"] and not terminated and not truncated
    assert (
        observation
        == "Tool call to google_search on search_and_scrape_webpage failed. Error: timed out after 0.3 s"
    )
    assert "1791" in env.step(search("Charles Babbage birth date"))[0]
    env.close()


def test_episode_wall_clock_caps_a_hung_call_and_truncates(demo_dir: Path) -> None:
    web = HangingWeb(demo_dir)
    env = ResearchEnv(web, demo_dir / "tasks.jsonl", max_episode_seconds=0.5)
    env.reset(seed=0)
    start = time.monotonic()
    _, _, terminated, truncated, info = env.step(search("hang"))
    web.release.set()
    assert time.monotonic() - start < 2.0
    assert truncated and not terminated and info["truncated_by"] == "time"
    env.close()


def test_replayed_lookups_run_inline_without_a_watchdog(demo_dir: Path) -> None:
    import threading as _threading

    seen: list[str] = []

    class Spy(Snapshot):
        def search(self, request: SearchRequest) -> SearchResponse:
            seen.append(_threading.current_thread().name)
            return super().search(request)

    env = ResearchEnv(Spy(demo_dir), demo_dir / "tasks.jsonl", tool_timeout_s=5)
    env.reset(seed=0)
    env.step(search("Charles Babbage birth date"))
    env.close()
    assert seen == [_threading.current_thread().name]


def test_a_hung_episode_does_not_delay_the_others(demo_dir: Path) -> None:
    web = HangingWeb(demo_dir)
    timings: dict[str, float] = {}

    def run(name: str, queries: list[str]) -> None:
        env = ResearchEnv(web, demo_dir / "tasks.jsonl", tool_timeout_s=1.0)
        env.reset(seed=0)
        start = time.monotonic()
        for q in queries:
            env.step(search(q))
        timings[name] = time.monotonic() - start
        env.close()

    threads = [threading.Thread(target=run, args=("hung", ["hang"]))] + [
        threading.Thread(target=run, args=(f"ok{i}", [f"history of computing {i} {j}" for j in range(20)]))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    web.release.set()
    assert 1.0 <= timings["hung"] < 3.0
    assert all(timings[f"ok{i}"] < 1.0 for i in range(4)), timings
