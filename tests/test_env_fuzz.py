"""Hypothesis fuzzing of `step()`: arbitrary text and malformed tool calls never raise out of the env."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv

FRAGMENTS = [
    "<use_mcp_tool>",
    "</use_mcp_tool>",
    "<server_name>",
    "</server_name>",
    "<tool_name>",
    "</tool_name>",
    "<arguments>",
    "</arguments>",
    "search_and_scrape_webpage",
    "google_search",
    "tool-python",
    "jina_scrape_llm_summary",
    "scrape_and_extract_info",
    '{"q": "x"}',
    "{'q': 'y',}",
    "{",
    "}",
    '"',
    "\\",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    '{"name": "google_search", "arguments": {}}',
    "\\boxed{",
    "null",
    "\n",
    " ",
    "\x00",
    "\ud7ff",
    "🙂",
]

malformed_calls = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12).map("".join)
broken_mcp = st.builds(
    lambda server, tool, args, close: (
        f"<use_mcp_tool>\n<server_name>{server}</server_name>\n<tool_name>{tool}</tool_name>\n"
        f"<arguments>\n{args}\n</arguments>" + ("\n</use_mcp_tool>" if close else "")
    ),
    st.sampled_from(["search_and_scrape_webpage", "tool-python", "", "x" * 300]),
    st.sampled_from(["google_search", "run_python_code", "", "scrape_and_extract_info"]),
    st.one_of(st.text(max_size=80), st.sampled_from(["{", "[1, 2]", '"str"', "{'q': None}", '{"q": 1e999}'])),
    st.booleans(),
)
actions = st.one_of(st.text(max_size=400), malformed_calls, broken_mcp)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(actions, min_size=1, max_size=6))
def test_step_never_raises_and_reports_bad_calls(demo_dir: Path, batch: list[str]) -> None:
    env = ResearchEnv(demo_dir)
    try:
        env.reset(seed=0)
        for action in batch:
            obs, reward, terminated, truncated, info = env.step(action)
            assert isinstance(obs, str) and isinstance(reward, float)
            assert isinstance(info["errors"], dict)
            if "format" in info["error_kinds"]:
                assert not terminated and not truncated
                assert "could not be parsed" in obs
            if terminated or truncated:
                env.reset(seed=1)
    finally:
        env.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=broken_mcp)
def test_unclosed_or_broken_mcp_call_keeps_episode_going(demo_dir: Path, action: str) -> None:
    env = ResearchEnv(demo_dir)
    try:
        env.reset(seed=0)
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated and not truncated
        assert info["phase"] == "act"
        assert obs.strip()
        assert info["error_kinds"], "a broken call must be reported as an error"
    finally:
        env.close()
