"""Deterministic passage extraction (BM25 over paragraphs)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.web.passages import best_passages, split_passages

PAGE = """# ENIAC

ENIAC was the first programmable, electronic, general-purpose digital computer.

It was designed by John Mauchly and J. Presper Eckert at the Moore School.

The machine was formally dedicated on 15 February 1946 at the University of Pennsylvania.

Its first programmers were six women."""


def test_best_passage_is_the_matching_paragraph() -> None:
    assert best_passages(PAGE, "when was it formally dedicated", max_chars=120) == [
        "The machine was formally dedicated on 15 February 1946 at the University of Pennsylvania."
    ]


def test_passages_come_back_in_page_order() -> None:
    chosen = best_passages(PAGE, "designed dedicated", max_chars=400)
    assert chosen == [split_passages(PAGE)[2], split_passages(PAGE)[3]]


def test_no_match_falls_back_to_the_opening() -> None:
    assert best_passages(PAGE, "zeppelin", max_chars=60) == ["# ENIAC"]


def test_long_paragraphs_are_split_at_sentences() -> None:
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(200))
    parts = split_passages(text, max_chars=300)
    assert len(parts) > 1 and all(len(p) <= 300 for p in parts)
    assert all(p.endswith(".") for p in parts[:-1])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000), st.text(max_size=100), st.integers(min_value=1, max_value=2000))
def test_bounded_deterministic_and_never_raises(text: str, query: str, limit: int) -> None:
    first = best_passages(text, query, max_chars=limit)
    assert first == best_passages(text, query, max_chars=limit)
    assert sum(len(p) for p in first) <= limit
