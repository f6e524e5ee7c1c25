"""asyncio front door: `AsyncResearchEnv` for trainers that own their event loop, and `run_episodes`.

`AsyncResearchEnv` is a thin layer over one `ResearchEnv` (or any `gymnasium.Env` wrapping one): `areset` and
`astep` run the env's own `reset` / `step` on a worker thread, one call at a time per env (an `asyncio.Lock`),
so there is one implementation of the episode and the sync API stays the reference. Calls of different envs
overlap: snapshot reads (SQLite), index searches (tantivy) and sandbox round trips (sockets) release the GIL.

    env = AsyncResearchEnv(ResearchEnv("snapshots/demo"))
    observation, info = await env.areset(seed=0, options={"task_id": "ada-standard"})
    observation, reward, terminated, truncated, info = await env.astep(assistant_message)
    await env.aclose()
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, SupportsFloat, TypeVar

import gymnasium as gym

from miroenv.env import ResearchEnv
from miroenv.policy import EpisodeResult, StepView, summarize_episode
from miroenv.protocol.base import Action

T = TypeVar("T")

DEFAULT_MAX_WORKERS = 32
"""Threads of the shared executor: enough to overlap sandbox round trips of many episodes; CPU-bound replay
steps are limited by the GIL and the cores anyway."""

_shared_lock = threading.Lock()
_shared_executor: ThreadPoolExecutor | None = None

StepResult = tuple[str, SupportsFloat, bool, bool, dict[str, Any]]
EpisodePolicy = Callable[[str], "Action | Awaitable[Action]"]
"""A policy for one episode: observation text -> the assistant's next message (or an awaitable of it)."""
PolicyFactory = Callable[["AsyncResearchEnv", str | None], EpisodePolicy]
"""Makes the policy of one episode, given the env it runs on and its task id (None: drawn by the env)."""


def shared_executor() -> ThreadPoolExecutor:
    """The process-wide bounded thread pool that `AsyncResearchEnv` uses unless given its own executor."""
    global _shared_executor
    with _shared_lock:
        if _shared_executor is None:
            _shared_executor = ThreadPoolExecutor(
                max_workers=DEFAULT_MAX_WORKERS, thread_name_prefix="miroenv-aio"
            )
        return _shared_executor


class AsyncResearchEnv:
    """Awaitable `reset` / `step` / `close` over one wrapped env, run on a thread pool.

    Args:
        env: the env to drive: a `ResearchEnv`, or a `gymnasium.Env` wrapping one (for example
            `RecordTrajectory`). `aclose()` closes it.
        executor: where the sync calls run (default: `shared_executor()`, a bounded pool shared by all
            async envs of the process).
        inline: run `reset` / `step` on the event loop's own thread instead (still one at a time per env).
            For replay-only tools (no sandbox, no live backend) this is faster: a step is ~0.5 ms of CPU
            that threads cannot parallelise under the GIL, and the thread hand-off costs ~0.15 ms per step
            (see benchmarks/README.md). It blocks the loop for the duration of each step.
    """

    def __init__(
        self, env: gym.Env[str, Any], *, executor: Executor | None = None, inline: bool = False
    ) -> None:
        self.env = env
        self._executor = executor
        self.inline = inline
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def make(
        cls, *args: Any, executor: Executor | None = None, inline: bool = False, **kwargs: Any
    ) -> AsyncResearchEnv:
        """Build the `ResearchEnv(*args, **kwargs)` and wrap it."""
        return cls(ResearchEnv(*args, **kwargs), executor=executor, inline=inline)

    # ------------------------------------------------------------------ async API

    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """`env.reset(seed=..., options=...)` on a worker thread."""
        return await self._run(functools.partial(self.env.reset, seed=seed, options=options))

    async def astep(self, action: Action) -> StepResult:
        """`env.step(action)` on a worker thread; never overlaps another call on this env."""
        return await self._run(functools.partial(self.env.step, action))

    async def aclose(self) -> None:
        """Close the wrapped env (after any call in flight); closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        await self._run(self.env.close, allow_closed=True)

    async def __aenter__(self) -> AsyncResearchEnv:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ sync passthroughs

    @property
    def unwrapped(self) -> ResearchEnv:
        """The `ResearchEnv` underneath."""
        base = self.env.unwrapped
        if not isinstance(base, ResearchEnv):
            raise TypeError(f"AsyncResearchEnv needs a ResearchEnv underneath, got {type(base).__name__}")
        return base

    @property
    def observation_space(self) -> gym.Space[Any]:
        """The wrapped env's observation space."""
        return self.env.observation_space

    @property
    def action_space(self) -> gym.Space[Any]:
        """The wrapped env's action space."""
        return self.env.action_space

    def context(self) -> list[dict[str, Any]]:
        """The messages to send to the model now (recency policy applied); read it between steps."""
        return self.unwrapped.context()

    def messages(self) -> list[dict[str, Any]]:
        """The full conversation so far; read it between steps."""
        return self.unwrapped.messages()

    def tools_openai(self) -> list[dict[str, Any]]:
        """The profile's tools as an OpenAI `tools` list."""
        return self.unwrapped.tools_openai()

    def close(self) -> None:
        """Close synchronously (outside the event loop, or when no call is in flight)."""
        if not self._closed:
            self._closed = True
            self.env.close()

    # ------------------------------------------------------------------ internals

    async def _run(self, fn: Callable[[], T], *, allow_closed: bool = False) -> T:
        if self._closed and not allow_closed:
            raise RuntimeError("AsyncResearchEnv is closed")
        loop = asyncio.get_running_loop()
        await self._lock.acquire()
        if self.inline:
            try:
                return fn()
            finally:
                self._lock.release()
        try:
            ctx = contextvars.copy_context()
            future = loop.run_in_executor(self._executor or shared_executor(), ctx.run, fn)
        except BaseException:
            self._lock.release()
            raise
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The call keeps running in its thread: keep the env locked until it has finished.
            if future.done():
                self._lock.release()
            else:
                future.add_done_callback(lambda _: self._lock.release())
            raise
        except BaseException:
            self._lock.release()
            raise
        self._lock.release()
        return result


@dataclass
class EpisodeRun:
    """One episode run by `run_episodes`: what was asked and how it went (`steps` when kept)."""

    index: int
    task_id: str
    seed: int | None
    result: EpisodeResult
    steps: list[StepView] = field(default_factory=list)


async def run_episode_async(
    env: AsyncResearchEnv,
    policy: EpisodePolicy,
    *,
    task_id: str | None = None,
    seed: int | None = None,
    max_steps: int = 10_000,
) -> list[StepView]:
    """Run one episode to its end (or `max_steps`); every step as a `StepView`, index 0 being the reset."""
    observation, info = await env.areset(
        seed=seed, options={"task_id": task_id} if task_id is not None else None
    )
    # model_construct: the env's own output needs no validation, and this runs on the event loop per step
    views = [
        StepView.model_construct(
            index=0,
            action=None,
            observation=observation,
            reward=0.0,
            terminated=False,
            truncated=False,
            info=info,
        )
    ]
    for index in range(1, max_steps + 1):
        action = policy(observation)
        if inspect.isawaitable(action):
            action = await action
        observation, reward, terminated, truncated, info = await env.astep(action)
        views.append(
            StepView.model_construct(
                index=index,
                action=action,
                observation=observation,
                reward=float(reward),
                terminated=terminated,
                truncated=truncated,
                info=info,
            )
        )
        if terminated or truncated:
            break
    return views


async def run_episodes(
    envs: Sequence[AsyncResearchEnv],
    policy: PolicyFactory,
    task_ids: Sequence[str | None],
    seeds: Sequence[int | None] | None = None,
    concurrency: int | None = None,
    *,
    keep_steps: bool = False,
    max_steps: int = 10_000,
) -> list[EpisodeRun]:
    """Run `len(task_ids)` episodes on the `envs`, at most `concurrency` at once (default: one per env), and
    return them in input order.

    Episode `i` runs task `task_ids[i]` (None: the env draws one) reset with `seeds[i]`; `policy(env, task_id)`
    makes its policy. With seeds given, results do not depend on the concurrency or on which env ran which
    episode. The first exception (a policy's, or a bug) cancels the other episodes and is raised.
    """
    if not envs:
        raise ValueError("run_episodes needs at least one env")
    seed_list: list[int | None] = list(seeds) if seeds is not None else [None] * len(task_ids)
    if len(seed_list) != len(task_ids):
        raise ValueError(f"{len(task_ids)} task ids but {len(seed_list)} seeds")
    if concurrency is not None and concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if not task_ids:
        return []
    workers = min(len(envs), concurrency if concurrency is not None else len(envs), len(task_ids))
    results: list[EpisodeRun | None] = [None] * len(task_ids)
    pending = iter(range(len(task_ids)))

    async def worker(env: AsyncResearchEnv) -> None:
        for index in pending:
            task_id, seed = task_ids[index], seed_list[index]
            views = await run_episode_async(
                env, policy(env, task_id), task_id=task_id, seed=seed, max_steps=max_steps
            )
            results[index] = EpisodeRun(
                index=index,
                task_id=views[0].info["task_id"],
                seed=seed,
                result=summarize_episode(views),
                steps=views if keep_steps else [],
            )

    tasks = [asyncio.ensure_future(worker(env)) for env in envs[:workers]]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [run for run in results if run is not None]


__all__ = [
    "DEFAULT_MAX_WORKERS",
    "AsyncResearchEnv",
    "EpisodePolicy",
    "EpisodeRun",
    "PolicyFactory",
    "run_episode_async",
    "run_episodes",
    "shared_executor",
]
