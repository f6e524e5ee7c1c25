"""The contract between tool-call parsers, the env and the tools: what a parsed action looks like."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ErrorKind = Literal["format", "tool", "infra"]
"""Who is to blame for a failure: the model's text (`format`), the tool's refusal (`tool`), or our side (`infra`)."""


class ToolCall(BaseModel):
    """One tool invocation recovered from the model's text, in a format-independent shape."""

    model_config = ConfigDict(frozen=True)

    server: str | None = Field(
        default=None, description="MCP server name; None when the format has no servers (Hermes, OpenAI)."
    )
    name: str = Field(description="Tool name.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Decoded (and repaired) arguments.")
    call_id: str | None = Field(default=None, description="Format-level call id (OpenAI `tool_calls[].id`).")
    raw: str = Field(default="", description="The exact text of the call as the model wrote it.")
    repaired: bool = Field(default=False, description="True when the arguments needed lenient repair.")


class ParseProblem(BaseModel):
    """A tool call the model attempted but that could not be understood; becomes a `format` observation."""

    model_config = ConfigDict(frozen=True)

    message: str = Field(description="What was wrong, phrased for the model.")
    raw: str = Field(default="", description="The offending text (possibly shortened).")
    call_id: str | None = None


class ParsedAction(BaseModel):
    """Everything a parser found in one assistant message, in the order the model wrote it."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The assistant message's text content.")
    calls: list[ToolCall] = Field(default_factory=list)
    problems: list[ParseProblem] = Field(default_factory=list)

    @property
    def attempted_tool_use(self) -> bool:
        """True when the message holds a tool call, well-formed or not (so it is not a final reply)."""
        return bool(self.calls or self.problems)
