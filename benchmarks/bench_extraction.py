"""Extraction quality: token precision/recall/F1 of stored page text against gold article bodies.

Data: the 181 pages of the article-extraction benchmark (../shared/data/article_extraction:
`html/<sha256>.html.gz` and `ground-truth.json` with the gold `articleBody`). Compared in one run:

- `ours (stored)`: the text a snapshot stores, read back from a snapshot made by the real command
  `miroenv snapshot import html-dir <html dir> ground-truth.json --out <tmp>` (which runs
  `miroenv.web.extract.extract_page`: trafilatura, Markdown output, tuned options); the import is timed;
- `trafilatura-defaults`: `trafilatura.extract(html, url=url)` with its defaults (txt output);
- `bs4-get_text`: BeautifulSoup `get_text` with script/style removed (the whole visible page).

Metric, per page: lower-cased word tokens (`\\w+`, Unicode) of the prediction and of the gold text, compared as
multisets; precision = shared / predicted, recall = shared / gold, F1 their harmonic mean (0 when nothing is
shared or either side is empty). Markdown link and image targets are stripped before tokenizing (other Markdown
syntax is punctuation, which the tokenizer skips), so formatting does not count against Markdown output.
Reported: the mean over pages of each figure, the standard error of the F1 mean, pages under F1 0.5, and CPU
time per page (CPU rather than wall time, so a busy machine does not skew it; for ours: the whole CLI import
process, start-up and snapshot writes included; its wall time is printed too).

Run: `python benchmarks/bench_extraction.py [--sweep] [--data DIR] [--json OUT]`
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "article_extraction"

_WORD = re.compile(r"\w+")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")


def strip_markdown(text: str) -> str:
    """Markdown with link/image targets removed, labels kept (other syntax is punctuation to the tokenizer)."""
    return _LINK.sub(r"\1", text)


def tokens(text: str) -> Counter[str]:
    """Lower-cased word tokens of `text` as a multiset."""
    return Counter(_WORD.findall(strip_markdown(text).lower()))


def score(predicted: str, gold: str) -> tuple[float, float, float]:
    """Token precision, recall and F1 of `predicted` against `gold`."""
    pred, ref = tokens(predicted), tokens(gold)
    shared = sum((pred & ref).values())
    if not shared:
        return 0.0, 0.0, 0.0
    precision = shared / sum(pred.values())
    recall = shared / sum(ref.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


def load_pages(data: Path) -> list[tuple[str, str, str]]:
    """(url, html, gold text) for every page, in key order."""
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    pages = []
    for key in sorted(truth):
        markup = gzip.decompress((data / "html" / f"{key}.html.gz").read_bytes()).decode("utf-8")
        pages.append((truth[key].get("url", ""), markup, truth[key]["articleBody"]))
    return pages


def trafilatura_defaults(markup: str, url: str) -> str:
    """trafilatura as shipped: txt output, default options."""
    import trafilatura

    return trafilatura.extract(markup, url=url) or ""


def bs4_get_text(markup: str, url: str) -> str:
    """The whole visible page (the no-extraction baseline)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "lxml")
    for node in soup(["script", "style"]):
        node.decompose()
    return soup.get_text(" ")


SWEEP: dict[str, dict[str, Any]] = {
    "markdown": {"output_format": "markdown"},
    "markdown, favor_recall": {"output_format": "markdown", "favor_recall": True},
    "markdown, favor_precision": {"output_format": "markdown", "favor_precision": True},
    "markdown, no comments": {"output_format": "markdown", "include_comments": False},
    "markdown, favor_recall, no comments": {
        "output_format": "markdown",
        "favor_recall": True,
        "include_comments": False,
    },
    "markdown, favor_precision, no comments": {
        "output_format": "markdown",
        "favor_precision": True,
        "include_comments": False,
    },
    "markdown, no comments, no tables": {
        "output_format": "markdown",
        "include_comments": False,
        "include_tables": False,
    },
}
"""trafilatura option sets compared by `--sweep` (how `TRAFILATURA_OPTIONS` was chosen)."""


def sweep(data: Path) -> dict[str, dict[str, float]]:
    """Score `trafilatura.extract` under each option set of `SWEEP`."""
    import trafilatura

    pages = load_pages(data)
    results = {}
    for name, options in SWEEP.items():
        started = time.process_time()
        scores = [
            score(trafilatura.extract(markup, url=url, **options) or "", gold) for url, markup, gold in pages
        ]
        results[f"sweep: {name}"] = summarize(scores, time.process_time() - started)
    return results


BASELINES: dict[str, Callable[[str, str], str]] = {
    "trafilatura-defaults": trafilatura_defaults,
    "bs4-get_text": bs4_get_text,
}


def import_with_cli(data: Path, out: Path) -> tuple[dict[str, str], float, float]:
    """Import the pages with `miroenv snapshot import html-dir`: (URL -> stored text, CPU s, wall s)."""
    command = [
        sys.executable, "-m", "miroenv.cli", "snapshot", "import", "html-dir",
        str(data / "html"), str(data / "ground-truth.json"), "--out", str(out), "--capture-date", "2019-11-20",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    from miroenv.web import Snapshot

    snap = Snapshot(out)
    try:
        return {page.url: page.text for page in snap.iter_pages()}, cpu, wall
    finally:
        snap.close()


def summarize(scores: list[tuple[float, float, float]], cpu: float) -> dict[str, float]:
    """Means over pages, the F1 standard error, pages under F1 0.5 and the CPU time per page."""
    f1s = [s[2] for s in scores]
    return {
        "pages": len(scores),
        "precision": statistics.fmean(s[0] for s in scores),
        "recall": statistics.fmean(s[1] for s in scores),
        "f1": statistics.fmean(f1s),
        "f1_stderr": statistics.stdev(f1s) / math.sqrt(len(f1s)),
        "f1_below_0.5": sum(f < 0.5 for f in f1s),
        "cpu_seconds": cpu,
        "cpu_ms_per_page": 1000 * cpu / len(scores),
    }


def run(data: Path) -> dict[str, dict[str, float]]:
    """Score our stored text and each baseline on every page; the summary per system."""
    pages = load_pages(data)
    with tempfile.TemporaryDirectory(prefix="bench-extraction-") as tmp:
        stored, cpu, wall = import_with_cli(data, Path(tmp) / "articles")
    ours = summarize([score(stored[url], gold) for url, _, gold in pages], cpu)
    results = {"ours (stored)": {**ours, "import_wall_seconds": wall}}
    for name, system in BASELINES.items():
        system(pages[0][1], pages[0][0])  # warm-up: imports and lazy initialisation are not timed
        started = time.process_time()
        scores = [score(system(markup, url), gold) for url, markup, gold in pages]
        results[name] = summarize(scores, time.process_time() - started)
    return results


def main() -> int:
    """Run the benchmark and print one line per system."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="article_extraction folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")
    parser.add_argument("--sweep", action="store_true", help="also compare trafilatura option sets")
    args = parser.parse_args()
    if not (args.data / "ground-truth.json").is_file():
        print(f"no ground-truth.json under {args.data}", file=sys.stderr)
        return 2
    from miroenv.web.extract import extractor_version

    print(
        f"python {platform.python_version()}, trafilatura {extractor_version('trafilatura')}, "
        f"beautifulsoup4 {extractor_version('beautifulsoup4')}, {platform.machine()}"
    )
    results = run(args.data)
    if args.sweep:
        results.update(sweep(args.data))
    print(f"{'system':46s} {'F1':>15s} {'precision':>9s} {'recall':>7s} {'F1<0.5':>6s} {'CPU ms/page':>11s}")
    for name, r in results.items():
        print(
            f"{name:46s} {r['f1']:.3f} ± {r['f1_stderr']:.3f}    {r['precision']:.3f}   {r['recall']:.3f} "
            f"{r['f1_below_0.5']:6d} {r['cpu_ms_per_page']:11.1f}"
        )
    ours = results["ours (stored)"]
    print(
        f"CLI import of {int(ours['pages'])} pages: {ours['import_wall_seconds']:.1f} s wall, "
        f"{ours['cpu_seconds']:.1f} s CPU (process start-up, extraction, snapshot writes)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
