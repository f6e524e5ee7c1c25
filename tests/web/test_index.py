"""Snapshot full-text index: ranking, ties, paging, snippets, hostile queries, determinism, real-data recall."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tantivy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv.web import SnapshotWriter
from miroenv.web import index as index_module
from miroenv.web.index import (
    INDEX_DIR,
    SCORE_DIGITS,
    SNIPPET_CHARS,
    SNIPPET_SCAN_CHARS,
    IndexHit,
    SnapshotIndex,
    SnapshotIndexError,
    build_index_from_snapshot,
)

FILLER = "Several unrelated remarks about weather, gardens, trains and old maps fill this part of the page. "

DOCS = [
    ("https://example.org/python", "Python (programming language)",
     "Python is a high-level programming language created by Guido van Rossum and first released in 1991."),
    ("https://example.org/monty", "Monty Python",
     "Monty Python were a British comedy troupe formed in 1969; their sketch show aired on the BBC."),
    ("https://example.org/eiffel", "Eiffel Tower",
     FILLER * 6 + "The Eiffel Tower is a wrought-iron lattice tower in Paris, designed by the company of "
     "Gustave Eiffel and completed in 1889. " + FILLER * 6),
    ("https://example.org/paris", "Paris", "Paris is the capital and most populous city of France."),
    ("https://example.org/cities", "Cities",
     "Large cities such as Tokyo, Delhi and Shanghai have grown quickly; city planning matters."),
    ("https://example.org/zeta", "Twin", "Identical twin pages about the zeta function."),
    ("https://example.org/alpha", "Twin", "Identical twin pages about the zeta function."),
    ("https://example.org/mid", "Twin", "Identical twin pages about the zeta function."),
    ("https://example.org/empty", "Only a title about Gustave", ""),
    ("https://example.org/beyonce", "Beyoncé", "Beyoncé Knowles is an American singer; Straße means street."),
]  # fmt: skip

NASTY = [
    "", " ", "\t\n", "?", "??", "!!!", "...", '"', '"unterminated', '""', "'", "AND", "OR", "NOT", "AND OR NOT",
    "title:", "title:foo", "url:https://example.org/x", "body:(", "(", ")", "((((", "]]", "[1 TO", "{a TO b}",
    "*", "?*", "foo*", "*foo", "~", "foo~2", "^", "foo^3", "foo^-1", "-", "-foo", "+", "+foo +bar", ":", "::",
    "\\", "\\\\", "/regex/", "a:b:c", "NOT NOT NOT", "paris AND", "OR paris", "\x00", "\ud800 lone surrogate",
    "\u200b\u200b", "🙂🙂", "東京都", "Привет мир", "'; DROP TABLE pages; --", "%s%s%n", "{{7*7}}",
    "a" * 100_000, "python " * 5_000, " ".join(str(i) for i in range(3_000)), "é" * 500, "x" * 41,
]  # fmt: skip

HOTPOT = Path("hotpotqa_train")


def wiki_url(title: str) -> str:
    return "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SnapshotIndex:
    return SnapshotIndex.build(tmp_path_factory.mktemp("small") / "index", DOCS)


def urls(hits: list[IndexHit]) -> list[str]:
    return [hit.url for hit in hits]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("who created the Python programming language?", "https://example.org/python"),
        ("british comedy troupe", "https://example.org/monty"),
        ("wrought-iron lattice tower", "https://example.org/eiffel"),
        ("capital of France", "https://example.org/paris"),
        ("beyonce", "https://example.org/beyonce"),
        ("STRASSE", "https://example.org/beyonce"),
        ("city", "https://example.org/cities"),
    ],
)
def test_relevant_page_ranks_first(index: SnapshotIndex, query: str, expected: str) -> None:
    hits = index.search(query)
    assert hits[0].url == expected
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_hit_fields(index: SnapshotIndex) -> None:
    hit = index.search("Monty Python comedy")[0]
    assert hit.title == "Monty Python"
    assert hit.score > 0
    with pytest.raises(ValueError):
        hit.url = "changed"  # type: ignore[misc]


def test_ties_broken_by_url(index: SnapshotIndex) -> None:
    hits = index.search("identical twin zeta")
    assert urls(hits) == ["https://example.org/alpha", "https://example.org/mid", "https://example.org/zeta"]
    assert len({hit.score for hit in hits}) == 1


@pytest.mark.parametrize("query", ["twin zeta", "python", "paris tower city", "the of and", "gustave eiffel"])
def test_paging_matches_one_big_query(index: SnapshotIndex, query: str) -> None:
    everything = index.search(query, limit=100)
    assert everything
    for size in (1, 2, 3):
        paged = [
            hit for offset in range(0, 12, size) for hit in index.search(query, limit=size, offset=offset)
        ]
        assert paged == everything
    assert index.search(query, limit=0) == []
    assert index.search(query, limit=5, offset=len(everything)) == []
    assert index.search(query, limit=2, offset=-3) == everything[:2]


def test_snippet_centres_on_matched_terms(index: SnapshotIndex) -> None:
    hit = index.search("gustave eiffel lattice 1889")[0]
    assert hit.url == "https://example.org/eiffel"
    snippet = hit.snippet
    for word in ("Gustave", "Eiffel", "lattice", "1889"):
        assert word in snippet
    assert snippet.startswith("...") and snippet.endswith("...")
    assert len(snippet) <= SNIPPET_CHARS + 6
    text = " ".join(DOCS[2][2].split())
    inner = snippet.removeprefix("...").removesuffix("...")
    assert inner in text
    start = text.index(inner)
    assert text[start - 1] == " " and text[start + len(inner)] == " ", "snippet cuts a word"


def test_short_page_snippet_is_whole_text_and_title_only_match_has_empty_snippet(
    index: SnapshotIndex,
) -> None:
    assert index.search("populous")[0].snippet == "Paris is the capital and most populous city of France."
    title_only = [hit for hit in index.search("gustave") if hit.url == "https://example.org/empty"]
    assert title_only and title_only[0].snippet == ""


def test_snippet_without_match_is_page_start(tmp_path: Path) -> None:
    text = "Opening words of the page. " + FILLER * 10
    idx = SnapshotIndex.build(tmp_path / "i", [("https://x.org/", "Unusualtitleword", text)])
    snippet = idx.search("unusualtitleword")[0].snippet
    assert snippet.startswith("Opening words of the page.") and snippet.endswith("...")
    assert len(snippet) <= SNIPPET_CHARS + 3


def test_long_page_snippets_come_from_its_stored_start(tmp_path: Path) -> None:
    text = FILLER * 30 + "The midway marker sits here. " + FILLER * 200 + "A farawayword ends it. " + FILLER
    assert 2_000 < text.index("midway") < SNIPPET_SCAN_CHARS - 500 < text.index("farawayword")
    idx = SnapshotIndex.build(tmp_path / "i", [("https://long.org/", "Long", text)])
    middle = idx.search("midway marker")[0].snippet
    assert "midway marker" in middle and middle.startswith("...") and middle.endswith("...")
    far = idx.search("farawayword")
    assert [hit.url for hit in far] == ["https://long.org/"], "the whole text is indexed"
    assert far[0].snippet.startswith("Several unrelated") and far[0].snippet.endswith("...")


def test_non_ascii_text_snippets(tmp_path: Path) -> None:
    text = FILLER * 4 + "İstanbul and Zürich are cities; the Straße was busy. " + FILLER * 4
    idx = SnapshotIndex.build(tmp_path / "i", [("https://u.org/", "Unicode", text)])
    for query in ("zurich strasse", "Zürich", "zurich", "straße", "İSTANBUL"):
        snippet = idx.search(query)[0].snippet
        assert "Zürich" in snippet and "Straße" in snippet and "İstanbul" in snippet, query
        assert snippet.startswith("...") and snippet.endswith("...")


def test_ties_follow_python_string_order_of_urls(tmp_path: Path) -> None:
    urls_ = ["https://e.org/Ω", "https://e.org/é", "https://e.org/z", "https://e.org/Z", "https://e.org/",
             "https://e.org/a?b=1", "https://e.org/a", "https://e.org/%C3%A9", "https://E.org/a", "http://e.org/a"]  # fmt: skip
    idx = SnapshotIndex.build(tmp_path / "i", [(u, "Same", "identical words") for u in urls_])
    assert urls(idx.search("identical words", limit=20)) == sorted(urls_)


def test_scores_are_rounded(index: SnapshotIndex) -> None:
    scores = [hit.score for q in ("python", "paris tower city", "twin") for hit in index.search(q)]
    assert scores and all(score == float(f"{score:.{SCORE_DIGITS}g}") for score in scores)


@pytest.mark.parametrize("query", NASTY)
def test_nasty_queries_never_raise(index: SnapshotIndex, query: str) -> None:
    hits = index.search(query)
    assert isinstance(hits, list) and all(isinstance(hit, IndexHit) for hit in hits)


@pytest.mark.parametrize("query", ["", "   ", "?!.,;:", '"" () [] {}', "\u200b"])
def test_termless_queries_return_nothing(index: SnapshotIndex, query: str) -> None:
    assert index.search(query) == []


def test_syntax_is_not_interpreted(index: SnapshotIndex) -> None:
    assert urls(index.search("title:Paris"))[0] == "https://example.org/paris"
    assert "https://example.org/python" in urls(index.search("NOT python"))
    assert urls(index.search('"comedy troupe" AND (british')) == urls(index.search("comedy troupe british"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=300), limit=st.integers(-2, 30), offset=st.integers(-2, 30))
def test_arbitrary_text_never_raises(index: SnapshotIndex, query: str, limit: int, offset: int) -> None:
    hits = index.search(query, limit=limit, offset=offset)
    assert len(hits) <= max(limit, 0)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(["python", "tower", "paris", "twin", "the", "AND", "(", '"', "*"])))
def test_query_of_known_words_is_stable(index: SnapshotIndex, words: list[str]) -> None:
    query = " ".join(words)
    assert index.search(query) == index.search(query)


def test_one_segment_and_atomic_replace(tmp_path: Path) -> None:
    target = tmp_path / "index"
    SnapshotIndex.build(target, DOCS)
    old = SnapshotIndex.open(target)
    assert tantivy.Index.open(str(target)).searcher().num_segments == 1
    new = SnapshotIndex.build(target, [("https://new.org/", "New", "brand new content")])
    assert len(new) == 1 and urls(new.search("brand new")) == ["https://new.org/"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"], "temporary folders left behind"
    assert urls(old.search("capital of France"))[0] == "https://example.org/paris", "open reader broken"


def test_failed_build_keeps_old_index(tmp_path: Path) -> None:
    target = tmp_path / "index"
    SnapshotIndex.build(target, DOCS)
    with pytest.raises(ValueError, match="duplicate URL"):
        SnapshotIndex.build(target, [DOCS[0], DOCS[1], DOCS[0]])
    assert len(SnapshotIndex.open(target)) == len(DOCS)
    assert [p.name for p in tmp_path.iterdir()] == ["index"]


def test_build_that_needs_two_segments_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "HEAP_BYTES", 15_000_000)  # tantivy's minimum
    rng = random.Random(0)
    words = " ".join(f"w{rng.randrange(60_000)}" for _ in range(100_000))
    pages = [(f"https://x.org/{i}", "t", words[i * 1000 : i * 1000 + 2000]) for i in range(300)]
    with pytest.raises(SnapshotIndexError, match="did not fit in one segment"):
        SnapshotIndex.build(tmp_path / "index", pages)
    assert list(tmp_path.iterdir()) == []


def test_empty_corpus(tmp_path: Path) -> None:
    idx = SnapshotIndex.build(tmp_path / "index", [])
    assert len(idx) == 0 and idx.search("anything") == []


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(SnapshotIndexError, match="no search index"):
        SnapshotIndex.open(tmp_path / "missing")
    SnapshotIndex.build(tmp_path / "index", DOCS)
    (tmp_path / "index" / "miroenv-index.json").write_text('{"format": "other"}')
    with pytest.raises(SnapshotIndexError, match="not a miroenv-index"):
        SnapshotIndex.open(tmp_path / "index")


def test_damaged_page_store_is_refused(tmp_path: Path) -> None:
    SnapshotIndex.build(tmp_path / "index", DOCS)
    chars = tmp_path / "index" / "pages.chars"
    intact = chars.read_bytes()
    for damaged in (intact[:-8], intact[:-3]):
        chars.write_bytes(damaged)
        with pytest.raises(SnapshotIndexError, match="page store"):
            SnapshotIndex.open(tmp_path / "index")


def test_concurrent_searches_agree(index: SnapshotIndex) -> None:
    queries = ["python", "paris tower", "twin zeta", "comedy", "city"] * 40
    expected = [index.search(q) for q in queries]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(index.search, queries)) == expected


def test_build_index_from_snapshot(tmp_path: Path) -> None:
    snapshot = tmp_path / "snap"
    with SnapshotWriter(snapshot, name="s", capture_date="2024-05-01") as writer:
        for url, title, text in DOCS:
            writer.add_page(url, title=title, text=text)
        writer.add_page(
            "https://example.org/gone", title="Not Found", text="python page not found", status=404
        )
    idx = build_index_from_snapshot(snapshot)
    assert idx.path == snapshot / INDEX_DIR
    assert len(SnapshotIndex.open(snapshot / INDEX_DIR)) == len(DOCS)
    assert urls(idx.search("python programming language"))[0] == "https://example.org/python"
    assert "https://example.org/gone" not in urls(idx.search("python page not found", limit=20))
    with pytest.raises(SnapshotIndexError):
        build_index_from_snapshot(tmp_path / "nowhere")


def real_pages(shared_data: Path) -> list[tuple[str, str, str]]:
    """The HotpotQA corpus plus the 2WikiMultihopQA paragraphs as Wikipedia-style pages (first title wins)."""
    pages: dict[str, tuple[str, str, str]] = {}
    corpus = json.loads((shared_data / HOTPOT / "hotpotqa_train_corpus.json").read_text(encoding="utf-8"))
    for title, sentences in corpus.items():
        pages.setdefault(wiki_url(title), (wiki_url(title), title, "".join(sentences)))
    for para in json.loads((shared_data / "2wiki_corpus" / "2wikimultihopqa_corpus.json").read_text("utf-8")):
        pages.setdefault(wiki_url(para["title"]), (wiki_url(para["title"]), para["title"], para["text"]))
    return list(pages.values())


def real_queries(shared_data: Path, pages: list[tuple[str, str, str]]) -> list[str]:
    questions = json.loads((shared_data / HOTPOT / "hotpotqa_train.json").read_text(encoding="utf-8"))
    titles = [title for _, title, _ in random.Random(3).sample(pages, 200)]
    return [q["question"] for q in questions] + titles + ["film", "american football player", "born 1950"]


def results(idx: SnapshotIndex, queries: list[str]) -> list[list[tuple[str, float]]]:
    return [[(hit.url, hit.score) for hit in idx.search(q)] for q in queries]


def test_two_builds_and_processes_rank_identically(shared_data: Path, tmp_path: Path) -> None:
    pages = real_pages(shared_data)
    queries = real_queries(shared_data, pages)
    shuffled = pages[:]
    random.Random(7).shuffle(shuffled)
    first = SnapshotIndex.build(tmp_path / "a", pages)
    second = SnapshotIndex.build(tmp_path / "b", reversed(shuffled))
    expected = results(first, queries)
    assert sum(len(r) == 10 for r in expected) > len(queries) * 0.9
    assert any(r[i][1] == r[i + 1][1] for r in expected for i in range(len(r) - 1)), "no ties exercised"
    assert results(second, queries) == expected
    assert [h.snippet for q in queries[:50] for h in first.search(q)] == [
        h.snippet for q in queries[:50] for h in second.search(q)
    ]
    script = (
        "import json, sys\n"
        "from miroenv.web.index import SnapshotIndex\n"
        "idx = SnapshotIndex.open(sys.argv[1])\n"
        "queries = json.load(sys.stdin)\n"
        "print(json.dumps([[[h.url, h.score] for h in idx.search(q)] for q in queries]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "b")],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert [[(u, s) for u, s in r] for r in json.loads(out.stdout)] == expected


def test_hotpotqa_recall_at_5(shared_data: Path, tmp_path: Path) -> None:
    corpus = json.loads((shared_data / HOTPOT / "hotpotqa_train_corpus.json").read_text(encoding="utf-8"))
    questions = json.loads((shared_data / HOTPOT / "hotpotqa_train.json").read_text(encoding="utf-8"))
    assert len(corpus) == 994 and len(questions) == 100
    idx = SnapshotIndex.build(
        tmp_path / "index", ((wiki_url(t), t, "".join(sentences)) for t, sentences in corpus.items())
    )
    recall = 0.0
    for q in questions:
        supporting = {wiki_url(title) for title, _ in q["supporting_facts"]}
        recall += len(supporting & set(urls(idx.search(q["question"], limit=5)))) / len(supporting)
    recall /= len(questions)
    assert recall >= 0.75, f"recall@5 {recall:.3f} (measured 0.805 when written)"
