"""Task loaders for benchmark layouts: fields mapped, attachments resolved, bad input named by line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miroenv.jsonl import JsonlError
from miroenv.task_loaders import load_task_file
from miroenv.tasks import TaskFileError


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_gaia_metadata(tmp_path: Path) -> None:
    (tmp_path / "sheet.xlsx").write_bytes(b"x")
    path = write_jsonl(
        tmp_path / "metadata.jsonl",
        [
            {
                "task_id": "a1",
                "Question": "How many?",
                "Level": 1,
                "Final answer": "3",
                "file_name": "sheet.xlsx",
            },
            {"task_id": "a2", "Question": "Who?", "Level": 2, "Final answer": "Ada", "file_name": ""},
        ],
    )
    first, second = load_task_file(path, "gaia")
    assert (first.task_id, first.question, first.answer, first.metadata) == (
        "a1",
        "How many?",
        "3",
        {"level": 1},
    )
    assert first.files == (str((tmp_path / "sheet.xlsx").resolve()),)
    assert second.files == ()


def test_miroflow_standardized_data(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "standardized_data.jsonl",
        [
            {
                "task_id": "t",
                "task_question": "Q?",
                "ground_truth": "A",
                "file_path": "f.pdf",
                "metadata": {"k": 1},
            }
        ],
    )
    (task,) = load_task_file(path, "miroflow")
    assert (task.question, task.answer, task.metadata) == ("Q?", "A", {"k": 1})
    assert task.files[0].endswith("f.pdf")


def test_hotpotqa_official_json(shared_data: Path) -> None:
    tasks = load_task_file(shared_data / "hotpotqa_train" / "hotpotqa_train.json", "hotpotqa")
    assert len(tasks) == 100 and all(t.answer for t in tasks)
    assert tasks[0].metadata["supporting_facts"]


def test_browsecomp_plus_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = tmp_path / "queries.tsv"
    tsv.write_text("q1\tWhat is X?\tX\nq2\tWhat is Y?\n")
    first, second = load_task_file(tsv, "browsecomp-plus")
    assert (first.task_id, first.answer, second.answer) == ("q1", "X", None)
    jsonl = write_jsonl(tmp_path / "queries.jsonl", [{"query_id": 7, "query": "Z?", "answer": "z"}])
    (task,) = load_task_file(jsonl, "browsecomp-plus")
    assert (task.task_id, task.question, task.answer) == ("7", "Z?", "z")


@pytest.mark.parametrize(
    ("kind", "content", "message"),
    [
        ("gaia", '{"task_id": "a"}\n', r"metadata.jsonl:1: missing field 'Question' or 'question'"),
        ("gaia", '{"task_id": "a", "Question": "q"}\n[1]\n', r"metadata.jsonl:2: expected a JSON object"),
        ("gaia", "{oops\n", r"metadata.jsonl:1: not valid JSON"),
        ("browsecomp-plus", '{"query": "q"}\n', r"missing field 'query_id' or 'id'"),
    ],
)
def test_bad_input_names_line_and_field(tmp_path: Path, kind: str, content: str, message: str) -> None:
    path = tmp_path / "metadata.jsonl"
    path.write_text(content)
    with pytest.raises((TaskFileError, JsonlError), match=message):
        load_task_file(path, kind)


def test_unknown_layout() -> None:
    with pytest.raises(ValueError, match="browsecomp-plus, gaia, hotpotqa, jsonl, miroflow"):
        load_task_file("x", "nope")
