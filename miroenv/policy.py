"""Scripted policies: recorded action lists replayed through an env, the way the demo and `miroenv run` work."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import BaseModel, Field

from miroenv.jsonl import iter_jsonl
from miroenv.protocol.base import Action


class ActionsFileError(ValueError):
    """An actions file line that is not `{"task_id": str, "actions": [str | dict, ...]}`."""


def load_actions(path: str | Path) -> dict[str, list[Action]]:
    """Read an actions JSONL file: one `{"task_id": ..., "actions": [...]}` object per line.

    A torn last line is dropped; a line that is not JSON raises `miroenv.jsonl.JsonlError`."""
    path = Path(path)
    scripts: dict[str, list[Action]] = {}
    for lineno, data in iter_jsonl(path, objects=True):
        if not isinstance(data.get("task_id"), str):
            raise ActionsFileError(f"{path}:{lineno}: expected an object with a string 'task_id'")
        actions = data.get("actions")
        if not isinstance(actions, list) or not all(isinstance(a, (str, dict)) for a in actions):
            raise ActionsFileError(f"{path}:{lineno}: 'actions' must be a list of strings or message objects")
        scripts[data["task_id"]] = actions
    return scripts


class ScriptedPolicy:
    """Plays back a fixed list of actions, then keeps sending an empty final reply if asked for more."""

    def __init__(self, actions: Sequence[Action]) -> None:
        self.actions = list(actions)
        self._next = 0

    def __call__(self, observation: str) -> Action:
        if self._next >= len(self.actions):
            return ""
        action = self.actions[self._next]
        self._next += 1
        return action

    @property
    def exhausted(self) -> bool:
        """True once every recorded action has been played."""
        return self._next >= len(self.actions)


class StepView(BaseModel):
    """What an observer of a running episode sees after each step."""

    index: int
    action: Any
    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = Field(default_factory=dict)


class EpisodeResult(BaseModel):
    """The end of one episode run by `run_episode`."""

    task_id: str
    answer: str | None
    reward: float
    reward_components: dict[str, float]
    terminated: bool
    truncated: bool
    steps: int
    tool_calls: int
    errors: dict[str, int]
    observations: list[str]


def iter_episode(
    env: gym.Env[str, Any],
    policy: Callable[[str], Action],
    *,
    task_id: str | None = None,
    seed: int | None = None,
    max_steps: int = 10_000,
) -> Iterator[StepView]:
    """Run one episode step by step, yielding each step (index 0 is the reset)."""
    observation, info = env.reset(seed=seed, options={"task_id": task_id} if task_id is not None else None)
    yield StepView(
        index=0,
        action=None,
        observation=observation,
        reward=0.0,
        terminated=False,
        truncated=False,
        info=info,
    )
    for index in range(1, max_steps + 1):
        action = policy(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        yield StepView(
            index=index,
            action=action,
            observation=observation,
            reward=float(reward),
            terminated=terminated,
            truncated=truncated,
            info=info,
        )
        if terminated or truncated:
            return


def run_episode(
    env: gym.Env[str, Any],
    policy: Callable[[str], Action],
    *,
    task_id: str | None = None,
    seed: int | None = None,
    on_step: Callable[[StepView], None] | None = None,
) -> EpisodeResult:
    """Run one episode to its end and summarise it; `on_step` sees every step as it happens."""
    views: list[StepView] = []
    for view in iter_episode(env, policy, task_id=task_id, seed=seed):
        views.append(view)
        if on_step is not None:
            on_step(view)
    return summarize_episode(views)


def summarize_episode(views: Sequence[StepView]) -> EpisodeResult:
    """The `EpisodeResult` of an episode given all its steps (index 0 being the reset)."""
    last = views[-1]
    info = last.info
    return EpisodeResult(
        task_id=views[0].info["task_id"],
        answer=info.get("answer"),
        reward=last.reward,
        reward_components=info.get("reward_components", {}),
        terminated=last.terminated,
        truncated=last.truncated,
        steps=len(views) - 1,
        tool_calls=info["budget"]["tool_calls"],
        errors=info["errors"],
        observations=[v.observation for v in views],
    )
