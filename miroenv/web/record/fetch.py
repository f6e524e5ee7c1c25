"""Live page fetchers: httpx for plain HTTP, Playwright driving the system Chromium for pages that need JavaScript.

Both put every request through the SSRF guard (`URLGuard`), wait for the per-host rate limit, and raise
`RecordingError` (an infra failure) when the network fails; an HTTP error status is returned for the caller to
judge. Guard refusals and malformed URLs raise `BlockedURLError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpcore
import httpx

from miroenv._version import __version__
from miroenv.web.record.errors import RecordingError
from miroenv.web.record.guard import BlockedURLError, URLGuard
from miroenv.web.record.proxy import GuardProxy
from miroenv.web.record.ratelimit import HostRateLimiter
from miroenv.web.record.retry import RetriesExhausted, RetryPolicy, send_with_retries

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = f"Mozilla/5.0 (compatible; miroenv/{__version__}; snapshot recorder)"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "MIROENV_CHROMIUM"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
"""Flags for the system Chromium: headless, no sandbox (containers), no background traffic, no UDP around the
guard proxy."""
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class FetchResult:
    """One live response: where it ended up, its status, type and raw body, and how it was fetched."""

    url: str
    final_url: str
    status: int
    content_type: str
    body: bytes
    redirects: tuple[str, ...] = ()
    fetcher: str = "httpx"
    attempts: int = 1
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower-case (`text/html`)."""
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def is_html(self) -> bool:
        """True for HTML documents (what gets extracted as a page and may need JavaScript)."""
        return self.media_type in HTML_TYPES


def sniff_content_type(body: bytes) -> str:
    """A content type for a response that sent none, from its first bytes."""
    head = body[:512].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "application/pdf"
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return "text/html"
    if head.startswith(b"{") or head.startswith(b"["):
        return "application/json"
    try:
        body[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks the host at connect time and connects to the checked address (no DNS rebinding)."""

    def __init__(self, guard: URLGuard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in self.guard.resolve(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guard applied to every connection it opens (environment proxies ignored)."""

    def __init__(self, guard: URLGuard, *, verify: bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            network_backend=_GuardedBackend(guard),
        )


class HttpFetcher:
    """Fetches URLs with httpx, following redirects itself so each hop is checked by the guard (thread-safe)."""

    def __init__(
        self,
        guard: URLGuard,
        *,
        timeout: float = 20.0,
        retry: RetryPolicy | None = None,
        rate_limiter: HostRateLimiter | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        max_bytes: int = 50 * 1024 * 1024,
        max_redirects: int = 10,
        verify: bool = True,
    ) -> None:
        self.guard = guard
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._client = httpx.Client(
            transport=GuardedTransport(guard, verify=verify),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": user_agent, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )

    def fetch(self, url: str) -> FetchResult:
        """GET `url`, following up to `max_redirects` redirects; the final response whatever its status."""
        current = url
        redirects: list[str] = []
        total_attempts = 0
        for _ in range(self.max_redirects + 1):
            self.guard.check_url(current)
            host = urlsplit(current).hostname or ""
            try:
                request = self._client.build_request("GET", current)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise BlockedURLError(current, f"invalid URL: {exc}") from exc

            def send(request: httpx.Request = request) -> httpx.Response:
                return self._client.send(request, stream=True)

            def wait_turn(host: str = host) -> None:
                if self.rate_limiter is not None:
                    self.rate_limiter.acquire(host)

            try:
                response, attempts = send_with_retries(
                    send, self.retry, before_attempt=wait_turn, what=f"GET {current}"
                )
            except RetriesExhausted as exc:
                raise RecordingError(f"Scraping failed: cannot fetch {current!r}: {exc}") from exc
            total_attempts += attempts
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECT_STATUSES and location:
                    redirects.append(current)
                    current = urljoin(str(response.url), location.strip())
                    continue
                body = self._read(response, current)
                content_type = response.headers.get("content-type") or sniff_content_type(body)
                return FetchResult(
                    url=url,
                    final_url=urldefrag(str(response.url))[0],
                    status=response.status_code,
                    content_type=content_type,
                    body=body,
                    redirects=tuple(redirects),
                    fetcher="httpx",
                    attempts=total_attempts,
                    headers={k.lower(): v for k, v in response.headers.items()},
                )
            finally:
                response.close()
        raise RecordingError(f"Scraping failed: more than {self.max_redirects} redirects from {url!r}")

    def _read(self, response: httpx.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise RecordingError(
                        f"Scraping failed: {url!r} is larger than the {self.max_bytes}-byte recording limit"
                    )
                chunks.append(chunk)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise RecordingError(f"Scraping failed: reading {url!r} failed: {exc}") from exc
        return b"".join(chunks)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def chromium_path(explicit: str | None = None) -> str:
    """The Chromium binary to drive: the argument, else `MIROENV_CHROMIUM`, else the Debian system path."""
    return explicit or os.environ.get(CHROMIUM_ENV) or DEFAULT_CHROMIUM


class BrowserFetcher:
    """Renders pages in the system Chromium via Playwright, behind a guard proxy (thread-safe).

    Playwright runs on its own event-loop thread, started on first use; each fetch gets a fresh browser context
    (no cookies or storage shared between pages), at most `max_pages` at a time. The page is loaded, then given
    `settle` seconds of network quiet for scripts to finish, and its rendered DOM is returned as HTML.
    """

    def __init__(
        self,
        guard: URLGuard,
        *,
        executable_path: str | None = None,
        args: tuple[str, ...] = CHROMIUM_ARGS,
        timeout: float = 30.0,
        settle: float = 2.0,
        user_agent: str | None = None,
        max_pages: int = 4,
        rate_limiter: HostRateLimiter | None = None,
    ) -> None:
        self.guard = guard
        self.executable_path = chromium_path(executable_path)
        self.args = args
        self.timeout = timeout
        self.settle = settle
        self.user_agent = user_agent
        self.max_pages = max_pages
        self.rate_limiter = rate_limiter
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxy: GuardProxy | None = None
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pages: asyncio.Semaphore | None = None

    @property
    def proxy(self) -> GuardProxy | None:
        """The guard proxy the browser goes through (None until the browser starts)."""
        return self._proxy

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None:
                return self._loop
            if not Path(self.executable_path).is_file():
                raise RecordingError(
                    f"Scraping failed: this page needs JavaScript, but Chromium was not found at "
                    f"{self.executable_path!r} (set {CHROMIUM_ENV})."
                )
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="miroenv-browser", daemon=True)
            thread.start()
            self._proxy = GuardProxy(self.guard)
            try:
                asyncio.run_coroutine_threadsafe(self._launch(self._proxy.url), loop).result(timeout=120)
            except Exception as exc:
                self._shutdown(loop, thread)
                raise RecordingError(
                    f"Scraping failed: cannot start Chromium at {self.executable_path!r}: {exc}"
                ) from exc
            self._loop, self._thread = loop, thread
            return loop

    async def _launch(self, proxy_url: str) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=self.executable_path,
            args=list(self.args),
            headless=True,
            proxy={"server": proxy_url},
        )
        self._pages = asyncio.Semaphore(self.max_pages)

    def fetch(self, url: str) -> FetchResult:
        """Load `url` in Chromium and return the rendered HTML with the navigation's status and final URL."""
        self.guard.check_url(url)
        loop = self._start()
        if self.rate_limiter is not None:
            self.rate_limiter.acquire(urlsplit(url).hostname or "")
        future = asyncio.run_coroutine_threadsafe(self._render(url), loop)
        try:
            return future.result(timeout=self.timeout + self.settle + 30)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise RecordingError(f"Scraping failed: rendering {url!r} in Chromium timed out") from exc

    async def _render(self, url: str) -> FetchResult:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        assert self._browser is not None and self._pages is not None
        async with self._pages:
            options: dict[str, Any] = {"service_workers": "block", "accept_downloads": False}
            if self.user_agent:
                options["user_agent"] = self.user_agent
            context = await self._browser.new_context(**options)
            try:
                page = await context.new_page()
                try:
                    response = await page.goto(url, wait_until="load", timeout=self.timeout * 1000)
                except PlaywrightTimeout as exc:
                    raise RecordingError(
                        f"Scraping failed: {url!r} did not load within {self.timeout:g}s"
                    ) from exc
                except PlaywrightError as exc:
                    raise RecordingError(f"Scraping failed: Chromium could not load {url!r}: {exc}") from exc
                try:
                    await page.wait_for_load_state("networkidle", timeout=self.settle * 1000)
                except PlaywrightTimeout:
                    logger.debug(
                        "%s: network still busy after %.1fs; taking the page as it is", url, self.settle
                    )
                html = await page.content()
                redirects: list[str] = []
                headers: dict[str, str] = {}
                status = 200
                if response is not None:
                    status = response.status
                    headers = await response.all_headers()
                    previous = response.request.redirected_from
                    while previous is not None:
                        redirects.insert(0, previous.url)
                        previous = previous.redirected_from
                final_url = urldefrag(page.url)[0]
            except PlaywrightError as exc:
                raise RecordingError(f"Scraping failed: Chromium failed on {url!r}: {exc}") from exc
            finally:
                await context.close()
        return FetchResult(
            url=url,
            final_url=final_url,
            status=status,
            content_type="text/html; charset=utf-8",
            body=html.encode("utf-8"),
            redirects=tuple(redirects),
            fetcher="chromium",
            headers=headers,
        )

    async def _stop_browser(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None

    def _shutdown(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop_browser(), loop).result(timeout=30)
        except Exception:
            logger.exception("closing Chromium failed")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def close(self) -> None:
        """Close the browser, its event loop and the guard proxy."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            if loop is not None and thread is not None:
                self._shutdown(loop, thread)
