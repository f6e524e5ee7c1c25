"""Shared by the importer tests: the CLI runner, snapshot readers and a small WARC writer."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from miroenv.cli import app
from miroenv.web import Page, Snapshot


def run_cli(*args: str | Path) -> Result:
    """`miroenv` with `args`, in-process."""
    return CliRunner().invoke(app, [str(a) for a in args])


def pages_of(path: Path) -> dict[str, Page]:
    """Every page of the snapshot at `path`, by URL."""
    snap = Snapshot(path)
    try:
        return {page.url: page for page in snap.iter_pages()}
    finally:
        snap.close()


def write_warc(path: Path, records: Sequence[dict[str, Any]], *, gzip: bool = True) -> Path:
    """A WARC file of `response`/`revisit` records given as dicts: url, status, headers, body, date, type."""
    with path.open("wb") as handle:
        writer = WARCWriter(handle, gzip=gzip)
        for spec in records:
            body: bytes = spec.get("body", b"")
            status = spec.get("status", "200 OK")
            headers = list(spec.get("headers", [("Content-Type", "text/html; charset=utf-8")]))
            warc_headers = {"WARC-Date": str(spec.get("date", "2024-05-01T10:00:00Z"))}
            warc_headers.update(spec.get("warc_headers", {}))
            record = writer.create_warc_record(
                str(spec["url"]),
                str(spec.get("type", "response")),
                payload=io.BytesIO(body),
                length=len(body),
                http_headers=StatusAndHeaders(str(status), headers, protocol="HTTP/1.1"),
                warc_headers_dict=warc_headers,
            )
            writer.write_record(record)
    return path


def real_warcs(warc_dir: Path) -> list[Path]:
    """Every WARC file in the shared folder (license files left out)."""
    return sorted(p for p in warc_dir.iterdir() if ".warc" in p.name and not p.name.startswith("LICENSE"))
