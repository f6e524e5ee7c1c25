"""Hypothesis fuzzing of `step()`: any text (every code point, lone surrogates included) and real malformations of
tool calls never raise out of the env, and the episode goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv
from miroenv.history import History, Message
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import parse_mcp_xml
from miroenv.protocol.registry import FORMATS
from miroenv.protocol.text import scrub_text
from miroenv.testing.actions import tool_call
from miroenv.testing.strategies import any_text, broken_mcp_calls, fragment_soup, malformed_actions

ROOT = Path(__file__).resolve().parents[1]

actions = st.one_of(st.text(max_size=400), any_text, fragment_soup, broken_mcp_calls)


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
@given(action=broken_mcp_calls)
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


# ------------------------------------------------------------------ any str, every code point (issue 12 item 4)

SEARCH = "search_and_scrape_webpage"


def mcp_call(tool: str, arguments_text: str, server: str = SEARCH) -> str:
    """An MCP XML call with its arguments written exactly as given (escapes, raw characters and all)."""
    return (
        f"<use_mcp_tool>\n<server_name>{server}</server_name>\n<tool_name>{tool}</tool_name>\n"
        f"<arguments>\n{arguments_text}\n</arguments>\n</use_mcp_tool>"
    )


def assert_sendable(env: ResearchEnv, observation: str, info: dict[str, Any]) -> None:
    """What a trainer or `miroenv eval` does next must work: the context, observation and info encode as UTF-8."""
    json.dumps(env.context(), ensure_ascii=False).encode("utf-8")
    observation.encode("utf-8")
    json.dumps(info, ensure_ascii=False, default=str).encode("utf-8")


def assert_episode_goes_on(env: ResearchEnv, tool_format: str, query: str = "Ada Lovelace") -> None:
    """A normal search right after the bad action runs and returns results."""
    follow = tool_call("google_search", {"q": query}, tool_format=tool_format)
    observation, _, terminated, truncated, info = env.step(follow)
    assert [c["error_kind"] for c in info["calls"]] == [None], info["calls"]
    assert "Ada Lovelace - Wikipedia" in observation
    assert not terminated and not truncated
    assert_sendable(env, observation, info)


def check_any_action(env: ResearchEnv, tool_format: str, action: str | dict[str, Any]) -> None:
    """`step(action)` answers; the episode still acts (or took the action as a final reply) and goes on."""
    env.reset(seed=0, options={"task_id": "ada-standard"})
    observation, reward, terminated, truncated, info = env.step(action)
    assert isinstance(observation, str) and isinstance(reward, float)
    assert_sendable(env, observation, info)
    if info["phase"] == "act":
        assert not terminated and not truncated
        assert_episode_goes_on(env, tool_format)
    else:
        assert info["phase"] == "summary", info
        assert not env.format.parse(action).attempted_tool_use
        _, _, terminated, _, info = env.step("\\boxed{Ada}")
        assert terminated and info["answer"] == "Ada"


@pytest.fixture(scope="module")
def format_envs(demo_dir: Path) -> Iterator[dict[str, ResearchEnv]]:
    made = {name: ResearchEnv(demo_dir, tool_format=name) for name in FORMATS}
    yield made
    for env in made.values():
        env.close()


@pytest.fixture
def mcp_env(format_envs: dict[str, ResearchEnv]) -> ResearchEnv:
    """The module's MiroThinker-format env (no sandbox)."""
    return format_envs["mcp_xml"]


@pytest.fixture(scope="module")
def rollout_calls(shared_data: Path) -> list[ToolCall]:
    """The calls of the first 40 real MiroRL rollouts: seeds the malformations are made from."""
    lines = (shared_data / "mirorl_rollouts" / "testData.jsonl").read_text(encoding="utf-8").splitlines()
    calls = [
        c
        for line in lines[:40]
        if line.strip()
        for c in parse_mcp_xml(json.loads(line)["response_str"]).calls
    ]
    assert len(calls) >= 40
    return calls


def test_any_characters_draws_surrogates_nul_and_astral_code_points() -> None:
    seen: set[str] = set()

    @settings(max_examples=300, database=None)
    @given(text=any_text)
    def collect(text: str) -> None:
        for char in text:
            point = ord(char)
            seen.add("surrogate" if 0xD800 <= point <= 0xDFFF else "nul" if point == 0 else "")
            seen.add("astral" if point > 0xFFFF else "control" if point < 0x20 else "")

    collect()
    assert {"surrogate", "nul", "astral", "control"} <= seen


@pytest.mark.parametrize("tool_format", FORMATS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_text_or_real_malformation_never_raises_and_the_episode_goes_on(
    format_envs: dict[str, ResearchEnv], rollout_calls: list[ToolCall], tool_format: str, data: st.DataObject
) -> None:
    action = data.draw(st.one_of(any_text, malformed_actions(tool_format, rollout_calls)))
    check_any_action(format_envs[tool_format], tool_format, action)


def test_a_lone_surrogate_neither_raises_nor_poisons_the_episode(mcp_env: ResearchEnv) -> None:
    mcp_env.reset(seed=0, options={"task_id": "ada-standard"})
    call = tool_call("google_search", {"q": "Ada Lovelace"})
    assert isinstance(call, str)
    observation, _, _, _, info = mcp_env.step("\ud800 let me search " + call)
    assert info["action_repairs"] == {"lone_surrogates": 1, "replaced_with": "U+FFFD"}
    assert "Ada Lovelace - Wikipedia" in observation
    assert mcp_env.messages()[-2]["content"].startswith("\ufffd let me search")
    observation, _, _, _, info = mcp_env.step("\udc80\udfff")
    assert info["phase"] == "summary" and info["action_repairs"]["lone_surrogates"] == 2
    _, reward, terminated, _, info = mcp_env.step("\\boxed{MIL-STD-1815\ud83d}")
    assert terminated and reward == 0.0 and info["answer"] == "MIL-STD-1815\ufffd"
    assert_sendable(mcp_env, observation, info)


def test_a_surrogate_pair_split_into_two_code_points_is_joined() -> None:
    assert scrub_text("a\ud83d\ude00b") == ("a\U0001f600b", 2)


@pytest.mark.parametrize(
    ("arguments_text", "named"),
    [
        ('{"q": "\\ud800"}', "'q' holds a lone surrogate (U+D800) at position 0"),
        ('{"q": "Ada \\udfff Lovelace"}', "'q' holds a lone surrogate (U+DFFF) at position 4"),
        ('{"q": "Ada\\u0000"}', "'q' holds a NUL character (U+0000) at position 3"),
        ('{"q": "Ada\x00"}', "'q' holds a NUL character (U+0000) at position 3"),
        ('{"q": "Ada \ud800"}', "'q' holds a lone surrogate (U+D800) at position 4"),
        ('{"q": "x", "tbs": ["a", "\\ud800"]}', "'tbs[1]' holds a lone surrogate"),
        ('{"q\\u0000": "x"}', "'a key of the arguments' holds a NUL character"),
    ],
)
def test_unusable_code_points_in_arguments_are_a_format_error_naming_the_argument(
    mcp_env: ResearchEnv, arguments_text: str, named: str
) -> None:
    mcp_env.reset(seed=0, options={"task_id": "ada-standard"})
    observation, _, terminated, truncated, info = mcp_env.step(mcp_call("google_search", arguments_text))
    assert info["error_kinds"] == ["format"] and not terminated and not truncated
    assert named in observation
    assert "of tool 'google_search' are not usable" in observation
    assert_sendable(mcp_env, observation, info)
    assert_episode_goes_on(mcp_env, "mcp_xml")


@pytest.mark.parametrize("tool_format", FORMATS)
def test_escaped_surrogates_are_named_in_every_format(
    format_envs: dict[str, ResearchEnv], tool_format: str
) -> None:
    env = format_envs[tool_format]
    env.reset(seed=0, options={"task_id": "ada-standard"})
    actions: dict[str, str | dict[str, Any]] = {
        "mcp_xml": mcp_call("google_search", '{"q": "\\ud800"}'),
        "hermes": '<tool_call>\n{"name": "google_search", "arguments": {"q": "\\ud800"}}\n</tool_call>',
        "openai": {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "google_search", "arguments": '{"q": "\\ud800"}'},
                }
            ],
        },
    }
    observation, _, _, _, info = env.step(actions[tool_format])
    assert info["error_kinds"] == ["format"]
    assert "'q' holds a lone surrogate (U+D800)" in observation
    if tool_format == "openai":
        assert env.messages()[-1]["tool_call_id"] == "c1"
    assert_episode_goes_on(env, tool_format)


@pytest.mark.parametrize(
    ("action", "error_kinds", "says"),
    [
        (
            mcp_call("google_searchgoogle_search", '{"q": "Ada"}'),
            ["tool"],
            "Unknown tool: google_searchgoogle_search",
        ),
        (
            mcp_call("google_search", '{"q": "a"}{"q": "b"}'),
            ["format"],
            "2 different JSON objects one after another",
        ),
        (
            mcp_call("google_search", '{"q": "Ada Lovelace"}{"q": "Ada Lovelace"}'),
            [],
            "Ada Lovelace - Wikipedia",
        ),
        (
            mcp_call("google_search", '{"q": "Ada\x01\x1b\tLovelace"}'),
            [],
            '"q": "Ada\\u0001\\u001b\\tLovelace"',
        ),
        (mcp_call("google_search", '{"q": "the "Ada" language"}'), [], "Ada (programming language)"),
        (
            mcp_call("google_search", '{"q": "Ada Lovelace"}').replace("</use_mcp_tool>", ""),
            ["format"],
            "no closing",
        ),
        (
            "```xml\n" + mcp_call("google_search", '{"q": "Ada Lovelace"}') + "\n```",
            [],
            "Ada Lovelace - Wikipedia",
        ),
        (mcp_call("google_search", '```json\n{"q": "Ada Lovelace"}\n```'), [], "Ada Lovelace - Wikipedia"),
        ("<use_mcp_tool>" + mcp_call("google_search", '{"q": "Ada Lovelace"}'), ["format"], "no closing"),
        (mcp_call("google_search", '{"q": "Ada Lov'), [], '"q": "Ada Lov"'),
        (
            mcp_call("google_search", '{"q": "Ada"}', server="tool-google-search"),
            ["tool"],
            "Server 'tool-google-search'",
        ),
        (mcp_call("google_search", '{"q": "' + "Ada " * 200_000 + '"}'), [], '"organic"'),
    ],
    ids=[
        "duplicated-name",
        "concatenated-json",
        "repeated-json",
        "raw-controls",
        "unescaped-quotes",
        "unclosed-tag",
        "fenced-call",
        "fenced-arguments",
        "nested-open-tag",
        "truncated-json",
        "mirorl-server-name",
        "huge-argument",
    ],
)
def test_real_malformations_get_a_clear_answer_and_the_episode_goes_on(
    mcp_env: ResearchEnv, action: str, error_kinds: list[str], says: str
) -> None:
    mcp_env.reset(seed=0, options={"task_id": "ada-standard"})
    observation, _, _, _, info = mcp_env.step(action)
    assert sorted(set(info["error_kinds"])) == error_kinds, observation[:300]
    assert says in observation
    assert_episode_goes_on(mcp_env, "mcp_xml", query="Ada Lovelace mathematician")


def test_a_crashing_call_runner_is_an_infra_outcome_not_an_exception(mcp_env: ResearchEnv) -> None:
    mcp_env.reset(seed=0, options={"task_id": "ada-standard"})
    real = mcp_env.call_runner

    def crash(*args: Any) -> Any:
        raise RuntimeError("runner bug \ud800")

    mcp_env.call_runner = crash
    observation, _, _, _, info = mcp_env.step(tool_call("google_search", {"q": "Ada"}))
    assert info["error_kinds"] == ["infra"]
    assert "internal error: RuntimeError: runner bug \ufffd" in observation
    mcp_env.call_runner = real
    assert_episode_goes_on(mcp_env, "mcp_xml")


def test_a_token_counter_that_raises_adds_nothing_to_the_history() -> None:
    def fussy(text: str) -> int:
        if "boom" in text:
            raise ValueError("boom")
        return len(text)

    history = History(fussy, keep_tool_results=-1)
    history.append(Message(role="user", content="fine"))
    with pytest.raises(ValueError):
        history.append(Message(role="assistant", content="boom"))
    assert len(history.full()) == 1 and history.context_tokens() == 4


@pytest.mark.slow
def test_fuzz_benchmark_thousands_of_actions_over_all_code_points_zero_exceptions() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/fuzz_actions.py", "--count", "3000", "--pool", "300", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["actions"] == 3000
    assert (figures["exceptions"], figures["poisoned_episodes"]) == (0, 0), figures["failures"]
    assert figures["with_lone_surrogates"] > 100 and figures["with_nul"] > 10 and figures["with_astral"] > 100
    assert figures["error_kinds"]["format"] > 0 and figures["error_kinds"]["tool"] > 0
