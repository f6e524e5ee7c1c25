"""WARC files (`.warc`, `.warc.gz`; ARC is converted by warcio) as pages, redirect aliases and files.

Per record:

- `response`/`resource` with an HTML (or plain-text/Markdown) payload: a page (status, URL, title and text from
  `extract_page`, the HTTP-decoded body, capture time from WARC-Date). warcio undoes chunked transfer-encoding
  and gzip content-encoding. When one URL is captured several times, a 2xx capture beats any other status,
  then the latest WARC-Date wins.
- 3xx responses: an alias from the URL to its `Location` (resolved against the URL; chains of redirects are
  followed to their end).
- Documents (PDF, CSV, office files, JSON, archives; or `application/octet-stream` with such an extension):
  files.
- `revisit`: the payload of the record it revisits (matched by WARC-Payload-Digest, else by
  WARC-Refers-To-Target-URI), from any of the imported files; skipped when that payload was not imported.
- `conversion` right after the record it refers to (as `export_warc` writes them): its Markdown text, title
  and extractor replace what extraction gave, so a stored text survives a round trip; a conversion whose URL
  has no page yet (e.g. Common Crawl WET records) becomes a page of its own.
- Other content (images, scripts, ...) is skipped and counted by type; `request`, `metadata` and `warcinfo`
  records carry nothing to import and are counted as ignored.

A file that does not start like a WARC (or ARC) file, or that cannot be read to the end, raises
`ImportFormatError` naming the file, record number and offset.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from miroenv.extras import ensure_extra
from miroenv.importers.base import ImportFormatError, ImportReport, check_sources, snapshot_session
from miroenv.web.base import Page
from miroenv.web.extract import (
    HTML_TYPES,
    TEXT_TYPES,
    decode_body,
    extract_page,
    media_type,
    split_front_matter,
)
from miroenv.web.snapshot import Snapshot, SnapshotWriter

DOCUMENT_TYPES = frozenset(
    {
        "application/pdf",
        "text/csv",
        "text/tab-separated-values",
        "application/json",
        "application/rtf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/epub+zip",
    }
)
"""Media types stored as downloadable files (as are `application/vnd.openxmlformats-*` and `vnd.oasis.*`)."""

DOCUMENT_EXTENSIONS = frozenset(
    {".pdf", ".csv", ".tsv", ".json", ".rtf", ".doc", ".docx", ".xls", ".xlsx", ".ppt", ".pptx", ".odt",
     ".ods", ".odp", ".zip", ".gz", ".tar", ".epub"}
)  # fmt: skip
"""URL extensions that make a generic binary response (`application/octet-stream`) a file."""

_GENERIC_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/x-download", "application/download"}
)
_WARC_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6})\d*)?(Z|[+-]\d{2}:?\d{2})?$"
)
_HTML_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S)


def parse_warc_date(value: str | None) -> str | None:
    """A WARC-Date as ISO 8601 in UTC ('2017-03-06T04:02:06+00:00'); None when it is not a valid date-time."""
    match = _WARC_DATE.match((value or "").strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((fraction or "0").ljust(6, "0")), tzinfo=timezone.utc,
        )  # fmt: skip
    except ValueError:
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment.isoformat()


def is_document(kind: str, url: str) -> bool:
    """Whether a response of media type `kind` at `url` is a downloadable document rather than a page."""
    if kind in DOCUMENT_TYPES or kind.startswith(("application/vnd.openxmlformats", "application/vnd.oasis")):
        return True
    if kind in _GENERIC_TYPES:
        path = urlsplit(url).path.lower()
        return any(path.endswith(ext) for ext in DOCUMENT_EXTENSIONS)
    return False


def check_warc_start(path: Path) -> None:
    """Raise `ImportFormatError` unless `path` (gzipped or not) starts with a WARC or ARC record."""
    try:
        with path.open("rb") as handle:
            head = handle.read(2)
            handle.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=handle) as unzipped:
                    head = unzipped.read(64)
            else:
                head = handle.read(64)
    except (OSError, EOFError, zlib.error) as exc:
        raise ImportFormatError(path, "byte 0", f"not a readable gzip file ({exc})") from exc
    if not head.lstrip().startswith((b"WARC/", b"filedesc://")):
        raise ImportFormatError(path, "byte 0", "not a WARC file (it does not start with 'WARC/')")


def _target_uri(record: Any) -> str:
    """The record's WARC-Target-URI (angle brackets of WARC 1.0 writers removed)."""
    return str(record.rec_headers.get_header("WARC-Target-URI") or "").strip().strip("<>").strip()


def _is_http(url: str) -> bool:
    """Whether `url` is a parseable http(s) URL."""
    try:
        return urlsplit(url).scheme.lower() in ("http", "https")
    except ValueError:
        return False


def _join(base: str, location: str) -> str | None:
    """A Location header resolved against the URL it came from (None when empty or unparseable)."""
    if not location.strip():
        return None
    try:
        target = urljoin(base, location.strip())
    except ValueError:
        return None
    return target if _is_http(target) else None


@dataclass
class _Capture:
    """A page waiting to be written: a conversion record right after it may still replace its text."""

    page: Page
    record_id: str
    rank: tuple[bool, str, int]
    digest: str | None
    converted: bool = False


def _extracted(page: Page) -> Page:
    """`page` with title, text and extractor from its body (a Markdown body may name its extractor)."""
    body = page.body or b""
    extracted = extract_page(body, page.url, page.content_type)
    extractor = extracted.extractor
    kind = media_type(page.content_type)
    if kind in TEXT_TYPES and kind != "text/plain":
        fields, _ = split_front_matter(decode_body(body, page.content_type))
        extractor = fields.get("extractor", extractor)
    return page.model_copy(update={"title": extracted.title, "text": extracted.text, "extractor": extractor})


@dataclass
class _Revisit:
    """What a revisit record says, kept until every file is read and its original can be looked up."""

    url: str
    captured_at: str | None
    status: int | None
    digest: str | None
    refers_to: str | None
    record_id: str
    file_name: str
    seq: int


class _WarcImport:
    """State of one import: what is stored under each URL, redirects, revisits waiting for their payload."""

    def __init__(self, writer: SnapshotWriter, report: ImportReport, out: Path) -> None:
        """Write through `writer` into the snapshot at `out`, counting in `report`."""
        self.writer = writer
        self.report = report
        self.out = out
        self.ranks: dict[str, tuple[bool, str, int]] = {}
        self.file_ranks: dict[str, tuple[bool, str, int]] = {}
        self.stored_digest: dict[str, str] = {}
        self.digests: dict[str, tuple[str, str]] = {}
        self.redirects: dict[str, str] = {}
        self.revisits: list[_Revisit] = []
        self.pending: _Capture | None = None
        self.latest_date = ""
        self.bad_dates = 0
        self.seq = 0

    def run(self, path: Path) -> None:
        """Import every record of one WARC file."""
        from warcio.archiveiterator import ArchiveIterator
        from warcio.exceptions import ArchiveLoadFailed

        with path.open("rb") as handle:
            iterator = ArchiveIterator(handle, arc2warc=True)
            records: Iterator[Any] = iter(iterator)
            number = 0
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (ArchiveLoadFailed, EOFError, OSError, ValueError, zlib.error) as exc:
                    offset = handle.tell()
                    raise ImportFormatError(
                        path, f"record {number + 1} (near byte {offset})", f"unreadable WARC record: {exc}"
                    ) from exc
                number += 1
                self.record(record, path)
                try:
                    iterator.read_to_end()
                except (EOFError, OSError, ValueError, zlib.error) as exc:
                    raise ImportFormatError(
                        path, f"record {number}", f"unreadable WARC record: {exc}"
                    ) from exc
                missing = getattr(record.raw_stream, "limit", 0)
                if missing:
                    raise ImportFormatError(
                        path,
                        f"record {number} (byte {iterator.get_record_offset()})",
                        f"truncated: the file ends {missing} bytes short of its Content-Length",
                    )
        self.flush()

    def record(self, record: Any, path: Path) -> None:
        """Dispatch one record by type."""
        self.seq += 1
        kind = record.rec_type
        if kind == "conversion":
            self.conversion(record, path)
            return
        self.flush()
        if kind in ("response", "resource"):
            self.response(record, path)
        elif kind == "revisit":
            self.defer_revisit(record, path)
        else:
            self.report.ignore(f"{kind} record")

    def capture_time(self, record: Any) -> str | None:
        """The record's WARC-Date in ISO form (None if invalid); tracks the latest date for the manifest."""
        raw = record.rec_headers.get_header("WARC-Date")
        captured_at = parse_warc_date(raw)
        if captured_at is None:
            self.bad_dates += 1
        else:
            self.latest_date = max(self.latest_date, captured_at[:10])
        return captured_at

    def response(self, record: Any, path: Path) -> None:
        """A response or resource record: a redirect, a file, a page waiting for its conversion, or a skip."""
        url = _target_uri(record)
        if not _is_http(url):
            self.report.skip("not an http(s) URL" if url else "no WARC-Target-URI")
            return
        captured_at = self.capture_time(record)
        http = record.http_headers if record.rec_type == "response" else None
        status = 200
        content_type = str(record.rec_headers.get_header("Content-Type") or "")
        if http is not None:
            try:
                status = int(http.get_statuscode())
            except (TypeError, ValueError):
                self.report.skip("unparseable HTTP status line")
                return
            content_type = str(http.get_header("Content-Type") or "")
        if 300 <= status < 400 and status != 304:
            location = http.get_header("Location") if http is not None else None
            target = _join(url, location or "")
            if target:
                self.redirects.setdefault(url, target)
            else:
                self.report.skip("redirect without Location")
            return
        if status in (204, 304):
            self.report.skip(f"HTTP {status} (no content)")
            return
        try:
            body = record.content_stream().read()
        except (OSError, ValueError, EOFError, zlib.error):
            self.report.skip("undecodable HTTP body (transfer- or content-encoding)")
            return
        kind = media_type(content_type)
        rank = (200 <= status < 300, captured_at or "", self.seq)
        digest = record.rec_headers.get_header("WARC-Payload-Digest")
        record_id = str(record.rec_headers.get_header("WARC-Record-ID") or "")
        if is_document(kind, url):
            self.store_file(url, body, content_type or "application/octet-stream", captured_at, rank, digest)
            return
        if kind not in HTML_TYPES and kind not in TEXT_TYPES and not (kind == "" and _HTML_START.match(body)):
            self.report.skip(f"not a page or document ({kind or 'no content type'})")
            return
        if not body.strip():
            self.report.skip("empty body")
            return
        page = Page(
            url=url,
            final_url=url,
            status=status,
            content_type=content_type or "text/html",
            body=body,
            captured_at=captured_at,
            metadata={"source": "warc", "warc_file": path.name, "warc_record_id": record_id},
        )
        self.pending = _Capture(page=page, record_id=record_id, rank=rank, digest=digest)

    def conversion(self, record: Any, path: Path) -> None:
        """A conversion record: the text of the page just read, or a page of its own."""
        url = _target_uri(record)
        refers_to = str(record.rec_headers.get_header("WARC-Refers-To") or "")
        try:
            text = record.content_stream().read().decode("utf-8", errors="replace")
        except (OSError, ValueError, EOFError, zlib.error):
            self.flush()
            self.report.skip("undecodable conversion record")
            return
        fields, rest = split_front_matter(text)
        pending = self.pending
        if pending is not None and refers_to and refers_to == pending.record_id:
            update: dict[str, Any] = {"text": rest, "extractor": fields.get("extractor", "warc-conversion")}
            if "title" in fields:
                update["title"] = fields["title"]
            pending.page = pending.page.model_copy(update=update)
            pending.converted = True
            self.flush()
            return
        self.flush()
        if url in self.ranks or not _is_http(url):
            self.report.skip("conversion record not right after the record it converts")
            return
        captured_at = self.capture_time(record)
        page = Page(
            url=url,
            final_url=url,
            title=fields.get("title", ""),
            content_type=str(record.rec_headers.get_header("Content-Type") or "text/plain"),
            text=rest,
            extractor=fields.get("extractor", "warc-conversion"),
            captured_at=captured_at,
            metadata={"source": "warc", "warc_file": path.name, "warc_record_id": refers_to},
        )
        self.store_page(page, (True, captured_at or "", self.seq), None)

    def flush(self) -> None:
        """Write the page waiting for a conversion record, if any."""
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        previous = self.ranks.get(pending.page.url)
        if previous is not None and previous >= pending.rank:
            self.report.merged += 1
            return
        page = pending.page if pending.converted else _extracted(pending.page)
        self.store_page(page, pending.rank, pending.digest)

    def store_page(self, page: Page, rank: tuple[bool, str, int], digest: str | None) -> None:
        """Write `page` unless a better capture of its URL is stored (2xx first, then the latest)."""
        previous = self.ranks.get(page.url)
        if previous is not None:
            self.report.merged += 1
            if previous >= rank:
                return
        self.ranks[page.url] = rank
        self.writer.put_page(page)
        self._remember(page.url, "page", digest)

    def store_file(
        self,
        url: str,
        data: bytes,
        content_type: str,
        captured_at: str | None,
        rank: tuple[bool, str, int],
        digest: str | None,
    ) -> None:
        """Write a file unless a better capture of its URL is stored."""
        previous = self.file_ranks.get(url)
        if previous is not None:
            self.report.merged += 1
            if previous >= rank:
                return
        self.file_ranks[url] = rank
        self.writer.add_file(
            url, data, content_type=content_type, captured_at=captured_at or self.default_time()
        )
        self._remember(url, "file", digest)

    def _remember(self, url: str, kind: str, digest: str | None) -> None:
        """Map the payload digest of what is now stored at `url` to it, forgetting the replaced capture's."""
        old = self.stored_digest.pop(f"{kind}:{url}", None)
        if old is not None and self.digests.get(old) == (kind, url):
            del self.digests[old]
        if digest:
            self.stored_digest[f"{kind}:{url}"] = digest
            self.digests[digest] = (kind, url)

    def default_time(self) -> str:
        """Capture time for records without a valid WARC-Date: midnight of the snapshot's capture date."""
        return f"{self.writer.manifest.capture_date}T00:00:00+00:00"

    def defer_revisit(self, record: Any, path: Path) -> None:
        """Note a revisit record; its payload is looked up once every file has been read."""
        url = _target_uri(record)
        if not _is_http(url):
            self.report.skip("not an http(s) URL" if url else "no WARC-Target-URI")
            return
        status = None
        if record.http_headers is not None:
            try:
                status = int(record.http_headers.get_statuscode())
            except (TypeError, ValueError):
                status = None
        self.revisits.append(
            _Revisit(
                url=url,
                captured_at=self.capture_time(record),
                status=status,
                digest=record.rec_headers.get_header("WARC-Payload-Digest"),
                refers_to=(record.rec_headers.get_header("WARC-Refers-To-Target-URI") or "").strip("<>")
                or None,
                record_id=str(record.rec_headers.get_header("WARC-Record-ID") or ""),
                file_name=path.name,
                seq=self.seq,
            )
        )

    def resolve_revisits(self) -> None:
        """Give each revisit the payload it points to, now that every file has been read."""
        if not self.revisits:
            return
        reader = Snapshot(self.out)
        resolved = 0
        try:
            for revisit in self.revisits:
                origin = self.digests.get(revisit.digest or "")
                if origin is None and revisit.refers_to:
                    if revisit.refers_to in self.ranks:
                        origin = ("page", revisit.refers_to)
                    elif revisit.refers_to in self.file_ranks:
                        origin = ("file", revisit.refers_to)
                if origin is None:
                    self.report.skip("revisit whose original payload is not in the imported files")
                    continue
                kind, source = origin
                status = revisit.status if revisit.status is not None and 200 <= revisit.status < 300 else 200
                rank = (True, revisit.captured_at or "", revisit.seq)
                if kind == "file":
                    entry = reader.file(source)
                    self.store_file(
                        revisit.url, entry.data, entry.content_type, revisit.captured_at, rank, None
                    )
                else:
                    original = reader.page(source)
                    metadata = {
                        **original.metadata,
                        "warc_file": revisit.file_name,
                        "warc_record_id": revisit.record_id,
                        "revisit_of": source,
                    }
                    page = original.model_copy(
                        update={
                            "url": revisit.url,
                            "final_url": revisit.url,
                            "status": status,
                            "captured_at": revisit.captured_at,
                            "metadata": metadata,
                        }
                    )
                    self.store_page(page, rank, None)
                resolved += 1
        finally:
            reader.close()
        if resolved:
            self.report.notes.append(f"{resolved} revisit records resolved to their original payload")

    def write_aliases(self) -> None:
        """One alias per redirect, pointing at the end of its redirect chain."""
        outside = 0
        for source, first in self.redirects.items():
            target, seen = first, {source}
            while target in self.redirects and target not in self.ranks and target not in seen:
                seen.add(target)
                target = self.redirects[target]
            if target in seen:
                self.report.skip("redirect loop")
                continue
            outside += target not in self.ranks and target not in self.file_ranks
            self.writer.add_alias(source, target)
            self.report.aliases += 1
        if outside:
            self.report.notes.append(f"{outside} redirects lead to URLs this snapshot does not hold")


def import_warc(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """Import WARC files (see module docstring); a new snapshot is dated by its latest WARC-Date by default."""
    ensure_extra("import", "snapshot import warc")
    paths = check_sources(sources)
    for path in paths:
        check_warc_start(path)
    report = ImportReport(format="warc", snapshot=str(out), created=True, sources=[str(p) for p in paths])
    with snapshot_session(out, report, name=name, capture_date=capture_date) as writer:
        state = _WarcImport(writer, report, Path(out))
        for path in paths:
            state.run(path)
        state.resolve_revisits()
        state.write_aliases()
        if report.created and capture_date is None and state.latest_date:
            writer.manifest.capture_date = state.latest_date
        report.pages = len(state.ranks)
        report.files = len(state.file_ranks)
        if state.bad_dates:
            report.notes.append(
                f"{state.bad_dates} records with an invalid WARC-Date (capture time left empty)"
            )
    return report
