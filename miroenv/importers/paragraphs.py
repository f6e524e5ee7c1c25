"""Paragraph corpora as pages: Wikipedia-style URLs from titles, and the rule for titles seen more than once.

Duplicate-title rule: all paragraphs filed under one title (more exactly, one URL: titles that differ only in
what a Wikipedia URL does not keep, such as spaces versus underscores, share a page) become one page. Its
paragraphs keep their first-seen order across all sources and records, a paragraph identical to one already
kept (after whitespace normalization) is dropped, and the page text is the paragraphs joined by a blank line.
The page title is the first spelling seen. Pages are written in first-seen order once every source is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from miroenv.importers.base import ImportReport
from miroenv.web.snapshot import SnapshotWriter

WIKIPEDIA_BASE = "https://en.wikipedia.org/wiki/"
_WIKIPEDIA_SAFE = ";@$!*(),/~:"
"""Characters MediaWiki leaves unescaped in article URLs (besides letters, digits and `-_.`)."""


def wikipedia_url(title: str) -> str:
    """The English Wikipedia URL of a title: underscores, first letter capitalized, escaped like MediaWiki."""
    name = "_".join(title.split())
    first = name[:1].upper()
    if len(first) == 1:
        name = first + name[1:]
    return WIKIPEDIA_BASE + quote(name, safe=_WIKIPEDIA_SAFE)


def join_sentences(sentences: Sequence[str]) -> str:
    """Sentences as one paragraph: concatenated, a space added where a sentence does not start with one."""
    text = ""
    for sentence in sentences:
        if text and sentence and not sentence[0].isspace() and not text[-1].isspace():
            text += " "
        text += sentence
    return text.strip()


@dataclass
class _Page:
    """One title's paragraphs so far, and their normalized forms for spotting repeats."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


class PageMerger:
    """Collects (title, paragraph) pairs and writes one page per title under the duplicate-title rule."""

    def __init__(self, dataset: str) -> None:
        """Pages of `dataset` (recorded in each page's metadata)."""
        self.dataset = dataset
        self._pages: dict[str, _Page] = {}
        self.duplicates = 0

    def add(self, title: str, paragraph: str, report: ImportReport) -> str | None:
        """File `paragraph` under `title`; returns the page URL (None when there is no title or no text)."""
        title = " ".join(title.split())
        text = paragraph.strip()
        if not title:
            report.skip("paragraph without a title")
            return None
        if not text:
            report.skip("empty paragraph")
            return None
        url = wikipedia_url(title)
        page = self._pages.get(url)
        if page is None:
            page = self._pages[url] = _Page(title=title)
        key = " ".join(text.split())
        if key in page.seen:
            self.duplicates += 1
            return url
        if page.paragraphs:
            report.merged += 1
        page.seen.add(key)
        page.paragraphs.append(text)
        return url

    def write(self, writer: SnapshotWriter, report: ImportReport, captured_at: str) -> None:
        """Write every page collected so far, in first-seen order."""
        for url, page in self._pages.items():
            writer.add_page(
                url,
                title=page.title,
                text="\n\n".join(page.paragraphs),
                content_type="text/plain",
                captured_at=captured_at,
                metadata={"source": self.dataset, "paragraphs": len(page.paragraphs)},
            )
        report.pages += len(self._pages)
        if self.duplicates:
            report.notes.append(
                f"{self.duplicates} repeated paragraphs (identical text, same title) kept once"
            )
        if report.merged:
            report.notes.append(
                f"{report.merged} paragraphs joined to a page of the same title (first-seen order)"
            )
