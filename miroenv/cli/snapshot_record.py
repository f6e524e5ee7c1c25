"""`miroenv snapshot record`: record searches and pages from the live web into a snapshot (via `RecordingWeb`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape

from miroenv.cli.app import console, snapshot_app
from miroenv.web.base import NotInSnapshotError, SearchRequest
from miroenv.web.record import LiveMissError, RecordingError, RecordingWeb, RecordOutcome
from miroenv.web.snapshot import SnapshotError


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line that is not a `#` comment."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


def read_queries(path: Path) -> list[SearchRequest]:
    """Queries from a file: one query per line, or a JSON object of `SearchRequest` fields (q, gl, hl, ...)."""
    requests: list[SearchRequest] = []
    for number, text in _lines(path):
        try:
            requests.append(
                SearchRequest.model_validate_json(text) if text.startswith("{") else SearchRequest(q=text)
            )
        except ValidationError as exc:
            raise typer.BadParameter(f"{path}:{number}: not a query: {exc.errors()[0]['msg']}") from exc
    return requests


def read_urls(path: Path) -> list[str]:
    """URLs from a file, one per line."""
    return [text for _, text in _lines(path)]


def _split_hosts(value: str | None) -> tuple[str, ...]:
    return tuple(h.strip() for h in (value or "").split(",") if h.strip())


def _describe(outcome: RecordOutcome[Any]) -> str:
    value = outcome.value
    if hasattr(value, "payload"):
        return f"{len(value.payload.get('organic', []))} results"
    return f"HTTP {value.status}, {value.content_type.split(';')[0]}, {len(value.text)} chars"


@snapshot_app.command("record")
def snapshot_record(
    out: Annotated[Path, typer.Option("--out", help="Snapshot directory (created, or extended).")],
    queries: Annotated[
        Path | None, typer.Option("--queries", help="File of queries: one per line, or JSON objects.")
    ] = None,
    urls: Annotated[Path | None, typer.Option("--urls", help="File of URLs, one per line.")] = None,
    serper_base_url: Annotated[
        str | None,
        typer.Option(
            "--serper-base-url", help="Serper-compatible API root (default: $MIROENV_SERPER_BASE_URL)."
        ),
    ] = None,
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help="Allow private/loopback targets (local servers only).")
    ] = False,
    javascript_hosts: Annotated[
        str | None, typer.Option("--javascript-hosts", help="Comma-separated hosts to render in Chromium.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Name of a new snapshot.")] = None,
    capture_date: Annotated[
        str | None, typer.Option("--capture-date", help="Capture date of a new snapshot (default: today).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Items recorded at once.")] = 4,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Per-request timeout, seconds.")
    ] = 20.0,
) -> None:
    """Record searches and pages from the live web into a snapshot; what it already holds is not fetched again.

    The search API key comes from $SERPER_API_KEY. Exits 1 if any item failed (network, HTTP error), else 0;
    pages that do not exist (404) are reported but do not fail the run.
    """
    requests = read_queries(queries) if queries else []
    addresses = read_urls(urls) if urls else []
    if not requests and not addresses:
        raise typer.BadParameter("nothing to record: give --queries and/or --urls")
    try:
        web = RecordingWeb(
            out,
            name=name,
            capture_date=capture_date,
            serper_base_url=serper_base_url,
            allow_private=allow_private,
            javascript_hosts=_split_hosts(javascript_hosts),
            timeout=timeout,
        )
    except (SnapshotError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print(
        f"recording {len(requests)} quer{'y' if len(requests) == 1 else 'ies'} and {len(addresses)} "
        f"URL{'s' * (len(addresses) != 1)} into {escape(str(out))}"
    )
    jobs: list[tuple[str, str, Callable[[], RecordOutcome[Any]]]] = [
        ("search", r.q, partial(web.record_search, r)) for r in requests
    ]
    jobs += [("page", u, partial(web.record_page, u)) for u in addresses]
    tally: Counter[str] = Counter()
    try:
        _run(jobs, workers, tally)
    finally:
        web.close()
    counts = web.stats
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    console.print(
        f"done: {tally['recorded']} recorded, {tally['replayed']} already in the snapshot, "
        f"{tally['missed']} not found, {tally['failed']} failed "
        f"(searches recorded {counts.get('searches_recorded', 0)}, pages recorded {counts.get('pages_recorded', 0)})"
    )
    console.print(f"snapshot {escape(manifest['name'])}: {manifest['counts']}, {manifest['content_hash']}")
    if tally["failed"]:
        raise typer.Exit(1)


def _run(
    jobs: Iterable[tuple[str, str, Callable[[], RecordOutcome[Any]]]], workers: int, tally: Counter[str]
) -> None:
    """Run the jobs on a thread pool, printing each outcome as it arrives."""
    with ThreadPoolExecutor(workers) as pool:
        futures: dict[Future[RecordOutcome[Any]], tuple[str, str]] = {
            pool.submit(job): (kind, target) for kind, target, job in jobs
        }
        for future in as_completed(futures):
            kind, target = futures[future]
            label = f"{kind} {escape(repr(target))}"
            try:
                outcome = future.result()
            except LiveMissError as exc:
                tally["missed"] += 1
                console.print(f"  [yellow]not found[/] {label}: {escape(exc.reason)}")
            except NotInSnapshotError as exc:
                tally["missed"] += 1
                console.print(f"  [yellow]not found[/] {label}: {escape(str(exc))}")
            except RecordingError as exc:
                tally["failed"] += 1
                console.print(f"  [red]failed[/]    {label}: {escape(str(exc))}")
            else:
                status = "recorded" if outcome.live else "replayed"
                tally[status] += 1
                console.print(f"  [green]{status}[/]  {label} ({escape(_describe(outcome))})")
