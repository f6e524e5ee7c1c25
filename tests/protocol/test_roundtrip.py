"""Property tests: render_call then parse is the identity, and parse never raises, for every format."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv.protocol.base import ToolCallFormat
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.registry import FORMATS, get_format

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True)
TAGS = [
    "</arguments>",
    "<use_mcp_tool>",
    "</use_mcp_tool>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
]
tricky_text = st.lists(
    st.one_of(
        st.sampled_from(list("\"'{}[]<>/\\\n\t :,`")),
        st.sampled_from([*TAGS, "<arguments>", "<server_name>", "\\boxed{", "```json", "\\u0041"]),
        st.characters(codec="utf-8"),
    ),
    max_size=20,
).map("".join)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_text,
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(tricky_text, children, max_size=4)
    ),
    max_leaves=12,
)
arguments = st.dictionaries(tricky_text, json_values, max_size=6)

ALL_FORMATS = [get_format(name) for name in FORMATS]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=FORMATS)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(server=names, name=names, args=arguments, call_id=names)
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
@given(calls=st.lists(st.tuples(names, names, arguments), min_size=1, max_size=4), between=prose)
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


tag_soup = st.lists(
    st.one_of(
        st.sampled_from(
            [
                *TAGS,
                "<server_name>",
                "</server_name>",
                "<tool_name>",
                "</tool_name>",
                "<arguments>",
                '{"name": "t", "arguments": {',
                "{'q': True,}",
                "```json",
                "s",
                "}",
                "{",
                '"',
            ]
        ),
        st.characters(),
    ),
    max_size=40,
).map("".join)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=5)
)
weird = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=15,
)
messages = st.one_of(
    st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "function", "id", "name"]), weird, max_size=4
    ),
    st.fixed_dictionaries(
        {
            "content": st.one_of(weird, tag_soup),
            "tool_calls": st.lists(
                st.one_of(
                    weird,
                    st.fixed_dictionaries(
                        {
                            "id": weird,
                            "function": st.dictionaries(st.sampled_from(["name", "arguments"]), weird),
                        }
                    ),
                    st.fixed_dictionaries(
                        {
                            "id": weird,
                            "function": st.fixed_dictionaries(
                                {"name": st.one_of(names, weird), "arguments": st.one_of(tag_soup, weird)}
                            ),
                        }
                    ),
                ),
                max_size=4,
            ),
        }
    ),
)


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
@given(action=messages)
def test_parse_never_raises_on_mappings(fmt: ToolCallFormat, action: dict[str, Any]) -> None:
    parsed = fmt.parse(action)
    assert isinstance(parsed.text, str)
    for call in parsed.calls:
        assert call.name and all(isinstance(key, str) for key in call.arguments)
    for problem in parsed.problems:
        assert problem.message
