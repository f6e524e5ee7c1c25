"""URL canonicalization and match keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from miroenv.web.urls import canonical_url, host_of, match_key


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM/Path?b=2&a=1#frag", "https://example.com/Path?a=1&b=2"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        (
            "https://example.com/a?utm_source=x&id=7&gclid=1&fbclid=2&UTM_Medium=y",
            "https://example.com/a?id=7",
        ),
        ("https://example.com", "https://example.com/"),
        ("example.com/wiki/X", "http://example.com/wiki/X"),
        ("https://bücher.de/straße", "https://xn--bcher-kva.de/stra%C3%9Fe"),
        (
            "https://en.wikipedia.org/wiki/Ada_%28programming_language%29",
            "https://en.wikipedia.org/wiki/Ada_(programming_language)",
        ),
        ("https://example.com/a%2Fb%3f", "https://example.com/a%2Fb%3F"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("  https://example.com/x  ", "https://example.com/x"),
        ("https://example.com/Q?Name=Value", "https://example.com/Q?Name=Value"),
    ],
)
def test_canonical_url(url: str, canonical: str) -> None:
    assert canonical_url(url) == canonical


@pytest.mark.parametrize(
    "variant",
    [
        "https://en.wikipedia.org/wiki/ENIAC",
        "http://en.wikipedia.org/wiki/ENIAC",
        "https://en.wikipedia.org/wiki/ENIAC/",
        "https://EN.wikipedia.org/wiki/ENIAC#History",
        "https://en.wikipedia.org/wiki/ENIAC?utm_source=chatgpt.com",
        "en.wikipedia.org/wiki/ENIAC",
    ],
)
def test_variants_share_a_match_key(variant: str) -> None:
    assert match_key(variant) == "en.wikipedia.org/wiki/ENIAC"


def test_www_and_case_of_path() -> None:
    assert match_key("https://www.example.com/A") == match_key("http://example.com/A/")
    assert match_key("https://example.com/A") != match_key("https://example.com/a")
    assert host_of("https://www.Example.com:8080/x") == "example.com"


@pytest.mark.parametrize(
    "junk", ["", "   ", "http://[::1", "://", "http://exa mple.com", "\x00", "https://:99999/"]
)
def test_junk_never_raises(junk: str) -> None:
    assert isinstance(canonical_url(junk), str)
    assert isinstance(match_key(junk), str)


@settings(max_examples=400, deadline=None)
@given(urls())
def test_canonical_is_idempotent(url: str) -> None:
    once = canonical_url(url)
    assert canonical_url(once) == once
    assert match_key(once) == match_key(url)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(text: str) -> None:
    once = canonical_url(text)
    assert canonical_url(once) == once
    assert isinstance(match_key(text), str)
