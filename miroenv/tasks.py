"""Tasks: the question an episode asks, its gold answer(s) and the date the prompt pins."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from miroenv.jsonl import iter_jsonl, write_jsonl

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


def validate_task(data: Any, where: str) -> Task:
    """A `Task` from `data`, or `TaskFileError` naming `where` (file:line) and every invalid field."""
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise TaskFileError(f"{where}: invalid task ({problems})") from exc


def load_tasks(
    path: str | Path, attachments_root: str | Path | None = None, *, must_exist: bool = False
) -> list[Task]:
    """Read tasks from a JSONL file (one `Task` object per line; blank lines ignored).

    Attachments resolve inside `attachments_root` (default: the file's folder) and come back as canonical
    absolute paths; one that is a symlink, goes through `..` or lies outside that folder raises
    `AttachmentError`, and so does a missing one with `must_exist` (`ResearchEnv` sets it)."""
    path = Path(path)
    root = Path(attachments_root) if attachments_root is not None else path.parent
    tasks = [
        resolve_task_files(
            validate_task(data, f"{path}:{lineno}"), root, f"{path}:{lineno}", must_exist=must_exist
        )
        for lineno, data in iter_jsonl(path)
    ]
    _check_unique(tasks, str(path))
    return tasks


class AttachmentError(TaskFileError):
    """A task attachment that is missing, not a regular file, a symlink, or outside the task's folder."""


def resolve_attachment(
    name: str, root: Path | None, task_id: str, where: str = "", *, must_exist: bool = True
) -> str:
    """The canonical absolute path of attachment `name`, checked to lie inside `root` with no symlink and no
    `..` on the way and to be a regular file; `AttachmentError` naming the task and the file otherwise.

    Relative names are taken from `root`; absolute ones must lie under it. With no `root` (tasks built in
    code), a name must be absolute and the folder it names is trusted, but not a symlink as its last part.
    `must_exist=False` lets a missing file through (nothing can leak from it; reading it later fails).
    """

    def refuse(why: str) -> AttachmentError:
        return AttachmentError(f"{where + ': ' if where else ''}task {task_id!r}: attachment {name!r} {why}")

    if not name or "\x00" in name:
        raise refuse("is not a usable path (empty or holding NUL)")
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        raise refuse("is not a usable path (it cannot be encoded for the file system)") from None
    pure = PurePosixPath(name)
    if ".." in pure.parts:
        raise refuse("goes through '..'; attachments must lie inside the task's folder")
    if root is None:
        if not pure.is_absolute():
            raise refuse(
                "is a relative path, but the task has no folder (it was not loaded from a tasks file and no "
                "attachments_root was given); give an absolute path or an attachments_root"
            )
        base = Path(os.path.realpath(pure.parent))
        parts: tuple[str, ...] | None = (pure.name,)
    else:
        base = Path(os.path.realpath(root))
        parts = _inside(pure, (Path(os.path.abspath(root)), base)) if pure.is_absolute() else pure.parts
    if parts is None:
        raise refuse(f"is outside the task's folder {root}")
    if not parts:
        raise refuse("names the task's folder, not a file")
    current = base
    for index, part in enumerate(parts):
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            if must_exist:
                raise refuse(f"does not exist ({current} is missing)") from None
            return str(base.joinpath(*parts))
        except OSError as exc:
            raise refuse(f"cannot be checked ({current}: {exc.strerror})") from None
        if stat.S_ISLNK(mode):
            raise refuse(f"goes through a symlink ({current}); attachments must be real files, not links")
        if index < len(parts) - 1 and not stat.S_ISDIR(mode):
            raise refuse(f"is not reachable ({current} is not a folder)")
    if not stat.S_ISREG(mode):
        raise refuse("is not a regular file")
    return str(current)


def _inside(path: PurePosixPath, roots: Iterable[Path]) -> tuple[str, ...] | None:
    """The parts of absolute `path` below the first of `roots` it lies under, or None."""
    for root in roots:
        try:
            return path.relative_to(root).parts
        except ValueError:
            continue
    return None


def resolve_task_files(task: Task, root: Path | None, where: str = "", *, must_exist: bool = True) -> Task:
    """`task` with every attachment replaced by its `resolve_attachment` path (the same task if unchanged)."""
    files = tuple(
        resolve_attachment(name, root, task.task_id, where, must_exist=must_exist) for name in task.files
    )
    return task if files == task.files else task.model_copy(update={"files": files})


def read_attachment(path: str) -> bytes:
    """The bytes of a resolved attachment, opened one path component at a time without following any
    symlink, so a link swapped in after `resolve_attachment` checked the path is refused, never followed."""
    parts = PurePosixPath(path).parts
    if len(parts) < 2 or parts[0] != "/":
        raise OSError(errno.EINVAL, "not an absolute path to a file", path)
    folder = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[1:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        leaf = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(leaf, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        return handle.read()


def save_tasks(tasks: Iterable[Task], path: str | Path) -> None:
    """Write tasks as JSONL, one per line, in the given order (atomically, with the one JSONL writer)."""
    write_jsonl(path, (task.model_dump(mode="json", exclude_defaults=True) for task in tasks))


def _check_unique(tasks: list[Task], source: str) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise TaskFileError(f"{source}: duplicate task_id {task.task_id!r}")
        seen.add(task.task_id)
