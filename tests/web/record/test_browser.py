"""Pages that need JavaScript: httpx alone misses their text, real Chromium (via Playwright) renders it."""

from __future__ import annotations

from pathlib import Path

import pytest

from miroenv.web import Snapshot
from miroenv.web.record import BrowserFetcher, FetchResult, RecordingError, RecordingWeb, URLGuard

from .conftest import JS_PHRASE, PageServer, record_kwargs


def test_javascript_page_needs_the_browser(chromium: str, page_server: PageServer, tmp_path: Path) -> None:
    url = page_server.url("/js")
    with RecordingWeb(tmp_path / "plain", **record_kwargs(auto_javascript=False)) as web:
        plain = web.page(url)
    assert JS_PHRASE not in plain.text and plain.metadata["fetcher"] == "httpx"

    with RecordingWeb(tmp_path / "auto", **record_kwargs(chromium_path=chromium, render_settle=0.5)) as web:
        rendered = web.page(url)
        assert JS_PHRASE in rendered.text
        assert rendered.title in ("Rendered", "Rendered by script")
        assert rendered.metadata["fetcher"] == "chromium"
        assert rendered.body is not None and JS_PHRASE.encode() in rendered.body
        static = web.page(page_server.url("/pages/static"))
        assert static.metadata["fetcher"] == "httpx", "pages with text are not rendered"
        proxy = web._browser.proxy if web._browser is not None else None
        assert proxy is not None and not [r for r in proxy.refused if "127.0.0.1" in r[0]]
    assert Snapshot(tmp_path / "auto").page(url) == rendered


def test_javascript_hosts_and_guard_proxy(chromium: str, page_server: PageServer, tmp_path: Path) -> None:
    """A listed host is rendered even when its HTML has text; the browser's own requests go through the guard
    proxy, which refuses the redirect hops to private addresses that Playwright's interception cannot see."""
    kwargs = record_kwargs(
        allow_private=False,
        allow_networks=("127.0.0.1/32",),
        javascript_hosts=("127.0.0.1",),
        chromium_path=chromium,
        render_settle=0.5,
    )
    with RecordingWeb(tmp_path / "hosts", **kwargs) as web:
        page = web.page(page_server.url("/js-sneaky"))
        assert page.metadata["fetcher"] == "chromium" and "Article sneaky" in page.text
        assert web._browser is not None and web._browser.proxy is not None
        refused = dict(web._browser.proxy.refused)
    assert page_server.hits["/to-private"] == 1 and page_server.hits["/to-loopback6"] == 1
    assert page_server.hits["/secret"] == 0
    assert any("10.0.0.1" in reason for reason in refused.values()), refused
    assert any("::1" in reason for reason in refused.values()), refused


class FakeBrowser(BrowserFetcher):
    """Stands in for Chromium: 'renders' a page by appending the JavaScript phrase, and counts calls."""

    def __init__(self, executable_path: str) -> None:
        super().__init__(URLGuard(allow_private=True), executable_path=executable_path)
        self.rendered: list[str] = []

    def fetch(self, url: str) -> FetchResult:
        self.rendered.append(url)
        html = f"<html><head><title>Rendered</title></head><body><article><p>{JS_PHRASE}. {'x ' * 150}</p>"
        return FetchResult(
            url=url, final_url=url, status=200, content_type="text/html", body=html.encode(), fetcher="fake"
        )


def test_which_pages_are_rendered(page_server: PageServer, tmp_path: Path) -> None:
    """Listed hosts and the predicate always render; automatic detection renders script-only pages, and only
    when a browser is installed; an explicitly wanted but missing browser is an infra failure."""
    present = str(tmp_path / "chromium")
    Path(present).write_text("")
    js, static = page_server.url("/js"), page_server.url("/pages/static")
    cases = [
        ({}, {js}),
        ({"auto_javascript": False}, set()),
        ({"javascript_hosts": ("www.127.0.0.1",)}, {js, static}),
        ({"auto_javascript": False, "needs_javascript": lambda url: url.endswith("/static")}, {static}),
    ]
    for index, (options, expected) in enumerate(cases):
        browser = FakeBrowser(present)
        with RecordingWeb(tmp_path / f"s{index}", browser=browser, **record_kwargs(**options)) as web:
            pages = {url: web.page(url) for url in (js, static)}
        assert set(browser.rendered) == expected, options
        for url in expected:
            assert JS_PHRASE in pages[url].text and pages[url].metadata["fetcher"] == "fake"

    missing = FakeBrowser(str(tmp_path / "no-chromium"))
    with RecordingWeb(tmp_path / "missing", browser=missing, **record_kwargs()) as web:
        assert JS_PHRASE not in web.page(js).text, "no browser: automatic rendering is skipped"
    absent = record_kwargs(javascript_hosts=("127.0.0.1",), chromium_path=str(tmp_path / "no-chromium"))
    with (
        RecordingWeb(tmp_path / "explicit", **absent) as web,
        pytest.raises(RecordingError, match="not found"),
    ):
        web.page(static)
