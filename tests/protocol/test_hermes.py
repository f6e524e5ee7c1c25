"""Hermes / Qwen <tool_call> parsing and rendering."""

from __future__ import annotations

import json

import pytest

from miroenv.protocol.base import ToolSpec
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.hermes import HermesFormat

fmt = HermesFormat()


def test_identity() -> None:
    assert (HermesFormat.name, HermesFormat.result_role) == ("hermes", "tool")


def test_single_call() -> None:
    text = '<think>search first</think>\n<tool_call>\n{"name": "google_search", "arguments": {"q": "x"}}\n</tool_call>'
    parsed = fmt.parse(text)
    assert parsed.problems == []
    [call] = parsed.calls
    assert (call.server, call.name, call.arguments, call.call_id) == (None, "google_search", {"q": "x"}, None)
    assert call.raw == text[text.index("<tool_call>") :]
    assert call.repaired is False


def test_all_calls_in_order_and_think_ignored() -> None:
    text = (
        '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
        '<think><tool_call>{"name": "hidden", "arguments": {}}</tool_call></think>'
        '<tool_call>{"name": "b", "arguments": {"n": 1}}</tool_call>'
    )
    parsed = fmt.parse(text)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("a", {}), ("b", {"n": 1})]


def test_arguments_as_json_string() -> None:
    parsed = fmt.parse('<tool_call>{"name": "t", "arguments": "{\\"q\\": \\"x\\"}"}</tool_call>')
    assert parsed.calls[0].arguments == {"q": "x"}


def test_parameters_alias_and_missing_arguments() -> None:
    parsed = fmt.parse(
        '<tool_call>{"name": "t", "parameters": {"q": 1}}</tool_call><tool_call>{"name": "u"}</tool_call>'
    )
    assert [(c.name, c.arguments) for c in parsed.calls] == [("t", {"q": 1}), ("u", {})]


def test_repaired_payload_is_flagged() -> None:
    parsed = fmt.parse("<tool_call>{'name': 'google_search', 'arguments': {'q': 'x',}}</tool_call>")
    assert parsed.calls[0].arguments == {"q": "x"}
    assert parsed.calls[0].name == "google_search"
    assert parsed.calls[0].repaired is True


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('<tool_call>{"name": "t", "arguments": {}}', "has no closing </tool_call>"),
        ('<tool_call>{"arguments": {}}</tool_call>', 'has no "name"'),
        ('<tool_call>{"name": "  ", "arguments": {}}</tool_call>', 'has an empty or non-string "name"'),
        ('<tool_call>{"name": 3}</tool_call>', 'has an empty or non-string "name"'),
        ("<tool_call>call google please</tool_call>", "the <tool_call> content is not valid JSON: "),
        ('<tool_call>["t", {}]</tool_call>', "the <tool_call> content is not a JSON object: got an array"),
        (
            '<tool_call>{"name": "t", "arguments": [1]}</tool_call>',
            "the \"arguments\" of tool 't' are not a JSON",
        ),
        (
            '<tool_call>{"name": "t", "arguments": "oops"}</tool_call>',
            "the \"arguments\" of tool 't' are not valid",
        ),
    ],
)
def test_problems(text: str, fragment: str) -> None:
    parsed = fmt.parse(text)
    assert parsed.calls == []
    [problem] = parsed.problems
    assert fragment in problem.message
    assert problem.raw.startswith("<tool_call>")
    assert parsed.attempted_tool_use


def test_unclosed_call_before_a_good_one() -> None:
    parsed = fmt.parse('<tool_call>{"name": "a"}\n<tool_call>{"name": "b"}</tool_call>')
    assert [c.name for c in parsed.calls] == ["b"]
    assert len(parsed.problems) == 1


def test_plain_text_and_dict_content() -> None:
    assert fmt.parse("The answer is 4.").calls == []
    parsed = fmt.parse({"role": "assistant", "content": '<tool_call>{"name": "t"}</tool_call>'})
    assert [c.name for c in parsed.calls] == ["t"]


def test_render_call_round_trips() -> None:
    call = ToolCall(name="google_search", arguments={"q": "</tool_call> <tool_call> 東京"})
    rendered = fmt.render_call(call)
    assert isinstance(rendered, str)
    assert rendered.startswith("<tool_call>\n{") and rendered.endswith("}\n</tool_call>")
    assert rendered.count("<tool_call>") == 1 and rendered.count("</tool_call>") == 1
    [parsed] = fmt.parse(rendered).calls
    assert (parsed.name, parsed.arguments, parsed.server) == (call.name, call.arguments, None)


def test_render_call_plain_payload() -> None:
    rendered = fmt.render_call(ToolCall(server="ignored", name="t", arguments={"q": "x"}))
    assert rendered == '<tool_call>\n{"name": "t", "arguments": {"q": "x"}}\n</tool_call>'


def test_render_tools_is_qwen_style() -> None:
    specs = [
        ToolSpec(
            server="s", name="google_search", description="Search the web.", input_schema={"type": "object"}
        ),
        ToolSpec(server="s", name="scrape", description="Read a page."),
    ]
    text = fmt.render_tools(specs)
    assert text.startswith("# Tools\n")
    inside = text[text.index("<tools>\n") + len("<tools>\n") : text.index("\n</tools>")]
    assert [json.loads(line) for line in inside.splitlines()] == [s.openai_function() for s in specs]
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in text
