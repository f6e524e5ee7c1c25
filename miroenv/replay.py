"""Replay recorded trajectories through the env and report every observation that comes back different.

Each trajectory is re-run with the profile, call format, config, task, seed and reward its header names (an
imported log's recorded profile is registered from the header), against the snapshot given. The reset prompt
(step 0) and every step's observation are compared byte for byte with the recorded ones; steps whose
observation the log does not hold are skipped. The final answer and reward are compared with the footer.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, computed_field

from miroenv.env import EnvConfig, ResearchEnv
from miroenv.rewards.base import get_reward
from miroenv.sandbox.base import SandboxBackend
from miroenv.tasks import Task
from miroenv.tools.recorded import RecordedProfileSpec, register_recorded_profile
from miroenv.trajectory import StepRecord, Trajectory, iter_trajectories
from miroenv.web.base import Web
from miroenv.web.snapshot import MANIFEST_FILE, Snapshot

MAX_DIFF_LINES = 16
MAX_DIFF_LINE_CHARS = 200
REWARD_TOLERANCE = 1e-9


class TrajectoryReplay(BaseModel):
    """The outcome of replaying one recorded episode."""

    file: str
    position: int = Field(description="1-based position of the episode in its file.")
    episode_id: str
    task_id: str
    profile: str
    steps: int = Field(description="Recorded steps.")
    replayed_steps: int
    compared: int = Field(description="Observations compared, the reset prompt included.")
    tool_observations: int = Field(description="Compared observations of steps that called tools.")
    identical_tool_observations: int
    differing_steps: list[int] = Field(default_factory=list, description="0 is the reset prompt.")
    first_difference: str | None = Field(default=None, description="A short unified diff.")
    answer: str | None = None
    replayed_answer: str | None = None
    answer_match: bool | None = Field(default=None, description="None when the log records no answer.")
    reward: float | None = None
    replayed_reward: float | None = None
    reward_match: bool | None = None
    notes: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identical(self) -> bool:
        """True when no observation, answer or reward differs."""
        return not self.differing_steps and self.answer_match is not False and self.reward_match is not False


class ReplayReport(BaseModel):
    """Replays of every trajectory given, with totals."""

    snapshot: str
    trajectories: list[TrajectoryReplay] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def identical(self) -> bool:
        """True when every trajectory replayed identically."""
        return all(t.identical for t in self.trajectories)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> dict[str, int]:
        """Counts over all trajectories."""
        return {
            "trajectories": len(self.trajectories),
            "identical_trajectories": sum(t.identical for t in self.trajectories),
            "steps": sum(t.steps for t in self.trajectories),
            "differing_steps": sum(len(t.differing_steps) for t in self.trajectories),
            "tool_observations": sum(t.tool_observations for t in self.trajectories),
            "identical_tool_observations": sum(t.identical_tool_observations for t in self.trajectories),
            "answer_mismatches": sum(t.answer_match is False for t in self.trajectories),
            "reward_mismatches": sum(t.reward_match is False for t in self.trajectories),
        }


def _clip(line: str) -> str:
    """A diff line without its newline, cut to a readable width."""
    line = line.rstrip("\n")
    return line[:MAX_DIFF_LINE_CHARS] + ("…" if len(line) > MAX_DIFF_LINE_CHARS else "")


def short_diff(recorded: str, replayed: str, label: str) -> str:
    """The first hunk of a unified diff of two observations, with at most a few removed and added lines."""
    lines = list(
        difflib.unified_diff(
            recorded.splitlines(keepends=True),
            replayed.splitlines(keepends=True),
            fromfile=f"recorded {label}",
            tofile=f"replayed {label}",
            n=2,
        )
    )
    hunk = lines[2:]
    if recorded.splitlines() == replayed.splitlines() or not any(line[:1] in "+-" for line in hunk):
        at = next(
            (i for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)) if a != b),
            min(len(recorded), len(replayed)),
        )
        return (
            f"--- recorded {label}\n+++ replayed {label}\n"
            f"first difference at character {at}: {recorded[at : at + 40]!r} != {replayed[at : at + 40]!r}\n"
        )
    shown = [_clip(lines[0]), _clip(lines[1])]
    kept = {"-": 0, "+": 0}
    dropped = {"-": 0, "+": 0}
    for number, line in enumerate(hunk):
        if number and line.startswith("@@"):
            shown.append("[... further hunks omitted ...]")
            break
        sign = line[:1]
        if sign in kept:
            if kept[sign] >= MAX_DIFF_LINES // 2:
                dropped[sign] += 1
                continue
            if sign == "+" and dropped["-"]:
                shown.append(f"[... {dropped['-']} more removed lines ...]")
                dropped["-"] = 0
            kept[sign] += 1
        shown.append(_clip(line))
    for sign, word in (("-", "removed"), ("+", "added")):
        if dropped[sign]:
            shown.append(f"[... {dropped[sign]} more {word} lines ...]")
    return "\n".join(shown) + "\n"


def _step_recorded(step: StepRecord) -> bool:
    """False for a step whose observation the imported log does not hold."""
    return (step.model_extra or {}).get("observation_recorded", True) is not False


def _calls_tools(step: StepRecord) -> bool:
    """True when the step ran at least one tool (a format problem alone does not count)."""
    return any(isinstance(call, dict) and call.get("tool") for call in step.calls)


def _build_env(
    trajectory: Trajectory, web: Web, sandbox: SandboxBackend | None, notes: list[str]
) -> ResearchEnv:
    """An env set up as the trajectory header says (registering an imported log's recorded profile)."""
    env_info = trajectory.header.env
    spec = env_info.get("recorded_profile")
    if isinstance(spec, dict):
        register_recorded_profile(RecordedProfileSpec.model_validate(spec))
    config = EnvConfig.model_validate(env_info.get("config", {}))
    reward_name = env_info.get("reward", "gaia")
    try:
        reward = get_reward(str(reward_name))
    except ValueError:
        notes.append(f"reward {reward_name!r} is not a named reward; rewards are not compared")
        reward = get_reward("gaia")
    task = Task.model_validate(env_info["task"])
    return ResearchEnv(web, [task], reward=reward, config=config, sandbox=sandbox)


def replay_trajectory(
    trajectory: Trajectory,
    web: Web,
    *,
    file: str = "",
    position: int = 1,
    sandbox: SandboxBackend | None = None,
) -> TrajectoryReplay:
    """Re-run one trajectory's actions through the env on `web` and compare what comes back."""
    notes: list[str] = []
    header = trajectory.header
    env = _build_env(trajectory, web, sandbox, notes)
    reward_compared = not notes
    task = env.tasks[0]
    recorded_hash = (header.env.get("snapshot") or {}).get("content_hash")
    if recorded_hash and recorded_hash != web.content_hash:
        notes.append("the snapshot's content hash differs from the one the trajectory was recorded against")
    differing: list[int] = []
    first_diff: str | None = None
    compared = tools = identical_tools = replayed = 0
    answer: str | None = None
    reward: float | None = None
    finished = False

    def compare(index: int, recorded: str, got: str) -> bool:
        """Note a differing observation (and the first diff); True when identical."""
        nonlocal first_diff
        if recorded == got:
            return True
        differing.append(index)
        if first_diff is None:
            first_diff = short_diff(recorded, got, "reset prompt" if index == 0 else f"step {index}")
        return False

    try:
        observation, _ = env.reset(seed=header.env.get("seed"), options={"task": task})
        compared += 1
        compare(0, header.observation, observation)
        for step in trajectory.steps:
            if finished:
                differing.append(step.index)
                if first_diff is None:
                    first_diff = (
                        f"step {step.index}: the replayed episode had already ended at step {replayed}\n"
                    )
                continue
            observation, step_reward, terminated, truncated, info = env.step(step.action)
            replayed += 1
            if _step_recorded(step):
                compared += 1
                same = compare(step.index, step.observation, observation)
                if _calls_tools(step):
                    tools += 1
                    identical_tools += same
            if terminated or truncated:
                finished = True
                answer = info.get("answer")
                reward = float(step_reward)
    finally:
        env.close()

    footer = trajectory.footer
    answer_match: bool | None = None
    reward_match: bool | None = None
    if footer is None:
        notes.append("the trajectory has no footer: the answer and reward are not compared")
    else:
        if not finished:
            notes.append("the replayed episode did not end with the recorded actions")
        answer_match = finished and footer.answer == answer
        if reward_compared:
            reward_match = finished and reward is not None and abs(footer.reward - reward) <= REWARD_TOLERANCE
    return TrajectoryReplay(
        file=file,
        position=position,
        episode_id=header.episode_id,
        task_id=task.task_id,
        profile=env.profile.name,
        steps=len(trajectory.steps),
        replayed_steps=replayed,
        compared=compared,
        tool_observations=tools,
        identical_tool_observations=identical_tools,
        differing_steps=differing,
        first_difference=first_diff,
        answer=footer.answer if footer is not None else None,
        replayed_answer=answer,
        answer_match=answer_match,
        reward=footer.reward if footer is not None else None,
        replayed_reward=reward,
        reward_match=reward_match,
        notes=notes,
    )


def resolve_snapshot(path: str | Path) -> Path:
    """A snapshot directory, or the `snapshot/` inside an import's output directory."""
    path = Path(path)
    if not (path / MANIFEST_FILE).is_file() and (path / "snapshot" / MANIFEST_FILE).is_file():
        return path / "snapshot"
    return path


def replay_trajectories(
    trajectories: Iterable[tuple[str, int, Trajectory]],
    web: Web,
    *,
    sandbox: SandboxBackend | None = None,
    snapshot_label: str = "",
) -> ReplayReport:
    """Replay (file, position, trajectory) triples against one web."""
    report = ReplayReport(snapshot=snapshot_label or web.name)
    for file, position, trajectory in trajectories:
        report.trajectories.append(
            replay_trajectory(trajectory, web, file=file, position=position, sandbox=sandbox)
        )
    return report


def replay_files(
    paths: Sequence[str | Path], snapshot: str | Path, *, sandbox: SandboxBackend | None = None
) -> ReplayReport:
    """Replay every episode of the given trajectory files against the snapshot at `snapshot`."""
    directory = resolve_snapshot(snapshot)
    web = Snapshot(directory)
    try:
        triples = (
            (str(path), position, trajectory)
            for path in paths
            for position, trajectory in enumerate(iter_trajectories(path), start=1)
        )
        return replay_trajectories(triples, web, sandbox=sandbox, snapshot_label=str(directory))
    finally:
        web.close()


def report_json(report: ReplayReport) -> str:
    """The report as indented JSON (stable: no timings)."""
    data: dict[str, Any] = report.model_dump(mode="json")
    return json.dumps(data, ensure_ascii=False, indent=2)
