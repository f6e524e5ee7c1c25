"""`miroenv snapshot record`: queries and URLs recorded through RecordingWeb, progress and a summary printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from miroenv.cli import app
from miroenv.web import SearchRequest, Snapshot

from .conftest import API_KEY, PageServer, SearchServer

runner = CliRunner()


def test_record_command(
    page_server: PageServer, search_server: SearchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERPER_API_KEY", API_KEY)
    monkeypatch.delenv("MIROENV_SERPER_BASE_URL", raising=False)
    out = tmp_path / "snap"
    queries = tmp_path / "queries.txt"
    queries.write_text('# queries\nAda Lovelace\n\n{"q": "Ada Lovelace", "gl": "uk", "page": 2}\n')
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "\n".join(page_server.url(p) for p in ("/pages/a", "/redirect/b", "/missing", "/forbidden"))
    )
    args = ["snapshot", "record", "--out", str(out), "--queries", str(queries), "--urls", str(urls)]
    args += [
        "--serper-base-url",
        search_server.base_url,
        "--allow-private",
        "--javascript-hosts",
        "js.example",
    ]
    args += ["--name", "cli-test", "--capture-date", "2025-11-13", "--workers", "3", "--timeout", "5"]

    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "recording 2 queries and 4 URLs" in output
    assert "recorded search 'Ada Lovelace' (10 results)" in output
    assert f"recorded page '{page_server.url('/pages/a')}' (HTTP 200, text/html" in output
    assert f"not found page '{page_server.url('/missing')}': HTTP 404" in output
    assert f"failed page '{page_server.url('/forbidden')}'" in output and "HTTP 403" in output
    assert "done: 4 recorded, 0 already in the snapshot, 1 not found, 1 failed" in output

    snap = Snapshot(out)
    assert snap.name == "cli-test" and snap.capture_date == "2025-11-13"
    assert snap.manifest.counts == {
        "pages": 2,
        "searches": 2,
        "files": 0,
        "aliases": 1,
        "extractions": 0,
        "tool_results": 0,
    }
    assert (
        snap.search(SearchRequest(q="ada lovelace", gl="uk", page=2)).payload["searchParameters"]["page"] == 2
    )
    snap.verify()

    urls.write_text(page_server.url("/pages/a") + "\n")
    again = runner.invoke(app, [*args[:6], "--urls", str(urls), "--allow-private"])
    assert again.exit_code == 0, again.output
    assert "done: 2 recorded" not in again.output
    assert "0 recorded, 3 already in the snapshot, 0 not found, 0 failed" in " ".join(again.output.split())
    assert len(search_server.requests) == 2 and page_server.hits["/pages/a"] == 1


def test_record_needs_something_to_record(tmp_path: Path) -> None:
    result = runner.invoke(app, ["snapshot", "record", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nothing to record" in result.output
