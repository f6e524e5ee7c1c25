"""`RecordingWeb`: a snapshot that fills itself from the live web, replay first.

A search or page the snapshot already holds is answered from it, exactly as `Snapshot` would answer it; anything
else is fetched live (Serper-compatible search API, httpx, Chromium for pages that need JavaScript), committed to
the snapshot at once, and then read back from it, so what the caller gets now is byte for byte what a replay of
the finished snapshot returns later. Thread-safe; many processes may record into one snapshot at once.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from miroenv.web.base import FileEntry, NotInSnapshotError, Page, SearchRequest, SearchResponse, Web
from miroenv.web.extract import TEXT_TYPES, ExtractedPage, extract_page
from miroenv.web.record.errors import LiveMissError, RecordingError
from miroenv.web.record.fetch import (
    CHROMIUM_ARGS,
    DEFAULT_USER_AGENT,
    BrowserFetcher,
    FetchResult,
    HttpFetcher,
)
from miroenv.web.record.guard import BlockedURLError, URLGuard
from miroenv.web.record.ratelimit import HostRateLimiter, shared_limiter
from miroenv.web.record.retry import RetryPolicy
from miroenv.web.record.serper import SerperClient
from miroenv.web.snapshot import DATABASE_FILE, MANIFEST_FILE, Snapshot, SnapshotWriter
from miroenv.web.urls import host_of, match_key

logger = logging.getLogger(__name__)

T = TypeVar("T")
Extractor = Callable[[bytes, str, str], ExtractedPage]
NOT_FOUND_STATUSES = frozenset({404, 410})
TEXT_FILE_TYPES = ("application/json", "application/ld+json", "application/javascript", "application/csv")


class RecordingConfig(BaseModel):
    """How a `RecordingWeb` reaches the live web."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    serper_base_url: str | None = Field(
        default=None,
        description="Serper-compatible API root (default: $MIROENV_SERPER_BASE_URL, else Serper).",
    )
    serper_api_key: str | None = Field(default=None, description="API key (default: $SERPER_API_KEY).")
    allow_private: bool = Field(
        default=False, description="Allow private/loopback/link-local targets (local test servers only)."
    )
    allow_networks: tuple[str, ...] = Field(
        default=(), description="CIDR networks allowed even though they are private (an intranet mirror)."
    )
    javascript_hosts: tuple[str, ...] = Field(
        default=(), description="Hosts (and their subdomains) whose HTML pages are rendered in Chromium."
    )
    needs_javascript: Callable[[str], bool] | None = Field(
        default=None, description="A predicate on the final URL: True renders the page in Chromium."
    )
    auto_javascript: bool = Field(
        default=True,
        description="Render in Chromium when the fetched HTML has <script> but almost no extractable text "
        "(only when Chromium and Playwright are installed).",
    )
    min_text_chars: int = Field(default=200, ge=0, description="'Almost no text' for `auto_javascript`.")
    timeout: float = Field(default=20.0, gt=0, description="Per-request timeout in seconds.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    rate: float = Field(default=2.0, gt=0, description="Requests per second per host (this process).")
    burst: float = Field(
        default=4.0, ge=1, description="Requests a host may get at once before `rate` applies."
    )
    user_agent: str = DEFAULT_USER_AGENT
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest response recorded.")
    chromium_path: str | None = Field(
        default=None, description="Chromium binary (default: /usr/bin/chromium)."
    )
    chromium_args: tuple[str, ...] = CHROMIUM_ARGS
    render_settle: float = Field(
        default=2.0, ge=0, description="Seconds of network quiet awaited after load."
    )


@dataclass(frozen=True)
class RecordOutcome(Generic[T]):
    """A value the recorder returned, and whether it was fetched live just now (else replayed)."""

    value: T
    live: bool


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def _text_content_type(result: FetchResult) -> str | None:
    """The content type to extract a non-HTML body with, or None for binary files (PDF, images, archives)."""
    kind = result.media_type
    if kind in TEXT_TYPES:
        return result.content_type
    if kind.startswith("text/") or kind in TEXT_FILE_TYPES or kind.endswith("+json"):
        params = result.content_type.partition(";")[2]
        return "text/plain" + (f";{params}" if params else "")
    if kind.endswith(("/xml", "+xml")):
        return result.content_type
    return None


class RecordingWeb(Web):
    """A snapshot directory opened for live recording (created when missing), behind the `Web` interface.

    Use it anywhere a `Web` goes: `ResearchEnv(snapshot=RecordingWeb(path), ...)` records an episode. Close it
    when done: that writes the manifest (counts, content hash). Keyword arguments override `config` fields;
    `name`, `capture_date` and `description` apply to a new snapshot only (default: the directory name, today).

    Outcomes: a page that answers 404/410, or whose URL the SSRF guard refuses, raises `LiveMissError` (a
    `NotInSnapshotError`, so tools show the usual not-in-snapshot message, the same text a replay shows); a
    network failure, timeout, or other HTTP error after retries raises `RecordingError` (an `infra` failure).
    Neither is stored.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        config: RecordingConfig | None = None,
        name: str | None = None,
        capture_date: str | None = None,
        description: str = "",
        search_client: SerperClient | None = None,
        http_fetcher: HttpFetcher | None = None,
        browser: BrowserFetcher | None = None,
        rate_limiter: HostRateLimiter | None = None,
        extractor: Extractor | None = None,
        **overrides: Any,
    ) -> None:
        base = config or RecordingConfig()
        self.config = RecordingConfig.model_validate({**dict(base), **overrides}) if overrides else base
        cfg = self.config
        self.path = Path(path)
        new = not (self.path / MANIFEST_FILE).is_file()
        self._writer = SnapshotWriter(
            self.path,
            name=(name or self.path.name) if new else None,
            capture_date=(capture_date or _today()) if new else None,
            description=description,
        )
        try:
            self._reader = Snapshot(self.path)
        except BaseException:
            self._writer.close()
            raise
        self.guard = URLGuard(allow_private=cfg.allow_private, allow_networks=cfg.allow_networks)
        self.rate_limiter = rate_limiter or shared_limiter(cfg.rate, cfg.burst)
        self._owns_search = search_client is None
        self._search = search_client or SerperClient(
            cfg.serper_base_url,
            cfg.serper_api_key,
            timeout=cfg.timeout,
            retry=cfg.retry,
            rate_limiter=self.rate_limiter,
        )
        self._owns_http = http_fetcher is None
        self._http = http_fetcher or HttpFetcher(
            self.guard,
            timeout=cfg.timeout,
            retry=cfg.retry,
            rate_limiter=self.rate_limiter,
            user_agent=cfg.user_agent,
            max_bytes=cfg.max_bytes,
        )
        self._owns_browser = browser is None
        self._browser = browser
        self._extract: Extractor = extractor or extract_page
        self._javascript_hosts = tuple(host_of(h) for h in cfg.javascript_hosts if h.strip())
        self._stripes = [threading.Lock() for _ in range(64)]
        self._lock = threading.Lock()
        self._stats: collections.Counter[str] = collections.Counter()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def __enter__(self) -> RecordingWeb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ Web interface

    @property
    def name(self) -> str:
        return self._writer.manifest.name

    live = True

    @property
    def content_hash(self) -> str:
        """`recording:` plus the hash the manifest held when last finalized: the content is still changing."""
        return "recording:" + (self._writer.manifest.content_hash or "new")

    @property
    def capture_date(self) -> str:
        return self._writer.manifest.capture_date

    def search(self, request: SearchRequest) -> SearchResponse:
        outcome = self.record_search(request)
        return outcome.value.model_copy(update={"source": "live"}) if outcome.live else outcome.value

    def page(self, url: str) -> Page:
        return self.record_page(url).value

    def file(self, url: str) -> FileEntry:
        return self.record_file(url).value

    # ------------------------------------------------------------------ recording

    @property
    def stats(self) -> dict[str, int]:
        """How many searches, pages and files were replayed or recorded, and how many lookups missed or failed."""
        with self._lock:
            return dict(self._stats)

    def _count(self, what: str) -> None:
        with self._lock:
            self._stats[what] += 1

    def record_search(self, request: SearchRequest) -> RecordOutcome[SearchResponse]:
        """The recorded results for exactly this request, or live results recorded now."""
        key = request.key()
        if not self._has_search(key):
            with self._flight("search\x00" + key):
                if not self._has_search(key):
                    try:
                        payload = self._search.search(request)
                    except RecordingError:
                        self._count("failures")
                        raise
                    self._writer.add_search(request, payload)
                    self._count("searches_recorded")
                    return RecordOutcome(self._reader.search(request), live=True)
        self._count("searches_replayed")
        return RecordOutcome(self._reader.search(request), live=False)

    def record_page(self, url: str) -> RecordOutcome[Page]:
        """The stored page for `url` (any spelling the snapshot resolves), or the live page recorded now."""
        stored = self._stored_page(url)
        if stored is None:
            with self._flight("page\x00" + match_key(url)):
                stored = self._stored_page(url)
                if stored is None:
                    page = self._record(url, "page")
                    self._count("pages_recorded")
                    return RecordOutcome(self._read_back(url, page), live=True)
        self._count("pages_replayed")
        return RecordOutcome(stored, live=False)

    def record_file(self, url: str) -> RecordOutcome[FileEntry]:
        """The stored file at exactly `url`, or the live file recorded now. An HTML answer is stored as a page
        and reported as no file (as a replay would: the download tool then reads the page)."""
        stored = self._stored_file(url)
        if stored is None:
            with self._flight("page\x00" + match_key(url)):
                stored = self._stored_file(url)
                if stored is None:
                    if self._stored_page(url) is None:
                        self._record(url, "file")
                    stored = self._stored_file(url)
                    if stored is None:
                        raise NotInSnapshotError(url, kind="file")
                    self._count("files_recorded")
                    return RecordOutcome(stored, live=True)
        self._count("files_replayed")
        return RecordOutcome(stored, live=False)

    def finalize(self) -> None:
        """Rewrite the manifest now (counts, content hash), as `close` does."""
        self._writer.finalize()

    def close(self) -> None:
        """Stop the browser and HTTP clients, close the snapshot and write its manifest."""
        if self._closed:
            return
        self._closed = True
        if self._browser is not None and self._owns_browser:
            self._browser.close()
        if self._owns_http:
            self._http.close()
        if self._owns_search:
            self._search.close()
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._reader.close()
        self._writer.close()

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _flight(self, key: str) -> Iterator[None]:
        """One live fetch per key at a time in this process; others wait, then find it stored."""
        with self._stripes[hash(key) % len(self._stripes)]:
            yield

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"file:{(self.path / DATABASE_FILE).resolve()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _has_search(self, key: str) -> bool:
        row = self._connection().execute("SELECT 1 FROM searches WHERE key = ?", (key,)).fetchone()
        return row is not None

    def _stored_page(self, url: str) -> Page | None:
        try:
            return self._reader.page(url)
        except NotInSnapshotError:
            return None

    def _stored_file(self, url: str) -> FileEntry | None:
        try:
            return self._reader.file(url)
        except NotInSnapshotError:
            return None

    def _read_back(self, url: str, page: Page) -> Page:
        """The page as a replay will return it (falls back to what was written if the lookup misses)."""
        stored = self._stored_page(url)
        if stored is None:
            logger.warning("%s: recorded, but the snapshot does not resolve it", url)
            return page
        return stored

    def _miss(self, url: str, reason: str, kind: str) -> LiveMissError:
        suggestion = None
        if kind == "page":
            try:
                self._reader.page(url)
            except NotInSnapshotError as exc:
                suggestion = exc.suggestion
        logger.info("live miss %s: %s", url, reason)
        self._count("misses")
        return LiveMissError(url, reason, kind=kind, suggestion=suggestion)

    def _record(self, url: str, kind: str) -> Page:
        """Fetch `url` live and store it; returns the stored page (the caller reads it back)."""
        try:
            result, extracted = self._fetch(url, kind)
        except RecordingError:
            self._count("failures")
            raise
        existing = self._stored_page(result.final_url) if result.final_url != url else None
        if existing is not None and result.is_html:
            if url != result.final_url:
                self._writer.add_alias(url, result.final_url)
            return existing
        return self._store(url, result, extracted)

    def _fetch(self, url: str, kind: str) -> tuple[FetchResult, ExtractedPage]:
        target = url.strip()
        if "://" not in target and not target.lower().startswith(("javascript:", "data:", "mailto:")):
            target = "https://" + target.lstrip("/")  # models often drop the scheme; the result keeps `url`
        try:
            result = self._http.fetch(target)
        except BlockedURLError as exc:
            raise self._miss(url, exc.reason, kind) from exc
        if target != url:
            result = dataclasses.replace(result, url=url)
        self._check_status(url, result, kind)
        if not result.is_html:
            text_type = _text_content_type(result)
            if text_type is None:
                return result, ExtractedPage(title="", text="", extractor="none")
            return result, self._extract(result.body, result.final_url, text_type)
        extracted = self._extract(result.body, result.final_url, result.content_type)
        if not self._wants_browser(result, extracted):
            return result, extracted
        try:
            rendered = self._browser_fetcher().fetch(result.final_url)
        except BlockedURLError as exc:
            raise self._miss(url, exc.reason, kind) from exc
        self._check_status(url, rendered, kind)
        rendered = dataclasses.replace(
            rendered, url=url, redirects=result.redirects + rendered.redirects, attempts=result.attempts
        )
        return rendered, self._extract(rendered.body, rendered.final_url, rendered.content_type)

    def _check_status(self, url: str, result: FetchResult, kind: str) -> None:
        if result.status in NOT_FOUND_STATUSES:
            raise self._miss(url, f"HTTP {result.status} at {result.final_url}", kind)
        if result.status >= 400:
            raise RecordingError(
                f"Scraping failed: {url!r} answered HTTP {result.status} after {result.attempts} attempt"
                f"{'s' * (result.attempts != 1)}."
            )

    def _wants_browser(self, result: FetchResult, extracted: ExtractedPage) -> bool:
        cfg = self.config
        if cfg.needs_javascript is not None and cfg.needs_javascript(result.final_url):
            return True
        host = host_of(result.final_url)
        if any(host == h or host.endswith("." + h) for h in self._javascript_hosts):
            return True
        if not cfg.auto_javascript or len(extracted.text.strip()) >= cfg.min_text_chars:
            return False
        return b"<script" in result.body.lower() and self._browser_available()

    def _browser_available(self) -> bool:
        """Chromium and Playwright are both installed (automatic rendering is skipped otherwise)."""
        if importlib.util.find_spec("playwright") is None:
            return False
        return Path(self._browser_fetcher().executable_path).is_file()

    def _browser_fetcher(self) -> BrowserFetcher:
        with self._lock:
            if self._browser is None:
                cfg = self.config
                self._browser = BrowserFetcher(
                    self.guard,
                    executable_path=cfg.chromium_path,
                    args=cfg.chromium_args,
                    timeout=cfg.timeout,
                    settle=cfg.render_settle,
                    rate_limiter=self.rate_limiter,
                )
            return self._browser

    def _store(self, url: str, result: FetchResult, extracted: ExtractedPage) -> Page:
        """Commit the response: files first (non-HTML), then the page under its final URL, then the alias from
        the requested URL; each its own transaction, so a crash keeps whatever landed."""
        captured = _now()
        metadata: dict[str, Any] = {"fetcher": result.fetcher}
        if result.redirects:
            metadata["redirects"] = list(result.redirects)
        body: bytes | None = result.body
        if not result.is_html:
            for file_url in dict.fromkeys((url, result.final_url)):
                self._writer.add_file(
                    file_url, result.body, content_type=result.content_type, captured_at=captured
                )
            metadata["file"] = True
            body = None
        page = self._writer.add_page(
            result.final_url,
            text=extracted.text,
            title=extracted.title,
            final_url=result.final_url,
            status=result.status,
            content_type=result.content_type,
            body=body,
            extractor=extracted.extractor,
            captured_at=captured,
            metadata=metadata,
        )
        if url != result.final_url:
            self._writer.add_alias(url, result.final_url)
        return page
