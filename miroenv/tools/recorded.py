"""Recorded tool profiles: the tool surface of an imported agent log, answering from recorded results.

A `RecordedProfileSpec` keeps what a log's system prompt offered (servers, tool names, descriptions and schemas,
the prompt text itself); `register_recorded_profile` makes it a profile `ResearchEnv` can name. Its tools
answer a call from the snapshot's recorded results: the runner returns a result recorded for exactly the call's
(server, tool, arguments); a call that got different results at different times in the log (the live web
changed, or a repeated query came back reordered) is answered by the result recorded for its occurrence in the
episode. A call the log never made falls back to the snapshot's search and pages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miroenv.protocol.base import ToolCallFormat, ToolSpec
from miroenv.protocol.prompts import render_summary_prompt
from miroenv.tasks import Task
from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolArguments, ToolFailure, ToolServer
from miroenv.tools.profiles import PROFILES, ToolProfile, minimal, mirothinker_v1
from miroenv.tools.runner import describe_validation_error, truncate_result
from miroenv.tools.search import dump_tool_json
from miroenv.web.base import SearchRequest, tool_call_key
from miroenv.web.llm_extract import LLMExtractor

RECORDED_MESSAGES_KEY = "recorded_messages"
"""`Task.metadata` key holding the log's own user messages: `{"task": ..., "summary": ...}`."""
OCCURRENCES_STATE_KEY = "recorded.occurrences"
"""`EpisodeContext.state` key counting each call's occurrences in the episode."""
RECORDED_PROFILES_FILE = "recorded_profiles.json"
"""Where importers keep the recorded profiles next to a snapshot's manifest."""
FALLBACK_MAX_CHARS = 100_000
"""Cut applied to fallback results (recorded results are returned uncut)."""


def occurrence_server(server: str | None, episode: str, occurrence: int) -> str:
    """The server field a result is recorded under when it belongs to one occurrence of a call in one episode."""
    return f"{server or ''}#{episode}#{occurrence}"


class RecordedProfileSpec(BaseModel):
    """Everything needed to rebuild a recorded tool profile: prompt text and date, tools, policies."""

    model_config = ConfigDict(frozen=True)

    name: str
    prompt: str = Field(description="The system prompt exactly as recorded.")
    date: str | None = Field(default=None, description="The prompt's `Today is:` date.")
    specs: list[ToolSpec] = Field(default_factory=list)
    tool_format: str = "mcp_xml"
    summary_turn: bool = False
    keep_tool_results: int = -1
    source: str = Field(default="", description="Which importer made it (mirorl, miroflow, ...).")

    @classmethod
    def create(
        cls,
        prompt: str,
        specs: Sequence[ToolSpec],
        *,
        date: str | None = None,
        tool_format: str = "mcp_xml",
        summary_turn: bool = False,
        keep_tool_results: int = -1,
        source: str = "",
    ) -> RecordedProfileSpec:
        """A spec named after a hash of its content, so equal prompts share one profile name."""
        undated = prompt.replace(f"Today is: {date}", "Today is: ", 1) if date else prompt
        content = json.dumps(
            [
                undated,
                [s.model_dump() for s in specs],
                tool_format,
                summary_turn,
                keep_tool_results,
            ],
            sort_keys=True,
            ensure_ascii=False,
        )
        digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:12]
        prefix = f"recorded-{source}" if source else "recorded"
        return cls(
            name=f"{prefix}-{digest}",
            prompt=prompt,
            date=date,
            specs=list(specs),
            tool_format=tool_format,
            summary_turn=summary_turn,
            keep_tool_results=keep_tool_results,
            source=source,
        )


class RecordedArguments(ToolArguments):
    """Any arguments: a recorded tool takes what the log's call passed, checked against nothing."""

    model_config = ConfigDict(extra="allow")


class RecordedTool(Tool[RecordedArguments]):
    """A tool from a recorded prompt; subclassed per tool by `recorded_tool` to carry its name and description."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    arguments_model = RecordedArguments

    def __init__(self, server: str, schema: Mapping[str, Any], fallback: Tool[Any] | None) -> None:
        self.server = server
        self.schema = dict(schema)
        self.fallback = fallback

    def input_schema(self) -> dict[str, Any]:
        """The schema as the recorded prompt showed it."""
        return dict(self.schema)

    def run(self, args: RecordedArguments, ctx: EpisodeContext) -> str:
        """The result recorded for this occurrence of the call in this episode, else the fallback's."""
        arguments = dict(args.model_extra or {})
        counts: dict[str, int] = ctx.state.setdefault(OCCURRENCES_STATE_KEY, {})
        key = tool_call_key(self.server, self.name, arguments)
        occurrence = counts.get(key, 0)
        counts[key] = occurrence + 1
        record = ctx.web.tool_result(
            occurrence_server(self.server, ctx.task.task_id, occurrence), self.name, arguments
        )
        if record is not None:
            if record.error_kind == "tool":
                raise ToolFailure(record.result)
            if record.error_kind == "infra":
                raise InfraFailure(record.result)
            return record.result
        return self._run_fallback(arguments, ctx)

    def _run_fallback(self, arguments: dict[str, Any], ctx: EpisodeContext) -> str:
        """A call the log never made: search or read pages in the snapshot, else say nothing is recorded."""
        if self.name == "google_search":
            try:
                request = SearchRequest.model_validate(arguments)
            except ValidationError as exc:
                raise ToolFailure(describe_validation_error(self.name, exc)) from exc
            text = dump_tool_json(ctx.web.search(request).payload)
        elif self.fallback is not None:
            try:
                parsed = self.fallback.arguments_model.model_validate(arguments)
            except ValidationError as exc:
                raise ToolFailure(describe_validation_error(self.name, exc)) from exc
            text = self.fallback.run(parsed, ctx)
        else:
            raise ToolFailure(
                f"Tool call to {self.name} on {self.server} failed. Error: this snapshot holds no recorded "
                "result for these arguments."
            )
        return truncate_result(text, FALLBACK_MAX_CHARS)[0]


def recorded_tool(spec: ToolSpec, fallback: Tool[Any] | None = None) -> RecordedTool:
    """A recorded tool named and described as in `spec`, falling back to `fallback` for unrecorded calls."""
    cls = cast(
        "type[RecordedTool]",
        type(f"Recorded_{spec.name}", (RecordedTool,), {"name": spec.name, "description": spec.description}),
    )
    return cls(spec.server, spec.input_schema, fallback)


def _fallback_tools(llm_extractor: LLMExtractor | None) -> dict[str, Tool[Any]]:
    """miroenv's own implementations by tool name (MiroThinker v1.0's first), for calls nobody recorded."""
    tools: dict[str, Tool[Any]] = {}
    for profile in (mirothinker_v1(llm_extractor=llm_extractor), minimal(llm_extractor=llm_extractor)):
        for server in profile.servers:
            for tool in server.tools:
                tools.setdefault(tool.name, tool)
    return tools


def _recorded_message(task: Task, which: str) -> str | None:
    """The log's own `task` or `summary` message carried in the task metadata, if any."""
    messages = task.metadata.get(RECORDED_MESSAGES_KEY)
    if isinstance(messages, Mapping):
        value = messages.get(which)
        if isinstance(value, str):
            return value
    return None


@dataclass(frozen=True)
class RecordedProfile(ToolProfile):
    """A profile whose system prompt is the recorded prompt text and whose user messages are the log's own."""

    prompt: str = ""
    prompt_date: str | None = None

    def system_prompt(self, date: str, fmt: ToolCallFormat) -> str:
        """The recorded prompt, its `Today is:` date replaced when the episode's date differs."""
        if self.prompt_date and date != self.prompt_date:
            return self.prompt.replace(f"Today is: {self.prompt_date}", f"Today is: {date}", 1)
        return self.prompt

    def task_message(self, task: Task) -> str:
        """The log's first user message when the task carries it, else the question."""
        recorded = _recorded_message(task, "task")
        return recorded if recorded is not None else task.question + self.task_suffix

    def summary_message(self, task: Task) -> str:
        """The log's summary prompt when the task carries it, else MiroThinker's."""
        recorded = _recorded_message(task, "summary")
        return recorded if recorded is not None else render_summary_prompt(task.question)


def recorded_profile(spec: RecordedProfileSpec, llm_extractor: LLMExtractor | None = None) -> RecordedProfile:
    """Build the profile `spec` describes: its servers and tools in prompt order."""
    fallbacks = _fallback_tools(llm_extractor)
    servers: dict[str, list[Tool[Any]]] = {}
    for tool_spec in spec.specs:
        servers.setdefault(tool_spec.server, []).append(
            recorded_tool(tool_spec, fallbacks.get(tool_spec.name))
        )
    return RecordedProfile(
        name=spec.name,
        servers=tuple(ToolServer(name, tuple(tools)) for name, tools in servers.items()),
        tool_format=spec.tool_format,
        summary_turn=spec.summary_turn,
        keep_tool_results=spec.keep_tool_results,
        max_result_chars=0,
        prompt=spec.prompt,
        prompt_date=spec.date,
    )


def register_profile(name: str, factory: Callable[..., ToolProfile]) -> None:
    """Make `factory` (called with `llm_extractor=`) the profile `EnvConfig(profile=name)` builds."""
    PROFILES[name] = factory


def register_recorded_profile(spec: RecordedProfileSpec) -> str:
    """Register the profile `spec` describes under its name and return the name."""

    def factory(llm_extractor: LLMExtractor | None = None) -> ToolProfile:
        return recorded_profile(spec, llm_extractor=llm_extractor)

    register_profile(spec.name, factory)
    return spec.name


def save_profile_specs(specs: Iterable[RecordedProfileSpec], path: str | Path) -> None:
    """Write specs as a JSON list (a snapshot's `recorded_profiles.json`)."""
    data = [spec.model_dump() for spec in specs]
    Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def load_profile_specs(path: str | Path) -> list[RecordedProfileSpec]:
    """Read specs written by `save_profile_specs`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return [RecordedProfileSpec.model_validate(item) for item in data]


def register_recorded_profiles(path: str | Path) -> list[str]:
    """Register every profile in a specs file (or in `<snapshot>/recorded_profiles.json`); returns the names."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDED_PROFILES_FILE
    return [register_recorded_profile(spec) for spec in load_profile_specs(path)]
