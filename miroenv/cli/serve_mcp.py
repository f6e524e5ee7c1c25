"""`miroenv serve-mcp`: the profile's tool servers as MCP servers over stdio or streamable HTTP."""

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
from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.select import select_backend
from miroenv.tools.profiles import get_profile
from miroenv.web.snapshot import Snapshot, SnapshotError

if TYPE_CHECKING:
    from miroenv.mcp_server import ServedTools

TRANSPORTS = ("stdio", "http")
DEFAULT_TOOL_TIMEOUT = EnvConfig.model_fields["tool_timeout_s"].default


def _fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; the exit (status 2) to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _say(message: str) -> None:
    """Status lines go to stderr: in stdio mode stdout is the MCP channel."""
    typer.echo(message, err=True)


def _announce_urls(urls: dict[str, str]) -> None:
    """Print each server's URL once the HTTP port listens."""
    _say("serving MCP over streamable HTTP:")
    for name, url in urls.items():
        _say(f"  {name}: {url}")


@app.command("serve-mcp")
def serve_mcp(
    snapshot: Annotated[Path, typer.Option(help="Snapshot directory: the replayed web the tools read.")],
    profile: Annotated[str, typer.Option(help="Tool profile whose servers are served.")] = "mirothinker_v1",
    server: Annotated[
        list[str] | None,
        typer.Option(help="Server to serve (repeatable); required for stdio when the profile has several."),
    ] = None,
    transport: Annotated[str, typer.Option(help="stdio (one server per process) | http (all servers).")] = (
        "stdio"
    ),
    host: Annotated[str, typer.Option(help="HTTP: address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP: port to listen on (0 picks a free one).")] = 8000,
    sandbox: Annotated[str, typer.Option(help=SANDBOX_HELP)] = "auto",
    tool_timeout: Annotated[
        float, typer.Option(help="Seconds before a hung tool call is reported as an infra error.")
    ] = DEFAULT_TOOL_TIMEOUT,
    output_dir: Annotated[
        Path | None,
        typer.Option(help="Where download_file_from_sandbox_to_local writes files, one folder per session."),
    ] = None,
) -> None:
    """Serve the profile's tools over MCP with MiroThinker's server and tool names; one episode per session."""
    try:
        from miroenv import mcp_server
    except ImportError as exc:
        raise _fail(
            f"the MCP server needs the `mcp` extra ({exc}); install it with: pip install 'miroenv[mcp]'"
        ) from exc
    if transport not in TRANSPORTS:
        raise _fail(f"unknown transport {transport!r}; choose one of: {', '.join(TRANSPORTS)}")
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
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("miroenv").setLevel(logging.INFO)
    try:
        web = Snapshot(snapshot)
    except SnapshotError as exc:
        raise _fail(str(exc)) from exc
    backend = None
    try:
        if mcp_server.needs_sandboxes(servers):
            try:
                selection = select_backend(sandbox)  # logs which backend and why
            except (ValueError, SandboxError) as exc:
                raise _fail(str(exc)) from exc
            backend = selection.backend
        tools = mcp_server.ServedTools(
            web, chosen, servers, sandboxes=backend, tool_timeout_s=tool_timeout, output_dir=output_dir
        )
        _say(f"snapshot {web.name} ({web.content_hash[:19]}…), profile {chosen.name}")
        _serve(tools, transport, host, port)
    finally:
        if backend is not None:
            backend.close()
        web.close()


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
