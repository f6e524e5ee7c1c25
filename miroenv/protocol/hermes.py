"""The Hermes / Qwen tool-call format: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar, Literal

from miroenv.protocol.arguments import ArgumentsError, arguments_from_value, decode_arguments
from miroenv.protocol.base import Action, ToolCallFormat, ToolSpec
from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall
from miroenv.protocol.mcp_xml import (
    dump_json,
    ignored_tool_calls_problem,
    safe_action_text,
    scan_blocks,
    shorten,
)

_OPEN = "<tool_call>"
_CLOSE = "</tool_call>"
_USAGE = 'write each call as <tool_call>\n{"name": "TOOL", "arguments": {"key": "value"}}\n</tool_call>'
_INSTRUCTIONS = f"""# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{tools}}
</tools>

For each function call, return a json object with function name and arguments within \
{_OPEN}{_CLOSE} XML tags:
{_OPEN}
{{"name": <function-name>, "arguments": <args-json-object>}}
{_CLOSE}"""


def _block_to_call(body: str, raw: str) -> ToolCall | ParseProblem:
    """Turn the JSON inside one closed `<tool_call>` into a call, or a problem saying what is wrong."""
    try:
        payload, payload_repaired = decode_arguments(body)
    except ArgumentsError as exc:
        return ParseProblem(message=f"the <tool_call> content is {exc.reason}; {_USAGE}", raw=shorten(raw))
    name = payload.get("name")
    if not isinstance(name, str) or not name.strip():
        what = "has no" if name is None else "has an empty or non-string"
        return ParseProblem(message=f'the <tool_call> object {what} "name"; {_USAGE}', raw=shorten(raw))
    name = name.strip()
    key = "arguments" if "arguments" in payload else "parameters"
    try:
        arguments, repaired = arguments_from_value(payload.get(key))
    except ArgumentsError as exc:
        return ParseProblem(message=f'the "{key}" of tool {name!r} are {exc.reason}', raw=shorten(raw))
    return ToolCall(name=name, arguments=arguments, raw=raw, repaired=payload_repaired or repaired)


class HermesFormat(ToolCallFormat):
    """Hermes / Qwen chat-template tool calls, with results returned as `tool` messages."""

    name: ClassVar[str] = "hermes"
    result_role: ClassVar[Literal["user", "tool"]] = "tool"

    def parse(self, action: Action) -> ParsedAction:
        """All `<tool_call>` blocks in the action's text outside `<think>`, in order; never raises."""
        text, problem = safe_action_text(action)
        calls: list[ToolCall] = []
        problems = [p for p in (problem, ignored_tool_calls_problem(action, _USAGE)) if p is not None]
        for block in scan_blocks(text, _OPEN, _CLOSE):
            raw = text[block.start : block.end]
            if not block.closed:
                problems.append(
                    ParseProblem(
                        message=f"a <tool_call> has no closing </tool_call> tag; {_USAGE}", raw=shorten(raw)
                    )
                )
                continue
            result = _block_to_call(block.body, raw)
            if isinstance(result, ToolCall):
                calls.append(result)
            else:
                problems.append(result)
        return ParsedAction(text=text, calls=calls, problems=problems)

    def render_call(self, call: ToolCall) -> Action:
        """`call` as a `<tool_call>` block holding one line of JSON (the server is not part of this format)."""
        payload = dump_json({"name": call.name, "arguments": call.arguments}).replace(
            _OPEN, "\\u003ctool_call>"
        )
        return f"{_OPEN}\n{payload}\n{_CLOSE}"

    def render_tools(self, specs: Sequence[ToolSpec]) -> str:
        """Qwen's `# Tools` system-prompt section: one OpenAI function JSON per line inside `<tools>`."""
        lines = "\n".join(json.dumps(spec.openai_function(), ensure_ascii=False) for spec in specs)
        return _INSTRUCTIONS.replace("{tools}", lines)
