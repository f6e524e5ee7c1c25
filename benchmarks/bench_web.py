"""Replayed-web benchmark (DESIGN.md §9): index build rate, search latency, index size, determinism, retrieval
quality against plain BM25 references, and snapshot page reads and recorded-search lookups.

Corpora are made from real data in ../shared/data: the 994 HotpotQA pages (Wikipedia-style URLs) plus synthetic
pages recombining real sentences from the HotpotQA, 2WikiMultihopQA and MuSiQue paragraphs (fixed seed), up
to 10^4 and 10^5 pages. Queries are 1,000 real questions, MuSiQue sub-questions and page titles. Builds run
pinned to one core (with every thread they start), so build rates are single-core figures; searches are
single-threaded and run unpinned.

Run: `python benchmarks/bench_web.py [--sizes 10000 100000] [--data ../shared/data]`
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import bm25s
import tantivy
from rank_bm25 import BM25Okapi

from miroenv.web import SearchRequest, Snapshot, SnapshotWriter
from miroenv.web.index import SnapshotIndex

Page = tuple[str, str, str]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORDS = re.compile(r"\w+")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def wiki_url(title: str) -> str:
    """The Wikipedia-style URL a paragraph corpus page gets."""
    return "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")


def load_json(path: Path) -> Any:
    """A JSON file's content."""
    return json.loads(path.read_text(encoding="utf-8"))


class Data:
    """The real data the corpora, queries and gold answers come from."""

    def __init__(self, root: Path) -> None:
        self.hotpot_corpus: dict[str, list[str]] = load_json(
            root / "hotpotqa_train" / "hotpotqa_train_corpus.json"
        )
        self.hotpot_questions: list[dict[str, Any]] = load_json(
            root / "hotpotqa_train" / "hotpotqa_train.json"
        )
        self.musique_questions: list[dict[str, Any]] = load_json(
            root / "musique_train" / "musique_train.json"
        )
        paragraphs = [(title, "".join(sentences)) for title, sentences in self.hotpot_corpus.items()]
        for name in ("2wiki_corpus/2wikimultihopqa_corpus.json", "musique_train/musique_train_corpus.json"):
            paragraphs += [(p["title"], p["text"]) for p in load_json(root / name)]
        self.titles = [title for title, _ in paragraphs]
        self.sentences = [
            s.strip() for _, text in paragraphs for s in SENTENCE_END.split(text) if len(s.strip()) > 20
        ]
        self.hotpot_pages: list[Page] = [
            (wiki_url(title), title, "".join(sentences)) for title, sentences in self.hotpot_corpus.items()
        ]

    def corpus(self, size: int, seed: int = 0) -> list[Page]:
        """The HotpotQA pages plus synthetic pages of 4-14 real sentences under a real title, `size` in all."""
        rng = random.Random(seed)
        pages = list(self.hotpot_pages)
        for i in range(size - len(pages)):
            title = f"{rng.choice(self.titles)} ({i})"
            text = " ".join(rng.choice(self.sentences) for _ in range(rng.randint(4, 14)))
            pages.append((f"https://synthetic.example/page/{i:06d}/{title.replace(' ', '_')}", title, text))
        return pages

    def queries(self, count: int = 1000, seed: int = 1) -> tuple[list[str], list[str]]:
        """`count` benchmark queries (questions, sub-questions, then titles) and 200 other titles to warm up."""
        questions = [q["question"] for q in self.hotpot_questions + self.musique_questions]
        questions += [
            step["question"] for q in self.musique_questions for step in q["question_decomposition"]
        ]
        titles = random.Random(seed).sample(sorted(set(self.titles)), count + 200)
        measured = (questions + titles)[:count]
        return measured, titles[-200:]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Latency:
    """Per-call wall and CPU (this thread's) seconds: CPU time is what the call costs on an idle core, wall
    time also holds waits for a CPU on a busy machine."""

    def __init__(
        self, function: Callable[[Any], object], calls: Sequence[Any], warmup: Sequence[Any]
    ) -> None:
        for argument in warmup:
            function(argument)
        gc.collect()
        self.wall: list[float] = []
        self.cpu: list[float] = []
        for argument in calls:
            wall, cpu = time.perf_counter(), time.thread_time()
            function(argument)
            self.cpu.append(time.thread_time() - cpu)
            self.wall.append(time.perf_counter() - wall)

    def figures(self, prefix: str, scale: float = 1e3) -> dict[str, float]:
        """p50 and p99 of wall and CPU time, in ms (or µs with `scale=1e6`), keyed `<prefix>_<stat>`."""
        return {
            f"{prefix}_p50": percentile(self.wall, 0.5) * scale,
            f"{prefix}_p99": percentile(self.wall, 0.99) * scale,
            f"{prefix}_cpu_p50": percentile(self.cpu, 0.5) * scale,
            f"{prefix}_cpu_p99": percentile(self.cpu, 0.99) * scale,
        }


class Cost:
    """Wall and CPU (all threads of the process) seconds of a block."""

    def __enter__(self) -> Cost:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Run the block on one CPU: threads started inside it (tantivy's writer thread) inherit the mask."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def dir_size(path: Path) -> int:
    """Bytes of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def recall_at_5(data: Data, ranker: Callable[[str], list[str]]) -> float:
    """Mean fraction of each HotpotQA question's supporting pages among `ranker`'s top 5 URLs."""
    total = 0.0
    for q in data.hotpot_questions:
        supporting = {wiki_url(title) for title, _ in q["supporting_facts"]}
        total += len(supporting & set(ranker(q["question"])[:5])) / len(supporting)
    return total / len(data.hotpot_questions)


def ours_ranker(index: SnapshotIndex) -> Callable[[str], list[str]]:
    """Top-5 URLs from our index."""
    return lambda q: [hit.url for hit in index.search(q, limit=5)]


class Bm25sReference:
    """bm25s with its default tokenizer and English stopwords, over title + text."""

    def __init__(self, pages: list[Page]) -> None:
        self.urls = [url for url, _, _ in pages]
        self.retriever = bm25s.BM25()
        corpus = bm25s.tokenize([f"{t}\n{x}" for _, t, x in pages], stopwords="en", show_progress=False)
        self.retriever.index(corpus, show_progress=False)

    def top(self, query: str, k: int = 10) -> list[str]:
        """Top-`k` URLs for `query` (empty when no query token is in the vocabulary)."""
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        tokens = [[t for t in tokens[0] if t in self.retriever.vocab_dict]]
        if not tokens[0]:
            return []
        ids, _ = self.retriever.retrieve(tokens, k=min(k, len(self.urls)), show_progress=False, n_threads=1)
        return [self.urls[i] for i in ids[0]]


class RankBm25Reference:
    """rank_bm25's BM25Okapi over lower-cased \\w+ tokens of title + text; ties by URL."""

    def __init__(self, pages: list[Page]) -> None:
        self.urls = [url for url, _, _ in pages]
        self.bm25 = BM25Okapi([WORDS.findall(f"{t}\n{x}".lower()) for _, t, x in pages])

    def top(self, query: str, k: int = 10) -> list[str]:
        """Top-`k` URLs for `query`."""
        scores = self.bm25.get_scores(WORDS.findall(query.lower()))
        order = sorted(range(len(self.urls)), key=lambda i: (-scores[i], self.urls[i]))
        return [self.urls[i] for i in order[:k]]


def measure_size(
    data: Data, size: int, workdir: Path, queries: list[str], warmup: list[str]
) -> dict[str, Any]:
    """Every index figure at one corpus size."""
    pages = data.corpus(size)
    row: dict[str, Any] = {"pages": size, "text_mb": sum(len(t) + len(x) for _, t, x in pages) / 1e6}
    with one_core(), Cost() as build:
        index = SnapshotIndex.build(workdir / f"ours-{size}-a", pages)
    row |= {"build_rate": size / build.wall, "build_cpu_rate": size / build.cpu}
    row["size_mb"] = dir_size(index.path) / 1e6
    row["segments"] = tantivy.Index.open(str(index.path)).searcher().num_segments
    with Cost() as opening:
        index = SnapshotIndex.open(index.path)
    row["open_ms"] = opening.wall * 1e3
    row |= Latency(index.search, queries, warmup).figures("search")
    ranking = Latency(lambda q: index._ranked(index._query(index.query_terms(q)), 10), queries, warmup)
    row |= ranking.figures("rank")
    shuffled = pages[:]
    random.Random(size).shuffle(shuffled)
    with one_core(), Cost() as rebuild:
        second = SnapshotIndex.build(workdir / f"ours-{size}-b", shuffled)
    row |= {"build_rate_b": size / rebuild.wall, "build_cpu_rate_b": size / rebuild.cpu}
    row["identical_top10"] = sum(index.search(q) == second.search(q) for q in queries)
    row["recall_ours"] = recall_at_5(data, ours_ranker(index))
    with one_core(), Cost() as reference:
        bm25s_ref = Bm25sReference(pages)
    row |= {"bm25s_build_rate": size / reference.wall, "bm25s_build_cpu_rate": size / reference.cpu}
    row |= Latency(bm25s_ref.top, queries, warmup[:50]).figures("bm25s")
    row["recall_bm25s"] = recall_at_5(data, bm25s_ref.top)
    del bm25s_ref
    if size <= 10_000:
        with one_core(), Cost() as reference:
            rank_ref = RankBm25Reference(pages)
        row["rank_bm25_build_cpu_rate"] = size / reference.cpu
        row |= Latency(rank_ref.top, queries[:100], []).figures("rank_bm25")
        row["recall_rank_bm25"] = recall_at_5(data, rank_ref.top)
    return row


def measure_hotpot(data: Data, workdir: Path) -> dict[str, float]:
    """Recall@5 of supporting pages on the 994-page HotpotQA corpus alone, ours and both references."""
    index = SnapshotIndex.build(workdir / "ours-hotpot", data.hotpot_pages)
    return {
        "ours": recall_at_5(data, ours_ranker(index)),
        "bm25s": recall_at_5(data, Bm25sReference(data.hotpot_pages).top),
        "rank_bm25": recall_at_5(data, RankBm25Reference(data.hotpot_pages).top),
    }


def measure_snapshot(data: Data, size: int, workdir: Path, queries: list[str]) -> dict[str, float]:
    """Page reads and recorded-search lookups on a `size`-page snapshot written with `SnapshotWriter`."""
    pages = data.corpus(size)
    path = workdir / "snapshot"
    with Cost() as writing, SnapshotWriter(path, name="bench", capture_date="2024-01-01") as writer:
        for url, title, text in pages:
            writer.add_page(url, title=title, text=text)
        organic = [{"title": t, "link": u, "snippet": x[:200]} for u, t, x in pages[:10]]
        for query in queries:
            writer.add_search(query, organic=organic)
    snapshot = Snapshot(path)
    urls = [url for url, _, _ in random.Random(2).sample(pages, 2000)]
    requests = [SearchRequest(q=q) for q in queries]
    assert all(snapshot.search(request).source == "recorded" for request in requests)
    figures = {"write_rate": size / writing.wall}
    figures |= Latency(snapshot.page, urls[1000:], urls[:1000]).figures("page")
    figures |= Latency(snapshot.search, requests, requests[:100]).figures("recorded", scale=1e6)
    snapshot.close()
    return figures


def speed(ratio: float) -> str:
    """'ours Nx faster' or 'ours Nx slower' for a (theirs / ours) time ratio."""
    return f"ours {ratio:.1f}x faster" if ratio >= 1 else f"ours {1 / ratio:.1f}x slower"


def report(rows: list[dict[str, Any]], hotpot: dict[str, float], snap: dict[str, float], meta: str) -> str:
    """The Markdown tables of every figure, with targets and ratios."""
    big = rows[-1]
    lines = [
        meta,
        "",
        "| metric | " + " | ".join(f"{r['pages']:,} pages" for r in rows) + " | target | ratio |",
    ]
    lines.append("|---|" + "---|" * len(rows) + "---|---|")

    def add(name: str, key: str, fmt: str, target: str = "", ratio: str = "") -> None:
        cells = [format(r[key], fmt) if key in r else "n/a" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} | {ratio} |")

    def under(target: float, key: str) -> str:
        return (
            f"{target / big[key]:.2f}x under target"
            if big[key] <= target
            else f"{big[key] / target:.2f}x over"
        )

    add("text indexed, MB", "text_mb", ".1f")
    add("build, pages/s wall (pinned to one core)", "build_rate", ",.0f", "≥ 4,000",
        f"{big['build_rate'] / 4000:.2f}x target")  # fmt: skip
    add("build, pages per CPU-second", "build_cpu_rate", ",.0f", "≥ 4,000",
        f"{big['build_cpu_rate'] / 4000:.2f}x target")  # fmt: skip
    add("2nd build (shuffled input), pages/s wall", "build_rate_b", ",.0f")
    add("2nd build, pages per CPU-second", "build_cpu_rate_b", ",.0f")
    add("segments", "segments", "d", "1")
    add(
        "index size on disk, MB",
        "size_mb",
        ".1f",
        "",
        f"{big['size_mb'] * 1e5 / big['pages']:.0f} MB per 10^5 pages",
    )
    add("open, ms", "open_ms", ".2f", "milliseconds")
    add("search p50, ms wall (ranking + page store + snippets)", "search_p50", ".3f", "≤ 0.5",
        under(0.5, "search_p50"))  # fmt: skip
    add("search p99, ms wall", "search_p99", ".3f", "≤ 2", under(2, "search_p99"))
    add("search p50, ms CPU", "search_cpu_p50", ".3f", "≤ 0.5", under(0.5, "search_cpu_p50"))
    add("search p99, ms CPU", "search_cpu_p99", ".3f", "≤ 2", under(2, "search_cpu_p99"))
    add("  of which ranking (query + tantivy), p50 ms wall", "rank_p50", ".3f")
    add("  ranking p50, ms CPU", "rank_cpu_p50", ".3f")
    add("  ranking p99, ms CPU", "rank_cpu_p99", ".3f")
    add(
        "identical top-10 (urls, scores, snippets) across two builds, of 1,000", "identical_top10", "d", "all"
    )
    add("HotpotQA recall@5, ours", "recall_ours", ".3f", "",
        f"{big['recall_ours'] / big['recall_bm25s']:.2f}x bm25s")  # fmt: skip
    add("HotpotQA recall@5, bm25s", "recall_bm25s", ".3f")
    add("HotpotQA recall@5, rank_bm25", "recall_rank_bm25", ".3f")
    add("bm25s build, pages per CPU-second", "bm25s_build_cpu_rate", ",.0f", "",
        speed(big["build_cpu_rate"] / big["bm25s_build_cpu_rate"]).replace("faster", "higher rate"))  # fmt: skip
    add("bm25s search p50, ms CPU (ids only: vs our ranking)", "bm25s_cpu_p50", ".3f", "",
        speed(big["bm25s_cpu_p50"] / big["rank_cpu_p50"]))  # fmt: skip
    add("bm25s search p99, ms CPU (vs our ranking)", "bm25s_cpu_p99", ".3f", "",
        speed(big["bm25s_cpu_p99"] / big["rank_cpu_p99"]))  # fmt: skip
    add("rank_bm25 build, pages per CPU-second", "rank_bm25_build_cpu_rate", ",.0f")
    add("rank_bm25 search p50, ms CPU (100 queries)", "rank_bm25_cpu_p50", ".1f")
    lines += [
        "",
        "| HotpotQA alone (994 pages), recall@5 of supporting pages | ours | bm25s | rank_bm25 |",
        "|---|---|---|---|",
        f"| 100 questions | {hotpot['ours']:.3f} | {hotpot['bm25s']:.3f} | {hotpot['rank_bm25']:.3f} |",
        "",
        f"| snapshot of {big['pages']:,} pages (`SnapshotWriter` / `Snapshot`) | wall | CPU | target | ratio (wall) |",
        "|---|---|---|---|---|",
        f"| write, pages/s (one `add_page` transaction each) | {snap['write_rate']:,.0f} | | | |",
        f"| `Snapshot.page` p50, ms | {snap['page_p50']:.3f} | {snap['page_cpu_p50']:.3f} | ≤ 0.5 | "
        f"{0.5 / snap['page_p50']:.1f}x under target |",
        f"| `Snapshot.page` p99, ms | {snap['page_p99']:.3f} | {snap['page_cpu_p99']:.3f} | | |",
        f"| recorded `Snapshot.search` p50, µs | {snap['recorded_p50']:.1f} | {snap['recorded_cpu_p50']:.1f} | ≤ 50 | "
        f"{50 / snap['recorded_p50']:.1f}x under target |",
        f"| recorded `Snapshot.search` p99, µs | {snap['recorded_p99']:.1f} | {snap['recorded_cpu_p99']:.1f} | | |",
    ]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU's model name (Linux), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data = Data(args.data)
    queries, warmup = data.queries()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        workdir = Path(tmp)
        hotpot = measure_hotpot(data, workdir)
        for size in args.sizes:
            rows.append(measure_size(data, size, workdir, queries, warmup))
            print(f"measured {size:,} pages ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
        snap = measure_snapshot(data, max(args.sizes), workdir, queries)
    meta = (
        f"{time.strftime('%Y-%m-%d')}, {cpu_model()}, {os.cpu_count()} cores "
        f"(builds pinned to one), Python {platform.python_version()}, {getattr(tantivy, '__version__', 'tantivy ?')}, bm25s {bm25s.__version__}; "
        f"{len(queries)} queries; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.2f} after; "
        f"total {time.perf_counter() - began:.0f} s"
    )
    print(report(rows, hotpot, snap, meta))
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "hotpot": hotpot, "snapshot": snap, "meta": meta}, indent=2)
        )


if __name__ == "__main__":
    main()
