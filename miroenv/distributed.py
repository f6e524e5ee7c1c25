"""A pool of Ray actors hosting `ResearchEnv`s, stepped in batches (`pip install 'miroenv[ray]'`).

Each actor hosts several envs built from picklable settings (snapshot path, tasks, env keyword arguments,
sandbox kind), with one sandbox backend of its own shared by its envs. `EnvPool.reset_batch` and
`EnvPool.step_batch` send one Ray call per env at once and return a `Batch`: iterate it to get results as
they complete, or `gather()` them in request order. A batch never hangs: every request has a timeout, and
an actor that dies (killed, out of memory, node lost) turns its in-flight requests into results whose
`info["infra_error"]` says so, with `"infra"` in `info["error_kinds"]`, so a trainer can mask those
episodes. A dead actor is replaced on the next `reset_batch` that names one of its envs. Actors are placed
with Ray's ``"SPREAD"`` scheduling strategy, so a multi-node cluster gets them on different nodes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym

from miroenv.extras import requires_extra
from miroenv.protocol.base import Action

with requires_extra("ray", "miroenv.distributed"):
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayError

InfraKind = Literal["actor_died", "timeout", "exception", "episode_lost"]
DEFAULT_TIMEOUT = 600.0
"""Seconds a request may take (queueing included) before it comes back as a `timeout` infra error."""

_ENV_ARGS = frozenset({"snapshot", "tasks", "reward", "sandbox", "config", "render_mode"})


@dataclass
class EnvResult:
    """The outcome of one reset or step of one env of the pool.

    A reset has `reward == 0.0` and `terminated == truncated == False`. An infra failure (actor died,
    timeout, the env raised, the episode was lost with its actor) has an empty observation,
    `truncated=True`, `"infra"` in `info["error_kinds"]` and the details in `info["infra_error"]`:
    `{"kind": "actor_died" | "timeout" | "exception" | "episode_lost", "message": str, "actor": int}`.
    """

    env_id: int
    kind: Literal["reset", "step"]
    observation: str
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def infra_error(self) -> dict[str, Any] | None:
        """The infra failure's details, or None when the env answered."""
        error = self.info.get("infra_error")
        return error if isinstance(error, dict) else None

    @property
    def ok(self) -> bool:
        """True when the env answered (no infra failure)."""
        return self.infra_error is None

    @property
    def done(self) -> bool:
        """True when the episode is over (ended, truncated, or lost to an infra failure)."""
        return self.terminated or self.truncated


@dataclass(frozen=True)
class ResetRequest:
    """Reset env `env_id` with this seed and options (e.g. ``{"task_id": ...}``)."""

    env_id: int
    seed: int | None = None
    options: dict[str, Any] | None = None
    timeout: float | None = None
    """Overrides the batch's timeout for this request."""


@dataclass(frozen=True)
class StepRequest:
    """Step env `env_id` with `action` (the assistant message, text or dict)."""

    env_id: int
    action: Action
    timeout: float | None = None
    """Overrides the batch's timeout for this request."""


def _infra_result(
    env_id: int, kind: Literal["reset", "step"], infra: InfraKind, message: str, actor: int
) -> EnvResult:
    return EnvResult(
        env_id=env_id,
        kind=kind,
        observation="",
        reward=0.0,
        terminated=False,
        truncated=True,
        info={
            "env_id": env_id,
            "error_kinds": ["infra"],
            "infra_error": {"kind": infra, "message": message, "actor": actor},
        },
    )


# ---------------------------------------------------------------------------------------------- the actor


def _build_env(env_kwargs: Mapping[str, Any], sandbox: Any) -> gym.Env[str, Any]:
    from miroenv.env import ResearchEnv

    kwargs = dict(env_kwargs)
    kwargs.pop("sandbox", None)
    snapshot = kwargs.pop("snapshot")
    tasks = kwargs.pop("tasks", None)
    return ResearchEnv(snapshot, tasks, sandbox=sandbox, **kwargs)


class EnvHost:
    """The Ray actor body: several envs and one sandbox backend, called from threads (one per env)."""

    def __init__(
        self,
        actor_index: int,
        env_ids: Sequence[int],
        env_kwargs: Mapping[str, Any] | None,
        env_factory: Callable[[], gym.Env[str, Any]] | None,
    ) -> None:
        self.actor_index = actor_index
        self.sandbox: Any = None
        self.envs: dict[int, gym.Env[str, Any]] = {}
        if env_factory is not None:
            for env_id in env_ids:
                self.envs[env_id] = env_factory()
        else:
            assert env_kwargs is not None
            from miroenv.sandbox.select import make_backend

            self.sandbox = make_backend(str(env_kwargs.get("sandbox") or "none"))
            for env_id in env_ids:
                self.envs[env_id] = _build_env(env_kwargs, self.sandbox)
        self.locks = {env_id: threading.Lock() for env_id in env_ids}

    def describe(self) -> dict[str, Any]:
        """Where this actor runs: its index, node id, process id and env ids."""
        return {
            "actor": self.actor_index,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "env_ids": sorted(self.envs),
        }

    def reset(self, env_id: int, seed: int | None, options: dict[str, Any] | None) -> EnvResult:
        with self.locks[env_id]:
            try:
                observation, info = self.envs[env_id].reset(seed=seed, options=options)
            except Exception as exc:
                return self._raised(env_id, "reset", exc)
        info["env_id"] = env_id
        return EnvResult(env_id=env_id, kind="reset", observation=observation, info=info)

    def step(self, env_id: int, action: Action) -> EnvResult:
        with self.locks[env_id]:
            try:
                observation, reward, terminated, truncated, info = self.envs[env_id].step(action)
            except Exception as exc:
                return self._raised(env_id, "step", exc)
        info["env_id"] = env_id
        return EnvResult(
            env_id=env_id,
            kind="step",
            observation=observation,
            reward=float(reward),
            terminated=bool(terminated),
            truncated=bool(truncated),
            info=info,
        )

    def close(self) -> None:
        for env in self.envs.values():
            with contextlib.suppress(Exception):  # best effort: the actor is killed next
                env.close()
        if self.sandbox is not None:
            self.sandbox.close()

    def _raised(self, env_id: int, kind: Literal["reset", "step"], exc: Exception) -> EnvResult:
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        return _infra_result(env_id, kind, "exception", message, self.actor_index)


# ---------------------------------------------------------------------------------------------- the pool


@dataclass
class _Pending:
    index: int
    env_id: int
    actor: int
    kind: Literal["reset", "step"]
    deadline: float | None


class Batch:
    """The requests of one `reset_batch`/`step_batch`, already sent.

    Iterate it for results as they complete (each request yields exactly one `EnvResult`, an infra error
    if its actor died or it timed out), or call `gather()` for all of them in request order. A batch can
    be consumed once; `gather()` after a partial iteration returns every result, in request order.
    """

    def __init__(self, pool: EnvPool, results: list[EnvResult | None], pending: dict[Any, _Pending]) -> None:
        self._pool = pool
        self._results = results
        self._pending = pending
        self._ready: list[EnvResult] = [r for r in results if r is not None]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[EnvResult]:
        while self._ready:
            yield self._ready.pop(0)
        while self._pending:
            yield from self._next_ready()

    def gather(self) -> list[EnvResult]:
        """Wait for every request; results in request order."""
        for _ in self:
            pass
        return [r for r in self._results if r is not None]

    def _next_ready(self) -> list[EnvResult]:
        now = time.monotonic()
        deadlines = [p.deadline for p in self._pending.values() if p.deadline is not None]
        wait_for = max(0.0, min(deadlines) - now) if deadlines else None
        refs = list(self._pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait_for)
        if ready:
            rest = [r for r in refs if r not in ready]
            if rest:
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready = [*ready, *more]
        done: list[EnvResult] = []
        for ref in ready:
            pending = self._pending.pop(ref)
            done.append(self._settle(pending, self._fetch(ref, pending)))
        now = time.monotonic()
        for ref, pending in list(self._pending.items()):
            if pending.deadline is not None and now >= pending.deadline:
                del self._pending[ref]
                self._pool._lose_episode(pending.env_id)
                message = f"no answer from actor {pending.actor} within the request's timeout"
                done.append(
                    self._settle(
                        pending,
                        _infra_result(pending.env_id, pending.kind, "timeout", message, pending.actor),
                    )
                )
        return done

    def _fetch(self, ref: Any, pending: _Pending) -> EnvResult:
        try:
            result = ray.get(ref, timeout=0)
        except RayActorError as exc:
            self._pool._actor_died(pending.actor)
            return _infra_result(pending.env_id, pending.kind, "actor_died", str(exc), pending.actor)
        except GetTimeoutError as exc:  # pragma: no cover - the ref was reported ready
            return _infra_result(pending.env_id, pending.kind, "timeout", str(exc), pending.actor)
        except RayError as exc:
            self._pool._lose_episode(pending.env_id)
            return _infra_result(pending.env_id, pending.kind, "exception", str(exc), pending.actor)
        if not isinstance(result, EnvResult):  # pragma: no cover - defensive
            message = f"actor returned {type(result).__name__}"
            return _infra_result(pending.env_id, pending.kind, "exception", message, pending.actor)
        return result

    def _settle(self, pending: _Pending, result: EnvResult) -> EnvResult:
        if not result.ok:
            self._pool._lose_episode(pending.env_id)
        self._results[pending.index] = result
        return result


class EnvPool:
    """`num_actors` Ray actors, each hosting `envs_per_actor` envs; env ids run from 0 to `num_envs - 1`,
    actor `a` hosting ids ``a * envs_per_actor`` to ``(a + 1) * envs_per_actor - 1``.

    Args:
        num_actors: how many actors (placed with `scheduling_strategy`, ``"SPREAD"`` by default).
        envs_per_actor: envs per actor; the actor runs that many calls at once, one thread per env.
        env_kwargs: picklable `ResearchEnv` arguments: ``snapshot`` (path, required), ``tasks`` (path or
            list of task dicts), ``reward`` (name), ``sandbox`` (kind string: each actor makes its own
            backend, shared by its envs; default ``"none"``), ``config`` (an `EnvConfig`) and `EnvConfig`
            field overrides such as ``max_tool_calls``.
        env_factory: instead of `env_kwargs`, a picklable zero-argument callable returning a Gymnasium
            env with string observations; called once per env inside the actor.
        timeout: default per-request timeout in seconds (None: wait forever).
        num_cpus_per_actor: the CPUs Ray reserves for each actor.
        scheduling_strategy: Ray's scheduling strategy for the actors (``"SPREAD"``, ``"DEFAULT"``, or a
            placement-group strategy object).
        respawn: replace a dead actor on the next `reset_batch` naming one of its envs.
    """

    def __init__(
        self,
        num_actors: int,
        envs_per_actor: int,
        env_kwargs: Mapping[str, Any] | None = None,
        *,
        env_factory: Callable[[], gym.Env[str, Any]] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        num_cpus_per_actor: float = 1.0,
        scheduling_strategy: Any = "SPREAD",
        respawn: bool = True,
    ) -> None:
        if num_actors < 1 or envs_per_actor < 1:
            raise ValueError("num_actors and envs_per_actor must be at least 1")
        if (env_kwargs is None) == (env_factory is None):
            raise ValueError("pass exactly one of env_kwargs and env_factory")
        self.env_kwargs = _check_env_kwargs(env_kwargs) if env_kwargs is not None else None
        self.env_factory = env_factory
        self.num_actors = num_actors
        self.envs_per_actor = envs_per_actor
        self.timeout = timeout
        self.num_cpus_per_actor = num_cpus_per_actor
        self.scheduling_strategy = scheduling_strategy
        self.respawn = respawn
        self._remote_class = ray.remote(EnvHost)
        self._actors: list[Any] = [self._spawn(a) for a in range(num_actors)]
        self._dead: set[int] = set()
        self._lost: set[int] = set()
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def num_envs(self) -> int:
        """Envs in the pool."""
        return self.num_actors * self.envs_per_actor

    @property
    def actors(self) -> list[Any]:
        """The actor handles, by actor index (a dead actor's handle stays until it is replaced)."""
        return list(self._actors)

    def actor_of(self, env_id: int) -> int:
        """The index of the actor hosting `env_id`."""
        self._check_env_id(env_id)
        return env_id // self.envs_per_actor

    def describe(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Each live actor's index, node id, pid and env ids (waits for the actors to start)."""
        refs = [(a, h.describe.remote()) for a, h in enumerate(self._actors) if a not in self._dead]
        found: list[dict[str, Any]] = []
        for actor, ref in refs:
            try:
                found.append(ray.get(ref, timeout=timeout))
            except RayActorError:
                self._actor_died(actor)
        return found

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until every actor has built its envs (raises `GetTimeoutError` past `timeout`)."""
        ray.get([h.describe.remote() for h in self._actors], timeout=timeout)

    def reset_batch(self, requests: Iterable[ResetRequest | int], *, timeout: float | None = None) -> Batch:
        """Reset several envs at once (an int is a `ResetRequest` with defaults); dead actors are replaced
        first when `respawn` is on."""
        items = [r if isinstance(r, ResetRequest) else ResetRequest(env_id=int(r)) for r in requests]
        self._check_batch([r.env_id for r in items])
        if self.respawn:
            for actor in sorted({self.actor_of(r.env_id) for r in items} & self._dead):
                self._replace(actor)
        results: list[EnvResult | None] = [None] * len(items)
        pending: dict[Any, _Pending] = {}
        for index, request in enumerate(items):
            actor = self.actor_of(request.env_id)
            if actor in self._dead:
                results[index] = _infra_result(
                    request.env_id, "reset", "actor_died", f"actor {actor} is dead", actor
                )
                continue
            self._lost.discard(request.env_id)
            ref = self._actors[actor].reset.remote(request.env_id, request.seed, request.options)
            pending[ref] = _Pending(
                index, request.env_id, actor, "reset", self._deadline(request.timeout, timeout)
            )
        return Batch(self, results, pending)

    def step_batch(
        self, actions: Mapping[int, Action] | Iterable[StepRequest], *, timeout: float | None = None
    ) -> Batch:
        """Step several envs at once: ``{env_id: action}`` or `StepRequest`s. An env whose episode was lost
        (its actor died, or a request timed out) answers at once with an `episode_lost` infra error until
        it is reset."""
        items = (
            [StepRequest(env_id=int(k), action=v) for k, v in actions.items()]
            if isinstance(actions, Mapping)
            else list(actions)
        )
        self._check_batch([r.env_id for r in items])
        results: list[EnvResult | None] = [None] * len(items)
        pending: dict[Any, _Pending] = {}
        for index, request in enumerate(items):
            actor = self.actor_of(request.env_id)
            if actor in self._dead or request.env_id in self._lost:
                message = (
                    f"actor {actor} died"
                    if actor in self._dead
                    else "the episode was lost to an earlier infra error"
                )
                results[index] = _infra_result(
                    request.env_id, "step", "episode_lost", f"{message}; reset this env", actor
                )
                continue
            ref = self._actors[actor].step.remote(request.env_id, request.action)
            pending[ref] = _Pending(
                index, request.env_id, actor, "step", self._deadline(request.timeout, timeout)
            )
        return Batch(self, results, pending)

    def close(self, timeout: float = 10.0) -> None:
        """Close every env and sandbox backend in the actors, then kill the actors. Idempotent."""
        if self._closed:
            return
        self._closed = True
        live = [h for a, h in enumerate(self._actors) if a not in self._dead]
        refs = [h.close.remote() for h in live]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for handle in self._actors:
            with contextlib.suppress(Exception):  # already gone
                ray.kill(handle)

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _spawn(self, actor: int) -> Any:
        env_ids = list(range(actor * self.envs_per_actor, (actor + 1) * self.envs_per_actor))
        options = self._remote_class.options(
            num_cpus=self.num_cpus_per_actor,
            max_concurrency=self.envs_per_actor + 1,
            max_restarts=0,
            scheduling_strategy=self.scheduling_strategy,
        )
        return options.remote(actor, env_ids, self.env_kwargs, self.env_factory)

    def _replace(self, actor: int) -> None:
        with contextlib.suppress(Exception):  # already gone
            ray.kill(self._actors[actor])
        self._actors[actor] = self._spawn(actor)
        self._dead.discard(actor)

    def _actor_died(self, actor: int) -> None:
        self._dead.add(actor)
        self._lost.update(range(actor * self.envs_per_actor, (actor + 1) * self.envs_per_actor))

    def _lose_episode(self, env_id: int) -> None:
        self._lost.add(env_id)

    def _deadline(self, request_timeout: float | None, batch_timeout: float | None) -> float | None:
        limit = request_timeout if request_timeout is not None else batch_timeout
        limit = limit if limit is not None else self.timeout
        return None if limit is None else time.monotonic() + limit

    def _check_env_id(self, env_id: int) -> None:
        if not 0 <= env_id < self.num_envs:
            raise ValueError(f"env_id {env_id} is outside 0..{self.num_envs - 1}")

    def _check_batch(self, env_ids: list[int]) -> None:
        if self._closed:
            raise RuntimeError("the pool is closed")
        for env_id in env_ids:
            self._check_env_id(env_id)
        if len(set(env_ids)) != len(env_ids):
            raise ValueError("an env may appear only once in a batch")


def _check_env_kwargs(env_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(env_kwargs)
    if "snapshot" not in kwargs:
        raise ValueError("env_kwargs needs 'snapshot' (a snapshot directory path)")
    if not isinstance(kwargs["snapshot"], (str, Path)):
        raise ValueError("env_kwargs['snapshot'] must be a path: each actor opens the snapshot itself")
    sandbox = kwargs.get("sandbox")
    if sandbox is not None and not isinstance(sandbox, str):
        raise ValueError(
            "env_kwargs['sandbox'] must be a backend kind string (auto, docker, process, none): "
            "each actor makes its own backend"
        )
    unknown = set(kwargs) - _ENV_ARGS
    from miroenv.env import EnvConfig

    bad = sorted(unknown - set(EnvConfig.model_fields))
    if bad:
        raise ValueError(f"unknown env_kwargs: {', '.join(bad)}")
    kwargs["snapshot"] = str(kwargs["snapshot"])
    if isinstance(kwargs.get("tasks"), Path):
        kwargs["tasks"] = str(kwargs["tasks"])
    try:
        pickle.dumps(kwargs)
    except Exception as exc:
        raise ValueError(f"env_kwargs must be picklable to reach the actors: {exc}") from exc
    return kwargs


__all__ = [
    "DEFAULT_TIMEOUT",
    "Batch",
    "EnvHost",
    "EnvPool",
    "EnvResult",
    "ResetRequest",
    "StepRequest",
]
