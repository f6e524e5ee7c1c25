"""A tool profile's servers as MCP servers (`miroenv serve-mcp`), one episode per MCP session.

Each tool server of the profile (MiroThinker v1.0: `tool-python`, `search_and_scrape_webpage`,
`jina_scrape_llm_summary`) becomes one MCP server with the same name, tool names, descriptions and input
schemas as the profile's `ToolSpec`s. A call goes through `run_call`, the code path of an env step, so the
result text is what an episode would show. Every MCP session (a stdio process, or a streamable-HTTP session
id) gets its own `EpisodeContext`: its sandboxes are invisible to other sessions and are released when the
session ends. The servers speak the handshake protocol era (`initialize`), as MiroThinker's FastMCP servers
do: the stateless 2026 era has no session to hang sandboxes on.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import uvicorn
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import serve_loop
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Route

from miroenv._version import __version__
from miroenv.protocol.calls import ToolCall
from miroenv.sandbox.base import SandboxBackend
from miroenv.tasks import Task
from miroenv.tools.base import EpisodeContext, Tool, ToolServer
from miroenv.tools.profiles import ToolProfile
from miroenv.tools.python import SANDBOXES_KEY, SandboxTool
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


class CannotListen(Exception):
    """The HTTP address could not be bound (port in use, address not local, not permitted)."""


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


@dataclass
class SessionEpisode:
    """One MCP session's episode: its context and a lock that runs its calls one at a time, as a step does."""

    ctx: EpisodeContext
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class ServedTools:
    """What one `serve-mcp` process offers: a snapshot, a profile's servers and a sandbox backend."""

    def __init__(
        self,
        web: Web,
        profile: ToolProfile,
        servers: Sequence[ToolServer] = (),
        *,
        sandboxes: SandboxBackend | None = None,
        tool_timeout_s: float | None = None,
        output_dir: Path | None = None,
    ) -> None:
        self.web = web
        self.profile = profile
        self.servers = tuple(servers) or profile.servers
        self.sandboxes = sandboxes
        self.tool_timeout_s = tool_timeout_s
        self.output_dir = output_dir
        self._router = profile.router()
        self._limiter: anyio.CapacityLimiter | None = None

    def open_episode(self, server: str) -> EpisodeContext:
        """A fresh episode for one session; its id (also its task id) makes its sandbox ids unique."""
        episode_id = f"mcp-{server}-{uuid.uuid4().hex[:16]}"
        return EpisodeContext(
            web=self.web,
            task=Task(task_id=episode_id, question="(an MCP session)"),
            episode_id=episode_id,
            sandboxes=self.sandboxes,
            output_dir=self.output_dir / episode_id if self.output_dir is not None else None,
        )

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
        self, episode: SessionEpisode, server: str, tool: str, arguments: dict[str, Any]
    ) -> CallOutcome:
        """`call` in a worker thread, after the session's earlier calls, without blocking the event loop."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_CALLS)
        async with episode.lock:
            return await anyio.to_thread.run_sync(
                self.call, episode.ctx, server, tool, arguments, limiter=self._limiter
            )


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


async def _close_episode(episode: SessionEpisode) -> None:
    """End a session's episode off the event loop (removing containers blocks), and say so."""
    sandboxes = len(episode.ctx.state.get(SANDBOXES_KEY, {}))
    await anyio.to_thread.run_sync(episode.ctx.close)
    logger.info("session %s ended; released %d sandbox(es)", episode.ctx.episode_id, sandboxes)


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
            connection.exit_stack.push_async_callback(_close_episode, episode)
            logger.info("session %s started", episode.ctx.episode_id)
        return episode

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return listing

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
        outcome = await tools.call_in_thread(session_episode(ctx), server.name, params.name, arguments)
        return tool_result(outcome, _rejected_call(by_name, params.name, arguments))

    async def no_discover(ctx: ServerRequestContext[Any, Any], params: types.RequestParams) -> None:
        raise MCPError(types.METHOD_NOT_FOUND, "Method not found", "server/discover")

    lowlevel = Server(server.name, version=__version__, on_list_tools=list_tools, on_call_tool=call_tool)
    # A client probing for the stateless 2026 era falls back to the initialize handshake, as with FastMCP.
    lowlevel.add_request_handler("server/discover", types.RequestParams, no_discover)
    lowlevel.middleware.append(exact_schemas({spec.name: spec.input_schema for spec in server.specs()}))
    return lowlevel


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
    async with stdio_server() as (read_stream, write_stream):
        await serve_loop(lowlevel, read_stream, write_stream, lifespan_state={})


def server_path(server: ToolServer) -> str:
    """The URL path of a server in the HTTP app: `/<server name>/mcp`."""
    return f"/{server.name}/mcp"


def http_app(tools: ServedTools, host: str = "127.0.0.1") -> Starlette:
    """A Starlette app serving every server of `tools` over streamable HTTP, each at `server_path`.

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
    managers = [
        StreamableHTTPSessionManager(app=build_server(tools, server), security_settings=security)
        for server in tools.servers
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for manager in managers:
                await stack.enter_async_context(manager.run())
            yield

    routes = [
        Route(server_path(server), endpoint=StreamableHTTPASGIApp(manager))
        for server, manager in zip(tools.servers, managers, strict=True)
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def format_url(host: str, port: int, path: str) -> str:
    """`http://host:port/path`, with IPv6 hosts bracketed."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


async def serve_http(
    tools: ServedTools,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[dict[str, str]], None] | None = None,
) -> None:
    """Serve every server over streamable HTTP until interrupted; `on_ready` gets {server: URL} once the
    port listens (port 0 picks a free one)."""
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
    urls = {server.name: format_url(host, bound_port, server_path(server)) for server in tools.servers}
    with contextlib.closing(sock):
        async with anyio.create_task_group() as group:

            async def run() -> None:
                await web_server.serve(sockets=[sock])
                group.cancel_scope.cancel()

            group.start_soon(run)
            while not web_server.started:
                await anyio.sleep(0.02)
            if on_ready is not None:
                on_ready(urls)
