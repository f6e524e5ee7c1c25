"""Re-scoring recorded trajectories under any reward, without re-running a single tool.

Each episode's `RewardContext` is rebuilt from its header (the task) and footer (answer, counters), so a
reward sees exactly what it saw at run time. LLM-judge verdicts are stored back into the trajectory file
(a `judge` field on each footer, keyed by verdict key) and reused on the next pass.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from miroenv.jsonl import encode_line, parse_jsonl, replace_file
from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext, get_reward
from miroenv.rewards.compose import WeightedSum
from miroenv.rewards.judge import JudgeReward, JudgeVerdict
from miroenv.tasks import Task
from miroenv.trajectory import Trajectory, read_trajectories

ERROR_KINDS: tuple[str, ...] = ("format", "tool", "infra")
JUDGE_FIELD = "judge"
"""The footer field holding an episode's judge verdicts, as `{key: verdict}`."""


class ScoreRow(BaseModel):
    """One episode re-scored: what it answered, the new reward and its parts, and what it cost."""

    path: str
    episode: int = Field(description="The episode's position in its file, from 0.")
    episode_id: str
    task_id: str
    question: str
    answer: str | None
    gold: str | None
    aliases: list[str] = Field(default_factory=list)
    reward: float
    components: dict[str, float]
    details: dict[str, Any] = Field(default_factory=dict)
    stored_reward: float | None = Field(description="The reward the footer recorded at run time.")
    stored_reward_name: str | None = Field(description="The reward the episode ran under (header).")
    reproduced: bool | None = Field(
        description="Whether the new reward equals the stored one; None when they are different rewards."
    )
    complete: bool
    terminated: bool
    truncated: bool
    truncated_by: str | None = None
    steps: int
    tool_calls: int
    errors: dict[str, int]


class ScoreSummary(BaseModel):
    """Totals across every scored episode."""

    reward: str
    episodes: int
    complete: int
    success_threshold: float
    accuracy: float = Field(description="Share of episodes whose reward reaches `success_threshold`.")
    mean_reward: float
    mean_tool_calls: float
    errors: dict[str, int]
    compared: int = Field(description="Episodes that ran under the same reward (stored reward comparable).")
    reproduced: int = Field(description="Of those, how many got exactly the stored reward back.")
    judge_requests: int = Field(default=0, description="HTTP requests made to judge endpoints.")


class ScoreReport(BaseModel):
    """Per-episode rows plus a summary; `written` lists files that received new judge verdicts."""

    reward: str
    rows: list[ScoreRow]
    summary: ScoreSummary
    written: list[str] = Field(default_factory=list)


def episode_task(trajectory: Trajectory) -> Task:
    """The task recorded in the trajectory's header."""
    task = trajectory.header.env.get("task")
    if not isinstance(task, dict):
        raise ValueError(f"episode {trajectory.header.episode_id!r} has no task in its header")
    return Task.model_validate(task)


def episode_errors(trajectory: Trajectory) -> dict[str, int]:
    """Errors by kind: the footer's counts, or the step records' calls for an episode cut off early."""
    if trajectory.footer is not None:
        counts = Counter(trajectory.footer.errors)
    else:
        counts = Counter(
            call["error_kind"]
            for step in trajectory.steps
            for call in step.calls
            if isinstance(call, dict) and call.get("error_kind")
        )
    return {kind: counts.get(kind, 0) for kind in ERROR_KINDS} | {
        kind: n for kind, n in counts.items() if kind not in ERROR_KINDS
    }


def episode_tool_calls(trajectory: Trajectory) -> int:
    """Tool calls made: the footer's count, or the last step's budget for an episode cut off early."""
    if trajectory.footer is not None:
        return trajectory.footer.tool_calls
    for step in reversed(trajectory.steps):
        used = step.budget.get("tool_calls")
        if isinstance(used, int):
            return used
    return sum(1 for step in trajectory.steps for call in step.calls if call.get("error_kind") != "format")


def reward_context(trajectory: Trajectory) -> RewardContext:
    """The context the reward saw at run time (an episode without footer counts as truncated, no answer)."""
    footer = trajectory.footer
    errors = episode_errors(trajectory)
    return RewardContext(
        answer=footer.answer if footer is not None else None,
        task=episode_task(trajectory),
        tool_calls=episode_tool_calls(trajectory),
        format_errors=errors["format"],
        tool_errors=errors["tool"],
        infra_errors=errors["infra"],
        turns=footer.steps if footer is not None else len(trajectory.steps),
        terminated=footer.terminated if footer is not None else False,
        truncated=footer.truncated if footer is not None else True,
    )


def stored_verdicts(trajectory: Trajectory) -> list[JudgeVerdict]:
    """The judge verdicts recorded in the episode's footer (none when it has no footer or no verdicts)."""
    if trajectory.footer is None:
        return []
    stored = (trajectory.footer.model_extra or {}).get(JUDGE_FIELD)
    if not isinstance(stored, dict):
        return []
    return [JudgeVerdict.model_validate(value) for value in stored.values() if isinstance(value, dict)]


def judges_in(reward: Reward) -> list[JudgeReward]:
    """The LLM judges inside a reward (itself, or parts of a `WeightedSum`, recursively)."""
    if isinstance(reward, JudgeReward):
        return [reward]
    if isinstance(reward, WeightedSum):
        return [judge for part, _ in reward.parts for judge in judges_in(part)]
    return []


def resolve_reward(reward: str | Reward) -> Reward:
    """A reward by name (`gaia`, `f1`, `em`, `contains`, or `judge` configured from the environment)."""
    if not isinstance(reward, str):
        return reward
    if reward == "judge":
        return JudgeReward()
    return get_reward(reward)


def score_trajectories(
    paths: Iterable[str | Path],
    reward: str | Reward,
    *,
    write_back: bool = True,
    success_threshold: float = 1.0,
    workers: int = 1,
) -> ScoreReport:
    """Re-score every episode of the trajectory files under `reward`, reusing and storing judge verdicts."""
    scorer = resolve_reward(reward)
    judges = judges_in(scorer)
    requests_before = sum(judge.requests for judge in judges)
    rows: list[ScoreRow] = []
    written: list[str] = []
    for path in paths:
        file_rows, changed = _score_file(Path(path), scorer, judges, write_back=write_back, workers=workers)
        rows.extend(file_rows)
        if changed:
            written.append(str(path))
    name = getattr(scorer, "name", type(scorer).__name__)
    summary = summarize(rows, name, success_threshold=success_threshold)
    summary.judge_requests = sum(judge.requests for judge in judges) - requests_before
    return ScoreReport(reward=name, rows=rows, summary=summary, written=written)


def summarize(rows: Sequence[ScoreRow], reward: str, *, success_threshold: float = 1.0) -> ScoreSummary:
    """Accuracy, mean reward, mean tool calls, errors by kind and the reproduction count over `rows`."""
    count = len(rows)
    errors: Counter[str] = Counter({kind: 0 for kind in ERROR_KINDS})
    for row in rows:
        errors.update(row.errors)
    compared = [row for row in rows if row.reproduced is not None]
    return ScoreSummary(
        reward=reward,
        episodes=count,
        complete=sum(row.complete for row in rows),
        success_threshold=success_threshold,
        accuracy=sum(row.reward >= success_threshold - 1e-9 for row in rows) / count if count else 0.0,
        mean_reward=sum(row.reward for row in rows) / count if count else 0.0,
        mean_tool_calls=sum(row.tool_calls for row in rows) / count if count else 0.0,
        errors=dict(errors),
        compared=len(compared),
        reproduced=sum(bool(row.reproduced) for row in compared),
    )


def _score_file(
    path: Path, scorer: Reward, judges: list[JudgeReward], *, write_back: bool, workers: int
) -> tuple[list[ScoreRow], bool]:
    original = path.read_bytes()
    episodes = read_trajectories(path)
    contexts = [reward_context(trajectory) for trajectory in episodes]
    for trajectory in episodes:
        for judge in judges:
            judge.remember(stored_verdicts(trajectory))
    try:
        if workers > 1 and judges:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                breakdowns = list(pool.map(scorer, contexts))
        else:
            breakdowns = [scorer(ctx) for ctx in contexts]
    finally:
        changed = write_back and _store_verdicts(path, original, episodes, contexts, judges)
    name = getattr(scorer, "name", type(scorer).__name__)
    rows = [
        _row(path, index, trajectory, ctx, breakdown, name)
        for index, (trajectory, ctx, breakdown) in enumerate(zip(episodes, contexts, breakdowns, strict=True))
    ]
    return rows, changed


def _row(
    path: Path, index: int, trajectory: Trajectory, ctx: RewardContext, breakdown: RewardBreakdown, name: str
) -> ScoreRow:
    footer = trajectory.footer
    stored_name = trajectory.header.env.get("reward")
    stored = footer.reward if footer is not None else None
    reproduced = (
        math.isclose(stored, breakdown.total, rel_tol=0.0, abs_tol=1e-9)
        if stored is not None and stored_name == name
        else None
    )
    return ScoreRow(
        path=str(path),
        episode=index,
        episode_id=trajectory.header.episode_id,
        task_id=ctx.task.task_id,
        question=ctx.task.question,
        answer=ctx.answer,
        gold=ctx.task.answer,
        aliases=list(ctx.task.aliases),
        reward=breakdown.total,
        components=dict(breakdown.components),
        details=dict(breakdown.details),
        stored_reward=stored,
        stored_reward_name=stored_name if isinstance(stored_name, str) else None,
        reproduced=reproduced,
        complete=trajectory.complete,
        terminated=ctx.terminated,
        truncated=ctx.truncated,
        truncated_by=footer.truncated_by if footer is not None else None,
        steps=len(trajectory.steps),
        tool_calls=ctx.tool_calls,
        errors=episode_errors(trajectory),
    )


def _store_verdicts(
    path: Path,
    original: bytes,
    episodes: list[Trajectory],
    contexts: list[RewardContext],
    judges: list[JudgeReward],
) -> bool:
    """Add every verdict used for an episode to its footer's `judge` field; True when the file changed."""
    updates: dict[int, dict[str, Any]] = {}
    for index, (trajectory, ctx) in enumerate(zip(episodes, contexts, strict=True)):
        if trajectory.footer is None:
            continue
        known = {verdict.key for verdict in stored_verdicts(trajectory)}
        new: dict[str, Any] = {}
        for judge in judges:
            key = judge.key_for(ctx)
            verdict = judge.verdicts.get(key) if key is not None else None
            if verdict is not None and key not in known:
                new[verdict.key] = verdict.model_dump(mode="json")
        if new:
            updates[index] = new
    if not updates:
        return False
    write_verdicts(path, updates, expected=original)
    return True


def write_verdicts(
    path: str | Path, updates: dict[int, dict[str, Any]], *, expected: bytes | None = None
) -> None:
    """Merge `{episode index: {key: verdict}}` into those episodes' footers, rewriting the file atomically.

    Every other line is kept byte for byte. With `expected`, the file must still hold exactly those bytes
    (so verdicts never clobber lines a running recorder appended meanwhile).
    """
    path = Path(path)
    data = path.read_bytes()
    if expected is not None and data != expected:
        raise RuntimeError(f"{path} changed while it was being scored; verdicts not written (score it again)")
    lines = data.split(b"\n")
    episode = -1
    for lineno, record in parse_jsonl(data, path, objects=True):
        if record.get("type") == "header":
            episode += 1
        elif record.get("type") == "footer" and episode in updates:
            stored = record.get(JUDGE_FIELD)
            record[JUDGE_FIELD] = {**(stored if isinstance(stored, dict) else {}), **updates[episode]}
            lines[lineno - 1] = encode_line(record).rstrip(b"\n")
    replace_file(path, b"\n".join(lines))
