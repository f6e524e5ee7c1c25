"""The shared chat-completions client: retries, error wording, request counting."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from miroenv.llm import (
    ChatCompletionsClient,
    ChatEndpointError,
    ChatEndpointUnavailableError,
    check_base_url,
)


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

        class Server(ThreadingHTTPServer):
            request_queue_size = 64  # many clients connect at once in the concurrency test

        self.httpd = Server(("127.0.0.1", 0), Handler)
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


@pytest.mark.parametrize(
    ("base_url", "why"),
    [("http://[::1/v1", "Invalid port"), ("ftp://127.0.0.1/v1", "unsupported protocol")],
)
def test_an_unusable_url_fails_at_once_with_the_callers_error(base_url: str, why: str) -> None:
    client = ChatCompletionsClient(
        base_url, retries=3, backoff=0.01, label="judge endpoint", error=CustomError
    )
    with pytest.raises(CustomError) as caught:
        client.complete("x", model="m")
    assert f"judge endpoint has an unusable URL '{base_url}/chat/completions'" in str(caught.value)
    assert why in str(caught.value)
    assert client.requests == 1  # not retried
    client.close()


def test_check_base_url_names_the_problem() -> None:
    assert check_base_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    for bad, why in [
        ("http://[::1/v1", "is not a valid URL"),
        ("127.0.0.1:8000/v1", "must start with http:// or https://"),
        ("http:///v1", "has no host"),
        ("http://127.0.0.1:99999/v1", "has port 99999, outside 1-65535"),
    ]:
        with pytest.raises(ValueError, match=why):
            check_base_url(bad)


def ask_all_at_once(client: ChatCompletionsClient, threads: int) -> list[str]:
    """The replies to `threads` requests released together, so all are first requests of a fresh client."""
    start = threading.Barrier(threads)
    answers: list[str] = []

    def ask() -> None:
        start.wait()
        answers.append(client.complete("x", model="m")[0])

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return answers


def test_concurrent_first_requests_share_one_http_client_that_close_closes(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[httpx.Client] = []
    real_init = httpx.Client.__init__

    def recording_init(self: httpx.Client, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(httpx.Client, "__init__", recording_init)
    for _ in range(3):
        made.clear()
        server = serve([(200, OK)] * 8)
        client = ChatCompletionsClient(server.url, retries=0)
        assert ask_all_at_once(client, 8) == ["fine"] * 8 and client.requests == 8
        assert len(made) == 1
        client.close()
        assert made[0].is_closed


def test_a_set_cancel_event_stops_retries_and_requests(serve: Any) -> None:
    server = serve([(503, {}), (200, OK)])
    cancel = threading.Event()
    client = ChatCompletionsClient(server.url, retries=5, backoff=30.0, error=CustomError, cancel=cancel)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            client.complete("x", model="m")
        except CustomError as exc:
            errors.append(exc)

    asking = threading.Thread(target=ask)
    asking.start()
    while not server.bodies:  # the first attempt got its 503; the client now waits 30 s to retry
        asking.join(0.01)
    cancel.set()
    asking.join(30)
    assert not asking.is_alive()
    assert [str(error) for error in errors] == ["chat endpoint: cancelled"]
    assert len(server.bodies) == 1 and client.requests == 1
    with pytest.raises(CustomError, match="cancelled"):  # and no new request once cancelled
        client.complete("x", model="m")
    assert len(server.bodies) == 1
    client.close()


def test_exhausted_retries_raise_the_unavailable_error_and_refusals_the_plain_one(serve: Any) -> None:
    server = serve([(503, {}), (503, {}), (400, b"context length exceeded")])
    client = ChatCompletionsClient(
        server.url, retries=1, backoff=0.01, unavailable_error=ChatEndpointUnavailableError
    )
    with pytest.raises(ChatEndpointUnavailableError, match="failed after 2 attempts: HTTP 503"):
        client.complete("x", model="m")
    with pytest.raises(ChatEndpointError, match="answered HTTP 400: context length exceeded") as refused:
        client.complete("x", model="m")
    assert not isinstance(refused.value, ChatEndpointUnavailableError)
    client.close()
