"""`miroenv snapshot ...`: inspect and build snapshots through the same code paths the tools use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from miroenv.cli.app import console, snapshot_app
from miroenv.demo import build_demo
from miroenv.tools.standalone import run_tool_once
from miroenv.web.base import NotInSnapshotError, SearchRequest
from miroenv.web.snapshot import Snapshot, SnapshotError


@snapshot_app.command("info")
def snapshot_info(path: Annotated[Path, typer.Argument(help="Snapshot directory.")]) -> None:
    """Show a snapshot's manifest and check its content hash."""
    try:
        snap = Snapshot(path)
        snap.verify(index=False)
    except SnapshotError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print_json(snap.manifest.model_dump_json())
    console.print("[green]content hash verified[/]")
    status = snap.index_status(full=True)
    if status.ok:
        console.print(f"[green]index verified:[/] {escape(status.message)}")
        return
    colour = "red" if status.state == "damaged" else "yellow"
    console.print(f"[{colour}]index {status.state}:[/] {escape(status.message)}")
    raise typer.Exit(2 if status.state == "damaged" else 1)


@snapshot_app.command("build-demo")
def snapshot_build_demo(
    path: Annotated[Path, typer.Argument(help="Output directory.")] = Path("snapshots/demo"),
) -> None:
    """(Re)write the bundled demo snapshot, tasks and actions."""
    build_demo(path)
    console.print(f"demo snapshot written to {path}")


def _open(path: Path) -> Snapshot:
    try:
        return Snapshot(path)
    except SnapshotError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc


@snapshot_app.command("search")
def snapshot_search(
    path: Annotated[Path, typer.Argument(help="Snapshot directory.")],
    query: Annotated[str, typer.Argument(help="The query, as an agent would write it.")],
    num: Annotated[int, typer.Option(help="Results per page.")] = 10,
    page: Annotated[int, typer.Option(help="Result page (1-based).")] = 1,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the tool's JSON result as the agent sees it.")
    ] = False,
) -> None:
    """Search a snapshot exactly as the `google_search` tool does (recorded query, else the index)."""
    snap = _open(path)
    status = snap.index_status()
    if not status.ok:
        typer.echo(f"warning: index {status.state}: {status.message}", err=True)
    outcome = run_tool_once(snap, "google_search", {"q": query, "num": num, "page": page})
    if as_json or outcome.error_kind is not None:
        typer.echo(outcome.text)
        raise typer.Exit(0 if outcome.error_kind is None else 1)
    payload = json.loads(outcome.text)
    table = Table(title=f"{escape(query)} ({snap.search(SearchRequest(q=query, num=num, page=page)).source})")
    for column in ("#", "title", "link", "snippet"):
        table.add_column(column, overflow="fold")
    for item in payload["organic"]:
        table.add_row(
            str(item.get("position", "")),
            escape(item.get("title", "")),
            escape(item.get("link", "")),
            escape(item.get("snippet", "")),
        )
    console.print(table)


@snapshot_app.command("reindex")
def snapshot_reindex(path: Annotated[Path, typer.Argument(help="Snapshot directory.")]) -> None:
    """(Re)build a snapshot's full-text search index from its pages; a killed build keeps the old index."""
    from miroenv.web.index import SnapshotIndexError, build_index_from_snapshot

    snap = _open(path)
    try:
        snap.verify(index=False)
    except SnapshotError as exc:
        console.print(
            f"[red]error:[/] {escape(str(exc))}: a writer did not finish; re-run the import (or reopen the "
            "snapshot with SnapshotWriter and close it) before indexing"
        )
        raise typer.Exit(2) from exc
    finally:
        snap.close()
    try:
        index = build_index_from_snapshot(path)
    except SnapshotIndexError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print(f"indexed {len(index)} pages into {escape(str(index.path))}")
    index.close()


@snapshot_app.command("get")
def snapshot_get(
    path: Annotated[Path, typer.Argument(help="Snapshot directory.")],
    url: Annotated[str, typer.Argument(help="The URL, in any common spelling.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the page record as JSON (without the raw body).")
    ] = False,
) -> None:
    """Show a page as the page tools read it (same URL matching, same stored text)."""
    snap = _open(path)
    try:
        page = snap.page(url)
    except NotInSnapshotError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1) from exc
    if as_json:
        record = page.model_dump(exclude={"body"})
        record["body_bytes"] = len(page.body) if page.body is not None else None
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    console.print(
        f"[bold]{escape(page.title)}[/]\n{escape(page.final_url)} (status {page.status}, "
        f"extracted by {escape(page.extractor)}, captured {page.captured_at})\n"
    )
    console.print(escape(page.text))
