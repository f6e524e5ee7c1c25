"""Trajectory logs: one JSONL file holds episodes as a header, a record per step and a footer.

Lines are written and flushed as the episode runs (through `miroenv.jsonl`), so a killed process leaves every
finished step readable, and a rerun appending to the same file starts on a clean line; the reader drops a
torn last line and returns an episode without footer as incomplete.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from miroenv.jsonl import JsonlError, JsonlWriter, iter_jsonl
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


OPTIONAL_STEP_INFO = ("faults", "action_repairs")
"""`info` keys recorded in a step only when present: `faults` from `miroenv.testing.FaultInjection`, and
`action_repairs` when the env replaced lone surrogates in the action."""


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


class TrajectoryWriter(JsonlWriter):
    """Appends trajectory records to a JSONL file, one flushed line each (optionally fsynced), after cutting
    off a torn tail, so a rerun appending to a crashed run's file keeps every earlier episode readable."""


_RECORDS: dict[str, type[BaseModel]] = {
    "header": TrajectoryHeader,
    "step": StepRecord,
    "footer": TrajectoryFooter,
}


def _record(path: Path, lineno: int, data: dict[str, Any]) -> BaseModel:
    """The header, step or footer a line holds; `JsonlError` naming the line when it is none of them."""
    kind = data.get("type")
    model = _RECORDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise JsonlError(path, lineno, f"unknown record type {kind!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise JsonlError(path, lineno, f"not a trajectory {kind} ({where}: {first['msg']})") from exc


def iter_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Read every episode in a trajectory file; a torn final line (crash mid-write) is ignored.

    A bad line elsewhere raises `miroenv.jsonl.JsonlError` naming the file and line."""
    path = Path(path)
    current: Trajectory | None = None
    for lineno, data in iter_jsonl(path, objects=True):
        record = _record(path, lineno, data)
        if isinstance(record, TrajectoryHeader):
            if current is not None:
                yield current
            current = Trajectory(header=record)
        elif current is None:
            raise JsonlError(path, lineno, f"a {data['type']!r} record before any header")
        elif isinstance(record, StepRecord):
            current.steps.append(record)
        elif isinstance(record, TrajectoryFooter):
            current.footer = record
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
