"""A tool profile's servers as MCP servers (`miroenv serve-mcp`), one episode per MCP session.

Each tool server of the profile (MiroThinker v1.0: `tool-python`, `search_and_scrape_webpage`,
`jina_scrape_llm_summary`) becomes one MCP server with the same name, tool names, descriptions and input
schemas as the profile's `ToolSpec`s. A call goes through `run_call`, the code path of an env step, so the
result text is what an episode would show. Every MCP session (a stdio process, a streamable-HTTP session id
or an SSE connection) gets its own `EpisodeContext`.

Sandboxes have a scope. In `session` scope (the default) they belong to the session's episode: invisible to
other sessions and released when the session ends. In `server` scope they belong to the serving process, as
E2B sandboxes belong to E2B rather than to MiroThinker's `tool-python` process: any connection can use one
by its (unguessable) id until it has been idle for `create_sandbox`'s `timeout` or the server shuts down.
That is what MiroThinker's tool manager needs, since it opens a new connection for every tool call.

The servers speak the handshake protocol era (`initialize`), as MiroThinker's FastMCP servers do: the
stateless 2026 era has no session to hang episode state on. `serve_stdio_proxy` serves one server over
stdio by forwarding to a long-lived HTTP server, so per-call stdio processes share its sandboxes.

Two limits hold whatever the transport: a request body over `max_body_bytes` is refused before it is parsed
(HTTP 413 with a JSON-RPC error naming the limit, which the SSE stream also delivers to the waiting request,
and which a `--connect` proxy relays), and at most `max_sandboxes` sandboxes live at once in the process
(`create_sandbox` past it answers with an `infra` error naming the limit).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import re
import secrets
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, get_args
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
import mcp_types as types
import uvicorn
from mcp.client.client import Client
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_loop
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from miroenv._version import __version__
from miroenv.protocol.calls import ToolCall
from miroenv.sandbox.base import SandboxBackend
from miroenv.tasks import Task
from miroenv.tools.base import EpisodeContext, Tool, ToolServer
from miroenv.tools.profiles import ToolProfile
from miroenv.tools.python import DEFAULT_TIMEOUT, SANDBOXES_KEY, CreateSandbox, SandboxTool
from miroenv.tools.runner import CallOutcome, run_call
from miroenv.web.base import Web

logger = logging.getLogger(__name__)

SESSION_STATE_KEY = "miroenv.session"
"""Where a connection's `SessionEpisode` lives in the MCP SDK's per-connection `state`."""

ERROR_KIND_META = "miroenv/error_kind"
"""`_meta` key of a tool result that failed: miroenv's error kind (`tool` or `infra`)."""

MAX_CONCURRENT_CALLS = 256
"""Tool calls running at once in worker threads, across all sessions of one process."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

SandboxScope = Literal["session", "server"]
SANDBOX_SCOPES: tuple[str, ...] = get_args(SandboxScope)

SANDBOX_REFRESH_S = float(DEFAULT_TIMEOUT)
"""How long a server-scope sandbox lives after each call on it: MiroThinker's `tool-python` resets an E2B
sandbox's timeout to its 600 s default before and after every call."""

EXPIRY_CHECK_S = 1.0
"""How often server-scope sandboxes are checked for expiry (a release is at most this late)."""

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest HTTP request body served (`--max-body-bytes`): a `run_python_code` cell or command of 16 MiB."""

DEFAULT_MAX_SANDBOXES = 32
"""Sandboxes alive at once in one serving process, over all sessions (`--max-sandboxes`)."""

WARM_POOL = 2
"""Docker containers kept started and ready for the next `create_sandbox`."""

PEEK_BYTES = 4096
"""Bytes kept from each end of a refused body, to find the JSON-RPC request id to answer."""

DRAIN_MAX_BYTES = 1 << 30
"""Bytes of a refused body read before it is answered anyway (a body that never ends)."""


class CannotListen(Exception):
    """The HTTP address could not be bound (port in use, address not local, not permitted)."""


class CannotConnect(Exception):
    """A stdio proxy's upstream server could not be reached, or does not serve the requested server."""


class Endpoint(BaseModel):
    """Where one MCP server can be reached over one HTTP transport."""

    model_config = ConfigDict(frozen=True)

    server: str
    transport: Literal["streamable-http", "sse"]
    url: str


def select_servers(profile: ToolProfile, names: Sequence[str] = ()) -> tuple[ToolServer, ...]:
    """The profile's servers named in `names` (all of them when empty); `ValueError` lists the valid names."""
    by_name = {server.name: server for server in profile.servers}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(
            f"unknown server {unknown[0]!r} for profile {profile.name}; choose one of: {', '.join(by_name)}"
        )
    return tuple(by_name[name] for name in dict.fromkeys(names)) if names else profile.servers


def needs_sandboxes(servers: Sequence[ToolServer]) -> bool:
    """Whether any of these servers has a tool that runs in a sandbox (so a backend must be started)."""
    return any(isinstance(tool, SandboxTool) for server in servers for tool in server.tools)


def sandbox_lifetime(arguments: Mapping[str, Any]) -> float:
    """Seconds a new server-scope sandbox lives if unused: `create_sandbox`'s `timeout`, capped at 600 s as
    MiroThinker caps it; a missing, non-numeric or non-positive value gives the 600 s default."""
    value = arguments.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool):
        return SANDBOX_REFRESH_S
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return SANDBOX_REFRESH_S
    if not math.isfinite(seconds) or seconds <= 0:
        return SANDBOX_REFRESH_S
    return min(seconds, SANDBOX_REFRESH_S)


@dataclass
class SessionEpisode:
    """An episode and the lock that runs its calls one at a time, as a step does: one per MCP session, and
    one per sandbox in server scope."""

    ctx: EpisodeContext
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    slots: int = 0
    """Sandbox-cap slots its sandboxes hold (session scope), given back when it ends."""


@dataclass
class SharedSandbox:
    """A server-scope sandbox: the episode holding it (whose lock orders its calls), and when it expires."""

    episode: SessionEpisode
    label: str
    """`backend:id` (the backend's own id, never the public one, which is a capability): for logs."""
    expires_at: float
    released: bool = False


class SharedSandboxes:
    """Server-scope sandboxes, addressable by public id from any connection of the process.

    Each lives in an episode of its own whose task id is a fresh 256-bit secret, so its public id (derived
    from the task id, as every sandbox id is) cannot be guessed: ids are capabilities shared across
    connections. A sandbox is released `timeout` seconds after `create_sandbox` if unused, 600 s after the
    end of its last call (E2B's timeout, as MiroThinker refreshes it), or when serving stops; never while a
    call on it runs.
    """

    def __init__(self, tools: ServedTools) -> None:
        self._tools = tools
        self._by_id: dict[str, SharedSandbox] = {}

    def find(self, arguments: Mapping[str, Any]) -> SharedSandbox | None:
        """The live sandbox a call's `sandbox_id` names, if any."""
        sandbox_id = arguments.get("sandbox_id")
        return self._by_id.get(sandbox_id) if isinstance(sandbox_id, str) else None

    async def create(self, server: str, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        """Run `create_sandbox` in a fresh episode and keep the sandbox it made under its public id; the
        caller has taken its cap slot, which is given back when nothing is kept."""
        episode_id = f"mcp-sandbox-{uuid.uuid4().hex[:16]}"
        episode = SessionEpisode(self._tools.new_episode(episode_id, task_id=secrets.token_hex(32)))
        try:
            outcome = await self._tools.call_in_thread(episode.ctx, server, tool, arguments)
        except BaseException:
            self._tools.sandbox_cap.give_back()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(episode.ctx.close)
            raise
        made: dict[str, Any] = episode.ctx.state.get(SANDBOXES_KEY, {})
        if len(made) != 1:  # refused or failed: nothing to keep
            self._tools.sandbox_cap.give_back()
            await anyio.to_thread.run_sync(episode.ctx.close)
            return outcome
        ((public_id, sandbox),) = made.items()
        lifetime = sandbox_lifetime(arguments)
        label = f"{getattr(sandbox, 'backend', type(sandbox).__name__)}:{sandbox.sandbox_id}"
        self._by_id[public_id] = SharedSandbox(episode, label, time.monotonic() + lifetime)
        logger.info("server-scope sandbox %s created; released after %g s unused", label, lifetime)
        return outcome

    async def call(
        self, entry: SharedSandbox, server: str, tool: str, arguments: dict[str, Any]
    ) -> CallOutcome | None:
        """Run a call in the sandbox's episode, refreshing its timeout; None if it was released meanwhile."""
        async with entry.episode.lock:
            if entry.released:
                return None
            entry.expires_at = time.monotonic() + SANDBOX_REFRESH_S
            try:
                return await self._tools.call_in_thread(entry.episode.ctx, server, tool, arguments)
            finally:
                entry.expires_at = time.monotonic() + SANDBOX_REFRESH_S

    async def expire(self) -> None:
        """Release every sandbox past its expiry with no call running on it."""
        now = time.monotonic()
        due = [
            (public_id, entry)
            for public_id, entry in self._by_id.items()
            if entry.expires_at <= now and not entry.episode.lock.locked()
        ]
        for public_id, entry in due:
            del self._by_id[public_id]
            entry.released = True
        for _, entry in due:
            await anyio.to_thread.run_sync(entry.episode.ctx.close)
            self._tools.sandbox_cap.give_back()
            logger.info("server-scope sandbox %s expired; released", entry.label)

    async def expire_forever(self) -> None:
        """Check for expired sandboxes every `EXPIRY_CHECK_S` until cancelled."""
        while True:
            await anyio.sleep(EXPIRY_CHECK_S)
            await self.expire()

    async def release_all(self) -> None:
        """Release every sandbox (serving stops), waiting for calls still running on them."""
        entries = list(self._by_id.values())
        self._by_id.clear()
        for entry in entries:
            async with entry.episode.lock:
                entry.released = True
            await anyio.to_thread.run_sync(entry.episode.ctx.close)
            self._tools.sandbox_cap.give_back()
        logger.info("released %d server-scope sandbox(es) at shutdown", len(entries))


class SandboxCap:
    """At most `limit` sandboxes alive at once in one serving process, in either scope.

    A slot is taken before `create_sandbox` runs and given back when it made none, when a server-scope
    sandbox is released, or when a session ends with its sandboxes; used from the event loop only.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> bool:
        """Reserve a slot for one sandbox; False when all `limit` are in use."""
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self, count: int = 1) -> None:
        """Free the slots of `count` sandboxes that are gone (or were never made)."""
        self.used = max(0, self.used - count)


def backend_options(max_sandboxes: int) -> dict[str, Any]:
    """Docker backend options under which `max_sandboxes` (not the backend's own cap) is the binding limit:
    room for that many sandboxes in use plus the warm pool."""
    return {"pool_size": WARM_POOL, "max_containers": max_sandboxes + WARM_POOL}


def _positive(name: str, value: int) -> int:
    """`value` when it is a positive integer; else a ValueError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, not {value!r}")
    return value


class ServedTools:
    """What one `serve-mcp` process offers: a snapshot, a profile's servers, a sandbox backend and scope,
    and the limits every transport applies."""

    def __init__(
        self,
        web: Web,
        profile: ToolProfile,
        servers: Sequence[ToolServer] = (),
        *,
        sandboxes: SandboxBackend | None = None,
        sandbox_scope: SandboxScope = "session",
        tool_timeout_s: float | None = None,
        output_dir: Path | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_sandboxes: int = DEFAULT_MAX_SANDBOXES,
    ) -> None:
        if sandbox_scope not in SANDBOX_SCOPES:
            raise ValueError(
                f"unknown sandbox scope {sandbox_scope!r}; choose one of: {', '.join(SANDBOX_SCOPES)}"
            )
        self.max_body_bytes = _positive("max_body_bytes", max_body_bytes)
        self.sandbox_cap = SandboxCap(_positive("max_sandboxes", max_sandboxes))
        self.web = web
        self.profile = profile
        self.servers = tuple(servers) or profile.servers
        self.sandboxes = sandboxes
        self.sandbox_scope = sandbox_scope
        self.tool_timeout_s = tool_timeout_s
        self.output_dir = output_dir
        self.shared = SharedSandboxes(self) if sandbox_scope == "server" else None
        self._router = profile.router()
        self._tools = {(server.name, tool.name): tool for server in self.servers for tool in server.tools}
        self._limiter: anyio.CapacityLimiter | None = None

    def new_episode(self, episode_id: str, task_id: str | None = None) -> EpisodeContext:
        """A fresh episode; its task id (the episode id unless given) is what its sandbox ids derive from."""
        return EpisodeContext(
            web=self.web,
            task=Task(task_id=task_id or episode_id, question="(an MCP session)"),
            episode_id=episode_id,
            sandboxes=self.sandboxes,
            output_dir=self.output_dir / episode_id if self.output_dir is not None else None,
        )

    def open_episode(self, server: str) -> EpisodeContext:
        """A fresh episode for one session; its id (also its task id) makes its sandbox ids unique."""
        return self.new_episode(f"mcp-{server}-{uuid.uuid4().hex[:16]}")

    def call(self, ctx: EpisodeContext, server: str, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        """Run one call in `ctx` exactly as an env step would (blocking: call it from a worker thread)."""
        return run_call(
            ToolCall(server=server, name=tool, arguments=arguments),
            self._router,
            ctx,
            self.profile.max_result_chars,
            timeout=self.tool_timeout_s,
        )

    async def call_in_thread(
        self, ctx: EpisodeContext, server: str, tool: str, arguments: dict[str, Any]
    ) -> CallOutcome:
        """`call` in a worker thread, without blocking the event loop (the caller holds the episode's lock)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_CALLS)
        return await anyio.to_thread.run_sync(self.call, ctx, server, tool, arguments, limiter=self._limiter)

    async def handle(
        self, episode: SessionEpisode, server: str, tool: str, arguments: dict[str, Any]
    ) -> CallOutcome:
        """A session's call, after its earlier ones: in server scope, sandbox calls go to the shared sandbox
        they name (or make one); anything else, and an id no shared sandbox has, runs in the session."""
        async with episode.lock:
            known = self._tools.get((server, tool))
            if isinstance(known, CreateSandbox):
                return await self._create(episode, server, tool, arguments)
            if self.shared is not None and isinstance(known, SandboxTool):
                entry = self.shared.find(arguments)
                if entry is not None:
                    outcome = await self.shared.call(entry, server, tool, arguments)
                    if outcome is not None:
                        return outcome
            return await self.call_in_thread(episode.ctx, server, tool, arguments)

    async def _create(
        self, episode: SessionEpisode, server: str, tool: str, arguments: dict[str, Any]
    ) -> CallOutcome:
        """`create_sandbox` within the process's sandbox cap: refused past it; in server scope a shared
        sandbox, else one of the session's, whose slot the session holds until it ends."""
        if not self.sandbox_cap.take():
            logger.warning(
                "create_sandbox refused: %d sandboxes alive, the --max-sandboxes limit",
                self.sandbox_cap.limit,
            )
            return self.cap_refusal(server, tool, arguments)
        if self.shared is not None:
            return await self.shared.create(server, tool, arguments)
        before = len(episode.ctx.state.get(SANDBOXES_KEY, {}))
        made = False
        try:
            outcome = await self.call_in_thread(episode.ctx, server, tool, arguments)
            made = len(episode.ctx.state.get(SANDBOXES_KEY, {})) > before
        finally:
            if made:
                episode.slots += 1
            else:
                self.sandbox_cap.give_back()
        return outcome

    def cap_refusal(self, server: str, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        """The `infra` answer to a `create_sandbox` past the cap, naming the limit and what frees a slot."""
        limit = self.sandbox_cap.limit
        frees = (
            "a sandbox is released once unused for its create_sandbox timeout (at most 600 s)"
            if self.shared is not None
            else "a session's sandboxes are released when it ends"
        )
        text = (
            f"[ERROR]: Failed to create sandbox: this server already runs {limit} sandboxes, its limit "
            f"(serve-mcp --max-sandboxes {limit}); {frees}. Please retry later."
        )
        return CallOutcome(
            server=server,
            tool=tool,
            arguments=arguments,
            text=text,
            error_kind="infra",
            error=f"sandbox limit of {limit} reached",
        )

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """While transports serve: expire server-scope sandboxes in the background, and release them all at
        the end (after the sessions, whose exit runs first)."""
        shared = self.shared
        if shared is None:
            yield
            return
        async with anyio.create_task_group() as group:
            group.start_soon(shared.expire_forever)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await shared.release_all()


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The MCP connection (one session) a request arrived on.

    mcp 2.3 hands low-level handlers a `ServerRequestContext` whose `Connection` (per-connection `state` and
    the `exit_stack` unwound when the session ends) is only reachable through its `ServerSession`; the SDK
    marks this for its Context rework, hence one place that reaches for it and a clear error if it moves.
    """
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "this version of the mcp SDK does not expose the request's connection; miroenv's MCP server "
            "needs mcp 2.3-compatible internals for per-session state"
        )
    return connection


def _rejected_call(tools: Mapping[str, Tool[Any]], name: str, arguments: Mapping[str, Any]) -> bool:
    """Whether FastMCP would refuse this call before running the tool (unknown tool, invalid arguments):
    those results carry `isError`, while a tool's own refusals are plain text, as MiroThinker returns them."""
    tool = tools.get(name)
    if tool is None:
        return True
    try:
        tool.arguments_model.model_validate(arguments)
    except ValidationError:
        return True
    return False


def tool_result(outcome: CallOutcome, rejected: bool) -> types.CallToolResult:
    """The MCP result for an outcome: its text, `isError` for rejected calls, the error kind in `_meta`."""
    meta = {ERROR_KIND_META: outcome.error_kind} if outcome.error_kind is not None else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.text)], is_error=rejected, meta=meta
    )


async def _close_episode(episode: SessionEpisode, cap: SandboxCap) -> None:
    """End a session's episode off the event loop (removing containers blocks), free its sandbox-cap slots,
    and say so."""
    sandboxes = len(episode.ctx.state.get(SANDBOXES_KEY, {}))
    try:
        await anyio.to_thread.run_sync(episode.ctx.close)
    finally:
        cap.give_back(episode.slots)
        episode.slots = 0
    logger.info("session %s ended; released %d sandbox(es)", episode.ctx.episode_id, sandboxes)


CallTool = Callable[
    [ServerRequestContext[Any, Any], types.CallToolRequestParams], Awaitable[types.CallToolResult]
]
"""A low-level `tools/call` handler."""


def lowlevel_server(name: str, listing: types.ListToolsResult, call_tool: CallTool) -> Server[Any]:
    """An MCP server that lists `listing` (schemas exactly as given) and answers calls with `call_tool`."""

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

    async def no_discover(ctx: ServerRequestContext[Any, Any], params: types.RequestParams) -> None:
        raise MCPError(types.METHOD_NOT_FOUND, "Method not found", "server/discover")

    lowlevel = Server(name, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)
    # A client probing for the stateless 2026 era falls back to the initialize handshake, as with FastMCP.
    lowlevel.add_request_handler("server/discover", types.RequestParams, no_discover)
    lowlevel.middleware.append(exact_schemas({tool.name: tool.input_schema for tool in listing.tools}))
    return lowlevel


def build_server(tools: ServedTools, server: ToolServer) -> Server[Any]:
    """One MCP server for `server`: its tool listing, and calls run in the requesting session's episode."""
    by_name = {tool.name: tool for tool in server.tools}
    listing = types.ListToolsResult(
        tools=[
            types.Tool(name=spec.name, description=spec.description, input_schema=spec.input_schema)
            for spec in server.specs()
        ]
    )

    def session_episode(ctx: ServerRequestContext[Any, Any]) -> SessionEpisode:
        connection = connection_of(ctx)
        episode = connection.state.get(SESSION_STATE_KEY)
        if not isinstance(episode, SessionEpisode):
            episode = SessionEpisode(tools.open_episode(server.name))
            connection.state[SESSION_STATE_KEY] = episode
            connection.exit_stack.push_async_callback(_close_episode, episode, tools.sandbox_cap)
            logger.info("session %s started", episode.ctx.episode_id)
        return episode

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(
                types.INVALID_REQUEST,
                f"{server.name} keeps per-session state (sandboxes) and serves the initialize handshake "
                "protocol era only; connect without pinning a 2026 protocol version",
            )
        arguments = dict(params.arguments or {})
        outcome = await tools.handle(session_episode(ctx), server.name, params.name, arguments)
        return tool_result(outcome, _rejected_call(by_name, params.name, arguments))

    return lowlevel_server(server.name, listing, call_tool)


def exact_schemas(schemas: Mapping[str, dict[str, Any]]) -> ServerMiddleware[Any]:
    """Middleware that puts each tool's input schema back into a `tools/list` result as the profile wrote it.

    The SDK re-validates results against the protocol's `Tool` model, which moves `type` before the other
    keys (`title`); MiroThinker's FastMCP servers publish pydantic's order, and prompts render the schema
    as text, so the key order is part of what a model sees.
    """

    async def restore(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "tools/list" and isinstance(result, dict):
            for tool in result.get("tools", []):
                schema = schemas.get(tool.get("name"))
                if schema is not None:
                    tool["inputSchema"] = copy.deepcopy(schema)
        return result

    return restore


async def serve_stdio(tools: ServedTools, server: ToolServer) -> None:
    """Serve one server over this process's stdin/stdout until end of input; the session ends with it."""
    lowlevel = build_server(tools, server)
    async with tools.serving(), stdio_server() as (read_stream, write_stream):
        await serve_loop(lowlevel, read_stream, write_stream, lifespan_state={})


def upstream_url(base_url: str, server: str) -> str:
    """The streamable-HTTP URL of `server` on a `serve-mcp --transport http` at `base_url`."""
    return f"{base_url.rstrip('/')}/{server}/mcp"


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failure, looking inside the exception groups task groups raise."""
    inner = getattr(exc, "exceptions", ())  # an exception group (a builtin from Python 3.11 on)
    while inner and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", ())
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def serve_stdio_proxy(base_url: str, server: str) -> None:
    """Serve `server` over stdin/stdout by forwarding to the long-lived `serve-mcp` at `base_url`.

    The proxy holds one upstream session for its own lifetime and passes listings and results through
    unchanged; with the upstream in server scope, sandboxes outlive the proxy, so a framework that starts a
    stdio process per tool call (MiroThinker's tool manager) keeps them across calls.
    """
    url = upstream_url(base_url, server)
    try:
        await _forward_stdio(url, server)
    except CannotConnect:
        raise
    except Exception as exc:  # the upstream went away mid-session: its client's task group fails
        raise CannotConnect(f"lost the connection to {server} at {url}: {_reason(exc)}") from exc


async def _forward_stdio(url: str, server: str) -> None:
    """`serve_stdio_proxy`'s session: connect to `url`, then serve stdin/stdout until end of input."""
    async with AsyncExitStack() as stack:
        try:
            upstream = await stack.enter_async_context(Client(url, mode="legacy"))
            listing = await upstream.list_tools()
        except Exception as exc:
            raise CannotConnect(f"cannot reach {server} at {url}: {_reason(exc)}") from exc
        served = upstream.server_info.name if upstream.server_info is not None else None
        if served != server:
            raise CannotConnect(f"{url} serves {served!r}, not {server!r}")

        async def call_tool(
            ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            try:
                return await upstream.call_tool(params.name, params.arguments)
            except MCPError:
                raise
            except Exception as exc:
                raise MCPError(types.INTERNAL_ERROR, f"upstream {url} failed: {_reason(exc)}") from exc

        lowlevel = lowlevel_server(server, listing, call_tool)
        async with stdio_server() as (read_stream, write_stream):
            await serve_loop(lowlevel, read_stream, write_stream, lifespan_state={})


def server_path(server: ToolServer) -> str:
    """The URL path of a server's streamable-HTTP endpoint: `/<server name>/mcp`."""
    return f"/{server.name}/mcp"


def sse_path(server: ToolServer) -> str:
    """The URL path of a server's SSE endpoint (the older HTTP+SSE transport): `/<server name>/sse`."""
    return f"/{server.name}/sse"


def sse_messages_path(server: ToolServer) -> str:
    """Where an SSE client posts its messages (the `endpoint` event tells it): `/<server name>/messages/`."""
    return f"/{server.name}/messages/"


RequestId = int | str
"""A JSON-RPC request id."""

_SCALAR = rb'(?:"[^"\\]*"|-?\d+(?:\.\d+)?|true|false|null)'
_MEMBER = rb'"[^"\\]*"\s*:\s*' + _SCALAR
_ID = rb'"id"\s*:\s*(-?\d+|"[^"\\]*")'
_LEADING_ID = re.compile(rb"\s*\{\s*(?:" + _MEMBER + rb"\s*,\s*)*" + _ID)
_TRAILING_ID = re.compile(_ID + rb"\s*(?:,\s*" + _MEMBER + rb"\s*)*\}\s*$")


def request_id(head: bytes, tail: bytes) -> RequestId | None:
    """The top-level `id` of a JSON-RPC request known only by its first and last bytes (its body was too
    large to read): found among the plain members before the first nested value (the Python SDK writes
    `jsonrpc`, `id`, `method`, `params`) or after the last one (the TypeScript SDK puts `id` last)."""
    found = _LEADING_ID.match(head) or _TRAILING_ID.search(tail)
    if found is None:
        return None
    value = json.loads(found[1])
    return value if isinstance(value, int | str) else None


def too_large_error(size: int, limit: int, complete: bool, request: RequestId | None) -> types.JSONRPCError:
    """The JSON-RPC error for a body over the limit, naming its size, the limit and the option that sets it."""
    measured = f"{size} bytes" if complete else f"more than {size} bytes"
    message = (
        f"request body of {measured} is over this server's limit of {limit} bytes "
        f"({limit / 1048576:g} MiB; set with serve-mcp --max-body-bytes)"
    )
    return types.JSONRPCError(
        jsonrpc="2.0",
        id=request,
        error=types.ErrorData(
            code=types.INVALID_REQUEST, message=message, data={"max_body_bytes": limit, "body_bytes": size}
        ),
    )


OnRefused = Callable[[Scope, types.JSONRPCError], Awaitable[bool]]
"""Where else a refusal goes (the SSE stream of the session the POST names); True when it was delivered."""


class BodyLimit:
    """ASGI middleware that refuses request bodies over `limit` bytes before any MCP parsing.

    The body is read in full while under the limit (and then replayed to `app`); past it, the rest is read
    and dropped, keeping only `PEEK_BYTES` from each end to find the request id, and the request is answered
    with HTTP 413 and a JSON-RPC error (`application/json`, which the SDK's streamable-HTTP client reports as
    the call's error). `on_refused` gets the error first, for transports whose answers travel elsewhere:
    when it delivers it (on the SSE stream), the POST is answered 202 as every SSE message is, since the
    SDK's SSE client stops sending on a connection after any other status.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        security: TransportSecuritySettings | None = None,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.security = TransportSecurityMiddleware(security)
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Request(scope).headers.get("content-length", "")
        kept: list[bytes] | None = None if declared.isdigit() and int(declared) > self.limit else []
        head = b""
        tail = b""
        size = 0
        complete = False
        while size <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] != "http.request":  # the client left mid-body: nobody to answer
                return
            body: bytes = message.get("body", b"")
            size += len(body)
            if len(head) < PEEK_BYTES:
                head += body[: PEEK_BYTES - len(head)]
            tail = (tail + body[-PEEK_BYTES:])[-PEEK_BYTES:]
            if kept is not None:
                if size > self.limit:
                    kept = None
                else:
                    kept.append(body)
            if not message.get("more_body", False):
                complete = True
                break
        if kept is not None:
            await self.app(scope, _replay(b"".join(kept), receive), send)
            return
        await self.refuse(
            scope, receive, send, too_large_error(size, self.limit, complete, request_id(head, tail))
        )

    async def refuse(self, scope: Scope, receive: Receive, send: Send, error: types.JSONRPCError) -> None:
        """Answer a body over the limit with the JSON-RPC error (413, or 202 once `on_refused` delivered it),
        after the transport's Host/Origin checks (a request failing them gets the transport's own answer)."""
        checked = await self.security.validate_request(Request(scope), is_post=scope["method"] == "POST")
        if checked is not None:
            await checked(scope, receive, send)
            return
        logger.warning("refused a request: %s", error.error.message)
        delivered = self.on_refused is not None and await self.on_refused(scope, error)
        response = Response(
            error.model_dump_json(by_alias=True),  # "id": null included: clients require it
            status_code=202 if delivered else 413,
            media_type="application/json",
        )
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body as one message, then defers to the real one."""
    pending: deque[Message] = deque([{"type": "http.request", "body": body, "more_body": False}])

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


class MessageSender(Protocol):
    """The send side of an SSE session's stream of server-to-client messages."""

    async def send(self, item: SessionMessage, /) -> None:
        """Queue one message for the client."""


_SSE_SESSION = re.compile(rb"session_id=([0-9a-f]{32})")


class SseEndpoint:
    """ASGI app for a server's SSE stream: every GET is one MCP session, served until the client leaves.

    It remembers each live session's outgoing stream by the session id the `endpoint` event gives the
    client, so a POST refused before the transport read it (`BodyLimit`) is still answered on the stream
    where the client's request waits for it.
    """

    def __init__(self, transport: SseServerTransport, lowlevel: Server[Any]) -> None:
        self.transport = transport
        self.lowlevel = lowlevel
        self.streams: dict[str, MessageSender] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        session: dict[str, Any] = {}

        def remember() -> None:
            if "id" in session and "stream" in session:
                self.streams[session["id"]] = session["stream"]

        async def watched(message: Message) -> None:
            if "id" not in session and message["type"] == "http.response.body":
                found = _SSE_SESSION.search(message.get("body", b""))
                if found:
                    session["id"] = found[1].decode()
                    remember()
            await send(message)

        async with AsyncExitStack() as stack:
            try:
                read_stream, write_stream = await stack.enter_async_context(
                    self.transport.connect_sse(scope, receive, watched)
                )
            except ValueError:  # refused (DNS rebinding protection); the transport has answered
                return
            session["stream"] = write_stream
            remember()
            try:
                await serve_loop(self.lowlevel, read_stream, write_stream, lifespan_state={})
            finally:
                self.streams.pop(session.get("id", ""), None)

    async def deliver(self, scope: Scope, error: types.JSONRPCError) -> bool:
        """Send a refusal on the stream of the session a POST names; False when there is no such live session
        or no request id to answer."""
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id", [""])
        try:
            session_id = uuid.UUID(hex=values[0]).hex
        except ValueError:
            return False
        stream = self.streams.get(session_id)
        if stream is None or error.id is None:
            return False
        try:
            await stream.send(SessionMessage(error))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        return True


def http_app(tools: ServedTools, host: str = "127.0.0.1") -> Starlette:
    """A Starlette app serving every server of `tools` over streamable HTTP (at `server_path`) and over
    HTTP+SSE (at `sse_path`, the transport MiroThinker's tool manager uses for URL-configured servers).

    Bound to a local host, requests must name a local Host and Origin (DNS rebinding protection, as the SDK
    sets up for its own apps).
    """
    security = (
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        if host in LOCAL_HOSTS
        else None
    )
    lowlevels = [build_server(tools, server) for server in tools.servers]
    limit = tools.max_body_bytes
    managers = [
        StreamableHTTPSessionManager(app=lowlevel, security_settings=security, max_request_body_size=limit)
        for lowlevel in lowlevels
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(tools.serving())
            for manager in managers:
                await stack.enter_async_context(manager.run())
            yield

    routes: list[Route | Mount] = []
    for server, lowlevel, manager in zip(tools.servers, lowlevels, managers, strict=True):
        sse = SseServerTransport(
            sse_messages_path(server), security_settings=security, max_request_body_size=limit
        )
        stream = SseEndpoint(sse, lowlevel)
        posts = BodyLimit(sse.handle_post_message, limit, security, on_refused=stream.deliver)
        routes.append(
            Route(server_path(server), endpoint=BodyLimit(StreamableHTTPASGIApp(manager), limit, security))
        )
        routes.append(Route(sse_path(server), endpoint=stream, methods=["GET"]))
        routes.append(Mount(sse_messages_path(server), app=posts))
    return Starlette(routes=routes, lifespan=lifespan)


def format_url(host: str, port: int, path: str) -> str:
    """`http://host:port/path`, with IPv6 hosts bracketed."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def endpoints(tools: ServedTools, host: str, port: int) -> list[Endpoint]:
    """Every server's streamable-HTTP endpoint, then every server's SSE endpoint."""
    return [
        Endpoint(
            server=server.name, transport="streamable-http", url=format_url(host, port, server_path(server))
        )
        for server in tools.servers
    ] + [
        Endpoint(server=server.name, transport="sse", url=format_url(host, port, sse_path(server)))
        for server in tools.servers
    ]


async def serve_http(
    tools: ServedTools,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[list[Endpoint]], None] | None = None,
) -> None:
    """Serve every server over streamable HTTP and SSE until interrupted; `on_ready` gets the endpoints
    once the port listens (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound_port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        http_app(tools, host), log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    web_server = uvicorn.Server(config)
    with contextlib.closing(sock):
        async with anyio.create_task_group() as group:

            async def run() -> None:
                await web_server.serve(sockets=[sock])
                group.cancel_scope.cancel()

            group.start_soon(run)
            while not web_server.started:
                await anyio.sleep(0.02)
            if on_ready is not None:
                on_ready(endpoints(tools, host, bound_port))
