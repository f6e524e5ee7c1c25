"""Fault injection: a wrapper that makes tool calls fail the way real backends fail, reproducibly from a seed.

Kinds: `rate_limit` (the search API answers 429 until the retries run out), `timeout` (the call is abandoned
at the tool-call limit), `truncated_page` / `empty_page` (the page or file arrives cut short or empty),
`sandbox_crash` (the sandbox's container or process is killed through its backend just before the call, so
this call and every later one on that sandbox find it gone).

Whether call number `i` (1-based, counted over the episode like `info["budget"]["tool_calls"]`) of task `t`
to tool `x` gets a fault, and which, is a pure function of (seed, t, i, x): a hash, never the clock, thread
scheduling or how many episodes ran before. Each fault that took effect is listed in the step's
`info["faults"]` with its call index, tool, kind and the call's error kind (`infra` for rate limits,
timeouts and crashes; truncated and empty pages come back as successful reads of damaged content, as they
would from a real site). A damaged page is read through a context of its own call, so no other call sees it,
even when the env's real tool-call timeout abandons the damaged call while it is still reading; such a call
reports the timeout and no fault.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, Field, model_validator

from miroenv.env import ResearchEnv
from miroenv.protocol.calls import ErrorKind, ToolCall
from miroenv.sandbox.base import Sandbox
from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolArguments
from miroenv.tools.python import SANDBOXES_KEY
from miroenv.tools.runner import (
    CallOutcome,
    ToolIntercept,
    ToolRouter,
    describe_call,
    run_call,
    timeout_message,
)
from miroenv.web.base import (
    ExtractionRecord,
    FileEntry,
    Page,
    SearchRequest,
    SearchResponse,
    ToolResultRecord,
    Web,
)
from miroenv.web.record.retry import RetryPolicy

FaultKind = Literal["rate_limit", "timeout", "truncated_page", "empty_page", "sandbox_crash"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",
    "timeout",
    "truncated_page",
    "empty_page",
    "sandbox_crash",
)
"""Every kind, in the order the schedule tries them."""

ALL_TOOLS = "*"
PAGE_TOOLS = ("scrape_and_extract_info", "scrape", "download_file_from_internet_to_sandbox")
SANDBOX_TOOLS = (
    "run_python_code",
    "run_command",
    "upload_file_from_local_to_sandbox",
    "download_file_from_internet_to_sandbox",
    "download_file_from_sandbox_to_local",
)
DEFAULT_TARGETS: dict[FaultKind, tuple[str, ...]] = {
    "rate_limit": ("google_search",),
    "timeout": (ALL_TOOLS,),
    "truncated_page": PAGE_TOOLS,
    "empty_page": PAGE_TOOLS,
    "sandbox_crash": SANDBOX_TOOLS,
}
"""Which tools each kind can hit (`*`: every tool)."""

DEFAULT_RATES: dict[FaultKind, float] = {
    "rate_limit": 0.2,
    "timeout": 0.05,
    "truncated_page": 0.15,
    "empty_page": 0.05,
    "sandbox_crash": 0.1,
}

DEFAULT_CALL_TIMEOUT_S = 1200.0
"""The limit a `timeout` fault reports when the env sets none (MiroThinker's per-call limit)."""
CRASH_WAIT_S = 30.0
"""How long to wait for the host side to see a killed sandbox gone."""

_CALLS_KEY = "miroenv.testing.faults.calls"
_CRASHED_KEY = "miroenv.testing.faults.crashed"


class FaultPlan(BaseModel):
    """The fault schedule: per-kind rates and target tools, and the seed that makes it reproducible."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    rates: dict[FaultKind, float] = Field(default_factory=lambda: dict(DEFAULT_RATES))
    """Probability that an eligible call gets this kind; per tool, the rates of the kinds that can hit it add
    up to at most 1."""
    targets: dict[FaultKind, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_TARGETS))

    @model_validator(mode="after")
    def _check_rates(self) -> FaultPlan:
        for kind, rate in self.rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate of {kind} must be between 0 and 1, got {rate}")
        named = {tool for tools in self.targets.values() for tool in tools if tool != ALL_TOOLS}
        for tool in [*sorted(named), "any other tool"]:
            total = sum(self.rates.get(kind, 0.0) for kind in self.kinds_for(tool))
            if total > 1.0 + 1e-9:
                raise ValueError(f"the rates of the faults that can hit {tool} add up to {total:g}, over 1")
        return self

    def kinds_for(self, tool: str) -> list[FaultKind]:
        """The kinds with a non-zero rate that can hit `tool`, in schedule order."""
        return [
            kind
            for kind in FAULT_KINDS
            if self.rates.get(kind, 0.0) > 0.0
            and any(t in (tool, ALL_TOOLS) for t in self.targets.get(kind, DEFAULT_TARGETS[kind]))
        ]

    def draw(self, task_id: str, call_index: int, tool: str, purpose: str = "fault") -> float:
        """A number in [0, 1) fixed by the seed, the task, the call index, the tool and `purpose`."""
        key = f"{self.seed}\x00{task_id}\x00{call_index}\x00{tool}\x00{purpose}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64

    def fault_for(self, task_id: str, call_index: int, tool: str) -> FaultKind | None:
        """The fault scheduled for call `call_index` (1-based) of `task_id` to `tool`, or None."""
        roll = self.draw(task_id, call_index, tool)
        threshold = 0.0
        for kind in self.kinds_for(tool):
            threshold += self.rates[kind]
            if roll < threshold:
                return kind
        return None

    def kept_fraction(self, task_id: str, call_index: int, tool: str) -> float:
        """How much of a truncated page survives: between 10% and 90%, fixed like the schedule."""
        return 0.1 + 0.8 * self.draw(task_id, call_index, tool, "cut")


class InjectedFault(BaseModel):
    """One fault that took effect, as reported in `info["faults"]`."""

    model_config = ConfigDict(frozen=True)

    call_index: int
    tool: str
    server: str | None
    kind: FaultKind
    error_kind: ErrorKind | None
    """The call's error kind after the fault (None: the tool read damaged content without noticing)."""
    detail: str


class _DamagedWeb(Web):
    """The episode's web with every page and file read during one call cut short or emptied."""

    def __init__(self, inner: Web, keep: float, applied: Callable[[str], None]) -> None:
        self.inner = inner
        self.keep = keep
        self.applied = applied
        self.live = inner.live

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def content_hash(self) -> str:
        return self.inner.content_hash

    @property
    def capture_date(self) -> str:
        return self.inner.capture_date

    def search(self, request: SearchRequest) -> SearchResponse:
        return self.inner.search(request)

    def extraction(self, url: str, info: str, model: str) -> ExtractionRecord | None:
        return self.inner.extraction(url, info, model)

    def tool_result(
        self, server: str | None, tool: str, arguments: Mapping[str, Any]
    ) -> ToolResultRecord | None:
        return self.inner.tool_result(server, tool, arguments)

    def page(self, url: str) -> Page:
        page = self.inner.page(url)
        kept = int(len(page.text) * self.keep)
        body = page.body[: int(len(page.body) * self.keep)] if page.body is not None else None
        self.applied(f"{page.url}: {kept} of {len(page.text)} characters delivered")
        return page.model_copy(update={"text": page.text[:kept], "body": body})

    def file(self, url: str) -> FileEntry:
        entry = self.inner.file(url)
        kept = int(len(entry.data) * self.keep)
        self.applied(f"{entry.url}: {kept} of {len(entry.data)} bytes delivered")
        return entry.model_copy(update={"data": entry.data[:kept]})


def _reading(ctx: EpisodeContext, web: Web) -> EpisodeContext:
    """`ctx` for one call that reads `web`; state, costs, sandboxes and closers stay shared with `ctx`, which
    keeps its own web, so no other call sees the damage, even while a timed-out call is still reading."""
    view = copy.copy(ctx)
    view.web = web
    return view


def crash_sandbox(sandbox: Sandbox, wait_s: float = CRASH_WAIT_S) -> None:
    """Kill a sandbox the way a real crash would (SIGKILL to its Docker container or to its process group)
    and wait until the host side sees it gone; sandboxes of other backends are closed instead."""
    from miroenv.sandbox.client import AgentSandbox
    from miroenv.sandbox.docker import DockerSandbox
    from miroenv.sandbox.process import ProcessSandbox

    if isinstance(sandbox, DockerSandbox):
        import docker  # type: ignore[import-untyped]

        client = docker.from_env()
        try:
            client.api.kill(sandbox.container_id)
        finally:
            client.close()
    elif isinstance(sandbox, ProcessSandbox):
        os.killpg(sandbox.host_pid, signal.SIGKILL)
    else:
        sandbox.close()
        return
    assert isinstance(sandbox, AgentSandbox)
    deadline = time.monotonic() + wait_s
    while sandbox.client.alive() and time.monotonic() < deadline:
        time.sleep(0.005)


class FaultInjector:
    """The env's call runner while faults are injected: decides each call's fault and runs it with `run_call`."""

    def __init__(self, plan: FaultPlan, call_timeout_s: float | None = None) -> None:
        self.plan = plan
        self.call_timeout_s = call_timeout_s if call_timeout_s is not None else DEFAULT_CALL_TIMEOUT_S
        """The limit a `timeout` fault reports: the env's per-call limit (not what is left of the episode's
        wall-clock budget, so the text does not depend on the clock)."""
        self._pending: list[InjectedFault] = []

    def take(self) -> list[InjectedFault]:
        """The faults that took effect since the last `take()`."""
        taken, self._pending = self._pending, []
        return taken

    def __call__(
        self,
        call: ToolCall,
        router: ToolRouter,
        ctx: EpisodeContext,
        max_chars: int,
        clock: Callable[[], float],
        timeout: float | None,
    ) -> CallOutcome:
        index = int(ctx.state.get(_CALLS_KEY, 0)) + 1
        ctx.state[_CALLS_KEY] = index
        kind = self.plan.fault_for(ctx.task.task_id, index, call.name)
        details: list[str] = []
        intercept: ToolIntercept | None = None
        if kind is not None:
            intercept = functools.partial(
                self._faulty,
                kind,
                ctx=ctx,
                index=index,
                limit=self.call_timeout_s,
                details=details,
            )
        outcome = run_call(call, router, ctx, max_chars, clock, timeout, intercept=intercept)
        outcome = _public_sandbox_names(outcome, ctx)
        noted = list(details)  # a call the watchdog abandoned may note damage later: that is never reported
        if kind in ("truncated_page", "empty_page") and _abandoned(outcome, call, timeout):
            noted = []  # the model saw the timeout, not the damaged page
        if kind is not None and noted:
            self._pending.append(
                InjectedFault(
                    call_index=index,
                    tool=call.name,
                    server=outcome.server,
                    kind=kind,
                    error_kind=outcome.error_kind,
                    detail="; ".join(noted),
                )
            )
        return outcome

    def _faulty(
        self,
        kind: FaultKind,
        server: str,
        tool: Tool[Any],
        args: ToolArguments,
        execute: Callable[[], str],
        *,
        ctx: EpisodeContext,
        index: int,
        limit: float,
        details: list[str],
    ) -> Callable[[], str]:
        """What runs instead of the tool: the failure `kind` as the real backend would produce it."""
        if kind == "rate_limit":
            message = _rate_limit_message(tool.name, server, args)
            details.append("HTTP 429 on every attempt")

            def rate_limited() -> str:
                raise InfraFailure(message)

            return rate_limited
        if kind == "timeout":
            message = timeout_message(describe_call(tool.name, server), limit)
            details.append(f"abandoned at the {limit:g} s limit")

            def timed_out() -> str:
                raise InfraFailure(message)

            return timed_out
        if kind in ("truncated_page", "empty_page"):
            keep = (
                self.plan.kept_fraction(ctx.task.task_id, index, tool.name)
                if kind == "truncated_page"
                else 0.0
            )

            def damaged() -> str:
                return tool.run(args, _reading(ctx, _DamagedWeb(ctx.web, keep, details.append)))

            return damaged

        def crashed() -> str:
            public_id = getattr(args, "sandbox_id", None)
            table: dict[str, Any] = ctx.state.get(SANDBOXES_KEY) or {}
            crashed_ids: dict[str, str] = ctx.state.setdefault(_CRASHED_KEY, {})
            sandbox = table.get(public_id) if isinstance(public_id, str) else None
            if sandbox is not None and public_id not in crashed_ids:
                crashed_ids[str(public_id)] = str(sandbox.sandbox_id)
                details.append(f"sandbox {public_id} killed")
                crash_sandbox(sandbox)
            return execute()

        return crashed


def _abandoned(outcome: CallOutcome, call: ToolCall, timeout: float | None) -> bool:
    """Whether the watchdog gave up on the call at `timeout` seconds (its thread may still be running)."""
    return timeout is not None and outcome.error == timeout_message(
        describe_call(call.name, outcome.server), timeout
    )


def _rate_limit_message(tool: str, server: str, args: ToolArguments) -> str:
    """The text the live backends give after answering 429 to every retry."""
    attempts = RetryPolicy().attempts
    query = getattr(args, "q", None)
    if isinstance(query, str):
        return f"Search failed: search {query.strip()!r}: HTTP 429 after {attempts} attempts."
    url = getattr(args, "url", None)
    if isinstance(url, str):
        return f"Scraping failed: {url.strip()!r} answered HTTP 429 after {attempts} attempts."
    return (
        f"Tool call to {tool} on {server} failed. Error: HTTP 429 Too Many Requests after {attempts} attempts"
    )


def _public_sandbox_names(outcome: CallOutcome, ctx: EpisodeContext) -> CallOutcome:
    """A call on a crashed sandbox fails with the backend's name for it; the model only knows the public id
    (as with e2b, where both are the same), so the name is replaced, keeping observations reproducible."""
    crashed: dict[str, str] = ctx.state.get(_CRASHED_KEY) or {}
    public_id = outcome.arguments.get("sandbox_id")
    if not isinstance(public_id, str) or public_id not in crashed:
        return outcome
    backend_id = crashed[public_id]
    name = re.compile(re.escape(backend_id) + r"(?![\w-])")
    return outcome.model_copy(
        update={
            "text": name.sub(public_id, outcome.text),
            "error": name.sub(public_id, outcome.error) if outcome.error is not None else None,
        }
    )


class FaultInjection(gym.Wrapper[str, Any, str, Any]):
    """Wraps a `ResearchEnv` so tool calls fail by the `FaultPlan` drawn from `seed` and `rates`; each
    step's `info["faults"]` lists the faults that took effect, and `episode_faults` all of this episode's."""

    def __init__(
        self,
        env: gym.Env[str, Any],
        seed: int,
        rates: Mapping[FaultKind, float] | None = None,
        *,
        targets: Mapping[FaultKind, tuple[str, ...]] | None = None,
    ) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, ResearchEnv):
            raise TypeError(f"FaultInjection wraps a ResearchEnv, got {type(base).__name__}")
        self.plan = FaultPlan(
            seed=seed,
            rates=dict(rates) if rates is not None else dict(DEFAULT_RATES),
            targets={**DEFAULT_TARGETS, **(targets or {})},
        )
        self.injector = FaultInjector(self.plan, base.config.tool_timeout_s)
        self.episode_faults: list[InjectedFault] = []
        self._base = base
        self._previous_runner = base.call_runner
        base.call_runner = self.injector

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self.injector.take()
        self.episode_faults = []
        info["faults"] = []
        return observation, info

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        faults = self.injector.take()
        self.episode_faults.extend(faults)
        info["faults"] = [fault.model_dump() for fault in faults]
        return observation, reward, terminated, truncated, info

    def close(self) -> None:
        self._base.call_runner = self._previous_runner
        super().close()
