"""The `miroenv` command. Command modules register on the shared Typer apps and are imported on first use."""

from __future__ import annotations

from miroenv.cli.app import app, snapshot_app

__all__ = ["app", "snapshot_app"]
