"""The LLM judge against a scripted OpenAI-compatible server on 127.0.0.1: verdicts parsed, cached, stored."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from miroenv import Task, read_trajectories
from miroenv.cli import app
from miroenv.rewards import RewardContext
from miroenv.rewards.judge import (
    BROWSECOMP_TEMPLATE,
    JUDGE_TEMPLATES,
    STRUCTURED_FORMAT,
    JudgeError,
    JudgeReward,
    judge_key,
    parse_verdict,
)
from miroenv.scoring import score_trajectories, stored_verdicts
from tests.test_scoring import DIRECT_ANSWERS, mixed_episodes, record_episodes

runner = CliRunner()

_SLOT = re.compile(r"^\[(response|correct_answer)\]: (.*)$", re.MULTILINE)


class JudgeServer:
    """A chat-completions endpoint that grades by exact match, in BrowseComp's reply format (or JSON)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.lock = threading.Lock()
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def reply(self, body: dict[str, Any]) -> str:
        """The scripted verdict: `yes` when the response equals the correct answer's first part."""
        slots = dict(_SLOT.findall(body["messages"][0]["content"]))
        response, gold = (
            slots["response"].strip(),
            slots["correct_answer"].split(" (also accepted")[0].strip(),
        )
        verdict = "yes" if response.lower() == gold.lower() else "no"
        if "response_format" in body:
            return json.dumps(
                {
                    "extracted_final_answer": response,
                    "reasoning": "compared",
                    "correct": verdict,
                    "confidence": 90,
                    "strict": True,
                }
            )
        return (
            "<think>correct: yes, surely? no, let me compare.</think>\n"
            f"extracted_final_answer: {response}\n\nreasoning: The answers {'match' if verdict == 'yes' else 'differ'}.\n"
            f"They were compared literally.\n\n**correct:** {verdict}\n\nconfidence: 100%"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    status = server.fail_next.pop(0) if server.fail_next else 200
                if status != 200:
                    payload = b'{"error": "scripted failure"}'
                else:
                    payload = json.dumps(
                        {
                            "choices": [{"message": {"role": "assistant", "content": server.reply(body)}}],
                            "usage": {"total_tokens": 42},
                        }
                    ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    judge_server = JudgeServer()
    yield judge_server
    judge_server.close()


def _ctx(answer: str | None, gold: str = "Alan Perlis", aliases: tuple[str, ...] = ()) -> RewardContext:
    task = Task(task_id="t", question="Who won the first Turing Award?", answer=gold, aliases=aliases)
    return RewardContext(answer=answer, task=task)


# ------------------------------------------------------------------ parsing


def test_browsecomp_reply_is_parsed_from_its_lines() -> None:
    reply = (
        "extracted_final_answer: Alan Perlis\n\nreasoning: The response names Alan Perlis,\nwhich matches.\n\n"
        "correct: yes\n\nconfidence: 85%"
    )
    verdict = parse_verdict(reply)
    assert verdict.correct and verdict.parsed
    assert verdict.extracted_final_answer == "Alan Perlis"
    assert verdict.reasoning == "The response names Alan Perlis,\nwhich matches."
    assert verdict.confidence == 85.0


@pytest.mark.parametrize(
    ("reply", "correct"),
    [
        ("**correct:** no", False),
        ("- Correct: Yes.", True),
        ("correct: 'no'", False),
        (
            'Here you go:\n```json\n{"extracted_final_answer": "x", "correct": "yes", "confidence": 70}\n```',
            True,
        ),
        ('{"correct": false, "reasoning": "differs"}', False),
        ("<think>\ncorrect: yes\n</think>\ncorrect: no", False),
        ("correct: Answer 'yes' if it matches\ncorrect: no", False),
        ("correct: yes\n...on reflection:\ncorrect: no", False),
    ],
)
def test_verdict_parsing_is_robust(reply: str, correct: bool) -> None:
    verdict = parse_verdict(reply)
    assert verdict.parsed and verdict.correct is correct


def test_unparseable_reply_counts_as_incorrect() -> None:
    verdict = parse_verdict("I think the answer is right.")
    assert not verdict.parsed and not verdict.correct


def test_templates_and_keys() -> None:
    assert set(JUDGE_TEMPLATES) == {"browsecomp", "hle"}
    for template in JUDGE_TEMPLATES.values():
        prompt = template.format(question="Q?", response="R", correct_answer="C")
        assert "[question]: Q?" in prompt and "[response]: R" in prompt and "[correct_answer]: C" in prompt
        assert "correct: Answer 'yes'" in prompt and "extracted_final_answer:" in prompt
    assert BROWSECOMP_TEMPLATE.startswith("Judge whether the following [response] to [question] is correct")
    keys = {
        judge_key("browsecomp", "m", "q", "a", "g"),
        judge_key("hle", "m", "q", "a", "g"),
        judge_key("browsecomp", "m2", "q", "a", "g"),
        judge_key("browsecomp", "m", "q", "a2", "g"),
        judge_key("browsecomp", "m", "q", "a", "g2"),
        judge_key("browsecomp", "m", "q2", "a", "g"),
    }
    assert len(keys) == 6
    with pytest.raises(ValueError, match="unknown judge template"):
        JudgeReward("m", template="nope")


# ------------------------------------------------------------------ the reward against a server


def test_judge_reward_calls_once_then_reuses(server: JudgeServer, tmp_path: Path) -> None:
    judge = JudgeReward("judge-1", base_url=server.url, cache_dir=tmp_path / "cache")
    first = judge(_ctx("alan perlis"))
    assert first.total == 1.0 and first.components == {"correct": 1.0}
    assert first.details["source"] == "endpoint" and first.details["confidence"] == 100.0
    assert first.details["reasoning"] == "The answers match.\nThey were compared literally."
    assert first.cost == {"judge_calls": 1.0, "judge_tokens": 42.0}
    assert judge(_ctx("alan perlis")).details["source"] == "memory"
    assert judge(_ctx("alan perlis")).cost == {}  # a remembered verdict costs nothing
    assert judge(_ctx("Maurice Wilkes")).total == 0.0
    assert judge(_ctx(None)).details == {"reason": "no answer"}
    assert len(server.requests) == 2
    assert server.requests[0]["model"] == "judge-1" and server.requests[0]["temperature"] == 0.0
    judge.close()

    again = JudgeReward("judge-1", base_url=server.url, cache_dir=tmp_path / "cache")
    assert again(_ctx("alan perlis")).details["source"] == "cache"
    other_model = JudgeReward("judge-2", base_url=server.url, cache_dir=tmp_path / "cache")
    assert other_model(_ctx("alan perlis")).details["source"] == "endpoint"
    assert len(server.requests) == 3
    again.close()
    other_model.close()


def test_aliases_are_shown_to_the_judge(server: JudgeServer) -> None:
    judge = JudgeReward("m", base_url=server.url)
    assert judge(_ctx("Perlis", gold="Alan Perlis", aliases=("Perlis", "A. Perlis"))).total == 0.0
    prompt = server.requests[0]["messages"][0]["content"]
    assert "[correct_answer]: Alan Perlis (also accepted: Perlis; A. Perlis)" in prompt


def test_hle_structured_output(server: JudgeServer) -> None:
    judge = JudgeReward("m", template="hle", base_url=server.url, structured=True)
    breakdown = judge(_ctx("Alan Perlis"))
    assert breakdown.total == 1.0 and breakdown.details["template"] == "hle"
    assert breakdown.details["confidence"] == 90.0
    assert server.requests[0]["response_format"] == STRUCTURED_FORMAT


def test_retries_then_errors(server: JudgeServer) -> None:
    server.fail_next = [503, 429]
    judge = JudgeReward("m", base_url=server.url, backoff=0.0)
    assert judge(_ctx("Alan Perlis")).total == 1.0
    assert judge.requests == 3
    server.fail_next = [400]
    with pytest.raises(JudgeError, match="HTTP 400"):
        judge(_ctx("Perlis"))
    offline = JudgeReward("m")
    with pytest.raises(JudgeError, match="no judge endpoint"):
        offline(_ctx("Alan Perlis"))


# ------------------------------------------------------------------ scoring trajectories twice


def test_second_scoring_pass_makes_no_request(server: JudgeServer, demo_dir: Path, tmp_path: Path) -> None:
    path = mixed_episodes(demo_dir, tmp_path / "t.jsonl", "gaia")
    pristine = tmp_path / "pristine.jsonl"
    shutil.copy(path, pristine)
    original_lines = path.read_text(encoding="utf-8").splitlines()
    cache = tmp_path / "cache"

    first = score_trajectories([path], JudgeReward("m", base_url=server.url, cache_dir=cache))
    distinct_answers = {(row.task_id, row.answer) for row in first.rows if row.answer is not None}
    assert len(server.requests) == first.summary.judge_requests == len(distinct_answers) == 7
    assert first.written == [str(path)]
    assert [row.reward for row in first.rows] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert first.summary.accuracy == 6 / 9

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(original_lines)
    changed = [i for i, (a, b) in enumerate(zip(original_lines, lines, strict=True)) if a != b]
    assert all(json.loads(original_lines[i])["type"] == "footer" for i in changed) and len(changed) == 8
    episodes = read_trajectories(path)
    assert [len(stored_verdicts(t)) for t in episodes] == [1, 1, 1, 1, 1, 1, 1, 1, 0]
    for i in changed:
        updated = json.loads(lines[i])
        assert len(updated.pop("judge")) == 1 and updated == json.loads(original_lines[i])

    cached = score_trajectories(
        [pristine], JudgeReward("m", base_url=server.url, cache_dir=cache), write_back=False
    )
    assert (
        cached.summary.judge_requests == 0
        and pristine.read_text(encoding="utf-8").splitlines() == original_lines
    )
    sources = [row.details.get("source") for row in cached.rows]
    assert sources.count("cache") == 7 and sources.count("memory") == 1

    shutil.rmtree(cache)
    stored = score_trajectories([path], JudgeReward("m", base_url=server.url, cache_dir=cache))
    assert stored.summary.judge_requests == 0 and stored.written == []
    assert {row.details.get("source") for row in stored.rows} == {"memory", None}
    assert [row.reward for row in stored.rows] == [row.reward for row in first.rows]
    offline = score_trajectories([path], JudgeReward("m"))
    assert [row.reward for row in offline.rows] == [row.reward for row in first.rows]
    assert len(server.requests) == 7


def test_cli_judge_scoring_twice_costs_one_call_per_answer(
    server: JudgeServer, demo_dir: Path, tmp_path: Path
) -> None:
    path = record_episodes(demo_dir, tmp_path / "t.jsonl", DIRECT_ANSWERS)
    args = ["score", str(path), "--reward", "judge", "--base-url", server.url, "--model", "m"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--judge-template", "hle", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["summary"]["judge_requests"] == 3 and data["written"] == [str(path)]
    assert [row["reward"] for row in data["rows"]] == [0.0, 0.0, 1.0, 0.0]

    second = runner.invoke(app, [*args, "--no-cache"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["summary"]["judge_requests"] == 0
    assert len(server.requests) == 3

    table = runner.invoke(app, [*args[:-1], "--no-write"])
    assert table.exit_code == 0 and "judge requests: 0" in table.output

    server.fail_next = [400]
    failing = runner.invoke(app, [*args[:3], "--base-url", server.url, "--model", "m", "--no-cache"])
    assert failing.exit_code == 2, failing.output


def test_verdicts_found_before_a_failure_are_still_stored(
    server: JudgeServer, demo_dir: Path, tmp_path: Path
) -> None:
    path = record_episodes(demo_dir, tmp_path / "t.jsonl", DIRECT_ANSWERS)
    server.fail_next = [200, 400]
    with pytest.raises(JudgeError):
        score_trajectories([path], JudgeReward("m", base_url=server.url))
    assert [len(stored_verdicts(t)) for t in read_trajectories(path)] == [1, 0, 0, 0]
    report = score_trajectories([path], JudgeReward("m", base_url=server.url))
    assert report.summary.judge_requests == 2


def test_an_episode_judged_live_reports_the_judge_in_its_cost(server: JudgeServer, demo_dir: Path) -> None:
    from miroenv import ResearchEnv
    from miroenv.rewards import WeightedSum
    from miroenv.rewards.gaia import GaiaReward

    judge = JudgeReward("judge-1", base_url=server.url)
    reward = WeightedSum([(judge, 0.5), (GaiaReward(), 0.5)])
    env = ResearchEnv(demo_dir, sandbox="none", reward=reward)
    for attempt in range(2):
        env.reset(options={"task_id": "ada-standard"})
        env.step("\\boxed{MIL-STD-1815}")
        *_, info = env.step("\\boxed{MIL-STD-1815}")
        expected = {"judge_calls": 1.0, "judge_tokens": 42.0} if attempt == 0 else {}
        assert {k: v for k, v in info["cost"].items() if k.startswith("judge_")} == expected
        assert info["reward_components"]["judge"] == 0.5
    env.close()
    judge.close()
    assert len(server.requests) == 1
