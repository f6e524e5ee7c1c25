"""Local servers for recording tests: a Serper-compatible search API and a small website, on 127.0.0.1 only."""

from __future__ import annotations

import collections
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

API_KEY = "test-key"
JS_PHRASE = "The hidden answer is forty-two"
CHROMIUM = "/usr/bin/chromium"

PDF_BYTES = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
CSV_BYTES = b"year,event\n1843,Ada Lovelace publishes her notes\n1946,ENIAC is unveiled\n"


def article(name: str) -> str:
    """A static article page with plenty of text (well above the auto-JavaScript threshold)."""
    paragraphs = "".join(
        f"<p>Paragraph {i} of the article about {name}. It explains how {name} came to be, who worked on "
        f"{name}, and why {name} still matters to historians of computing today.</p>"
        for i in range(1, 5)
    )
    return (
        f"<!doctype html><html><head><title>Article {name}</title></head><body><article>"
        f"<h1>Article {name}</h1>{paragraphs}</article></body></html>"
    )


JS_PAGE = (
    "<!doctype html><html><head><title>Rendered by script</title></head><body><div id='app'></div>"
    "<script>var words = ['The', 'hidden', 'answer', 'is', 'forty' + '-' + 'two'];"
    "document.getElementById('app').innerHTML = '<article><h1>Rendered</h1><p>' + words.join(' ') + "
    "'. This paragraph only exists once JavaScript has run in a real browser, so a plain HTTP client never "
    "sees it, while Chromium does.</p></article>';</script></body></html>"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that give up (timeouts under test) are expected; stay quiet about them."""


class LocalServer:
    """Base of the test servers: a ThreadingHTTPServer on 127.0.0.1 with a port picked by the OS."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.app = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def hit(self, path: str) -> None:
        with self.lock:
            self.hits[path] += 1

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def app(self) -> Any:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


class SearchHandler(_Handler):
    def do_POST(self) -> None:
        app: SearchServer = self.app
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length) or b"{}")
        with app.lock:
            app.requests.append({"path": self.path, "key": self.headers.get("X-API-KEY"), "payload": payload})
            failure = app.fail_next.pop(0) if app.fail_next else None
        if self.path != "/search":
            self.send(404, b"{}", "application/json")
            return
        if self.headers.get("X-API-KEY") != API_KEY:
            self.send(403, b'{"message": "Unauthorized."}', "application/json")
            return
        if failure is not None:
            headers = {"Retry-After": app.retry_after} if failure == 429 and app.retry_after else {}
            self.send(failure, b'{"message": "try later"}', "application/json", headers)
            return
        self.send(200, json.dumps(app.answer(payload)).encode(), "application/json")


class SearchServer(LocalServer):
    """Serper-compatible: deterministic organic results for any query; can fail the next requests on demand."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []
        self.retry_after: str | None = None
        self.link_base = "http://example.test"
        super().__init__(SearchHandler)

    def answer(self, payload: dict[str, Any]) -> dict[str, Any]:
        q = str(payload.get("q", ""))
        slug = "-".join(q.lower().split()) or "empty"
        page = int(payload.get("page", 1))
        organic = [
            {
                "title": f"{q} result {i}",
                "link": f"{self.link_base}/pages/{slug}-{page}-{i}",
                "snippet": f"Snippet {i} for {q}.",
                "position": i,
            }
            for i in range(1, int(payload.get("num", 10)) + 1)
        ]
        parameters = {k: v for k, v in payload.items()} | {"type": "search", "engine": "google"}
        return {"searchParameters": parameters, "organic": organic, "credits": 1}


class PageHandler(_Handler):
    def do_GET(self) -> None:
        app: PageServer = self.app
        path = urlsplit(self.path).path
        app.hit(path)
        if path.startswith("/pages/"):
            delay = app.page_delay
            if delay:
                time.sleep(delay)
            self.send(200, article(path.removeprefix("/pages/")).encode(), "text/html; charset=utf-8")
        elif path.startswith("/redirect/"):
            self.send(302, b"", "text/plain", {"Location": "/pages/" + path.removeprefix("/redirect/")})
        elif path == "/missing":
            self.send(404, b"<html><body>Not found</body></html>", "text/html")
        elif path == "/forbidden":
            self.send(403, b"<html><body>Forbidden</body></html>", "text/html")
        elif path == "/slow":
            time.sleep(app.slow_seconds)
            self.send(200, article("slow").encode(), "text/html")
        elif path == "/flaky":
            with app.lock:
                failing = app.flaky_failures > 0
                app.flaky_failures -= 1
            if failing:
                self.send(503, b"busy", "text/plain", {"Retry-After": "0"})
            else:
                self.send(200, article("flaky").encode(), "text/html")
        elif path == "/files/report.pdf":
            self.send(200, PDF_BYTES, "application/pdf")
        elif path == "/files/data.csv":
            self.send(200, CSV_BYTES, "text/csv; charset=utf-8")
        elif path == "/js":
            self.send(200, JS_PAGE.encode(), "text/html; charset=utf-8")
        elif path == "/to-private":
            self.send(302, b"", "text/plain", {"Location": "http://10.0.0.1:8080/secret"})
        elif path == "/to-loopback6":
            self.send(
                302, b"", "text/plain", {"Location": f"http://[::1]:{app.httpd.server_address[1]}/secret"}
            )
        elif path == "/js-sneaky":
            body = (
                "<!doctype html><html><head><title>Sneaky</title></head><body>"
                + article("sneaky")
                + "<img src='/to-private'><img src='/to-loopback6'></body></html>"
            )
            self.send(200, body.encode(), "text/html")
        elif path == "/secret":
            self.send(200, b"secret", "text/plain")
        else:
            self.send(404, b"not here", "text/plain")


class PageServer(LocalServer):
    """Static pages, a redirect, a 404, a 403, a slow page, a flaky page, files, a JavaScript-only page, and
    redirects to private addresses."""

    def __init__(self) -> None:
        self.slow_seconds = 3.0
        self.page_delay = 0.0
        self.flaky_failures = 0
        super().__init__(PageHandler)


@pytest.fixture
def search_server() -> Iterator[SearchServer]:
    server = SearchServer()
    yield server
    server.close()


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium and Playwright: a skip when absent, but a failure on CI (CI=true)."""
    problem = None
    if not (os.path.isfile(CHROMIUM) or shutil.which("chromium")):
        problem = f"Chromium not found at {CHROMIUM}"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; CI must run the browser tests")
        pytest.skip(f"{problem}; the JavaScript rendering tests need it")
    return CHROMIUM if os.path.isfile(CHROMIUM) else str(shutil.which("chromium"))


def record_kwargs(search: SearchServer | None = None, **extra: Any) -> dict[str, Any]:
    """RecordingWeb keyword arguments for the local servers: private targets allowed, fast retries, high rate."""
    from miroenv.web.record import RetryPolicy

    kwargs: dict[str, Any] = {
        "allow_private": True,
        "retry": RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05),
        "rate": 1000.0,
        "burst": 100.0,
        "timeout": 5.0,
        "serper_api_key": API_KEY,
        "serper_base_url": search.base_url if search is not None else "http://127.0.0.1:9",
        "capture_date": "2025-11-13",
    }
    kwargs.update(extra)
    return kwargs


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return tmp_path / "recorded"
