"""The OpenAI chat-completions tool-call format: an assistant message dict with a `tool_calls` list."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from miroenv.protocol.arguments import ArgumentsError, arguments_from_value
from miroenv.protocol.base import Action, ToolCallFormat, ToolSpec
from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall
from miroenv.protocol.mcp_xml import safe_action_text, safe_repr, shorten

_USAGE = (
    'each tool call must look like {"id": "call_1", "type": "function", '
    '"function": {"name": "TOOL", "arguments": "{\\"key\\": \\"value\\"}"}}'
)


def _entry_to_call(index: int, entry: object) -> ToolCall | ParseProblem:
    """Turn `tool_calls[index]` into a call, or a problem (carrying the call id) saying what is wrong."""
    raw = safe_repr(entry)
    if not isinstance(entry, Mapping):
        return ParseProblem(
            message=f"tool_calls[{index}] is not an object; {_USAGE}",
            raw=shorten(raw),
            call_id=f"call_{index}",
        )
    call_id = entry.get("id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"call_{index}"
    function = entry.get("function")
    if not isinstance(function, Mapping):
        return ParseProblem(
            message=f'tool_calls[{index}] has no "function" object; {_USAGE}',
            raw=shorten(raw),
            call_id=call_id,
        )
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        return ParseProblem(
            message=f'tool_calls[{index}] has no function "name"; {_USAGE}', raw=shorten(raw), call_id=call_id
        )
    name = name.strip()
    try:
        arguments, repaired = arguments_from_value(function.get("arguments"))
    except ArgumentsError as exc:
        return ParseProblem(
            message=f"the arguments of tool {name!r} (tool_calls[{index}]) are {exc.reason}",
            raw=shorten(raw),
            call_id=call_id,
        )
    return ToolCall(name=name, arguments=arguments, call_id=call_id, raw=raw, repaired=repaired)


class OpenAIFormat(ToolCallFormat):
    """OpenAI-style structured tool calls; results go back as `tool` messages carrying `tool_call_id`."""

    name: ClassVar[str] = "openai"
    result_role: ClassVar[Literal["user", "tool"]] = "tool"

    def parse(self, action: Action) -> ParsedAction:
        """The calls in a message dict's `tool_calls`, in order; a plain string has none. Never raises."""
        text, problem = safe_action_text(action)
        problems = [problem] if problem is not None else []
        calls: list[ToolCall] = []
        if not isinstance(action, Mapping):
            return ParsedAction(text=text, problems=problems)
        try:
            tool_calls = action.get("tool_calls")
        except Exception as exc:
            tool_calls = None
            problems.append(
                ParseProblem(message=f"the tool_calls field could not be read ({type(exc).__name__})")
            )
        if tool_calls is None:
            return ParsedAction(text=text, problems=problems)
        if not isinstance(tool_calls, Sequence) or isinstance(tool_calls, (str, bytes, bytearray)):
            problems.append(
                ParseProblem(
                    message=f"tool_calls must be a list of tool calls, got {type(tool_calls).__name__}; {_USAGE}",
                    raw=shorten(safe_repr(tool_calls)),
                )
            )
            return ParsedAction(text=text, problems=problems)
        try:
            entries = list(tool_calls)
        except Exception as exc:
            entries = []
            problems.append(
                ParseProblem(message=f"the tool_calls list could not be read ({type(exc).__name__})")
            )
        for index, entry in enumerate(entries):
            try:
                result = _entry_to_call(index, entry)
            except Exception as exc:
                result = ParseProblem(
                    message=f"tool_calls[{index}] could not be read ({type(exc).__name__}); {_USAGE}",
                    raw=shorten(safe_repr(entry)),
                    call_id=f"call_{index}",
                )
            if isinstance(result, ToolCall):
                calls.append(result)
            else:
                problems.append(result)
        return ParsedAction(text=text, calls=calls, problems=problems)

    def render_call(self, call: ToolCall) -> Action:
        """An assistant message dict holding `call` as its only tool call (id `call_0` when it has none)."""
        tool_call: dict[str, Any] = {
            "id": call.call_id or "call_0",
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments, ensure_ascii=False)},
        }
        return {"role": "assistant", "content": None, "tool_calls": [tool_call]}

    def render_tools(self, specs: Sequence[ToolSpec]) -> str:
        """A short note: with this format the tools travel in the API's `tools` parameter, not the prompt."""
        names = ", ".join(spec.name for spec in specs)
        if not names:
            return "No tools are available."
        return (
            f"The tools ({names}) are provided through the API's `tools` parameter; call them with "
            "`tool_calls` in your reply."
        )
