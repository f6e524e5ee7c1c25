"""Import MiroRL rollouts: `prompt_str` / `response_str` chats flattened into text with role lines.

The chat template's special tokens are gone from these logs, so each message starts with a line holding only
its role: `prompt_str` is `system\\n<system prompt>\\nuser\\n<task>\\nassistant\\n`, and `response_str` continues
with the assistant's turns, each tool-calling turn followed by `\\nuser\\n<tool result>\\nassistant\\n`. A role line
is only taken as one where a turn can end: `user` after a turn that calls a tool, `assistant` where the result
text before it is complete (valid JSON when it is JSON; otherwise where the next turn starts the way the
rollout's turns start). The MiroRL loop sends no summary prompt: the reply without a tool call holds the
`\\boxed{}` answer and ends the episode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from miroenv.jsonl import iter_jsonl
from miroenv.logs.episode import ImportedEpisode, ImportSummary, RecordedStep, assign_results, write_import
from miroenv.logs.prompt import recover_prompt
from miroenv.protocol.boxed import extract_boxed
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.tasks import Task

USER_LINE = "\nuser\n"
ASSISTANT_LINE = "\nassistant\n"
SYSTEM_START = "system\n"
_FORMAT = McpXmlFormat()


class RolloutError(ValueError):
    """A rollout that is not a MiroRL flattened chat; the message says what is missing."""


def split_prompt(prompt: str) -> tuple[str, str]:
    """The system prompt and the task message of a flattened `prompt_str`."""
    if not prompt.startswith(SYSTEM_START):
        raise RolloutError("prompt_str does not start with a 'system' role line")
    body = prompt[len(SYSTEM_START) :]
    if body.endswith(ASSISTANT_LINE):
        body = body[: -len(ASSISTANT_LINE)]
    cut = body.find(USER_LINE)
    if cut == -1:
        raise RolloutError("prompt_str has no 'user' role line")
    return body[:cut], body[cut + len(USER_LINE) :]


def _occurrences(text: str, needle: str, start: int) -> Iterator[int]:
    """Every index of `needle` in `text` from `start` on."""
    index = text.find(needle, start)
    while index != -1:
        yield index
        index = text.find(needle, index + 1)


def _turn_end(text: str, start: int) -> int | None:
    """Where the assistant turn starting at `start` ends: the first `user` line after a tool call."""
    for index in _occurrences(text, USER_LINE, start):
        if _FORMAT.parse(text[start:index]).attempted_tool_use:
            return index
    return None


def _result_end(text: str, start: int, turn_opening: str) -> int | None:
    """Where the tool-result turn starting at `start` ends: the `assistant` line that follows it."""
    candidates = list(_occurrences(text, ASSISTANT_LINE, start))
    if not candidates:
        return None
    if text[start : start + 1] in ("{", "["):
        for index in candidates:
            try:
                json.loads(text[start:index])
            except ValueError:
                continue
            return index
    if turn_opening:
        for index in candidates:
            if text.startswith(turn_opening, index + len(ASSISTANT_LINE)):
                return index
    return candidates[0]


def split_response(response: str) -> list[tuple[str, str | None]]:
    """The assistant turns of a `response_str`, each with the user turn that followed it (None: none did)."""
    opening = "<think>" if response.startswith("<think>") else ""
    turns: list[tuple[str, str | None]] = []
    pos = 0
    while True:
        end = _turn_end(response, pos)
        if end is None:
            turns.append((response[pos:], None))
            return turns
        result_start = end + len(USER_LINE)
        result_end = _result_end(response, result_start, opening)
        if result_end is None:
            turns.append((response[pos:end], response[result_start:]))
            return turns
        turns.append((response[pos:end], response[result_start:result_end]))
        pos = result_end + len(ASSISTANT_LINE)


def _gold(row: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """Gold answer and aliases from `ground_truth` (a string or a list), else `extra_info.answer`."""
    truth = row.get("ground_truth")
    if truth is None and isinstance(row.get("extra_info"), Mapping):
        truth = row["extra_info"].get("answer")
    if isinstance(truth, str):
        return truth, ()
    if isinstance(truth, Sequence) and truth and all(isinstance(t, str) for t in truth):
        return truth[0], tuple(truth[1:])
    return None, ()


def parse_rollout(row: Mapping[str, Any], task_id: str, *, source: str = "") -> ImportedEpisode:
    """One rollout as an imported episode: recovered prompt, task, one step per assistant turn, the answer."""
    prompt, response = row.get("prompt_str"), row.get("response_str")
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise RolloutError("a MiroRL rollout needs string fields 'prompt_str' and 'response_str'")
    system, user = split_prompt(prompt)
    recovered = recover_prompt(system)
    raw_extra = row.get("extra_info")
    extra: Mapping[str, Any] = raw_extra if isinstance(raw_extra, Mapping) else {}
    question = extra.get("question") if isinstance(extra.get("question"), str) else None
    answer, aliases = _gold(row)
    metadata: dict[str, Any] = {
        "recorded_messages": {"task": user},
        "source": "mirorl",
    }
    if isinstance(row.get("data_source"), str):
        metadata["data_source"] = row["data_source"]
    kept = {k: v for k, v in extra.items() if k != "tools_kwargs"}
    if kept:
        metadata["extra_info"] = json.loads(json.dumps(kept, default=str))
    task = Task(
        task_id=task_id,
        question=question or user,
        answer=answer,
        aliases=aliases,
        date=recovered.date,
        metadata=metadata,
    )
    steps: list[RecordedStep] = []
    for action, observation in split_response(response):
        parsed = _FORMAT.parse(action)
        if parsed.attempted_tool_use:
            steps.append(
                RecordedStep(
                    action=action,
                    kind="tools",
                    observation=observation,
                    calls=assign_results(parsed.calls, observation),
                    problems=list(parsed.problems),
                    note=None if observation is not None else "the rollout ends before this turn's result",
                )
            )
        else:
            steps.append(RecordedStep(action=action, kind="final", observation=""))
    final = steps[-1].action if steps and steps[-1].kind == "final" else None
    return ImportedEpisode(
        task=task,
        prompt=recovered,
        user_message=user,
        steps=steps,
        summary_turn=False,
        answer=extract_boxed(final) if final is not None else None,
        source={"format": "mirorl", "file": source, "task_id": task_id},
        keep_tool_results=-1,
    )


def read_rollouts(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, rollout) for every non-blank line of a MiroRL JSONL file (`miroenv.jsonl.iter_jsonl`)."""
    return iter_jsonl(path, objects=True)


def load_mirorl(sources: Sequence[str | Path]) -> list[ImportedEpisode]:
    """Every rollout of the given JSONL files, task ids `<file stem>-<line>`."""
    episodes: list[ImportedEpisode] = []
    for source in sources:
        path = Path(source)
        for lineno, row in read_rollouts(path):
            try:
                episodes.append(parse_rollout(row, f"{path.stem}-{lineno:04d}", source=str(path)))
            except RolloutError as exc:
                raise RolloutError(f"{path}:{lineno}: {exc}") from exc
    return episodes


def import_mirorl(
    sources: Sequence[str | Path], out: str | Path, *, name: str | None = None, reward: str = "gaia"
) -> ImportSummary:
    """Import MiroRL rollout files into `out/` (snapshot and trajectories)."""
    return write_import(load_mirorl(sources), out, format_name="mirorl", name=name, reward=reward)
