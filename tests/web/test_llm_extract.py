"""The optional LLM extractor: MiroThinker's prompt, disk cache, recording into the snapshot, offline replay."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv
from miroenv.demo import WIKI
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.web import Snapshot
from miroenv.web.llm_extract import LLMExtractor
from tests.servers import CompletionServer


@pytest.fixture
def completions() -> Iterator[CompletionServer]:
    server = CompletionServer()
    yield server
    server.close()


@pytest.fixture
def snapshot_copy(demo_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo_dir, tmp_path / "snap"))


def scrape(info: str, url: str = WIKI + "ENIAC") -> str:
    call = ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": url, "info_to_extract": info},
    )
    return str(McpXmlFormat().render_call(call))


def run_scrape(snapshot: Path, extractor: LLMExtractor, info: str) -> tuple[str, dict[str, Any]]:
    env = ResearchEnv(snapshot, llm_extractor=extractor)
    env.reset(options={"task_id": "babbage-eniac-gap"})
    observation, _, _, _, info_dict = env.step(scrape(info))
    env.close()
    return observation, info_dict


def test_live_answer_is_cached_recorded_and_replayed_offline(
    completions: CompletionServer, snapshot_copy: Path, tmp_path: Path
) -> None:
    live = LLMExtractor(
        "judge-model",
        base_url=completions.url,
        api_key="k",
        cache_dir=tmp_path / "cache",
        record_to=snapshot_copy,
    )
    first, _ = run_scrape(snapshot_copy, live, "dedication date")
    payload = json.loads(first)
    assert payload["extracted_info"] == "ANSWER(dedication date)"
    assert (payload["model_used"], payload["tokens_used"]) == ("judge-model", 42)
    (request,) = completions.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    prompt = request["messages"][0]["content"]
    assert prompt.startswith(
        "You are given a piece of content and the requirement of information to extract."
    )
    assert "15 February 1946" in prompt and prompt.endswith("EXTRACTED INFORMATION:")

    again, _ = run_scrape(snapshot_copy, live, "dedication date")
    assert again == first and len(completions.requests) == 1
    live.close()

    assert Snapshot(snapshot_copy).manifest.counts["extractions"] == 1
    replay_only = LLMExtractor("judge-model")
    replayed, info = run_scrape(snapshot_copy, replay_only, "dedication date")
    assert replayed == first and info["error_kinds"] == []
    assert len(completions.requests) == 1


def test_replay_without_record_or_endpoint_is_an_infra_error(demo_dir: Path) -> None:
    observation, info = run_scrape(demo_dir, LLMExtractor("judge-model"), "anything")
    assert info["error_kinds"] == ["infra"]
    assert "no recorded extraction" in json.loads(observation)["error"]


def test_endpoint_errors_are_retried_then_reported(completions: CompletionServer, demo_dir: Path) -> None:
    completions.fail_next = 1
    observation, info = run_scrape(demo_dir, LLMExtractor("m", base_url=completions.url, backoff=0.01), "who")
    assert json.loads(observation)["extracted_info"] == "ANSWER(who)" and len(completions.requests) == 2
    completions.fail_next = 10
    observation, info = run_scrape(
        demo_dir, LLMExtractor("m", base_url=completions.url, retries=1, backoff=0.01), "x"
    )
    assert info["error_kinds"] == ["infra"] and "HTTP 503" in json.loads(observation)["error"]
