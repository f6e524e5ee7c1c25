"""MiroThinker's MCP XML tool-call format: `<use_mcp_tool>` blocks anywhere in the text outside `<think>`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from miroenv.protocol.arguments import ArgumentsError, decode_arguments
from miroenv.protocol.base import Action, ToolCallFormat, ToolSpec, action_text
from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MAX_RAW_CHARS = 2000
"""Longest `ParseProblem.raw` kept; longer offending text is shortened in the middle."""

_OPEN = "<use_mcp_tool>"
_CLOSE = "</use_mcp_tool>"
_ARGS_OPEN = "<arguments>"
_ARGS_CLOSE = "</arguments>"
_USAGE = (
    "write each call as <use_mcp_tool><server_name>SERVER</server_name><tool_name>TOOL</tool_name>"
    '<arguments>{"key": "value"}</arguments></use_mcp_tool>'
)


@dataclass(frozen=True)
class TagBlock:
    """One `open_tag ... close_tag` block found by `scan_blocks`; unclosed blocks stop where the next begins."""

    start: int
    end: int
    body: str
    closed: bool


def scan_blocks(
    text: str, open_tag: str, close_tag: str, inner: tuple[str, str] | None = None
) -> list[TagBlock]:
    """Every `open_tag` block outside `<think>...</think>`, in order, in time linear in the text.

    An unclosed `<think>` hides the rest of the text; a `</think>` with no `<think>` before it hides
    everything before it (chat templates often put `<think>` in the prompt), unless it lies inside a closed
    block, where it is block content. An `open_tag` met before the block's `close_tag` ends the block
    unclosed, unless it lies inside the block's `inner` pair of tags (e.g. within `<arguments>...`, where
    it is argument text).
    """
    blocks: list[TagBlock] = []
    pos = 0
    next_open = text.find(open_tag, pos)
    next_think = text.find(THINK_OPEN, pos)
    next_close = text.find(close_tag, pos)
    while next_open != -1:
        if next_think != -1 and next_think < pos:
            next_think = text.find(THINK_OPEN, pos)
        if next_think != -1 and next_think < next_open:
            think_end = text.find(THINK_CLOSE, next_think + len(THINK_OPEN))
            if think_end == -1:
                break
            pos = think_end + len(THINK_CLOSE)
            if next_open < pos:
                next_open = text.find(open_tag, pos)
            continue
        body_start = next_open + len(open_tag)
        if next_close != -1 and next_close < body_start:
            next_close = text.find(close_tag, body_start)
        limit = next_close if next_close != -1 else len(text)
        following = text.find(open_tag, body_start, limit)
        if following != -1 and inner is not None:
            inner_start = text.find(inner[0], body_start, following)
            if inner_start != -1:
                inner_end = text.find(inner[1], inner_start + len(inner[0]), limit)
                if inner_end == -1:
                    inner_end = limit
                if following < inner_end:
                    following = text.find(open_tag, inner_end, limit)
        if following == -1 and next_close != -1:
            pos = next_close + len(close_tag)
            blocks.append(TagBlock(next_open, pos, text[body_start:next_close], closed=True))
            next_open = text.find(open_tag, pos)
        else:
            pos = following if following != -1 else len(text)
            blocks.append(TagBlock(next_open, pos, text[body_start:pos], closed=False))
            next_open = following
    orphan_close = text.find(THINK_CLOSE)
    orphaned = orphan_close != -1 and text.find(THINK_OPEN, 0, orphan_close) == -1
    if orphaned and not any(b.closed and b.start < orphan_close < b.end for b in blocks):
        blocks = [b for b in blocks if b.start > orphan_close]
    return blocks


def shorten(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """`text` cut in the middle to at most about `limit` characters, so problems stay readable."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n{text[-half:]}"


def safe_action_text(action: object) -> tuple[str, ParseProblem | None]:
    """The text of any action, and a problem when the action is neither a string nor a message mapping."""
    if isinstance(action, str):
        return action, None
    if isinstance(action, Mapping):
        try:
            return action_text(action), None
        except Exception as exc:
            return "", ParseProblem(message=f"the message content could not be read ({type(exc).__name__})")
    return "", ParseProblem(
        message=f"the action must be the assistant message text or a message dict, got {type(action).__name__}"
    )


def ignored_tool_calls_problem(action: object, how: str) -> ParseProblem | None:
    """A problem when a message dict carries an OpenAI `tool_calls` list that a text format cannot run."""
    if not isinstance(action, Mapping):
        return None
    try:
        tool_calls = action.get("tool_calls")
        present = isinstance(tool_calls, Sequence) and not isinstance(tool_calls, str) and len(tool_calls) > 0
    except Exception:
        return None
    if not present:
        return None
    return ParseProblem(
        message=f"the message's tool_calls field is not used in this environment; {how}",
        raw=shorten(safe_repr(tool_calls)),
    )


def safe_repr(value: object) -> str:
    """JSON text of `value` when it has one, else its repr, for `raw` fields; never raises."""
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _field(head: str, tag: str) -> tuple[str | None, str]:
    """The stripped text of `<tag>...</tag>` in `head`, or None with what is wrong ('missing', 'unclosed')."""
    opening = f"<{tag}>"
    start = head.find(opening)
    if start == -1:
        return None, "missing"
    start += len(opening)
    stop = head.find(f"</{tag}>", start)
    if stop == -1:
        return None, "unclosed"
    return head[start:stop].strip(), "ok"


def _block_to_call(block: TagBlock, raw: str) -> ToolCall | ParseProblem:
    """Turn one closed `<use_mcp_tool>` block into a call, or a problem saying what is missing or broken."""
    body = block.body
    args_start = body.find(_ARGS_OPEN)
    head = body if args_start == -1 else body[:args_start]
    server, server_state = _field(head, "server_name")
    tool, tool_state = _field(head, "tool_name")
    faults: list[str] = []
    for tag, value, state in (("server_name", server, server_state), ("tool_name", tool, tool_state)):
        if state == "missing":
            faults.append(f"has no <{tag}>")
        elif state == "unclosed":
            faults.append(f"has a <{tag}> without a closing </{tag}>")
        elif not value:
            faults.append(f"has an empty <{tag}>")
    if faults or server is None or tool is None:
        label = f"for tool {tool!r}" if tool else "(tool unknown)"
        return ParseProblem(
            message=f"the <use_mcp_tool> block {label} {' and '.join(faults)}; {_USAGE}", raw=shorten(raw)
        )
    lenient = False
    if args_start != -1:
        args_body_start = args_start + len(_ARGS_OPEN)
        args_end = body.rfind(_ARGS_CLOSE, args_body_start)
        if args_end == -1:
            args_text, lenient = body[args_body_start:], True
        else:
            args_text = body[args_body_start:args_end]
        where = "<arguments>"
    else:
        args_text = body[max(head.rfind("</server_name>"), head.rfind("</tool_name>")) :]
        args_text = args_text[args_text.find(">") + 1 :]
        lenient = bool(args_text.strip())
        where = "text after <tool_name> (there is no <arguments> tag)"
    try:
        arguments, repaired = decode_arguments(args_text)
    except ArgumentsError as exc:
        return ParseProblem(
            message=f"the {where} of tool {tool!r} {_verb(where)} {exc.reason}", raw=shorten(raw)
        )
    return ToolCall(server=server, name=tool, arguments=arguments, raw=raw, repaired=repaired or lenient)


def _verb(where: str) -> str:
    """Agreement for problem messages: '<arguments> ... are', 'text ... is'."""
    return "are" if where == "<arguments>" else "is"


def parse_mcp_xml(text: str) -> ParsedAction:
    """Every `<use_mcp_tool>` call in `text` outside `<think>`, in order; broken blocks become problems."""
    calls: list[ToolCall] = []
    problems: list[ParseProblem] = []
    for block in scan_blocks(text, _OPEN, _CLOSE, inner=(_ARGS_OPEN, _ARGS_CLOSE)):
        raw = text[block.start : block.end]
        if not block.closed:
            tool, _ = _field(block.body, "tool_name")
            label = f"for tool {tool!r} " if tool else ""
            problems.append(
                ParseProblem(
                    message=f"the <use_mcp_tool> block {label}has no closing </use_mcp_tool> tag; {_USAGE}",
                    raw=shorten(raw),
                )
            )
            continue
        result = _block_to_call(block, raw)
        if isinstance(result, ToolCall):
            calls.append(result)
        else:
            problems.append(result)
    return ParsedAction(text=text, calls=calls, problems=problems)


class McpXmlFormat(ToolCallFormat):
    """MiroThinker v1.0's format: MCP XML blocks in the assistant text, results returned as a user message."""

    name: ClassVar[str] = "mcp_xml"
    result_role: ClassVar[Literal["user", "tool"]] = "user"

    def parse(self, action: Action) -> ParsedAction:
        """All `<use_mcp_tool>` calls in the action's text; never raises."""
        text, problem = safe_action_text(action)
        parsed = parse_mcp_xml(text)
        extra = [p for p in (problem, ignored_tool_calls_problem(action, _USAGE)) if p is not None]
        if not extra:
            return parsed
        return parsed.model_copy(update={"problems": [*extra, *parsed.problems]})

    def render_call(self, call: ToolCall) -> Action:
        """The canonical MCP XML block for `call` (arguments as indented JSON); the call needs a server."""
        if not call.server:
            raise ValueError(f"an MCP XML call needs a server name; tool {call.name!r} has none")
        return (
            f"{_OPEN}\n<server_name>{call.server}</server_name>\n<tool_name>{call.name}</tool_name>\n"
            f"{_ARGS_OPEN}\n{dump_json(call.arguments, indent=2)}\n{_ARGS_CLOSE}\n{_CLOSE}"
        )

    def render_tools(self, specs: Sequence[ToolSpec]) -> str:
        """A plain listing of the tools grouped by server (the full MiroThinker prompt is built elsewhere)."""
        servers: dict[str, list[ToolSpec]] = {}
        for spec in specs:
            servers.setdefault(spec.server, []).append(spec)
        sections = []
        for server, tools in servers.items():
            lines = [f"## Server name: {server}"]
            for spec in tools:
                schema = json.dumps(spec.input_schema, ensure_ascii=False)
                lines.append(
                    f"### Tool name: {spec.name}\nDescription: {spec.description}\nInput JSON schema: {schema}"
                )
            sections.append("\n".join(lines))
        return "\n\n".join(sections)


def dump_json(value: Any, indent: int | None = None) -> str:
    """JSON for embedding in tagged text: non-ASCII kept, `</` written `<\\/` so no closing tag appears."""
    return json.dumps(value, ensure_ascii=False, indent=indent).replace("</", "<\\/")
