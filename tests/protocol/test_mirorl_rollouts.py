"""The MCP XML parser and boxed extraction on 128 real MiroThinker-style rollouts (MiroRL test data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miroenv.protocol.boxed import extract_boxed
from miroenv.protocol.mcp_xml import McpXmlFormat, parse_mcp_xml

ROLLOUTS_WITHOUT_CALLS = {2, 25}


@pytest.fixture(scope="module")
def rollouts(shared_data: Path) -> list[dict[str, Any]]:
    path = shared_data / "mirorl_rollouts" / "testData.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 128
    return rows


def first_arguments(response: str) -> dict[str, Any]:
    """The first call's arguments, found with plain string search (independent of the parser)."""
    start = response.index("<arguments>") + len("<arguments>")
    end = response.index("</arguments>", start)
    value = json.loads(response[start:end])
    assert isinstance(value, dict)
    return value


def test_first_call_of_every_rollout(rollouts: list[dict[str, Any]]) -> None:
    with_calls = 0
    for index, row in enumerate(rollouts):
        response = row["response_str"]
        parsed = parse_mcp_xml(response)
        if index in ROLLOUTS_WITHOUT_CALLS:
            assert "<use_mcp_tool>" not in response
            assert (parsed.calls, parsed.problems) == ([], []), index
            continue
        with_calls += 1
        assert parsed.calls, index
        first = parsed.calls[0]
        assert (first.server, first.name) == ("tool-google-search", "google_search"), index
        assert first.arguments == first_arguments(response), index
        assert first.repaired is False
        assert first.raw.startswith("<use_mcp_tool>") and first.raw.endswith("</use_mcp_tool>")
        assert first.raw in response
    assert with_calls == 126


def test_every_call_in_every_rollout_parses(rollouts: list[dict[str, Any]]) -> None:
    fmt = McpXmlFormat()
    for index, row in enumerate(rollouts):
        response = row["response_str"]
        parsed = fmt.parse(response)
        assert parsed.problems == [], index
        assert len(parsed.calls) == response.count("<use_mcp_tool>"), index


def test_boxed_answer_of_every_rollout(rollouts: list[dict[str, Any]]) -> None:
    boxed = 0
    for index, row in enumerate(rollouts):
        response = row["response_str"]
        answer = extract_boxed(response)
        if "\\boxed{" in response:
            boxed += 1
            assert answer, index
            assert "\\boxed" not in answer, index
        else:
            assert answer is None, index
    assert boxed > 100


def test_known_answers(rollouts: list[dict[str, Any]]) -> None:
    assert extract_boxed(rollouts[1]["response_str"]) == "Bonnie"
    assert extract_boxed(rollouts[25]["response_str"]) == "June\\ 16,\\ 1982"
