"""Fixtures shared by the importer tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from miroenv.importers import ImportReport, import_warc
from tests.importers.helpers import real_warcs


@pytest.fixture(scope="session")
def real_warc_import(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ImportReport]:
    """Every real WARC file of the shared data imported once with `import_warc`: (snapshot dir, report)."""
    out = tmp_path_factory.mktemp("warc") / "real"
    return out, import_warc(real_warcs(shared_data / "warc"), out, capture_date="2024-01-01")
