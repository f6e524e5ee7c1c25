"""JSON Lines: the one reader and the one writer of every JSONL file miroenv reads or writes.

Tasks, actions, importer sources, agent logs, trajectories and eval results all go through here, so they
share one rule for a crash-torn tail and one error type for a bad line:

- The reader works on bytes. A final line without its newline that does not decode or parse is what a
  killed writer leaves; it is dropped (with a logged note). A final line without its newline that parses is
  kept. Any other bad line raises `JsonlError` naming the file and line number.
- The writer appends one line per record in a single `write` under an exclusive `flock`, so processes
  appending to one file never interleave partial lines. Before its first append (and whenever the file no
  longer ends with a newline) it cuts a torn fragment off, so appends always start on a clean line.
- Lines are UTF-8 with `ensure_ascii=False`; a record holding lone surrogates (which UTF-8 cannot encode) is
  written with ASCII escapes instead, so `"\\ud800"` round-trips.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import BaseModel

logger = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"
_TAIL_CHUNK = 1 << 16


class JsonlError(ValueError):
    """A bad line in a JSONL file; the message (and `path`, `line`) names the file and line number."""

    def __init__(self, path: str | Path, line: int, problem: str) -> None:
        """Build `path:line: problem`."""
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")


def encode_line(record: Any) -> bytes:
    """One record (a JSON value or a pydantic model) as a UTF-8 JSON line ending in a newline."""
    value = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: only its \\uXXXX escape can be written
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def decode_line(raw: bytes) -> Any:
    """The JSON value of one line; `ValueError` (`UnicodeDecodeError`, `JSONDecodeError`) when it is not one."""
    return json.loads(raw.decode("utf-8"))


def _problem(exc: ValueError) -> str:
    """What is wrong with a line, in the words every JSONL error uses."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start} of the line)"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    return f"not valid JSON ({exc})"


def iter_jsonl(path: str | Path, *, objects: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line of a JSONL file, a torn last line dropped.

    With `objects`, a line that is not a JSON object is a `JsonlError` too."""
    path = Path(path)
    with path.open("rb") as handle:
        yield from _values(handle, path, objects=objects)


def parse_jsonl(data: bytes, source: str | Path, *, objects: bool = False) -> Iterator[tuple[int, Any]]:
    """`iter_jsonl` over a file's bytes already read (`source` names it in errors)."""
    return _values(io.BytesIO(data), Path(source), objects=objects)


def _values(lines: Iterable[bytes], path: Path, *, objects: bool) -> Iterator[tuple[int, Any]]:
    """The reading rule itself, over raw lines that keep their newline (only the last may lack it)."""
    for lineno, raw in enumerate(lines, start=1):
        if lineno == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            continue
        try:
            value = decode_line(raw)
        except ValueError as exc:
            if not raw.endswith(b"\n"):
                logger.info("%s:%d: dropped a torn last line (%s)", path, lineno, _problem(exc))
                return
            raise JsonlError(path, lineno, _problem(exc)) from exc
        if objects and not isinstance(value, dict):
            raise JsonlError(path, lineno, f"expected a JSON object, got {type(value).__name__}")
        yield lineno, value


def read_jsonl(path: str | Path, *, objects: bool = False) -> list[Any]:
    """Every value of a JSONL file (see `iter_jsonl`)."""
    return [value for _, value in iter_jsonl(path, objects=objects)]


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write `records` as a whole new JSONL file, atomically (see `replace_file`)."""
    replace_file(path, b"".join(encode_line(record) for record in records))


def replace_file(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (a temporary file renamed over it, keeping its mode), so a crash
    leaves the old file or the new one, never a mix."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if path.exists():
            shutil.copymode(path, temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _tail_start(fd: int, end: int) -> int:
    """Offset just past the last newline before `end` (0 when there is none)."""
    position = end
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        chunk = os.pread(fd, position - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _whole_line(raw: bytes) -> bool:
    """Whether an unterminated last line is a record that only lacks its newline (not a torn fragment)."""
    if not raw.strip():
        return False
    try:
        decode_line(raw.removeprefix(_BOM))
    except ValueError:
        return False
    return True


class JsonlWriter:
    """Appends records to a JSONL file, one line each in a single locked write, flushed (fsync optional)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        """Open `path` for appending (creating it and its folder); nothing is changed until the first write."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self._fsync = fsync
        self._lock = threading.Lock()

    def write(self, record: Any) -> None:
        """Append one record (a JSON value or a pydantic model) as a line, after cutting off a torn tail."""
        line = encode_line(record)
        with self._lock:
            fd = self._fd
            if fd is None:
                raise ValueError(f"{self.path}: the JSONL writer is closed")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._clean_tail(fd)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                if self._fsync:
                    os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _clean_tail(self, fd: int) -> None:
        """Make the file end on a clean line: a torn fragment is cut off, a whole unterminated line ended."""
        end = os.fstat(fd).st_size
        if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
            return
        start = _tail_start(fd, end)
        if _whole_line(os.pread(fd, end - start, start)):
            os.write(fd, b"\n")
            return
        logger.info("%s: cut off a torn last line (%d bytes) before appending", self.path, end - start)
        os.ftruncate(fd, start)

    def close(self) -> None:
        """Close the file (closing twice is harmless)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


__all__ = [
    "JsonlError",
    "JsonlWriter",
    "decode_line",
    "encode_line",
    "iter_jsonl",
    "parse_jsonl",
    "read_jsonl",
    "replace_file",
    "write_jsonl",
]
