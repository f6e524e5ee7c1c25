"""The replayed web: snapshots of pages, recorded searches and files, behind the `Web` interface."""

from miroenv.web.base import (
    FileEntry,
    NotInSnapshotError,
    Page,
    SearchRequest,
    SearchResponse,
    ToolResultRecord,
    Web,
    normalize_query,
)
from miroenv.web.snapshot import Snapshot, SnapshotError, SnapshotManifest, SnapshotWriter

__all__ = [
    "FileEntry",
    "NotInSnapshotError",
    "Page",
    "SearchRequest",
    "SearchResponse",
    "Snapshot",
    "SnapshotError",
    "SnapshotManifest",
    "SnapshotWriter",
    "ToolResultRecord",
    "Web",
    "normalize_query",
]
