"""The `miroenv` Typer application objects shared by every command module."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="Deterministic research-agent environments: replayed web, sandboxes, rewards.", no_args_is_help=True
)
snapshot_app = typer.Typer(help="Inspect, build, import and export snapshots.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")

console = Console(highlight=False)
