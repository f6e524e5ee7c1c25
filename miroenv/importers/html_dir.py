"""Saved HTML files: directories of `.html`/`.htm` files (optionally gzipped) plus JSON maps from file to URL.

Sources are directories (searched recursively, files taken in sorted path order), single HTML files, and
`.json` URL maps. A URL map is a JSON object whose keys name files (the file name without `.gz` and without
`.html`/`.htm`, or the path relative to the source directory, with or without those suffixes) and whose values
are the URL, or an object with a `url` field (so the article-extraction benchmark's `ground-truth.json` works
as is). A file the maps do not cover gets `https://html-dir.invalid/<relative path>`. The HTML is kept as the
page body and extracted with `extract_page`; two files with the same URL: the first is kept.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from miroenv.extras import ensure_extra
from miroenv.importers.base import (
    ImportFormatError,
    ImportReport,
    check_sources,
    day_start,
    load_json,
    snapshot_session,
)
from miroenv.web.extract import extract_page

SYNTHETIC_BASE = "https://html-dir.invalid/"
HTML_SUFFIXES = (".html", ".htm", ".html.gz", ".htm.gz")


def _stem(name: str) -> str:
    """A file name without `.gz` and `.html`/`.htm`: the key URL maps use."""
    for suffix in (".gz", ".html", ".htm"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _load_url_map(path: Path) -> dict[str, str]:
    """Key -> URL from a JSON URL map (values are URLs or objects with `url`)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise ImportFormatError(path, None, f"a URL map must be a JSON object, got {type(data).__name__}")
    urls: dict[str, str] = {}
    for key, value in data.items():
        url = value.get("url") if isinstance(value, dict) else value
        if not isinstance(url, str) or not url.strip():
            raise ImportFormatError(
                path, f"key {key!r}", "expected a URL string or an object with 'url'", field="url"
            )
        urls[key] = url.strip()
    return urls


def _html_files(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """(file, path relative to its source) for every HTML file, in source order then sorted path order."""
    found: list[tuple[Path, str]] = []
    for source in paths:
        if source.is_dir():
            files = sorted(
                p for p in source.rglob("*") if p.is_file() and p.name.lower().endswith(HTML_SUFFIXES)
            )
            found.extend((p, p.relative_to(source).as_posix()) for p in files)
        elif source.suffix.lower() != ".json":
            found.append((source, source.name))
    return found


def _read(path: Path) -> bytes:
    """The HTML bytes of a file, gunzipped when it ends in `.gz`."""
    data = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ImportFormatError(path, None, f"not a valid gzip file ({exc})") from exc


def import_html_dir(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """One page per HTML file: URL from the maps (module docstring), title and text from `extract_page`."""
    ensure_extra("import", "snapshot import html-dir")
    paths = check_sources(sources, directories=True)
    report = ImportReport(format="html-dir", snapshot=str(out), created=True, sources=[str(p) for p in paths])
    urls: dict[str, str] = {}
    for path in paths:
        if path.is_file() and path.suffix.lower() == ".json":
            urls.update(_load_url_map(path))
    files = _html_files(paths)
    if not files:
        raise ImportFormatError(
            ", ".join(str(p) for p in paths), None, f"no {'/'.join(HTML_SUFFIXES)} files found"
        )
    seen: set[str] = set()
    synthetic = empty = 0
    with snapshot_session(out, report, name=name, capture_date=capture_date) as writer:
        captured_at = day_start(writer.manifest.capture_date)
        for path, relative in files:
            keys = (_stem(path.name), relative, _stem(relative), path.name)
            url = next((urls[k] for k in keys if k in urls), None)
            if url is None:
                url = SYNTHETIC_BASE + quote(_stem(relative), safe="/")
                synthetic += 1
            if url in seen:
                report.skip("duplicate url (first file kept)")
                continue
            seen.add(url)
            body = _read(path)
            page = extract_page(body, url, "text/html")
            empty += not page.text
            writer.add_page(
                url,
                title=page.title,
                text=page.text,
                body=body,
                content_type="text/html",
                extractor=page.extractor,
                captured_at=captured_at,
                metadata={"source": "html-dir", "file": relative},
            )
            report.pages += 1
    if synthetic:
        report.notes.append(f"{synthetic} files not in any URL map got {SYNTHETIC_BASE}<path> URLs")
    if empty:
        report.notes.append(f"{empty} pages with no extractable text")
    return report
