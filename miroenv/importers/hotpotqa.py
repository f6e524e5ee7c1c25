"""HotpotQA: official JSON, the Hugging Face `datasets` layout, and `{title: [sentences]}` corpora."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from miroenv.importers.base import ImportReport
from miroenv.importers.multihop import import_multihop


def import_hotpotqa(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """One page per Wikipedia title (sentences joined), one task per question (layouts: see `multihop`)."""
    return import_multihop(sources, out, dataset="hotpotqa", name=name, capture_date=capture_date)
