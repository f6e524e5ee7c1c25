"""Fuzzed actions through `ResearchEnv.step`: text from every code point and real malformations, 0 exceptions.

A pool of actions is drawn with hypothesis from `miroenv.testing.strategies`: `any_text` (every code point,
lone surrogates and C0/C1 controls drawn often) and `malformed_actions` (real-looking calls, seeded from the
MiroRL rollouts in ../shared/data when present, damaged the way models damage them: duplicated names,
concatenated JSON, raw controls, unescaped quotes, JSON escapes of lone surrogates and NUL, truncation,
unclosed tags, code fences, nesting, huge values). Hypothesis draws ~100 actions/s here, so the rest of the
`--count` actions are mutants of pool entries made by a seeded `random.Random` (code points inserted from the
whole range with surrogates and controls weighted up, `\\uXXXX` escapes of any code unit, slices deleted,
duplicated or spliced from another entry). The three formats (mcp_xml, hermes, openai) take turns.

After every bad action that leaves the episode in its act phase, a normal `google_search` call must succeed:
an episode the bad action broke counts as poisoned. Exceptions out of `step()` and poisoned episodes must both
be 0 (the exit status is 1 otherwise).

Run: `python benchmarks/fuzz_actions.py [--count 100000] [--pool 1500] [--readme]` (`--json` prints the result
as JSON; `--readme` writes it into this folder's README.md section).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import parse_mcp_xml
from miroenv.protocol.registry import FORMATS
from miroenv.testing.actions import tool_call
from miroenv.testing.strategies import REAL_SEED_CALLS, any_text, malformed_actions

SNAPSHOT = Path("snapshots/demo")
ROLLOUTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirorl_rollouts" / "testData.jsonl"
README = Path(__file__).with_name("README.md")
SECTION = "## Fuzzed actions: every code point and real malformations through `step()` (`fuzz_actions.py`)"
RESET_EVERY = 20


def real_seed_calls(limit: int = 64) -> list[ToolCall]:
    """Calls from the real MiroRL rollouts (first `limit`), or the strategies' defaults without the data."""
    if not ROLLOUTS.is_file():
        return list(REAL_SEED_CALLS)
    calls: list[ToolCall] = []
    for line in ROLLOUTS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            calls.extend(parse_mcp_xml(json.loads(line)["response_str"]).calls)
        if len(calls) >= limit:
            break
    return calls[:limit] + list(REAL_SEED_CALLS)


class Fuzz:
    """Counts what the fuzzed actions did to one env per format."""

    def __init__(self) -> None:
        self.envs = {name: ResearchEnv(SNAPSHOT, tool_format=name) for name in FORMATS}
        self.steps = {name: 0 for name in FORMATS}
        self.actions = 0
        self.exceptions = 0
        self.poisoned = 0
        self.first_failures: list[str] = []
        self.with_surrogates = 0
        self.with_nul = 0
        self.astral = 0
        self.code_points: set[int] = set()
        self.error_kinds: dict[str, int] = {}
        for env in self.envs.values():
            env.reset(seed=0)

    def note(self, action: str | dict[str, Any]) -> None:
        """Record which kinds of code points the action's text holds (dict actions: their JSON text)."""
        text = action if isinstance(action, str) else json.dumps(action, default=repr, ensure_ascii=False)
        points = {ord(c) for c in text}
        self.code_points |= points
        self.with_surrogates += (
            any(0xD800 <= p <= 0xDFFF for p in points) or "\\ud8" in text or "\\udc" in text
        )
        self.with_nul += 0 in points or "\\u0000" in text
        self.astral += any(p > 0xFFFF for p in points)

    def run(self, tool_format: str, action: str | dict[str, Any]) -> None:
        """One bad action, then (when the episode is still acting) a normal call that must work."""
        env = self.envs[tool_format]
        self.actions += 1
        self.note(action)
        if self.steps[tool_format] >= RESET_EVERY:
            env.reset(seed=0)
            self.steps[tool_format] = 0
        self.steps[tool_format] += 1
        try:
            _, _, terminated, truncated, info = env.step(action)
            for kind in info["error_kinds"]:
                self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            if terminated or truncated or info["phase"] != "act":
                env.reset(seed=0)
                self.steps[tool_format] = 0
                return
            follow = tool_call(
                "google_search", {"q": f"Ada Lovelace {self.actions}"}, tool_format=tool_format
            )
            _, _, _, _, info = env.step(follow)
            if [c["error_kind"] for c in info["calls"]] != [None]:
                self.poisoned += 1
                self._remember(f"poisoned by {action!r:.300}: {info['calls']!r:.300}")
        except Exception:
            self.exceptions += 1
            self._remember(f"{action!r:.300}\n{traceback.format_exc()}")
            env.reset(seed=0)
            self.steps[tool_format] = 0

    def _remember(self, failure: str) -> None:
        if len(self.first_failures) < 5:
            self.first_failures.append(failure)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def draw_pool(tool_format: str, seeds: list[ToolCall], count: int) -> list[str | dict[str, Any]]:
    """`count` hypothesis-drawn actions in `tool_format` (generation only, no shrinking)."""
    pool: list[str | dict[str, Any]] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(action=st.one_of(any_text, malformed_actions(tool_format, seeds)))
    def one(action: str | dict[str, Any]) -> None:
        pool.append(action)

    one()
    return pool


def code_point(rng: random.Random) -> str:
    """One code point from the whole range, lone surrogates, controls and the formats' syntax weighted up."""
    roll = rng.random()
    if roll < 0.25:
        return chr(rng.randint(0xD800, 0xDFFF))
    if roll < 0.45:
        return chr(rng.randint(0, 0x9F))
    if roll < 0.65:
        return rng.choice('<>/{}[]":,\\`\n ')
    return chr(rng.randint(0, 0x10FFFF))


def mutate_text(rng: random.Random, text: str, donors: list[str]) -> str:
    """`text` with one to three random edits (inserted code points or escapes, deletions, splices)."""
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(text))
        op = rng.randrange(5)
        if op == 0:
            text = text[:at] + "".join(code_point(rng) for _ in range(rng.randint(1, 8))) + text[at:]
        elif op == 1:
            text = text[:at] + f"\\u{rng.randint(0, 0xFFFF):04x}" + text[at:]
        elif op == 2:
            text = text[:at] + text[at + rng.randint(1, 40) :]
        elif op == 3 and donors:
            donor = rng.choice(donors)
            start = rng.randint(0, len(donor))
            text = text[:at] + donor[start : start + rng.randint(1, 200)] + text[at:]
        else:
            text = text[:at] + text[max(0, at - 60) : at] + text[at:]
    return text


def mutate(rng: random.Random, action: str | dict[str, Any], donors: list[str]) -> str | dict[str, Any]:
    """A mutant of a pool action: its text edited, or for a message dict its content and call arguments."""
    if isinstance(action, str):
        return mutate_text(rng, action, donors)
    message = dict(action)
    if isinstance(message.get("content"), str):
        message["content"] = mutate_text(rng, message["content"], donors)
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        edited: list[Any] = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                function = {**function, "arguments": mutate_text(rng, function["arguments"], donors)}
                call = {**call, "function": function}
            edited.append(call)
        message["tool_calls"] = edited
    return message


def fuzz(count: int, pool: int = 1500, seed: int = 0) -> dict[str, Any]:
    """Run `count` fuzzed actions (a hypothesis pool of `pool`, then mutants) and return the figures."""
    seeds = real_seed_calls()
    fuzzer = Fuzz()
    rng = random.Random(seed)
    started = time.perf_counter()
    pools = {name: draw_pool(name, seeds, max(1, min(pool, count) // len(FORMATS))) for name in FORMATS}
    drawn = time.perf_counter()
    donors = [action for entries in pools.values() for action in entries if isinstance(action, str)]
    try:
        for index in range(count):
            tool_format = FORMATS[index % len(FORMATS)]
            entries = pools[tool_format]
            if index // len(FORMATS) < len(entries):
                action = entries[index // len(FORMATS)]
            else:
                action = mutate(rng, rng.choice(entries), donors)
            fuzzer.run(tool_format, action)
    finally:
        fuzzer.close()
    elapsed = time.perf_counter() - drawn
    return {
        "actions": fuzzer.actions,
        "exceptions": fuzzer.exceptions,
        "poisoned_episodes": fuzzer.poisoned,
        "actions_per_s": round(fuzzer.actions / elapsed, 1),
        "seconds": round(elapsed, 1),
        "pool": sum(len(entries) for entries in pools.values()),
        "pool_seconds": round(drawn - started, 1),
        "with_lone_surrogates": fuzzer.with_surrogates,
        "with_nul": fuzzer.with_nul,
        "with_astral": fuzzer.astral,
        "distinct_code_points": len(fuzzer.code_points),
        "error_kinds": dict(sorted(fuzzer.error_kinds.items())),
        "seed_calls": len(seeds),
        "real_rollouts": ROLLOUTS.is_file(),
        "failures": fuzzer.first_failures,
    }


def markdown(result: dict[str, Any]) -> str:
    """The README section for `result`."""
    load = os.getloadavg()[0]
    kinds = ", ".join(f"{kind} {n}" for kind, n in result["error_kinds"].items())
    return f"""{SECTION}

`python benchmarks/fuzz_actions.py --count {result["actions"]} --readme` on a 2-core machine shared with other
jobs (load average {load:.1f} at the end). {result["pool"]:,} actions are drawn with hypothesis from `any_text`
(every code point, lone surrogates and controls drawn often) and `malformed_actions` seeded with
{result["seed_calls"]} calls (real MiroRL rollouts: {"yes" if result["real_rollouts"] else "no"}); the rest are
seeded random mutants of them (code points from the whole range, `\\uXXXX` escapes of any code unit,
deletions, splices). The three formats take turns; each bad action still in its act phase is followed by a
normal `google_search` that must succeed. Seconds and actions/s count the steps, not the drawing of the pool.

| actions | exceptions out of `step()` | poisoned episodes | actions/s | seconds |
|---:|---:|---:|---:|---:|
| {result["actions"]:,} | {result["exceptions"]} | {result["poisoned_episodes"]} | {result["actions_per_s"]:,} | {result["seconds"]} |

Drawn: {result["with_lone_surrogates"]:,} actions with lone surrogates (raw or as JSON escapes),
{result["with_nul"]:,} with NUL, {result["with_astral"]:,} with code points above U+FFFF,
{result["distinct_code_points"]:,} distinct code points in all. Error kinds reported: {kinds}.
"""


def write_readme(section: str) -> None:
    """Replace (or append) this benchmark's section of benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="fuzzed actions in all (default 100000)")
    parser.add_argument("--pool", type=int, default=1500, help="hypothesis-drawn actions (default 1500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default 0)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--readme", action="store_true", help="write the result into benchmarks/README.md")
    args = parser.parse_args()
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    result = fuzz(args.count, args.pool, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result))
        for failure in result["failures"]:
            print(failure, file=sys.stderr)
    if args.readme:
        write_readme(markdown(result))
    return 1 if result["exceptions"] or result["poisoned_episodes"] else 0


if __name__ == "__main__":
    sys.exit(main())
