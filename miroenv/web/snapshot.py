"""The on-disk snapshot: a directory with `manifest.json` and a SQLite database of pages, searches and files.

Layout (format version 1, documented in docs/snapshots.md):

    <dir>/manifest.json     name, capture date, counts, content hash
    <dir>/snapshot.sqlite   tables `pages`, `searches`, `files`
    <dir>/index/            the full-text index over `pages` (see `miroenv.web.index`)

Readers open the database read-only; writers add rows in transactions (WAL journal) and rewrite the manifest
atomically when they finish, so a killed writer leaves a readable snapshot holding every committed row. A
snapshot without a usable index says so (`Snapshot.index_status`, a `SnapshotIndexWarning` when an env is
built on it, `NoSearchIndexError` from a search the index would answer) instead of answering with no results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sqlite3
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, Field

from miroenv._version import __version__
from miroenv.web.base import (
    ExtractionRecord,
    FileEntry,
    NotInSnapshotError,
    Page,
    SearchRequest,
    SearchResponse,
    ToolResultRecord,
    Web,
    extraction_key,
    tool_call_key,
)
from miroenv.web.index import NoSearchIndexError, SnapshotIndex, SnapshotIndexError, remove_stale_builds
from miroenv.web.urls import canonical_url, host_of, match_key

logger = logging.getLogger(__name__)

FORMAT_NAME = "miroenv-snapshot"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
DATABASE_FILE = "snapshot.sqlite"
INDEX_DIR = "index"
CONTENT_TABLES = ("pages", "searches", "files", "aliases", "extractions", "tool_results")
"""Tables whose rows are the snapshot's content (counted in the manifest and covered by the content hash)."""
LOCK_FILE = ".snapshot.lock"
"""Guards manifest rewrites across processes; removed by the writer that closes last."""
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another process's transaction before giving up."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY,
    final_url TEXT NOT NULL,
    status INTEGER NOT NULL,
    title TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body BLOB,
    text TEXT NOT NULL,
    extractor TEXT NOT NULL,
    captured_at TEXT,
    metadata TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS searches (
    key TEXT PRIMARY KEY,
    query TEXT NOT NULL,
    params TEXT NOT NULL,
    response TEXT NOT NULL,
    recorded_at TEXT
);
CREATE TABLE IF NOT EXISTS files (
    url TEXT PRIMARY KEY,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    captured_at TEXT
);
CREATE TABLE IF NOT EXISTS aliases (
    url TEXT PRIMARY KEY,
    target TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS extractions (
    key TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    info TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    recorded_at TEXT
);
CREATE TABLE IF NOT EXISTS tool_results (
    key TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,
    result TEXT NOT NULL,
    error_kind TEXT,
    recorded_at TEXT
);
CREATE TABLE IF NOT EXISTS url_keys (
    key TEXT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (key, url)
) WITHOUT ROWID;
"""

_PAGE_COLUMNS = "url, final_url, status, title, content_type, body, text, extractor, captured_at, metadata"


class SnapshotError(Exception):
    """A snapshot that cannot be opened or written; the message says which file and why."""


class SnapshotIndexWarning(UserWarning):
    """An env was built on a snapshot whose search index is missing, out of date or damaged; the message says
    what searches will do and how to rebuild the index."""


class IndexStatus(BaseModel):
    """What `Snapshot.index_status` found: `ok`, `missing`, `stale` (built from other content) or `damaged`,
    the number of pages indexed, and a message that says what searches do and how to rebuild."""

    model_config = ConfigDict(frozen=True)

    state: Literal["ok", "missing", "stale", "damaged"]
    documents: int | None = None
    message: str

    @property
    def ok(self) -> bool:
        """Whether the index is there, opens and was built from the snapshot's current content."""
        return self.state == "ok"


class SnapshotManifest(BaseModel):
    """The snapshot's `manifest.json`."""

    model_config = ConfigDict(extra="allow")

    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    name: str
    description: str = ""
    capture_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    created_by: str = f"miroenv {__version__}"
    counts: dict[str, int] = Field(default_factory=dict)
    content_hash: str = ""


def _empty_search_payload(request: SearchRequest) -> dict[str, Any]:
    return {"searchParameters": _search_parameters(request), "organic": []}


def _search_parameters(request: SearchRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"q": request.q, "gl": request.gl, "hl": request.hl}
    for field in ("location", "tbs"):
        value = getattr(request, field)
        if value:
            params[field] = value
    if request.num != 10:
        params["num"] = request.num
    if request.page != 1:
        params["page"] = request.page
    params["type"] = "search"
    params["engine"] = "google"
    return params


class Snapshot(Web):
    """A read-only snapshot directory; thread-safe (one SQLite connection per thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        db_path = self.path / DATABASE_FILE
        if (self.path / MANIFEST_FILE).is_file() and not db_path.is_file():
            raise SnapshotError(f"{db_path}: the snapshot database is missing")
        self.manifest = self.read_manifest(self.path)
        self._db_uri = f"file:{db_path.resolve()}?mode=ro"
        self._index: SnapshotIndex | None = None
        self._index_lock = threading.Lock()
        self._warned = False
        remove_stale_builds(self.path / INDEX_DIR)
        self._local = threading.local()
        self._connect()

    @classmethod
    def open(cls, path: str | Path) -> Snapshot:
        """Open the snapshot at `path` for reading."""
        return cls(path)

    @staticmethod
    def read_manifest(path: str | Path) -> SnapshotManifest:
        """The manifest of the snapshot directory `path`, checked to be a format this version reads."""
        manifest_path = Path(path) / MANIFEST_FILE
        if not manifest_path.is_file():
            raise SnapshotError(
                f"{manifest_path}: no snapshot manifest here (is {path} a snapshot directory?)"
            )
        try:
            manifest = SnapshotManifest.model_validate_json(manifest_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SnapshotError(f"{manifest_path}: invalid manifest: {exc}") from exc
        if manifest.format != FORMAT_NAME or manifest.format_version > FORMAT_VERSION:
            raise SnapshotError(
                f"{manifest_path}: format {manifest.format!r} v{manifest.format_version} is not "
                f"readable by miroenv {__version__} (reads {FORMAT_NAME} v{FORMAT_VERSION})"
            )
        return manifest

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self._db_uri, uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                raise SnapshotError(f"{self.path / DATABASE_FILE}: cannot open: {exc}") from exc
            self._local.conn = conn
        return conn

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def content_hash(self) -> str:
        return self.manifest.content_hash

    @property
    def capture_date(self) -> str:
        return self.manifest.capture_date

    def search(self, request: SearchRequest) -> SearchResponse:
        """A recorded search exactly as recorded; any other query from the full-text index, Serper-shaped."""
        conn = self._connect()
        for key in dict.fromkeys((request.key(), request.default_page_key())):
            row = conn.execute("SELECT response FROM searches WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return SearchResponse(payload=json.loads(row[0]), source="recorded")
        if request.num <= 0:
            return SearchResponse(payload=_empty_search_payload(request), source="empty")
        index = self.index()
        if index is None:
            raise NoSearchIndexError(self._missing_message())
        hits = index.search(request.q, limit=request.num, offset=(max(request.page, 1) - 1) * request.num)
        organic = [
            {"title": hit.title, "link": hit.url, "snippet": hit.snippet, "position": position}
            for position, hit in enumerate(hits, start=1)
        ]
        return SearchResponse(
            payload={"searchParameters": _search_parameters(request), "organic": organic}, source="index"
        )

    def extraction(self, url: str, info: str, model: str) -> ExtractionRecord | None:
        """A recorded LLM extraction for this page, question and model, if the snapshot holds one."""
        row = (
            self._connect()
            .execute(
                "SELECT url, info, model, text, tokens, recorded_at FROM extractions WHERE key = ?",
                (extraction_key(url, info, model),),
            )
            .fetchone()
        )
        if row is None:
            return None
        return ExtractionRecord(
            url=row[0], info=row[1], model=row[2], text=row[3], tokens=row[4], recorded_at=row[5]
        )

    def tool_result(
        self, server: str | None, tool: str, arguments: Mapping[str, Any]
    ) -> ToolResultRecord | None:
        """A recorded result for exactly this call, if the snapshot holds one (imported logs)."""
        row = (
            self._connect()
            .execute(
                "SELECT server, tool, arguments, result, error_kind, recorded_at FROM tool_results WHERE key = ?",
                (tool_call_key(server, tool, arguments),),
            )
            .fetchone()
        )
        if row is None:
            return None
        return ToolResultRecord(
            server=row[0] or None,
            tool=row[1],
            arguments=json.loads(row[2]),
            result=row[3],
            error_kind=row[4],
            recorded_at=row[5],
        )

    def index(self) -> SnapshotIndex | None:
        """The snapshot's full-text index (`<dir>/index/`), opened once; None when it has none.

        Raises `SnapshotIndexError` when the folder is there but cannot be opened. A rebuild switching a new
        index in while this opens it is retried, so the index returned is one build's, whole.
        """
        if self._index is None and (self.path / INDEX_DIR).is_dir():
            with self._index_lock:
                if self._index is None:
                    self._index = self._open_index(self.path / INDEX_DIR)
        return self._index

    @staticmethod
    def _open_index(index_dir: Path, attempts: int = 4) -> SnapshotIndex:
        """Open `index_dir`, again when it was replaced by a rebuild during the open (its inode changed)."""
        for attempt in range(attempts):
            before = index_dir.stat().st_ino
            try:
                opened = SnapshotIndex.open(index_dir)
            except SnapshotIndexError:
                if attempt + 1 == attempts or index_dir.stat().st_ino == before:
                    raise
                continue
            if index_dir.stat().st_ino == before:
                return opened
            opened.close()
        raise SnapshotIndexError(f"{index_dir}: replaced by rebuilds {attempts} times while opening it")

    def _reindex_hint(self) -> str:
        """The command that rebuilds this snapshot's index."""
        return f"`miroenv snapshot reindex {shlex.quote(str(self.path))}`"

    def _missing_message(self) -> str:
        """What a search the index would answer gets on a snapshot with no index."""
        return (
            f"{self.path}: this snapshot has no search index, so only its recorded queries can be answered; "
            f"build the index with {self._reindex_hint()}"
        )

    def _damaged(self, problem: SnapshotIndexError, documents: int | None) -> IndexStatus:
        """The status of an index that does not open or whose files do not hash as recorded."""
        return IndexStatus(
            state="damaged",
            documents=documents,
            message=f"the search index is damaged ({problem}); rebuild it with {self._reindex_hint()}",
        )

    def index_status(self, *, full: bool = False) -> IndexStatus:
        """Whether the index is there, opens and matches the content (cheap: milliseconds); with `full`, also
        that its files hash as recorded and it holds one document per searchable page (reads everything)."""
        try:
            index = self.index()
        except SnapshotIndexError as exc:
            return self._damaged(exc, None)
        if index is None:
            return IndexStatus(state="missing", message=self._missing_message())
        built = index.content_hash
        if built is not None and built != self.manifest.content_hash:
            return IndexStatus(
                state="stale",
                documents=len(index),
                message=(
                    f"{self.path}: the search index is out of date (built from content {built}, the snapshot "
                    f"holds {self.manifest.content_hash or 'unfinished content'}): searches miss pages added or "
                    f"changed since; rebuild it with {self._reindex_hint()}"
                ),
            )
        if full:
            try:
                index.check_files()
            except SnapshotIndexError as exc:
                return self._damaged(exc, len(index))
            pages = int(
                self._connect().execute("SELECT COUNT(*) FROM pages WHERE status < 400").fetchone()[0]
            )
            if pages != len(index):
                return IndexStatus(
                    state="damaged" if built is not None else "stale",
                    documents=len(index),
                    message=(
                        f"{self.path}: the search index holds {len(index)} pages but the snapshot has {pages} "
                        f"searchable pages; rebuild it with {self._reindex_hint()}"
                    ),
                )
        return IndexStatus(
            state="ok",
            documents=len(index),
            message=f"search index of {len(index)} pages"
            + (", built from this content" if built is not None else " (built by an older miroenv)"),
        )

    def warn_if_unsearchable(self) -> IndexStatus:
        """Warn (`SnapshotIndexWarning`, once per snapshot object) when the index is not `ok`; returns the
        status. Envs call this when they are built on a snapshot."""
        status = self.index_status()
        if not status.ok and not self._warned:
            self._warned = True
            warnings.warn(status.message, SnapshotIndexWarning, stacklevel=3)
        return status

    def page(self, url: str) -> Page:
        """The page at `url`: exact URL, then any stored spelling with the same match key (scheme, `www.`,
        trailing slash, tracking parameters, fragment), then redirect aliases; else `NotInSnapshotError`
        naming the closest URL held for that host."""
        conn = self._connect()
        row = conn.execute(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE url = ?", (url,)).fetchone()
        if row is None:
            stored = self._resolve(conn, url)
            if stored is not None:
                row = conn.execute(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE url = ?", (stored,)).fetchone()
        if row is None:
            raise NotInSnapshotError(url, suggestion=self._closest_on_host(conn, url))
        return _page_from_row(row)

    @staticmethod
    def _resolve(conn: sqlite3.Connection, url: str) -> str | None:
        candidates = [
            r[0]
            for r in conn.execute("SELECT url FROM url_keys WHERE key = ? ORDER BY url", (match_key(url),))
        ]
        if not candidates:
            return None
        wanted = canonical_url(url)
        scheme = wanted.split(":", 1)[0]

        def closeness(candidate: str) -> tuple[bool, bool]:
            spelled = canonical_url(candidate)
            return spelled == wanted, spelled.split(":", 1)[0] == scheme

        return str(max(candidates, key=closeness))

    @staticmethod
    def _closest_on_host(conn: sqlite3.Connection, url: str, limit: int = 2000) -> str | None:
        host = host_of(url)
        if not host:
            return None
        rows = conn.execute(
            "SELECT DISTINCT url FROM url_keys WHERE key >= ? AND key < ? ORDER BY url LIMIT ?",
            (host + "/", host + "0", limit),
        ).fetchall()
        if not rows:
            return None
        wanted = match_key(url)
        scored = sorted((-SequenceMatcher(None, wanted, match_key(r[0])).ratio(), r[0]) for r in rows)
        return str(scored[0][1])

    def file(self, url: str) -> FileEntry:
        row = (
            self._connect()
            .execute("SELECT url, content_type, data, captured_at FROM files WHERE url = ?", (url,))
            .fetchone()
        )
        if row is None:
            raise NotInSnapshotError(url, kind="file")
        return FileEntry(url=row[0], content_type=row[1], data=bytes(row[2]), captured_at=row[3])

    def iter_pages(self) -> Iterator[Page]:
        """Every page in URL order."""
        for row in self._connect().execute(f"SELECT {_PAGE_COLUMNS} FROM pages ORDER BY url"):
            yield _page_from_row(row)

    def iter_searches(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """Every recorded search as (query, params, response payload), in key order."""
        for query, params, response in self._connect().execute(
            "SELECT query, params, response FROM searches ORDER BY key"
        ):
            yield query, json.loads(params), json.loads(response)

    def verify(self, *, index: bool = True) -> str:
        """Recompute the content hash from the database and (with `index`) check the index's files and page
        count; raises `SnapshotError` if the content differs from the manifest or the index is damaged.

        A missing or out-of-date index is not damage (searches say so themselves): see `index_status`.
        """
        actual = compute_content_hash(self._connect())
        if actual != self.manifest.content_hash:
            raise SnapshotError(
                f"{self.path}: content hash mismatch: manifest says {self.manifest.content_hash}, data is {actual}"
            )
        if index:
            status = self.index_status(full=True)
            if status.state == "damaged":
                raise SnapshotError(status.message)
        return actual

    def close(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _page_from_row(row: tuple[Any, ...]) -> Page:
    return Page(
        url=row[0],
        final_url=row[1],
        status=row[2],
        title=row[3],
        content_type=row[4],
        body=bytes(row[5]) if row[5] is not None else None,
        text=row[6],
        extractor=row[7],
        captured_at=row[8],
        metadata=json.loads(row[9]),
    )


def compute_content_hash(conn: sqlite3.Connection) -> str:
    """SHA-256 over every row of every table in primary-key order: equal content, equal hash."""
    digest = hashlib.sha256()
    queries = (
        ("pages", f"SELECT {_PAGE_COLUMNS} FROM pages ORDER BY url"),
        ("searches", "SELECT key, query, params, response FROM searches ORDER BY key"),
        ("files", "SELECT url, content_type, data FROM files ORDER BY url"),
        ("aliases", "SELECT url, target FROM aliases ORDER BY url"),
        ("extractions", "SELECT key, url, info, model, text, tokens FROM extractions ORDER BY key"),
        (
            "tool_results",
            "SELECT key, server, tool, arguments, result, error_kind FROM tool_results ORDER BY key",
        ),
    )
    for table, query in queries:
        digest.update(f"\x00table:{table}\x00".encode())
        for row in conn.execute(query):
            for value in row:
                if value is None:
                    digest.update(b"\x01N")
                    continue
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                digest.update(b"\x01" + len(raw).to_bytes(8, "big") + raw)
    return "sha256:" + digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class SnapshotWriter:
    """Creates or extends a snapshot; each `add_*` call is committed at once, so a crash loses nothing written.

    Use as a context manager: on exit the manifest (counts, content hash) is rewritten atomically.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        capture_date: str | None = None,
        description: str = "",
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_FILE
        if (name is None or capture_date is None) and not manifest_path.exists():
            raise SnapshotError(f"{self.path}: a new snapshot needs a name and a capture_date (YYYY-MM-DD)")
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._closed = False
        # Many processes may open one snapshot at once: creation and manifest rewrites happen under a file lock.
        self._file_lock = FileLock(str(self.path / LOCK_FILE))
        with self._file_lock:
            if manifest_path.exists() and overwrite:
                for leftover in (
                    MANIFEST_FILE,
                    DATABASE_FILE,
                    DATABASE_FILE + "-wal",
                    DATABASE_FILE + "-shm",
                ):
                    (self.path / leftover).unlink(missing_ok=True)
            if manifest_path.exists():
                self.manifest = SnapshotManifest.model_validate_json(
                    manifest_path.read_text(encoding="utf-8")
                )
                if name is not None:
                    self.manifest.name = name
                if capture_date is not None:
                    self.manifest.capture_date = capture_date
            else:
                if name is None or capture_date is None:
                    raise SnapshotError(
                        f"{self.path}: a new snapshot needs a name and a capture_date (YYYY-MM-DD)"
                    )
                self.manifest = SnapshotManifest(
                    name=name, capture_date=capture_date, description=description
                )
            # Autocommit mode: `_execute_many` opens each transaction itself with BEGIN IMMEDIATE.
            self._conn = sqlite3.connect(
                self.path / DATABASE_FILE,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._write_manifest()

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_page(
        self,
        url: str,
        *,
        text: str,
        title: str = "",
        final_url: str | None = None,
        status: int = 200,
        content_type: str = "text/html",
        body: bytes | None = None,
        extractor: str = "provided",
        captured_at: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Page:
        """Store a page (replacing any page at the same URL) and return it."""
        page = Page(
            url=url,
            final_url=final_url or url,
            status=status,
            title=title,
            content_type=content_type,
            body=body,
            text=text,
            extractor=extractor,
            captured_at=captured_at or _now(),
            metadata=dict(metadata or {}),
        )
        self.put_page(page)
        return page

    def put_page(self, page: Page) -> None:
        """Store a `Page` model as is; its URL and final URL both find it."""
        keys = {(match_key(page.url), page.url), (match_key(page.final_url), page.url)}
        self._execute_many(
            [
                (
                    f"INSERT OR REPLACE INTO pages ({_PAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        page.url,
                        page.final_url,
                        page.status,
                        page.title,
                        page.content_type,
                        page.body,
                        page.text,
                        page.extractor,
                        page.captured_at,
                        json.dumps(page.metadata, sort_keys=True, ensure_ascii=False),
                    ),
                )
            ]
            + [("INSERT OR IGNORE INTO url_keys (key, url) VALUES (?, ?)", key) for key in sorted(keys)]
        )

    def add_extraction(self, record: ExtractionRecord) -> None:
        """Record an LLM extractor's answer so replays return it without the endpoint."""
        self._execute(
            "INSERT OR REPLACE INTO extractions (key, url, info, model, text, tokens, recorded_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                record.key(),
                record.url,
                record.info,
                record.model,
                record.text,
                record.tokens,
                record.recorded_at or _now(),
            ),
        )

    def add_tool_result(self, record: ToolResultRecord) -> None:
        """Record a tool result verbatim; a later call with the same server, tool and arguments returns it."""
        self._execute(
            "INSERT OR REPLACE INTO tool_results (key, server, tool, arguments, result, error_kind, recorded_at) "
            "VALUES (?,?,?,?,?,?,?)",
            (
                record.key(),
                record.server or "",
                record.tool,
                json.dumps(record.arguments, sort_keys=True, ensure_ascii=False),
                record.result,
                record.error_kind,
                record.recorded_at or _now(),
            ),
        )

    def add_alias(self, url: str, target: str) -> None:
        """Make `url` (a redirect source, another spelling) lead to the page stored at `target`."""
        self._execute_many(
            [
                ("INSERT OR REPLACE INTO aliases (url, target) VALUES (?, ?)", (url, target)),
                ("INSERT OR IGNORE INTO url_keys (key, url) VALUES (?, ?)", (match_key(url), target)),
            ]
        )

    def add_search(
        self,
        request: SearchRequest | str,
        response: Mapping[str, Any] | None = None,
        *,
        organic: Sequence[Mapping[str, Any]] | None = None,
        recorded_at: str | None = None,
    ) -> None:
        """Record the results of a search: a full Serper payload, or just its `organic` list."""
        if isinstance(request, str):
            request = SearchRequest(q=request)
        if response is None:
            payload: dict[str, Any] = {
                "searchParameters": _search_parameters(request),
                "organic": [
                    {**dict(item), "position": item.get("position", i)}
                    for i, item in enumerate(organic or [], 1)
                ],
            }
        else:
            payload = dict(response)
        params = request.model_dump(exclude={"q"}, exclude_none=True)
        self._execute(
            "INSERT OR REPLACE INTO searches (key, query, params, response, recorded_at) VALUES (?,?,?,?,?)",
            (
                request.key(),
                request.q,
                json.dumps(params, sort_keys=True),
                json.dumps(payload, ensure_ascii=False),
                recorded_at or _now(),
            ),
        )

    def add_file(
        self,
        url: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        captured_at: str | None = None,
    ) -> None:
        """Store a downloadable file."""
        self._execute(
            "INSERT OR REPLACE INTO files (url, content_type, data, captured_at) VALUES (?,?,?,?)",
            (url, content_type, data, captured_at or _now()),
        )

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self._execute_many([(sql, params)])

    def _execute_many(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run statements in one transaction: all of them land, or none; waits out other writers (busy timeout)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise SnapshotError(f"{self.path / DATABASE_FILE}: cannot start a write: {exc}") from exc
            try:
                for sql, params in statements:
                    self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._lock:
            return {
                table: int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in CONTENT_TABLES
            }

    def _write_manifest(self) -> None:
        """Replace `manifest.json` atomically (temporary file, fsync, rename); callers hold the file lock."""
        data = self.manifest.model_dump_json(indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".manifest.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path / MANIFEST_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def finalize(self) -> SnapshotManifest:
        """Checkpoint the database and rewrite the manifest with fresh counts and content hash.

        Counts and hash are read in one read transaction under the file lock, so with many writers the manifest
        written last describes the data as the last finalizer saw it.
        """
        with self._lock, self._file_lock:
            # Other processes may be reading or writing: checkpoint what can be, without waiting on them.
            self._conn.execute("PRAGMA busy_timeout=200")
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("BEGIN")
            try:
                self.manifest.content_hash = compute_content_hash(self._conn)
                self.manifest.counts = {
                    table: int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                    for table in CONTENT_TABLES
                }
            finally:
                self._conn.execute("COMMIT")
            self._write_manifest()
        return self.manifest

    def close(self) -> None:
        """Finalize and close the database."""
        if self._closed:
            return
        self.finalize()
        with self._lock, self._file_lock:
            try:
                # A single-file database is the portable form; while another connection has it open this fails
                # at once (no busy wait) and WAL stays, still valid: the last writer to close switches it.
                self._conn.execute("PRAGMA journal_mode=DELETE")
                # Nobody else has the database open: drop the lock file too (filelock retries on an unlinked
                # lock file, so a process about to take it is safe).
                (self.path / LOCK_FILE).unlink(missing_ok=True)
            except sqlite3.OperationalError:
                logger.info("%s: snapshot in use by another connection; keeping the WAL journal", self.path)
            self._conn.close()
            self._closed = True
