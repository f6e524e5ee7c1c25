"""`miroenv snapshot import` and `miroenv snapshot export`: thin wrappers over `miroenv.importers`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from miroenv.cli.app import console, snapshot_app
from miroenv.importers import IMPORTERS, ExportReport, ImportFormatError, ImportReport, export_warc
from miroenv.web.snapshot import SnapshotError


def _fail(message: str) -> typer.Exit:
    """Print `message` as an error; the exit (code 2) to raise."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(2)


def _import_table(report: ImportReport) -> Table:
    """The import report as a table: counts, skips by reason, ignored records."""
    action = "created" if report.created else "extended"
    table = Table(
        title=f"{report.format} import: {action} snapshot {escape(report.snapshot)}", show_header=False
    )
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("pages", report.pages),
        ("searches", report.searches),
        ("aliases", report.aliases),
        ("files", report.files),
        ("tasks", report.tasks),
        ("merged into an existing page", report.merged),
    ):
        table.add_row(label, str(value))
    for reason, count in sorted(report.skipped.items()):
        table.add_row(f"[yellow]skipped: {escape(reason)}[/]", str(count))
    for kind, count in sorted(report.ignored.items()):
        table.add_row(f"[dim]ignored: {escape(kind)}[/]", str(count))
    return table


def _print_import(report: ImportReport) -> None:
    """Print the table, notes, tasks file and content hash."""
    console.print(_import_table(report))
    for note in report.notes:
        console.print(f"note: {escape(note)}")
    if report.tasks_path:
        console.print(f"tasks written to {escape(report.tasks_path)}")
    console.print(f"content hash {report.content_hash}")


@snapshot_app.command("import")
def snapshot_import(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"One of: {', '.join(IMPORTERS)}.")],
    sources: Annotated[list[Path], typer.Argument(metavar="SOURCE", help="Input files or directories.")],
    out: Annotated[Path, typer.Option("--out", help="Snapshot directory to create (or extend).")],
    name: Annotated[str | None, typer.Option(help="Snapshot name (default: the directory name).")] = None,
    capture_date: Annotated[
        str | None, typer.Option(help="YYYY-MM-DD the web is pinned to (default: from the data, else today).")
    ] = None,
) -> None:
    """Import datasets or web archives into a snapshot; QA formats also write tasks.jsonl into it."""
    importer = IMPORTERS.get(fmt)
    if importer is None:
        raise _fail(f"unknown format {fmt!r}; choose one of: {', '.join(IMPORTERS)}")
    try:
        report = importer(sources, out, name=name, capture_date=capture_date)
    except (ImportFormatError, SnapshotError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from exc
    _print_import(report)


def _export_table(report: ExportReport) -> Table:
    """The export report as a table of record counts."""
    table = Table(title=f"exported {escape(report.snapshot)} to {escape(report.out)}", show_header=False)
    table.add_column("what")
    table.add_column("records", justify="right")
    table.add_row("pages (response)", str(report.pages))
    table.add_row("stored texts (conversion)", str(report.conversions))
    table.add_row("redirects (3xx response)", str(report.aliases))
    table.add_row("files (response)", str(report.files))
    if report.searches_not_exported:
        table.add_row("[yellow]searches (no WARC form, not exported)[/]", str(report.searches_not_exported))
    return table


@snapshot_app.command("export")
def snapshot_export(
    path: Annotated[Path, typer.Argument(help="Snapshot directory.")],
    warc: Annotated[
        Path, typer.Option("--warc", help="WARC file to write (.warc.gz is gzipped per record).")
    ],
) -> None:
    """Export a snapshot's pages, redirects and files as WARC, readable back by `snapshot import warc`."""
    try:
        report = export_warc(path, warc)
    except (SnapshotError, OSError) as exc:
        raise _fail(str(exc)) from exc
    console.print(_export_table(report))
