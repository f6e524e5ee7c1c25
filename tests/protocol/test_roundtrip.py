"""Property tests: render_call then parse is the identity, and parse never raises, for every format."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv.protocol.base import ToolCallFormat
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.registry import FORMATS, get_format
from miroenv.testing.strategies import identifiers as names
from miroenv.testing.strategies import json_objects, odd_messages, tag_soup

ALL_FORMATS = [get_format(name) for name in FORMATS]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=FORMATS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server=names, name=names, args=json_objects, call_id=names)
def test_render_then_parse_is_identity(
    fmt: ToolCallFormat, server: str, name: str, args: dict[str, Any], call_id: str
) -> None:
    expected_server = server if fmt.name == "mcp_xml" else None
    call = ToolCall(server=expected_server, name=name, arguments=args, call_id=call_id)
    parsed = fmt.parse(fmt.render_call(call))
    assert parsed.problems == []
    [back] = parsed.calls
    assert (back.server, back.name, back.arguments) == (expected_server, name, args)
    assert back.repaired is False
    if fmt.name == "openai":
        assert back.call_id == call_id


TEXT_FORMATS = [fmt for fmt in ALL_FORMATS if fmt.name != "openai"]
prose = st.text(alphabet=st.characters(exclude_characters="<"), max_size=40)


@pytest.mark.parametrize("fmt", TEXT_FORMATS, ids=[fmt.name for fmt in TEXT_FORMATS])
@settings(max_examples=100, deadline=None)
@given(calls=st.lists(st.tuples(names, names, json_objects), min_size=1, max_size=4), between=prose)
def test_several_rendered_calls_parse_in_order(
    fmt: ToolCallFormat, calls: list[tuple[str, str, dict[str, Any]]], between: str
) -> None:
    keep_server = fmt.name == "mcp_xml"
    wanted = [ToolCall(server=s if keep_server else None, name=n, arguments=a) for s, n, a in calls]
    hidden = fmt.render_call(ToolCall(server="s", name="hidden"))
    rendered = [f"{between}\n{fmt.render_call(c)}" for c in wanted]
    text = f"<think>planning {hidden}</think>" + "".join(rendered) + between
    parsed = fmt.parse(text)
    assert parsed.problems == []
    assert [(c.server, c.name, c.arguments) for c in parsed.calls] == [
        (c.server, c.name, c.arguments) for c in wanted
    ]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=FORMATS)
@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), tag_soup))
def test_parse_never_raises_on_text(fmt: ToolCallFormat, text: str) -> None:
    parsed = fmt.parse(text)
    assert parsed.text == text
    for problem in parsed.problems:
        assert problem.message


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=FORMATS)
@settings(max_examples=300, deadline=None)
@given(action=odd_messages)
def test_parse_never_raises_on_mappings(fmt: ToolCallFormat, action: dict[str, Any]) -> None:
    parsed = fmt.parse(action)
    assert isinstance(parsed.text, str)
    for call in parsed.calls:
        assert call.name and all(isinstance(key, str) for key in call.arguments)
    for problem in parsed.problems:
        assert problem.message
