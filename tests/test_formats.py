"""The same intent written in every tool-call format gives the same calls and the same results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv
from miroenv.demo import WIKI
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.registry import FORMATS, get_format

INTENT = [
    ToolCall(
        server="search_and_scrape_webpage",
        name="google_search",
        arguments={"q": "Charles Babbage birth date"},
    ),
    ToolCall(
        server="search_and_scrape_webpage",
        name="google_search",
        arguments={"q": "Turing Award first recipient", "num": 2},
    ),
    ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": WIKI + "ENIAC", "info_to_extract": "dedication date"},
    ),
    ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": "https://missing.example/page", "info_to_extract": "anything"},
    ),
    ToolCall(
        server="search_and_scrape_webpage",
        name="google_search",
        arguments={"q": "Charles Babbage birth date"},
    ),
    ToolCall(
        server="tool-python", name="run_python_code", arguments={"sandbox_id": "sandbox1", "code_block": "1"}
    ),
]


def _for_format(call: ToolCall, fmt: str, index: int) -> ToolCall:
    if fmt == "mcp_xml":
        return call
    return ToolCall(name=call.name, arguments=call.arguments, call_id=f"call_{index}")


def _run(demo_dir: Path, fmt: str) -> list[dict[str, Any]]:
    env = ResearchEnv(demo_dir, tool_format=fmt)
    codec = get_format(fmt)
    env.reset(options={"task_id": "ada-standard"})
    outcomes = []
    for index, call in enumerate(INTENT):
        action = codec.render_call(_for_format(call, fmt, index))
        observation, _, terminated, truncated, info = env.step(action)
        assert not terminated and not truncated
        (outcome,) = info["calls"]
        assert observation == outcome["text"]
        outcomes.append({k: outcome[k] for k in ("server", "tool", "arguments", "text", "error_kind")})
    env.close()
    return outcomes


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "mcp_xml"])
def test_formats_agree_with_mcp_xml(demo_dir: Path, fmt: str) -> None:
    reference = _run(demo_dir, "mcp_xml")
    assert [o["error_kind"] for o in reference] == [None, None, None, "tool", "tool", "tool"]
    assert _run(demo_dir, fmt) == reference


def test_all_three_formats_are_registered() -> None:
    assert set(FORMATS) == {"mcp_xml", "hermes", "openai"}
