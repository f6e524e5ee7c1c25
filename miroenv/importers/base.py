"""What every importer shares: the report, the input-error type, the snapshot session and JSON readers."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from miroenv.jsonl import JsonlError, iter_jsonl
from miroenv.tasks import Task, TaskFileError, load_tasks, save_tasks
from miroenv.web.index import SnapshotIndexError, build_index_from_snapshot
from miroenv.web.snapshot import MANIFEST_FILE, SnapshotError, SnapshotWriter

TASKS_FILE = "tasks.jsonl"
"""Tasks of QA datasets are written here, inside the snapshot directory."""

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ImportFormatError(ValueError):
    """Input an importer cannot read; the message names the file, the line or record, and the field."""

    def __init__(
        self, path: Path | str, where: str | None, problem: str, *, field: str | None = None
    ) -> None:
        """Build the message from where (file, line or record), what, and which field."""
        self.path = str(path)
        self.where = where
        self.field = field
        location = f"{self.path}:{where}" if where else self.path
        subject = f"field {field!r}: " if field else ""
        super().__init__(f"{location}: {subject}{problem}")


class ImportReport(BaseModel):
    """What an import wrote and what it left out (with reasons)."""

    format: str
    snapshot: str
    created: bool = Field(
        description="True when the import created the snapshot, False when it extended one."
    )
    sources: list[str] = Field(default_factory=list)
    pages: int = 0
    searches: int = 0
    aliases: int = 0
    files: int = 0
    tasks: int = 0
    tasks_path: str | None = None
    merged: int = Field(default=0, description="Records folded into a page already written (same URL).")
    skipped: dict[str, int] = Field(default_factory=dict, description="Records not imported, by reason.")
    ignored: dict[str, int] = Field(
        default_factory=dict,
        description="Records that carry no content (e.g. WARC request records), by type.",
    )
    notes: list[str] = Field(default_factory=list)
    content_hash: str = ""

    def skip(self, reason: str, count: int = 1) -> None:
        """Count a record left out for `reason`."""
        self.skipped[reason] = self.skipped.get(reason, 0) + count

    def ignore(self, kind: str) -> None:
        """Count a record that holds nothing to import."""
        self.ignored[kind] = self.ignored.get(kind, 0) + 1

    @property
    def skipped_total(self) -> int:
        """Number of records left out."""
        return sum(self.skipped.values())


class Importer(Protocol):
    """The signature every importer has."""

    def __call__(
        self, sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
    ) -> ImportReport:
        """Import `sources` into the snapshot directory `out`."""
        ...


def today() -> str:
    """Today's date in UTC, YYYY-MM-DD."""
    return datetime.now(timezone.utc).date().isoformat()


def check_capture_date(capture_date: str | None) -> None:
    """Reject a capture date that is not YYYY-MM-DD (a real calendar date)."""
    if capture_date is None:
        return
    try:
        if not _DATE.match(capture_date):
            raise ValueError
        datetime.strptime(capture_date, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"capture date must be YYYY-MM-DD, got {capture_date!r}") from None


def day_start(capture_date: str) -> str:
    """The capture time given to records without their own: midnight UTC of the capture date."""
    return f"{capture_date}T00:00:00+00:00"


def check_sources(sources: Sequence[Path], *, directories: bool = False) -> list[Path]:
    """The sources as paths, each existing (and a file, unless `directories`); at least one."""
    if not sources:
        raise ImportFormatError("<sources>", None, "no input files given")
    paths = [Path(s) for s in sources]
    for path in paths:
        if not path.exists():
            raise ImportFormatError(path, None, "no such file")
        if path.is_dir() and not directories:
            raise ImportFormatError(path, None, "is a directory; give the files to import")
    return paths


@contextlib.contextmanager
def snapshot_session(
    out: Path, report: ImportReport, *, name: str | None, capture_date: str | None
) -> Iterator[SnapshotWriter]:
    """A writer for `out` (new or extended); a snapshot this import created is removed again if it fails.
    On success the full-text index is rebuilt, so the imported pages are searchable at once; the rebuild is
    atomic (a killed or failed one leaves the previous index, or none, and says how to rebuild it)."""
    check_capture_date(capture_date)
    out = Path(out)
    existed = out.exists()
    before = {entry.name for entry in out.iterdir()} if out.is_dir() else set()
    report.created = not (out / MANIFEST_FILE).is_file()
    writer = SnapshotWriter(
        out,
        name=name or (out.resolve().name if report.created else None),
        capture_date=capture_date or (today() if report.created else None),
    )
    try:
        yield writer
    except BaseException as exc:
        writer.close()
        if report.created and not existed:
            shutil.rmtree(out, ignore_errors=True)
        elif report.created:
            for entry in out.iterdir():
                if entry.name in before:
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        elif isinstance(exc, (ImportFormatError, JsonlError)):
            exc.args = (
                f"{exc.args[0]} (the existing snapshot {out} keeps what was imported before this error)",
            )
        raise
    writer.close()
    report.content_hash = writer.manifest.content_hash
    try:
        build_index_from_snapshot(out).close()
    except SnapshotIndexError as exc:
        raise SnapshotError(
            f"{exc} (every page was imported; the index was left as it was: rebuild it with "
            f"`miroenv snapshot reindex {out}`)"
        ) from exc


def write_tasks(tasks: Sequence[Task], out: Path, report: ImportReport) -> None:
    """Write `tasks` to `out/tasks.jsonl`, keeping tasks already there whose ids are not re-imported."""
    if not tasks:
        return
    path = Path(out) / TASKS_FILE
    merged: dict[str, Task] = {}
    if path.is_file() and not report.created:
        try:
            merged = {task.task_id: task for task in load_tasks(path)}
        except TaskFileError as exc:
            raise ImportFormatError(path, None, f"existing tasks file is invalid: {exc}") from exc
    merged.update((task.task_id, task) for task in tasks)
    save_tasks(merged.values(), path)
    report.tasks = len(tasks)
    report.tasks_path = str(path)


def load_json(path: Path) -> Any:
    """A whole JSON document, or `ImportFormatError` naming the line and column of the syntax error."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(path, f"{exc.lineno}:{exc.colno}", f"not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise ImportFormatError(path, f"byte {exc.start}", "not UTF-8 text") from exc


def is_jsonl(path: Path) -> bool:
    """Whether `path` is read as JSON Lines (by its suffix: .jsonl or .ndjson)."""
    return path.suffix.lower() in {".jsonl", ".ndjson"}


def iter_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, record) for each line of a JSONL file or item of a JSON list (an object is one record).

    JSONL is read with `miroenv.jsonl.iter_jsonl`: a torn last line is dropped, a bad line is a `JsonlError`."""
    if is_jsonl(path):
        for lineno, value in iter_jsonl(path):
            yield f"line {lineno}", value
        return
    yield from json_records(load_json(path))


def json_records(data: Any) -> Iterator[tuple[str, Any]]:
    """(location, record) for each item of a parsed JSON list; an object is one record."""
    if isinstance(data, list):
        for index, value in enumerate(data):
            yield f"record {index}", value
    else:
        yield "record 0", data


def require(record: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """`record[key]`, checked to be of `kind`; else `ImportFormatError` naming file, record and field."""
    if not isinstance(record, dict):
        raise ImportFormatError(path, where, f"expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise ImportFormatError(path, where, "missing", field=key)
    value = record[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ImportFormatError(path, where, f"expected {names}, got {type(value).__name__}", field=key)
    return value
