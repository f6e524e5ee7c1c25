"""The `miroenv` command. Every module of this package registers its commands on the shared Typer apps."""

from __future__ import annotations

import importlib
import pkgutil

from miroenv.cli.app import app, snapshot_app


def _load_command_modules() -> None:
    """Import every command module here (sorted, so help output is stable)."""
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if module not in {"app", "__main__"}:
            importlib.import_module(f"{__name__}.{module}")


_load_command_modules()

__all__ = ["app", "snapshot_app"]
