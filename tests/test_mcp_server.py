"""`miroenv serve-mcp` as a real subprocess, driven by the `mcp` SDK's client over stdio and streamable HTTP."""

from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from miroenv.tools.profiles import mirothinker_v1
from miroenv.tools.standalone import run_tool_once
from miroenv.web.snapshot import Snapshot

mcp = pytest.importorskip("mcp")

from mcp import Client, ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.sse import sse_client  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp_types import CallToolResult, Tool  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from miroenv.cli import app  # noqa: E402
from tests.sandbox.conftest import skip_or_fail  # noqa: E402

EXPECTED_TOOLS = {
    "tool-python": {
        "create_sandbox": [],
        "run_command": ["command", "sandbox_id"],
        "run_python_code": ["code_block", "sandbox_id"],
        "upload_file_from_local_to_sandbox": ["sandbox_id", "local_file_path"],
        "download_file_from_internet_to_sandbox": ["sandbox_id", "url"],
        "download_file_from_sandbox_to_local": ["sandbox_id", "sandbox_file_path"],
    },
    "search_and_scrape_webpage": {"google_search": ["q"]},
    "jina_scrape_llm_summary": {"scrape_and_extract_info": ["url", "info_to_extract"]},
}
"""MiroThinker v1.0's three MCP servers: tool names in listing order and their required arguments."""

SEARCH = {"q": "Charles Babbage birth date"}
SCRAPE = {
    "url": "https://en.wikipedia.org/wiki/ENIAC",
    "info_to_extract": "date ENIAC was formally dedicated",
}
PRODUCT = "CommandResult(stderr='', stdout='3424392\\n', exit_code=0, error='')"
"""What `print(1791 * 1912)` gives in a sandbox."""

PR_SET_PDEATHSIG = 1
STARTUP_TIMEOUT = 60.0
RELEASE_TIMEOUT = 30.0


def serve_command(snapshot: Path, *args: str) -> list[str]:
    """The `miroenv serve-mcp` command line for this interpreter."""
    return [sys.executable, "-m", "miroenv.cli", "serve-mcp", "--snapshot", str(snapshot), *args]


def die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, so a killed test run leaves no server behind."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class HttpServer:
    """A `serve-mcp --transport http --port 0` subprocess; its stderr is collected line by line."""

    def __init__(self, snapshot: Path, *args: str, servers: int = len(EXPECTED_TOOLS)) -> None:
        self.proc = subprocess.Popen(
            serve_command(snapshot, "--transport", "http", "--port", "0", *args),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=die_with_parent,
        )
        self.lines: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()
        self.urls: dict[str, str] = {}
        """Streamable-HTTP URL of each server."""
        self.sse_urls: dict[str, str] = {}
        """SSE URL of each server (MiroThinker's URL mode)."""
        listing = self.urls
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(self.sse_urls) < servers:
            line = self._fresh.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                raise AssertionError("serve-mcp exited before listening:\n" + self.log)
            if line.startswith("serving MCP over SSE"):
                listing = self.sse_urls
            found = re.match(r"\s+(\S+): (http://\S+)$", line)
            if found:
                listing[found.group(1)] = found.group(2)

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`, what `--connect` takes."""
        return next(iter(self.urls.values())).rsplit("/", 2)[0]

    def wait_for_log(self, pattern: str) -> re.Match[str]:
        """The first log line matching `pattern`, waiting for it (up to `RELEASE_TIMEOUT`)."""
        deadline = time.monotonic() + RELEASE_TIMEOUT
        while True:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert time.monotonic() < deadline, f"no log line matches {pattern!r}:\n{self.log}"
            time.sleep(0.05)

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._fresh.put(line.rstrip("\n"))
        self._fresh.put(None)

    @property
    def log(self) -> str:
        """Everything the server wrote to stderr so far."""
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def http_server(demo_dir: Path) -> Iterator[HttpServer]:
    """One HTTP server for the module, serving all three servers, sandboxes from `auto`."""
    server = HttpServer(demo_dir, "--sandbox", "auto")
    yield server
    server.stop()


def run(main: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body."""
    anyio.run(main)


def text(result: CallToolResult) -> str:
    """The single text block of a tool result."""
    (block,) = result.content
    assert block.type == "text"
    return block.text


def sandbox_id_of(result: CallToolResult) -> str:
    """The id in `Sandbox created with sandbox_id: ID`."""
    found = re.fullmatch(r"Sandbox created with sandbox_id: (\S+)", text(result))
    assert found, text(result)
    return found.group(1)


async def check_listing(client: Client, server: str) -> None:
    """The tool list is MiroThinker's for `server`, with the profile's descriptions and exact schemas."""
    check_tools((await client.list_tools()).tools, server)


def check_tools(listed: Sequence[Tool], server: str) -> None:
    """These tools are MiroThinker's for `server`, with the profile's descriptions and exact schemas."""
    assert {t.name: t.input_schema.get("required", []) for t in listed} == EXPECTED_TOOLS[server]
    assert [t.name for t in listed] == list(EXPECTED_TOOLS[server])
    specs = {s.name: s for s in mirothinker_v1().specs() if s.server == server}
    for tool in listed:
        assert tool.description == specs[tool.name].description
        assert list(tool.input_schema.items()) == list(specs[tool.name].input_schema.items())


async def check_calls(client: Client, server: str, snapshot: Path) -> str | None:
    """One real call per server; for `tool-python`, the id prefix of the container the sandbox runs in."""
    if server == "search_and_scrape_webpage":
        result = await client.call_tool("google_search", SEARCH)
        assert text(result) == run_tool_once(Snapshot(snapshot), "google_search", SEARCH).text
        assert "1791" in text(result) and result.is_error is False
        return None
    if server == "jina_scrape_llm_summary":
        result = await client.call_tool("scrape_and_extract_info", SCRAPE)
        assert text(result) == run_tool_once(Snapshot(snapshot), "scrape_and_extract_info", SCRAPE).text
        assert '"success": true' in text(result) and "1946" in text(result)
        return None
    sandbox_id = sandbox_id_of(await client.call_tool("create_sandbox", {}))
    result = await client.call_tool(
        "run_python_code", {"sandbox_id": sandbox_id, "code_block": "print(1791 * 1912)"}
    )
    assert text(result) == PRODUCT and result.is_error is False
    return await container_id(client, sandbox_id)


CONTAINER_ID_COMMAND = "grep -o -m1 'containers/[0-9a-f]*' /proc/self/mountinfo | head -n1"
"""A shell command that prints `containers/ID` inside a Docker container: its /etc/hostname is mounted from
the container's folder (every sandbox's host name is `sandbox`, so the name tells nothing)."""


async def container_id(client: Client, sandbox_id: str) -> str:
    """The first 12 hex digits of the id of the Docker container the sandbox runs in."""
    result = await client.call_tool(
        "run_command", {"sandbox_id": sandbox_id, "command": CONTAINER_ID_COMMAND}
    )
    return container_id_in(text(result))


def container_id_in(run_command_text: str) -> str:
    """The container id prefix in the text of a `run_command` call that ran `CONTAINER_ID_COMMAND`."""
    found = re.search(r"stdout='containers/([0-9a-f]{12})[0-9a-f]*\\n'", run_command_text)
    assert found, run_command_text
    return found.group(1)


def docker_unavailable() -> str | None:
    """Why Docker sandboxes cannot be used here, or None when they can."""
    from miroenv.sandbox.docker import default_image, docker_status

    usable, reason = docker_status(default_image())
    return None if usable else reason


def docker_client() -> Any:
    """A Docker SDK client when Docker sandboxes are usable (skip otherwise; fail on CI)."""
    reason = docker_unavailable()
    if reason is not None:
        skip_or_fail(f"Docker sandboxes are unavailable ({reason})")
    import docker

    return docker.from_env()


def container_exists(client: Any, id_prefix: str) -> bool:
    """Whether a container whose id starts with `id_prefix` exists (running or not).

    Uses the low-level list, which reads ids only: `containers.list` inspects every container it
    lists, and raises NotFound when one is removed between the list and the inspect.
    """
    listed = client.api.containers(all=True, quiet=True, filters={"id": id_prefix})
    return any(entry["Id"].startswith(id_prefix) for entry in listed)


def wait_until_gone(client: Any, id_prefix: str) -> None:
    """Poll until the container is removed (removal is asynchronous); fail after `RELEASE_TIMEOUT`."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while container_exists(client, id_prefix):
        assert time.monotonic() < deadline, f"container {id_prefix} still exists"
        time.sleep(0.1)


# -- stdio: one process per server, as MiroFlow launches them ---------------------------------------


@pytest.mark.parametrize("server", list(EXPECTED_TOOLS))
def test_stdio_server_lists_and_runs_mirothinker_tools(demo_dir: Path, server: str) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=serve_command(demo_dir, "--server", server)[1:]
    )
    found: list[str | None] = []

    async def main() -> None:
        async with Client(params) as client:
            assert client.server_info is not None and client.server_info.name == server
            await check_listing(client, server)
            found.append(await check_calls(client, server, demo_dir))

    run(main)
    if found[0] is not None and docker_unavailable() is None:  # `auto` picked Docker
        wait_until_gone(docker_client(), found[0])  # end of input ended the session: its sandbox is released


def test_stdio_download_from_sandbox_writes_into_the_sessions_output_dir(
    demo_dir: Path, tmp_path: Path
) -> None:
    args = serve_command(demo_dir, "--server", "tool-python", "--output-dir", str(tmp_path))[1:]

    async def main() -> None:
        async with Client(StdioServerParameters(command=sys.executable, args=args)) as client:
            sandbox_id = sandbox_id_of(await client.call_tool("create_sandbox", {}))
            code = "open('/home/user/out.txt', 'w').write('from the sandbox')"
            await client.call_tool("run_python_code", {"sandbox_id": sandbox_id, "code_block": code})
            result = await client.call_tool(
                "download_file_from_sandbox_to_local",
                {"sandbox_id": sandbox_id, "sandbox_file_path": "/home/user/out.txt"},
            )
            written = Path(text(result).removeprefix("File downloaded successfully to: "))
            assert written.read_text() == "from the sandbox"
            assert written.parent.parent.parent == tmp_path  # <output dir>/<session>/tmpfiles/<file>

    run(main)


# -- streamable HTTP: one process, every server at its own path --------------------------------------


def test_http_urls_are_logged_one_path_per_server_and_transport(http_server: HttpServer) -> None:
    port = re.search(r":(\d+)/", http_server.urls["tool-python"])
    assert port
    assert http_server.urls == {
        name: f"http://127.0.0.1:{port.group(1)}/{name}/mcp" for name in EXPECTED_TOOLS
    }
    assert http_server.sse_urls == {
        name: f"http://127.0.0.1:{port.group(1)}/{name}/sse" for name in EXPECTED_TOOLS
    }
    assert "sandbox scope session" in http_server.log


@pytest.mark.parametrize("server", list(EXPECTED_TOOLS))
def test_http_server_lists_and_runs_mirothinker_tools(
    http_server: HttpServer, demo_dir: Path, server: str
) -> None:
    async def main() -> None:
        async with Client(http_server.urls[server]) as client:
            assert client.server_info is not None and client.server_info.name == server
            await check_listing(client, server)
            await check_calls(client, server, demo_dir)

    run(main)


def test_http_sessions_have_their_own_sandboxes_released_when_they_end(http_server: HttpServer) -> None:
    docker = docker_client()
    assert "sandbox backend: docker" in http_server.log
    url = http_server.urls["tool-python"]

    async def main() -> None:
        async with Client(url) as b:
            async with Client(url) as a:
                id_a = sandbox_id_of(await a.call_tool("create_sandbox", {}))
                id_b = sandbox_id_of(await b.call_tool("create_sandbox", {}))
                assert id_a != id_b
                host_a, host_b = await container_id(a, id_a), await container_id(b, id_b)
                assert (
                    host_a != host_b and container_exists(docker, host_a) and container_exists(docker, host_b)
                )
                await a.call_tool("run_python_code", {"sandbox_id": id_a, "code_block": "secret = 41"})
                stolen = await b.call_tool(
                    "run_python_code", {"sandbox_id": id_a, "code_block": "print(secret)"}
                )
                assert text(stolen) == (
                    f"[ERROR]: Failed to connect to sandbox {id_a}. "
                    "Make sure the sandbox is created and the sandbox_id is correct."
                )
                assert stolen.is_error is False and stolen.meta == {"miroenv/error_kind": "tool"}
                own = await a.call_tool(
                    "run_python_code", {"sandbox_id": id_a, "code_block": "print(secret + 1)"}
                )
                assert "stdout='42\\n'" in text(own)
            await anyio.to_thread.run_sync(wait_until_gone, docker, host_a)  # A's client sent DELETE
            assert container_exists(docker, host_b)
            still = await b.call_tool(
                "run_python_code", {"sandbox_id": id_b, "code_block": "print(1791 * 1912)"}
            )
            assert text(still) == PRODUCT

    run(main)


def test_http_session_state_is_per_session(http_server: HttpServer) -> None:
    url = http_server.urls["search_and_scrape_webpage"]

    async def main() -> None:
        async with Client(url) as first:
            assert "1791" in text(await first.call_tool("google_search", SEARCH))
            repeat = await first.call_tool("google_search", SEARCH)
            assert text(repeat).startswith(f"The query '{SEARCH['q']}' has already been used")
        async with Client(url) as second:
            assert "1791" in text(await second.call_tool("google_search", SEARCH))

    run(main)


def test_http_errors_read_as_mirothinker_servers_return_them(http_server: HttpServer, demo_dir: Path) -> None:
    async def main() -> None:
        async with Client(http_server.urls["jina_scrape_llm_summary"]) as client:
            missing = {"url": "https://www.example.org/eniac-history", "info_to_extract": "date"}
            refused = await client.call_tool("scrape_and_extract_info", missing)
            assert text(refused) == run_tool_once(Snapshot(demo_dir), "scrape_and_extract_info", missing).text
            assert '"success": false' in text(refused)
            assert refused.is_error is False and refused.meta == {"miroenv/error_kind": "tool"}

            invalid = await client.call_tool(
                "scrape_and_extract_info", {"url": "https://en.wikipedia.org/wiki/ENIAC"}
            )
            assert invalid.is_error is True
            assert text(invalid) == (
                "Error executing tool scrape_and_extract_info: 1 validation error for "
                "scrape_and_extract_infoArguments\ninfo_to_extract\n  Field required [type=missing]"
            )

            unknown = await client.call_tool("google_search", SEARCH)  # lives on another server
            assert unknown.is_error is True and text(unknown) == "Unknown tool: google_search"

    run(main)


def test_http_arguments_no_tool_can_take_are_a_format_error_as_in_an_episode(
    http_server: HttpServer, demo_dir: Path
) -> None:
    bad = {"q": "Analytical Engine\x00"}

    async def main() -> None:
        async with Client(http_server.urls["search_and_scrape_webpage"]) as client:
            refused = await client.call_tool("google_search", bad)
            assert text(refused) == run_tool_once(Snapshot(demo_dir), "google_search", bad).text
            assert "'q' holds a NUL character (U+0000)" in text(refused)
            assert refused.meta == {"miroenv/error_kind": "format"}
            assert "1791" in text(await client.call_tool("google_search", SEARCH))  # the session goes on

    run(main)


def test_http_tool_calls_do_not_block_other_sessions(http_server: HttpServer) -> None:
    finished: list[str] = []

    async def slow(sandbox_ready: anyio.Event) -> None:
        async with Client(http_server.urls["tool-python"]) as client:
            sandbox_id = sandbox_id_of(await client.call_tool("create_sandbox", {}))
            sandbox_ready.set()
            code = "import time; time.sleep(3); print('slept')"
            result = await client.call_tool("run_python_code", {"sandbox_id": sandbox_id, "code_block": code})
            assert "slept" in text(result)
            finished.append("slow")

    async def quick(sandbox_ready: anyio.Event) -> None:
        async with Client(http_server.urls["search_and_scrape_webpage"]) as client:
            await sandbox_ready.wait()
            await anyio.sleep(0.5)  # the slow call is now sleeping in its sandbox
            assert "1791" in text(await client.call_tool("google_search", SEARCH))
            assert finished == []
            finished.append("quick")

    async def main() -> None:
        sandbox_ready = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(slow, sandbox_ready)
            group.start_soon(quick, sandbox_ready)

    run(main)
    assert finished == ["quick", "slow"]


def test_http_refuses_tool_calls_from_a_client_pinned_to_the_stateless_era(http_server: HttpServer) -> None:
    async def main() -> None:
        async with Client(http_server.urls["search_and_scrape_webpage"], mode="2026-07-28") as client:
            assert [t.name for t in (await client.list_tools()).tools] == ["google_search"]
            with pytest.raises(MCPError, match="per-session state"):
                await client.call_tool("google_search", SEARCH)

    run(main)


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGINT, 0), (signal.SIGTERM, -signal.SIGTERM)])
def test_http_shutdown_releases_sessions_still_open(demo_dir: Path, sig: int, exit_code: int) -> None:
    docker = docker_client()
    server = HttpServer(demo_dir, "--sandbox", "docker", "--server", "tool-python", servers=1)
    hosts: list[str] = []

    async def main() -> None:
        # No DELETE on exit: the session stays open on the server until it shuts down.
        async with Client(
            streamable_http_client(server.urls["tool-python"], terminate_on_close=False)
        ) as client:
            hosts.append(
                await container_id(client, sandbox_id_of(await client.call_tool("create_sandbox", {})))
            )

    try:
        run(main)
        assert container_exists(docker, hosts[0])
    finally:
        code = server.stop(sig)
    assert code == exit_code, server.log
    assert re.search(r"session mcp-tool-python-\w+ ended; released 1 sandbox", server.log), server.log
    wait_until_gone(docker, hosts[0])


# -- MiroThinker's tool manager: a new connection for every call ----------------------------------------


@pytest.fixture(scope="module")
def shared_server(demo_dir: Path) -> Iterator[HttpServer]:
    """One HTTP server for the module in server scope: sandboxes outlive the connection that made them."""
    server = HttpServer(demo_dir, "--sandbox", "auto", "--sandbox-scope", "server")
    yield server
    server.stop()


Params = StdioServerParameters | str
"""A server as MiroThinker's `ToolManager` configures it: stdio parameters, or an SSE URL."""


async def mirothinker_tool_definitions(params: Params) -> list[Tool]:
    """`ToolManager.get_all_tool_definitions` for one server: a new connection that lists the tools."""
    transport = stdio_client(params) if isinstance(params, StdioServerParameters) else sse_client(params)
    async with transport as (read, write), ClientSession(read, write, sampling_callback=None) as session:
        await session.initialize()
        return list((await session.list_tools()).tools)


async def mirothinker_call(params: Params, tool: str, arguments: dict[str, Any]) -> str:
    """`ToolManager.execute_tool_call`: a new stdio process or SSE connection for this one call, whose last
    content block's text is the result; the connection is closed before the next call."""
    transport = stdio_client(params) if isinstance(params, StdioServerParameters) else sse_client(params)
    async with transport as (read, write), ClientSession(read, write, sampling_callback=None) as session:
        await session.initialize()
        result = await session.call_tool(tool, arguments=arguments)
        block = result.content[-1]
        assert block.type == "text"
        return block.text


def proxy_params(server: HttpServer, name: str) -> StdioServerParameters:
    """MiroThinker's stdio configuration of `name`, pointed at `server` through `--connect`."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "miroenv.cli", "serve-mcp", "--server", name, "--connect", server.base_url],
    )


def created_id(result_text: str) -> str:
    """The id in `Sandbox created with sandbox_id: ID`."""
    found = re.fullmatch(r"Sandbox created with sandbox_id: (i[0-9a-f]{19})", result_text)
    assert found, result_text
    return found.group(1)


@pytest.mark.parametrize("mode", ["sse", "stdio-connect"])
@pytest.mark.parametrize("server", list(EXPECTED_TOOLS))
def test_mirothinker_tool_manager_works_unchanged_one_connection_per_call(
    shared_server: HttpServer, demo_dir: Path, server: str, mode: str
) -> None:
    params: Params = shared_server.sse_urls[server] if mode == "sse" else proxy_params(shared_server, server)

    async def main() -> None:
        check_tools(await mirothinker_tool_definitions(params), server)
        if server == "search_and_scrape_webpage":
            found = await mirothinker_call(params, "google_search", SEARCH)
            assert found == run_tool_once(Snapshot(demo_dir), "google_search", SEARCH).text
            assert "1791" in found
        elif server == "jina_scrape_llm_summary":
            page = await mirothinker_call(params, "scrape_and_extract_info", SCRAPE)
            assert page == run_tool_once(Snapshot(demo_dir), "scrape_and_extract_info", SCRAPE).text
            assert "1946" in page
        else:
            sandbox_id = created_id(await mirothinker_call(params, "create_sandbox", {}))
            code = {"sandbox_id": sandbox_id, "code_block": "product = 1791 * 1912"}
            assert "exit_code=0" in await mirothinker_call(params, "run_python_code", code)
            code = {"sandbox_id": sandbox_id, "code_block": "print(product)"}
            assert await mirothinker_call(params, "run_python_code", code) == PRODUCT

    run(main)


def test_server_scope_sandboxes_are_shared_by_id_across_transports_and_outlive_connections(
    shared_server: HttpServer,
) -> None:
    docker = docker_client()
    hosts: list[str] = []

    async def main() -> None:
        sandbox_id = created_id(
            await mirothinker_call(proxy_params(shared_server, "tool-python"), "create_sandbox", {})
        )
        code = {"sandbox_id": sandbox_id, "code_block": "secret = 41"}
        assert "exit_code=0" in await mirothinker_call(
            shared_server.sse_urls["tool-python"], "run_python_code", code
        )
        async with Client(shared_server.urls["tool-python"]) as client:
            code = {"sandbox_id": sandbox_id, "code_block": "print(secret + 1)"}
            assert "stdout='42\\n'" in text(await client.call_tool("run_python_code", code))
            hosts.append(await container_id(client, sandbox_id))
        assert sandbox_id not in shared_server.log  # a capability: never written to the log

    run(main)
    assert container_exists(docker, hosts[0])  # every connection has ended; the sandbox has not


def test_server_scope_refuses_a_made_up_sandbox_id(shared_server: HttpServer) -> None:
    made_up = "i" + "5eed" * 4 + "abc"

    async def main() -> None:
        for params in (shared_server.sse_urls["tool-python"], proxy_params(shared_server, "tool-python")):
            refused = await mirothinker_call(
                params, "run_python_code", {"sandbox_id": made_up, "code_block": "print(1)"}
            )
            assert refused == (
                f"[ERROR]: Failed to connect to sandbox {made_up}. "
                "Make sure the sandbox is created and the sandbox_id is correct."
            )
        async with Client(shared_server.urls["tool-python"]) as client:
            result = await client.call_tool("run_command", {"sandbox_id": made_up, "command": "hostname"})
            assert result.is_error is False and result.meta == {"miroenv/error_kind": "tool"}

    run(main)


def test_server_scope_sandbox_is_released_after_its_timeout_unused(shared_server: HttpServer) -> None:
    docker = docker_client()
    url = shared_server.sse_urls["tool-python"]

    async def main() -> None:
        brief = created_id(await mirothinker_call(url, "create_sandbox", {"timeout": 1}))
        lasting = created_id(await mirothinker_call(url, "create_sandbox", {}))
        created = shared_server.wait_for_log(r"server-scope sandbox docker:(\w+) created; released after 1 s")
        brief_host = created.group(1)
        expired = rf"server-scope sandbox docker:{brief_host} expired; released"
        await anyio.to_thread.run_sync(shared_server.wait_for_log, expired)
        await anyio.to_thread.run_sync(wait_until_gone, docker, brief_host)
        gone = await mirothinker_call(url, "run_python_code", {"sandbox_id": brief, "code_block": "print(1)"})
        assert gone.startswith(f"[ERROR]: Failed to connect to sandbox {brief}.")
        still = await mirothinker_call(
            url, "run_python_code", {"sandbox_id": lasting, "code_block": "print(1791 * 1912)"}
        )
        assert still == PRODUCT

    run(main)


def test_server_scope_sandboxes_are_released_at_shutdown(demo_dir: Path) -> None:
    docker = docker_client()
    server = HttpServer(
        demo_dir, "--sandbox", "docker", "--sandbox-scope", "server", "--server", "tool-python", servers=1
    )
    hosts: list[str] = []

    async def main() -> None:
        url = server.sse_urls["tool-python"]
        for _ in range(2):
            sandbox_id = created_id(await mirothinker_call(url, "create_sandbox", {}))
            ran = await mirothinker_call(
                url, "run_command", {"sandbox_id": sandbox_id, "command": CONTAINER_ID_COMMAND}
            )
            hosts.append(container_id_in(ran))

    try:
        run(main)
        assert all(container_exists(docker, host) for host in hosts)
    finally:
        code = server.stop(signal.SIGINT)
    assert code == 0, server.log
    assert "released 2 server-scope sandbox(es) at shutdown" in server.log
    for host in hosts:
        wait_until_gone(docker, host)


def test_sse_sessions_own_their_sandboxes_by_default(http_server: HttpServer) -> None:
    docker = docker_client()
    url = http_server.sse_urls["tool-python"]
    hosts: list[str] = []
    ids: list[str] = []

    async def main() -> None:
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            created = await session.call_tool("create_sandbox", {})
            ids.append(sandbox_id_of(created))
            result = await session.call_tool(
                "run_command", {"sandbox_id": ids[0], "command": CONTAINER_ID_COMMAND}
            )
            hosts.append(container_id_in(text(result)))
        await anyio.to_thread.run_sync(wait_until_gone, docker, hosts[0])  # the SSE connection ended
        refused = await mirothinker_call(url, "run_python_code", {"sandbox_id": ids[0], "code_block": "1"})
        assert refused.startswith(f"[ERROR]: Failed to connect to sandbox {ids[0]}.")

    run(main)


def test_sandbox_lifetime_follows_create_sandbox_timeout_capped_like_mirothinker() -> None:
    from miroenv.mcp_server import sandbox_lifetime

    assert sandbox_lifetime({}) == 600
    assert sandbox_lifetime({"timeout": 30}) == 30
    assert sandbox_lifetime({"timeout": "45.5"}) == 45.5
    assert sandbox_lifetime({"timeout": 3600}) == 600
    for unusable in (0, -5, "soon", None, True, float("nan"), [1]):
        assert sandbox_lifetime({"timeout": unusable}) == 600


# -- bad command lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--snapshot", "no/such/dir", "--server", "tool-python"],
            "snapshot directory not found: no/such/dir",
        ),
        (
            ["--server", "tool-pyhton"],
            "unknown server 'tool-pyhton' for profile mirothinker_v1; choose one of: tool-python, "
            "search_and_scrape_webpage, jina_scrape_llm_summary",
        ),
        (
            [],
            "stdio serves one server per process; choose it with --server: tool-python, "
            "search_and_scrape_webpage, jina_scrape_llm_summary",
        ),
        (["--transport", "websocket"], "unknown transport 'websocket'; choose one of: stdio, http"),
        (["--profile", "nope", "--server", "tool-python"], "unknown tool profile 'nope'"),
        (
            ["--sandbox-scope", "global", "--transport", "http"],
            "unknown sandbox scope 'global'; choose one of: session, server",
        ),
        (
            ["--server", "tool-python", "--sandbox-scope", "server"],
            "--sandbox-scope server needs --transport http: a stdio process ends with its only connection",
        ),
        (["--server", "tool-python", "--connect", "http://127.0.0.1:8000"], "leave out --snapshot"),
        (
            ["--no-snapshot", "--server", "tool-python", "--connect", "127.0.0.1:8000"],
            "--connect needs the http:// URL of a `serve-mcp --transport http`, not '127.0.0.1:8000'",
        ),
        (
            ["--no-snapshot", "--connect", "http://127.0.0.1:8000", "--transport", "http"],
            "use it with --transport stdio",
        ),
        (
            ["--no-snapshot", "--connect", "http://127.0.0.1:8000"],
            "--connect forwards one server per process; choose it with --server",
        ),
        (
            [
                "--no-snapshot",
                "--server",
                "tool-python",
                "--connect",
                "http://x",
                "--sandbox-scope",
                "server",
            ],
            "start that server with --sandbox-scope server",
        ),
        (["--no-snapshot", "--server", "tool-python"], "--snapshot is required (or --connect URL"),
        (
            ["--no-snapshot", "--server", "tool-python", "--connect", "http://x", "--max-body-bytes", "10"],
            "give --max-body-bytes and --max-sandboxes to that server",
        ),
        (
            ["--no-snapshot", "--server", "tool-python", "--connect", "http://x", "--max-sandboxes", "3"],
            "give --max-body-bytes and --max-sandboxes to that server",
        ),
    ],
)
def test_bad_command_lines_fail_with_a_clear_error(demo_dir: Path, args: list[str], message: str) -> None:
    if "--no-snapshot" in args:
        args = [arg for arg in args if arg != "--no-snapshot"]
    elif "--snapshot" not in args:
        args = ["--snapshot", str(demo_dir), *args]
    result = CliRunner().invoke(app, ["serve-mcp", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_stdio_proxy_names_an_upstream_it_cannot_reach() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        command = [sys.executable, "-m", "miroenv.cli", "serve-mcp", "--server", "tool-python"]
        command += ["--connect", f"http://127.0.0.1:{port}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"error: cannot reach tool-python at http://127.0.0.1:{port}/tool-python/mcp: " in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_named(demo_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = serve_command(demo_dir, "--transport", "http", "--port", str(port), "--sandbox", "none")
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_directory_that_is_not_a_snapshot_is_named(tmp_path: Path) -> None:
    command = serve_command(tmp_path, "--server", "search_and_scrape_webpage")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert f"{tmp_path / 'manifest.json'}: no snapshot manifest here" in done.stderr


def test_without_the_mcp_extra_the_command_says_how_to_install_it(demo_dir: Path) -> None:
    hide_mcp = "import sys; sys.modules['mcp'] = None; from miroenv.cli import app; app()"
    command = [
        sys.executable,
        "-c",
        hide_mcp,
        "serve-mcp",
        "--snapshot",
        str(demo_dir),
        "--server",
        "tool-python",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "serve-mcp needs the 'mcp' extra" in done.stderr
    assert "pip install 'miroenv[mcp]'" in done.stderr
    listing = subprocess.run(
        [sys.executable, "-c", hide_mcp, "--help"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and "serve-mcp" in listing.stdout


# -- limits: request bodies and live sandboxes ----------------------------------------------------------

BODY_LIMIT = 256 * 1024
"""The `--max-body-bytes` of `limited_server`: small, so bodies just under and over it are quick to send."""

TOO_LARGE = (
    f"is over this server's limit of {BODY_LIMIT} bytes (0.25 MiB; set with serve-mcp --max-body-bytes)"
)
UNDER = {"q": "x" * (BODY_LIMIT - 1024)}
"""`google_search` arguments whose request body is just under `BODY_LIMIT` (the envelope is < 1 KiB)."""
OVER = {"q": "x" * (BODY_LIMIT + 16)}
"""`google_search` arguments whose request body is just over `BODY_LIMIT`."""
CALL_DEADLINE_S = 60.0
"""A refused call must be answered well within this (it used to hang forever over SSE)."""


@pytest.fixture(scope="module")
def limited_server(demo_dir: Path) -> Iterator[HttpServer]:
    """A server-scope HTTP server with a 256 KiB body limit and at most two sandboxes."""
    server = HttpServer(
        demo_dir,
        "--sandbox",
        "auto",
        "--sandbox-scope",
        "server",
        "--server",
        "tool-python",
        "--server",
        "search_and_scrape_webpage",
        "--max-body-bytes",
        str(BODY_LIMIT),
        "--max-sandboxes",
        "2",
        servers=2,
    )
    yield server
    server.stop()


def limited_paths(server: HttpServer) -> dict[str, Params]:
    """The search server of `server` on each path a client can take: SSE URL, streamable-HTTP URL, or a
    `--connect` stdio proxy."""
    name = "search_and_scrape_webpage"
    return {
        "sse": server.sse_urls[name],
        "streamable-http": server.urls[name],
        "stdio-connect": proxy_params(server, name),
    }


async def one_session_search(params: Params, arguments: dict[str, Any]) -> tuple[str | MCPError, str]:
    """In one session: `google_search` with `arguments` (its text, or the MCPError it raised), then a small
    search (its text), showing whether the session is still usable."""
    if isinstance(params, str) and params.endswith("/mcp"):
        async with Client(params) as client:
            try:
                first: str | MCPError = text(await client.call_tool("google_search", arguments))
            except MCPError as exc:
                first = exc
            return first, text(await client.call_tool("google_search", SEARCH))
    transport = stdio_client(params) if isinstance(params, StdioServerParameters) else sse_client(params)
    async with transport as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        try:
            result = await session.call_tool("google_search", arguments)
            first = result.content[0].text if result.content[0].type == "text" else ""
        except MCPError as exc:
            first = exc
        after = await session.call_tool("google_search", SEARCH)
        return first, after.content[0].text if after.content[0].type == "text" else ""


@pytest.mark.parametrize("path", ["sse", "streamable-http", "stdio-connect"])
def test_a_body_just_under_the_limit_is_served_and_one_just_over_is_refused_naming_it(
    limited_server: HttpServer, path: str
) -> None:
    params = limited_paths(limited_server)[path]

    async def main() -> None:
        with anyio.fail_after(CALL_DEADLINE_S):
            served, _ = await one_session_search(params, UNDER)
            assert isinstance(served, str) and '"organic": []' in served, served
            refused, after = await one_session_search(params, OVER)
        assert isinstance(refused, MCPError), refused
        assert refused.error.code == -32600
        assert re.fullmatch(rf"request body of \d+ bytes {re.escape(TOO_LARGE)}", str(refused)), str(refused)
        assert refused.error.data["max_body_bytes"] == BODY_LIMIT
        assert refused.error.data["body_bytes"] > BODY_LIMIT
        assert "1791" in after  # the session that sent it goes on

    run(main)
    assert "refused a request: request body of" in limited_server.log


def raw_post(url: str, body: bytes, chunked: bool) -> Any:
    """POST `body` to `url` as an MCP client would, with a Content-Length or chunked (no declared size)."""
    import httpx

    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
    return httpx.post(url, content=content, headers=headers, timeout=CALL_DEADLINE_S)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("body", "request_id"),
    [
        (b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"q": "%s", "id": 1}}', 7),
        (
            b'{"method": "tools/call", "params": {"id": 1, "q": "%s"}, "jsonrpc": "2.0", "id": "req-9"}',
            "req-9",
        ),
        (b'{"params": {"q": "%s"}, "id": 3, "method": "tools/call", "jsonrpc": "2.0"}', 3),
        (b'{"params": {"q": "%s"}, "id": 3, "_meta": {"k": 1}, "jsonrpc": "2.0"}', None),
    ],
)
def test_streamable_http_answers_413_with_a_json_rpc_error_before_reading_the_message(
    limited_server: HttpServer, body: bytes, request_id: int | str | None, chunked: bool
) -> None:
    big = body.replace(b"%s", b"x" * BODY_LIMIT)
    response = raw_post(limited_server.urls["search_and_scrape_webpage"], big, chunked)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["jsonrpc"] == "2.0" and error["error"]["code"] == -32600
    assert error["error"]["message"] == f"request body of {len(big)} bytes {TOO_LARGE}"
    assert error.get("id") == request_id  # the top-level id; a nested "id" is never taken for it


def test_an_sse_post_for_no_live_session_gets_413_not_202(limited_server: HttpServer) -> None:
    messages = limited_server.sse_urls["search_and_scrape_webpage"].replace("/sse", "/messages/")
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "%s"}}'.replace(
        b"%s", b"x" * BODY_LIMIT
    )
    response = raw_post(f"{messages}?session_id={'0' * 32}", body, chunked=True)
    assert response.status_code == 413
    assert TOO_LARGE in response.json()["error"]["message"]


def test_request_id_is_found_at_either_end_of_a_body_too_large_to_parse() -> None:
    from miroenv.mcp_server import request_id

    assert request_id(b'{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"a"', b"") == 12
    assert request_id(b'{"method":"tools/call","params":{"id":1', b'...}},"jsonrpc":"2.0","id":"ab"}') == "ab"
    assert request_id(b'{"params":{"id":1,"x":"', b'...","id":5}}') is None  # nested ids only
    assert request_id(b'{"jsonrpc":"2.0","method":"notifications/x","params":{', b"...}}") is None


def test_the_default_body_limit_is_16_mib_and_documented_in_help() -> None:
    from miroenv.mcp_server import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_SANDBOXES, ServedTools

    assert DEFAULT_MAX_BODY_BYTES == 16 * 1024 * 1024 and DEFAULT_MAX_SANDBOXES == 32
    assert ServedTools.__init__.__kwdefaults__ is not None
    assert ServedTools.__init__.__kwdefaults__["max_body_bytes"] == DEFAULT_MAX_BODY_BYTES
    assert ServedTools.__init__.__kwdefaults__["max_sandboxes"] == DEFAULT_MAX_SANDBOXES
    shown = CliRunner().invoke(app, ["serve-mcp", "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "--max-body-bytes" in shown.output and "[default: (16 MiB)]" in shown.output
    assert "--max-sandboxes" in shown.output and "[default: (32)]" in shown.output


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_limits_must_be_positive_whole_numbers(demo_dir: Path, value: str) -> None:
    for option in ("--max-body-bytes", "--max-sandboxes"):
        result = CliRunner().invoke(
            app, ["serve-mcp", "--snapshot", str(demo_dir), "--transport", "http", option, value]
        )
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}'" in result.stderr


def test_server_scope_refuses_a_sandbox_past_max_sandboxes_until_one_is_released(
    limited_server: HttpServer,
) -> None:
    docker_client()
    url = limited_server.sse_urls["tool-python"]
    refusal = (
        "[ERROR]: Failed to create sandbox: this server already runs 2 sandboxes, its limit "
        "(serve-mcp --max-sandboxes 2); a sandbox is released once unused for its create_sandbox timeout "
        "(at most 600 s). Please retry later."
    )

    async def main() -> None:
        lasting = created_id(await mirothinker_call(url, "create_sandbox", {}))
        brief = created_id(await mirothinker_call(url, "create_sandbox", {"timeout": 10}))
        assert await mirothinker_call(url, "create_sandbox", {}) == refusal
        async with Client(limited_server.urls["tool-python"]) as client:
            refused = await client.call_tool("create_sandbox", {})
        assert text(refused) == refusal and refused.meta == {"miroenv/error_kind": "infra"}
        assert refused.is_error is False
        await anyio.to_thread.run_sync(
            limited_server.wait_for_log, r"server-scope sandbox docker:\w+ expired"
        )
        again = created_id(await mirothinker_call(url, "create_sandbox", {}))  # the expired one's slot
        assert again not in (brief, lasting)
        code = {"sandbox_id": lasting, "code_block": "print(1791 * 1912)"}
        assert await mirothinker_call(url, "run_python_code", code) == PRODUCT

    run(main)
    assert "create_sandbox refused: 2 sandboxes alive, the --max-sandboxes limit" in limited_server.log


def test_session_scope_caps_sandboxes_over_all_sessions_and_frees_them_when_a_session_ends(
    demo_dir: Path,
) -> None:
    docker_client()
    server = HttpServer(
        demo_dir, "--sandbox", "auto", "--server", "tool-python", "--max-sandboxes", "1", servers=1
    )
    url = server.urls["tool-python"]
    refusal = (
        "[ERROR]: Failed to create sandbox: this server already runs 1 sandboxes, its limit "
        "(serve-mcp --max-sandboxes 1); a session's sandboxes are released when it ends. Please retry later."
    )

    async def main() -> None:
        async with Client(url) as second:
            async with Client(url) as first:
                sandbox_id_of(await first.call_tool("create_sandbox", {}))
                refused = await second.call_tool("create_sandbox", {})
                assert text(refused) == refusal and refused.meta == {"miroenv/error_kind": "infra"}
            await anyio.to_thread.run_sync(server.wait_for_log, r"ended; released 1 sandbox")
            made = sandbox_id_of(await second.call_tool("create_sandbox", {}))
            result = await second.call_tool(
                "run_python_code", {"sandbox_id": made, "code_block": "print(1791 * 1912)"}
            )
            assert text(result) == PRODUCT

    try:
        run(main)
    finally:
        assert server.stop(signal.SIGINT) == 0, server.log


def test_the_default_limit_serves_bodies_past_the_sdks_4_mib_and_refuses_past_16_mib(
    http_server: HttpServer,
) -> None:
    url = http_server.urls["search_and_scrape_webpage"]

    async def main() -> None:
        with anyio.fail_after(CALL_DEADLINE_S):
            async with Client(url) as client:
                served = await client.call_tool("google_search", {"q": "y" * (6 << 20)})
                assert '"organic": []' in text(served)
                with pytest.raises(MCPError, match=r"over this server's limit of 16777216 bytes \(16 MiB;"):
                    await client.call_tool("google_search", {"q": "y" * (16 << 20)})

    run(main)
