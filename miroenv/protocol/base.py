"""The tool-call format interface: a parser/renderer pair per way of writing tool calls."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from miroenv.protocol.calls import ParsedAction, ToolCall

Action = str | Mapping[str, Any]
"""What a policy hands to `step()`: the whole assistant text, or an OpenAI-style assistant message dict."""


class ToolSpec(BaseModel):
    """What a prompt or an MCP listing shows about one tool."""

    model_config = ConfigDict(frozen=True)

    server: str
    name: str
    description: str
    input_schema: dict[str, Any] = Field(default_factory=dict)

    def openai_function(self) -> dict[str, Any]:
        """The tool as an OpenAI `tools[]` entry (`{"type": "function", "function": {...}}`)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.input_schema},
        }


class ToolCallFormat(ABC):
    """Parses tool calls out of assistant messages and renders calls and tool lists in one format."""

    name: ClassVar[str]
    result_role: ClassVar[Literal["user", "tool"]]
    """Role of the message carrying tool results back to the model."""

    @abstractmethod
    def parse(self, action: Action) -> ParsedAction:
        """Find every tool call in `action`, in order. Never raises on any str or mapping input."""

    @abstractmethod
    def render_call(self, call: ToolCall) -> Action:
        """Write `call` the way a model using this format would (used to build scripted actions)."""

    @abstractmethod
    def render_tools(self, specs: Sequence[ToolSpec]) -> str:
        """The system-prompt section that lists the tools and explains how to call them."""


def action_text(action: Action) -> str:
    """The text content of an action (a string, or an assistant message's `content`, str or parts)."""
    if isinstance(action, str):
        return action
    content = action.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)
