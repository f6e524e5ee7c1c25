"""The snapshot builder writes real snapshots that envs, searches, downloads and attachments use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv, Snapshot, load_actions, load_tasks, run_episode
from miroenv.policy import ScriptedPolicy
from miroenv.protocol.registry import get_format
from miroenv.testing import (
    SnapshotBuilder,
    create_sandbox_call,
    final_answer,
    python_call,
    sandbox_id,
    scrape_call,
    search_call,
    tool_call,
)
from miroenv.tools.python import sandbox_public_id
from miroenv.web.base import SearchRequest

HTML = (
    "<html><head><title>Pie page</title></head><body><nav>menu</nav><article><h1>Apple pie</h1>"
    "<p>An apple pie is a pie whose main filling is apples, baked since at least the fourteenth century.</p>"
    "</article></body></html>"
)


def _tiny(path: Path | None = None) -> SnapshotBuilder:
    return (
        SnapshotBuilder("tiny", capture_date="2024-05-06", path=path)
        .page("https://example.org/answer", "# Answer\n\nThe answer to everything is 42.", title="Answer")
        .page("https://example.org/pie", html=HTML)
        .search("the answer", ["https://example.org/answer", {"title": "Elsewhere", "link": "https://x.org"}])
        .file("https://example.org/data.csv", "a,b\n1,2\n", content_type="text/csv")
        .task(
            "t1",
            "What is the answer?",
            answer="42",
            actions=[
                search_call("the answer"),
                scrape_call("https://example.org/answer", "the answer"),
                *final_answer("42", "The page says 42."),
            ],
        )
    )


def test_build_writes_a_snapshot_with_pages_searches_files_tasks_and_actions(tmp_path: Path) -> None:
    path = _tiny().build(tmp_path / "tiny")
    snapshot = Snapshot(path)
    assert snapshot.name == "tiny" and snapshot.capture_date == "2024-05-06"
    answer = snapshot.page("https://example.org/answer")
    assert answer.title == "Answer" and "42" in answer.text and answer.content_type == "text/markdown"
    assert answer.captured_at == "2024-05-06T00:00:00+00:00"
    pie = snapshot.page("https://example.org/pie")
    assert pie.body == HTML.encode() and pie.content_type == "text/html"
    assert "fourteenth century" in pie.text and "menu" not in pie.text
    assert pie.extractor.startswith("trafilatura")
    organic = snapshot.search(SearchRequest(q="the answer")).payload["organic"]
    assert organic[0] == {
        "title": "Answer",
        "link": "https://example.org/answer",
        "snippet": "The answer to everything is 42.",
        "position": 1,
    }
    assert organic[1] == {"title": "Elsewhere", "link": "https://x.org", "position": 2}
    assert snapshot.file("https://example.org/data.csv").data == b"a,b\n1,2\n"
    assert [t.task_id for t in load_tasks(path / "tasks.jsonl")] == ["t1"]
    assert len(load_actions(path / "actions.jsonl")["t1"]) == 4
    assert (path / "index").is_dir()
    snapshot.close()


def test_a_declared_episode_runs_to_the_right_answer(tmp_path: Path) -> None:
    path = _tiny().build(tmp_path / "tiny")
    env = ResearchEnv(path)
    try:
        result = run_episode(env, ScriptedPolicy(load_actions(path / "actions.jsonl")["t1"]), task_id="t1")
    finally:
        env.close()
    assert result.reward == 1.0 and result.answer == "42"
    assert "The answer to everything is 42." in result.observations[2]


def test_same_declaration_builds_the_same_content(tmp_path: Path) -> None:
    first = Snapshot(_tiny().build(tmp_path / "a"))
    second = Snapshot(_tiny().build(tmp_path / "b"))
    assert first.verify() == second.verify()
    changed = Snapshot(_tiny().page("https://example.org/new", "new").build(tmp_path / "c"))
    assert changed.verify() != first.verify()


def test_rebuilding_replaces_the_previous_snapshot(tmp_path: Path) -> None:
    path = _tiny().build(tmp_path / "s")
    SnapshotBuilder("other").page("https://other.org", "only page").build(path)
    snapshot = Snapshot(path)
    assert [p.url for p in snapshot.iter_pages()] == ["https://other.org"]
    assert not (path / "tasks.jsonl").exists() and not (path / "actions.jsonl").exists()


def test_builder_default_path_and_missing_path(tmp_path: Path) -> None:
    assert _tiny(tmp_path / "here").build() == tmp_path / "here"
    with pytest.raises(ValueError, match="needs a path"):
        _tiny().build()


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda b: b.page("https://example.org/answer", "again"),
            "page 'https://example.org/answer' is declared twice",
        ),
        (lambda b: b.search("the answer", []), "search 'the answer' is declared twice"),
        (lambda b: b.task("t1", "again?"), "task 't1' is declared twice"),
        (lambda b: b.page("https://x.org/p"), "exactly one of text= or html="),
        (lambda b: b.task("t2"), "a question is required"),
        (lambda b: b.task("t3", "q?", files={"../up": b""}), "must be a plain file name"),
    ],
)
def test_bad_declarations_name_what_is_wrong(declare: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        declare(_tiny())  # type: ignore[operator]


def test_actions_for_an_undeclared_task_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="undeclared task"):
        _tiny().actions("nope", ["x"]).build(tmp_path / "s")


def test_attachments_and_snapshot_files_reach_the_sandbox(tmp_path: Path) -> None:
    task = "files-task"
    path = (
        SnapshotBuilder("files")
        .file("https://example.org/data.csv", "a,b\n1,2\n")
        .task(
            task,
            "Sum column b of notes.txt and data.csv.",
            answer="5",
            files={"notes.txt": "b=3\n"},
            actions=[
                create_sandbox_call(),
                tool_call(
                    "download_file_from_internet_to_sandbox",
                    {"sandbox_id": sandbox_id(task), "url": "https://example.org/data.csv"},
                ),
                python_call(
                    "notes = open('/home/user/notes.txt').read()\n"
                    "rows = open('/home/user/data.csv').read().split()\n"
                    "int(notes.split('=')[1]) + int(rows[1].split(',')[1])",
                    task_id=task,
                ),
                *final_answer("5"),
            ],
        )
        .build(tmp_path / "files")
    )
    (attachment,) = load_tasks(path / "tasks.jsonl")[0].files
    assert Path(attachment).read_text() == "b=3\n" and Path(attachment).is_relative_to(path)
    env = ResearchEnv(path, sandbox="auto")
    try:
        result = run_episode(env, ScriptedPolicy(load_actions(path / "actions.jsonl")[task]), task_id=task)
    finally:
        env.close()
    assert "File downloaded to /home/user/data.csv" in result.observations[2]
    assert "stdout='5\\n'" in result.observations[3]
    assert result.reward == 1.0


@pytest.mark.parametrize("tool_format", ["mcp_xml", "hermes", "openai"])
def test_action_helpers_render_calls_the_format_parses_back(tool_format: str) -> None:
    action = search_call("apple pie", thought="Look it up.", tool_format=tool_format, num=3)
    parsed = get_format(tool_format).parse(action)
    [call] = parsed.calls
    assert (call.name, call.arguments) == ("google_search", {"q": "apple pie", "num": 3})
    assert parsed.problems == [] and "Look it up." in parsed.text
    if tool_format == "mcp_xml":
        assert call.server == "search_and_scrape_webpage"
    assert sandbox_id("t", 2) == sandbox_public_id("t", 2)


def test_tool_call_names_the_profile_tools_when_the_tool_is_unknown() -> None:
    with pytest.raises(ValueError, match="has no tool 'no_such_tool'; its tools are: create_sandbox"):
        tool_call("no_such_tool")


def test_final_answer_with_and_without_summary_turn() -> None:
    assert final_answer("7", summary_turn=False) == ["\\boxed{7}"]
    first, second = final_answer("7", "Because.")
    assert "<tool" not in first and second.endswith("Because.\n\n\\boxed{7}")


def test_actions_file_has_the_demo_layout(tmp_path: Path) -> None:
    path = _tiny().build(tmp_path / "s")
    [line] = (path / "actions.jsonl").read_text().splitlines()
    assert list(json.loads(line)) == ["task_id", "actions"]


@pytest.mark.parametrize(
    ("declare", "declared"),
    [
        (
            lambda b: b.page("https://example.org/new", "A new page."),
            lambda p: Snapshot(p).page("https://example.org/new").text == "A new page.",
        ),
        (
            lambda b: b.search("new query", ["https://example.org/pie"]),
            lambda p: (
                Snapshot(p).search(SearchRequest(q="new query")).payload["organic"][0]["link"]
                == "https://example.org/pie"
            ),
        ),
        (
            lambda b: b.file("https://example.org/new.txt", "new"),
            lambda p: Snapshot(p).file("https://example.org/new.txt").data == b"new",
        ),
        (
            lambda b: b.task("t2", "A new question?", answer="yes"),
            lambda p: [t.task_id for t in load_tasks(p / "tasks.jsonl")] == ["t1", "t2"],
        ),
        (
            lambda b: b.actions("t1", final_answer("43")),
            lambda p: load_actions(p / "actions.jsonl")["t1"] == final_answer("43"),
        ),
        (
            lambda b: setattr(b, "description", "described later"),
            lambda p: Snapshot(p).manifest.description == "described later",
        ),
    ],
)
def test_ensure_built_rebuilds_after_any_declaration_and_reuses_otherwise(
    tmp_path: Path, declare: Any, declared: Any
) -> None:
    builder = _tiny(tmp_path / "s")
    assert builder.changed
    path = builder.ensure_built()
    assert path == tmp_path / "s" and not builder.changed
    marker = path / "tasks.jsonl"
    marker.write_text("not rewritten\n")
    assert builder.ensure_built() == path and marker.read_text() == "not rewritten\n"

    declare(builder)
    assert builder.changed
    assert builder.ensure_built() == path and not builder.changed
    assert marker.read_text() != "not rewritten\n" and declared(path)


def test_ensure_built_rebuilds_a_vanished_snapshot_where_it_was_last_built(tmp_path: Path) -> None:
    builder = _tiny()
    path = builder.build(tmp_path / "elsewhere")
    assert builder.ensure_built() == path
    (path / "manifest.json").unlink()
    assert (
        builder.ensure_built() == path and Snapshot(path).page("https://example.org/answer").title == "Answer"
    )
    builder.page("https://example.org/new", "new")
    assert builder.ensure_built() == path and Snapshot(path).page("https://example.org/new").text == "new"
    with pytest.raises(ValueError, match="needs a path"):
        _tiny().ensure_built()
