"""miroenv sandbox agent: the one program that runs inside a sandbox and executes code for the host.

Standard library only, Python >= 3.9. The host starts it as ``python3 -I -B -S -c <this file's text> agent
<config json>`` (so nothing has to be installed in the image and the host and agent never differ in
version): as the container's main process for Docker, or as PID 1 of fresh namespaces for the process
backend, which first runs this same file as ``... setup <config json>`` (as root, or as root of a new user
namespace) to build a private, read-only view of the file system and drop privileges.

Protocol: length-prefixed frames (``meta_len:u32be body_len:u32be meta_json body``, the format of
``miroenv/sandbox/framing.py``, embedded here so the program stays one self-contained text) on the
agent's original stdin/stdout, which it moves to private descriptors at start: fds 0 and 1 then point at
/dev/null, and every process it starts writes to pipes the agent owns. Nothing user code prints can reach
the control channel, so nothing it prints can forge a reply. The agent is PID 1 of its PID namespace (not
under Docker's ``init``, whose stdio the sandbox user could open through /proc/1/fd) and makes itself
non-dumpable, so code running as the same user can neither open its descriptors through /proc, nor
ptrace it, nor signal it (PID 1 only receives signals it handles, and it handles none). As PID 1 it also
reaps every orphaned process.

Operations: ``ping``; ``python`` (a cell in the persistent worker: a forked child holding the globals;
the value of a last bare expression is printed as in a notebook); ``shell`` (``bash -c`` in its own
session and process group, with working directory and exported environment carried to the next call);
``write`` / ``read`` (files). Output is read from the pipes as it comes and only the first and last
``max_output / 2`` bytes of each stream are kept, with the count of bytes left out, so a flood never
leaves the sandbox. On a timeout the worker is interrupted (SIGINT); if it does not come back within the
grace period its process group is killed, every leftover process of the sandbox user except the agent is
swept (also double-forked daemons that left the group), and a fresh worker is started: the reply then
says ``state_lost``. A worker killed by SIGKILL while the memory cgroup's OOM-kill count rose is reported
as "out of memory".
"""

from __future__ import annotations

import ast
import contextlib
import errno
import fcntl
import io
import json
import os
import select
import signal
import struct
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

PROTOCOL_VERSION = 1
_HEADER = struct.Struct(">II")
_MAX_META = 1 << 20
_CHUNK = 65536
_WORKER_EXIT = 70
_AGENT_FILENAME = sys._getframe().f_code.co_filename
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_SHELL_SCRIPT = r"""{ echo 1000 >/proc/self/oom_score_adj; } 2>/dev/null
__miroenv_exit() {
  __miroenv_rc=$?
  { pwd -P; printf '\0'; env -0; } >&%(fd)d 2>/dev/null
  exit $__miroenv_rc
}
trap __miroenv_exit EXIT
__miroenv_cmd=$__MIROENV_CMD
unset __MIROENV_CMD
eval "$__miroenv_cmd"
"""
_STATE_SKIP = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "__MIROENV_CMD"})


def _pack(meta: dict[str, Any], body: bytes = b"") -> bytes:
    """One frame: header, JSON meta, raw body."""
    raw = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _HEADER.pack(len(raw), len(body)) + raw + body


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking descriptor."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


def _write_until(fd: int, data: bytes, deadline: float) -> bool:
    """Write all of `data` to a pipe before `deadline`; False if the reader is gone or too slow."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                poller.poll(max(1, int(left * 1000)))
            except OSError:
                return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(fd, was_blocking)


class _Reader:
    """Buffered frame reader over one descriptor; `feed` for poll loops, `read_frame` to block."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def fill(self) -> bool:
        """Read what is available (one read); False at end of stream."""
        try:
            chunk = os.read(self.fd, _CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def frame(self) -> tuple[dict[str, Any], bytes] | None:
        """The next complete buffered frame, if any."""
        if len(self.buf) < _HEADER.size:
            return None
        meta_len, body_len = _HEADER.unpack_from(self.buf)
        if meta_len > _MAX_META:
            raise ValueError("corrupt frame header")
        end = _HEADER.size + meta_len + body_len
        if len(self.buf) < end:
            return None
        meta = json.loads(bytes(self.buf[_HEADER.size : _HEADER.size + meta_len]).decode("utf-8"))
        body = bytes(self.buf[_HEADER.size + meta_len : end])
        del self.buf[:end]
        return meta, body

    def read_frame(self) -> tuple[dict[str, Any], bytes] | None:
        """Block until a whole frame is read; None at end of stream."""
        while True:
            got = self.frame()
            if got is not None:
                return got
            if self.eof or not self.fill():
                return None


class _Capture:
    """The first and last bytes of one output stream, and how many bytes in between were dropped."""

    def __init__(self, limit: int) -> None:
        self.head_limit = max(0, limit - limit // 2)
        self.tail_limit = max(0, limit // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        """Add bytes read from the stream."""
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit + _CHUNK:
                self.trim()

    def trim(self) -> None:
        """Drop tail bytes beyond the limit, counting them."""
        extra = len(self.tail) - self.tail_limit
        if extra > 0:
            self.dropped += extra
            del self.tail[:extra]

    def spec(self) -> list[int]:
        """[head length, tail length, dropped] as sent in a reply."""
        self.trim()
        return [len(self.head), len(self.tail), self.dropped]

    def body(self) -> bytes:
        """Head then tail bytes."""
        return bytes(self.head) + bytes(self.tail)


class _HostGone(Exception):
    """The control channel closed: the host is gone, so the agent ends."""


def _set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


def _close_fds_except(keep: set[int]) -> None:
    """Close every open descriptor not in `keep` (used in freshly forked children)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def _pidfd(pid: int) -> int:
    """A pollable descriptor that becomes readable when `pid` exits, or -1 where unsupported."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return -1
    try:
        return int(opener(pid))
    except OSError:
        return -1


def _kill_session(leader: int) -> None:
    """SIGKILL the process group led by `leader`, and `leader` itself."""
    with contextlib.suppress(OSError):
        os.killpg(leader, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.kill(leader, signal.SIGKILL)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class _Worker:
    """The persistent Python process: a forked child of the agent running `_worker_main`."""

    def __init__(self, pid: int, req: int, resp: int, out: int, err: int) -> None:
        self.pid = pid
        self.req = req
        self.resp = _Reader(resp)
        self.out = out
        self.err = err
        self.pidfd = _pidfd(pid)
        self.status: int | None = None

    def fds(self) -> list[int]:
        """The agent's descriptors for this worker."""
        return [fd for fd in (self.req, self.resp.fd, self.out, self.err, self.pidfd) if fd >= 0]


class Agent:
    """Serves frames from the host until the control channel closes."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.workdir = str(cfg.get("workdir") or os.getcwd())
        self.grace = float(cfg.get("interrupt_grace", 1.0))
        self.max_read = int(cfg.get("max_read", 256 << 20))
        self.pidns = bool(cfg.get("pidns", True))
        self.setup_notes = [str(note) for note in cfg.get("setup_notes") or []]
        env = {
            "PATH": _DEFAULT_PATH,
            "HOME": self.workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": "/tmp",
            "USER": "sandbox",
            "TERM": "dumb",
            "MPLBACKEND": "Agg",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        env.update({str(k): str(v) for k, v in dict(cfg.get("env") or {}).items()})
        self.env = env
        self.shell_env = dict(env)
        self.shell_cwd = self.workdir
        self.me = os.getpid()
        self.uid = os.getuid()
        self.cin = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 10)
        self.cout = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 10)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        self.reader = _Reader(self.cin)
        self.pending: list[tuple[dict[str, Any], bytes]] = []
        self.cancelled = False
        self.worker: _Worker | None = None
        self.children: dict[int, int | None] = {}
        self.sessions: set[int] = set()
        self.worker_note: str | None = None
        self.cells = 0
        with contextlib.suppress(OSError):
            os.chdir(self.workdir)

    # -- control channel -------------------------------------------------------------------------

    def send(self, meta: dict[str, Any], body: bytes = b"") -> None:
        """Send one frame to the host."""
        try:
            _write_all(self.cout, _pack(meta, body))
        except OSError as exc:
            raise _HostGone() from exc

    def poll_control(self) -> None:
        """Read what the host sent while a call runs: end of stream ends the agent, `cancel` cancels."""
        if not self.reader.fill():
            raise _HostGone()
        while True:
            got = self.reader.frame()
            if got is None:
                return
            if got[0].get("op") == "cancel":
                self.cancelled = True
            else:
                self.pending.append(got)

    def serve(self) -> None:
        """The main loop: hello, then one request at a time."""
        self.send(
            {
                "op": "hello",
                "version": PROTOCOL_VERSION,
                "pid": self.me,
                "uid": self.uid,
                "python": ".".join(str(n) for n in sys.version_info[:3]),
                "workdir": self.workdir,
                "notes": self.setup_notes,
            }
        )
        self.start_worker()
        while True:
            if self.pending:
                meta, body = self.pending.pop(0)
            else:
                got = self.reader.read_frame()
                if got is None:
                    raise _HostGone()
                meta, body = got
            self.cancelled = False
            reply, out = self.dispatch(meta, body)
            reply["id"] = meta.get("id")
            self.send(reply, out)
            self.reap()
            if meta.get("op") == "exit":
                raise _HostGone()

    def dispatch(self, meta: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """Run one request; never raises for the request's own failures."""
        op = meta.get("op")
        try:
            if op == "ping" or op == "exit":
                return {"ok": True}, b""
            if op == "python":
                return self.op_python(meta, body)
            if op == "shell":
                return self.op_shell(meta, body)
            if op == "write":
                return self.op_write(meta, body)
            if op == "read":
                return self.op_read(meta)
            return {"ok": False, "error": f"unknown operation {op!r}"}, b""
        except _HostGone:
            raise
        except OSError as exc:
            return {"ok": False, "errno": exc.errno, "error": f"{type(exc).__name__}: {exc}"}, b""
        except Exception as exc:
            return {"ok": False, "error": f"agent error: {type(exc).__name__}: {exc}"}, b""

    # -- children --------------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect exited children (also orphans re-parented to us), remembering managed ones' status."""
        for _ in range(100000):
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children[pid] = status
            if self.worker is not None and pid == self.worker.pid:
                self.worker.status = status

    def wait_child(self, pid: int, timeout: float) -> int | None:
        """The exit status of managed child `pid`, waiting up to `timeout` seconds."""
        end = time.monotonic() + timeout
        while True:
            self.reap()
            status = self.children.get(pid)
            if status is not None:
                return status
            if time.monotonic() >= end:
                return None
            time.sleep(0.001)

    def spawn(
        self, argv: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int, keep: int
    ) -> int:
        """Fork and exec `argv` in a new session with the given pipes as stdout/stderr."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(stdout, 1)
                os.dup2(stderr, 2)
                _close_fds_except({0, 1, 2, keep})
                os.set_inheritable(keep, True)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                try:
                    os.chdir(cwd)
                except OSError:
                    os.chdir(self.workdir)
                os.execvpe(argv[0], argv, env)
            except BaseException as exc:
                try:
                    os.write(2, (f"cannot start {argv[0]}: {exc}\n").encode())
                finally:
                    os._exit(127)
        self.children[pid] = None
        self.sessions.add(pid)
        return pid

    def start_worker(self) -> None:
        """Fork a fresh persistent Python worker."""
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                _close_fds_except({0, 1, 2, req_r, resp_w})
                _set_dumpable(1)
                _worker_main(req_r, resp_w, self.env, self.workdir)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(_WORKER_EXIT)
        for fd in (req_r, resp_w, out_w, err_w):
            os.close(fd)
        for fd in (resp_r, out_r, err_r):
            _set_nonblocking(fd)
        self.worker = _Worker(pid, req_w, resp_r, out_r, err_r)
        self.children[pid] = None
        self.sessions.add(pid)

    def drop_worker(self) -> None:
        """Kill the worker's process group and forget it."""
        worker = self.worker
        if worker is None:
            return
        self.worker = None
        _kill_session(worker.pid)
        self.wait_child(worker.pid, 2.0)
        self.children.pop(worker.pid, None)
        self.sessions.discard(worker.pid)
        for fd in worker.fds():
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- sweeping ---------------------------------------------------------------------------------

    def processes(self) -> list[tuple[int, int, int]]:
        """(pid, pgid, sid) of every live process of the sandbox user except the agent and PID 1."""
        found = []
        try:
            names = os.listdir("/proc")
        except OSError:
            return []
        for name in names:
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == self.me or pid == 1:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    stat = fh.read()
                owner = os.stat(f"/proc/{pid}").st_uid
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if len(fields) < 5 or fields[0] in (b"Z", b"X") or owner != self.uid:
                continue
            sid = int(fields[4])
            if not self.pidns and sid not in self.sessions:
                continue
            found.append((pid, int(fields[2]), sid))
        return found

    def sweep(self, keep: int | None = None, rounds: int = 60) -> bool:
        """Kill every leftover process except the agent and process `keep`; True when none is left."""
        for attempt in range(rounds):
            self.reap()
            procs = [p for p in self.processes() if p[0] != keep]
            if not procs:
                return True
            keep_group = {os.getpgrp()}
            if keep is not None:
                keep_group.add(keep)
            for pgid in {p[1] for p in procs} - keep_group:
                with contextlib.suppress(OSError):
                    os.killpg(pgid, signal.SIGKILL)
            for pid, _, _ in procs:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(min(0.05, 0.001 * (attempt + 1)))
        return False

    def sweep_all(self) -> None:
        """Kill every process of the sandbox user except the agent (the worker too)."""
        self.drop_worker()
        for attempt in range(200):
            if self.pidns:
                with contextlib.suppress(OSError):
                    os.kill(-1, signal.SIGKILL)
            if self.sweep(rounds=1):
                return
            time.sleep(min(0.05, 0.001 * (attempt + 1)))

    def oom_kills(self) -> int:
        """The memory cgroup's OOM-kill count (0 where unreadable)."""
        for path in _OOM_FILES:
            try:
                with open(path) as fh:
                    for line in fh:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                continue
        return 0

    # -- waiting ----------------------------------------------------------------------------------

    def pump(
        self, handlers: dict[int, Callable[[], bool]], done: Callable[[], bool], deadline: float
    ) -> bool:
        """Serve readable descriptors until `done()`; False when the deadline passes or the host cancels."""
        poller = select.poll()
        for fd in handlers:
            poller.register(fd, select.POLLIN)
        poller.register(self.cin, select.POLLIN)
        active = dict(handlers)
        while not done():
            if self.cancelled:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                events = poller.poll(max(1, int(left * 1000) + 1) if left < 3600 else 3600000)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.cin:
                    self.poll_control()
                elif fd in active and not active[fd]():
                    poller.unregister(fd)
                    del active[fd]
        return True

    @staticmethod
    def pipe_reader(fd: int, sink: _Capture, closed: set[int] | None = None) -> Callable[[], bool]:
        """A poll handler moving bytes from a pipe into `sink`; False (and `fd` put in `closed`) at its end."""

        def handle() -> bool:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                if closed is not None:
                    closed.add(fd)
                return False
            sink.feed(chunk)
            return True

        return handle

    @staticmethod
    def drain(fd: int, sink: _Capture, budget: float) -> bool:
        """Read what is already in a pipe (bounded in time); False at end of stream."""
        end = time.monotonic() + budget
        while time.monotonic() < end:
            try:
                chunk = os.read(fd, _CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            sink.feed(chunk)
        return True

    # -- operations -------------------------------------------------------------------------------

    def op_python(
        self, meta: dict[str, Any], body: bytes, lost_before: str | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Run a cell in the persistent worker.

        The worker acknowledges a cell before running it; a worker that dies before that ran none of it (it was
        killed since the last call, e.g. by `kill -9 -1` from a command), so the cell runs again in a fresh one.
        """
        timeout = float(meta.get("timeout", 30.0))
        cap = int(meta.get("max_output", 65536))
        out, err = _Capture(cap), _Capture(cap)
        notes: list[str] = []
        state_lost = False
        if lost_before is not None:
            notes.append(lost_before)
            state_lost = True
        if self.worker_note is not None:
            notes.append(self.worker_note)
            self.worker_note = None
            state_lost = True
        if self.worker is not None and self.worker_exited(self.worker):
            notes.append(
                f"note: since the last call {self.describe_exit(self.worker, 0)}; a new worker ran this code "
                "and earlier variables are gone"
            )
            state_lost = True
            self.drop_worker()
        if self.worker is None:
            self.start_worker()
        worker = self.worker
        assert worker is not None
        oom_before = self.oom_kills()
        deadline = time.monotonic() + timeout
        if not meta.get("warmup"):
            self.cells += 1
        request = {"op": "run", "cell": self.cells if not meta.get("warmup") else 0}
        if not _write_until(worker.req, _pack(request, body), deadline):
            worker.resp.eof = True  # it does not read its requests: treated as dead below
        result: dict[str, Any] = {}

        def on_resp() -> bool:
            alive = worker.resp.fill()
            while (got := worker.resp.frame()) is not None:
                if got[0].get("started"):
                    result["_started"] = True
                else:
                    result.update(got[0])
                    result["_done"] = True
            return alive

        def on_exit() -> bool:
            self.reap()
            return worker.status is None

        handlers = {
            worker.out: self.pipe_reader(worker.out, out),
            worker.err: self.pipe_reader(worker.err, err),
            worker.resp.fd: on_resp,
        }
        if worker.pidfd >= 0:
            handlers[worker.pidfd] = on_exit

        def done() -> bool:
            return "_done" in result or worker.resp.eof or worker.status is not None

        timed_out = False
        finished = self.pump(handlers, done, deadline)
        if not finished:
            timed_out = True
            with contextlib.suppress(OSError):
                os.kill(worker.pid, signal.SIGINT)
            finished = self.pump(handlers, done, time.monotonic() + self.grace)
        for fd in (worker.out, worker.err):
            self.drain(fd, out if fd == worker.out else err, 0.02)
        reply: dict[str, Any] = {"ok": True, "exit_code": 0, "error": None, "timed_out": timed_out}
        if "_done" in result:
            reply["exit_code"] = result.get("exit_code", 0)
            reply["error"] = result.get("error")
            reply["oom"] = bool(result.get("oom"))
            if timed_out:
                reply["error"] = f"timed out after {timeout:g} s and interrupted (Python state kept)"
                if not self.sweep(keep=worker.pid):
                    self.sweep_all()
                    state_lost = True
                    notes.append("leftover processes could not be stopped; the worker was restarted")
        elif timed_out and not finished:
            reply["exit_code"] = None
            reply["error"] = (
                f"timed out after {timeout:g} s; the worker did not stop when interrupted and was killed"
            )
            self.sweep_all()
            state_lost = True
        elif "_started" not in result and lost_before is None and not timed_out:
            self.wait_child(worker.pid, 1.0)
            lost = (
                f"note: since the last call {self.describe_exit(worker, self.oom_kills() - oom_before)}; "
                "a new worker ran this code and earlier variables are gone"
            )
            self.drop_worker()
            if not meta.get("warmup"):
                self.cells -= 1
            remaining = max(deadline - time.monotonic(), 0.1)
            return self.op_python({**meta, "timeout": remaining}, body, lost_before="; ".join([*notes, lost]))
        else:
            self.wait_child(worker.pid, 1.0)
            reply["exit_code"] = None
            reply["error"] = self.describe_exit(worker, self.oom_kills() - oom_before)
            reply["oom"] = "out of memory" in reply["error"]
            self.drop_worker()
            state_lost = True
        if self.worker is None:
            try:
                self.start_worker()
            except OSError as exc:
                self.worker_note = f"the Python worker could not be restarted ({exc})"
        if notes:
            reply["error"] = "; ".join(([reply["error"]] if reply["error"] else []) + notes)
        reply["state_lost"] = state_lost
        return self.exec_reply(reply, {"stdout": out, "stderr": err})

    def worker_exited(self, worker: _Worker) -> bool:
        """Whether the worker process has ended."""
        self.reap()
        return worker.status is not None

    def describe_exit(self, worker: _Worker, oom_delta: int) -> str:
        """Why the worker ended, in words."""
        status = worker.status
        if status is None:
            return "the Python worker stopped answering and was restarted"
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGKILL and oom_delta > 0:
                return "out of memory: the Python worker was killed by the OOM killer at the memory limit"
            if sig == signal.SIGKILL:
                return "the Python worker was killed (SIGKILL)"
            if sig == signal.SIGXCPU:
                return "CPU time limit exceeded: the Python worker was stopped"
            return f"the Python worker crashed ({_signal_name(sig)})"
        return f"the Python worker exited with code {os.WEXITSTATUS(status)}"

    def op_shell(self, meta: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """Run a shell command in its own session; keep its final directory and environment."""
        timeout = float(meta.get("timeout", 30.0))
        cap = int(meta.get("max_output", 65536))
        command = body.decode("utf-8", errors="replace")
        out, err = _Capture(cap), _Capture(cap)
        streams = {"stdout": out, "stderr": err}
        if "\x00" in command:
            return self.exec_reply(
                {"ok": True, "exit_code": 2, "error": "the command contains a NUL byte"}, streams
            )
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        st_r, st_w = os.pipe()
        env = dict(self.shell_env)
        env["__MIROENV_CMD"] = command
        script = _SHELL_SCRIPT % {"fd": st_w}
        if os.path.exists("/bin/bash"):
            argv = ["/bin/bash", "--noprofile", "--norc", "-c", script]
        else:
            argv = ["/bin/sh", "-c", script]
        cwd = self.shell_cwd if os.path.isdir(self.shell_cwd) else self.workdir
        oom_before = self.oom_kills()
        try:
            try:
                pid = self.spawn(argv, env, cwd, out_w, err_w, st_w)
            except BlockingIOError:
                self.sweep(keep=self.worker.pid if self.worker else None)
                pid = self.spawn(argv, env, cwd, out_w, err_w, st_w)
        finally:
            for fd in (out_w, err_w, st_w):
                os.close(fd)
        state = _Capture(8 << 20)
        pidfd = _pidfd(pid)
        pipes = {out_r: out, err_r: err, st_r: state}
        closed: set[int] = set()
        reply: dict[str, Any] = {"ok": True, "timed_out": False, "state_lost": False}
        try:
            for fd in pipes:
                _set_nonblocking(fd)
            handlers = {fd: self.pipe_reader(fd, sink, closed) for fd, sink in pipes.items()}

            def on_exit() -> bool:
                self.reap()
                return self.children.get(pid) is None

            if pidfd >= 0:
                handlers[pidfd] = on_exit

            def exited() -> bool:
                if pidfd < 0:
                    self.reap()
                return self.children.get(pid) is not None

            if self.pump(handlers, exited, time.monotonic() + timeout):
                # Let the pipes run dry; processes left in the background may hold them open, so not for long.
                handlers.pop(pidfd, None)
                self.pump(handlers, lambda: len(closed) == len(pipes), time.monotonic() + 0.05)
                status = self.children.get(pid)
                assert status is not None
                reply["exit_code"] = os.waitstatus_to_exitcode(status)
                reply["error"] = None
                if os.WIFSIGNALED(status):
                    sig = os.WTERMSIG(status)
                    reply["exit_code"] = 128 + sig
                    if sig == signal.SIGKILL and self.oom_kills() > oom_before:
                        reply["error"] = "out of memory: the command was killed by the OOM killer"
                        reply["oom"] = True
                    else:
                        reply["error"] = f"the command was killed ({_signal_name(sig)})"
                self.load_state(state.body())
            else:
                reply["timed_out"] = True
                _kill_session(pid)
                self.wait_child(pid, 1.0)
                if not self.sweep(keep=self.worker.pid if self.worker else None):
                    self.sweep_all()
                    reply["state_lost"] = True
                for fd in (out_r, err_r):
                    self.drain(fd, pipes[fd], 0.02)
                reply["exit_code"] = None
                reply["error"] = f"timed out after {timeout:g} s; the command and its processes were killed"
        finally:
            for fd in (out_r, err_r, st_r, pidfd):
                if fd >= 0:
                    os.close(fd)
            self.children.pop(pid, None)
            self.sessions.discard(pid)
        if self.worker is None:
            self.start_worker()
        return self.exec_reply(reply, streams)

    @staticmethod
    def exec_reply(reply: dict[str, Any], streams: dict[str, _Capture]) -> tuple[dict[str, Any], bytes]:
        """A reply carrying captured output: per-stream [head, tail, dropped] in meta, bytes in the body."""
        reply["streams"] = {name: sink.spec() for name, sink in streams.items()}
        return reply, b"".join(sink.body() for sink in streams.values())

    def load_state(self, data: bytes) -> None:
        """Keep the directory and environment a shell command ended with."""
        cwd, sep, rest = data.partition(b"\0")
        if not sep:
            return
        path = cwd.decode("utf-8", errors="surrogateescape").strip("\n")
        if path.startswith("/"):
            self.shell_cwd = path
        env: dict[str, str] = {}
        for item in rest.split(b"\0"):
            key, eq, value = item.partition(b"=")
            if not eq or not key:
                continue
            name = key.decode("utf-8", errors="surrogateescape")
            if name not in _STATE_SKIP:
                env[name] = value.decode("utf-8", errors="surrogateescape")
        if env:
            self.shell_env = env

    def resolve(self, path: str) -> str:
        """A sandbox path, relative paths taken from the work directory."""
        return path if path.startswith("/") else os.path.join(self.workdir, path)

    def op_write(self, meta: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes]:
        """Create or replace a file (making parent directories)."""
        path = self.resolve(str(meta.get("path", "")))
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        try:
            if not _is_regular(fd):
                raise OSError(errno.EINVAL, "not a regular file", path)
            _write_all(fd, body)
        finally:
            os.close(fd)
        return {"ok": True, "path": path}, b""

    def op_read(self, meta: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Read a whole regular file (up to the size cap)."""
        path = self.resolve(str(meta.get("path", "")))
        limit = min(int(meta.get("max_size", self.max_read)), self.max_read)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if _is_dir(st.st_mode):
                raise OSError(errno.EISDIR, "Is a directory", path)
            if not _is_regular(fd):
                raise OSError(errno.EINVAL, "not a regular file", path)
            if st.st_size > limit:
                raise OSError(errno.EFBIG, f"file is larger than {limit} bytes", path)
            chunks = []
            total = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise OSError(errno.EFBIG, f"file is larger than {limit} bytes", path)
                chunks.append(chunk)
        finally:
            os.close(fd)
        return {"ok": True, "size": total}, b"".join(chunks)


def _is_regular(fd: int) -> bool:
    import stat as _stat

    return _stat.S_ISREG(os.fstat(fd).st_mode)


def _is_dir(mode: int) -> bool:
    import stat as _stat

    return _stat.S_ISDIR(mode)


# -- the worker -------------------------------------------------------------------------------------


def _worker_main(req_fd: int, resp_fd: int, env: dict[str, str], workdir: str) -> None:
    """The persistent Python worker: read cells, run them in one namespace, answer with their outcome."""
    import builtins
    import linecache

    os.environ.clear()
    os.environ.update(env)
    with contextlib.suppress(OSError):
        os.chdir(workdir)
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin = open(0, encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115 - lives as long as the worker
    sys.stdout = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace"
    )
    sys.stderr = io.TextIOWrapper(
        io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace"
    )
    own_streams = (sys.stdout, sys.stderr)
    sys.argv = [""]
    if sys.flags.no_site:
        # The agent starts without `site` (it needs only the standard library, and starts faster so);
        # user code gets the interpreter's site-packages, imported here while the host is already busy.
        import site

        site.main()
    if "" not in sys.path:
        sys.path.insert(0, "")
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    namespace = main.__dict__
    me = os.getpid()
    reader = _Reader(req_fd)
    while True:
        got = reader.read_frame()
        if got is None:
            os._exit(0)
        _write_all(resp_fd, _pack({"started": True}))
        code = got[1].decode("utf-8", errors="replace")
        filename = f"<cell-{got[0].get('cell', 0)}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            outcome = _run_cell(code, filename, namespace, me)
        except KeyboardInterrupt:  # the host's interrupt landed just as the cell ended
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            outcome = {"exit_code": 1, "error": "KeyboardInterrupt", "oom": False}
        for stream in (sys.stdout, sys.stderr, *own_streams):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:
                pass
        _write_all(resp_fd, _pack(outcome))


def _run_cell(code: str, filename: str, namespace: dict[str, Any], me: int) -> dict[str, Any]:
    """Execute one cell; a trailing bare expression's value is displayed (unless the cell ends in ';')."""
    try:
        tree = ast.parse(code, filename, "exec")
    except (SyntaxError, ValueError) as exc:
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        return {"exit_code": 1, "error": f"{type(exc).__name__}: {exc}", "oom": False}
    try:
        try:
            # SIGINT (the host's timeout) interrupts user code only, never the worker's own loop.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            last: ast.Expression | None = None
            final = tree.body[-1] if tree.body else None
            if isinstance(final, ast.Expr) and not code.rstrip().endswith(";"):
                tree.body.pop()
                last = ast.Expression(final.value)
            exec(compile(tree, filename, "exec", dont_inherit=True), namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval", dont_inherit=True), namespace)
                if value is not None:
                    sys.displayhook(value)
            return {"exit_code": 0, "error": None}
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except BaseException as exc:
        if os.getpid() != me:
            _child_exit(1)
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _AGENT_FILENAME:
            tb = tb.tb_next
        with contextlib.suppress(BaseException):
            sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))
        name = type(exc).__name__
        try:
            text = str(exc)
        except BaseException:
            text = "<unprintable exception>"
        error = f"{name}: {text}" if text else name
        oom = isinstance(exc, MemoryError)
        if oom:
            error = f"out of memory ({error})"
        return {"exit_code": 1, "error": error, "oom": oom}
    finally:
        if os.getpid() != me:
            _child_exit(0)


def _child_exit(code: int) -> None:
    """End a process forked by user code that returned into the worker's loop."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


# -- the process backend's namespace setup -----------------------------------------------------------

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
_FLAG_NAMES = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}
_CLONE_NEWUSER = 0x10000000
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


class _Libc:
    """The few system calls the setup needs that `os` lacks on older Pythons."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)

    def check(self, result: int, what: str) -> None:
        if result != 0:
            err = self.ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        def enc(s: str | None) -> bytes | None:
            return None if s is None else os.fsencode(s)

        self.check(
            self.lib.mount(enc(source), enc(target), enc(fstype), self.ctypes.c_ulong(flags), enc(data)),
            f"mount {target}",
        )

    def prctl(self, option: int, arg: int) -> int:
        return int(self.lib.prctl(option, self.ctypes.c_ulong(arg), 0, 0, 0))

    def unshare(self, flags: int) -> None:
        self.check(self.lib.unshare(flags), "unshare")


def _mountpoints() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) for every mount, from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
            found.append((point, set(fields[5].split(","))))
    return found


def _tmpfs(libc: _Libc, target: str, size: int, mode: str, inodes: int, owner: int | None = None) -> bool:
    """Mount a tmpfs capped in bytes and in inodes (so empty files cannot exhaust host memory) at `target`."""
    if not os.path.isdir(target) or os.path.islink(target):
        return False
    data = f"size={max(size, 4096)},nr_inodes={max(inodes, 16)},mode={mode}"
    if owner is not None:
        data += f",uid={owner},gid={owner}"
    libc.mount("tmpfs", target, "tmpfs", _MS_NOSUID | _MS_NODEV, data)
    return True


_ST_TO_MS = {"ST_NOSUID": _MS_NOSUID, "ST_NODEV": _MS_NODEV, "ST_NOEXEC": _MS_NOEXEC}
_ST_TO_MS.update({"ST_NOATIME": _MS_NOATIME, "ST_NODIRATIME": _MS_NODIRATIME, "ST_RELATIME": _MS_RELATIME})


def _mount_flags(fd: int) -> int:
    """The per-mount flags of the mount holding `fd`, as MS_* bits (a user namespace may not clear them)."""
    st_flags = os.fstatvfs(fd).f_flag
    return sum(ms for name, ms in _ST_TO_MS.items() if st_flags & getattr(os, name, 0))


def _bind_back(libc: _Libc, path: str, fd: int) -> None:
    """Bind the file or directory `fd` opened (before it was covered) read-only at `path` again."""
    parent = os.path.dirname(path)
    os.makedirs(parent, 0o755, exist_ok=True)
    import stat as _stat

    if _stat.S_ISDIR(os.fstat(fd).st_mode):
        os.makedirs(path, 0o755, exist_ok=True)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
    libc.mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC, None)
    libc.mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _mount_flags(fd), None)


def _write_sysctls(values: dict[str, Any], notes: list[str]) -> None:
    """Set this IPC namespace's limits (total SysV shared memory, queue counts); a failure becomes a note."""
    for name, value in values.items():
        try:
            with open(f"/proc/sys/{name}", "w") as fh:
                fh.write(str(value))
        except OSError as exc:
            notes.append(f"cannot set {name}: {exc.strerror}")


def _setup_main(cfg: dict[str, Any]) -> None:
    """Namespace setup for the process backend, run as (namespace) root; ends by exec'ing the agent.

    The host's mounts become read-only; private tmpfs (capped in bytes and inodes) replace the writable
    places (/tmp, /home, ...) and the directories to `hide` (the calling user's home, directories others may
    not enter); then the interpreter's own paths that lay under them (`bind`, opened before they were
    covered) are bound back read-only at the same place, so a virtualenv under /tmp or a home directory
    still runs.
    """
    import resource

    os.umask(0o022)
    libc = _Libc()
    notes: list[str] = []
    with open(cfg["source_path"], encoding="utf-8") as fh:
        source = fh.read()
    libc.mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)
    hostname = str(cfg.get("hostname") or "sandbox").encode()
    libc.check(libc.lib.sethostname(hostname, len(hostname)), "sethostname")
    _write_sysctls(dict(cfg.get("sysctls") or {}), notes)
    kept = [(str(path), os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in cfg.get("bind", [])]
    for point, opts in reversed(_mountpoints()):
        if point == "/proc" or point.startswith("/proc/") or "ro" in opts:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for name in opts:
            flags |= _FLAG_NAMES.get(name, 0)
        try:
            libc.mount(None, point, None, flags, None)
        except OSError as exc:
            if point == "/":
                raise
            notes.append(f"cannot make {point} read-only: {exc.strerror}")
    owner = cfg.get("uid")
    owner_id = 0 if owner is None else int(owner)
    small = int(cfg.get("small_inodes", 1024))
    hidden = [str(path) for path in cfg.get("hide", []) if _tmpfs(libc, str(path), 1 << 20, "0755", small)]
    mounted = set()
    for target, size, mode, inodes in cfg.get("tmpfs", []):
        if _tmpfs(libc, str(target), int(size), str(mode), int(inodes)):
            mounted.add(str(target))
    for path, fd in kept:
        _bind_back(libc, path, fd)
        os.close(fd)
    for path in hidden:
        libc.mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None)
    if os.path.isdir("/dev/mqueue"):
        try:
            libc.mount("mqueue", "/dev/mqueue", "mqueue", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
        except OSError as exc:
            notes.append(f"cannot mount a private /dev/mqueue: {exc.strerror}")
    workdir = "/home/user" if "/home" in mounted else "/tmp/user"
    os.makedirs(workdir, 0o755, exist_ok=True)
    os.chown(workdir, owner_id, owner_id)
    agent_cfg = dict(cfg["agent"])
    agent_cfg["workdir"] = workdir
    agent_cfg["setup_notes"] = notes
    limits = {
        "as": resource.RLIMIT_AS,
        "nproc": resource.RLIMIT_NPROC,
        "fsize": resource.RLIMIT_FSIZE,
        "nofile": resource.RLIMIT_NOFILE,
        "cpu": resource.RLIMIT_CPU,
    }
    for name, value in dict(cfg.get("rlimits") or {}).items():
        if value is not None and name in limits:
            resource.setrlimit(limits[name], (int(value), int(value)))
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap)
    if owner is not None:
        os.setgroups([])
        os.setresgid(owner_id, owner_id, owner_id)
        os.setresuid(owner_id, owner_id, owner_id)
        # Changing uid made us non-dumpable, which leaves /proc/self owned by root: the id maps below
        # could not be written.
        libc.prctl(_PR_SET_DUMPABLE, 1)
    libc.check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1), "no_new_privs")
    inner = int(cfg.get("inner_uid", 1000))
    libc.unshare(_CLONE_NEWUSER)
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inner} {owner_id} 1"),
        ("gid_map", f"{inner} {owner_id} 1"),
    ):
        with open("/proc/self/" + name, "w") as fh:
            fh.write(text)
    for cap in range(64):
        libc.prctl(_PR_CAPBSET_DROP, cap)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.chdir(workdir)
    env = {"PATH": str(agent_cfg.get("env", {}).get("PATH", _DEFAULT_PATH)), "LANG": "C.UTF-8"}
    argv = [str(cfg["python"]), "-I", "-B", "-S", "-c", source, "agent", json.dumps(agent_cfg)]
    argv += [a for a in sys.argv if a.startswith("--miroenv-owner=")]
    os.execve(str(cfg["python"]), argv, env)


def _set_dumpable(flag: int) -> None:
    """Mark this process (non-)dumpable: a non-dumpable one's /proc entries and memory are root's only."""
    with contextlib.suppress(Exception):
        _Libc().prctl(_PR_SET_DUMPABLE, flag)


def main(argv: list[str]) -> int:
    """Entry point: ``agent <config json>`` or ``setup <config json>``."""
    mode = argv[0] if argv else "agent"
    cfg = json.loads(argv[1]) if len(argv) > 1 else {}
    if mode == "setup":
        try:
            _setup_main(cfg)
        except Exception as exc:
            sys.stderr.write(f"miroenv sandbox setup failed: {type(exc).__name__}: {exc}\n")
            sys.stderr.flush()
        return 1
    _set_dumpable(0)
    # No handlers at all: as PID 1 the agent then cannot be signalled from inside its namespace.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    agent = Agent(cfg)
    with contextlib.suppress(_HostGone):
        agent.serve()
    agent.sweep_all()
    return 0


if __name__ == "__main__":
    try:
        code = main([a for a in sys.argv[1:] if not a.startswith("--miroenv-owner=")])
    except Exception:
        traceback.print_exc()
        code = 70
    sys.stdout.flush()
    os._exit(code)
