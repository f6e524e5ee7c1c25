"""HTML -> Markdown/text at import or record time, stored with the extractor's name and version.

`extract_page` runs trafilatura (Markdown output, precision-leaning, comments left out: the settings that
measured best on the article-extraction benchmark, see benchmarks/README.md) and falls back to
BeautifulSoup's `get_text` when trafilatura finds nothing. Bytes are decoded with the declared charset, then a
`<meta>` charset, then UTF-8 with replacement. Plain text and Markdown pass through unchanged. It never
raises on content. HTML needs the `import` extra: without it `extract_page` raises `MissingExtraError` rather
than store another extractor's text (the stored extractor name and version decide what a snapshot holds).
"""

from __future__ import annotations

import codecs
import functools
import html
import importlib.metadata
import json
import logging
import re
from typing import Any, NamedTuple

from miroenv.extras import ensure_extra

__all__ = [
    "HTML_TYPES",
    "TEXT_TYPES",
    "ExtractedPage",
    "decode_body",
    "extract_page",
    "extractor_version",
    "media_type",
    "split_front_matter",
]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
"""Media types of web pages (`extract_page` also runs the HTML extractor on any type not in `TEXT_TYPES`)."""

TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
"""Media types whose decoded body is the text itself."""

TRAFILATURA_OPTIONS: dict[str, Any] = {
    "output_format": "markdown",
    "favor_precision": True,
    "include_comments": False,
    "include_tables": True,
    "include_links": False,
    "include_images": False,
    # Only the title is used from the metadata; htmldate's extensive date search can take seconds per page.
    "date_extraction_params": {"extensive_search": False},
}
"""trafilatura settings for stored text, chosen by `benchmarks/bench_extraction.py` (mean token F1)."""

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.IGNORECASE)
_TITLE_TAG = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_WHATWG_ALIASES = {
    # Browsers decode these labels as their supersets; so should we, or we get mojibake where they do not.
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "tis-620": "cp874",
    "iso-8859-9": "cp1254",
}
_FRONT_MATTER_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*):[ \t]*(.*)$")
_MARKER_ONLY = re.compile(r"^[ \t]*(?:[-*+#>|]+|\*\*|__|\d+\.)[ \t]*$")
_MANY_BLANKS = re.compile(r"\n{3,}")

for _noisy in ("trafilatura", "htmldate", "courlan", "justext"):
    # Per-page "discarding data" warnings would otherwise reach stderr via logging's last-resort handler;
    # applications that configure logging still receive them.
    logging.getLogger(_noisy).addHandler(logging.NullHandler())


class ExtractedPage(NamedTuple):
    """What extraction made of a response body: title, Markdown/text, and the extractor that made them."""

    title: str
    text: str
    extractor: str


@functools.cache
def extractor_version(distribution: str) -> str:
    """The installed version of `distribution` ('unknown' when it is not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def media_type(content_type: str) -> str:
    """The lower-case media type of a Content-Type value, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def _codec(label: str) -> str | None:
    """The Python codec for a charset label, as browsers map it; None if unknown."""
    name = _WHATWG_ALIASES.get(label.strip().lower(), label.strip().lower())
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):
        return None


def decode_body(body: bytes | str, content_type: str = "") -> str:
    """Decode a response body: BOM, declared charset, `<meta>` charset, then UTF-8 with replacement."""
    if isinstance(body, str):
        return body
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace")
    candidates: list[str] = []
    declared = _CHARSET_PARAM.search(content_type)
    if declared:
        candidates.append(declared.group(1))
    meta = _META_CHARSET.search(body[:16384])
    if meta:
        candidates.append(meta.group(1).decode("ascii", errors="replace"))
    for label in candidates:
        codec = _codec(label)
        if codec is None or codec.startswith("utf-16") or codec.startswith("utf-32"):
            continue  # a meta tag readable as ASCII cannot be in UTF-16/32; the label is wrong
        try:
            return body.decode(codec, errors="replace")
        except (LookupError, ValueError):
            continue
    return body.decode("utf-8", errors="replace")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Split a leading `---` block of `key: value` lines off Markdown; values may be JSON-quoted strings."""
    if not text.startswith("---\n"):
        return {}, text
    end = text.find("\n---\n", 3)
    if end < 0:
        if text.endswith("\n---"):
            end = len(text) - 4
        else:
            return {}, text
    fields: dict[str, str] = {}
    for line in text[4:end].split("\n"):
        match = _FRONT_MATTER_KEY.match(line)
        if match is None:
            return {}, text
        value = match.group(2).strip()
        if value.startswith('"'):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
            value = decoded if isinstance(decoded, str) else value
        fields[match.group(1)] = value
    return fields, text[end + 5 :]


def _clean_markdown(text: str) -> str:
    """Trailing spaces, marker-only lines and runs of blank lines removed."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept = "\n".join(line for line in lines if not _MARKER_ONLY.match(line))
    return _MANY_BLANKS.sub("\n\n", kept).strip()


def _title_tag(markup: str) -> str:
    """The text of the `<title>` element ('' when there is none)."""
    match = _TITLE_TAG.search(markup[:200000])
    if match is None:
        return ""
    return " ".join(html.unescape(_TAG.sub(" ", match.group(1))).split())


def _trafilatura(markup: str, url: str) -> tuple[str, str] | None:
    """(title, Markdown) from trafilatura, retrying without precision mode; None when it finds nothing."""
    import trafilatura

    for options in (TRAFILATURA_OPTIONS, {**TRAFILATURA_OPTIONS, "favor_precision": False}):
        document = trafilatura.extract_with_metadata(markup, url=url or None, **options)
        if document is None or not document.text:
            continue
        _, body = split_front_matter(document.text)
        text = _clean_markdown(body)
        if text:
            return " ".join(str(document.title or "").split()), text
    return None


def _get_text(markup: str) -> str:
    """All visible text, script/style/noscript/template removed, one line per block."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for node in soup(["script", "style", "noscript", "template"]):
        node.decompose()
    lines = (" ".join(line.split()) for line in soup.get_text("\n").split("\n"))
    return "\n".join(line for line in lines if line)


def _passthrough(markup: str, kind: str) -> ExtractedPage:
    """Text as is; a Markdown title from front matter or the first `# ` heading."""
    title = ""
    fields, text = split_front_matter(markup) if kind != "text/plain" else ({}, markup)
    if "title" in fields:
        title = fields["title"]
    elif kind != "text/plain":
        for line in text.split("\n", 50)[:50]:
            if line.startswith("# "):
                title = line[2:].strip()
                break
    return ExtractedPage(title=title, text=text, extractor="passthrough")


def extract_page(body: bytes | str, url: str, content_type: str = "text/html") -> ExtractedPage:
    """Title and Markdown/text of a response body, with the extractor and version used.

    Never raises on content; raises `MissingExtraError` for HTML when the `import` extra is not installed.
    """
    try:
        markup = decode_body(body, content_type)
        kind = media_type(content_type)
        if kind in TEXT_TYPES:
            return _passthrough(markup, kind)
    except Exception:  # extraction must never fail an import or a recording
        return ExtractedPage(title="", text="", extractor="none")
    ensure_extra("import", "HTML extraction")
    try:
        found = _trafilatura(markup, url)
    except Exception:  # malformed markup can trip any parser; fall back below
        found = None
    if found is not None:
        title, text = found
        return ExtractedPage(
            title=title or _title_tag(markup),
            text=text,
            extractor=f"trafilatura {extractor_version('trafilatura')}",
        )
    try:
        text = _get_text(markup)
    except Exception:  # the last resort: no text rather than an exception
        return ExtractedPage(title=_title_tag(markup), text="", extractor="none")
    return ExtractedPage(
        title=_title_tag(markup), text=text, extractor=f"bs4-get_text {extractor_version('beautifulsoup4')}"
    )
