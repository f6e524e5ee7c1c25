"""The one JSONL reader and writer: torn tails dropped as bytes, appends start clean, one error naming file:line."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from miroenv import read_trajectories
from miroenv.cli import app
from miroenv.evaluation import EvalRow, latest_rows, read_results
from miroenv.jsonl import JsonlError, JsonlWriter, encode_line, iter_jsonl, read_jsonl, write_jsonl
from miroenv.testing.strategies import any_text
from tests.test_evaluation import (
    TASK_IDS,
    MakeServer,
    eval_args,
    eval_subprocess,
    scripted_model,  # noqa: F401  (the fixture, used by name)
)

ROWS = [{"n": 1, "text": "Zürich"}, {"n": 2, "text": "naïve 🙂"}]


def whole(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(encode_line(row) for row in rows)


@pytest.mark.parametrize(
    "tail",
    [
        json.dumps({"n": 3, "text": "Zürich"}, ensure_ascii=False).encode()[:12],  # inside the "ü"
        json.dumps({"n": 3, "text": "🙂"}, ensure_ascii=False).encode()[:13],  # inside the emoji
        b'{"n": 3, "te',  # mid-JSON
        b"\xff\xfe",  # not UTF-8 at all
    ],
    ids=["inside-2-byte-char", "inside-4-byte-char", "mid-json", "garbage"],
)
def test_a_torn_last_line_is_dropped_as_bytes(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(whole(ROWS) + tail)
    with pytest.raises(ValueError):  # the tail really is undecodable or unparsable
        json.loads(tail.decode("utf-8"))
    assert read_jsonl(path) == ROWS
    assert [lineno for lineno, _ in iter_jsonl(path)] == [1, 2]


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(whole(ROWS).rstrip(b"\n"))
    assert read_jsonl(path) == ROWS


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b'{"n": 1}\n{oops\n{"n": 3}\n', 2, "not valid JSON"),
        (b'{"n": 1}\n\n"caf\xe9"\n{"n": 3}\n', 3, "not UTF-8 text"),
        (b'{"n": 1}\n{"n": 2\n', 2, "not valid JSON"),  # ends in a newline: a bad line, not a torn one
        (b'\n{"n": 1}\n[1, 2]\n', 3, "expected a JSON object, got list"),
    ],
    ids=["bad-json", "bad-utf8", "terminated-last-line", "not-an-object"],
)
def test_a_bad_line_elsewhere_is_one_error_naming_file_and_line(
    tmp_path: Path, content: bytes, line: int, problem: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(JsonlError) as info:
        read_jsonl(path, objects=True)
    assert str(info.value).startswith(f"{path}:{line}: {problem}")
    assert (info.value.path, info.value.line) == (str(path), line)
    assert isinstance(info.value, ValueError)


def test_a_byte_order_mark_is_not_part_of_the_first_record(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + whole(ROWS))
    assert read_jsonl(path) == ROWS


@pytest.mark.parametrize(
    "tail",
    [b'{"n": 3, "text": "Z\xc3', b'{"n": 3, "te', b"   "],
    ids=["inside-a-char", "mid-json", "blanks"],
)
def test_an_append_after_a_torn_tail_starts_on_a_clean_line(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(whole(ROWS) + tail)
    with JsonlWriter(path) as writer:
        writer.write({"n": 4})
        writer.write({"n": 5})
    assert path.read_bytes() == whole([*ROWS, {"n": 4}, {"n": 5}])


def test_an_append_after_a_whole_unterminated_line_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(whole(ROWS).rstrip(b"\n"))
    with JsonlWriter(path) as writer:
        writer.write({"n": 3})
    assert read_jsonl(path) == [*ROWS, {"n": 3}]


def test_a_fragment_torn_while_a_writer_is_open_is_cut_before_its_next_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = JsonlWriter(path)
    writer.write(ROWS[0])
    with path.open("ab") as other:  # another process died halfway through its line
        other.write(b'{"n": 99, "text": "cut')
    writer.write(ROWS[1])
    writer.close()
    writer.close()
    assert path.read_bytes() == whole(ROWS)
    with pytest.raises(ValueError, match="closed"):
        writer.write({"n": 3})


def test_a_pydantic_model_and_a_lone_surrogate_are_written(tmp_path: Path) -> None:
    from miroenv.trajectory import StepRecord

    path = tmp_path / "t.jsonl"
    step = StepRecord(
        index=1, action="a\ud800", observation="q\udfff?", reward=0.5, terminated=False, truncated=False
    )
    with JsonlWriter(path) as writer:
        writer.write(step)
        writer.write({"text": "plain ü"})
    raw = path.read_bytes()
    assert b"\\ud800" in raw and "plain ü".encode() in raw  # escaped only where it has to be
    first, second = read_jsonl(path)
    assert StepRecord.model_validate(first) == step and second == {"text": "plain ü"}


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("\ud800", "\ud800"),
        ("a\udfffb", "a\udfffb"),
        ("\udc00\ud800", "\udc00\ud800"),  # low before high: two lone surrogates, kept as they are
        ("\ud83d\ude42", "🙂"),  # high then low: the character the pair encodes
    ],
)
def test_surrogates_read_back_as_json_defines_them(tmp_path: Path, text: str, read: str) -> None:
    path = tmp_path / "t.jsonl"
    with JsonlWriter(path) as writer:
        writer.write({text: [text]})
    assert read_jsonl(path) == [{read: [read]}]


records = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def as_read(value: Any) -> Any:
    """`value` as JSON gives it back: lone surrogates stay, but a high surrogate followed by a low one is the
    character that UTF-16 pair encodes (JSON's `\\uD800\\uDC00` escapes mean exactly that)."""
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    if isinstance(value, list):
        return [as_read(item) for item in value]
    if isinstance(value, dict):
        return {as_read(key): as_read(item) for key, item in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(records, max_size=6))
def test_any_records_round_trip_surrogates_included(
    tmp_path_factory: pytest.TempPathFactory, rows: list[Any]
) -> None:
    path = tmp_path_factory.mktemp("rt") / "t.jsonl"
    with JsonlWriter(path) as writer:
        for row in rows:
            writer.write(row)
    assert read_jsonl(path) == as_read(rows)
    write_jsonl(path, rows)
    assert read_jsonl(path) == as_read(rows)
    assert path.read_bytes().count(b"\n") == len(rows)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.dictionaries(any_text, any_text, min_size=1, max_size=3), min_size=2, max_size=5),
    data=st.data(),
)
def test_any_cut_of_the_last_line_drops_only_it_and_the_next_append_is_clean(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, str]], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("cut") / "t.jsonl"
    complete = whole(rows[:-1])
    last = encode_line(rows[-1])
    cut = data.draw(st.integers(min_value=1, max_value=len(last) - 2), label="cut")
    path.write_bytes(complete + last[:cut])
    assert read_jsonl(path) == as_read(rows[:-1])
    with JsonlWriter(path) as writer:
        writer.write(rows[-1])
    assert read_jsonl(path) == as_read(rows)


def _append_lines(path: str, worker: int, count: int) -> None:
    with JsonlWriter(path) as writer:
        for index in range(count):
            writer.write({"worker": worker, "index": index, "pad": "é" * (50_000 + 997 * index)})


def test_processes_appending_to_one_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_lines, args=(str(path), w, 40)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    rows = read_jsonl(path)
    assert len(rows) == 160
    for w in range(4):
        assert [row["index"] for row in rows if row["worker"] == w] == list(range(40))
    assert all(row["pad"] == "é" * (50_000 + 997 * row["index"]) for row in rows)


def test_write_jsonl_replaces_the_file_whole_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("old\n")
    path.chmod(0o640)
    write_jsonl(path, ROWS)
    assert read_jsonl(path) == ROWS and path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


# ------------------------------------------------------------------ SIGKILL of a real `miroenv eval`, resumed


def test_an_eval_resuming_from_a_results_file_with_a_bad_middle_line_names_it(
    scripted_model: MakeServer,  # noqa: F811
    demo_dir: Path,
    tmp_path: Path,
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--limit", "1")
    assert CliRunner().invoke(app, args).exit_code == 0
    results = out / "results.jsonl"
    results.write_bytes(b"{oops\n" + results.read_bytes())
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    unwrapped = "".join(result.output.split())  # rich wraps long paths anywhere
    assert f"cannotresume:{results}:1:notvalidJSON" in unwrapped


def test_an_eval_killed_at_random_points_and_resumed_keeps_every_finished_row(
    scripted_model: MakeServer,  # noqa: F811
    demo_dir: Path,
    tmp_path: Path,
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    results = out / "results.jsonl"
    runs = 6
    args = eval_args(server, demo_dir, out, "--concurrency", "1", "--runs", str(runs))
    rng = random.Random(12)
    kills = 0
    earlier: list[EvalRow] = []
    for _ in range(8):
        process = eval_subprocess(args, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                if len(read_results(results)) > len(earlier):  # it is playing episodes now
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
        if process.returncode == 0:
            break
        if kills % 2:  # power loss after the kill: the last row cut at a random byte
            data = results.read_bytes()
            start = data.rstrip(b"\n").rfind(b"\n") + 1
            results.write_bytes(data[: rng.randrange(start + 1, len(data))])
        rows = read_results(results)  # never raises: every finished row is readable
        kept = max(0, len(earlier) - 1)  # all but a last row the cut may have taken
        assert rows[:kept] == earlier[:kept], "a rerun lost or changed an earlier row"
        for row in rows:
            (trajectory,) = read_trajectories(out / row.trajectory)
            assert trajectory.complete and trajectory.footer is not None
            assert trajectory.footer.answer == row.answer
        earlier = rows
    assert kills >= 3, "the runs finished before they could be killed"
    final = eval_subprocess(args, stderr=subprocess.PIPE)
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr.decode()
    rows = read_results(results)
    assert rows[: len(earlier)] == earlier
    assert sorted(latest_rows(rows)) == sorted((task, run) for task in TASK_IDS for run in range(1, runs + 1))
    assert len(rows) == len(latest_rows(rows)), "a finished episode was played twice"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 5 * runs and summary["accuracy"] == pytest.approx(0.6)
