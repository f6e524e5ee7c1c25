"""html-dir import of the article benchmark pages, and the WARC export / import round trip."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from miroenv.importers import (
    ImportFormatError,
    ImportReport,
    export_warc,
    import_hotpotqa,
    import_html_dir,
    import_serper_jsonl,
    import_warc,
)
from miroenv.web import Snapshot
from tests.importers.helpers import pages_of, run_cli, write_warc

WSJ_KEY = "042bb7b5fedab6eac7db576522b89b93904c237d344bcbe14a6a5ab7f7335856"


def test_html_dir_via_cli_with_the_benchmark_url_map(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "article_extraction"
    truth = json.loads((folder / "ground-truth.json").read_text(encoding="utf-8"))
    keys = sorted(truth)[:24]  # the whole folder imports the same way (see benchmarks/bench_extraction.py)
    out = tmp_path / "articles"
    files = [folder / "html" / f"{key}.html.gz" for key in keys]
    result = run_cli(
        "snapshot", "import", "html-dir", *files, folder / "ground-truth.json", "--out", out,
        "--capture-date", "2019-11-20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pages = pages_of(out)
    assert set(pages) == {truth[key]["url"] for key in keys}
    wsj = pages[truth[WSJ_KEY]["url"]]
    assert wsj.text.startswith("Gaming used to be so simple.")
    assert (
        wsj.title
        and wsj.extractor.startswith("trafilatura ")
        and wsj.metadata["file"] == f"{WSJ_KEY}.html.gz"
    )
    assert wsj.body is not None and wsj.body == gzip.decompress(
        (folder / "html" / f"{WSJ_KEY}.html.gz").read_bytes()
    )
    assert all(page.text for page in pages.values())


def test_html_dir_function_with_single_files_and_synthetic_urls(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "article_extraction"
    keys = sorted(json.loads((folder / "ground-truth.json").read_text(encoding="utf-8")))[:3]
    url_map = tmp_path / "urls.json"
    url_map.write_text(
        json.dumps({keys[0]: "https://mapped.test/a", f"{keys[1]}.html.gz": {"url": "https://mapped.test/b"}})
    )
    report = import_html_dir([folder / "html" / f"{k}.html.gz" for k in keys] + [url_map], tmp_path / "snap")
    pages = pages_of(tmp_path / "snap")
    assert report.pages == 3
    assert {"https://mapped.test/a", "https://mapped.test/b", f"https://html-dir.invalid/{keys[2]}"} == set(
        pages
    )
    assert any("1 files not in any URL map" in note for note in report.notes)


def test_html_dir_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFormatError, match=r"no \.html"):
        import_html_dir([tmp_path / "empty"], tmp_path / "snap")
    bad_map = tmp_path / "map.json"
    bad_map.write_text('{"page": 3}')
    with pytest.raises(ImportFormatError, match=r"map\.json:key 'page': field 'url'"):
        import_html_dir([bad_map], tmp_path / "snap")
    broken = tmp_path / "x.html.gz"
    broken.write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(ImportFormatError, match=r"x\.html\.gz: not a valid gzip file"):
        import_html_dir([broken], tmp_path / "snap")


def assert_same_pages(first: Path, second: Path) -> None:
    a, b = pages_of(first), pages_of(second)
    assert set(a) == set(b)
    for url, page in a.items():
        other = b[url]
        assert (other.title, other.text, other.status, other.extractor) == (
            page.title,
            page.text,
            page.status,
            page.extractor,
        )


def test_export_then_import_gives_back_the_same_pages(
    shared_data: Path, tmp_path: Path, real_warc_import: tuple[Path, ImportReport]
) -> None:
    original = tmp_path / "original"
    shutil.copytree(real_warc_import[0], original)
    import_hotpotqa([shared_data / "hotpotqa_train" / "hotpotqa_train_corpus.json"], original)
    searches = tmp_path / "s.jsonl"
    searches.write_text(json.dumps({"q": "a query", "results": []}) + "\n")
    import_serper_jsonl([searches], original)
    report = export_warc(original, tmp_path / "out.warc.gz")
    assert report.pages == 47 + 994 and report.conversions == 47 and report.searches_not_exported == 1
    back = import_warc([tmp_path / "out.warc.gz"], tmp_path / "back")
    assert back.pages == report.pages and back.skipped == {}
    assert_same_pages(original, tmp_path / "back")
    iana = Snapshot(tmp_path / "back").page("http://www.iana.org/")
    assert iana.captured_at == "2017-03-06T16:54:09+00:00" and iana.body is not None


def test_round_trip_keeps_redirects_files_and_texts_of_any_extractor(tmp_path: Path) -> None:
    html = b"<html><head><title>Target</title></head><body><p>" + b"Words here. " * 30 + b"</p></body></html>"
    source = write_warc(
        tmp_path / "in.warc.gz",
        [
            {
                "url": "http://site.test/old",
                "status": "301 Moved Permanently",
                "headers": [("Location", "/new")],
            },
            {"url": "http://site.test/new", "body": html},
            {
                "url": "http://site.test/f.pdf",
                "headers": [("Content-Type", "application/pdf")],
                "body": b"%PDF-1.7",
            },
        ],
    )
    original = tmp_path / "original"
    import_warc([source], original)
    from miroenv.web import SnapshotWriter

    with SnapshotWriter(original) as writer:
        writer.add_page(
            "https://other.test/x", title="Recorded", text="text from another extractor", body=b"<p>raw</p>",
            extractor="jina-reader 1.0", captured_at="2024-05-02T03:04:05.123456+00:00",
        )  # fmt: skip
        writer.add_page(
            "https://other.test/start", final_url="https://other.test/end", title="Moved", text="t"
        )
    result = run_cli("snapshot", "export", original, "--warc", tmp_path / "out.warc")
    assert result.exit_code == 0, result.output
    import_warc([tmp_path / "out.warc"], tmp_path / "back")
    back = Snapshot(tmp_path / "back")
    assert back.page("http://site.test/old").url == "http://site.test/new"
    assert back.file("http://site.test/f.pdf").data == b"%PDF-1.7"
    recorded = back.page("https://other.test/x")
    assert (recorded.text, recorded.extractor, recorded.body) == (
        "text from another extractor",
        "jina-reader 1.0",
        b"<p>raw</p>",
    )
    assert recorded.captured_at == "2024-05-02T03:04:05.123456+00:00"
    moved = back.page("https://other.test/start")
    assert (moved.url, moved.title, moved.text) == ("https://other.test/end", "Moved", "t")


def test_export_errors_exit_2(tmp_path: Path) -> None:
    result = run_cli("snapshot", "export", tmp_path / "missing", "--warc", tmp_path / "x.warc.gz")
    assert result.exit_code == 2 and "no snapshot manifest" in result.output
    shutil.rmtree(tmp_path / "missing", ignore_errors=True)
