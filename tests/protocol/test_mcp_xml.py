"""MiroThinker MCP XML parsing: calls outside <think>, in order, with problems that say what is wrong."""

from __future__ import annotations

import json
import time

import pytest

from miroenv.protocol.base import ToolSpec
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat, parse_mcp_xml, scan_blocks


def block(server: str, tool: str, arguments: str | None) -> str:
    args = "" if arguments is None else f"<arguments>\n{arguments}\n</arguments>\n"
    return f"<use_mcp_tool>\n<server_name>{server}</server_name>\n<tool_name>{tool}</tool_name>\n{args}</use_mcp_tool>"


SEARCH = block("tool-google-search", "google_search", '{"q": "Dolly the sheep first lamb"}')


def test_single_call_after_think() -> None:
    text = f"<think>\nI should search.\n</think>\n\n{SEARCH}"
    parsed = parse_mcp_xml(text)
    assert parsed.problems == []
    assert len(parsed.calls) == 1
    call = parsed.calls[0]
    assert (call.server, call.name, call.arguments) == (
        "tool-google-search",
        "google_search",
        {"q": "Dolly the sheep first lamb"},
    )
    assert call.raw == SEARCH
    assert call.repaired is False
    assert call.call_id is None
    assert parsed.text == text
    assert parsed.attempted_tool_use


def test_all_calls_in_order() -> None:
    second = block("tool-python", "run_python_code", '{"code_block": "print(1)"}')
    third = block("tool-google-search", "google_search", '{"q": "third"}')
    parsed = parse_mcp_xml(f"{SEARCH} some words {second}\n{third}")
    assert [c.name for c in parsed.calls] == ["google_search", "run_python_code", "google_search"]
    assert parsed.calls[2].arguments == {"q": "third"}


def test_calls_inside_think_are_reasoning() -> None:
    text = f"<think>maybe I'd write {SEARCH} but no</think>The answer is 4."
    parsed = parse_mcp_xml(text)
    assert parsed.calls == []
    assert parsed.problems == []
    assert not parsed.attempted_tool_use


def test_unclosed_block_inside_think_is_not_a_problem() -> None:
    parsed = parse_mcp_xml("<think>a draft: <use_mcp_tool><server_name>s</think>final")
    assert parsed.calls == []
    assert parsed.problems == []


def test_unclosed_think_hides_the_rest() -> None:
    parsed = parse_mcp_xml(f"<think>still thinking {SEARCH}")
    assert parsed.calls == []
    assert parsed.problems == []


def test_orphan_think_close_hides_the_reasoning_before_it() -> None:
    draft = block("s", "draft_tool", "{}")
    parsed = parse_mcp_xml(f"thinking {draft} hmm</think>\n{SEARCH}")
    assert [c.name for c in parsed.calls] == ["google_search"]


def test_think_close_inside_later_arguments_does_not_hide_calls() -> None:
    parsed = parse_mcp_xml(block("s", "t", '{"q": "what does </think> mean"}'))
    assert parsed.calls[0].arguments == {"q": "what does </think> mean"}


def test_calls_between_think_blocks() -> None:
    text = f"<think>one</think>{SEARCH}<think>two {block('s', 'hidden', '{}')}</think>{block('s', 'shown', '{}')}"
    assert [c.name for c in parse_mcp_xml(text).calls] == ["google_search", "shown"]


def test_whitespace_around_names_is_stripped() -> None:
    parsed = parse_mcp_xml(
        "<use_mcp_tool>\n  <server_name>\n  tool-google-search  \n</server_name>\n"
        '  <tool_name> google_search </tool_name>\n  <arguments>  {"q": "x"}  </arguments>\n</use_mcp_tool>'
    )
    assert (parsed.calls[0].server, parsed.calls[0].name) == ("tool-google-search", "google_search")
    assert parsed.calls[0].arguments == {"q": "x"}


def test_compact_single_line_block() -> None:
    parsed = parse_mcp_xml(
        '<use_mcp_tool><server_name>s</server_name><tool_name>t</tool_name><arguments>{"a": 1}'
        "</arguments></use_mcp_tool>"
    )
    assert parsed.calls[0].arguments == {"a": 1}


def test_missing_arguments_means_empty_object() -> None:
    parsed = parse_mcp_xml(block("s", "list_tools", None))
    assert parsed.calls[0].arguments == {}
    assert parsed.calls[0].repaired is False


def test_fenced_arguments_are_accepted_as_repaired() -> None:
    parsed = parse_mcp_xml(block("s", "t", '```json\n{"q": "fenced"}\n```'))
    assert parsed.calls[0].arguments == {"q": "fenced"}
    assert parsed.calls[0].repaired is True


def test_python_style_arguments_are_repaired() -> None:
    parsed = parse_mcp_xml(block("s", "t", "{'q': 'x', 'safe': True, 'num': None,}"))
    assert parsed.calls[0].arguments == {"q": "x", "safe": True, "num": None}
    assert parsed.calls[0].repaired is True


def test_missing_arguments_close_tag_is_tolerated() -> None:
    parsed = parse_mcp_xml(
        '<use_mcp_tool><server_name>s</server_name><tool_name>t</tool_name><arguments>{"q": 1}</use_mcp_tool>'
    )
    assert parsed.calls[0].arguments == {"q": 1}
    assert parsed.calls[0].repaired is True


def test_json_without_arguments_tag_is_tolerated() -> None:
    parsed = parse_mcp_xml(
        '<use_mcp_tool><server_name>s</server_name><tool_name>t</tool_name>{"q": 1}</use_mcp_tool>'
    )
    assert parsed.calls[0].arguments == {"q": 1}
    assert parsed.calls[0].repaired is True


def test_junk_without_arguments_tag_is_a_problem() -> None:
    parsed = parse_mcp_xml(
        "<use_mcp_tool><server_name>s</server_name><tool_name>t</tool_name>oops</use_mcp_tool>"
    )
    assert parsed.calls == []
    assert "no <arguments> tag" in parsed.problems[0].message
    assert "'t'" in parsed.problems[0].message


def test_bad_arguments_are_a_problem_naming_the_tool() -> None:
    parsed = parse_mcp_xml(block("tool-google-search", "google_search", "not json at all"))
    assert parsed.calls == []
    [problem] = parsed.problems
    assert problem.message.startswith("the <arguments> of tool 'google_search' are not valid JSON: ")
    assert problem.raw.startswith("<use_mcp_tool>")


def test_non_object_arguments_are_a_problem() -> None:
    parsed = parse_mcp_xml(block("s", "google_search", '["q", "x"]'))
    assert "are not a JSON object: got an array" in parsed.problems[0].message


def test_unclosed_block_is_a_problem() -> None:
    parsed = parse_mcp_xml(
        "<use_mcp_tool>\n<server_name>tool-google-search</server_name>\n<tool_name>google_search</tool_name>\n"
        '<arguments>\n{"q": "x"}\n</arguments>'
    )
    assert parsed.calls == []
    [problem] = parsed.problems
    assert "for tool 'google_search' has no closing </use_mcp_tool>" in problem.message
    assert parsed.attempted_tool_use


def test_unclosed_block_followed_by_a_good_one() -> None:
    broken = (
        "<use_mcp_tool><server_name>s</server_name><tool_name>first</tool_name><arguments>{}</arguments>\n"
    )
    parsed = parse_mcp_xml(broken + SEARCH)
    assert [c.name for c in parsed.calls] == ["google_search"]
    assert len(parsed.problems) == 1
    assert "'first' has no closing" in parsed.problems[0].message
    assert parsed.problems[0].raw == broken


def test_opening_tag_inside_arguments_is_argument_text() -> None:
    args = '{"q": "how to write <use_mcp_tool> blocks"}'
    parsed = parse_mcp_xml(block("s", "t", args) + "\n" + SEARCH)
    assert parsed.problems == []
    assert parsed.calls[0].arguments == {"q": "how to write <use_mcp_tool> blocks"}
    assert [c.name for c in parsed.calls] == ["t", "google_search"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "<use_mcp_tool><tool_name>t</tool_name><arguments>{}</arguments></use_mcp_tool>",
            "has no <server_name>",
        ),
        (
            "<use_mcp_tool><server_name>s</server_name><arguments>{}</arguments></use_mcp_tool>",
            "has no <tool_name>",
        ),
        (
            "<use_mcp_tool><server_name> </server_name><tool_name>t</tool_name></use_mcp_tool>",
            "has an empty <server_name>",
        ),
        (
            "<use_mcp_tool><server_name>s<tool_name>t</tool_name></use_mcp_tool>",
            "has a <server_name> without a closing </server_name>",
        ),
        ("<use_mcp_tool></use_mcp_tool>", "has no <server_name> and has no <tool_name>"),
    ],
)
def test_missing_names_are_problems(text: str, fragment: str) -> None:
    parsed = parse_mcp_xml(text)
    assert parsed.calls == []
    assert fragment in parsed.problems[0].message
    assert "<use_mcp_tool><server_name>SERVER</server_name>" in parsed.problems[0].message


def test_names_inside_arguments_are_not_used() -> None:
    text = '<use_mcp_tool><arguments>{"x": "<server_name>s</server_name><tool_name>t</tool_name>"}</arguments></use_mcp_tool>'
    assert "has no <server_name>" in parse_mcp_xml(text).problems[0].message


def test_plain_text_has_no_calls() -> None:
    parsed = parse_mcp_xml("The answer is \\boxed{42}.")
    assert (parsed.calls, parsed.problems) == ([], [])


def test_long_problem_raw_is_shortened() -> None:
    parsed = parse_mcp_xml(block("s", "t", "x" * 10_000))
    assert len(parsed.problems[0].raw) < 2_100
    assert "characters omitted" in parsed.problems[0].raw


def test_pathological_inputs_parse_in_linear_time() -> None:
    texts = [
        "<use_mcp_tool>" * 50_000,
        "<use_mcp_tool><arguments>" * 50_000,
        "<think>" + "<use_mcp_tool>" * 50_000,
        "</use_mcp_tool>" * 50_000 + "<use_mcp_tool>" * 50_000,
        "<use_mcp_tool></think><think>" * 30_000,
        ("<think>x</think>" + block("s", "t", "{}")) * 5_000,
    ]
    for text in texts:
        started = time.monotonic()
        parse_mcp_xml(text)
        assert time.monotonic() - started < 5


def test_scan_blocks_reports_positions() -> None:
    text = "a<x>1</x>b<x>2"
    blocks = scan_blocks(text, "<x>", "</x>")
    assert [(b.start, b.end, b.body, b.closed) for b in blocks] == [(1, 9, "1", True), (10, 14, "2", False)]


class TestFormat:
    fmt = McpXmlFormat()

    def test_identity(self) -> None:
        assert (McpXmlFormat.name, McpXmlFormat.result_role) == ("mcp_xml", "user")

    def test_parse_message_dict_uses_its_content(self) -> None:
        parsed = self.fmt.parse({"role": "assistant", "content": [{"type": "text", "text": SEARCH}]})
        assert [c.name for c in parsed.calls] == ["google_search"]
        assert parsed.problems == []

    def test_openai_tool_calls_are_reported_not_silently_dropped(self) -> None:
        message = {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "a", "type": "function", "function": {"name": "x", "arguments": "{}"}}],
        }
        parsed = self.fmt.parse(message)
        assert parsed.calls == []
        assert "tool_calls field is not used" in parsed.problems[0].message

    def test_non_text_action_is_a_problem(self) -> None:
        parsed = self.fmt.parse(42)  # type: ignore[arg-type]
        assert parsed.text == ""
        assert "got int" in parsed.problems[0].message

    def test_render_call_is_canonical(self) -> None:
        call = ToolCall(
            server="tool-google-search", name="google_search", arguments={"q": "naïve café", "num": 3}
        )
        expected = (
            "<use_mcp_tool>\n<server_name>tool-google-search</server_name>\n<tool_name>google_search</tool_name>\n"
            '<arguments>\n{\n  "q": "naïve café",\n  "num": 3\n}\n</arguments>\n</use_mcp_tool>'
        )
        assert self.fmt.render_call(call) == expected
        assert self.fmt.parse(expected).calls[0].arguments == call.arguments

    def test_render_call_escapes_closing_tags_in_arguments(self) -> None:
        call = ToolCall(server="s", name="t", arguments={"html": "</arguments></use_mcp_tool><think>"})
        rendered = self.fmt.render_call(call)
        assert isinstance(rendered, str)
        assert rendered.count("</use_mcp_tool>") == 1
        assert self.fmt.parse(rendered).calls[0].arguments == call.arguments

    def test_render_call_needs_a_server(self) -> None:
        with pytest.raises(ValueError, match="server"):
            self.fmt.render_call(ToolCall(name="t"))

    def test_render_tools_groups_by_server(self) -> None:
        schema = {"type": "object", "properties": {"q": {"type": "string"}}}
        specs = [
            ToolSpec(server="search", name="google_search", description="Search.", input_schema=schema),
            ToolSpec(server="python", name="run", description="Run code."),
            ToolSpec(server="search", name="scrape", description="Scrape."),
        ]
        text = self.fmt.render_tools(specs)
        assert text == (
            "## Server name: search\n### Tool name: google_search\nDescription: Search.\n"
            f"Input JSON schema: {json.dumps(schema)}\n"
            "### Tool name: scrape\nDescription: Scrape.\nInput JSON schema: {}\n\n"
            "## Server name: python\n### Tool name: run\nDescription: Run code.\nInput JSON schema: {}"
        )


def test_unclosed_draft_before_orphan_think_close_is_reasoning() -> None:
    parsed = parse_mcp_xml(f"draft <use_mcp_tool><server_name>s</server_name> hmm</think>\n{SEARCH}")
    assert [c.name for c in parsed.calls] == ["google_search"]
    assert parsed.problems == []


def test_unprintable_tool_calls_still_give_a_problem() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    parsed = McpXmlFormat().parse({"content": SEARCH, "tool_calls": [Unprintable()]})
    assert [c.name for c in parsed.calls] == ["google_search"]
    assert "tool_calls field is not used" in parsed.problems[0].message
