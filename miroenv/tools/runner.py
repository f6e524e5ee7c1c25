"""Runs one parsed tool call against a profile's tools: resolve, validate, execute, classify, truncate.

Result and error texts follow MiroThinker v1.0's tool manager and MCP servers, so a model trained there reads
familiar messages: `Unknown tool: X`, `Error executing tool X: ...`, `Tool call to X on S failed. Error: ...`.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from miroenv.protocol.calls import ErrorKind, ParseProblem, ToolCall
from miroenv.protocol.text import call_problem
from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolArguments, ToolFailure, ToolServer

logger = logging.getLogger(__name__)

TRUNCATION_SUFFIX = "\n... [Result truncated]"


class CallOutcome(BaseModel):
    """What one tool call produced: the text shown to the model plus everything `info` and logs report."""

    model_config = ConfigDict(frozen=True)

    server: str | None
    tool: str
    arguments: dict[str, Any]
    call_id: str | None = None
    text: str
    error_kind: ErrorKind | None = None
    error: str | None = None
    duration_s: float = 0.0
    truncated: bool = False

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error_kind is None


def truncate_result(text: str, limit: int) -> tuple[str, bool]:
    """MiroThinker's overall cut: keep `limit` characters and append a marker; returns (text, was_cut)."""
    if limit <= 0 or len(text) <= limit:
        return text, False
    return text[:limit] + TRUNCATION_SUFFIX, True


def describe_validation_error(tool: str, exc: ValidationError) -> str:
    """Invalid arguments explained the way MiroThinker's MCP servers word it (without version-specific URLs)."""
    errors = exc.errors(include_url=False)
    lines = [
        f"Error executing tool {tool}: {len(errors)} validation error{'s' if len(errors) != 1 else ''} "
        f"for {tool}Arguments"
    ]
    for err in errors:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        lines.append(f"{where}\n  {err['msg']} [type={err['type']}]")
    return "\n".join(lines)


class ToolRouter:
    """Finds the tool a call names among a profile's servers."""

    def __init__(self, servers: Sequence[ToolServer]) -> None:
        self._by_server: dict[str, dict[str, Tool[Any]]] = {}
        self._by_name: dict[str, tuple[str, Tool[Any]]] = {}
        for server in servers:
            self._by_server[server.name] = {tool.name: tool for tool in server.tools}
            for tool in server.tools:
                self._by_name.setdefault(tool.name, (server.name, tool))

    def resolve(self, call: ToolCall) -> tuple[str, Tool[Any]]:
        """The (server, tool) for `call`; `ToolFailure` with MiroThinker's wording when nothing matches."""
        if call.server is None:
            found = self._by_name.get(call.name)
            if found is None:
                raise ToolFailure(
                    f"Unknown tool: {call.name}. Available tools: {', '.join(sorted(self._by_name))}."
                )
            return found
        tools = self._by_server.get(call.server)
        if tools is None:
            raise ToolFailure(
                f"Tool call to {call.name} on {call.server} failed. Error: Server '{call.server}' not found."
            )
        tool = tools.get(call.name)
        if tool is None:
            raise ToolFailure(f"Unknown tool: {call.name}")
        return call.server, tool


class _Job:
    """One call handed to a tool thread, and its outcome."""

    def __init__(self, fn: Callable[[], str]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: str | None = None
        self.error: BaseException | None = None


class ToolThreads:
    """Daemon worker threads for tool calls with a timeout.

    Daemon threads, so a call that hangs forever never blocks interpreter exit; reused (and grown only when
    every worker is busy), so per-thread resources such as SQLite connections are not reopened per call;
    fork-aware, so a forked child starts with a pool of its own instead of the parent's vanished threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._idle = 0

    def submit(self, fn: Callable[[], str]) -> _Job:
        """Queue `fn` for a worker (starting one when none is idle)."""
        job = _Job(fn)
        with self._lock:
            if self._pid != os.getpid():
                self._reset()
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(
                    target=self._work, args=(self._jobs,), name="miroenv-tool", daemon=True
                ).start()
            self._jobs.put(job)
        return job

    def _work(self, jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            job = jobs.get()
            try:
                job.result = job.fn()
            except BaseException as exc:  # handed to the waiting caller, who re-raises it
                job.error = exc
            finally:
                job.done.set()
            with self._lock:
                if jobs is not self._jobs:
                    return
                self._idle += 1


_TOOL_THREADS = ToolThreads()

ToolIntercept = Callable[[str, Tool[Any], ToolArguments, Callable[[], str]], Callable[[], str]]
"""Given a resolved call (server, tool, validated arguments) and the function that would run it, the function
to run instead; how fault injection makes a call fail the way the real failure would."""


def describe_call(tool: str, server: str | None) -> str:
    """How a timeout names a call: `Tool call to X on S`."""
    return f"Tool call to {tool} on {server}"


def timeout_message(describe: str, timeout: float) -> str:
    """The result text of a call abandoned after `timeout` seconds (`describe` names the call)."""
    return f"{describe} failed. Error: timed out after {timeout:.3g} s"


def run_with_timeout(fn: Callable[[], str], timeout: float | None, describe: str) -> str:
    """`fn()`, or `InfraFailure` when it takes longer than `timeout` seconds (None: no limit, same thread).
    A call past its limit is abandoned; its thread finishes (or not) on its own."""
    if timeout is None:
        return fn()
    job = _TOOL_THREADS.submit(fn)
    if not job.done.wait(max(timeout, 0.0)):
        raise InfraFailure(timeout_message(describe, timeout))
    if job.error is not None:
        raise job.error
    assert job.result is not None
    return job.result


def run_call(
    call: ToolCall,
    router: ToolRouter,
    ctx: EpisodeContext,
    max_chars: int,
    clock: Callable[[], float] = time.perf_counter,
    timeout: float | None = None,
    intercept: ToolIntercept | None = None,
) -> CallOutcome:
    """Execute `call`; every failure becomes an outcome with an error kind, never an exception.

    With a `timeout`, a call still running after that many seconds is reported as an `infra` error at once,
    so one hung tool cannot hold up a batch of episodes. An `intercept` may replace the tool's execution once
    the call has resolved and its arguments validated (fault injection).

    A result recorded in the snapshot for exactly this call (an imported agent log) is returned verbatim,
    uncut, so the replay sees the bytes the original agent saw. Names or arguments holding a lone surrogate or
    NUL are a `format` outcome naming the value, whichever door the call came through.
    """
    start = clock()
    problem = call_problem(call)
    if problem is not None:
        return problem_outcome(problem).model_copy(update={"duration_s": clock() - start})
    recorded = ctx.web.tool_result(call.server, call.name, call.arguments)
    if recorded is not None:
        return CallOutcome(
            server=call.server,
            tool=call.name,
            arguments=dict(call.arguments),
            call_id=call.call_id,
            text=recorded.result,
            error_kind=recorded.error_kind,
            error=recorded.result if recorded.error_kind else None,
            duration_s=clock() - start,
        )
    server = call.server
    error_kind: ErrorKind | None = None
    error: str | None = None
    try:
        server, tool = router.resolve(call)
        try:
            args = tool.arguments_model.model_validate(call.arguments)
        except ValidationError as exc:
            raise ToolFailure(describe_validation_error(tool.name, exc)) from exc
        execute: Callable[[], str] = functools.partial(tool.run, args, ctx)
        if intercept is not None:
            execute = intercept(server, tool, args, execute)
        text = run_with_timeout(
            execute,
            timeout if tool.may_hang(ctx) else None,
            describe_call(call.name, server),
        )
    except ToolFailure as exc:
        error_kind, text = "tool", str(exc)
        error = text
    except InfraFailure as exc:
        error_kind, text = "infra", str(exc)
        error = text
    except Exception as exc:  # a bug in a tool must not end the episode; it is ours, not the model's
        logger.exception("tool %s/%s crashed", server, call.name)
        error_kind, error = "infra", f"internal error: {type(exc).__name__}: {exc}"
        text = f"Tool call to {call.name} on {server} failed. Error: {error}"
    text, truncated = truncate_result(text, max_chars)
    return CallOutcome(
        server=server,
        tool=call.name,
        arguments=dict(call.arguments),
        call_id=call.call_id,
        text=text,
        error_kind=error_kind,
        error=error,
        duration_s=clock() - start,
        truncated=truncated,
    )


CallRunner = Callable[
    [ToolCall, ToolRouter, EpisodeContext, int, Callable[[], float], float | None], CallOutcome
]
"""The signature of `run_call`: what `ResearchEnv.call_runner` holds (a hook for fault injection)."""


def problem_outcome(problem: ParseProblem) -> CallOutcome:
    """The outcome reported for a tool call the model wrote but that could not be parsed."""
    text = (
        f"Your tool call could not be parsed: {problem.message}\n"
        "Write the tool call exactly in the format described in the system prompt."
    )
    return CallOutcome(
        server=None,
        tool="",
        arguments={},
        call_id=problem.call_id,
        text=text,
        error_kind="format",
        error=problem.message,
    )
