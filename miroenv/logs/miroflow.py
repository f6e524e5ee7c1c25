"""Import MiroFlow / MiroThinker task logs (the JSON a MiroThinker run saves per task).

A log holds `task_id`, the question (`input.task_description`), `ground_truth` and `final_boxed_answer` at the top
level, and the main agent's conversation in `main_agent_message_history` (`{"system_prompt": ...,
"message_history": [...]}`, or a bare message list; `message_history` in older logs). Message contents are
strings or lists of `{"type": "text", "text": ...}` parts. MiroThinker v1.0 returns the results of one turn's calls
as a single user message (their texts joined by newlines); after a reply without a tool call it sends the
summary prompt, and the next reply holds the `\\boxed{}` answer. When the turn budget runs out, MiroThinker
drops the last turn's tool results and sends the summary prompt in their place: that turn's results are not in
the log, and the episode replays without a summary turn, ending on the summary reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from miroenv.jsonl import iter_jsonl
from miroenv.logs.episode import ImportedEpisode, ImportSummary, RecordedStep, assign_results, write_import
from miroenv.logs.prompt import recover_prompt
from miroenv.protocol.base import action_text
from miroenv.protocol.boxed import extract_boxed
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.tasks import Task

SUMMARY_OPENING = "Summarize the above conversation"
"""How MiroThinker's summary prompt begins."""
OMITTED_RESULT = "Tool result is omitted to save tokens."
"""MiroThinker's placeholder for a tool result dropped by its recency policy (the result itself is lost)."""
KEEP_TOOL_RESULTS = 5
_FORMAT = McpXmlFormat()


class TaskLogError(ValueError):
    """A JSON document that is not a MiroFlow task log; the message says what is missing."""


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: its string content, or its text parts joined."""
    return action_text(message)


def _history(data: Mapping[str, Any]) -> tuple[str | None, list[Mapping[str, Any]]]:
    """The system prompt (if stored apart) and the messages of the main agent."""
    history = data.get("main_agent_message_history")
    if history is None:
        history = data.get("message_history")
    system: str | None = None
    if isinstance(history, Mapping):
        raw_system = history.get("system_prompt")
        system = raw_system if isinstance(raw_system, str) else None
        history = history.get("message_history")
    if not isinstance(history, list):
        raise TaskLogError("no 'main_agent_message_history' or 'message_history' list of messages")
    return system, [m for m in history if isinstance(m, Mapping)]


def _question(data: Mapping[str, Any], first_user: str) -> str:
    """The bare question: `input.task_description`, another top-level field, else the first user message."""
    task_input = data.get("input")
    if isinstance(task_input, Mapping) and isinstance(task_input.get("task_description"), str):
        return str(task_input["task_description"])
    for key in ("task_description", "question", "task_question"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return first_user


def parse_task_log(data: Mapping[str, Any], task_id: str, *, source: str = "") -> ImportedEpisode:
    """One task log as an imported episode: recovered prompt, task, a step per assistant turn, the answer."""
    system, messages = _history(data)
    if messages and messages[0].get("role") in ("system", "developer"):
        system = system if system is not None else message_text(messages[0])
        messages = messages[1:]
    if system is None:
        raise TaskLogError("the log holds no system prompt")
    if not messages or messages[0].get("role") != "user":
        raise TaskLogError("the conversation does not start with the user's task")
    user = message_text(messages[0])
    steps: list[RecordedStep] = []
    summary: str | None = None
    summary_turn = False
    in_summary = False
    rest = messages[1:]
    index = 0
    while index < len(rest):
        message = rest[index]
        if message.get("role") != "assistant":
            index += 1
            continue
        action = message_text(message)
        following = (
            rest[index + 1] if index + 1 < len(rest) and rest[index + 1].get("role") == "user" else None
        )
        reply = message_text(following) if following is not None else None
        index += 2 if following is not None else 1
        if in_summary:
            steps.append(RecordedStep(action=action, kind="final", observation=""))
            break
        parsed = _FORMAT.parse(action)
        if not parsed.attempted_tool_use:
            if reply is None:
                steps.append(RecordedStep(action=action, kind="final", observation=""))
                break
            summary, summary_turn, in_summary = reply, True, True
            steps.append(RecordedStep(action=action, kind="reply", observation=reply))
            continue
        note: str | None = None
        observation = reply
        budget_cut = reply is not None and reply.startswith(SUMMARY_OPENING) and index == len(rest) - 1
        if budget_cut:
            summary, in_summary, observation = reply, True, None
            note = "the turn budget ran out: MiroThinker replaced this turn's results with the summary prompt"
        elif reply == OMITTED_RESULT:
            observation, note = None, "the log keeps only a placeholder for this result"
        elif reply is None:
            note = "the log ends before this turn's results"
        steps.append(
            RecordedStep(
                action=action,
                kind="tools",
                observation=observation,
                calls=assign_results(parsed.calls, observation),
                problems=list(parsed.problems),
                note=note,
            )
        )
    recovered = recover_prompt(system)
    truth = data.get("ground_truth")
    recorded: dict[str, str] = {"task": user}
    if summary is not None:
        recorded["summary"] = summary
    metadata: dict[str, Any] = {"recorded_messages": recorded, "source": "miroflow"}
    for key in ("status", "final_judge_result", "judge_type"):
        if isinstance(data.get(key), str) and data[key]:
            metadata[key] = data[key]
    task = Task(
        task_id=task_id,
        question=_question(data, user) or user,
        answer=truth if isinstance(truth, str) and truth else None,
        date=recovered.date,
        metadata=metadata,
    )
    final = steps[-1].action if steps and steps[-1].kind == "final" else None
    log_answer = data.get("final_boxed_answer")
    return ImportedEpisode(
        task=task,
        prompt=recovered,
        user_message=user,
        steps=steps,
        summary_turn=summary_turn,
        answer=extract_boxed(final) if final is not None else None,
        source={"format": "miroflow", "file": source, "task_id": task_id},
        keep_tool_results=KEEP_TOOL_RESULTS,
        log_answer=log_answer if isinstance(log_answer, str) else None,
    )


def _documents(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, log) for a `.json` log, every line of a `.jsonl` file, or every such file in a directory."""
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.suffix in (".json", ".jsonl") and child.is_file():
                yield from _documents(child)
        return
    if path.suffix == ".jsonl":
        for lineno, data in iter_jsonl(path, objects=True):
            yield f"{path}:{lineno}", data
        return
    yield str(path), _load(path.read_text(encoding="utf-8"), str(path))


def _load(text: str, where: str) -> Mapping[str, Any]:
    """One JSON object, or `TaskLogError` naming where it came from."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskLogError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise TaskLogError(f"{where}: expected a JSON object")
    return data


def load_miroflow(sources: Sequence[str | Path]) -> list[ImportedEpisode]:
    """Every task log in the given files and directories; repeated task ids get a `-2`, `-3`, ... suffix."""
    episodes: list[ImportedEpisode] = []
    seen: dict[str, int] = {}
    for source in sources:
        for where, data in _documents(Path(source)):
            raw_id = data.get("task_id")
            base = str(raw_id) if raw_id not in (None, "") else Path(where.split(":")[0]).stem
            seen[base] = seen.get(base, 0) + 1
            task_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
            try:
                episodes.append(parse_task_log(data, task_id, source=where))
            except TaskLogError as exc:
                raise TaskLogError(f"{where}: {exc}") from exc
    return episodes


def import_miroflow(
    sources: Sequence[str | Path], out: str | Path, *, name: str | None = None, reward: str = "gaia"
) -> ImportSummary:
    """Import MiroFlow/MiroThinker task logs into `out/` (snapshot and trajectories)."""
    return write_import(
        load_miroflow(sources),
        out,
        format_name="miroflow",
        name=name,
        reward=reward,
        default_summary_turn=True,
    )
