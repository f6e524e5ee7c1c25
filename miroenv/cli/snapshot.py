"""`miroenv snapshot ...`: inspect and build snapshots through the same code paths the tools use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from miroenv.cli.app import console, snapshot_app
from miroenv.demo import build_demo
from miroenv.web.snapshot import Snapshot, SnapshotError


@snapshot_app.command("info")
def snapshot_info(path: Annotated[Path, typer.Argument(help="Snapshot directory.")]) -> None:
    """Show a snapshot's manifest and check its content hash."""
    try:
        snap = Snapshot(path)
        snap.verify()
    except SnapshotError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print_json(snap.manifest.model_dump_json())
    console.print("[green]content hash verified[/]")


@snapshot_app.command("build-demo")
def snapshot_build_demo(
    path: Annotated[Path, typer.Argument(help="Output directory.")] = Path("snapshots/demo"),
) -> None:
    """(Re)write the bundled demo snapshot, tasks and actions."""
    build_demo(path)
    console.print(f"demo snapshot written to {path}")
