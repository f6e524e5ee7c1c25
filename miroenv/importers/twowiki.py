"""2WikiMultihopQA: `{title, text}` paragraph corpora and HotpotQA-shaped question files with `evidences`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from miroenv.importers.base import ImportReport
from miroenv.importers.multihop import import_multihop


def import_twowiki(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """One page per Wikipedia title; question files also give tasks (supporting facts and evidences kept)."""
    return import_multihop(sources, out, dataset="2wiki", name=name, capture_date=capture_date)
