"""The shared chat-completions client: retries, error wording, request counting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from miroenv.llm import ChatCompletionsClient, ChatEndpointError


class ScriptedServer:
    """Answers each POST with the next (status, body) from a script, on 127.0.0.1."""

    def __init__(self, script: list[tuple[int, Any]]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status, body = server.script.pop(0)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(script: list[tuple[int, Any]]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


OK = {"choices": [{"message": {"content": "fine"}}], "usage": {"total_tokens": 7}}


def test_retries_then_answers_and_drops_none_params(serve: Any) -> None:
    server = serve([(429, {}), (503, {}), (200, OK)])
    client = ChatCompletionsClient(server.url, backoff=0.01)
    assert client.complete("hi", model="m", temperature=None) == ("fine", 7)
    assert client.requests == 3
    assert server.bodies[-1] == {"messages": [{"role": "user", "content": "hi"}], "model": "m"}
    client.close()


class CustomError(ChatEndpointError):
    """A caller's own error type."""


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ([(400, b"bad request")], "judge endpoint answered HTTP 400: bad request"),
        ([(200, {"choices": []})], "judge endpoint sent an unusable reply"),
        ([(200, {"choices": [{"message": {"content": None}}]})], "judge endpoint sent a reply without text"),
        ([(500, {}), (500, {})], "judge endpoint failed after 2 attempts: HTTP 500"),
    ],
)
def test_failures_raise_the_callers_error(serve: Any, script: list[tuple[int, Any]], message: str) -> None:
    server = serve(script)
    client = ChatCompletionsClient(
        server.url, retries=1, backoff=0.01, label="judge endpoint", error=CustomError
    )
    with pytest.raises(CustomError, match=message.replace("(", r"\(")):
        client.complete("x", model="m")
    client.close()
