"""Recorded profiles: the recorded prompt as system prompt, recorded results first, the snapshot after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miroenv import ResearchEnv
from miroenv.logs import ImportSummary
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.tools.profiles import PROFILES, get_profile
from miroenv.tools.recorded import RecordedTool, register_recorded_profiles


def call(tool: str, **arguments: object) -> str:
    return str(
        McpXmlFormat().render_call(ToolCall(server="tool-google-search", name=tool, arguments=arguments))
    )


@pytest.fixture
def env(mirorl_import: tuple[Path, ImportSummary]) -> ResearchEnv:
    out, summary = mirorl_import
    assert register_recorded_profiles(out / "snapshot") == summary.profiles
    return ResearchEnv(out / "snapshot", profile=summary.profiles[0])


def test_registered_profile_has_the_recorded_tools(mirorl_import: tuple[Path, ImportSummary]) -> None:
    out, summary = mirorl_import
    register_recorded_profiles(out / "snapshot" / "recorded_profiles.json")
    profile = get_profile(summary.profiles[0])
    assert summary.profiles[0] in PROFILES
    assert [(s.server, s.name) for s in profile.specs()] == [
        ("tool-google-search", "google_search"),
        ("tool-google-search", "scrape"),
    ]
    assert all(isinstance(tool, RecordedTool) for server in profile.servers for tool in server.tools)
    assert profile.specs()[0].input_schema["required"] == ["q", "gl", "hl"]


def test_reset_shows_the_recorded_prompt_and_task(env: ResearchEnv) -> None:
    observation, _ = env.reset(options={"task_id": "testData-0001"})
    assert observation.startswith("\nIn this environment you have access to a set of tools")
    assert "Today is: 2025-06-16" in observation
    assert observation.endswith("in the requestion strictly and wrap the final answer in \\boxed{}.")
    env.close()


def test_unrecorded_calls_fall_back_to_the_snapshot(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "testData-0001"})
    observation, *_ = env.step(call("google_search", q="Shai Family Matters season episode", num=3))
    payload = json.loads(observation)
    assert payload["searchParameters"]["q"] == "Shai Family Matters season episode"
    assert payload["organic"][0]["link"] == "https://www.imdb.com/title/tt0577117/"
    observation, *_, info = env.step(
        call("scrape", url="https://en.wikipedia.org/wiki/Mischa_Cotlar", page=1)
    )
    assert observation.startswith("Title: Mischa Cotlar - Wikipedia") and info["error_kinds"] == []
    observation, *_, info = env.step(call("scrape", url="https://nowhere.example/"))
    assert "not in this snapshot" in observation and info["error_kinds"] == ["tool"]
    env.close()


def test_recorded_error_results_count_as_tool_errors(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "testData-0013"})
    observation, *_, info = env.step(
        call(
            "google_search",
            q="Aseprite GitHub issue #4137 'Added option to enable the 'Snap to Grid' option for the brush preview'",
        )
    )
    assert observation == "Tool execution failed: Search query and region code and language are required"
    assert info["error_kinds"] == ["tool"]
    env.close()
