"""WARC import: every real file in the shared data, redirects, revisits, files, and malformed input."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from miroenv.importers import IMPORTERS, ImportFormatError, ImportReport, import_warc
from miroenv.web import NotInSnapshotError, Snapshot
from tests.importers.helpers import pages_of, real_warcs, run_cli, write_warc

EXPECTED_PAGES = {
    "clueweb-quirk.warc.gz": 29,
    "example-iana.org-chunked.warc": 1,
    "example.warcio.warc.gz": 1,
    "warcfile.warc.gz": 16,
}

HTML = b"""<!DOCTYPE html><html><head><title>%s</title></head><body><article><h1>%s</h1>
<p>%s is a page in a small synthetic archive used to check how redirects, revisits and downloadable files are
imported. It has enough words in one paragraph for the extractor to consider it the main content.</p>
</article></body></html>"""


def html(title: str) -> bytes:
    return HTML % (title.encode(), title.encode(), title.encode())


def test_registry_names_every_importer() -> None:
    assert set(IMPORTERS) == {
        "warc",
        "hotpotqa",
        "musique",
        "2wiki",
        "corpus-jsonl",
        "serper-jsonl",
        "html-dir",
    }
    assert IMPORTERS["warc"] is import_warc


def test_every_real_warc_file_imports(shared_data: Path, real_warc_import: tuple[Path, ImportReport]) -> None:
    out, report = real_warc_import
    assert {p.name for p in real_warcs(shared_data / "warc")} == set(EXPECTED_PAGES)
    pages = pages_of(out)
    assert report.pages == len(pages) == sum(EXPECTED_PAGES.values())
    assert report.skipped == {} and report.aliases == 0 and report.files == 0
    per_file = Counter(page.metadata["warc_file"] for page in pages.values())
    assert per_file == EXPECTED_PAGES
    for page in pages.values():
        assert page.status == 200 and page.text and page.body
        assert page.extractor.startswith("trafilatura ")
    Snapshot(out).verify()


def test_chunked_response_is_decoded(real_warc_import: tuple[Path, ImportReport]) -> None:
    page = Snapshot(real_warc_import[0]).page("https://iana.org")
    assert page.url == "http://www.iana.org/"
    assert page.title == "Internet Assigned Numbers Authority"
    assert "Management of the DNS Root Zone" in page.text
    assert page.body is not None and page.body.lstrip().lower().startswith(b"<!doctype html")
    assert not any(line.strip() in {"0", "1c2b"} for line in page.text.splitlines())
    assert page.captured_at == "2017-03-06T16:54:09+00:00"


def test_revisit_takes_the_original_payload(real_warc_import: tuple[Path, ImportReport]) -> None:
    out, report = real_warc_import
    page = pages_of(out)["http://example.com/"]
    assert page.title == "Example Domain" and "illustrative examples" in page.text
    assert page.captured_at == "2017-03-06T04:03:48+00:00"  # the revisit is the latest capture
    assert page.metadata["revisit_of"] == "http://example.com/"
    assert "1 revisit records resolved to their original payload" in report.notes


def test_declared_charsets_and_invalid_dates(real_warc_import: tuple[Path, ImportReport]) -> None:
    out, report = real_warc_import
    pages = pages_of(out)
    assert pages["http://01spb.ru/company/"].title == "О компании - Стратегия пожарной безопасности"
    quirk = pages["http://www.uraharajuku.st/shopdetail/001005000005/019/000/order/"]
    assert "吉田カバン" in quirk.title and quirk.captured_at is None
    assert any("29 records with an invalid WARC-Date" in note for note in report.notes)
    assert report.ignored == {"warcinfo record": 5, "request record": 20, "metadata record": 16}
    assert Snapshot(out).capture_date == "2024-01-01"


def test_cli_imports_real_warcs_and_dates_the_snapshot(shared_data: Path, tmp_path: Path) -> None:
    sources = [
        shared_data / "warc" / "example-iana.org-chunked.warc",
        shared_data / "warc" / "example.warcio.warc.gz",
    ]
    result = run_cli("snapshot", "import", "warc", *sources, "--out", tmp_path / "snap", "--name", "real")
    assert result.exit_code == 0, result.output
    assert "warc import: created snapshot" in " ".join(result.output.split())
    snap = Snapshot(tmp_path / "snap")
    assert snap.name == "real" and snap.manifest.counts["pages"] == 2
    assert snap.capture_date == "2017-03-06"  # the latest WARC-Date, as no --capture-date was given
    snap.verify()


def test_redirects_files_revisits_and_skips(tmp_path: Path) -> None:
    first = write_warc(
        tmp_path / "a.warc.gz",
        [
            {
                "url": "http://site.test/old",
                "status": "301 Moved Permanently",
                "headers": [("Location", "/mid")],
            },
            {
                "url": "http://site.test/mid",
                "status": "302 Found",
                "headers": [("Location", "https://site.test/new")],
            },
            {
                "url": "http://site.test/away",
                "status": "302 Found",
                "headers": [("Location", "https://else.test/")],
            },
            {"url": "https://site.test/new", "body": html("New Place")},
            {
                "url": "https://site.test/paper.pdf",
                "headers": [("Content-Type", "application/pdf")],
                "body": b"%PDF-1.4 x",
            },
            {
                "url": "https://site.test/data.csv",
                "headers": [("Content-Type", "application/octet-stream")],
                "body": b"a,b\n1,2\n",
            },
            {
                "url": "https://site.test/logo.png",
                "headers": [("Content-Type", "image/png")],
                "body": b"\x89PNG",
            },
            {"url": "https://site.test/gone", "status": "304 Not Modified", "headers": []},
        ],
    )
    digest = "sha1:PDFDIGEST"
    second = write_warc(
        tmp_path / "b.warc",
        [
            {
                "url": "https://mirror.test/paper.pdf",
                "type": "revisit",
                "date": "2024-06-01T00:00:00Z",
                "warc_headers": {
                    "WARC-Refers-To-Target-URI": "https://site.test/paper.pdf",
                    "WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest",
                    "WARC-Payload-Digest": digest,
                },
                "headers": [("Content-Type", "application/pdf")],
            },
            {
                "url": "https://mirror.test/missing",
                "type": "revisit",
                "warc_headers": {"WARC-Refers-To-Target-URI": "https://nowhere.test/"},
            },
        ],
        gzip=False,
    )
    report = import_warc([first, second], tmp_path / "snap")
    assert (report.pages, report.files, report.aliases) == (1, 3, 3)
    assert report.skipped == {
        "not a page or document (image/png)": 1,
        "HTTP 304 (no content)": 1,
        "revisit whose original payload is not in the imported files": 1,
    }
    snap = Snapshot(tmp_path / "snap")
    for spelling in ("http://site.test/old", "site.test/mid", "https://site.test/new"):
        assert snap.page(spelling).title == "New Place"
    with pytest.raises(NotInSnapshotError):
        snap.page("https://else.test/")
    assert snap.file("https://site.test/paper.pdf").data == b"%PDF-1.4 x"
    assert snap.file("https://mirror.test/paper.pdf").data == b"%PDF-1.4 x"
    assert snap.file("https://site.test/data.csv").data == b"a,b\n1,2\n"
    assert any("lead to URLs this snapshot does not hold" in note for note in report.notes)


def test_a_2xx_capture_beats_an_error_and_later_captures_win(tmp_path: Path) -> None:
    source = write_warc(
        tmp_path / "dup.warc.gz",
        [
            {"url": "https://site.test/p", "body": html("First"), "date": "2024-01-01T00:00:00Z"},
            {
                "url": "https://site.test/p",
                "status": "500 Internal Server Error",
                "body": html("Error"),
                "date": "2024-03-01T00:00:00Z",
            },
            {"url": "https://site.test/p", "body": html("Second"), "date": "2024-02-01T00:00:00Z"},
            {"url": "https://site.test/p", "body": html("Older"), "date": "2023-01-01T00:00:00Z"},
        ],
    )
    report = import_warc([source], tmp_path / "snap")
    page = pages_of(tmp_path / "snap")["https://site.test/p"]
    assert page.title == "Second" and page.status == 200 and report.merged == 3


def test_not_a_warc_file_is_rejected_by_name(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match=r"LICENSE\.warcio:byte 0: not a WARC file"):
        import_warc([shared_data / "warc" / "LICENSE.warcio"], tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    result = run_cli(
        "snapshot", "import", "warc", shared_data / "warc" / "LICENSE.warcio", "--out", tmp_path / "s"
    )
    assert result.exit_code == 2 and "not a WARC file" in result.output


def test_truncated_warc_fails_and_leaves_no_snapshot(shared_data: Path, tmp_path: Path) -> None:
    data = gzip.decompress((shared_data / "warc" / "warcfile.warc.gz").read_bytes())
    truncated = tmp_path / "cut.warc"
    truncated.write_bytes(
        data[: len(data) // 2] + b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: x\r\n\r\n"
    )
    with pytest.raises(ImportFormatError, match=r"cut\.warc:record \d+"):
        import_warc([truncated], tmp_path / "snap")
    assert not (tmp_path / "snap").exists()


def test_bad_capture_date_and_missing_file(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "warc" / "example.warcio.warc.gz"
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        import_warc([source], tmp_path / "snap", capture_date="2024-13-01")
    result = run_cli("snapshot", "import", "warc", tmp_path / "nope.warc", "--out", tmp_path / "snap")
    assert result.exit_code == 2 and "no such file" in result.output
