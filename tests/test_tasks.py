"""Task files: valid lines load, bad lines are named with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from miroenv.jsonl import JsonlError
from miroenv.tasks import Task, TaskFileError, load_tasks, save_tasks


def test_round_trip(tmp_path: Path) -> None:
    tasks = [
        Task(task_id="a", question="q?", answer="x", aliases=("y",), date="2024-01-02"),
        Task(task_id="b", question="r?"),
    ]
    save_tasks(tasks, tmp_path / "t.jsonl")
    assert load_tasks(tmp_path / "t.jsonl") == tasks
    assert tasks[0].gold_answers == ["x", "y"] and tasks[1].gold_answers == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"t.jsonl:2: not valid JSON"),
        ('{"task_id": "c"}', r"t.jsonl:2: invalid task \(question: Field required\)"),
        (
            '{"task_id": "c", "question": "q", "date": "yesterday"}',
            r"t.jsonl:2: invalid task \(date: Value error",
        ),
        ('{"task_id": "c", "question": "q", "extra": 1}', r"extra: Extra inputs are not permitted"),
        ('{"task_id": "a", "question": "again"}', r"duplicate task_id 'a'"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"task_id": "a", "question": "q"}\n' + line + "\n")
    with pytest.raises((TaskFileError, JsonlError), match=message):
        load_tasks(path)
