"""Host side of the agent protocol: one `AgentClient` per sandbox, talking over a pair of byte streams.

A tool call costs one frame each way on an already open channel (pipes for the process backend, the
container's attach socket for Docker): no process is started and no Docker API call is made. The client
bounds everything it depends on: every call has a host-side hard deadline (the agent's own timeout plus
grace), replies are read in pieces into head+tail buffers capped at `max_output` bytes per stream, and an
agent that dies, hangs or breaks the protocol turns the sandbox into a dead one whose every later call
raises `SandboxError` (an `infra` error) at once.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import select
import signal
import socket
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from miroenv.sandbox.base import ExecResult, Sandbox, SandboxError
from miroenv.sandbox.framing import FrameDecoder, FrameError, HeadTail, encode_frame

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
"""The agent protocol version this client speaks (the agent says its own in its hello frame)."""

DEFAULT_MAX_OUTPUT = 65536
"""Bytes kept per output stream and call (half from the start, half from the end)."""

DEFAULT_FILE_TIMEOUT = 60.0
"""Seconds a file transfer may take."""

_READ_SIZE = 1 << 18
_DIAG_KEEP = 4096


class AgentGoneError(SandboxError):
    """The agent died, hung past the hard deadline, or broke the protocol; the sandbox is unusable."""


class Transport(ABC):
    """A bidirectional byte channel to one agent."""

    @abstractmethod
    def send(self, data: bytes, deadline: float) -> None:
        """Write all of `data` before `deadline` (monotonic seconds), else raise `TimeoutError`."""

    @abstractmethod
    def recv(self, deadline: float) -> bytes:
        """The next bytes of the agent's output stream; b"" at its end; `TimeoutError` at the deadline."""

    @abstractmethod
    def idle_check(self) -> bool:
        """Without blocking: True while the channel is open and silent (as an idle agent's must be)."""

    def diagnostics(self) -> str:
        """The last lines the agent wrote to its stderr (for error messages)."""
        return ""

    @abstractmethod
    def close(self) -> None:
        """Release the channel."""


def _wait_fd(fd: int, events: int, deadline: float) -> None:
    """Block until `fd` is ready for `events` or raise `TimeoutError` at `deadline`."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("sandbox channel deadline passed")
        if poller.poll(max(1, int(left * 1000) + 1)):
            return


def _set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class PipeTransport(Transport):
    """The agent's stdin/stdout (and optionally stderr) as pipes of a local child process."""

    def __init__(self, write_fd: int, read_fd: int, err_fd: int | None = None) -> None:
        self.write_fd = write_fd
        self.read_fd = read_fd
        self.err_fd = err_fd
        for fd in (write_fd, read_fd, err_fd):
            if fd is not None:
                _set_nonblocking(fd)
        self._diag = bytearray()
        self._closed = False

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.write_fd, view) :]
            except BlockingIOError:
                _wait_fd(self.write_fd, select.POLLOUT, deadline)
            except OSError as exc:
                raise ConnectionError(f"agent input closed: {exc}") from exc

    def recv(self, deadline: float) -> bytes:
        while True:
            try:
                return os.read(self.read_fd, _READ_SIZE)
            except BlockingIOError:
                _wait_fd(self.read_fd, select.POLLIN, deadline)
            except OSError:
                return b""

    def idle_check(self) -> bool:
        if self._closed:
            return False
        ready, _, _ = select.select([self.read_fd], [], [], 0)
        return not ready

    def diagnostics(self) -> str:
        if self.err_fd is not None:
            with contextlib.suppress(OSError):
                while chunk := os.read(self.err_fd, _READ_SIZE):
                    self._diag += chunk
                    del self._diag[:-_DIAG_KEEP]
        return self._diag.decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        self._closed = True
        for fd in (self.write_fd, self.read_fd, self.err_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class AttachSocketTransport(Transport):
    """A container's hijacked attach socket (stdin in; stdout and stderr multiplexed out, tty off).

    Docker frames each output chunk as ``stream:u8 0 0 0 size:u32be payload``; stdout payloads are the
    agent's frames, stderr payloads are kept (the last few KB) for error messages.
    """

    def __init__(self, sock: socket.socket, keepalive: Any = None) -> None:
        self.sock = sock
        self._keepalive = keepalive
        sock.setblocking(False)
        self._buf = bytearray()
        self._diag = bytearray()
        self._closed = False

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                _wait_fd(self.sock.fileno(), select.POLLOUT, deadline)
            except OSError as exc:
                raise ConnectionError(f"container input closed: {exc}") from exc

    def _demux(self) -> bytes:
        out = bytearray()
        while len(self._buf) >= 8:
            size = int.from_bytes(self._buf[4:8], "big")
            if len(self._buf) < 8 + size:
                break
            kind = self._buf[0]
            payload = self._buf[8 : 8 + size]
            if kind == 1:
                out += payload
            elif kind == 2:
                self._diag += payload
                del self._diag[:-_DIAG_KEEP]
            del self._buf[: 8 + size]
        return bytes(out)

    def recv(self, deadline: float) -> bytes:
        while True:
            try:
                chunk = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                _wait_fd(self.sock.fileno(), select.POLLIN, deadline)
                continue
            except OSError:
                chunk = b""
            if not chunk:
                return b""
            self._buf += chunk
            data = self._demux()
            if data:
                return data

    def idle_check(self) -> bool:
        if self._closed:
            return False
        while select.select([self.sock], [], [], 0)[0]:
            try:
                chunk = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                return False
            self._buf += chunk
            if self._demux():
                return False
        return True

    def diagnostics(self) -> str:
        return self._diag.decode("utf-8", errors="replace").strip()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close()


class AgentClient:
    """Requests to one agent, one at a time, each bounded by a host-side hard deadline."""

    def __init__(
        self,
        transport: Transport,
        *,
        name: str = "sandbox",
        max_output: int = DEFAULT_MAX_OUTPUT,
        interrupt_grace: float = 1.0,
        hard_margin: float = 5.0,
        max_read: int = 256 << 20,
        file_timeout: float = DEFAULT_FILE_TIMEOUT,
    ) -> None:
        self.transport = transport
        self.name = name
        self.max_output = max_output
        self.interrupt_grace = interrupt_grace
        self.hard_margin = hard_margin
        self.max_read = max_read
        self.file_timeout = file_timeout
        self.hello: dict[str, Any] = {}
        self._decoder = FrameDecoder()
        self._lock = threading.Lock()
        self._seq = 0
        self._dead: str | None = None

    # -- channel ----------------------------------------------------------------------------------

    @property
    def dead(self) -> str | None:
        """Why the agent is unusable, or None while it works."""
        return self._dead

    def _fail(self, why: str) -> AgentGoneError:
        detail = self.transport.diagnostics()
        if detail:
            why += f" (agent stderr: {detail[-600:]})"
        self._dead = why
        self.transport.close()
        return AgentGoneError(f"sandbox {self.name}: {why}")

    def _fill(self, deadline: float) -> None:
        chunk = self.transport.recv(deadline)
        if not chunk:
            raise ConnectionError("the sandbox agent exited (its output channel closed)")
        self._decoder.feed(chunk)

    def _read_header(self, deadline: float) -> tuple[dict[str, Any], int]:
        while True:
            header = self._decoder.next_header()
            if header is not None:
                return header
            self._fill(deadline)

    def _read_body(self, n: int, sink: Callable[[bytes], object], deadline: float) -> None:
        while n > 0:
            if not self._decoder.buffered:
                self._fill(deadline)
            piece = self._decoder.take_body(n)
            n -= len(piece)
            sink(piece)

    def handshake(self, timeout: float) -> dict[str, Any]:
        """Wait for the agent's hello frame; returns it (version, pid, uid, python, workdir)."""
        try:
            meta, body_len = self._read_header(time.monotonic() + timeout)
            self._read_body(body_len, lambda _: None, time.monotonic() + timeout)
        except TimeoutError:
            raise self._fail(f"the agent did not start within {timeout:g} s") from None
        except (ConnectionError, FrameError, OSError) as exc:
            raise self._fail(f"the agent failed to start: {exc}") from None
        if meta.get("op") != "hello" or meta.get("version") != PROTOCOL_VERSION:
            raise self._fail(f"unexpected greeting from the agent: {meta!r}")
        self.hello = meta
        return meta

    def _request(
        self,
        meta: dict[str, Any],
        body: bytes,
        budget: float,
        read: Callable[[dict[str, Any], int, float], Any],
    ) -> Any:
        """Send one request and hand its reply's header to `read` (which consumes the body)."""
        with self._lock:
            if self._dead is not None:
                raise AgentGoneError(f"sandbox {self.name} is no longer usable: {self._dead}")
            self._seq += 1
            request = {**meta, "id": self._seq}
            deadline = time.monotonic() + budget + self.hard_margin
            try:
                self.transport.send(encode_frame(request, body), deadline)
                reply, body_len = self._read_header(deadline)
                if reply.get("id") != self._seq:
                    raise FrameError(f"reply to request {reply.get('id')!r} while waiting for {self._seq}")
                return read(reply, body_len, deadline)
            except TimeoutError:
                raise self._fail(
                    f"the agent did not answer within the hard deadline ({budget + self.hard_margin:g} s); "
                    "the sandbox was discarded"
                ) from None
            except (ConnectionError, FrameError, OSError) as exc:
                raise self._fail(str(exc) or type(exc).__name__) from None

    # -- operations -------------------------------------------------------------------------------

    def ping(self, timeout: float = 5.0) -> float:
        """One round trip; returns its duration in seconds."""
        start = time.perf_counter()
        self._request({"op": "ping"}, b"", timeout, self._read_plain)
        return time.perf_counter() - start

    def _read_plain(self, reply: dict[str, Any], body_len: int, deadline: float) -> dict[str, Any]:
        self._read_body(body_len, lambda _: None, deadline)
        return reply

    def _read_exec(self, reply: dict[str, Any], body_len: int, deadline: float) -> ExecResult:
        streams = reply.get("streams") or {}
        spec: list[tuple[str, int, int, int]] = []
        for name in ("stdout", "stderr"):
            head, tail, dropped = [*list(streams.get(name) or []), 0, 0, 0][:3]
            if not all(isinstance(v, int) and v >= 0 for v in (head, tail, dropped)):
                raise FrameError(f"bad output description {streams!r}")
            spec.append((name, head, tail, dropped))
        if sum(head + tail for _, head, tail, _ in spec) != body_len:
            raise FrameError("reply body does not match its output description")
        captured: dict[str, HeadTail] = {}
        for name, head, tail, dropped in spec:
            buffer = HeadTail(self.max_output)
            self._read_body(head, buffer.feed, deadline)
            buffer.cut(dropped)
            self._read_body(tail, buffer.feed, deadline)
            captured[name] = buffer
        if not reply.get("ok", False):
            return ExecResult(
                stdout=captured["stdout"].text(),
                stderr=captured["stderr"].text(),
                exit_code=None,
                error=str(reply.get("error") or "the sandbox could not run the request"),
            )
        exit_code = reply.get("exit_code")
        return ExecResult(
            stdout=captured["stdout"].text(),
            stderr=captured["stderr"].text(),
            exit_code=exit_code if isinstance(exit_code, int) else None,
            error=reply.get("error") or None,
            timed_out=bool(reply.get("timed_out")),
            state_lost=bool(reply.get("state_lost")),
            truncated=any(buffer.dropped for buffer in captured.values()),
        )

    def run_python(self, code: str, timeout: float, *, warmup: bool = False) -> ExecResult:
        """Run a cell in the persistent worker (`warmup`: a health check that does not count as a cell)."""
        meta = {"op": "python", "timeout": timeout, "max_output": self.max_output, "warmup": warmup}
        result: ExecResult = self._request(
            meta,
            code.encode("utf-8", errors="surrogatepass"),
            timeout + self.interrupt_grace,
            self._read_exec,
        )
        return result

    def run_command(self, command: str, timeout: float) -> ExecResult:
        """Run a shell command."""
        meta = {"op": "shell", "timeout": timeout, "max_output": self.max_output}
        result: ExecResult = self._request(
            meta,
            command.encode("utf-8", errors="surrogatepass"),
            timeout + self.interrupt_grace,
            self._read_exec,
        )
        return result

    @staticmethod
    def _file_error(reply: dict[str, Any], path: str) -> Exception:
        code = reply.get("errno")
        message = str(reply.get("error") or "file operation failed")
        if not isinstance(code, int):
            return SandboxError(message)
        if code == errno.ENOENT:
            return FileNotFoundError(code, os.strerror(code), path)
        if code == errno.EISDIR:
            return IsADirectoryError(code, os.strerror(code), path)
        if code in (errno.EACCES, errno.EPERM):
            return PermissionError(code, os.strerror(code), path)
        return OSError(code, message, path)

    def write_file(self, path: str, data: bytes, timeout: float | None = None) -> str:
        """Create or replace a file (parents made as needed); returns its absolute path in the sandbox."""
        reply = self._request(
            {"op": "write", "path": path}, data, timeout or self.file_timeout, self._read_plain
        )
        if not reply.get("ok"):
            raise self._file_error(reply, path)
        return str(reply.get("path", path))

    def read_file(self, path: str, timeout: float | None = None) -> bytes:
        """A file's bytes (at most `max_read`)."""
        data = bytearray()
        self.read_file_into(path, data.extend, self.max_read, timeout)
        return bytes(data)

    def read_file_into(
        self, path: str, sink: Callable[[bytes], object], max_size: int, timeout: float | None = None
    ) -> int:
        """Hand a file's bytes to `sink` as they arrive and return its size; the agent refuses one over
        `max_size` (and `max_read`) with EFBIG before sending it. An exception from `sink` is raised after
        the rest of the reply is drained, so the channel stays usable."""
        limit = min(max_size, self.max_read)

        def read(reply: dict[str, Any], body_len: int, deadline: float) -> int | Exception:
            if not reply.get("ok"):
                self._read_body(body_len, lambda _: None, deadline)
                return self._file_error(reply, path)
            if body_len > limit:
                raise FrameError(f"file body of {body_len} bytes exceeds the {limit}-byte cap")
            failed: list[Exception] = []

            def feed(piece: bytes) -> None:
                if not failed:
                    try:
                        sink(piece)
                    except Exception as exc:
                        failed.append(exc)

            self._read_body(body_len, feed, deadline)
            return failed[0] if failed else body_len

        got: int | Exception = self._request(
            {"op": "read", "path": path, "max_size": limit}, b"", timeout or self.file_timeout, read
        )
        if isinstance(got, Exception):
            raise got
        return got

    def alive(self) -> bool:
        """Cheap, non-blocking liveness check of an idle agent (no round trip)."""
        if self._dead is not None:
            return False
        if not self.transport.idle_check():
            self._dead = "the agent's channel closed or sent data while idle"
            return False
        return True

    def close(self) -> None:
        """Close the channel (the backend destroys the sandbox itself)."""
        if self._dead is None:
            self._dead = "closed"
        self.transport.close()


class AgentSandbox(Sandbox):
    """A `Sandbox` served by an in-sandbox agent; `closer` destroys the underlying container/process."""

    def __init__(
        self,
        client: AgentClient,
        sandbox_id: str,
        session: str,
        closer: Callable[[AgentSandbox], None],
        backend: str,
    ) -> None:
        self.client = client
        self.sandbox_id = sandbox_id
        self.session = session
        self.backend = backend
        self._closer = closer
        self._closed = False

    @property
    def workdir(self) -> str:
        """The sandbox's working directory (where relative paths point)."""
        return str(self.client.hello.get("workdir", "/home/user"))

    def _check(self) -> None:
        if self._closed:
            raise SandboxError(f"sandbox {self.sandbox_id} is closed")

    def run_python(self, code: str, timeout: float) -> ExecResult:
        self._check()
        return self.client.run_python(code, timeout)

    def run_command(self, command: str, timeout: float) -> ExecResult:
        self._check()
        return self.client.run_command(command, timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self._check()
        self.client.write_file(path, data)

    def read_file(self, path: str) -> bytes:
        self._check()
        return self.client.read_file(path)

    def read_file_into(self, path: str, sink: Callable[[bytes], object], max_bytes: int) -> int:
        self._check()
        return self.client.read_file_into(path, sink, max_bytes)

    def ping(self) -> float:
        """One protocol round trip, in seconds."""
        self._check()
        return self.client.ping()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.client.close()
        self._closer(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend}:{self.sandbox_id} session={self.session!r}>"


# -- process lifetime: clean up at exit and on SIGTERM ---------------------------------------------

_CLEANUPS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_CLEANUP_LOCK = threading.Lock()
_HOOKS: set[str] = set()
_PREVIOUS_SIGTERM: Any = None


def _run_cleanups() -> None:
    # Only in the process that registered them: a forked child exiting must not destroy its parent's.
    for owner, pid in list(_CLEANUPS.items()):
        if pid != os.getpid():
            continue
        try:
            owner.close()
        except Exception:
            logger.exception("sandbox cleanup failed for %r", owner)


def _on_sigterm(signum: int, frame: Any) -> None:
    _run_cleanups()
    previous = _PREVIOUS_SIGTERM
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def register_cleanup(owner: Any) -> None:
    """Call `owner.close()` at interpreter exit and on SIGTERM (chaining any handler already installed).

    The SIGTERM handler can only be installed from the main thread; from other threads only the exit
    hook is, until a later registration happens on the main thread.
    """
    global _PREVIOUS_SIGTERM
    with _CLEANUP_LOCK:
        _CLEANUPS[owner] = os.getpid()
        if "atexit" not in _HOOKS:
            atexit.register(_run_cleanups)
            _HOOKS.add("atexit")
        if "sigterm" not in _HOOKS and threading.current_thread() is threading.main_thread():
            _PREVIOUS_SIGTERM = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            _HOOKS.add("sigterm")


def unregister_cleanup(owner: Any) -> None:
    """Forget `owner` (it was closed)."""
    _CLEANUPS.pop(owner, None)
