"""RecordingWeb against local servers: replay first, live misses recorded at once, errors classified."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from miroenv.tools.base import InfraFailure
from miroenv.web import NotInSnapshotError, SearchRequest, Snapshot, SnapshotWriter
from miroenv.web.record import (
    FetchResult,
    HttpFetcher,
    LiveMissError,
    RecordingError,
    RecordingWeb,
    RetryPolicy,
    URLGuard,
)

from .conftest import API_KEY, CSV_BYTES, PDF_BYTES, PageServer, SearchServer, record_kwargs


def test_search_is_recorded_once_then_replayed(search_server: SearchServer, snapshot_dir: Path) -> None:
    request = SearchRequest(q="Ada Lovelace", gl="uk", hl="en", num=5, page=2, tbs="qdr:y", location="London")
    with RecordingWeb(snapshot_dir, **record_kwargs(search_server)) as web:
        first = web.record_search(request)
        assert first.live and first.value.source == "recorded"
        assert [r["link"] for r in first.value.payload["organic"]][:1] == [
            "http://example.test/pages/ada-lovelace-2-1"
        ]
        assert "credits" not in first.value.payload
        again = web.record_search(
            SearchRequest(q="  ada   LOVELACE ", gl="UK", page=2, tbs="qdr:y", location="London")
        )
        assert not again.live and again.value == first.value
        other_page = web.record_search(
            SearchRequest(q="Ada Lovelace", gl="uk", tbs="qdr:y", location="London")
        )
        assert other_page.live, "a different page of results is a different recording"
        assert web.stats == {"searches_recorded": 2, "searches_replayed": 1}
    assert len(search_server.requests) == 2
    sent = search_server.requests[0]
    assert sent["path"] == "/search" and sent["key"] == API_KEY
    assert sent["payload"] == {
        "q": "Ada Lovelace", "gl": "uk", "hl": "en", "num": 10, "page": 2, "location": "London", "tbs": "qdr:y"
    }  # fmt: skip
    replayed = Snapshot(snapshot_dir).search(request)
    assert replayed == first.value
    Snapshot(snapshot_dir).verify()


def test_search_retries_on_429_and_5xx_honouring_retry_after(
    search_server: SearchServer, snapshot_dir: Path
) -> None:
    search_server.fail_next = [429, 500, 503]
    search_server.retry_after = "1"
    policy = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.02)
    started = time.monotonic()
    with RecordingWeb(snapshot_dir, **record_kwargs(search_server, retry=policy)) as web:
        response = web.search(SearchRequest(q="retry me"))
    assert len(response.payload["organic"]) == 10
    assert len(search_server.requests) == 4
    assert time.monotonic() - started >= 1.0, "Retry-After: 1 was honoured"


def test_search_failures_are_infra_and_not_recorded(search_server: SearchServer, snapshot_dir: Path) -> None:
    search_server.fail_next = [500, 502, 503]
    with RecordingWeb(snapshot_dir, **record_kwargs(search_server)) as web:
        with pytest.raises(RecordingError, match="HTTP 503 after 3 attempts") as info:
            web.search(SearchRequest(q="always failing"))
        assert isinstance(info.value, InfraFailure)
        assert web.stats == {"failures": 1}
    bad_key = record_kwargs(search_server, serper_api_key="wrong")
    with RecordingWeb(snapshot_dir, **bad_key) as web, pytest.raises(RecordingError, match="refused the key"):
        web.search(SearchRequest(q="bad key"))
    nobody = record_kwargs(None)
    with RecordingWeb(snapshot_dir, **nobody) as web, pytest.raises(RecordingError, match=r"ConnectError"):
        web.search(SearchRequest(q="nobody listens"))
    assert Snapshot(snapshot_dir).manifest.counts["searches"] == 0


def test_pages_are_recorded_once_and_found_under_other_spellings(
    page_server: PageServer, snapshot_dir: Path
) -> None:
    url = page_server.url("/pages/babbage")
    with RecordingWeb(snapshot_dir, **record_kwargs()) as web:
        first = web.record_page(url)
        assert first.live
        page = first.value
        assert page.title == "Article babbage" and "Paragraph 3 of the article about babbage" in page.text
        assert page.status == 200 and page.content_type.startswith("text/html")
        assert page.body is not None and b"<article>" in page.body
        assert page.extractor.startswith(("trafilatura", "bs4"))
        assert page.metadata == {"fetcher": "httpx"}
        for spelling in (url + "/", url + "?utm_source=x", url + "#top", url.replace("http://", "https://")):
            again = web.record_page(spelling)
            assert not again.live and again.value == page, spelling
    assert page_server.hits["/pages/babbage"] == 1
    assert Snapshot(snapshot_dir).page(url) == page


def test_redirects_record_the_final_url_and_an_alias(page_server: PageServer, snapshot_dir: Path) -> None:
    with RecordingWeb(snapshot_dir, **record_kwargs()) as web:
        page = web.page(page_server.url("/redirect/eniac"))
        assert page.url == page.final_url == page_server.url("/pages/eniac")
        assert page.metadata["redirects"] == [page_server.url("/redirect/eniac")]
        assert web.page(page_server.url("/pages/eniac")) == page
    snap = Snapshot(snapshot_dir)
    assert snap.page(page_server.url("/redirect/eniac")) == page
    assert snap.manifest.counts == {
        "pages": 1,
        "searches": 0,
        "files": 0,
        "aliases": 1,
        "extractions": 0,
        "tool_results": 0,
    }
    assert page_server.hits["/pages/eniac"] == 1


def test_not_found_is_a_tool_error_and_not_recorded(page_server: PageServer, snapshot_dir: Path) -> None:
    with RecordingWeb(snapshot_dir, **record_kwargs()) as web:
        web.page(page_server.url("/pages/known"))
        with pytest.raises(LiveMissError) as info:
            web.page(page_server.url("/missing"))
    assert isinstance(info.value, NotInSnapshotError) and not isinstance(info.value, InfraFailure)
    assert info.value.reason.startswith("HTTP 404")
    with pytest.raises(NotInSnapshotError) as replayed:
        Snapshot(snapshot_dir).page(page_server.url("/missing"))
    assert str(replayed.value) == str(info.value), "a replay shows the same text"
    assert page_server.hits["/missing"] == 1


def test_errors_after_retries_timeouts_and_refusals_are_infra(
    page_server: PageServer, snapshot_dir: Path
) -> None:
    page_server.slow_seconds = 1.5
    page_server.flaky_failures = 2
    kwargs = record_kwargs(timeout=0.3, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    with RecordingWeb(snapshot_dir, **kwargs) as web:
        with pytest.raises(RecordingError, match="Timeout"):
            web.page(page_server.url("/slow"))
        assert page_server.hits["/slow"] == 2
        with pytest.raises(RecordingError, match="HTTP 403 after 1 attempt"):
            web.page(page_server.url("/forbidden"))
        with pytest.raises(RecordingError, match="HTTP 503 after 2 attempts"):
            web.page(page_server.url("/flaky"))
        assert web.page(page_server.url("/flaky")).title == "Article flaky", "the third try succeeds"
        with pytest.raises(RecordingError, match="ConnectError"):
            web.page("http://127.0.0.1:9/refused")
    assert Snapshot(snapshot_dir).manifest.counts["pages"] == 1


def test_files_are_stored_as_files_and_pages(page_server: PageServer, snapshot_dir: Path) -> None:
    pdf_url, csv_url, html_url = (
        page_server.url(p) for p in ("/files/report.pdf", "/files/data.csv", "/pages/x")
    )
    with RecordingWeb(snapshot_dir, **record_kwargs()) as web:
        pdf = web.record_file(pdf_url)
        assert pdf.live and pdf.value.data == PDF_BYTES and pdf.value.content_type == "application/pdf"
        page = web.page(pdf_url)
        assert page.content_type == "application/pdf" and page.metadata["file"] is True and page.body is None
        csv_page = web.page(csv_url)
        assert "1843,Ada Lovelace publishes her notes" in csv_page.text
        assert web.file(csv_url).data == CSV_BYTES
        with pytest.raises(NotInSnapshotError, match="The file"):
            web.file(html_url)
        assert web.page(html_url).title == "Article x"
    assert page_server.hits == {"/files/report.pdf": 1, "/files/data.csv": 1, "/pages/x": 1}
    snap = Snapshot(snapshot_dir)
    assert snap.file(pdf_url).data == PDF_BYTES and snap.file(csv_url).data == CSV_BYTES
    assert snap.manifest.counts == {
        "pages": 3,
        "searches": 0,
        "files": 2,
        "aliases": 0,
        "extractions": 0,
        "tool_results": 0,
    }
    snap.verify()


def test_an_existing_snapshot_is_extended_and_replayed_first(page_server: PageServer, tmp_path: Path) -> None:
    path = tmp_path / "existing"
    url = page_server.url("/pages/imported")
    with SnapshotWriter(path, name="imported", capture_date="2024-01-02") as writer:
        writer.add_page(url, title="Imported", text="imported text")
    with RecordingWeb(path, **record_kwargs(), name="ignored") as web:
        assert web.name == "imported" and web.capture_date == "2024-01-02"
        assert web.page(url).text == "imported text"
        web.page(page_server.url("/pages/new"))
    assert page_server.hits == {"/pages/new": 1}
    snap = Snapshot(path)
    assert snap.manifest.counts["pages"] == 2 and snap.verify()
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "snapshot.sqlite"]
    conn = sqlite3.connect(path / "snapshot.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_urls_without_a_scheme_are_fetched_over_https(snapshot_dir: Path) -> None:
    class Recorder(HttpFetcher):
        def __init__(self) -> None:
            super().__init__(URLGuard(allow_private=True))
            self.asked: list[str] = []

        def fetch(self, url: str) -> FetchResult:
            self.asked.append(url)
            body = b"<html><head><title>T</title></head><body><p>Some text.</p></body></html>"
            return FetchResult(url=url, final_url=url, status=200, content_type="text/html", body=body)

    fetcher = Recorder()
    with RecordingWeb(snapshot_dir, http_fetcher=fetcher, **record_kwargs(auto_javascript=False)) as web:
        page = web.page("example.org/a")
        assert web.page("https://example.org/a") == page == web.page("http://www.example.org/a/")
    assert fetcher.asked == ["https://example.org/a"]
    assert page.url == "https://example.org/a"
    assert Snapshot(snapshot_dir).page("example.org/a") == page


def test_search_budget_is_enforced_machine_wide(
    search_server: SearchServer, snapshot_dir: Path, tmp_path: Path
) -> None:
    from miroenv.budgets import CallBudget, SharedBudget
    from miroenv.web.record import SerperClient

    budget = CallBudget("serper", max_calls=2, shared=SharedBudget(tmp_path / "budgets.sqlite"))
    client = SerperClient(search_server.base_url, API_KEY, budget=budget)
    with RecordingWeb(snapshot_dir, **record_kwargs(search_client=client)) as web:
        web.search(SearchRequest(q="one"))
        web.search(SearchRequest(q="two"))
        web.search(SearchRequest(q="one"))  # replayed from the snapshot: no call, no charge
        with pytest.raises(InfraFailure, match="spend cap 'serper' reached"):
            web.search(SearchRequest(q="three"))
    assert len(search_server.requests) == 2
    client.close()
