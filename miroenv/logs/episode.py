"""What every log importer produces and how it is written: episodes, a snapshot of their tool results, and
trajectories in miroenv's JSONL format that replay against that snapshot."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from miroenv._version import __version__
from miroenv.env import EnvConfig
from miroenv.logs.prompt import RecoveredPrompt
from miroenv.protocol.calls import ParseProblem, ToolCall
from miroenv.rewards.base import RewardContext, get_reward
from miroenv.tasks import Task, save_tasks
from miroenv.tools.recorded import (
    RECORDED_PROFILES_FILE,
    RecordedProfileSpec,
    occurrence_server,
    save_profile_specs,
)
from miroenv.tools.runner import CallOutcome, problem_outcome
from miroenv.trajectory import StepRecord, TrajectoryFooter, TrajectoryHeader, TrajectoryWriter
from miroenv.web.base import SearchRequest, ToolResultRecord, tool_call_key
from miroenv.web.snapshot import SnapshotWriter

ResultKind = Literal["tool", "infra"]
StepKind = Literal["tools", "reply", "final"]
SNAPSHOT_DIR = "snapshot"
TRAJECTORIES_FILE = "trajectories.jsonl"
TASKS_FILE = "tasks.jsonl"
_ERROR_PREFIXES = (
    "Tool execution failed",
    "Error executing tool",
    "Unknown tool:",
    "[ERROR]",
)
_CALL_FAILED = re.compile(r"^Tool call to \S+ on \S+ failed\. Error: ")


def classify_result(text: str) -> ResultKind | None:
    """`tool` for a result text that reports a failed call (MCP server and tool-manager wordings), else None."""
    if text.startswith(_ERROR_PREFIXES) or _CALL_FAILED.match(text):
        return "tool"
    return None


@dataclass
class RecordedCall:
    """One tool call of an assistant turn and the result text the agent received (None: not in the log)."""

    call: ToolCall
    result: str | None
    error_kind: ResultKind | None = None


@dataclass
class RecordedStep:
    """One assistant turn: its text, its calls with their results, and the message the agent got next.

    `kind` is `tools` (the turn called tools; the observation is their results joined by newlines), `reply` (no
    call, and the summary prompt came next) or `final` (the turn that ends the episode; empty observation).
    """

    action: str
    kind: StepKind
    observation: str | None
    calls: list[RecordedCall] = field(default_factory=list)
    problems: list[ParseProblem] = field(default_factory=list)
    note: str | None = None


@dataclass
class ImportedEpisode:
    """An agent log turned into what a miroenv episode needs: task, recovered prompt, steps, answer."""

    task: Task
    prompt: RecoveredPrompt
    user_message: str
    steps: list[RecordedStep]
    summary_turn: bool
    answer: str | None
    source: dict[str, Any] = field(default_factory=dict)
    keep_tool_results: int = -1
    log_answer: str | None = None

    @property
    def finished(self) -> bool:
        """True when the log reaches the reply that ends the episode."""
        return bool(self.steps) and self.steps[-1].kind == "final"


class ImportSummary(BaseModel):
    """What an import wrote and what it could not recover."""

    format: str
    out: str
    snapshot: str
    trajectories: str
    episodes: int = 0
    steps: int = 0
    tool_calls: int = 0
    tool_results: int = Field(default=0, description="Results recorded for exactly their call.")
    occurrence_results: int = Field(
        default=0, description="Results recorded per occurrence (the same call got different results)."
    )
    searches: int = 0
    pages: int = 0
    unrecorded: int = Field(default=0, description="Observations the log does not hold.")
    profiles: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def split_results(text: str, count: int) -> list[str] | None:
    """`text`, the results of `count` calls joined by newlines, split back into one text per call.

    A JSON result ends where its JSON value ends; another result ends before the next line that starts a JSON
    value or an error report, else at its first newline. None when `text` has fewer than `count - 1` newlines.
    Whatever the split, the parts rejoin to `text` exactly.
    """
    if count <= 1:
        return [text]
    newlines = [i for i, char in enumerate(text) if char == "\n"]
    if len(newlines) < count - 1:
        return None
    decoder = json.JSONDecoder()
    parts: list[str] = []
    pos = 0
    for remaining in range(count - 1, 0, -1):
        latest = newlines[len(newlines) - remaining]
        candidates = [i for i in newlines if pos <= i <= latest]
        end = candidates[0]
        if text[pos : pos + 1] in ("{", "["):
            try:
                _, stop = decoder.raw_decode(text, pos)
            except ValueError:
                stop = -1
            if stop in candidates:
                end = stop
        else:
            end = next((i for i in candidates if _starts_result(text[i + 1 : i + 40])), end)
        parts.append(text[pos:end])
        pos = end + 1
    parts.append(text[pos:])
    return parts


def _starts_result(line: str) -> bool:
    """True for text that looks like the start of a tool result: JSON, or an error report."""
    return line.startswith(("{", "[", "Tool call to ")) or classify_result(line) is not None


def assign_results(calls: Sequence[ToolCall], observation: str | None) -> list[RecordedCall]:
    """Pair each call of a turn with its part of the observation (results joined by newlines)."""
    if observation is None:
        return [RecordedCall(call, None) for call in calls]
    parts = split_results(observation, len(calls)) if calls else []
    if parts is None:
        return [RecordedCall(call, None) for call in calls]
    return [RecordedCall(call, part, classify_result(part)) for call, part in zip(calls, parts, strict=True)]


def _leading_text_field(result: str) -> str | None:
    """The `text` string of a scrape result cut mid-way (not valid JSON any more), decoded as far as it goes."""
    match = re.match(r'\{\s*"text":\s*"', result)
    if match is None:
        return None
    body = result[match.end() :]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            break
        index += 1
    raw = body[: min(index, len(body))]
    for cut in range(len(raw), max(len(raw) - 6, -1), -1):
        try:
            value = json.loads('"' + raw[:cut] + '"')
        except ValueError:
            continue
        return value if isinstance(value, str) else None
    return None


def _search_request(arguments: Mapping[str, Any]) -> SearchRequest | None:
    """The search a `google_search` call asked for, or None when its arguments do not make one."""
    try:
        request = SearchRequest.model_validate({k: v for k, v in arguments.items() if v is not None})
    except ValidationError:
        return None
    return request if request.q.strip() else None


@dataclass
class _Occurrence:
    """One call in one episode (its n-th with these arguments) and the result it got."""

    episode: str
    number: int
    call: ToolCall
    result: str | None
    error_kind: ResultKind | None


@dataclass
class SnapshotRecorder:
    """Collects every call result of the imported episodes and writes them into a snapshot.

    A call whose every occurrence got the same result is recorded for exactly its (server, tool, arguments).
    With `per_occurrence`, a call that got different results is recorded once per occurrence (episode and
    occurrence number), which recorded profiles look up; otherwise such a call is left to the tools. Search
    responses also become recorded searches, and scrape results with a `text` become pages.
    """

    per_occurrence: bool = True
    occurrences: dict[str, list[_Occurrence]] = field(default_factory=dict)
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, episode: str, call: ToolCall, result: str | None, error_kind: ResultKind | None) -> None:
        """Note that `call`, in `episode`, got `result` (None when the log does not hold it)."""
        key = tool_call_key(call.server, call.name, call.arguments)
        number = self._counts.get((episode, key), 0)
        self._counts[(episode, key)] = number + 1
        self.occurrences.setdefault(key, []).append(_Occurrence(episode, number, call, result, error_kind))

    def write(self, writer: SnapshotWriter, summary: ImportSummary, recorded_at: str) -> None:
        """Record results, searches and pages into `writer` (stamped `recorded_at`), counting them in `summary`."""
        searches: set[str] = set()
        pages: set[str] = set()
        for key in sorted(self.occurrences):
            seen = [o for o in self.occurrences[key] if o.result is not None]
            distinct = {(o.result, o.error_kind) for o in seen}
            if len(distinct) == 1:
                first = seen[0]
                writer.add_tool_result(
                    ToolResultRecord(
                        server=first.call.server,
                        tool=first.call.name,
                        arguments=dict(first.call.arguments),
                        result=first.result or "",
                        error_kind=first.error_kind,
                        recorded_at=recorded_at,
                    )
                )
                summary.tool_results += 1
            elif len(distinct) > 1 and self.per_occurrence:
                for o in seen:
                    writer.add_tool_result(
                        ToolResultRecord(
                            server=occurrence_server(o.call.server, o.episode, o.number),
                            tool=o.call.name,
                            arguments=dict(o.call.arguments),
                            result=o.result or "",
                            error_kind=o.error_kind,
                            recorded_at=recorded_at,
                        )
                    )
                    summary.occurrence_results += 1
            for o in seen:
                if o.error_kind is None and o.result is not None:
                    self._web_records(writer, o, searches, pages, recorded_at)
        summary.searches = len(searches)
        summary.pages = len(pages)

    @staticmethod
    def _web_records(
        writer: SnapshotWriter, o: _Occurrence, searches: set[str], pages: set[str], recorded_at: str
    ) -> None:
        """A search response as a recorded search, a scrape result as a page; the first seen of each wins."""
        assert o.result is not None
        try:
            payload = json.loads(o.result)
        except ValueError:
            payload = None
        arguments = o.call.arguments
        if isinstance(payload, dict) and isinstance(payload.get("organic"), list) and "q" in arguments:
            request = _search_request(arguments)
            if request is not None and request.key() not in searches:
                searches.add(request.key())
                writer.add_search(request, payload, recorded_at=recorded_at)
            return
        url = arguments.get("url")
        if not isinstance(url, str) or not url.strip() or url in pages:
            return
        truncated = False
        if isinstance(payload, dict) and isinstance(payload.get("text"), str):
            text: str | None = payload["text"]
        else:
            text, truncated = _leading_text_field(o.result), True
        if not text:
            return
        meta = payload.get("metadata") if isinstance(payload, dict) else None
        title = str(meta["title"]) if isinstance(meta, dict) and isinstance(meta.get("title"), str) else ""
        metadata: dict[str, Any] = {"imported_from": f"{o.call.server}/{o.call.name}"}
        if truncated:
            metadata["truncated"] = True
        pages.add(url)
        writer.add_page(
            url,
            text=text,
            title=title,
            extractor="recorded-tool-result",
            captured_at=recorded_at,
            metadata=metadata,
        )


def _capture_date(dates: Iterable[str | None]) -> str:
    """The earliest prompt date, else today's date (the import's own capture date)."""
    known = sorted(d for d in dates if d)
    return known[0] if known else datetime.now(timezone.utc).date().isoformat()


def _call_outcome(recorded: RecordedCall) -> dict[str, Any]:
    """A recorded call as the `calls` entry the env writes for a step (a `CallOutcome` dump)."""
    text = recorded.result if recorded.result is not None else ""
    return CallOutcome(
        server=recorded.call.server,
        tool=recorded.call.name,
        arguments=dict(recorded.call.arguments),
        call_id=recorded.call.call_id,
        text=text,
        error_kind=recorded.error_kind,
        error=text if recorded.error_kind else None,
    ).model_dump()


def _errors(episode: ImportedEpisode) -> dict[str, int]:
    """Errors by kind, counted the way the env counts them."""
    errors = {"format": 0, "tool": 0, "infra": 0}
    for step in episode.steps:
        errors["format"] += len(step.problems)
        for call in step.calls:
            if call.error_kind is not None:
                errors[call.error_kind] += 1
    return errors


def _records(
    episode: ImportedEpisode, spec: RecordedProfileSpec, snapshot: Mapping[str, str], reward_name: str
) -> list[TrajectoryHeader | StepRecord | TrajectoryFooter]:
    """The header, steps and footer of one imported episode."""
    tool_calls = sum(len(step.calls) for step in episode.steps)
    config = EnvConfig(
        profile=spec.name,
        tool_format=spec.tool_format,
        max_tool_calls=max(600, tool_calls),
        max_turns=None,
        max_context_tokens=None,
        keep_tool_results=episode.keep_tool_results,
        summary_turn=episode.summary_turn,
    )
    system = episode.prompt.text
    header = TrajectoryHeader(
        episode_id=f"{episode.task.task_id}-imported",
        env={
            "miroenv_version": __version__,
            "config": config.model_dump(),
            "profile": spec.name,
            "tool_format": spec.tool_format,
            "keep_tool_results": episode.keep_tool_results,
            "summary_turn": episode.summary_turn,
            "snapshot": dict(snapshot),
            "task": episode.task.model_dump(),
            "seed": None,
            "reward": reward_name,
            "recorded_profile": spec.model_dump(),
        },
        observation=f"{system}\n\n{episode.user_message}",
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": episode.user_message},
        ],
        source=episode.source,
    )
    records: list[TrajectoryHeader | StepRecord | TrajectoryFooter] = [header]
    errors = _errors(episode)
    breakdown = None
    if episode.finished:
        breakdown = get_reward(reward_name)(
            RewardContext(
                answer=episode.answer,
                task=episode.task,
                tool_calls=tool_calls,
                format_errors=errors["format"],
                tool_errors=errors["tool"],
                infra_errors=errors["infra"],
                turns=len(episode.steps),
                terminated=True,
                truncated=False,
            )
        )
    for index, step in enumerate(episode.steps, start=1):
        last = step.kind == "final"
        outcomes = [_call_outcome(c) for c in step.calls] + [
            problem_outcome(p).model_dump() for p in step.problems
        ]
        extra: dict[str, Any] = {}
        if step.observation is None:
            extra["observation_recorded"] = False
        if step.note:
            extra["note"] = step.note
        records.append(
            StepRecord(
                index=index,
                action=step.action,
                observation=step.observation or "",
                reward=float(breakdown.total) if last and breakdown is not None else 0.0,
                terminated=last,
                truncated=False,
                calls=outcomes,
                error_kinds=sorted({o["error_kind"] for o in outcomes if o["error_kind"]}),
                **extra,
            )
        )
    if breakdown is not None:
        records.append(
            TrajectoryFooter(
                answer=episode.answer,
                reward=float(breakdown.total),
                reward_components=dict(breakdown.components),
                terminated=True,
                truncated=False,
                steps=len(episode.steps),
                tool_calls=tool_calls,
                errors=errors,
                log_answer=episode.log_answer,
            )
        )
    return records


def write_import(
    episodes: Sequence[ImportedEpisode],
    out: str | Path,
    *,
    format_name: str,
    name: str | None = None,
    reward: str = "gaia",
    default_summary_turn: bool = False,
    warnings: Sequence[str] = (),
) -> ImportSummary:
    """Write `out/snapshot/` (results, searches, pages, tasks, recorded profiles) and `out/trajectories.jsonl`."""
    get_reward(reward)
    out = Path(out)
    snapshot_dir = out / SNAPSHOT_DIR
    trajectories = out / TRAJECTORIES_FILE
    summary = ImportSummary(
        format=format_name,
        out=str(out),
        snapshot=str(snapshot_dir),
        trajectories=str(trajectories),
        warnings=list(warnings),
    )
    specs: dict[str, RecordedProfileSpec] = {}
    episode_specs: list[RecordedProfileSpec] = []
    recorder = SnapshotRecorder(per_occurrence=True)
    task_ids: set[str] = set()
    for episode in episodes:
        if episode.task.task_id in task_ids:
            raise ValueError(f"two imported episodes have the task id {episode.task.task_id!r}")
        task_ids.add(episode.task.task_id)
        spec = RecordedProfileSpec.create(
            episode.prompt.text,
            episode.prompt.specs,
            date=episode.prompt.date,
            summary_turn=default_summary_turn,
            keep_tool_results=episode.keep_tool_results,
            source=format_name,
        )
        spec = specs.setdefault(spec.name, spec)
        episode_specs.append(spec)
        for problem in episode.prompt.problems:
            summary.warnings.append(f"{episode.task.task_id}: {problem}")
        for step in episode.steps:
            if step.observation is None and step.kind != "final":
                summary.unrecorded += 1
            for recorded in step.calls:
                recorder.add(episode.task.task_id, recorded.call, recorded.result, recorded.error_kind)
    trajectories.unlink(missing_ok=True)
    capture_date = _capture_date(e.prompt.date for e in episodes)
    with SnapshotWriter(
        snapshot_dir,
        name=name or f"{format_name}-import",
        capture_date=capture_date,
        description=f"Tool results of {len(episodes)} {format_name} episodes, imported by miroenv.",
        overwrite=True,
    ) as writer:
        recorder.write(writer, summary, f"{capture_date}T00:00:00+00:00")
        manifest = writer.finalize()
    save_tasks([e.task for e in episodes], snapshot_dir / TASKS_FILE)
    save_profile_specs(specs.values(), snapshot_dir / RECORDED_PROFILES_FILE)
    snapshot_id = {"name": manifest.name, "content_hash": manifest.content_hash}
    trajectory_writer = TrajectoryWriter(trajectories)
    try:
        for episode, spec in zip(episodes, episode_specs, strict=True):
            for record in _records(episode, spec, snapshot_id, reward):
                trajectory_writer.write(record)
    finally:
        trajectory_writer.close()
    summary.episodes = len(episodes)
    summary.steps = sum(len(e.steps) for e in episodes)
    summary.tool_calls = sum(len(s.calls) for e in episodes for s in e.steps)
    summary.profiles = sorted(specs)
    return summary
