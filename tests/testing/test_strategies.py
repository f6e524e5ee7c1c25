"""Property tests with the kit's tool-call strategies: valid calls round-trip through the parsers and reach
their tools; malformed ones are rejected exactly as each case predicts, and never raise out of `step()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv
from miroenv.protocol.calls import ParsedAction
from miroenv.protocol.registry import FORMATS, get_format
from miroenv.testing.strategies import ToolCallCase, malformed_tool_calls, tool_call_cases, valid_tool_calls
from miroenv.tools.profiles import get_profile

ROUTER = get_profile("mirothinker_v1").router()


def _matches_expected(parsed: ParsedAction, case: ToolCallCase) -> None:
    expected = case.expected_call
    assert expected is not None
    assert parsed.problems == [], parsed.problems
    [call] = parsed.calls
    assert (call.server, call.name, call.arguments) == (expected.server, expected.name, expected.arguments)
    assert call.repaired is False
    if case.tool_format == "openai":
        assert call.call_id == expected.call_id


@pytest.mark.parametrize("tool_format", FORMATS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_valid_calls_round_trip_and_satisfy_the_tool_schema(tool_format: str, data: st.DataObject) -> None:
    case = data.draw(valid_tool_calls(tool_format))
    assert case.valid and case.flaw == "none"
    _matches_expected(get_format(tool_format).parse(case.action), case)
    assert case.expected_call is not None
    _, tool = ROUTER.resolve(case.expected_call.model_copy(update={"server": None}))
    tool.arguments_model.model_validate(case.expected_call.arguments)


@pytest.mark.parametrize("tool_format", FORMATS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_malformed_calls_are_rejected_as_predicted_by_the_parser(
    tool_format: str, data: st.DataObject
) -> None:
    case = data.draw(malformed_tool_calls(tool_format))
    parsed = get_format(tool_format).parse(case.action)
    if case.rejected_as == "format":
        assert parsed.calls == [] and len(parsed.problems) == 1, (case.flaw, parsed)
        assert parsed.problems[0].message
    else:
        assert case.rejected_as == "tool"
        _matches_expected(parsed, case)


@pytest.fixture(scope="module")
def envs(demo_dir: Path) -> Iterator[dict[str, ResearchEnv]]:
    made = {name: ResearchEnv(demo_dir, tool_format=name) for name in FORMATS}
    yield made
    for env in made.values():
        env.close()


@pytest.mark.parametrize("tool_format", FORMATS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_env_reports_every_case_as_predicted(
    envs: dict[str, ResearchEnv], tool_format: str, data: st.DataObject
) -> None:
    case = data.draw(tool_call_cases(tool_format))
    env = envs[tool_format]
    env.reset(seed=0, options={"task_id": "ada-standard"})
    observation, _, terminated, truncated, info = env.step(case.action)
    assert isinstance(observation, str) and observation
    assert not terminated and not truncated and info["phase"] == "act"
    [outcome] = info["calls"]
    if case.rejected_as == "format":
        assert info["error_kinds"] == ["format"] and outcome["error_kind"] == "format"
        assert "could not be parsed" in observation
        return
    assert case.expected_call is not None
    assert outcome["tool"] == case.expected_call.name
    assert "internal error" not in (outcome["error"] or "")
    if case.rejected_as == "tool":
        assert info["error_kinds"] == ["tool"], (case.flaw, outcome)
    else:
        assert "format" not in info["error_kinds"]


def test_strategies_refuse_unknown_formats() -> None:
    with pytest.raises(ValueError, match="unknown tool-call format 'xml'"):
        valid_tool_calls("xml")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_strategies_follow_the_chosen_profile(data: st.DataObject) -> None:
    minimal = get_profile("minimal")
    case = data.draw(
        malformed_tool_calls("hermes", profile="minimal").filter(lambda c: c.flaw != "unknown_tool")
    )
    if case.rejected_as == "tool":
        assert case.expected_call is not None
        _, tool = minimal.router().resolve(case.expected_call)
        assert tool.name in {spec.name for spec in minimal.specs()}
    valid = data.draw(valid_tool_calls("hermes", profile="minimal"))
    assert valid.expected_call is not None
    _, tool = minimal.router().resolve(valid.expected_call)
    tool.arguments_model.model_validate(valid.expected_call.arguments)
