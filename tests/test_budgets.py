"""Machine-wide budgets: spend caps and rate limits hold across processes; live backends obey them."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from miroenv.budgets import BudgetExceededError, CallBudget, SharedBudget


def _charge_many(db: str, count: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    budget = SharedBudget(db)
    granted = 0
    for _ in range(count):
        try:
            budget.charge("search", 1.0, cap=50)
            granted += 1
        except BudgetExceededError:
            pass
    results.put(granted)


def test_cap_holds_exactly_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "b.sqlite")
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    workers = [context.Process(target=_charge_many, args=(db, 30, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    granted = [results.get(timeout=5) for _ in workers]
    assert sum(granted) == 50
    assert SharedBudget(db).spent("search") == 50


def _acquire_times(db: str, count: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    budget = SharedBudget(db)
    for _ in range(count):
        budget.acquire("api", rate=20.0, burst=1.0, timeout=30)
        results.put(time.time())


def test_rate_limit_is_shared_by_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "b.sqlite")
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    workers = [context.Process(target=_acquire_times, args=(db, 5, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    stamps = sorted(results.get(timeout=5) for _ in range(20))
    span = stamps[-1] - stamps[0]
    assert span >= 19 / 20 * 0.8, f"20 calls at 20/s across 4 processes took only {span:.3f} s"


def test_charge_refusal_charges_nothing_and_names_the_cap(tmp_path: Path) -> None:
    budget = SharedBudget(tmp_path / "b.sqlite")
    budget.charge("judge", 2.0, cap=3.0)
    with pytest.raises(
        BudgetExceededError, match=r"spend cap 'judge' reached: 2 spent, 2 more would pass the cap 3"
    ):
        budget.charge("judge", 2.0, cap=3.0)
    assert budget.spent("judge") == 2.0
    budget.reset("judge")
    assert budget.spent("judge") == 0.0


def test_rate_wait_beyond_timeout_is_refused(tmp_path: Path) -> None:
    budget = SharedBudget(tmp_path / "b.sqlite")
    budget.acquire("slow", rate=0.1, timeout=1)
    with pytest.raises(BudgetExceededError, match="no slot within"):
        budget.acquire("slow", rate=0.1, timeout=0.5)


def test_llm_extractor_respects_the_cap_and_reports_cost(tmp_path: Path, demo_dir: Path) -> None:
    import json

    from miroenv import ResearchEnv
    from miroenv.protocol.calls import ToolCall
    from miroenv.protocol.mcp_xml import McpXmlFormat
    from miroenv.web.llm_extract import LLMExtractor
    from tests.servers import CompletionServer

    server = CompletionServer()
    budget = CallBudget("extractor", max_calls=1, shared=SharedBudget(tmp_path / "b.sqlite"))
    extractor = LLMExtractor("m", base_url=server.url, budget=budget)
    env = ResearchEnv(demo_dir, llm_extractor=extractor)
    env.reset(options={"task_id": "babbage-eniac-gap"})

    def scrape(info: str) -> tuple[str, dict[str, object]]:
        call = ToolCall(
            server="jina_scrape_llm_summary",
            name="scrape_and_extract_info",
            arguments={"url": "https://en.wikipedia.org/wiki/ENIAC", "info_to_extract": info},
        )
        observation, _, _, _, info_dict = env.step(str(McpXmlFormat().render_call(call)))
        return observation, info_dict

    first, info = scrape("date")
    assert json.loads(first)["extracted_info"] == "ANSWER(date)"
    assert info["cost"] == {"extractor_requests": 1.0, "extractor_tokens": 42.0}
    second, info = scrape("designers")
    assert info["error_kinds"] == ["infra"] and "spend cap 'extractor' reached" in json.loads(second)["error"]
    assert len(server.requests) == 1
    env.close()
    server.close()
