"""`miroenv serve-mcp`: the profile's tool servers as MCP servers over stdio, or streamable HTTP and SSE."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from miroenv.cli.app import app
from miroenv.cli.run import SANDBOX_HELP
from miroenv.env import EnvConfig
from miroenv.extras import requires_extra
from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.select import select_backend
from miroenv.tools.profiles import get_profile
from miroenv.web.snapshot import Snapshot, SnapshotError

if TYPE_CHECKING:
    from miroenv.mcp_server import Endpoint, ServedTools

TRANSPORTS = ("stdio", "http")
DEFAULT_TOOL_TIMEOUT = EnvConfig.model_fields["tool_timeout_s"].default


def _fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; the exit (status 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _say(message: str) -> None:
    """Status lines go to stderr: in stdio mode stdout is the MCP channel."""
    typer.echo(message, err=True)


def _announce_urls(endpoints: list[Endpoint]) -> None:
    """Print each server's URLs once the HTTP port listens, one block per transport."""
    titles = {"streamable-http": "streamable HTTP", "sse": "SSE (MiroThinker's URL mode)"}
    for transport, title in titles.items():
        _say(f"serving MCP over {title}:")
        for endpoint in endpoints:
            if endpoint.transport == transport:
                _say(f"  {endpoint.server}: {endpoint.url}")


SCOPE_HELP = (
    "session: a sandbox belongs to the MCP session that made it and ends with it | server: any connection "
    "may use a sandbox by its id until it has been unused for create_sandbox's timeout (for MiroThinker's tool "
    "manager, which connects once per call)."
)
CONNECT_HELP = (
    "stdio only: forward to the `serve-mcp --transport http` at this URL (e.g. http://127.0.0.1:8000) instead "
    "of serving tools here, so per-call stdio processes share its server-scope sandboxes."
)


@app.command("serve-mcp")
def serve_mcp(
    snapshot: Annotated[
        Path | None,
        typer.Option(help="Snapshot directory: the replayed web the tools read (required unless --connect)."),
    ] = None,
    profile: Annotated[str, typer.Option(help="Tool profile whose servers are served.")] = "mirothinker_v1",
    server: Annotated[
        list[str] | None,
        typer.Option(help="Server to serve (repeatable); required for stdio when the profile has several."),
    ] = None,
    transport: Annotated[
        str,
        typer.Option(help="stdio (one server per process) | http (all servers, streamable HTTP and SSE)."),
    ] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP: port to listen on (0 picks a free one).")] = 8000,
    sandbox: Annotated[str, typer.Option(help=SANDBOX_HELP)] = "auto",
    sandbox_scope: Annotated[str, typer.Option(help=SCOPE_HELP)] = "session",
    connect: Annotated[str | None, typer.Option(help=CONNECT_HELP)] = None,
    tool_timeout: Annotated[
        float, typer.Option(help="Seconds before a hung tool call is reported as an infra error.")
    ] = DEFAULT_TOOL_TIMEOUT,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where download_file_from_sandbox_to_local writes files, one folder per session "
            "(per sandbox in server scope)."
        ),
    ] = None,
    max_body_bytes: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="16 MiB",
            help="HTTP: largest request body served, on streamable HTTP and SSE alike (and so through "
            "--connect); a larger one is answered with HTTP 413 and a JSON-RPC error naming this limit.",
        ),
    ] = None,
    max_sandboxes: Annotated[
        int | None,
        typer.Option(
            min=1,
            show_default="32",
            help="Sandboxes alive at once in this process, over all sessions (either scope); create_sandbox "
            "past it answers with an infra error naming this limit.",
        ),
    ] = None,
) -> None:
    """Serve the profile's tools over MCP with MiroThinker's server and tool names; one episode per session."""
    with requires_extra("mcp", "serve-mcp"):
        from miroenv import mcp_server
    if transport not in TRANSPORTS:
        raise _fail(f"unknown transport {transport!r}; choose one of: {', '.join(TRANSPORTS)}")
    if sandbox_scope not in mcp_server.SANDBOX_SCOPES:
        raise _fail(
            f"unknown sandbox scope {sandbox_scope!r}; choose one of: {', '.join(mcp_server.SANDBOX_SCOPES)}"
        )
    if connect is not None:
        if max_body_bytes is not None or max_sandboxes is not None:
            raise _fail(
                "--connect forwards to a server whose limits are its own; give --max-body-bytes and "
                "--max-sandboxes to that server"
            )
        _forward(connect, server or [], transport, snapshot, sandbox_scope)
        return
    body_limit = max_body_bytes or mcp_server.DEFAULT_MAX_BODY_BYTES
    sandbox_limit = max_sandboxes or mcp_server.DEFAULT_MAX_SANDBOXES
    if snapshot is None:
        raise _fail("--snapshot is required (or --connect URL, to forward to a running serve-mcp)")
    if not snapshot.is_dir():
        raise _fail(f"snapshot directory not found: {snapshot}")
    try:
        chosen = get_profile(profile)
        servers = mcp_server.select_servers(chosen, server or ())
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if transport == "stdio" and len(servers) != 1:
        raise _fail(
            "stdio serves one server per process; choose it with --server: "
            + ", ".join(s.name for s in servers)
        )
    if transport == "stdio" and sandbox_scope == "server":
        raise _fail(
            "--sandbox-scope server needs --transport http: a stdio process ends with its only connection. "
            "Run one `serve-mcp --transport http --sandbox-scope server` and start stdio processes with "
            "--connect URL to share its sandboxes"
        )
    _configure_logging()
    try:
        web = Snapshot(snapshot)
    except SnapshotError as exc:
        raise _fail(str(exc)) from exc
    backend = None
    try:
        if mcp_server.needs_sandboxes(servers):
            try:
                selection = select_backend(  # logs which backend and why
                    sandbox, docker_options=mcp_server.backend_options(sandbox_limit)
                )
            except (ValueError, SandboxError) as exc:
                raise _fail(str(exc)) from exc
            backend = selection.backend
        tools = mcp_server.ServedTools(
            web,
            chosen,
            servers,
            sandboxes=backend,
            sandbox_scope="server" if sandbox_scope == "server" else "session",
            tool_timeout_s=tool_timeout,
            output_dir=output_dir,
            max_body_bytes=body_limit,
            max_sandboxes=sandbox_limit,
        )
        _say(
            f"snapshot {web.name} ({web.content_hash[:19]}…), profile {chosen.name}, sandbox scope {sandbox_scope}"
        )
        _say(f"limits: request bodies {body_limit} bytes, {sandbox_limit} sandboxes at once")
        _serve(tools, transport, host, port)
    finally:
        if backend is not None:
            backend.close()
        web.close()


def _configure_logging() -> None:
    """Logs go to stderr (stdout may be the MCP channel); miroenv's own at INFO."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("miroenv").setLevel(logging.INFO)


def _forward(url: str, servers: list[str], transport: str, snapshot: Path | None, sandbox_scope: str) -> None:
    """`--connect`: serve one server over stdio by forwarding to a running HTTP serve-mcp."""
    from miroenv import mcp_server

    if transport != "stdio":
        raise _fail(
            "--connect makes a stdio server that forwards to an HTTP one; use it with --transport stdio"
        )
    if snapshot is not None:
        raise _fail("--connect forwards to a server that reads its own snapshot; leave out --snapshot")
    if sandbox_scope != "session":
        raise _fail(
            "--connect forwards to a server whose sandbox scope is its own; start that server with "
            "--sandbox-scope server"
        )
    if not url.startswith(("http://", "https://")):
        raise _fail(f"--connect needs the http:// URL of a `serve-mcp --transport http`, not {url!r}")
    if len(servers) != 1:
        raise _fail("--connect forwards one server per process; choose it with --server")
    _configure_logging()
    _say(f"forwarding {servers[0]} over stdio to {mcp_server.upstream_url(url, servers[0])}")
    try:
        anyio.run(mcp_server.serve_stdio_proxy, url, servers[0])
    except mcp_server.CannotConnect as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        _say("interrupted; shutting down")


def _serve(tools: ServedTools, transport: str, host: str, port: int) -> None:
    """Run the chosen transport until end of input (stdio) or an interrupt (HTTP)."""
    from miroenv import mcp_server

    try:
        if transport == "stdio":
            (only,) = tools.servers
            _say(f"serving {only.name} over stdio")
            anyio.run(mcp_server.serve_stdio, tools, only)
            return
        try:
            anyio.run(mcp_server.serve_http, tools, host, port, _announce_urls)
        except mcp_server.CannotListen as exc:
            raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        _say("interrupted; shutting down")
