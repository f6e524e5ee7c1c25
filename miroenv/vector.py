"""`ConcurrentVectorEnv`: a Gymnasium vector env that steps all its sub-envs at once on a thread pool.

Gymnasium's `SyncVectorEnv` steps sub-envs one after another and `AsyncVectorEnv` runs one process per env;
both work with `miroenv/Research-v0` (text spaces; `AsyncVectorEnv` with `shared_memory=False`). This one keeps
every sub-env in the calling process and runs their `step` / `reset` calls concurrently on threads, so tool
calls of different episodes overlap without a process (and a snapshot copy) per env. Each sub-env owns its
RNG and is only ever touched by one thread at a time, so the same seeds give the same tasks and observations
whatever `max_workers` is.

    envs = ConcurrentVectorEnv.from_snapshot(32, "snapshots/demo", max_workers=8)
    observations, infos = envs.reset(seed=0)           # sub-env i is seeded with 0 + i
    observations, rewards, terminated, truncated, infos = envs.step(actions)  # a tuple of 32 messages
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from miroenv.env import ResearchEnv
from miroenv.tasks import Task
from miroenv.web.base import Web
from miroenv.web.snapshot import Snapshot

_StepOut = tuple[str, float, bool, bool, dict[str, Any]]


class ConcurrentVectorEnv(VectorEnv[tuple[str, ...], tuple[Any, ...], npt.NDArray[Any]]):
    """Runs `len(env_fns)` envs in this process and steps them concurrently on a thread pool.

    Observations are tuples of strings (the batched `UnicodeText` space is a `Tuple`), actions a sequence
    of one assistant message per sub-env; rewards, terminations and truncations are numpy arrays and infos
    are batched the Gymnasium way (`info[key][i]` with a `_key` mask).

    Args:
        env_fns: callables that make the sub-envs.
        max_workers: threads stepping sub-envs (default: one per sub-env, capped at 32).
        autoreset_mode: `NEXT_STEP` (default), `SAME_STEP` or `DISABLED`, with Gymnasium 1.x semantics.
        closers: extra callables run by `close()` after the sub-envs (for example a shared snapshot's close).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env[str, Any]]],
        *,
        max_workers: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        super().__init__()
        if not env_fns:
            raise ValueError("ConcurrentVectorEnv needs at least one env")
        self.autoreset_mode = (
            autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
        )
        self._closers = list(closers)
        self.envs: list[gym.Env[str, Any]] = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        workers = max_workers if max_workers is not None else min(self.num_envs, 32)
        if workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="miroenv-vec")
        first = self.envs[0]
        self.metadata = dict(first.metadata)
        self.metadata["autoreset_mode"] = self.autoreset_mode
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        for env in self.envs[1:]:
            if env.observation_space != self.single_observation_space:
                raise RuntimeError("the sub-envs' observation spaces differ")
            if env.action_space != self.single_action_space:
                raise RuntimeError("the sub-envs' action spaces differ")
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._observations: list[str] = [""] * self.num_envs
        self._rewards = np.zeros(self.num_envs, dtype=np.float64)
        self._terminations = np.zeros(self.num_envs, dtype=np.bool_)
        self._truncations = np.zeros(self.num_envs, dtype=np.bool_)
        self._autoreset_envs = np.zeros(self.num_envs, dtype=np.bool_)

    @classmethod
    def from_snapshot(
        cls,
        num_envs: int,
        snapshot: str | Path | Web,
        tasks: Sequence[Task | Mapping[str, Any]] | str | Path | None = None,
        *,
        max_workers: int | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        **env_kwargs: Any,
    ) -> ConcurrentVectorEnv:
        """`num_envs` `ResearchEnv`s sharing one opened snapshot (thread-safe) and one task list; the
        snapshot is closed with the vector env when this call opened it."""
        web = snapshot if isinstance(snapshot, Web) else Snapshot(snapshot)
        if tasks is None:
            default = Path(getattr(web, "path", "")) / "tasks.jsonl"
            tasks = default if default.is_file() else None
        loaded: Sequence[Task | Mapping[str, Any]] | str | Path | None = tasks
        if isinstance(tasks, (str, Path)):
            from miroenv.tasks import load_tasks

            loaded = load_tasks(tasks, env_kwargs.get("attachments_root"), must_exist=True)

        def make() -> gym.Env[str, Any]:
            return ResearchEnv(web, loaded, **env_kwargs)

        closers = [] if isinstance(snapshot, Web) else [web.close]
        return cls([make] * num_envs, max_workers=max_workers, autoreset_mode=autoreset_mode, closers=closers)

    # ------------------------------------------------------------------ gymnasium vector API

    @property
    def np_random_seed(self) -> tuple[int, ...]:  # type: ignore[override]
        """The sub-envs' RNG seeds."""
        return tuple(env.np_random_seed for env in self.envs)

    @property  # type: ignore[misc]
    def np_random(self) -> tuple[np.random.Generator, ...]:  # type: ignore[override]
        """The sub-envs' RNGs."""
        return tuple(env.np_random for env in self.envs)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset the sub-envs concurrently. `seed`: None, an int (sub-env i gets `seed + i`) or one per
        sub-env. `options` go to every sub-env; `options["reset_mask"]` (a bool array) resets only those."""
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        options = dict(options) if options is not None else None
        mask = np.ones(self.num_envs, dtype=np.bool_)
        if options is not None and "reset_mask" in options:
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise TypeError(
                    f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},)"
                )
            if not mask.any():
                raise ValueError("options['reset_mask'] must select at least one env")
        chosen = [i for i in range(self.num_envs) if mask[i]]

        def one(i: int) -> tuple[str, dict[str, Any]]:
            return self.envs[i].reset(seed=seeds[i], options=options)

        outs = list(self._pool.map(one, chosen))
        infos: dict[str, Any] = {}
        for i, (observation, info) in zip(chosen, outs, strict=True):
            self._observations[i] = observation
            self._terminations[i] = self._truncations[i] = self._autoreset_envs[i] = False
            infos = self._add_info(infos, info, i)
        return tuple(self._observations), infos

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[
        tuple[str, ...], npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_], dict[str, Any]
    ]:
        """Step every sub-env with its action at once (autoresetting per `autoreset_mode`)."""
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"{len(actions)} actions for {self.num_envs} envs")
        mode = self.autoreset_mode
        if mode == AutoresetMode.DISABLED and self._autoreset_envs.any():
            ended = [int(i) for i in np.flatnonzero(self._autoreset_envs)]
            raise RuntimeError(f"envs {ended} have ended; reset them (options['reset_mask']) before stepping")

        def one(i: int) -> tuple[_StepOut, dict[str, Any] | None]:
            env = self.envs[i]
            if mode == AutoresetMode.NEXT_STEP and self._autoreset_envs[i]:
                observation, info = env.reset()
                return (observation, 0.0, False, False, info), None
            observation, reward, terminated, truncated, info = env.step(actions[i])
            out: _StepOut = (observation, float(reward), bool(terminated), bool(truncated), info)
            if mode == AutoresetMode.SAME_STEP and (terminated or truncated):
                final = {"final_obs": observation, "final_info": info}
                observation, info = env.reset()
                return (observation, out[1], out[2], out[3], info), final
            return out, None

        outs = list(self._pool.map(one, range(self.num_envs)))
        infos: dict[str, Any] = {}
        for i, ((observation, reward, terminated, truncated, info), final) in enumerate(outs):
            self._observations[i] = observation
            self._rewards[i] = reward
            self._terminations[i] = terminated
            self._truncations[i] = truncated
            if final is not None:
                infos = self._add_info(infos, final, i)
            infos = self._add_info(infos, info, i)
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        return (
            tuple(self._observations),
            self._rewards.copy(),
            self._terminations.copy(),
            self._truncations.copy(),
            infos,
        )

    def render(self) -> tuple[Any, ...] | None:
        """Each sub-env's `render()`."""
        return tuple(env.render() for env in self.envs)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method `name` on every sub-env (concurrently) or read it when it is not callable."""

        def one(env: gym.Env[str, Any]) -> Any:
            attr = env.get_wrapper_attr(name)
            return attr(*args, **kwargs) if callable(attr) else attr

        return tuple(self._pool.map(one, self.envs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute `name` of every sub-env."""
        return tuple(env.get_wrapper_attr(name) for env in self.envs)

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute `name` on every sub-env (one value each when a list or tuple, else the same)."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"{len(values)} values for {self.num_envs} envs")
        for env, value in zip(self.envs, values, strict=True):
            env.set_wrapper_attr(name, value)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the sub-envs (concurrently), the thread pool, then run the extra closers."""
        try:
            list(self._pool.map(lambda env: env.close(), self.envs))
        finally:
            self._pool.shutdown(wait=True)
            for closer in self._closers:
                closer()


__all__ = ["ConcurrentVectorEnv"]
