"""`miroenv eval`: a served model (a scripted OpenAI-compatible server on 127.0.0.1) evaluated on the demo."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from miroenv import evaluation, read_trajectories
from miroenv.cli import app
from miroenv.evaluation import (
    EndpointUnavailableError,
    EvalConfig,
    EvalError,
    EvalProgress,
    EvalRow,
    evaluate,
    pass_at_k,
    read_results,
    trajectory_name,
)
from miroenv.policy import load_actions
from miroenv.sandbox.process import OWNER_ARG, owner_token
from miroenv.tasks import load_tasks
from tests.servers import ChatReplyScript, ChatScriptServer

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

TASK_IDS = [
    "ada-standard",
    "babbage-eniac-gap",
    "turing-award-first",
    "birth-years-product",
    "baby-first-program",
]
WRONG = {"babbage-eniac-gap": "\\boxed{154}", "baby-first-program": "\\boxed{1948-06-22}"}
"""Final replies replaced with wrong answers, so the expected accuracy is 3/5."""

MakeServer = Callable[..., ChatScriptServer]


def wrong_script(script: list[ChatReplyScript], answer: str) -> list[ChatReplyScript]:
    """The same episode, answering `answer` in the summary turn."""
    return [*script[:-1], answer]


@pytest.fixture
def scripted_model(demo_dir: Path) -> Iterator[MakeServer]:
    """Starts scripted servers replaying the demo's recorded actions (two answers made wrong)."""
    questions = {task.task_id: task.question for task in load_tasks(demo_dir / "tasks.jsonl")}
    actions: dict[str, list[ChatReplyScript]] = dict(load_actions(demo_dir / "actions.jsonl"))
    servers: list[ChatScriptServer] = []

    def start(wrong: dict[str, str] | None = None) -> ChatScriptServer:
        replace = WRONG if wrong is None else wrong
        scripts = {tid: wrong_script(a, replace[tid]) if tid in replace else a for tid, a in actions.items()}
        servers.append(ChatScriptServer(questions, scripts))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def eval_args(server: ChatScriptServer, demo_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--base-url",
        server.url,
        "--model",
        "scripted-thinker",
        "--snapshot",
        str(demo_dir),
        "--out",
        str(out),
        "--sandbox",
        "none",
        *extra,
    ]


def flat(text: str) -> str:
    """Text with rich's line wrapping undone."""
    return " ".join(text.split())


def results_lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_eval_cli_scores_the_demo_with_the_profile_sampling(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    result = runner.invoke(
        app, eval_args(server, demo_dir, out, "--concurrency", "2", "--api-key", "sk-secret-123")
    )
    assert result.exit_code == 0, result.output
    assert "accuracy 0.600" in result.stdout
    assert "pass@1" in result.stdout and "mean tool calls" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(0.6)
    assert summary["pass_at_k"] == {"1": pytest.approx(0.6)}
    assert summary["episodes"] == 5 and summary["played"] == 5 and summary["resumed"] == 0
    assert summary["requests"] == len(server.log)

    rows = {row["task_id"]: row for row in results_lines(out)}
    assert sorted(rows) == sorted(TASK_IDS)
    for task_id, row in rows.items():
        assert row["reward"] == (0.0 if task_id in WRONG else 1.0), task_id
        assert row["error"] is None and row["errors"]["endpoint"] == 0
    assert rows["babbage-eniac-gap"]["answer"] == "154"
    assert rows["ada-standard"]["answer"] == "MIL-STD-1815"

    # The summary's counters are the env's own, as recorded in each episode's trajectory footer.
    footers = {}
    for task_id, row in rows.items():
        (episode,) = read_trajectories(out / row["trajectory"])
        assert episode.footer is not None and episode.footer.answer == row["answer"]
        assert row["trajectory"].endswith(trajectory_name(task_id, 1))
        footers[task_id] = episode.footer
    assert summary["mean_tool_calls"] == pytest.approx(sum(f.tool_calls for f in footers.values()) / 5)
    for kind in ("format", "tool", "infra"):
        assert summary["errors"][kind] == sum(f.errors[kind] for f in footers.values())
    assert summary["errors"]["format"] > 0 and summary["errors"]["tool"] > 0
    assert summary["errors"]["endpoint"] == 0

    # Every request: the model, MiroThinker's sampling defaults, the bearer token; replies fed back verbatim.
    assert len(server.log) == sum(len(load_actions(demo_dir / "actions.jsonl")[t]) for t in TASK_IDS)
    for entry in server.log:
        body = entry["body"]
        assert body["model"] == "scripted-thinker"
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (1.0, 0.95, 16384)
        assert "tools" not in body
        assert entry["auth"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in (out / "config.json").read_text()
    assert json.loads((out / "config.json").read_text())["sampling"] == {
        "temperature": 1.0,
        "top_p": 0.95,
        "max_tokens": 16384,
    }


def test_context_policy_replaces_old_tool_results_in_requests(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    result = runner.invoke(app, eval_args(server, demo_dir, tmp_path / "eval", "--limit", "2"))
    assert result.exit_code == 0, result.output
    first_turn = next(e for e in server.log if e["task_id"] == "ada-standard" and e["turn"] == 0)
    assert [m["role"] for m in first_turn["body"]["messages"]] == ["system", "user"]
    last = max((e for e in server.log if e["task_id"] == "babbage-eniac-gap"), key=lambda e: e["turn"])
    contents = [m["content"] for m in last["body"]["messages"]]
    # Five tool results and the summary prompt: keep-5 replaces the oldest result, and only it.
    omitted = [i for i, c in enumerate(contents) if c == "Tool result is omitted to save tokens."]
    assert omitted == [3]
    assert "https://en.wikipedia.org/wiki/ENIAC" in contents[-3]


def eval_subprocess(args: list[str], *, stderr: int) -> subprocess.Popen[bytes]:
    """`miroenv eval ARGS` as a real process (to be killed midway), run from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "miroenv.cli", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
    )


@pytest.mark.parametrize(
    ("stop", "returncode"),
    [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGINT, 130)],
    ids=["SIGKILL", "SIGINT"],
)
def test_interrupted_eval_resumes_with_only_the_remaining_tasks(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path, stop: signal.Signals, returncode: int
) -> None:
    server = scripted_model()
    server.hold_after = 2  # the third episode's first request hangs: the run is killed mid-request
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--concurrency", "1")
    process = eval_subprocess(args, stderr=subprocess.PIPE)
    try:
        assert server.holding.wait(60), "the third episode never started"
        deadline = time.monotonic() + 30
        while len((out / "results.jsonl").read_text().splitlines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == returncode
    if stop == signal.SIGINT:
        assert "rerun to resume" in flat(stderr.decode())
    killed_rows = results_lines(out)
    assert [row["task_id"] for row in killed_rows] == TASK_IDS[:2]
    assert not (out / "summary.json").exists()
    with (out / "results.jsonl").open("a") as handle:  # a row torn by the kill, as a crash mid-write leaves
        handle.write('{"task_id": "turing-award-first", "run": 1, "mod')

    server.release.set()
    server.hold_after = None
    server.log.clear()
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output

    assert server.requests_per_task().keys() == set(TASK_IDS[2:])
    rows = results_lines(out)  # the torn line is gone and every task appears exactly once
    assert sorted(row["task_id"] for row in rows) == sorted(TASK_IDS)
    assert rows[:2] == killed_rows
    summary = json.loads(result.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    assert (summary["played"], summary["resumed"], summary["episodes"]) == (3, 2, 5)
    assert summary["accuracy"] == pytest.approx(0.6)


def test_retries_honour_retry_after_and_the_episode_completes(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    server.failures = [(503, {}), (429, {"Retry-After": "1"}), (502, {})]
    seen: list[tuple[int, int, str | None]] = []

    def progress(status: EvalProgress, row: EvalRow | None) -> None:
        seen.append((status.total, status.done, row.task_id if row else None))

    config = EvalConfig(
        base_url=server.url,
        model="m",
        snapshot=demo_dir,
        out=tmp_path / "eval",
        limit=1,
        sandbox="none",
        retries=3,
        backoff=0.01,
    )
    report = evaluate(config, progress)
    (row,) = report.rows
    assert (row.task_id, row.reward, row.error, row.answer) == ("ada-standard", 1.0, None, "MIL-STD-1815")
    assert [entry["status"] for entry in server.log[:4]] == [503, 429, 502, 200]
    assert server.log[2]["at"] - server.log[1]["at"] >= 1.0  # waited what Retry-After asked
    assert report.summary.requests == len(server.log) == row.model_calls + 3
    assert seen == [(1, 0, None), (1, 1, "ada-standard")]


def test_an_endpoint_down_for_one_task_fails_only_that_task(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    server.down = {"turing-award-first"}
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--retries", "2", "--backoff", "0.01", "--concurrency", "1")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = {row["task_id"]: row for row in results_lines(out)}
    down = rows["turing-award-first"]
    assert down["errors"]["endpoint"] == 1 and "failed after 3 attempts: HTTP 503" in down["error"]
    assert down["reward"] == 0.0 and down["model_calls"] == 0
    assert server.requests_per_task()["turing-award-first"] == 3
    assert all(row["error"] is None for tid, row in rows.items() if tid != "turing-award-first")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"]["endpoint"] == 1 and summary["complete"] == 4
    assert summary["accuracy"] == pytest.approx(2 / 5)

    # The endpoint is back: a rerun plays only the failed episode, and its new row replaces the old one.
    server.down.clear()
    server.log.clear()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert server.requests_per_task().keys() == {"turing-award-first"}
    assert len(results_lines(out)) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["errors"]["endpoint"], summary["accuracy"], summary["episodes"]) == (0, 0.6, 5)


def test_an_endpoint_down_for_everything_fails_the_run(demo_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--model",
            "m",
            "--snapshot",
            str(demo_dir),
            "--out",
            str(out),
            "--sandbox",
            "none",
            "--concurrency",
            "1",
            "--retries",
            "1",
            "--backoff",
            "0.01",
        ],
    )
    assert result.exit_code == 1
    assert "every episode played failed to get replies" in flat(result.stderr)
    assert "ConnectError" in flat(result.stderr)
    rows = read_results(out / "results.jsonl")
    assert len(rows) == 3  # gave up after three failures in a row instead of trying all five tasks
    assert all(row.endpoint_failed for row in rows)
    assert json.loads((out / "summary.json").read_text())["errors"]["endpoint"] == 3


def test_pass_at_k_over_two_runs_and_sampling_overrides(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model(wrong={"babbage-eniac-gap": "\\boxed{154}"})
    ada = server.scripts["ada-standard"]
    server.episode_scripts[("ada-standard", 1)] = wrong_script(ada, "\\boxed{MIL-STD-1816}")
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--runs", "2", "--concurrency", "1", "--temperature", "0.3")
    args += ["--max-tokens", "2048", "--extra-body", '{"top_k": 20}', "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    rows = results_lines(out)
    assert sorted((row["task_id"], row["run"]) for row in rows) == sorted(itertools.product(TASK_IDS, (1, 2)))
    solved = {(row["task_id"], row["run"]): row["reward"] for row in rows}
    assert (solved[("ada-standard", 1)], solved[("ada-standard", 2)]) == (0.0, 1.0)
    summary = json.loads(result.stdout)
    # ada: 1 of 2 (pass@1 0.5, pass@2 1); babbage: 0 of 2; three tasks 2 of 2.
    assert summary["pass_at_k"] == {"1": pytest.approx(3.5 / 5), "2": pytest.approx(4 / 5)}
    assert summary["accuracy"] == pytest.approx(7 / 10) and summary["episodes"] == 10
    for entry in server.log:
        body = entry["body"]
        assert (body["temperature"], body["top_p"], body["max_tokens"], body["top_k"]) == (
            0.3,
            0.95,
            2048,
            20,
        )

    # Runs use different seeds, so their episode ids (and sandboxes) differ.
    ids = {(row["task_id"], row["run"]): row["episode_id"] for row in rows}
    assert ids[("ada-standard", 1)] != ids[("ada-standard", 2)]


def test_pass_at_k_matches_counting_subsets() -> None:
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(outcomes, k))
                expected = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(expected), (n, c, k)
    with pytest.raises(ValueError, match="0 < k <= n"):
        pass_at_k(2, 1, 3)


def test_resuming_with_another_model_is_refused_unless_forced(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    assert runner.invoke(app, eval_args(server, demo_dir, out, "--limit", "1")).exit_code == 0
    other = eval_args(server, demo_dir, out, "--limit", "1")
    other[other.index("--model") + 1] = "another-model"
    result = runner.invoke(app, other)
    assert result.exit_code == 2
    assert "holds results of a different evaluation" in flat(result.stderr)
    assert "model ('scripted-thinker' there, 'another-model' now)" in flat(result.stderr)
    changed_tasks = runner.invoke(app, eval_args(server, demo_dir, out, "--limit", "2"))
    assert changed_tasks.exit_code == 2 and "tasks_hash" in flat(changed_tasks.stderr)

    server.log.clear()
    forced = runner.invoke(app, [*other, "--force"])
    assert forced.exit_code == 0, forced.output
    assert server.log == []  # the finished pair is kept; nothing left to play
    assert json.loads((out / "config.json").read_text())["model"] == "another-model"


def test_openai_format_sends_tools_and_feeds_tool_calls_back(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "google_search", "arguments": json.dumps({"q": "Ada programming language"})},
    }
    server.scripts["ada-standard"] = [
        {"content": None, "tool_calls": [call]},
        "It is MIL-STD-1815.",
        "\\boxed{MIL-STD-1815}",
    ]
    report = evaluate(
        EvalConfig(
            base_url=server.url,
            model="m",
            snapshot=demo_dir,
            out=tmp_path / "eval",
            limit=1,
            sandbox="none",
            tool_format="openai",
        )
    )
    (row,) = report.rows
    assert (row.reward, row.tool_calls, row.errors["format"]) == (1.0, 1, 0)
    first, second = server.log[0]["body"], server.log[1]["body"]
    assert {tool["function"]["name"] for tool in first["tools"]} >= {"google_search", "run_python_code"}
    assert second["messages"][2]["tool_calls"] == [call]
    tool_message = second["messages"][3]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_1"
    assert "wikipedia.org" in tool_message["content"]


def test_bad_settings_are_named(demo_dir: Path, tmp_path: Path) -> None:
    base = ["eval", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", str(tmp_path / "o")]
    missing = runner.invoke(app, [*base, "--snapshot", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "task file not found" in flat(missing.stderr)
    bad_layout = runner.invoke(app, [*base, "--snapshot", str(demo_dir), "--task-format", "csv"])
    assert bad_layout.exit_code == 2 and "unknown task layout 'csv'" in flat(bad_layout.stderr)
    no_snapshot = runner.invoke(
        app, [*base, "--snapshot", str(tmp_path), "--tasks", str(demo_dir / "tasks.jsonl")]
    )
    assert no_snapshot.exit_code == 2 and f"cannot open snapshot {tmp_path}" in flat(no_snapshot.stderr)
    bad_body = runner.invoke(app, [*base, "--snapshot", str(demo_dir), "--extra-body", "[1]"])
    assert bad_body.exit_code == 2 and "--extra-body must be a JSON object" in flat(bad_body.stderr)
    with pytest.raises(ValidationError, match="unknown tool profile 'nope'; choose one of: minimal"):
        EvalConfig(base_url="http://x/v1", model="m", snapshot=demo_dir, out=tmp_path, profile="nope")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "--sandbox",
            "bogus",
            "--sandbox: unknown sandbox backend 'bogus'; valid choices: auto, docker, process, none",
        ),
        (
            "--format",
            "bogus",
            "--format: unknown tool-call format 'bogus'; valid formats: mcp_xml, hermes, openai",
        ),
        (
            "--profile",
            "bogus",
            "--profile: unknown tool profile 'bogus'; choose one of: minimal, mirothinker_v1",
        ),
        (
            "--reward",
            "bogus",
            "--reward: unknown reward 'bogus'; valid choices: contains, em, f1, gaia, judge",
        ),
        ("--base-url", "http://[::1/v1", "--base-url: 'http://[::1/v1' is not a valid URL"),
        (
            "--base-url",
            "127.0.0.1:8000/v1",
            "--base-url: '127.0.0.1:8000/v1' must start with http:// or https://",
        ),
    ],
)
def test_a_bad_setting_is_refused_before_anything_is_written(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--limit", "1")
    bad = [*args, option, value]
    result = runner.invoke(app, bad)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in flat(result.stderr)
    assert not out.exists() and server.log == []
    corrected = runner.invoke(app, args)  # nothing was recorded, so the fixed command is not refused
    assert corrected.exit_code == 0, corrected.output
    assert [row["task_id"] for row in results_lines(out)] == TASK_IDS[:1]


def test_a_results_file_with_a_bad_middle_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"task_id": "a"}\n{"task_id": "b"}\n')
    with pytest.raises(EvalError, match=r"results.jsonl:1: not a results row"):
        read_results(path)


def test_a_whole_last_row_without_its_newline_is_kept(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    assert runner.invoke(app, eval_args(server, demo_dir, out, "--limit", "1")).exit_code == 0
    (out / "results.jsonl").write_text((out / "results.jsonl").read_text().rstrip("\n"))
    server.log.clear()
    more = runner.invoke(app, eval_args(server, demo_dir, out, "--limit", "2", "--force"))
    assert more.exit_code == 0, more.output
    assert server.requests_per_task().keys() == {"babbage-eniac-gap"}
    assert [row["task_id"] for row in results_lines(out)] == TASK_IDS[:2]


def test_a_row_torn_inside_a_multibyte_character_is_dropped(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    out = tmp_path / "eval"
    config = EvalConfig(base_url=server.url, model="m", snapshot=demo_dir, out=out, limit=2, sandbox="none")
    evaluate(config)
    path = out / "results.jsonl"
    first, last = path.read_bytes().splitlines(keepends=True)
    row = json.loads(last) | {"answer": "Zürich é"}  # a killed writer cut the row inside the "ü"
    data = json.dumps(row, ensure_ascii=False).encode()
    path.write_bytes(first + data[: data.index("ü".encode()) + 1])

    assert [row.task_id for row in read_results(path)] == TASK_IDS[:1]
    server.log.clear()
    report = evaluate(config)
    assert server.requests_per_task().keys() == {TASK_IDS[1]}
    assert (report.summary.played, report.summary.resumed) == (1, 1)
    assert [row["task_id"] for row in results_lines(out)] == TASK_IDS[:2]


def test_a_non_retryable_refusal_fails_only_its_episode_and_never_aborts_the_run(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    too_long = "This model's maximum context length is 262144 tokens; your messages resulted in 300000 tokens"
    refused = TASK_IDS[:3]  # the first max(3, concurrency) episodes: once enough to abandon the run
    server.refuse = dict.fromkeys(refused, (400, {}, too_long))
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--concurrency", "1", "--retries", "3", "--backoff", "0.01")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    rows = {row["task_id"]: row for row in results_lines(out)}
    assert sorted(rows) == sorted(TASK_IDS)
    for task_id in refused:
        assert rows[task_id]["errors"]["endpoint"] == 1 and rows[task_id]["reward"] == 0.0
        assert "answered HTTP 400" in rows[task_id]["error"] and too_long in rows[task_id]["error"]
        assert rows[task_id]["endpoint_unavailable"] is False
        assert server.requests_per_task()[task_id] == 1  # a 400 is not retried
    assert all(rows[task_id]["error"] is None for task_id in TASK_IDS[3:])
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["played"], summary["errors"]["endpoint"], summary["complete"]) == (5, 3, 2)


def test_rows_finished_after_the_run_gives_up_are_logged(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    survivor = "birth-years-product"
    server.down = set(TASK_IDS) - {survivor}
    server.hold_at = (survivor, 4)  # its last reply waits until the fourth failure has been counted

    def progress(status: EvalProgress, row: EvalRow | None) -> None:
        if status.done == 4:
            assert server.holding.wait(60)
            server.release.set()

    out = tmp_path / "eval"
    config = EvalConfig(
        base_url=server.url,
        model="m",
        snapshot=demo_dir,
        out=out,
        sandbox="none",
        concurrency=4,
        retries=0,
    )
    with pytest.raises(
        EndpointUnavailableError, match="the first 4 episodes failed to get replies"
    ) as caught:
        evaluate(config, progress)
    assert "5 of 5 played before giving up" in str(caught.value)
    rows = {row.task_id: row for row in read_results(out / "results.jsonl")}
    assert sorted(rows) == sorted(TASK_IDS)
    assert rows[survivor].error is None and rows[survivor].answer == "3470280"
    assert all(rows[task_id].endpoint_unavailable for task_id in server.down)
    assert (out / rows[survivor].trajectory).is_file()
    assert json.loads((out / "summary.json").read_text())["episodes"] == 5


def _eval_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("miroenv-eval-")]


def test_a_stopping_run_abandons_retries_instead_of_hammering_the_endpoint(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    waiting = TASK_IDS[0]
    server.refuse = {waiting: (503, {"Retry-After": "30"}, "overloaded")}  # its worker waits 30 s to retry
    server.down = set(TASK_IDS[1:])  # the others fail at once: the run gives up after three

    def progress(status: EvalProgress, row: EvalRow | None) -> None:
        while row is not None and waiting not in server.requests_per_task():
            time.sleep(0.01)

    out = tmp_path / "eval"
    config = EvalConfig(
        base_url=server.url,
        model="m",
        snapshot=demo_dir,
        out=out,
        sandbox="none",
        concurrency=3,
        retries=2,
        backoff=0.01,
    )
    with pytest.raises(EndpointUnavailableError, match="every episode played failed"):
        evaluate(config, progress)
    for thread in _eval_threads():
        thread.join(60)
    assert server.requests_per_task()[waiting] == 1  # no retry once the run stopped
    rows = read_results(out / "results.jsonl")
    # The give-up comes after three failures; a fourth episode may have failed before the stop took effect
    # (its row is kept too). The waiting episode was abandoned: no row.
    assert 3 <= len(rows) <= len(TASK_IDS) - 1 and waiting not in {row.task_id for row in rows}
    assert all(row.endpoint_failed for row in rows)


def _sandbox_processes() -> list[int]:
    """Pids of live process-backend sandboxes started by this test process."""
    mark = (OWNER_ARG + owner_token()).encode()
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                if mark in Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0"):
                    pids.append(int(name))
    return pids


def test_an_interrupted_run_closes_its_envs_and_sandboxes_without_waiting_for_requests(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(evaluation, "WORKER_STOP_GRACE", 0.5)
    server = scripted_model()
    sandboxed = "birth-years-product"  # creates a sandbox, runs code in it, then answers
    server.hold_at = (sandboxed, 3)  # after its Python call, its next request hangs
    lines = (demo_dir / "tasks.jsonl").read_text().splitlines()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(f"{line}\n" for tid in (sandboxed, TASK_IDS[0]) for line in lines if tid in line)
    )
    live_during_run: list[int] = []

    def progress(status: EvalProgress, row: EvalRow | None) -> None:
        if row is None:
            return
        assert server.holding.wait(60)
        live_during_run.extend(_sandbox_processes())
        raise KeyboardInterrupt

    config = EvalConfig(
        base_url=server.url,
        model="m",
        snapshot=demo_dir,
        tasks=tasks,
        out=tmp_path / "eval",
        sandbox="process",
        concurrency=2,
    )
    with pytest.raises(KeyboardInterrupt):
        evaluate(config, progress)
    held = next(entry for entry in server.log if entry.get("held"))
    assert "status" not in held  # evaluate() returned while a worker still waited for its reply
    assert live_during_run, "the sandboxed episode had no live sandbox when interrupted"
    assert _sandbox_processes() == []
    assert [row["task_id"] for row in results_lines(tmp_path / "eval")] == [TASK_IDS[0]]


def test_a_second_eval_on_the_same_directory_is_refused_while_the_first_runs(
    scripted_model: MakeServer, demo_dir: Path, tmp_path: Path
) -> None:
    server = scripted_model()
    server.hold_after = 0  # the first run's first request hangs
    out = tmp_path / "eval"
    args = eval_args(server, demo_dir, out, "--concurrency", "1")
    first = eval_subprocess(args, stderr=subprocess.DEVNULL)
    try:
        assert server.holding.wait(60), "the first run never sent a request"
        second = runner.invoke(app, args)
        assert second.exit_code == 2, second.output
        assert f"another evaluation is using this directory (pid {first.pid})" in flat(second.stderr)
        assert len(server.log) == 1  # the second run sent nothing
        assert not (out / "results.jsonl").exists() or results_lines(out) == []
    finally:
        first.kill()
        first.wait(30)

    # The lock dies with its holder: a rerun after the kill plays everything.
    server.release.set()
    server.hold_after = None
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert sorted(row["task_id"] for row in results_lines(out)) == sorted(TASK_IDS)


def test_eval_survives_any_reply_the_endpoint_sends(demo_dir: Path, tmp_path: Path) -> None:
    """Lone surrogates and NUL (JSON escapes in the body), garbage tool_calls, invalid JSON and invalid UTF-8
    bodies: the run finishes with exit 0, each episode's row saying what happened."""
    questions = {task.task_id: task.question for task in load_tasks(demo_dir / "tasks.jsonl")}
    call = (
        "<use_mcp_tool>\n<server_name>search_and_scrape_webpage</server_name>\n<tool_name>google_search"
        '</tool_name>\n<arguments>\n{"q": "Ada \\ud800 standard"}\n</arguments>\n</use_mcp_tool>'
    )
    garbage_calls = [
        1,
        "x",
        None,
        {"id": "\ud800", "function": {"name": "google_search\x00", "arguments": '{"q": "\\u0000"}'}},
        {"function": {"name": "google_search", "arguments": {"q": ["\udfff"]}}},
    ]
    scripts: dict[str, list[ChatReplyScript]] = {
        "ada-standard": [f"\ud800 thinking\x00 {call}", "It is MIL-STD-1815.\ud83d", "\\boxed{MIL-STD-1815}"],
        "babbage-eniac-gap": [{"content": None, "tool_calls": garbage_calls}, "done", "\\boxed{\udcff}"],
        "turing-award-first": [b'{"choices": [{"message": {"content": "trunc'],
        "birth-years-product": [b'{"choices": [{"message": {"content": "\xff\xfe\x00"}}]}'],
        "baby-first-program": [{"content": "x", "tool_calls": "not a list"}, "done", "\\boxed{1948-06-21}"],
    }
    server = ChatScriptServer(questions, scripts)
    try:
        out = tmp_path / "eval"
        result = runner.invoke(app, eval_args(server, demo_dir, out, "--retries", "0"))
    finally:
        server.close()
    assert result.exit_code == 0, result.output
    rows = {row["task_id"]: row for row in results_lines(out)}
    assert sorted(rows) == sorted(TASK_IDS)

    ada = rows["ada-standard"]
    assert (ada["reward"], ada["error"], ada["errors"]["format"]) == (1.0, None, 1)
    (episode,) = read_trajectories(out / ada["trajectory"])
    first = episode.steps[0]
    assert first.action == f"\ud800 thinking\x00 {call}"  # the reply exactly as the endpoint sent it
    assert "'q' holds a lone surrogate (U+D800)" in first.observation
    assert first.error_kinds == ["format"]

    babbage = rows["babbage-eniac-gap"]
    assert babbage["error"] is None and babbage["errors"]["format"] >= 1 and babbage["answer"] == "\ufffd"
    assert rows["baby-first-program"]["error"] is None and rows["baby-first-program"]["reward"] == 1.0

    for task_id in ("turing-award-first", "birth-years-product"):
        row = rows[task_id]
        assert row["errors"]["endpoint"] == 1 and "unusable reply" in row["error"], row
