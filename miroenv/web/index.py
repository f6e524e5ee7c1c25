"""Full-text BM25 index over a snapshot's pages (tantivy): deterministic builds, safe queries, stable rankings.

Layout of `<snapshot>/index/`: tantivy's files (the BM25 postings; only the URL is stored there),
`miroenv-index.json` (format, analyzer, document count) and a page store read by document id without
decompression: `pages.bin` (URL, title and the first `SNIPPET_SCAN_CHARS` of the text, UTF-8, back to back),
`pages.offsets` (little-endian u64: where each page's URL, title and text start, then the end) and `pages.chars`
(little-endian u64: each page's full text length).

Builds are crash-safe: each build writes a fresh `.index.<id>.building` folder next to `index/` while holding
`.index.<id>.lock`, then switches it into place in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere
two renames, with the previous index restored by the next cleaner if the build dies between them), so a killed
build leaves the previous index, or no `index/` at all, never a half-built one. Folders whose builder is gone (its
lock is free) are removed by the next build and by readers that can write the folder (`remove_stale_builds`).
`miroenv-index.json` records the snapshot content hash the index was built from and a SHA-256 of every index
file, which `SnapshotIndex.check_files` recomputes.

Rankings are identical across builds, processes and machines because:
- the index is built by one writer thread in one commit into exactly one segment (verified after the build);
- documents are stored sorted by URL (tantivy index sorting), so document ids, and with them the order in
  which tantivy adds up term scores, do not depend on the order pages were added, and a document id orders
  like its URL;
- results are sorted in Python by score rounded to `SCORE_DIGITS` significant digits, then by URL, after
  fetching every hit that ties with the last one wanted.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import mmap
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import uuid
import weakref
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import tantivy
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict

INDEX_DIR = "index"
"""Name of the index folder inside a snapshot directory."""

INDEX_FORMAT = "miroenv-index"
INDEX_FORMAT_VERSION = 1
META_FILE = "miroenv-index.json"
"""Our metadata file inside the index folder (tantivy owns `meta.json`)."""

STORE_FILE = "pages.bin"
OFFSETS_FILE = "pages.offsets"
CHARS_FILE = "pages.chars"

ANALYZER = "miroenv_en"
ANALYZER_DESCRIPTION = "simple tokenizer, remove_long(40), lowercase, ascii_fold, stemmer(english)"
"""The tokenizer every text field is indexed with; queries go through the same chain."""

SCORE_DIGITS = 6
"""Significant digits kept of a score, so float noise cannot reorder results between builds or machines."""

SNIPPET_CHARS = 240
"""Snippet window in characters, before "..." marks are added where the page text was cut."""

SNIPPET_SCAN_CHARS = 5_000
"""Snippets come from the first this many characters of a page (the only part the index stores), which bounds
the time a snippet takes (about 10 µs per 1,000 characters)."""

MAX_QUERY_CHARS = 2000
"""Longer queries are cut: an agent's query this long is a paste, not a search."""

MAX_QUERY_TERMS = 32
"""At most this many distinct terms (first ones kept) make the query."""

HEAP_BYTES = 3_000_000_000
"""Writer memory budget: the build must fit in it to stay one segment (a build of 10^5 pages of 1.1 KB peaked at
230 MB; at that rate about 10^6 such pages fit); a build that does not fit fails with `SnapshotIndexError`."""

_TIE_MARGIN = 8
_WORD_TAIL = re.compile(rb"[0-9A-Za-z\x80-\xff]*")
_SPACE = re.compile(rb"\s")
_NON_ASCII = re.compile(rb"[\x80-\xff]+")
_QUERY_WORD = re.compile(r"[^\W_]+")
_WORD_BYTE = [chr(b).isalnum() or b >= 0x80 for b in range(256)]
"""Whether a byte of UTF-8 text can be part of a word: an ASCII letter or digit, or any non-ASCII byte."""

QUERY_STOPWORDS = (
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "did", "do", "does", "for", "from", "had", "has",
    "have", "how", "if", "in", "into", "is", "it", "its", "no", "not", "of", "on", "or", "s", "such", "that",
    "the", "their", "then", "there", "these", "they", "this", "to", "was", "were", "what", "when", "where",
    "which", "who", "whom", "will", "with",
)  # fmt: skip
"""Words dropped from queries (never from the index) unless the query holds nothing else."""


class IndexHit(BaseModel):
    """One search result: the page, its BM25 score (rounded to `SCORE_DIGITS`) and a snippet of its text."""

    model_config = ConfigDict(frozen=True)

    url: str
    title: str
    snippet: str
    score: float


BUILDING_SUFFIX = ".building"
"""Suffix of the folder a build writes before it is switched into place."""


class SnapshotIndexError(RuntimeError):
    """An index that cannot be built or opened; the message names the folder and why."""


class NoSearchIndexError(SnapshotIndexError):
    """A search the index would answer, on a snapshot that has no index; the message says how to build one."""


def _analyzer(drop_stopwords: bool = False) -> tantivy.TextAnalyzer:
    """The index analyzer, or with `drop_stopwords` the query analyzer (same chain minus common words)."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if drop_stopwords:
        builder = builder.filter(tantivy.Filter.custom_stopword(list(QUERY_STOPWORDS)))
    return builder.filter(tantivy.Filter.stemmer("english")).build()


_WORD_ANALYZER = _analyzer()


@functools.lru_cache(maxsize=1 << 17)
def _word_terms(word: bytes) -> tuple[str, ...]:
    """The index terms of the UTF-8 `word` (memoized across queries: words repeat; analyzing costs ~1 µs)."""
    return tuple(_WORD_ANALYZER.analyze(word.decode("utf-8", "replace")))


def _schema() -> tantivy.Schema:
    """url (stored, to check the page store; raw fast field that sorts the index), title and body (analyzed,
    term frequencies only, not stored: results are read from the page store, which is much faster)."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("url", stored=True, fast=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=False, tokenizer_name=ANALYZER, index_option="freq")
    builder.add_text_field("body", stored=False, tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


def round_score(score: float) -> float:
    """`score` kept to `SCORE_DIGITS` significant digits."""
    return float(f"{score:.{SCORE_DIGITS}g}")


class SnapshotIndex:
    """A read-only BM25 index over (url, title, text) pages; thread-safe, one shared searcher."""

    def __init__(self, path: Path, index: tantivy.Index, meta: dict[str, Any]) -> None:
        self.path = path
        self._shadow: Path | None = None
        """A writable folder of links to a read-only index's files, where tantivy puts its lock files."""
        self.meta = meta
        self._index = index
        self._schema = index.schema
        self._searcher = index.searcher()
        self._num_docs = self._searcher.num_docs
        if self._searcher.num_segments > 1:
            raise SnapshotIndexError(f"{path}: {self._searcher.num_segments} segments; expected one")
        self._store = _PageStore(path, self._num_docs)
        self._scan_chars = int(meta.get("snippet_scan_chars", SNIPPET_SCAN_CHARS))
        self._analyzer = _analyzer()
        self._query_analyzer = _analyzer(drop_stopwords=True)

    @classmethod
    def build(
        cls, index_dir: Path, docs: Iterable[tuple[str, str, str]], *, content_hash: str | None = None
    ) -> SnapshotIndex:
        """Index `docs` (url, title, text; URLs unique) into `index_dir`, replacing any index there.

        Built single-threaded into one segment in a fresh folder next to `index_dir`, checked, then switched
        into place atomically, so readers and a killed build never see a half-built index. `content_hash`
        names the snapshot content the pages come from (recorded in the metadata, so staleness shows).
        """
        index_dir = Path(index_dir)
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(index_dir)
        stem = uuid.uuid4().hex
        lock_path = _leftover_path(index_dir, stem, "lock")
        with FileLock(str(lock_path)):
            tmp = _leftover_path(index_dir, stem, "building")
            tmp.mkdir()
            try:
                cls._build_into(tmp, index_dir, docs, content_hash)
                retired = _switch_dir(tmp, index_dir)
                if retired is not None:
                    _remove(retired)
            except BaseException:
                _remove(tmp)
                raise
            finally:
                lock_path.unlink(missing_ok=True)
        return cls.open(index_dir)

    @classmethod
    def _build_into(
        cls, tmp: Path, index_dir: Path, docs: Iterable[tuple[str, str, str]], content_hash: str | None
    ) -> None:
        """Write and check a complete index in `tmp`, its metadata (file hashes included) last."""
        count, segments = _write_index(tmp, docs)
        if segments > 1:
            raise SnapshotIndexError(
                f"{index_dir}: the pages did not fit in one segment ({segments} segments): the corpus needs "
                f"more than the {HEAP_BYTES:,}-byte writer heap (HEAP_BYTES)"
            )
        _make_readable(tmp)
        meta = {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "analyzer": ANALYZER_DESCRIPTION,
            "documents": count,
            "snippet_scan_chars": SNIPPET_SCAN_CHARS,
            "tantivy": str(getattr(tantivy, "__version__", "unknown")),
            "content_hash": content_hash,
            "files": _file_hashes(tmp),
        }
        _write_file(tmp / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (tmp / META_FILE).chmod(0o644)
        built = cls.open(tmp)
        try:
            if built._num_docs != count:
                raise SnapshotIndexError(f"{index_dir}: index holds {built._num_docs} of {count} pages")
            built._check_store()
        finally:
            built.close()
        _fsync_dir(tmp)

    @classmethod
    def open(cls, index_dir: Path) -> SnapshotIndex:
        """Open the index in `index_dir` for searching (memory-mapped: milliseconds, whatever its size)."""
        index_dir = Path(index_dir)
        meta_path = index_dir / META_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SnapshotIndexError(f"{index_dir}: no search index here ({META_FILE} missing)") from exc
        except ValueError as exc:
            raise SnapshotIndexError(f"{meta_path}: unreadable index metadata: {exc}") from exc
        if (
            not isinstance(meta, dict)
            or meta.get("format") != INDEX_FORMAT
            or not isinstance(meta.get("format_version"), int)
            or meta["format_version"] > INDEX_FORMAT_VERSION
        ):
            raise SnapshotIndexError(
                f"{meta_path}: not a {INDEX_FORMAT} v{INDEX_FORMAT_VERSION} index (found {meta!r:.200})"
            )
        shadow = None if os.access(index_dir, os.W_OK) else _read_only_shadow(index_dir)
        try:
            index = tantivy.Index.open(str(shadow or index_dir))
            index.register_tokenizer(ANALYZER, _analyzer())
            index.config_reader(reload_policy="manual")
            opened = cls(index_dir, index, meta)
        except (OSError, ValueError) as exc:
            if shadow is not None:
                shutil.rmtree(shadow, ignore_errors=True)
            raise SnapshotIndexError(f"{index_dir}: cannot open the tantivy index: {exc}") from exc
        if shadow is not None:
            opened._shadow = shadow
            weakref.finalize(opened, shutil.rmtree, shadow, True)
        return opened

    def __len__(self) -> int:
        """Number of indexed pages."""
        return int(self._num_docs)

    @property
    def content_hash(self) -> str | None:
        """The snapshot content hash the index was built from (None: built outside a snapshot, or by an older
        miroenv that did not record it)."""
        value = self.meta.get("content_hash")
        return value if isinstance(value, str) else None

    def check_files(self) -> None:
        """Recompute the SHA-256 of every index file and compare with the metadata; `SnapshotIndexError`
        naming the files that differ or are missing (an index built before hashes were recorded passes)."""
        recorded = self.meta.get("files")
        if not isinstance(recorded, dict):
            return
        actual = _file_hashes(self.path)
        problems = [
            f"{name} {'missing' if name not in actual else 'changed'}"
            for name, digest in sorted(recorded.items())
            if actual.get(name) != digest
        ]
        problems += [f"{name} unexpected" for name in sorted(set(actual) - set(recorded))]
        if problems:
            raise SnapshotIndexError(
                f"{self.path}: index files do not match its metadata: {', '.join(problems)}"
            )
        if self.meta.get("documents") != self._num_docs:
            raise SnapshotIndexError(
                f"{self.path}: index holds {self._num_docs} pages, its metadata says {self.meta.get('documents')}"
            )

    def search(self, query: str, limit: int = 10, offset: int = 0) -> list[IndexHit]:
        """The hits ranked `offset` to `offset + limit - 1` for `query` (any text; never raises on it).

        Sorted by rounded BM25 score descending, then URL ascending; an empty or term-less query gives [].
        """
        offset = max(0, offset)
        if limit <= 0 or offset >= self._num_docs:
            return []
        terms = self.query_terms(query)
        if not terms:
            return []
        ranked = self._ranked(self._query(terms), min(offset + limit, self._num_docs))
        snippets = _Snippets(terms, query)
        hits: list[IndexHit] = []
        for score, doc_id in ranked[offset : offset + limit]:
            url, title, excerpt, chars = self._store.page(doc_id)
            snippet = snippets(excerpt, chars > self._scan_chars, title)
            hits.append(IndexHit(url=url, title=title, snippet=snippet, score=score))
        return hits

    def query_terms(self, query: str) -> list[str]:
        """The distinct index terms `query` searches for: analyzed like the pages, common words dropped."""
        text = query[:MAX_QUERY_CHARS].encode("utf-8", "replace").decode("utf-8")
        terms = list(dict.fromkeys(self._query_analyzer.analyze(text)))
        if not terms:
            terms = list(dict.fromkeys(self._analyzer.analyze(text)))
        return terms[:MAX_QUERY_TERMS]

    def _query(self, terms: list[str]) -> tantivy.Query:
        """A disjunction of every term in title and body: plain BM25, so tantivy can use block-max WAND."""
        clauses = [
            (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, field, term, index_option="freq"))
            for term in terms
            for field in ("body", "title")
        ]
        return tantivy.Query.boolean_query(clauses)

    def _ranked(self, query: tantivy.Query, want: int) -> list[tuple[float, int]]:
        """(rounded score, doc id) of the top `want` hits in final order, ties complete.

        Fetches more until the last fetched hit scores below the `want`-th, so every hit tied with it takes
        part in the URL tie-break; within the single segment, doc id order is URL order.
        """
        fetch = min(want + _TIE_MARGIN, self._num_docs)
        while True:
            hits = self._searcher.search(query, fetch, count=False).hits
            if len(hits) < fetch or fetch >= self._num_docs:
                break
            if round_score(hits[-1][0]) < round_score(hits[want - 1][0]):
                break
            fetch = min(fetch * 2, self._num_docs)
        ranked = sorted((-round_score(score), address.doc) for score, address in hits)
        return [(-negated, doc_id) for negated, doc_id in ranked[:want]]

    def _check_store(self, samples: int = 64) -> None:
        """Check that document ids and the page store agree (both in URL order) at evenly spaced ids."""
        count = self._num_docs
        for doc_id in sorted({*range(0, count, max(1, count // samples)), count - 1} - {-1}):
            stored = self._searcher.doc(tantivy.DocAddress(0, doc_id)).get_first("url")
            if stored != self._store.page(doc_id)[0]:
                raise SnapshotIndexError(
                    f"{self.path}: document {doc_id} is {stored!r} in tantivy but "
                    f"{self._store.page(doc_id)[0]!r} in the page store"
                )

    def close(self) -> None:
        """Release the page store's memory map and drop the tantivy handles (freed with their last reference)."""
        self._store.close()
        self.__dict__.pop("_searcher", None)
        self.__dict__.pop("_index", None)
        if self._shadow is not None:
            shutil.rmtree(self._shadow, ignore_errors=True)
            self._shadow = None


def _read_only_shadow(index_dir: Path) -> Path:
    """A temporary folder of symlinks to the files of `index_dir`, which this process cannot write.

    tantivy creates `.tantivy-meta.lock` in the index folder even to read it, which fails on a read-only
    mount or a folder owned by someone else; opening the links instead reads the same memory-mapped files.
    """
    shadow = Path(tempfile.mkdtemp(prefix="miroenv-index-"))
    for entry in index_dir.iterdir():
        if entry.is_file() and not entry.name.startswith(".tantivy-"):
            (shadow / entry.name).symlink_to(entry.resolve())
    return shadow


def _write_index(path: Path, docs: Iterable[tuple[str, str, str]]) -> tuple[int, int]:
    """Index `docs` into a new index at `path` (one writer thread, one commit) and write the page store in URL
    order, the order of document ids; returns the number of pages and of segments."""
    index = tantivy.Index(_schema(), path=str(path), reuse=False, sort_by_field="url")
    index.register_tokenizer(ANALYZER, _analyzer())
    writer = index.writer(heap_size=HEAP_BYTES, num_threads=1)
    seen: set[str] = set()
    entries: list[tuple[str, int, int, int, int]] = []
    with tempfile.TemporaryFile(dir=path) as spool:
        position = 0
        try:
            for url, title, text in docs:
                if url in seen:
                    raise ValueError(f"duplicate URL in the pages to index: {url!r}")
                seen.add(url)
                writer.add_document(tantivy.Document(url=url, title=title, body=text))
                title_bytes = title.encode("utf-8")
                excerpt = text[:SNIPPET_SCAN_CHARS].encode("utf-8")
                spool.write(title_bytes)
                spool.write(excerpt)
                entries.append((url, position, len(title_bytes), len(excerpt), len(text)))
                position += len(title_bytes) + len(excerpt)
        except BaseException:
            writer.rollback()
            writer.wait_merging_threads()
            raise
        writer.commit()
        writer.wait_merging_threads()
        index.reload()
        segments = index.searcher().num_segments
        if segments > 1:
            return len(entries), segments
        entries.sort()
        _write_store(path, entries, spool)
    return len(entries), segments


def _write_store(path: Path, entries: list[tuple[str, int, int, int, int]], spool: Any) -> None:
    """Write the page store from `entries` (url, spool offset, title bytes, excerpt bytes, text chars)."""
    offsets = array("Q")
    chars = array("Q")
    written = 0
    with open(path / STORE_FILE, "wb") as store:
        for url, spooled, title_len, excerpt_len, length in entries:
            url_bytes = url.encode("utf-8")
            spool.seek(spooled)
            store.write(url_bytes)
            store.write(spool.read(title_len + excerpt_len))
            offsets.extend((written, written + len(url_bytes), written + len(url_bytes) + title_len))
            chars.append(length)
            written += len(url_bytes) + title_len + excerpt_len
        offsets.append(written)
        store.flush()
        os.fsync(store.fileno())
    if sys.byteorder != "little":
        offsets.byteswap()
        chars.byteswap()
    for name, values in ((OFFSETS_FILE, offsets), (CHARS_FILE, chars)):
        with open(path / name, "wb") as handle:
            values.tofile(handle)
            handle.flush()
            os.fsync(handle.fileno())


class _PageStore:
    """URL, title, text excerpt and text length of each page by document id, from memory-mapped files."""

    def __init__(self, path: Path, count: int) -> None:
        try:
            self._offsets = _read_u64(path / OFFSETS_FILE)
            self._chars = _read_u64(path / CHARS_FILE)
            size = (path / STORE_FILE).stat().st_size
        except (OSError, ValueError) as exc:
            raise SnapshotIndexError(f"{path}: page store unreadable: {exc}") from exc
        if len(self._offsets) != 3 * count + 1 or len(self._chars) != count or self._offsets[-1] != size:
            raise SnapshotIndexError(f"{path}: page store does not match the index's {count} pages")
        self._map: mmap.mmap | None = None
        if size:
            with open(path / STORE_FILE, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def page(self, doc_id: int) -> tuple[str, str, bytes, int]:
        """(url, title, text excerpt as UTF-8, full text length in characters) of document `doc_id`."""
        assert self._map is not None
        offsets = self._offsets
        base = 3 * doc_id
        data = self._map[offsets[base] : offsets[base + 3]]
        url_end = offsets[base + 1] - offsets[base]
        title_end = offsets[base + 2] - offsets[base]
        return (
            data[:url_end].decode("utf-8"),
            data[url_end:title_end].decode("utf-8"),
            data[title_end:],
            self._chars[doc_id],
        )

    def close(self) -> None:
        """Unmap the store file."""
        if self._map is not None:
            self._map.close()
            self._map = None


def _read_u64(path: Path) -> array[int]:
    """A file of little-endian u64 values."""
    values = array("Q")
    values.frombytes(path.read_bytes())
    if sys.byteorder != "little":
        values.byteswap()
    return values


def _write_file(path: Path, data: str) -> None:
    """Write `data` to `path` and flush it to disk."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _make_readable(folder: Path) -> None:
    """Index files are read by other users too (a shared snapshot): temp-dir defaults are owner-only."""
    folder.chmod(0o755)
    for entry in folder.iterdir():
        if entry.is_file():
            entry.chmod(0o644)


def _remove(path: Path) -> None:
    """Remove a folder with what it holds, or a file or link (what an index path held before a build)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk where the platform allows it."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every index file in `folder` but our metadata and tantivy's dot files (its lock files and
    `.managed.json`, bookkeeping a tantivy writer may rewrite)."""
    hashes: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and entry.name != META_FILE and not entry.name.startswith("."):
            digest = hashlib.sha256()
            with open(entry, "rb") as handle:
                for block in iter(functools.partial(handle.read, 1 << 20), b""):
                    digest.update(block)
            hashes[entry.name] = "sha256:" + digest.hexdigest()
    return hashes


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    """libc's `renameat2` on Linux (glibc 2.28+), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the platform or file system cannot."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _switch_dir(source: Path, target: Path) -> Path | None:
    """Put the folder `source` at `target` atomically; returns where the previous `target` now is (to be
    removed), or None when there was none.

    A rename when `target` is absent; else an atomic exchange; else (no exchange here) `target` is renamed to
    `source`'s `.old` name first, which `remove_stale_builds` restores if the process dies before the second
    rename.
    """
    for _ in range(64):
        try:
            os.rename(source, target)
            _fsync_dir(target.parent)
            return None
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
        if _exchange(source, target):
            _fsync_dir(target.parent)
            return source
        retired = source.with_name(source.name.removesuffix(BUILDING_SUFFIX) + ".old")
        try:
            os.rename(target, retired)
        except FileNotFoundError:
            continue
        os.rename(source, target)
        _fsync_dir(target.parent)
        return retired
    raise SnapshotIndexError(f"{target}: could not switch the new index into place (it keeps being replaced)")


def _leftover_path(index_dir: Path, stem: str, kind: str) -> Path:
    """The `.building` folder, `.lock` file or `.old` folder of the build `stem` of `index_dir`."""
    return index_dir.with_name(f".{index_dir.name}.{stem}.{kind}")


def _leftovers(index_dir: Path) -> dict[str, set[str]]:
    """Build leftovers next to `index_dir`, as stem -> kinds (`building`, `lock`, `old`); also the folders
    earlier versions left (`.index.XXXX.building`, `.index.old-HEX`)."""
    pattern = re.compile(
        rf"\.{re.escape(index_dir.name)}\.(?:(?P<stem>[^.]+)\.(?P<kind>building|lock|old)|(?P<legacy>old-[0-9a-f]+))"
    )
    found: dict[str, set[str]] = {}
    try:
        entries = os.listdir(index_dir.parent)
    except OSError:
        return found
    for name in entries:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        if match["legacy"]:
            found.setdefault(match["legacy"], set()).add("legacy")
        else:
            found.setdefault(match["stem"], set()).add(match["kind"])
    return found


def remove_stale_builds(index_dir: Path) -> list[Path]:
    """Remove what killed builds of `index_dir` left (their builder's lock is free); returns what went.

    A build still running holds its lock and is left alone; a previous index retired by a build that died
    before switching the new one in is put back when `index_dir` is missing. Nothing happens (and nothing is
    written) when there are no leftovers or the folder is not writable (a read-only mount).
    """
    index_dir = Path(index_dir)
    found = _leftovers(index_dir)
    if not found or not os.access(index_dir.parent, os.W_OK):
        return []
    removed: list[Path] = []
    for stem, kinds in sorted(found.items()):
        lock_path = _leftover_path(index_dir, stem, "lock")
        lock = FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except (Timeout, OSError):
            continue
        try:
            retired = (
                index_dir.with_name(f".{index_dir.name}.{stem}")
                if "legacy" in kinds
                else _leftover_path(index_dir, stem, "old")
            )
            if not index_dir.exists() and (retired / META_FILE).is_file():
                os.rename(retired, index_dir)
                _fsync_dir(index_dir.parent)
            for path in (_leftover_path(index_dir, stem, "building"), retired):
                if path.exists() or path.is_symlink():
                    _remove(path)
                    removed.append(path)
            lock_path.unlink(missing_ok=True)
        except OSError:
            continue
        finally:
            lock.release()
    return removed


class _Snippets:
    """Snippets for one query: finds the words of a page that analyze to the query's terms and cuts a window
    of about `SNIPPET_CHARS` around their densest cluster; built once per query, shared by its hits.

    Works on the page's UTF-8 bytes: lower-casing and searching bytes is several times faster than str for
    non-ASCII text, and only the chosen window is decoded. Non-ASCII bytes count as word bytes.
    """

    def __init__(self, terms: Iterable[str], query: str = "") -> None:
        self.terms = set(terms)
        self._needles = self._make_needles(query) if self.terms else []

    def __call__(self, text: bytes, cut: bool = False, title: str = "") -> str:
        """The snippet of the page whose text (UTF-8) is `text`, or starts with `text` when `cut`.

        Cut at word boundaries, whitespace collapsed, "..." where the page was cut; the start of the page when
        no term occurs in `text`. Deterministic: a function of the page text and title, the terms and the query.
        """
        size = len(text)
        matches = self.matches(text, title)
        if matches:
            first, last = _densest(matches)
            start = max(0, min((first + last) // 2 - SNIPPET_CHARS // 2, size - SNIPPET_CHARS))
            start, end = _word_bounds(text, cut, start, min(size, start + SNIPPET_CHARS), first, last)
        else:
            start, end = _word_bounds(text, cut, 0, min(size, SNIPPET_CHARS), 0, 0)
        body = " ".join(text[start:end].decode("utf-8", "ignore").split())
        if not body:
            return ""
        return ("..." if start > 0 else "") + body + ("..." if end < size or cut else "")

    def matches(self, text: bytes, title: str = "") -> list[tuple[int, int, str]]:
        """(start, end, term) byte spans of words in `text` that analyze to one of the terms, in text order.

        Words are found by their lower-case prefixes; when that finds none in a non-ASCII text and the title
        does not explain the hit either, every word with a non-ASCII byte is tried too, so "zurich" finds
        "Zürich" (ASCII folding makes them one term).
        """
        found = self._prefix_matches(text)
        if not found and not text.isascii() and not self._prefix_matches(title.encode("utf-8", "replace")):
            found = self._accented_matches(text)
        return sorted(found)

    def _prefix_matches(self, text: bytes) -> list[tuple[int, int, str]]:
        """Matches of the words that start with a needle (needles never extend each other: no duplicates)."""
        lowered = text.lower()
        found: list[tuple[int, int, str]] = []
        for needle in self._needles:
            position = lowered.find(needle)
            while position >= 0:
                if position == 0 or not _WORD_BYTE[lowered[position - 1]]:
                    end = _WORD_TAIL.match(lowered, position).end()  # type: ignore[union-attr]
                    term = self._term(lowered[position:end])
                    if term is not None:
                        found.append((position, end, term))
                position = lowered.find(needle, position + 1)
        return found

    def _accented_matches(self, text: bytes) -> list[tuple[int, int, str]]:
        """Matches among the words holding a non-ASCII byte."""
        found: list[tuple[int, int, str]] = []
        end = 0
        for run in _NON_ASCII.finditer(text):
            start = run.start()
            if start < end:
                continue
            while start > 0 and _WORD_BYTE[text[start - 1]]:
                start -= 1
            end = _WORD_TAIL.match(text, run.start()).end()  # type: ignore[union-attr]
            term = self._term(text[start:end])
            if term is not None:
                found.append((start, end, term))
        return found

    def _term(self, word: bytes) -> str | None:
        """The query term the UTF-8 `word` analyzes to, if any."""
        for term in _word_terms(word):
            if term in self.terms:
                return term
        return None

    def _make_needles(self, query: str) -> list[bytes]:
        """Lower-case UTF-8 prefixes to look for: each term (a trailing 'i' dropped, as in citi <- city) and
        each query word that analyzes to a term (dying -> die); one that extends another is left out."""
        candidates = {term[:-1] if term.endswith("i") and len(term) > 2 else term for term in self.terms}
        for word in set(_QUERY_WORD.findall(query[:MAX_QUERY_CHARS].lower())):
            if self._term(word.encode("utf-8", "replace")) is not None:
                candidates.add(word)
        needles: list[bytes] = []
        for candidate in sorted(candidate.encode("utf-8", "replace") for candidate in candidates):
            if candidate and not (needles and candidate.startswith(needles[-1])):
                needles.append(candidate)
        return needles


def _densest(matches: list[tuple[int, int, str]]) -> tuple[int, int]:
    """Start and end of the run of matches fitting in `SNIPPET_CHARS` with the most distinct terms, then the
    most matches, then the earliest."""
    best = (0, 0, 0)
    best_span = (matches[0][0], matches[0][1])
    counts: dict[str, int] = {}
    left = 0
    for right, (_, end, term) in enumerate(matches):
        counts[term] = counts.get(term, 0) + 1
        while end - matches[left][0] > SNIPPET_CHARS and left < right:
            left_term = matches[left][2]
            counts[left_term] -= 1
            if not counts[left_term]:
                del counts[left_term]
            left += 1
        key = (len(counts), right - left + 1, -matches[left][0])
        if key > best:
            best = key
            best_span = (matches[left][0], end)
    return best_span


def _word_bounds(
    text: bytes, cut: bool, start: int, end: int, keep_from: int, keep_to: int
) -> tuple[int, int]:
    """Move `start` forward and `end` back to whitespace so no word is cut, never into [keep_from, keep_to);
    `cut` says the page goes on after `text`."""
    if start > 0 and not text[start - 1 : start].isspace():
        space = _SPACE.search(text, start, min(keep_from, end))
        if space is not None:
            start = space.end()
    if (end < len(text) and not text[end : end + 1].isspace()) or (end == len(text) and cut):
        space_at = max(text.rfind(byte, max(keep_to, start), end) for byte in (b" ", b"\n", b"\t", b"\r"))
        if space_at >= 0:
            end = space_at
    return start, end


def _snapshot_pages(db_path: Path) -> Iterator[tuple[str, str, str]]:
    """(url, title, text) of every page in the snapshot database, in URL order, read-only."""
    conn = sqlite3.connect(f"file:{db_path.resolve()}?mode=ro", uri=True)
    try:
        yield from conn.execute("SELECT url, title, text FROM pages WHERE status < 400 ORDER BY url")
    finally:
        conn.close()


def build_index_from_snapshot(snapshot_dir: Path) -> SnapshotIndex:
    """Build `<snapshot_dir>/index/` from the snapshot's pages (HTTP status below 400) and return it opened;
    the index records the manifest's content hash, so a later change to the pages shows it is out of date."""
    from miroenv.web.snapshot import DATABASE_FILE, Snapshot, SnapshotError

    snapshot_dir = Path(snapshot_dir)
    db_path = snapshot_dir / DATABASE_FILE
    if not db_path.is_file():
        raise SnapshotIndexError(f"{db_path}: no snapshot database to index")
    try:
        content_hash = Snapshot.read_manifest(snapshot_dir).content_hash
    except SnapshotError as exc:
        raise SnapshotIndexError(str(exc)) from exc
    return SnapshotIndex.build(
        snapshot_dir / INDEX_DIR, _snapshot_pages(db_path), content_hash=content_hash or None
    )
