"""The front doors' own overhead: a tool call through `miroenv serve-mcp`, and an evaluation episode's runner cost.

MCP: `serve-mcp --transport http` runs as a subprocess; one `mcp` SDK client session sends `google_search`
calls (distinct queries, replayed from the demo snapshot's index) and the latency per call is compared with the
same call made in-process through `run_tool_once`. MiroThinker's tool manager opens a new stdio process per
call, so the cost of that pattern (spawn, initialize, one call, exit) is measured too.

Eval: `evaluate()` against a scripted OpenAI-compatible server on 127.0.0.1 that answers instantly with the
demo's recorded replies, so what is timed is the runner (HTTP round trips, env steps, trajectory and results
writing), not a model.

Run: `python benchmarks/bench_front_doors.py [--calls 300] [--episodes-per-task 20]`
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import anyio
from mcp import Client, StdioServerParameters

from miroenv import load_actions, load_tasks
from miroenv.evaluation import EvalConfig, evaluate
from miroenv.tools.standalone import run_tool_once
from miroenv.web.snapshot import Snapshot

SNAPSHOT = Path("snapshots/demo")
WORDS = ["Babbage", "engine", "Turing", "award", "Hopper", "COBOL", "ENIAC", "Ada", "Lovelace", "Jacquard"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def queries(n: int) -> list[str]:
    """`n` distinct queries over the demo's vocabulary (a session refuses a repeated query)."""
    return [f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} history {i}" for i in range(n)]


def start_http_server() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "miroenv.cli", "serve-mcp", "--snapshot", str(SNAPSHOT)]
    proc = subprocess.Popen(
        [*command, "--transport", "http", "--port", "0", "--sandbox", "none"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.match(r"\s+search_and_scrape_webpage: (http://\S+)$", line.rstrip("\n"))
        if found:
            return proc, found.group(1)
    raise RuntimeError("serve-mcp exited before listening")


def bench_mcp(calls: int, stdio_calls: int) -> dict[str, float]:
    asked = queries(calls)
    web = Snapshot(SNAPSHOT)
    direct = []
    for q in asked:
        start = time.perf_counter()
        run_tool_once(web, "google_search", {"q": q})
        direct.append(time.perf_counter() - start)
    web.close()

    proc, url = start_http_server()
    http: list[float] = []

    async def over_http() -> float:
        start = time.perf_counter()
        async with Client(url) as client:
            opened = time.perf_counter() - start
            for q in asked:
                t = time.perf_counter()
                result = await client.call_tool("google_search", {"q": q})
                http.append(time.perf_counter() - t)
                assert not result.is_error, result
        return opened

    try:
        session_open = anyio.run(over_http)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "miroenv.cli",
            "serve-mcp",
            "--snapshot",
            str(SNAPSHOT),
            "--server",
            "search_and_scrape_webpage",
        ],
    )
    per_process: list[float] = []

    async def process_per_call() -> None:
        for q in asked[:stdio_calls]:
            start = time.perf_counter()
            async with Client(params) as client:
                await client.call_tool("google_search", {"q": q})
            per_process.append(time.perf_counter() - start)

    anyio.run(process_per_call)
    return {
        "direct_p50_ms": statistics.median(direct) * 1e3,
        "direct_p99_ms": percentile(direct, 0.99) * 1e3,
        "http_p50_ms": statistics.median(http) * 1e3,
        "http_p99_ms": percentile(http, 0.99) * 1e3,
        "http_session_open_ms": session_open * 1e3,
        "stdio_process_per_call_median_s": statistics.median(per_process),
    }


class ScriptedModel(BaseHTTPRequestHandler):
    """Replies with the demo's recorded actions: the task by its question, the turn by assistant messages."""

    task_of: ClassVar[dict[str, str]] = {}
    replies: ClassVar[dict[str, list[str]]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = body["messages"][1]["content"]
        task_id = next(tid for q, tid in self.task_of.items() if question.startswith(q))
        turn = sum(message["role"] == "assistant" for message in body["messages"])
        message = {"role": "assistant", "content": self.replies[task_id][turn]}
        data = json.dumps({"choices": [{"message": message, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def bench_eval(runs: int, concurrency: int) -> dict[str, float]:
    ScriptedModel.task_of = {t.question: t.task_id for t in load_tasks(SNAPSHOT / "tasks.jsonl")}
    ScriptedModel.replies = {
        k: [str(a) for a in v] for k, v in load_actions(SNAPSHOT / "actions.jsonl").items()
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = EvalConfig(
            base_url=f"http://127.0.0.1:{server.server_port}/v1",
            model="scripted",
            snapshot=SNAPSHOT,
            out=Path(tempfile.mkdtemp()) / "eval",
            sandbox="none",
            concurrency=concurrency,
            runs=runs,
        )
        start = time.perf_counter()
        report = evaluate(config)
        elapsed = time.perf_counter() - start
    finally:
        server.shutdown()
    summary = report.summary
    return {
        "episodes": summary.played,
        "requests": summary.requests,
        "seconds": elapsed,
        "episodes_per_s": summary.played / elapsed,
        "ms_per_episode": elapsed / summary.played * 1e3,
        "accuracy": summary.accuracy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--stdio-calls", type=int, default=10)
    parser.add_argument("--episodes-per-task", type=int, default=20)
    args = parser.parse_args()
    print("mcp", json.dumps({k: round(v, 3) for k, v in bench_mcp(args.calls, args.stdio_calls).items()}))
    for concurrency in (1, 4):
        result = bench_eval(args.episodes_per_task, concurrency)
        print(f"eval concurrency={concurrency}", json.dumps({k: round(v, 3) for k, v in result.items()}))


if __name__ == "__main__":
    main()
