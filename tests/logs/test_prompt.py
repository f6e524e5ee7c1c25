"""Recovering date, servers, tools and schemas from recorded MCP system prompts."""

from __future__ import annotations

from typing import Any

from miroenv.logs import prompt_date, recover_prompt
from miroenv.logs.mirorl import split_prompt
from miroenv.protocol.prompts import render_mirothinker_system_prompt
from miroenv.tools.profiles import mirothinker_v1


def test_mirothinker_v1_prompt_round_trips() -> None:
    specs = mirothinker_v1().specs()
    recovered = recover_prompt(render_mirothinker_system_prompt(specs, "2025-03-04"))
    assert recovered.date == "2025-03-04"
    assert recovered.servers == ["tool-python", "search_and_scrape_webpage", "jina_scrape_llm_summary"]
    assert recovered.specs == specs
    assert recovered.problems == []


def test_real_mirorl_prompt(rollouts: list[dict[str, Any]]) -> None:
    system, user = split_prompt(rollouts[0]["prompt_str"])
    assert user.startswith('What season and episode did Shai appear on the TV show "Family Matters"?')
    recovered = recover_prompt(system)
    assert recovered.text == system
    assert recovered.date == "2025-06-16"
    assert recovered.servers == ["tool-google-search"]
    assert [s.name for s in recovered.specs] == ["google_search", "scrape"]
    search, scrape = recovered.specs
    assert search.description.startswith("Tool to perform web searches via Serper API")
    assert search.input_schema["required"] == ["q", "gl", "hl"]
    assert search.input_schema["properties"]["num"] == {
        "type": "number",
        "description": "Number of results to return (default: 10)",
    }
    assert scrape.input_schema["properties"]["includeMarkdown"]["default"] is False
    assert scrape.input_schema["required"] == ["url"]


def test_every_rollout_has_the_same_recoverable_prompt(rollouts: list[dict[str, Any]]) -> None:
    recovered = {recover_prompt(split_prompt(r["prompt_str"])[0]).model_dump_json() for r in rollouts}
    assert len(recovered) == 1


def test_unreadable_schema_is_reported_not_raised() -> None:
    text = (
        "Today is: 2024-01-02\n\n## Server name: s\n### Tool name: t\nDescription: does things\n"
        "Input JSON schema: {'type': 'object', 'properties': {broken\n\n## Server name: u\n### Tool name: v\n"
        'Description: multi\nline\nInput JSON schema: {"type": "object", "required": ["x"]}\n'
    )
    recovered = recover_prompt(text)
    assert [(s.server, s.name, s.description) for s in recovered.specs] == [
        ("s", "t", "does things"),
        ("u", "v", "multi\nline"),
    ]
    assert recovered.specs[0].input_schema == {}
    assert recovered.specs[1].input_schema == {"type": "object", "required": ["x"]}
    assert len(recovered.problems) == 1 and "'t'" in recovered.problems[0]


def test_prompt_without_tools_or_date() -> None:
    recovered = recover_prompt("You are helpful.")
    assert (recovered.date, recovered.specs, recovered.problems) == (None, [], [])
    assert prompt_date("x Today is: 2025-01-31 y") == "2025-01-31"
