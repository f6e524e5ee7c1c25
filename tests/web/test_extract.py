"""HTML extraction at import time: charsets, script removal, fallback, pass-through, never raising."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.web.extract import ExtractedPage, decode_body, extract_page, split_front_matter

ARTICLE = """<!DOCTYPE html>
<html><head><meta charset="{charset}"><title>Les Misérables — Résumé | Site</title>
<script>var tracking = "SECRET_SCRIPT_TOKEN";</script><style>.x {{ color: red }}</style></head>
<body><nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article><h1>Les Misérables</h1>
<p>Les Misérables est un roman de Victor Hugo paru en 1862. Il décrit la vie de Jean Valjean, un ancien forçat,
et de Cosette, l'enfant qu'il recueille, dans la France du début du dix-neuvième siècle.</p>
<h2>Personnages</h2>
<ul><li>Jean Valjean, ancien forçat devenu maire de Montreuil-sur-Mer.</li>
<li>Javert, l'inspecteur de police qui le poursuit pendant des années.</li></ul>
<p>Le roman est l'un des plus lus de la littérature française et a été adapté de très nombreuses fois au
théâtre, au cinéma et en comédie musicale à travers le monde entier.</p>
</article><footer>© 2024 Site — tous droits réservés</footer></body></html>
"""


def test_declared_charset_wins_and_markdown_keeps_structure() -> None:
    body = ARTICLE.format(charset="iso-8859-1").replace("—", "-").replace("©", "(c)").encode("latin-1")
    page = extract_page(body, "https://example.org/mis", "text/html; charset=ISO-8859-1")
    assert isinstance(page, ExtractedPage)
    assert "Misérables" in page.title
    assert "Jean Valjean, ancien forçat" in page.text
    assert "## Personnages" in page.text and "- Javert" in page.text
    assert page.extractor.startswith("trafilatura ") and page.extractor.split()[1][0].isdigit()


def test_meta_charset_used_when_the_header_has_none() -> None:
    body = ARTICLE.format(charset="windows-1252").replace("—", "-").encode("cp1252")
    page = extract_page(body, "https://example.org/mis", "text/html")
    assert "Jean Valjean, ancien forçat" in page.text and "\ufffd" not in page.text


def test_undeclared_bytes_fall_back_to_utf8_with_replacement() -> None:
    assert decode_body(b"caf\xc3\xa9 \xff end") == "café \ufffd end"
    assert decode_body("<p>already text</p>".encode("utf-16")) == "<p>already text</p>"
    assert decode_body(b"<meta charset='no-such-codec'>\xc3\xa9", "text/html; charset=bogus").endswith("é")


def test_scripts_and_styles_never_reach_the_text() -> None:
    page = extract_page(ARTICLE.format(charset="utf-8").encode(), "https://example.org/mis")
    assert "SECRET_SCRIPT_TOKEN" not in page.text and "color: red" not in page.text


def test_fallback_to_get_text_when_trafilatura_finds_nothing() -> None:
    body = b"<div>tiny <script>SECRET_SCRIPT_TOKEN()</script><style>p{}</style>fragment</div>"
    page = extract_page(body, "https://example.org/frag")
    assert page.extractor.startswith("bs4-get_text ")
    assert "tiny" in page.text and "fragment" in page.text
    assert "SECRET_SCRIPT_TOKEN" not in page.text and "p{}" not in page.text


def test_title_from_the_title_tag_when_metadata_has_none() -> None:
    body = b"<html><head><title>Only &amp; Title</title></head><body><div>x</div></body></html>"
    assert extract_page(body, "https://example.org/t").title == "Only & Title"


def test_plain_text_and_markdown_pass_through_unchanged() -> None:
    text = "  line one\n\nline two  \n"
    plain = extract_page(text.encode(), "https://example.org/a.txt", "text/plain; charset=utf-8")
    assert plain == ExtractedPage(title="", text=text, extractor="passthrough")
    markdown = extract_page(b"intro\n# Heading\nbody", "https://example.org/a.md", "text/markdown")
    assert markdown.title == "Heading" and markdown.text == "intro\n# Heading\nbody"
    fronted = extract_page('---\ntitle: "A: \\"quoted\\""\nextractor: x 1\n---\nbody\n', "u", "text/markdown")
    assert fronted.title == 'A: "quoted"' and fronted.text == "body\n"


def test_front_matter_only_when_it_is_key_value_lines() -> None:
    assert split_front_matter("---\nnot front matter\n---\nrest") == ({}, "---\nnot front matter\n---\nrest")
    assert split_front_matter("---\ntitle: T\n---\n") == ({"title": "T"}, "")
    assert split_front_matter("no block") == ({}, "no block")


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=400) | st.text(max_size=300).map(str.encode),
    content_type=st.sampled_from(
        ["text/html", "text/html; charset=utf-16", "text/plain", "application/pdf", ""]
    ),
)
def test_extract_page_never_raises(body: bytes, content_type: str) -> None:
    page = extract_page(b"<html><body>" + body + b"</body></html>", "https://example.org/x", content_type)
    assert isinstance(page.text, str) and isinstance(page.title, str) and page.extractor
    raw = extract_page(body, "not a url", content_type)
    assert isinstance(raw.text, str)
