"""Tasks: the question an episode asks, its gold answer(s) and the date the prompt pins."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from miroenv.jsonl import iter_jsonl

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Task(BaseModel):
    """One question for an agent, with the gold answer used by the reward."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str | None = Field(default=None, description="Gold answer; None for unscored tasks.")
    aliases: tuple[str, ...] = Field(
        default=(), description="Other accepted answers (text metrics take the best)."
    )
    date: str | None = Field(default=None, description="`Today is:` date for the prompt, YYYY-MM-DD.")
    files: tuple[str, ...] = Field(default=(), description="Paths of attachments offered to the agent.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("date")
    @classmethod
    def _check_date(cls, value: str | None) -> str | None:
        if value is not None and not _DATE.match(value):
            raise ValueError(f"date must be YYYY-MM-DD, got {value!r}")
        return value

    @property
    def gold_answers(self) -> list[str]:
        """The gold answer followed by its aliases (empty when the task is unscored)."""
        return ([self.answer] if self.answer is not None else []) + list(self.aliases)


class TaskFileError(ValueError):
    """A tasks file line that is not a valid task; the message names the file, line and field."""


def iter_json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of a task file (`miroenv.jsonl.iter_jsonl`).

    A torn last line is dropped; a bad line elsewhere raises `JsonlError` naming the file and line."""
    return iter_jsonl(path)


def validate_task(data: Any, where: str) -> Task:
    """A `Task` from `data`, or `TaskFileError` naming `where` (file:line) and every invalid field."""
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise TaskFileError(f"{where}: invalid task ({problems})") from exc


def load_tasks(path: str | Path) -> list[Task]:
    """Read tasks from a JSONL file (one `Task` object per line; blank lines ignored)."""
    path = Path(path)
    tasks = [validate_task(data, f"{path}:{lineno}") for lineno, data in iter_json_lines(path)]
    _check_unique(tasks, str(path))
    return tasks


def save_tasks(tasks: Iterable[Task], path: str | Path) -> None:
    """Write tasks as JSONL, one per line, in the given order."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for task in tasks:
            handle.write(task.model_dump_json(exclude_defaults=True) + "\n")


def _check_unique(tasks: list[Task], source: str) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise TaskFileError(f"{source}: duplicate task_id {task.task_id!r}")
        seen.add(task.task_id)
