"""Env overhead of a 600-tool-call replayed episode on the demo snapshot (DESIGN.md §9: whole episode ≤ 1 s).

Every step is a MiroThinker-style message (a <think> block and one MCP XML call): searches (recorded and not),
page extractions and a few malformed calls, then a final reply and the summary turn. The whole `step()` time is
env overhead, since search and pages are replayed. Reported: per-step p50/p99 and the episode total, with and
without trajectory logging, over several repetitions.

Run: `python benchmarks/bench_episode.py [--calls 600] [--repeats 5]`
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from miroenv import RecordTrajectory, ResearchEnv
from miroenv.demo import PAGES, SEARCHES, build_demo
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat

THINK = "<think>\nI should look this up carefully; the previous result did not settle it yet.\n</think>\n\n"


def make_actions(calls: int) -> list[str]:
    """`calls` tool-call messages cycling through recorded searches, fresh searches, scrapes and bad calls."""
    fmt = McpXmlFormat()
    recorded = list(SEARCHES)
    urls = list(PAGES)
    actions: list[str] = []
    for i in range(calls):
        kind = i % 10
        if kind < 4:
            q = (
                recorded[i % len(recorded)]
                if i < len(recorded) * 4 and kind == 0
                else f"history of computing {i}"
            )
            call = ToolCall(server="search_and_scrape_webpage", name="google_search", arguments={"q": q})
        elif kind < 9:
            call = ToolCall(
                server="jina_scrape_llm_summary",
                name="scrape_and_extract_info",
                arguments={"url": urls[i % len(urls)], "info_to_extract": f"dates and names, question {i}"},
            )
        else:
            actions.append(
                THINK + "<use_mcp_tool>\n<server_name>search_and_scrape_webpage</server_name>\n"
                "<arguments>{'q': 'broken'</arguments>\n</use_mcp_tool>"
            )
            continue
        actions.append(THINK + str(fmt.render_call(call)))
    return [*actions, "I have enough to answer.", "\\boxed{155}"]


def run_once(snapshot: Path, actions: list[str], trajectory: Path | None) -> list[float]:
    env = ResearchEnv(
        snapshot, snapshot / "tasks.jsonl", max_tool_calls=len(actions), max_turns=len(actions) + 2
    )
    wrapped = RecordTrajectory(env, trajectory) if trajectory is not None else env
    wrapped.reset(seed=0, options={"task_id": "babbage-eniac-gap"})
    durations = []
    for action in actions:
        start = time.perf_counter()
        _, _, terminated, truncated, _ = wrapped.step(action)
        durations.append(time.perf_counter() - start)
        if terminated or truncated:
            break
    assert terminated, "the benchmark episode must end with the boxed answer"
    wrapped.close()
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = build_demo(Path(tmp) / "demo")
        actions = make_actions(args.calls)
        results = {}
        for label, log in (("no trajectory", False), ("with trajectory log", True)):
            totals, steps = [], []
            for r in range(args.repeats):
                path = Path(tmp) / f"traj-{r}.jsonl" if log else None
                durations = run_once(snapshot, actions, path)
                totals.append(sum(durations))
                steps.extend(durations)
            steps.sort()
            results[label] = {
                "episode_total_s_median": statistics.median(totals),
                "episode_total_s_max": max(totals),
                "step_p50_ms": steps[len(steps) // 2] * 1e3,
                "step_p99_ms": steps[int(len(steps) * 0.99)] * 1e3,
                "steps_per_episode": len(actions),
            }
    meta = {"python": sys.version.split()[0], "machine": platform.machine(), "repeats": args.repeats}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return
    print(f"600-call episode env overhead ({meta})")
    for label, row in results.items():
        print(
            f"  {label:22s} episode median {row['episode_total_s_median']:.3f} s (max {row['episode_total_s_max']:.3f} s)"
            f", step p50 {row['step_p50_ms']:.3f} ms, p99 {row['step_p99_ms']:.3f} ms, {row['steps_per_episode']} steps"
        )
    print(
        f"  target: whole episode <= 1 s -> {'met' if max(r['episode_total_s_max'] for r in results.values()) <= 1 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
