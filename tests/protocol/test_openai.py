"""OpenAI assistant-message tool_calls parsing and rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from miroenv.protocol.base import ToolSpec
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.openai import OpenAIFormat

fmt = OpenAIFormat()


def message(*tool_calls: Any, content: Any = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(tool_calls)}


def entry(name: str, arguments: Any, call_id: str | None = "call_abc") -> dict[str, Any]:
    data: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        data["id"] = call_id
    return data


def test_identity() -> None:
    assert (OpenAIFormat.name, OpenAIFormat.result_role) == ("openai", "tool")


def test_calls_in_order_with_ids() -> None:
    parsed = fmt.parse(
        message(entry("google_search", '{"q": "x"}', "call_1"), entry("scrape", {"url": "u"}, "call_2"))
    )
    assert parsed.problems == []
    assert [(c.call_id, c.server, c.name, c.arguments) for c in parsed.calls] == [
        ("call_1", None, "google_search", {"q": "x"}),
        ("call_2", None, "scrape", {"url": "u"}),
    ]
    assert json.loads(parsed.calls[0].raw)["id"] == "call_1"


def test_missing_id_is_synthesised_from_the_index() -> None:
    parsed = fmt.parse(message(entry("a", "{}"), entry("b", "{}", call_id=None)))
    assert [c.call_id for c in parsed.calls] == ["call_abc", "call_1"]


def test_empty_or_null_arguments() -> None:
    parsed = fmt.parse(message(entry("a", ""), entry("b", None), {"id": "c", "function": {"name": "c"}}))
    assert [c.arguments for c in parsed.calls] == [{}, {}, {}]


def test_repaired_arguments_are_flagged() -> None:
    parsed = fmt.parse(message(entry("a", "{'q': 'x',}")))
    assert parsed.calls[0].arguments == {"q": "x"}
    assert parsed.calls[0].repaired is True


def test_plain_string_is_a_final_reply() -> None:
    parsed = fmt.parse("The answer is \\boxed{4}.")
    assert (parsed.text, parsed.calls, parsed.problems) == ("The answer is \\boxed{4}.", [], [])


def test_message_without_tool_calls_keeps_its_text() -> None:
    parsed = fmt.parse({"role": "assistant", "content": [{"type": "text", "text": "done"}]})
    assert (parsed.text, parsed.calls, parsed.problems) == ("done", [], [])
    assert fmt.parse(message(content="x")).attempted_tool_use is False


@pytest.mark.parametrize(
    ("bad", "fragment", "call_id"),
    [
        ("not a dict", "tool_calls[0] is not an object", "call_0"),
        ({"id": "k", "type": "function"}, 'tool_calls[0] has no "function" object', "k"),
        ({"id": "k", "function": {"arguments": "{}"}}, 'tool_calls[0] has no function "name"', "k"),
        ({"id": "k", "function": {"name": 7}}, 'tool_calls[0] has no function "name"', "k"),
        (entry("t", "nonsense", "k"), "the arguments of tool 't' (tool_calls[0]) are not valid JSON", "k"),
        (entry("t", "[1, 2]", "k"), "are not a JSON object: got an array", "k"),
        (entry("t", 5, "k"), "are not a JSON object: got a number", "k"),
        (entry("t", {1: "x"}, "k"), "keys that are not strings", "k"),
        (entry("t", {"s": {1, 2}}, "k"), "values that are not JSON", "k"),
    ],
)
def test_malformed_entries_are_problems_with_call_ids(bad: Any, fragment: str, call_id: str) -> None:
    parsed = fmt.parse(message(bad, entry("ok", "{}", "good")))
    assert [c.name for c in parsed.calls] == ["ok"]
    [problem] = parsed.problems
    assert fragment in problem.message
    assert problem.call_id == call_id


def test_tool_calls_not_a_list() -> None:
    parsed = fmt.parse({"role": "assistant", "content": None, "tool_calls": {"id": "x"}})
    assert parsed.calls == []
    assert "tool_calls must be a list" in parsed.problems[0].message


def test_weird_values_never_raise() -> None:
    class Weird:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    parsed = fmt.parse(message(Weird(), {"id": object(), "function": {"name": "t", "arguments": Weird()}}))
    assert parsed.calls == []
    assert len(parsed.problems) == 2
    assert parsed.problems[1].call_id == "call_1"


def test_non_action_input_is_a_problem() -> None:
    parsed = fmt.parse(None)  # type: ignore[arg-type]
    assert parsed.text == ""
    assert "got NoneType" in parsed.problems[0].message


def test_render_call_round_trips() -> None:
    call = ToolCall(name="google_search", arguments={"q": 'café "quoted"'}, call_id="call_9")
    rendered = fmt.render_call(call)
    assert rendered == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "google_search", "arguments": '{"q": "café \\"quoted\\""}'},
            }
        ],
    }
    [parsed] = fmt.parse(rendered).calls
    assert (parsed.name, parsed.arguments, parsed.call_id) == (call.name, call.arguments, "call_9")


def test_render_call_without_id() -> None:
    rendered = fmt.render_call(ToolCall(name="t"))
    assert isinstance(rendered, dict)
    assert rendered["tool_calls"][0]["id"] == "call_0"


def test_render_tools_points_to_the_api() -> None:
    text = fmt.render_tools([ToolSpec(server="s", name="google_search", description="d")])
    assert "google_search" in text and "`tools` parameter" in text
    assert fmt.render_tools([]) == "No tools are available."
