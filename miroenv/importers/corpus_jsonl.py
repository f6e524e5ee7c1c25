"""BrowseComp-Plus-style document corpora: JSON Lines of `{docid, url, title, text}`.

Each line is one document. `docid` (string or integer) and `text` (string) are required; `url` is optional
(a missing or empty URL becomes `https://corpus.invalid/<docid>`, stable across imports; `.invalid` is a
reserved top-level domain, so it can never clash with a real page); `title` is optional (when absent, a
`title:` in a leading `---` front-matter block of the text, else the first `# ` heading). A document whose
URL was already imported is skipped (the first one is kept). Extra fields are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from miroenv.importers.base import (
    ImportFormatError,
    ImportReport,
    check_sources,
    day_start,
    require,
    snapshot_session,
)
from miroenv.jsonl import iter_jsonl
from miroenv.web.extract import extract_page

SYNTHETIC_BASE = "https://corpus.invalid/"


def synthetic_url(docid: str) -> str:
    """The stable URL given to a document without one."""
    return SYNTHETIC_BASE + quote(docid, safe="")


def import_corpus_jsonl(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """One page per corpus line (text stored as given, `docid` kept in the page metadata)."""
    paths = check_sources(sources)
    report = ImportReport(
        format="corpus-jsonl", snapshot=str(out), created=True, sources=[str(p) for p in paths]
    )
    seen: set[str] = set()
    with snapshot_session(out, report, name=name, capture_date=capture_date) as writer:
        captured_at = day_start(writer.manifest.capture_date)
        for path in paths:
            for lineno, record in iter_jsonl(path):
                where = f"line {lineno}"
                docid = require(record, "docid", (str, int), path, where)
                text = require(record, "text", str, path, where)
                url = record.get("url") or ""
                if not isinstance(url, str):
                    raise ImportFormatError(
                        path, where, f"expected a string, got {type(url).__name__}", field="url"
                    )
                url = url.strip() or synthetic_url(str(docid))
                title = record.get("title")
                if title is not None and not isinstance(title, str):
                    raise ImportFormatError(
                        path, where, f"expected a string, got {type(title).__name__}", field="title"
                    )
                if url in seen:
                    report.skip("duplicate url (first kept)")
                    continue
                seen.add(url)
                writer.add_page(
                    url,
                    title=title if title is not None else extract_page(text, url, "text/markdown").title,
                    text=text,
                    content_type="text/markdown",
                    captured_at=captured_at,
                    metadata={"docid": str(docid), "source": "corpus-jsonl"},
                )
                report.pages += 1
    return report
