"""Running one tool call outside an episode (CLI inspection, MCP-style callers) through the episode code path."""

from __future__ import annotations

from typing import Any

from miroenv.protocol.calls import ToolCall
from miroenv.tasks import Task
from miroenv.tools.base import EpisodeContext
from miroenv.tools.profiles import get_profile
from miroenv.tools.runner import CallOutcome, run_call
from miroenv.web.base import Web


def run_tool_once(
    web: Web,
    tool: str,
    arguments: dict[str, Any],
    *,
    profile: str = "mirothinker_v1",
    server: str | None = None,
) -> CallOutcome:
    """Run `tool` once against `web` in a throw-away episode context, exactly as an env step would."""
    chosen = get_profile(profile)
    ctx = EpisodeContext(web=web, task=Task(task_id="standalone", question="(none)"), episode_id="standalone")
    try:
        return run_call(
            ToolCall(server=server, name=tool, arguments=arguments),
            chosen.router(),
            ctx,
            chosen.max_result_chars,
        )
    finally:
        ctx.close()
