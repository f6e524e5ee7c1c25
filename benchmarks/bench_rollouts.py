"""Rollout throughput: replayed search/scrape steps per second with 1, 8, 32 and 128 concurrent episodes,
through the asyncio API (`AsyncResearchEnv` + `run_episodes`) and through `ConcurrentVectorEnv`, with a plain
serial loop as the baseline; env memory per live episode; optionally a published peer (SkyRL-gym's
`SearchEnv`) on a comparable local, replay-free search workload, as a ratio.

Workload (ours): MiroThinker-profile episodes on the demo snapshot, each `--calls` tool-call steps alternating
`google_search` (a fresh query every time, so the full-text index answers it) and `scrape_and_extract_info`
(a snapshot page read plus the deterministic passage extractor), then a final reply and the summary turn.
All envs share one opened snapshot (it is thread-safe). Every `step()` counts as a step.

Peer (optional, `--peer-python` of a virtualenv with `skyrl-gym` installed): SkyRL-gym's `SearchEnv`, driven
the way its trainer does (one thread per concurrent episode), each step a `<search>` call answered over HTTP
by a local retriever process (stdlib `http.server`) that returns three demo pages: a local search round trip
without any ranking work, so the peer's figure is its env + tool overhead only.

Run: `python benchmarks/bench_rollouts.py [--peer-python /tmp/peer-venv/bin/python] [--json out.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CONCURRENCY = (1, 8, 32, 128)
PEER_TIME_CAP_S = 60.0
THINK = "<think>\nThe last result did not settle it; look further.\n</think>\n\n"


# ---------------------------------------------------------------------------------------------- ours


def make_actions(calls: int) -> list[str]:
    """`calls` tool-call messages (searches with fresh queries and page extractions), then the answer."""
    from miroenv.demo import PAGES
    from miroenv.protocol.calls import ToolCall
    from miroenv.protocol.mcp_xml import McpXmlFormat

    fmt = McpXmlFormat()
    urls = list(PAGES)
    actions = []
    for i in range(calls):
        if i % 2 == 0:
            call = ToolCall(
                server="search_and_scrape_webpage",
                name="google_search",
                arguments={"q": f"history of computing engine programmer {i}"},
            )
        else:
            call = ToolCall(
                server="jina_scrape_llm_summary",
                name="scrape_and_extract_info",
                arguments={"url": urls[i % len(urls)], "info_to_extract": f"dates and names {i}"},
            )
        actions.append(THINK + str(fmt.render_call(call)))
    return [*actions, "I have enough to answer.", "\\boxed{155}"]


def rss_mb() -> float:
    """This process's resident set size, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def episodes_for(n: int, target: int) -> int:
    return max(n, math.ceil(target / n) * n)


def bench_serial(snapshot: Path, actions: list[str], episodes: int) -> dict[str, float]:
    from miroenv import ResearchEnv
    from miroenv.web.snapshot import Snapshot

    web = Snapshot(snapshot)
    env = ResearchEnv(web, max_tool_calls=len(actions))
    steps = 0
    start = time.perf_counter()
    for e in range(episodes):
        env.reset(seed=e)
        for action in actions:
            steps += 1
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    elapsed = time.perf_counter() - start
    env.close()
    web.close()
    return {"episodes": episodes, "steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}


def bench_async(
    snapshot: Path, actions: list[str], n: int, episodes: int, inline: bool = False
) -> dict[str, float]:
    from miroenv import ResearchEnv, ScriptedPolicy
    from miroenv.aio import AsyncResearchEnv, run_episodes
    from miroenv.web.snapshot import Snapshot

    web = Snapshot(snapshot)

    async def main() -> tuple[int, float]:
        envs = [
            AsyncResearchEnv(ResearchEnv(web, max_tool_calls=len(actions)), inline=inline) for _ in range(n)
        ]
        start = time.perf_counter()
        runs = await run_episodes(
            envs,
            lambda env, task_id: ScriptedPolicy(actions),
            [None] * episodes,
            seeds=list(range(episodes)),
            concurrency=n,
        )
        elapsed = time.perf_counter() - start
        assert all(r.result.terminated for r in runs)
        await asyncio.gather(*(e.aclose() for e in envs))
        return sum(r.result.steps for r in runs), elapsed

    steps, elapsed = asyncio.run(main())
    web.close()
    return {"episodes": episodes, "steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}


def bench_vector(snapshot: Path, actions: list[str], n: int, episodes: int) -> dict[str, float]:
    from miroenv.vector import ConcurrentVectorEnv

    vec = ConcurrentVectorEnv.from_snapshot(
        n, snapshot, autoreset_mode="Disabled", max_tool_calls=len(actions)
    )
    steps = 0
    start = time.perf_counter()
    for r in range(episodes // n):
        vec.reset(seed=r * n)
        for action in actions:
            _, _, terminated, truncated, _ = vec.step((action,) * n)
            steps += n
            if (terminated | truncated).all():
                break
        assert terminated.all()
    elapsed = time.perf_counter() - start
    vec.close()
    return {
        "episodes": episodes,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "threads": vec.max_workers,
    }


def memory_worker(snapshot: Path, n: int, shared: bool, calls: int) -> dict[str, float]:
    """RSS growth per live episode: `n` envs, each reset and `calls` tool calls into its episode."""
    import gc

    from miroenv import ResearchEnv
    from miroenv.web.snapshot import Snapshot

    actions = make_actions(calls)[:calls]
    web = Snapshot(snapshot)
    warm = ResearchEnv(web)  # imports, index and page store mapped, one episode run: the fixed cost
    warm.reset(seed=0)
    for action in actions:
        warm.step(action)
    gc.collect()
    before = rss_mb()
    envs = [ResearchEnv(web if shared else snapshot) for _ in range(n)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
        for action in actions:
            env.step(action)
    gc.collect()
    after = rss_mb()
    tokens = envs[0].messages()
    return {
        "envs": n,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "mb_per_episode": (after - before) / n,
        "messages_per_episode": len(tokens),
    }


def run_memory(snapshot: Path, n: int, shared: bool, calls: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-worker",
            str(snapshot),
            str(n),
            "shared" if shared else "own",
            str(calls),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


# ---------------------------------------------------------------------------------------------- peer


def retriever_server(pages_json: str, port_file: str) -> None:
    """A local Search-R1-style retrieval server (stdlib only): three demo pages per query, no ranking."""
    import http.server
    import zlib

    pages = json.loads(Path(pages_json).read_text())

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body in two sends hit the 40 ms delayed ACK

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            start = zlib.crc32(body["query"].encode()) % len(pages)
            docs = [
                {"document": {"contents": pages[(start + k) % len(pages)]}, "score": 1.0 / (k + 1)}
                for k in range(int(body.get("topk", 3)))
            ]
            data = json.dumps({"result": [docs]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def peer_worker(url: str, calls: int, concurrency: list[int], target: int) -> None:
    """SkyRL-gym `SearchEnv` episodes of `calls` search steps, `n` at once on `n` threads."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from skyrl_gym.envs.search.env import SearchEnv, SearchEnvConfig

    logging.disable(logging.CRITICAL)
    config = SearchEnvConfig(search_url=url, topk=3, log_requests=False)

    def episode(i: int) -> int:
        env = SearchEnv(
            config, extras={"reward_spec": {"ground_truth": {"target": "155"}}, "max_turns": calls + 1}
        )
        env.init([{"role": "user", "content": "How many years after Babbage's birth was ENIAC dedicated?"}])
        steps = 0
        for k in range(calls):
            out = env.step(
                f"<think>look further</think><search>history of computing engine programmer {i} {k}</search>"
            )
            steps += 1
            assert out["observations"] and "Doc 1" in out["observations"][0]["content"], out
        out = env.step("<answer>155</answer>")
        steps += 1
        assert out["done"]
        env.close()
        return steps

    from importlib.metadata import version

    episode(0)
    print(json.dumps({"version": version("skyrl-gym")}), flush=True)
    for n in concurrency:
        episodes = episodes_for(n, max(1, target // (calls + 1)))
        with ThreadPoolExecutor(max_workers=n) as pool:
            start = time.perf_counter()
            steps = sum(pool.map(episode, range(episodes)))
            elapsed = time.perf_counter() - start
        row = {"episodes": episodes, "steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed}
        print(json.dumps({str(n): row}), flush=True)


def run_peer(peer_python: str, calls: int, target: int, tmp: Path) -> dict[str, Any]:
    from miroenv.demo import PAGES

    pages_json = tmp / "pages.json"
    pages_json.write_text(json.dumps([f"{title}\n{text[:1500]}" for title, text in PAGES.values()]))
    port_file = tmp / "port"
    server = subprocess.Popen([peer_python, __file__, "--retriever", str(pages_json), str(port_file)])
    try:
        deadline = time.time() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.time() > deadline:
                raise RuntimeError("the retriever did not start")
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/retrieve"
        worker = subprocess.Popen(
            [
                peer_python,
                __file__,
                "--peer-worker",
                url,
                str(calls),
                ",".join(map(str, CONCURRENCY)),
                str(target),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        result: dict[str, Any] = {"time_cap_s": PEER_TIME_CAP_S}
        timer = threading.Timer(PEER_TIME_CAP_S, worker.kill)
        timer.start()
        assert worker.stdout is not None
        for line in worker.stdout:
            result.update(json.loads(line))
        worker.wait()
        timer.cancel()
        for n in CONCURRENCY:
            result.setdefault(
                str(n), {"steps_per_s": None, "note": f"not finished within {PEER_TIME_CAP_S} s"}
            )
        return result
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-worker":
        snapshot, n, mode, calls = sys.argv[2:6]
        print(json.dumps(memory_worker(Path(snapshot), int(n), mode == "shared", int(calls))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--retriever":
        retriever_server(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--peer-worker":
        url, calls, conc, target = sys.argv[2:6]
        peer_worker(url, int(calls), [int(c) for c in conc.split(",")], int(target))
        return

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="tool-call steps per episode")
    parser.add_argument("--steps", type=int, default=4000, help="about this many steps per measurement")
    parser.add_argument("--memory-envs", type=int, default=128)
    parser.add_argument("--peer-python", help="python of a virtualenv with skyrl-gym installed")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    from miroenv import __version__
    from miroenv.aio import DEFAULT_MAX_WORKERS
    from miroenv.demo import build_demo

    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "miroenv": __version__,
            "calls_per_episode": args.calls,
            "aio_threads": DEFAULT_MAX_WORKERS,
            "load_average_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        snapshot = build_demo(tmp / "demo")
        actions = make_actions(args.calls)
        per_episode = len(actions)
        target_episodes = max(1, args.steps // per_episode)
        bench_serial(snapshot, actions, 2)  # warm-up
        results["serial"] = bench_serial(snapshot, actions, target_episodes)
        print(f"serial (one env, plain loop): {results['serial']['steps_per_s']:,.0f} steps/s", flush=True)

        def bench_inline(snapshot: Path, actions: list[str], n: int, episodes: int) -> dict[str, float]:
            return bench_async(snapshot, actions, n, episodes, inline=True)

        for label, fn in (("async", bench_async), ("async_inline", bench_inline), ("vector", bench_vector)):
            results[label] = {}
            for n in CONCURRENCY:
                row = fn(snapshot, actions, n, episodes_for(n, target_episodes))
                results[label][str(n)] = row
                print(f"{label:12s} {n:4d} episodes at once: {row['steps_per_s']:,.0f} steps/s", flush=True)
        results["memory"] = {
            "shared_snapshot": run_memory(snapshot, args.memory_envs, True, args.calls),
            "own_snapshot": run_memory(snapshot, min(args.memory_envs, 32), False, args.calls),
        }
        for label, row in results["memory"].items():
            print(f"memory ({label}): {row['mb_per_episode']:.2f} MB per live episode", flush=True)
        if args.peer_python:
            results["peer_skyrl_gym"] = run_peer(args.peer_python, args.calls, args.steps, tmp)
            for n in CONCURRENCY:
                rate = results["peer_skyrl_gym"][str(n)]["steps_per_s"]
                print(f"peer skyrl-gym {n:4d}: {'-' if rate is None else f'{rate:,.0f}'} steps/s", flush=True)
    results["meta"]["load_average_end"] = os.getloadavg()
    results["meta"]["runtime_s"] = time.perf_counter() - started
    print(f"runtime {results['meta']['runtime_s']:.0f} s, load {results['meta']['load_average_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
