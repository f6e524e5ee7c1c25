"""Trajectory logs: one JSONL file holds episodes as a header, a record per step and a footer.

Lines are written and flushed as the episode runs, so a killed process leaves every finished step readable;
the reader accepts a torn last line and an episode without footer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, SupportsFloat

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field

from miroenv.protocol.base import Action


class TrajectoryHeader(BaseModel):
    """Who, what and where: env config, snapshot id and hash, task, seed, package version, first prompt."""

    model_config = ConfigDict(extra="allow")

    type: Literal["header"] = "header"
    episode_id: str
    env: dict[str, Any]
    observation: str
    messages: list[dict[str, Any]] = Field(default_factory=list)


class StepRecord(BaseModel):
    """One `step()`: the action, what the env made of it, and what came back."""

    model_config = ConfigDict(extra="allow")

    type: Literal["step"] = "step"
    index: int
    action: str | dict[str, Any]
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    calls: list[dict[str, Any]] = Field(default_factory=list)
    error_kinds: list[str] = Field(default_factory=list)
    budget: dict[str, Any] = Field(default_factory=dict)
    duration_s: float = 0.0


OPTIONAL_STEP_INFO = ("faults",)
"""`info` keys recorded in a step only when a wrapper adds them (`faults` from `miroenv.testing.FaultInjection`)."""


def _optional_step_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The optional `info` entries this step has, so plain episodes' records stay as they were."""
    return {key: info[key] for key in OPTIONAL_STEP_INFO if key in info}


class TrajectoryFooter(BaseModel):
    """How the episode ended: answer, reward and its breakdown, budget use."""

    model_config = ConfigDict(extra="allow")

    type: Literal["footer"] = "footer"
    answer: str | None
    reward: float
    reward_components: dict[str, float] = Field(default_factory=dict)
    terminated: bool
    truncated: bool
    truncated_by: str | None = None
    steps: int
    tool_calls: int
    errors: dict[str, int] = Field(default_factory=dict)


class Trajectory(BaseModel):
    """A whole episode as read back from a log."""

    header: TrajectoryHeader
    steps: list[StepRecord] = Field(default_factory=list)
    footer: TrajectoryFooter | None = None

    @property
    def complete(self) -> bool:
        """True when the episode reached its footer (it was not cut off by a crash)."""
        return self.footer is not None

    def actions(self) -> list[str | dict[str, Any]]:
        """The policy's actions, in order (what a replay feeds back into the env)."""
        return [step.action for step in self.steps]


class TrajectoryWriter:
    """Appends records to a JSONL file, one flushed line each (optionally fsynced)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = self.path.open("a", encoding="utf-8")
        self._fsync = fsync

    def write(self, record: BaseModel) -> None:
        """Write one record as a single line and flush it."""
        self._handle.write(record.model_dump_json() + "\n")
        self._handle.flush()
        if self._fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


def iter_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Read every episode in a trajectory file; a torn final line (crash mid-write) is ignored."""
    current: Trajectory | None = None
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if lineno == len(lines) or (lineno == len(lines) - 1 and not lines[-1]):
                break
            raise ValueError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from exc
        kind = data.get("type")
        if kind == "header":
            if current is not None:
                yield current
            current = Trajectory(header=TrajectoryHeader.model_validate(data))
        elif current is None:
            raise ValueError(f"{path}:{lineno}: a {kind!r} record before any header")
        elif kind == "step":
            current.steps.append(StepRecord.model_validate(data))
        elif kind == "footer":
            current.footer = TrajectoryFooter.model_validate(data)
        else:
            raise ValueError(f"{path}:{lineno}: unknown record type {kind!r}")
    if current is not None:
        yield current


def read_trajectories(path: str | Path) -> list[Trajectory]:
    """All episodes of a trajectory file."""
    return list(iter_trajectories(path))


def _jsonable_action(action: Action) -> str | dict[str, Any]:
    if isinstance(action, str):
        return action
    if isinstance(action, Mapping):
        decoded: dict[str, Any] = json.loads(json.dumps(dict(action), default=str))
        return decoded
    return repr(action)


class RecordTrajectory(gym.Wrapper[str, Any, str, Any]):
    """A wrapper that logs every episode of a `ResearchEnv` to a JSONL trajectory file as it runs."""

    def __init__(self, env: gym.Env[str, Any], path: str | Path, *, fsync: bool = False) -> None:
        super().__init__(env)
        self.writer = TrajectoryWriter(path, fsync=fsync)
        self._index = 0
        self._footer_written = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        base = self.env.unwrapped
        self._index = 0
        self._footer_written = False
        self.writer.write(
            TrajectoryHeader(
                episode_id=info["episode_id"],
                env=base.episode_header(),  # type: ignore[attr-defined]
                observation=observation,
                messages=info.get("messages", []),
            )
        )
        return observation, info

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        start = time.perf_counter()
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._index += 1
        self.writer.write(
            StepRecord(
                index=self._index,
                action=_jsonable_action(action),
                observation=observation,
                reward=float(reward),
                terminated=terminated,
                truncated=truncated,
                calls=info.get("calls", []),
                error_kinds=info.get("error_kinds", []),
                budget=info.get("budget", {}),
                duration_s=time.perf_counter() - start,
                **_optional_step_fields(info),
            )
        )
        if (terminated or truncated) and not self._footer_written:
            self._footer_written = True
            self.writer.write(
                TrajectoryFooter(
                    answer=info.get("answer"),
                    reward=float(reward),
                    reward_components=info.get("reward_components", {}),
                    terminated=terminated,
                    truncated=truncated,
                    truncated_by=info.get("truncated_by"),
                    steps=self._index,
                    tool_calls=info["budget"]["tool_calls"],
                    errors=info.get("errors", {}),
                )
            )
        return observation, reward, terminated, truncated, info

    def close(self) -> None:
        self.writer.close()
        super().close()
