"""Export a snapshot as a WARC file that `import_warc` (or any WARC tool) reads back.

Records, after a `warcinfo` naming the snapshot:

- each page: a `response` (WARC-Target-URI = the page URL, WARC-Date = its capture time, else the snapshot's
  capture date; HTTP status and Content-Type as stored). Its payload is the stored body when there is one,
  followed by a `conversion` record (WARC-Refers-To the response) holding the stored text as Markdown, so the
  text comes back exactly as stored, whatever extractor version reads the export. A page without a body is a
  `text/markdown` response of its text. Both Markdown payloads start with a front-matter block of
  JSON-quoted `title` and `extractor`.
- a page whose final URL differs from its URL: a 302 from the URL to the final URL, and the response under
  the final URL (importing it back gives the page under its final URL plus an alias from the first URL).
- each redirect alias: a 301 response with `Location`.
- each file: a `response` with its content type and bytes.

Recorded searches have no WARC form and are not exported (the report counts them).
"""

from __future__ import annotations

import http
import io
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from miroenv._version import __version__
from miroenv.extras import ensure_extra
from miroenv.web.base import Page
from miroenv.web.snapshot import DATABASE_FILE, Snapshot


class ExportReport(BaseModel):
    """What an export wrote."""

    snapshot: str
    out: str
    pages: int = 0
    conversions: int = 0
    aliases: int = 0
    files: int = 0
    searches_not_exported: int = 0


def warc_date(captured_at: str | None, fallback: str) -> str:
    """An ISO 8601 capture time as a WARC-Date in UTC ('2017-03-06T04:02:06Z'); `fallback` when unreadable."""
    if not captured_at:
        return fallback
    text = captured_at.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return fallback
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def front_matter(title: str, extractor: str) -> str:
    """The Markdown front-matter block carrying a page's title and extractor (JSON-quoted values)."""
    return (
        f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n"
        f"extractor: {json.dumps(extractor, ensure_ascii=False)}\n---\n"
    )


def _status_line(status: int) -> str:
    """'301 Moved Permanently' for 301."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return f"{status} {phrase}"


class _Writer:
    """Record builders over warcio's `WARCWriter`."""

    def __init__(self, handle: Any, gzip: bool) -> None:
        """Write to `handle`, each record its own gzip member when `gzip`."""
        from warcio.warcwriter import WARCWriter

        self.warc = WARCWriter(handle, gzip=gzip)

    def response(
        self,
        url: str,
        date: str,
        status: int,
        payload: bytes,
        content_type: str | None,
        extra: list[tuple[str, str]] | None = None,
    ) -> str:
        """Write an HTTP response record; returns its WARC-Record-ID."""
        from warcio.statusandheaders import StatusAndHeaders

        headers = [("Content-Length", str(len(payload)))]
        if content_type:
            headers.insert(0, ("Content-Type", content_type))
        headers.extend(extra or [])
        record = self.warc.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(payload),
            length=len(payload),
            http_headers=StatusAndHeaders(_status_line(status), headers, protocol="HTTP/1.1"),
            warc_headers_dict={"WARC-Date": date},
        )
        self.warc.write_record(record)
        return str(record.rec_headers.get_header("WARC-Record-ID"))

    def conversion(self, url: str, date: str, refers_to: str, text: str) -> None:
        """Write the Markdown text derived from the response `refers_to`."""
        data = text.encode("utf-8")
        record = self.warc.create_warc_record(
            url,
            "conversion",
            payload=io.BytesIO(data),
            length=len(data),
            warc_content_type="text/markdown; charset=utf-8",
            warc_headers_dict={"WARC-Date": date, "WARC-Refers-To": refers_to},
        )
        self.warc.write_record(record)

    def warcinfo(self, filename: str, info: dict[str, str]) -> None:
        """Write the leading warcinfo record."""
        self.warc.write_record(self.warc.create_warcinfo_record(filename, info))


def _page_records(writer: _Writer, page: Page, date: str, report: ExportReport) -> None:
    """The records of one page: a redirect if it moved, its response, and its text."""
    url = page.url
    if page.final_url and page.final_url != page.url:
        writer.response(page.url, date, 302, b"", None, [("Location", page.final_url)])
        report.aliases += 1
        url = page.final_url
    if page.body is None:
        payload = (front_matter(page.title, page.extractor) + page.text).encode("utf-8")
        writer.response(url, date, page.status, payload, "text/markdown; charset=utf-8")
    else:
        record_id = writer.response(url, date, page.status, page.body, page.content_type)
        writer.conversion(url, date, record_id, front_matter(page.title, page.extractor) + page.text)
        report.conversions += 1
    report.pages += 1


def export_warc(snapshot_dir: Path, out_path: Path) -> ExportReport:
    """Write the snapshot's pages, aliases and files to `out_path` (gzipped if it ends in `.gz`)."""
    ensure_extra("import", "snapshot export")
    snap = Snapshot(snapshot_dir)
    report = ExportReport(snapshot=str(snapshot_dir), out=str(out_path))
    fallback = f"{snap.capture_date}T00:00:00Z"
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    database = sqlite3.connect(f"file:{(Path(snapshot_dir) / DATABASE_FILE).resolve()}?mode=ro", uri=True)
    try:
        with out_path.open("wb") as handle:
            writer = _Writer(handle, gzip=out_path.name.endswith(".gz"))
            writer.warcinfo(
                out_path.name,
                {
                    "software": f"miroenv {__version__}",
                    "format": "WARC File Format 1.0",
                    "description": f"miroenv snapshot {snap.name} captured {snap.capture_date}",
                    "miroenv-content-hash": snap.content_hash,
                },
            )
            for page in snap.iter_pages():
                _page_records(writer, page, warc_date(page.captured_at, fallback), report)
            for url, target in database.execute("SELECT url, target FROM aliases ORDER BY url"):
                writer.response(url, fallback, 301, b"", None, [("Location", target)])
                report.aliases += 1
            for url, content_type, data, captured_at in database.execute(
                "SELECT url, content_type, data, captured_at FROM files ORDER BY url"
            ):
                writer.response(url, warc_date(captured_at, fallback), 200, bytes(data), content_type)
                report.files += 1
        report.searches_not_exported = sum(1 for _ in snap.iter_searches())
    finally:
        database.close()
        snap.close()
    return report
