"""The conversation of an episode: every message kept in full, and the pruned view the model is sent."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from miroenv.protocol.text import scrub
from miroenv.tokens import TokenCounter

OMITTED_TOOL_RESULT = "Tool result is omitted to save tokens."
"""MiroThinker's placeholder for tool results outside the recency window."""


class Message(BaseModel):
    """One chat message, in the OpenAI chat shape plus bookkeeping the env needs."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    prunable: bool = Field(default=False, exclude=True, description="Counts toward the recency window.")

    def to_chat(self, content: str | None = None) -> dict[str, Any]:
        """The message as an OpenAI-style dict, optionally with replaced content."""
        out: dict[str, Any] = {"role": self.role, "content": self.content if content is None else content}
        if self.tool_calls is not None:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


class History:
    """Full message history with per-message token counts and the recency-pruned model view."""

    def __init__(self, counter: TokenCounter, keep_tool_results: int) -> None:
        self.messages: list[Message] = []
        self._tokens: list[int] = []
        self._counter = counter
        self.keep_tool_results = keep_tool_results
        self._omitted_tokens = counter(OMITTED_TOOL_RESULT)

    def append(self, message: Message) -> None:
        """Add a message and count its tokens once; counted first, so a counter that raises adds nothing."""
        tokens = self._counter(scrub(message.content or "")) + (
            self._counter(scrub(str(message.tool_calls))) if message.tool_calls else 0
        )
        self.messages.append(message)
        self._tokens.append(tokens)

    def _kept_flags(self) -> list[bool]:
        """Which messages are shown verbatim: all but the prunable ones before the last K prunable ones."""
        flags = [True] * len(self.messages)
        k = self.keep_tool_results
        if k < 0:
            return flags
        prunable = [i for i, m in enumerate(self.messages) if m.prunable]
        cut = prunable[: max(0, len(prunable) - k)]
        for index in cut:
            flags[index] = False
        return flags

    def context(self) -> list[dict[str, Any]]:
        """The messages to send to the model, older tool results replaced by the placeholder."""
        return [
            m.to_chat() if keep else m.to_chat(OMITTED_TOOL_RESULT)
            for m, keep in zip(self.messages, self._kept_flags(), strict=True)
        ]

    def full(self) -> list[dict[str, Any]]:
        """Every message with its full content."""
        return [m.to_chat() for m in self.messages]

    def context_tokens(self) -> int:
        """Tokens of `context()`, from the cached per-message counts."""
        return sum(
            tokens if keep else self._omitted_tokens
            for tokens, keep in zip(self._tokens, self._kept_flags(), strict=True)
        )
