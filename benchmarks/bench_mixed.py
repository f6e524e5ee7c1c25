"""Mixed episodes (search, page reads and Python in Docker sandboxes) at 8 and 32 concurrent episodes.

Each episode: a search, `create_sandbox`, five `run_python_code` calls (state kept between them), a page
extraction, a final reply and the summary turn: 10 steps, 8 tool calls. Episodes run through the asyncio API
(`AsyncResearchEnv` on its thread pool, since sandbox round trips wait on I/O), all on one
`DockerSandboxBackend` whose warm pool is sized to the concurrency.

Run: `python benchmarks/bench_mixed.py [--episodes 64] [--concurrency 8 32]`
"""

from __future__ import annotations

import argparse
import asyncio
import time

from miroenv import ResearchEnv
from miroenv.aio import AsyncResearchEnv, run_episodes
from miroenv.policy import ScriptedPolicy
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox import DockerSandboxBackend
from miroenv.tools.python import sandbox_public_id

TASK = "birth-years-product"


def actions() -> list[str]:
    fmt = McpXmlFormat()
    sid = sandbox_public_id(TASK, 1)

    def call(server: str, tool: str, **arguments: object) -> str:
        return str(fmt.render_call(ToolCall(server=server, name=tool, arguments=arguments)))

    steps = [
        call("search_and_scrape_webpage", "google_search", q="birth years of Ada Lovelace and Alan Turing")
    ]
    steps.append(call("tool-python", "create_sandbox"))
    steps.append(
        call("tool-python", "run_python_code", sandbox_id=sid, code_block="ada, turing = 1815, 1912")
    )
    steps += [
        call(
            "tool-python",
            "run_python_code",
            sandbox_id=sid,
            code_block=f"sum(range({n} * 1000)) + ada * turing",
        )
        for n in range(4)
    ]
    steps.append(
        call(
            "jina_scrape_llm_summary",
            "scrape_and_extract_info",
            url="https://en.wikipedia.org/wiki/Alan_Turing",
            info_to_extract="birth date",
        )
    )
    return [*steps, "Done.", "\\boxed{3470280}"]


async def run(concurrency: int, episodes: int, backend: DockerSandboxBackend) -> tuple[float, int, float]:
    script = actions()
    envs = [AsyncResearchEnv(ResearchEnv("snapshots/demo", sandbox=backend)) for _ in range(concurrency)]
    start = time.perf_counter()
    runs = await run_episodes(
        [envs[i % concurrency] for i in range(episodes)],
        lambda env, task_id: ScriptedPolicy(script),
        [TASK] * episodes,
        seeds=list(range(episodes)),
        concurrency=concurrency,
    )
    elapsed = time.perf_counter() - start
    for env in envs:
        await env.aclose()
    solved = sum(r.result.reward == 1.0 for r in runs)
    steps = sum(r.result.steps for r in runs)
    return elapsed, solved, steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    args = parser.parse_args()
    print(f"{args.episodes} mixed episodes (10 steps, 6 sandbox calls each), Docker sandboxes, 2 cores")
    for concurrency in args.concurrency:
        backend = DockerSandboxBackend(pool_size=concurrency, max_containers=concurrency * 2)
        backend.wait_ready(timeout=300)
        elapsed, solved, steps_per_s = asyncio.run(run(concurrency, args.episodes, backend))
        backend.close()
        print(
            f"  concurrency {concurrency:3d}: {elapsed:6.2f} s, {args.episodes / elapsed:6.2f} episodes/s, "
            f"{steps_per_s:7.1f} steps/s, {solved}/{args.episodes} solved"
        )


if __name__ == "__main__":
    main()
