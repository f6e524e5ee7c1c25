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
from miroenv.web.index import NoSearchIndexError, SnapshotIndexError, build_index_from_snapshot
from miroenv.web.snapshot import (
    IndexStatus,
    Snapshot,
    SnapshotError,
    SnapshotIndexWarning,
    SnapshotManifest,
    SnapshotWriter,
)

__all__ = [
    "FileEntry",
    "IndexStatus",
    "NoSearchIndexError",
    "NotInSnapshotError",
    "Page",
    "SearchRequest",
    "SearchResponse",
    "Snapshot",
    "SnapshotError",
    "SnapshotIndexError",
    "SnapshotIndexWarning",
    "SnapshotManifest",
    "SnapshotWriter",
    "ToolResultRecord",
    "Web",
    "build_index_from_snapshot",
    "normalize_query",
]
