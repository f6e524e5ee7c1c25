"""Snapshot store: round trips, lookups, manifest, content hash, crash safety."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.web import (
    NoSearchIndexError,
    NotInSnapshotError,
    SearchRequest,
    Snapshot,
    SnapshotError,
    SnapshotWriter,
    normalize_query,
)


def make_snapshot(path: Path) -> Path:
    with SnapshotWriter(path, name="tiny", capture_date="2024-05-01") as writer:
        writer.add_page("https://example.org/a", title="A", text="alpha text", body=b"<p>alpha</p>")
        writer.add_page(
            "https://example.org/b",
            title="B",
            text="beta",
            final_url="https://example.org/b/",
            status=200,
            metadata={"lang": "en"},
        )
        writer.add_search(
            "Who is Alpha?", organic=[{"title": "A", "link": "https://example.org/a", "snippet": "alpha"}]
        )
        writer.add_file("https://example.org/data.csv", b"x,y\n1,2\n", content_type="text/csv")
    return path


def test_round_trip_pages_searches_files(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    page = snap.page("https://example.org/b")
    assert (page.title, page.text, page.final_url, page.metadata) == (
        "B",
        "beta",
        "https://example.org/b/",
        {"lang": "en"},
    )
    assert snap.page("https://example.org/a").body == b"<p>alpha</p>"
    assert snap.file("https://example.org/data.csv").data == b"x,y\n1,2\n"
    result = snap.search(SearchRequest(q="Who is Alpha?"))
    assert result.source == "recorded"
    assert result.payload["organic"][0]["link"] == "https://example.org/a"
    assert result.payload["organic"][0]["position"] == 1


def test_manifest_counts_and_hash(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    assert snap.manifest.counts == {
        "pages": 2,
        "searches": 1,
        "files": 1,
        "aliases": 0,
        "extractions": 0,
        "tool_results": 0,
    }
    assert snap.manifest.capture_date == "2024-05-01"
    assert snap.verify() == snap.content_hash
    assert snap.content_hash.startswith("sha256:")


def test_equal_content_gives_equal_hash_and_different_content_does_not(tmp_path: Path) -> None:
    first = Snapshot(make_snapshot(tmp_path / "one")).content_hash
    second = Snapshot(make_snapshot(tmp_path / "two")).content_hash
    assert first == second
    with SnapshotWriter(tmp_path / "two") as writer:
        writer.add_page("https://example.org/c", text="gamma")
    assert Snapshot(tmp_path / "two").content_hash != first


def test_tampering_is_detected(tmp_path: Path) -> None:
    path = make_snapshot(tmp_path / "s")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["content_hash"] = "sha256:" + "0" * 64
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError, match="content hash mismatch"):
        Snapshot(path).verify()


@pytest.mark.parametrize(
    "query", ["who is alpha?", "  WHO   is ALPHA?  ", "Ｗｈｏ is Alpha?", "who\tis\nalpha?"]
)
def test_recorded_query_matches_after_normalization(tmp_path: Path, query: str) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    assert snap.search(SearchRequest(q=query)).source == "recorded"


def test_unrecorded_query_without_an_index_says_how_to_build_one(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    with pytest.raises(NoSearchIndexError, match=r"no search index.*miroenv snapshot reindex"):
        snap.search(SearchRequest(q="nothing like it", gl="de"))


def test_zero_results_asked_is_an_empty_serper_payload(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    result = snap.search(SearchRequest(q="nothing like it", gl="de", num=0))
    assert result.source == "empty"
    assert result.payload["organic"] == []
    assert result.payload["searchParameters"]["q"] == "nothing like it"
    assert result.payload["searchParameters"]["gl"] == "de"


def test_other_locale_falls_back_to_default_recording(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    assert snap.search(SearchRequest(q="Who is Alpha?", gl="fr", hl="fr")).source == "recorded"
    assert snap.search(SearchRequest(q="Who is Alpha?", page=2)).source == "recorded"


def test_missing_page_and_file_raise_not_in_snapshot(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    with pytest.raises(NotInSnapshotError, match="not in this snapshot"):
        snap.page("https://example.org/zzz")
    with pytest.raises(NotInSnapshotError, match="file"):
        snap.file("https://example.org/zzz.csv")


def test_opening_a_non_snapshot_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="no snapshot manifest"):
        Snapshot(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(SnapshotError, match="database is missing"):
        Snapshot(tmp_path)


def test_new_snapshot_requires_name_and_date(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="name and a capture_date"):
        SnapshotWriter(tmp_path / "x")


def _write_then_die(path: str, count: int) -> None:
    writer = SnapshotWriter(path, name="crash", capture_date="2024-01-01")
    for i in range(count):
        writer.add_page(f"https://example.org/{i}", text=f"page {i}")
    os.kill(os.getpid(), signal.SIGKILL)


def test_killed_writer_leaves_every_committed_page_readable(tmp_path: Path) -> None:
    path = tmp_path / "crash"
    proc = multiprocessing.get_context("fork").Process(target=_write_then_die, args=(str(path), 50))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    snap = Snapshot(path)
    assert snap.page("https://example.org/49").text == "page 49"
    assert len(list(snap.iter_pages())) == 50
    with SnapshotWriter(path) as writer:
        assert writer.counts()["pages"] == 50
    assert Snapshot(path).manifest.counts["pages"] == 50


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalize_query_is_idempotent_and_trimmed(text: str) -> None:
    once = normalize_query(text)
    assert normalize_query(once) == once
    assert "  " not in once and once == once.strip()


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)))
def test_normalize_query_ignores_ascii_case(text: str) -> None:
    assert normalize_query(text.upper()) == normalize_query(text.lower())


@pytest.mark.parametrize(
    "variant",
    [
        "https://example.org/a",
        "http://example.org/a",
        "https://www.example.org/a/",
        "HTTPS://EXAMPLE.ORG/a#section",
        "https://example.org/a?utm_source=newsletter",
        "example.org/a",
    ],
)
def test_page_found_under_common_spellings(tmp_path: Path, variant: str) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    assert snap.page(variant).url == "https://example.org/a"


def test_path_case_and_query_matter(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    with pytest.raises(NotInSnapshotError):
        snap.page("https://example.org/A")
    with pytest.raises(NotInSnapshotError):
        snap.page("https://example.org/a?page=2")


def test_final_url_and_aliases_lead_to_the_page(tmp_path: Path) -> None:
    path = make_snapshot(tmp_path / "s")
    with SnapshotWriter(path) as writer:
        writer.add_alias("https://short.example/x1", "https://example.org/a")
    snap = Snapshot(path)
    assert snap.page("https://example.org/b/").url == "https://example.org/b"
    assert snap.page("http://short.example/x1").title == "A"
    assert snap.manifest.counts["aliases"] == 1


def test_exact_spelling_wins_over_other_variants(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "s", name="v", capture_date="2024-01-01") as writer:
        writer.add_page("http://example.org/p", text="plain http")
        writer.add_page("https://example.org/p", text="https")
    snap = Snapshot(tmp_path / "s")
    assert snap.page("http://example.org/p").text == "plain http"
    assert snap.page("https://example.org/p/").text == "https"
    assert snap.page("http://www.example.org/p/").text == "plain http"


def test_miss_names_the_closest_url_on_that_host(tmp_path: Path) -> None:
    snap = Snapshot(make_snapshot(tmp_path / "s"))
    with pytest.raises(NotInSnapshotError, match=r"closest URL .* 'https://example.org/b'") as caught:
        snap.page("https://example.org/bb")
    assert caught.value.suggestion == "https://example.org/b"
    with pytest.raises(NotInSnapshotError) as caught:
        snap.page("https://other.example/a")
    assert caught.value.suggestion is None


def test_recorded_tool_results_replay_verbatim(tmp_path: Path) -> None:
    from miroenv.web import ToolResultRecord

    path = make_snapshot(tmp_path / "s")
    raw = '{\n  "searchParameters": {"q": "x"},\n  "organic": []\n}'
    with SnapshotWriter(path) as writer:
        writer.add_tool_result(
            ToolResultRecord(server="srv", tool="google_search", arguments={"q": "x", "gl": "us"}, result=raw)
        )
        writer.add_tool_result(
            ToolResultRecord(
                server="srv", tool="scrape", arguments={"url": "u"}, result="[ERROR]: boom", error_kind="tool"
            )
        )
    snap = Snapshot(path)
    assert snap.manifest.counts["tool_results"] == 2
    assert (
        snap.tool_result("srv", "google_search", {"gl": "us", "q": "x"}).result == raw
    )  # key order irrelevant
    assert snap.tool_result("srv", "google_search", {"q": "x"}) is None
    assert snap.tool_result("srv", "scrape", {"url": "u"}).error_kind == "tool"
