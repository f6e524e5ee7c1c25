"""Deterministic passage selection: the parts of a page that best answer a question (BM25 over paragraphs)."""

from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
    ]
)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without common English stopwords."""
    return [tok for tok in _TOKEN.findall(text.casefold()) if tok not in _STOPWORDS]


def split_passages(text: str, max_chars: int = 1200) -> list[str]:
    """Split text into paragraphs (blank-line separated), cutting overlong ones at sentence ends."""
    passages: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        while len(block) > max_chars:
            cut = block.rfind(". ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 3 else max_chars
            passages.append(block[:cut].strip())
            block = block[cut:].strip()
        if block:
            passages.append(block)
    return passages


def best_passages(
    text: str, query: str, *, max_chars: int = 4000, k1: float = 1.2, b: float = 0.75
) -> list[str]:
    """The highest-scoring passages for `query` (BM25; ties broken by position), returned in page order,
    together no longer than `max_chars`. Falls back to the page's opening when nothing matches."""
    passages = split_passages(text)
    if not passages:
        return []
    query_terms = set(tokenize(query))
    docs = [Counter(tokenize(p)) for p in passages]
    lengths = [sum(d.values()) for d in docs]
    avg_len = (sum(lengths) / len(lengths)) or 1.0
    n = len(docs)
    idf = {
        t: math.log(1 + (n - df + 0.5) / (df + 0.5)) for t in query_terms if (df := sum(t in d for d in docs))
    }
    scores = []
    for index, (doc, length) in enumerate(zip(docs, lengths, strict=True)):
        score = 0.0
        for term, weight in idf.items():
            tf = doc.get(term, 0)
            if tf:
                score += weight * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avg_len))
        scores.append((-score, index))
    ranked = [index for neg, index in sorted(scores) if neg < 0]
    matched = bool(ranked)
    chosen: list[int] = []
    used = 0
    for index in ranked or range(n):
        size = len(passages[index]) + 2
        if used + size > max_chars and chosen:
            if not matched:
                break
            continue
        chosen.append(index)
        used += size
        if used >= max_chars:
            break
    return [passages[i][:max_chars] for i in sorted(chosen)]
