"""Task loaders for common benchmark layouts: generic JSONL, GAIA, MiroFlow, HotpotQA, BrowseComp-Plus.

Each returns `Task`s; a bad line or record raises `TaskFileError` naming the file, line and field.
Attachments are resolved relative to the task file.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from miroenv.jsonl import iter_jsonl
from miroenv.tasks import (
    Task,
    TaskFileError,
    load_tasks,
    resolve_attachment,
    validate_task,
)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, data in iter_jsonl(path):
        if not isinstance(data, dict):
            raise TaskFileError(f"{path}:{lineno}: expected a JSON object, got {type(data).__name__}")
        yield lineno, data


def _field(path: Path, lineno: int, data: dict[str, Any], *names: str, required: bool = True) -> Any:
    for name in names:
        if data.get(name) not in (None, ""):
            return data[name]
    if required:
        raise TaskFileError(f"{path}:{lineno}: missing field {' or '.join(repr(n) for n in names)}")
    return None


def _task(path: Path, lineno: int, **fields: Any) -> Task:
    return validate_task({k: v for k, v in fields.items() if v is not None}, f"{path}:{lineno}")


def _attachment(path: Path, lineno: int, data: dict[str, Any], key: str) -> tuple[str, ...]:
    """The record's attachment `data[key]` resolved inside the task file's folder (`resolve_attachment`)."""
    name = data.get(key)
    if not name:
        return ()
    where = f"{path}:{lineno}"
    return (resolve_attachment(str(name), path.parent, str(data.get("task_id")), where, must_exist=False),)


def load_gaia(path: str | Path) -> list[Task]:
    """GAIA's `metadata.jsonl` (`task_id`, `Question`, `Final answer`, `file_name`, `Level`)."""
    path = Path(path)
    tasks = []
    for lineno, data in _records(path):
        tasks.append(
            _task(
                path,
                lineno,
                task_id=str(_field(path, lineno, data, "task_id")),
                question=_field(path, lineno, data, "Question", "question"),
                answer=_field(path, lineno, data, "Final answer", "final_answer", required=False),
                files=_attachment(path, lineno, data, "file_name"),
                metadata={"level": data.get("Level")} if data.get("Level") is not None else {},
            )
        )
    return tasks


def load_miroflow(path: str | Path) -> list[Task]:
    """MiroFlow's `standardized_data.jsonl` (`task_id`, `task_question`, `ground_truth`, `file_path`, `metadata`)."""
    path = Path(path)
    tasks = []
    for lineno, data in _records(path):
        metadata = data.get("metadata")
        tasks.append(
            _task(
                path,
                lineno,
                task_id=str(_field(path, lineno, data, "task_id")),
                question=_field(path, lineno, data, "task_question", "question"),
                answer=_field(path, lineno, data, "ground_truth", "answer", required=False),
                files=_attachment(path, lineno, data, "file_path"),
                metadata=metadata if isinstance(metadata, dict) else {},
            )
        )
    return tasks


def load_hotpotqa(path: str | Path) -> list[Task]:
    """HotpotQA's official JSON (a list of `_id`, `question`, `answer`, `supporting_facts`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, list):
        raise TaskFileError(f"{path}: expected a JSON list of questions")
    tasks = []
    for index, item in enumerate(data):
        where = f"record {index}"
        if not isinstance(item, dict):
            raise TaskFileError(f"{path}: {where}: expected an object")
        for name in ("_id", "question", "answer"):
            if name not in item:
                raise TaskFileError(f"{path}: {where}: missing field {name!r}")
        tasks.append(
            _task(
                path,
                index,
                task_id=str(item["_id"]),
                question=item["question"],
                answer=item["answer"],
                metadata={"supporting_facts": item.get("supporting_facts", [])},
            )
        )
    return tasks


def load_browsecomp_plus(path: str | Path) -> list[Task]:
    """BrowseComp-Plus queries: TSV (`query_id<TAB>query[<TAB>answer]`) or JSONL (`query_id`, `query`, `answer`)."""
    path = Path(path)
    if path.suffix.lower() == ".tsv":
        tasks = []
        with path.open(encoding="utf-8", newline="") as handle:
            for lineno, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) < 2:
                    raise TaskFileError(
                        f"{path}:{lineno}: expected query_id<TAB>query, got {len(row)} column(s)"
                    )
                tasks.append(
                    _task(
                        path,
                        lineno,
                        task_id=row[0].strip(),
                        question=row[1].strip(),
                        answer=row[2].strip() if len(row) > 2 and row[2].strip() else None,
                    )
                )
        return tasks
    return [
        _task(
            path,
            lineno,
            task_id=str(_field(path, lineno, data, "query_id", "id")),
            question=_field(path, lineno, data, "query", "question"),
            answer=_field(path, lineno, data, "answer", required=False),
        )
        for lineno, data in _records(path)
    ]


TASK_LOADERS: dict[str, Callable[[str | Path], list[Task]]] = {
    "jsonl": load_tasks,
    "gaia": load_gaia,
    "miroflow": load_miroflow,
    "hotpotqa": load_hotpotqa,
    "browsecomp-plus": load_browsecomp_plus,
}


def load_task_file(path: str | Path, kind: str = "jsonl") -> list[Task]:
    """Tasks from `path` in the named layout (`TASK_LOADERS`); `ValueError` lists the known layouts."""
    try:
        loader = TASK_LOADERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown task layout {kind!r}; choose one of: {', '.join(sorted(TASK_LOADERS))}"
        ) from None
    return loader(path)
