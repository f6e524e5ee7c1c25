"""Scripted actions in a few words: tool calls rendered the way a model using a given format writes them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from miroenv.protocol.base import Action
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.registry import get_format
from miroenv.tools.profiles import get_profile
from miroenv.tools.python import sandbox_public_id

FINAL_REPLY = "I have what I need to answer."
"""The reply without tool calls that makes a summary-turn profile ask for the final answer."""

SUMMARY_THOUGHT = "The summary asks for the final answer only."


@functools.cache
def _servers(profile: str) -> dict[str, str]:
    return {spec.name: spec.server for spec in get_profile(profile).specs()}


def server_of(tool: str, profile: str = "mirothinker_v1") -> str:
    """The server that offers `tool` in `profile`; `ValueError` listing the profile's tools otherwise."""
    servers = _servers(profile)
    if tool not in servers:
        raise ValueError(
            f"profile {profile!r} has no tool {tool!r}; its tools are: {', '.join(sorted(servers))}"
        )
    return servers[tool]


def with_thought(action: Action, thought: str | None) -> Action:
    """`action` preceded by a `<think>` block (text formats) or carrying `thought` as its content (message dicts)."""
    if thought is None:
        return action
    if isinstance(action, str):
        return f"<think>\n{thought}\n</think>\n\n{action}"
    return {**action, "content": thought}


def tool_call(
    tool: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    thought: str | None = None,
    server: str | None = None,
    tool_format: str = "mcp_xml",
    profile: str = "mirothinker_v1",
    call_id: str | None = None,
) -> Action:
    """An assistant message calling `tool` with `arguments` in `tool_format` (the server is looked up in
    `profile` when the format needs one), optionally after a `thought`."""
    fmt = get_format(tool_format)
    if server is None and fmt.name == "mcp_xml":
        server = server_of(tool, profile)
    call = ToolCall(server=server, name=tool, arguments=dict(arguments or {}), call_id=call_id)
    return with_thought(fmt.render_call(call), thought)


def search_call(
    q: str, *, thought: str | None = None, tool_format: str = "mcp_xml", **arguments: Any
) -> Action:
    """A `google_search` call for `q` (extra Serper arguments such as `num` allowed)."""
    return tool_call("google_search", {"q": q, **arguments}, thought=thought, tool_format=tool_format)


def scrape_call(
    url: str, info_to_extract: str, *, thought: str | None = None, tool_format: str = "mcp_xml"
) -> Action:
    """A `scrape_and_extract_info` call reading `url` for `info_to_extract`."""
    return tool_call(
        "scrape_and_extract_info",
        {"url": url, "info_to_extract": info_to_extract},
        thought=thought,
        tool_format=tool_format,
    )


def sandbox_id(task_id: str, ordinal: int = 1) -> str:
    """The id the model sees for the `ordinal`-th sandbox created in an episode of `task_id`."""
    return sandbox_public_id(task_id, ordinal)


def create_sandbox_call(*, thought: str | None = None, tool_format: str = "mcp_xml") -> Action:
    """A `create_sandbox` call (its id is `sandbox_id(task_id, n)` for the episode's n-th sandbox)."""
    return tool_call("create_sandbox", thought=thought, tool_format=tool_format)


def python_call(
    code: str,
    *,
    task_id: str,
    sandbox: int = 1,
    thought: str | None = None,
    tool_format: str = "mcp_xml",
) -> Action:
    """A `run_python_code` call in the episode's `sandbox`-th sandbox of task `task_id`."""
    return tool_call(
        "run_python_code",
        {"sandbox_id": sandbox_id(task_id, sandbox), "code_block": code},
        thought=thought,
        tool_format=tool_format,
    )


def final_answer(answer: str, reasoning: str = "", *, summary_turn: bool = True) -> list[str]:
    """The replies that end an episode with `answer`: for summary-turn profiles (MiroThinker) a reply without
    tool calls and then the boxed answer to the summary prompt; otherwise the boxed answer alone."""
    boxed = f"{reasoning}\n\n\\boxed{{{answer}}}" if reasoning else f"\\boxed{{{answer}}}"
    if not summary_turn:
        return [boxed]
    first = f"<think>\n{reasoning}\n</think>\n\n{FINAL_REPLY}" if reasoning else FINAL_REPLY
    return [first, f"<think>\n{SUMMARY_THOUGHT}\n</think>\n\n{boxed}"]
