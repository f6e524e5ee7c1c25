"""The length-prefixed frame protocol between the host and the in-sandbox agent, host side.

Wire format (both directions)::

    frame := meta_len:u32be  body_len:u32be  meta  body
    meta  := a UTF-8 JSON object (at most `MAX_META_LEN` bytes)
    body  := raw bytes (code, file contents, captured output)

The agent (`agent.py`) is shipped into a container as the source text of one `python3 -c` program, so it
must be self-contained: it embeds its own ~30-line copy of this format (`_pack`, `_Reader`) rather than
importing this module. `tests/sandbox/test_framing.py` checks that the two copies agree byte for byte.
This module adds what only the host needs: incremental decoding with bounded buffers, and the head+tail
output capture that keeps a flood of output out of host memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

HEADER = struct.Struct(">II")
"""The frame header: meta length, body length (big-endian unsigned 32-bit)."""

MAX_META_LEN = 1 << 20
"""A frame whose JSON meta is longer than this is a protocol violation."""

MAX_BODY_LEN = (1 << 32) - 1
"""The largest body the header can describe; readers apply their own, smaller caps."""

TRUNCATION_MARKER = "\n[... {dropped} bytes truncated ...]\n"
"""Put where output was cut; `{dropped}` is the number of bytes left out."""


class FrameError(Exception):
    """The byte stream does not follow the frame protocol (corrupt or desynchronised channel)."""


def encode_frame(meta: Mapping[str, Any], body: bytes = b"") -> bytes:
    """One frame carrying `meta` (JSON) and `body` (raw bytes)."""
    raw = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > MAX_META_LEN:
        raise FrameError(f"frame meta too large: {len(raw)} bytes")
    if len(body) > MAX_BODY_LEN:
        raise FrameError(f"frame body too large: {len(body)} bytes")
    return HEADER.pack(len(raw), len(body)) + raw + body


def decode_meta(raw: bytes) -> dict[str, Any]:
    """The JSON object in a frame's meta; `FrameError` when it is not one."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise FrameError("frame meta is not a JSON object")
    return meta


class HeadTail:
    """Keeps the first `head` and the last `tail` bytes of a stream fed in chunks, and counts the rest.

    Memory stays bounded by about `head + 2 * tail` bytes however much is fed; `cut()` records that bytes
    were already left out upstream, so later bytes belong to the tail.
    """

    def __init__(self, limit: int) -> None:
        self.head_limit = max(0, limit - limit // 2)
        self.tail_limit = max(0, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.total = 0
        self._in_tail = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Add the next bytes of the stream."""
        data = memoryview(chunk)
        self.total += len(data)
        if not self._in_tail:
            room = self.head_limit - len(self.head)
            self.head += data[:room]
            data = data[room:]
            if not data:
                return
            self._in_tail = True
        self.tail += data
        if len(self.tail) > 2 * self.tail_limit + 65536:
            self._trim()

    def cut(self, dropped: int) -> None:
        """Record `dropped` bytes left out at this point of the stream."""
        if dropped > 0:
            self._in_tail = True
            self._trim()
            self.dropped += dropped + len(self.tail)
            self.total += dropped
            self.tail.clear()

    def _trim(self) -> None:
        extra = len(self.tail) - self.tail_limit
        if extra > 0:
            self.dropped += extra
            del self.tail[:extra]

    def parts(self) -> tuple[bytes, bytes, int]:
        """(head, tail, dropped) as captured so far."""
        self._trim()
        return bytes(self.head), bytes(self.tail), self.dropped

    def text(self) -> str:
        """The captured bytes as text: head, a truncation marker if anything was cut, tail."""
        head, tail, dropped = self.parts()
        if not dropped:
            return decode_output(head + tail)
        return decode_output(head) + TRUNCATION_MARKER.format(dropped=dropped) + decode_output(tail)


def decode_output(data: bytes) -> str:
    """Bytes from a sandbox as text: invalid UTF-8 and NUL bytes become U+FFFD (never an exception)."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


class FrameDecoder:
    """Incremental frame parser over chunks from a byte stream, with the body streamed out in pieces.

    `feed()` takes raw bytes; `next_header()` returns a complete header+meta when one is buffered;
    `take_body(n)` hands out up to `n` buffered body bytes. The buffer never holds more than one read's
    worth of body, so a huge body can be consumed without being held whole.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        """Append bytes read from the stream."""
        self._buf += chunk

    @property
    def buffered(self) -> int:
        """How many unread bytes are buffered."""
        return len(self._buf)

    def next_header(self) -> tuple[dict[str, Any], int] | None:
        """(meta, body_len) of the next frame if its header and meta are buffered, else None."""
        if len(self._buf) < HEADER.size:
            return None
        meta_len, body_len = HEADER.unpack_from(self._buf)
        if meta_len > MAX_META_LEN:
            raise FrameError(f"frame meta length {meta_len} exceeds {MAX_META_LEN}: channel corrupt")
        end = HEADER.size + meta_len
        if len(self._buf) < end:
            return None
        meta = decode_meta(bytes(self._buf[HEADER.size : end]))
        del self._buf[:end]
        return meta, body_len

    def take_body(self, n: int) -> bytes:
        """Up to `n` buffered body bytes (fewer if not yet read)."""
        piece = bytes(self._buf[:n])
        del self._buf[: len(piece)]
        return piece
