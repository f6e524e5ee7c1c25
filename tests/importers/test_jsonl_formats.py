"""corpus-jsonl and serper-jsonl: real documents, real recorded Serper responses, accepted shapes, bad lines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from miroenv.importers import ImportFormatError, import_corpus_jsonl, import_serper_jsonl
from miroenv.web import SearchRequest, Snapshot
from tests.importers.helpers import pages_of, run_cli


def article_corpus(shared_data: Path, path: Path, limit: int = 40) -> list[dict[str, Any]]:
    """A BrowseComp-Plus-style corpus made of the article benchmark's gold texts (every 4th without a URL)."""
    truth = json.loads((shared_data / "article_extraction" / "ground-truth.json").read_text(encoding="utf-8"))
    lines = []
    for i, key in enumerate(sorted(truth)[:limit]):
        line: dict[str, Any] = {"docid": key, "text": truth[key]["articleBody"]}
        if i % 4:
            line["url"] = truth[key]["url"]
        if i % 3 == 0:
            line["title"] = f"Document {i}"
        lines.append(line)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return lines


def serper_responses(shared_data: Path) -> list[dict[str, Any]]:
    """Every raw Serper `google_search` response in the MiroRL rollouts."""
    decoder = json.JSONDecoder()
    found = []
    with (shared_data / "mirorl_rollouts" / "testData.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["response_str"]
            for match in re.finditer(r'\{\s*"searchParameters"', text):
                try:
                    value, _ = decoder.raw_decode(text, match.start())
                except json.JSONDecodeError:
                    continue
                found.append(value)
    return found


def test_corpus_jsonl_pages_with_real_and_synthetic_urls(shared_data: Path, tmp_path: Path) -> None:
    lines = article_corpus(shared_data, tmp_path / "corpus.jsonl")
    report = import_corpus_jsonl([tmp_path / "corpus.jsonl"], tmp_path / "snap")
    pages = pages_of(tmp_path / "snap")
    assert report.pages == len(pages) == len(lines)
    with_url = lines[1]
    page = Snapshot(tmp_path / "snap").page(with_url["url"])
    assert page.text == with_url["text"] and page.metadata["docid"] == with_url["docid"]
    synthetic = pages[f"https://corpus.invalid/{lines[0]['docid']}"]
    assert synthetic.title == "Document 0" and synthetic.text == lines[0]["text"]


def test_corpus_jsonl_titles_from_front_matter_or_heading(tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    rows = [
        {"docid": 1, "text": '---\ntitle: "From Front Matter"\n---\nbody one'},
        {"docid": "2", "url": "https://x.test/2", "text": "# From Heading\n\nbody two"},
        {"docid": "3", "url": "https://x.test/2", "text": "duplicate url"},
    ]
    source.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    report = import_corpus_jsonl([source], tmp_path / "snap")
    pages = pages_of(tmp_path / "snap")
    assert pages["https://corpus.invalid/1"].title == "From Front Matter"
    assert pages["https://x.test/2"].title == "From Heading" and report.skipped == {
        "duplicate url (first kept)": 1
    }


def test_corpus_jsonl_via_cli_and_bad_lines(shared_data: Path, tmp_path: Path) -> None:
    lines = article_corpus(shared_data, tmp_path / "corpus.jsonl", limit=10)
    result = run_cli(
        "snapshot", "import", "corpus-jsonl", tmp_path / "corpus.jsonl", "--out", tmp_path / "snap"
    )
    assert result.exit_code == 0, result.output
    assert Snapshot(tmp_path / "snap").manifest.counts["pages"] == len(lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"docid": "a", "text": "ok"}\n{"docid": "b", "url": "https://x.test", "text": 5}\n', encoding="utf-8"
    )
    with pytest.raises(ImportFormatError, match=r"bad\.jsonl:line 2: field 'text': expected str, got int"):
        import_corpus_jsonl([bad], tmp_path / "other")
    result = run_cli("snapshot", "import", "corpus-jsonl", bad, "--out", tmp_path / "snap")
    assert result.exit_code == 2 and "line 2" in result.output
    assert "keeps what was imported before this error" in result.output


def test_serper_jsonl_replays_real_recorded_searches(shared_data: Path, tmp_path: Path) -> None:
    responses = serper_responses(shared_data)
    assert len(responses) > 50
    source = tmp_path / "serper.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in responses), encoding="utf-8")
    result = run_cli("snapshot", "import", "serper-jsonl", source, "--out", tmp_path / "snap")
    assert result.exit_code == 0, result.output
    fields = ("gl", "hl", "location", "num")
    unique = {
        SearchRequest(
            q=r["searchParameters"]["q"],
            **{k: r["searchParameters"][k] for k in fields if k in r["searchParameters"]},
        ).key()
        for r in responses
    }
    snap = Snapshot(tmp_path / "snap")
    assert snap.manifest.counts["searches"] == len(unique)
    assert "skipped: duplicate query (first kept)" in result.output
    assert import_serper_jsonl([source], tmp_path / "again").skipped == {
        "duplicate query (first kept)": len(responses) - len(unique)
    }
    replay = snap.search(SearchRequest(q="  shai FAMILY matters season episode "))
    assert replay.source == "recorded"
    assert replay.payload["organic"][0]["link"] == "https://www.imdb.com/title/tt0577117/"


def test_serper_jsonl_accepted_shapes(tmp_path: Path) -> None:
    organic = [{"title": "T", "link": "https://a.test/", "snippet": "s"}]
    rows = [
        {"searchParameters": {"q": "full response", "gl": "de", "type": "search"}, "organic": organic},
        {"query": "wrapped object", "response": {"organic": organic, "answerBox": {"answer": "42"}}},
        {
            "q": "wrapped list",
            "params": {"num": 5, "page": 2},
            "results": organic,
            "recorded_at": "2024-02-02T00:00:00Z",
        },
        {"q": "bare organic", "organic": organic},
        {"searchParameters": {"q": "news search", "type": "news"}, "news": []},
        {"q": "error", "response": {"message": "Unauthorized.", "statusCode": 403}},
        {"q": "FULL  response", "gl": "de", "result": organic},
    ]
    source = tmp_path / "s.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    report = import_serper_jsonl([source], tmp_path / "snap")
    assert report.searches == 4
    assert report.skipped == {
        "search type 'news' (only web search is replayed)": 1,
        "error response (no results)": 1,
        "duplicate query (first kept)": 1,
    }
    snap = Snapshot(tmp_path / "snap")
    assert snap.search(SearchRequest(q="full response", gl="de")).payload["organic"] == organic
    wrapped = snap.search(SearchRequest(q="wrapped object")).payload
    assert wrapped["answerBox"] == {"answer": "42"} and wrapped["searchParameters"]["q"] == "wrapped object"
    assert snap.search(SearchRequest(q="wrapped list", page=2)).source == "recorded"
    assert snap.search(SearchRequest(q="bare organic")).payload["organic"] == organic


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('{"searchParameters": {"gl": "us"}, "organic": []}', r"line 1: field 'searchParameters\.q'"),
        ('{"query": "x"}', r"line 1: field 'response': no results"),
        (
            '{"query": "x", "response": {"organic": [{"title": "no link"}]}}',
            r"field 'response\.organic\[0\]\.link'",
        ),
        ('{"query": "x", "page": "two", "results": []}', r"line 1: field 'page'"),
        ('["not", "an", "object"]', r"line 1: expected a JSON object, got list"),
    ],
)
def test_serper_jsonl_bad_lines(tmp_path: Path, line: str, pattern: str) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ImportFormatError, match=pattern):
        import_serper_jsonl([source], tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
