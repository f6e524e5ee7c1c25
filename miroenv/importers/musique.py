"""MuSiQue: question files (20 `paragraphs` each) and `{title, text}` paragraph corpora."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from miroenv.importers.base import ImportReport
from miroenv.importers.multihop import import_multihop


def import_musique(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """One page per paragraph title (same-title paragraphs merged), one task per question with its aliases."""
    return import_multihop(sources, out, dataset="musique", name=name, capture_date=capture_date)
