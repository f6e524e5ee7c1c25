"""The process backend: the sandbox agent as a local process, for machines without a Docker daemon.

Each sandbox is the agent running as PID 1 of new PID, network and mount namespaces made with
``unshare``, then entering a user namespace of its own in which it is the unprivileged uid 1000 with no
capabilities and ``no_new_privs``. Before dropping privileges, ``agent.py setup`` makes every mount
read-only, gives the sandbox private size-capped tmpfs for /tmp, /dev/shm, /var/tmp, /run and /home
(the work directory is /home/user, as in the Docker image), and sets rlimits (address space, processes,
file size, open files, CPU time). On a root host the sandbox's processes run as a fresh random uid, so
process limits are per sandbox; a directory on the interpreter's path that others may not enter (such
as /root for a pyenv Python) is replaced inside the namespace by a tmpfs holding only what is needed.

Where namespaces are unavailable (an unprivileged container, a kernel without user namespaces) the
backend falls back, with a loud warning, to rlimits only: the agent then runs as the calling user in a
private temporary work directory, with network, file system and other processes all reachable.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal

from miroenv.sandbox.base import SandboxBackend, SandboxError, SandboxUnavailableError
from miroenv.sandbox.client import (
    DEFAULT_MAX_OUTPUT,
    AgentClient,
    AgentSandbox,
    PipeTransport,
    register_cleanup,
    unregister_cleanup,
)

_RANDOM = random.SystemRandom()
"""Names, uids and jitter: from the OS, never from (or disturbing) the global `random` state episodes seed."""

logger = logging.getLogger(__name__)

AGENT_PATH = Path(__file__).with_name("agent.py")
"""The agent program (run as ``python -c <its text>`` inside the sandbox)."""

OWNER_ARG = "--miroenv-owner="
"""Argument carried by every sandbox process: ``--miroenv-owner=<host pid>:<its start time>``."""

Isolation = Literal["auto", "namespaces", "rlimits"]

_COUNTER = itertools.count(1)


def process_start_time(pid: int) -> int | None:
    """A process's start time (clock ticks since boot), which with its pid identifies it; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def owner_token(pid: int | None = None) -> str:
    """``<pid>:<start time>`` of the current (or given) process, to tell later whether it still lives."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{process_start_time(pid) or 0}"


def owner_alive(token: str) -> bool:
    """Whether the process an `owner_token` names is still running (the same process, not a reused pid)."""
    pid_text, _, start_text = token.partition(":")
    try:
        pid, start = int(pid_text), int(start_text)
    except ValueError:
        return False
    current = process_start_time(pid)
    return current is not None and (start == 0 or current == start)


def sweep_orphan_processes() -> int:
    """Kill process-backend sandboxes whose owning host process is dead; returns how many were killed."""
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        for arg in argv:
            if arg.startswith(OWNER_ARG.encode()):
                token = arg[len(OWNER_ARG) :].decode(errors="replace")
                if not owner_alive(token):
                    with contextlib.suppress(OSError):
                        os.kill(int(name), signal.SIGKILL)
                        killed += 1
                break
    return killed


def _interpreter_paths(python: str) -> list[str]:
    """The directories an interpreter needs (its binary, prefix and base prefix), resolved."""
    probe = "import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)"
    out = subprocess.run(
        [python, "-I", "-S", "-c", probe], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split("\n")
    paths = {os.path.realpath(python), os.path.realpath(out[0])}
    paths.update(os.path.realpath(p) for p in out[1:3] if p)
    return sorted(paths)


def _exposures(paths: list[str]) -> dict[str, set[str]]:
    """For each directory on the way to `paths` that others may not enter: which children to expose.

    Only one such directory per path can be worked around (a tmpfs over it holding the child); a path
    blocked deeper down again cannot be used by the unprivileged sandbox user.
    """
    found: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(path).parts
        blocked = [
            depth for depth in range(1, len(parts)) if not os.stat(Path(*parts[:depth])).st_mode & 0o001
        ]
        if not blocked:
            continue
        if len(blocked) > 1:
            raise SandboxUnavailableError(f"{path} lies under more than one directory others may not enter")
        depth = blocked[0]
        found.setdefault(str(Path(*parts[:depth])), set()).add(parts[depth])
    return found


class ProcessSandbox(AgentSandbox):
    """A process-backend sandbox: the agent behind an ``unshare`` process on this host."""

    host_pid: int = 0


class ProcessSandboxBackend(SandboxBackend):
    """Sandboxes as local agent processes in fresh namespaces (or with rlimits only, where that fails)."""

    name = "process"

    def __init__(
        self,
        *,
        python: str | None = None,
        isolation: Isolation = "auto",
        memory_bytes: int = 2 << 30,
        pids_limit: int = 256,
        nofile: int = 1024,
        fsize_bytes: int = 1 << 30,
        cpu_seconds: int = 3600,
        tmp_bytes: int = 256 << 20,
        home_bytes: int = 512 << 20,
        max_output: int = DEFAULT_MAX_OUTPUT,
        interrupt_grace: float = 1.0,
        startup_timeout: float = 15.0,
        env: dict[str, str] | None = None,
        sweep: bool = True,
    ) -> None:
        self.python = python or sys.executable
        self.memory_bytes = memory_bytes
        self.pids_limit = pids_limit
        self.nofile = nofile
        self.fsize_bytes = fsize_bytes
        self.cpu_seconds = cpu_seconds
        self.tmp_bytes = tmp_bytes
        self.home_bytes = home_bytes
        self.max_output = max_output
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.session_id = f"miroenv-{os.getpid()}-{_RANDOM.getrandbits(32):08x}"
        self._owner = owner_token()
        self._source_path = str(AGENT_PATH)
        self._lock = threading.RLock()
        self._live: dict[int, tuple[subprocess.Popen[bytes], str]] = {}
        self._closed = False
        self._exposed: dict[str, set[str]] = {}
        self.swept = sweep_orphan_processes() if sweep else 0
        self.isolation: Literal["namespaces", "rlimits"] = "namespaces"
        self.reason = ""
        self._choose_isolation(isolation)
        register_cleanup(self)

    # -- isolation --------------------------------------------------------------------------------

    def _choose_isolation(self, wanted: Isolation) -> None:
        if wanted == "rlimits":
            self.isolation = "rlimits"
            self.reason = "rlimits only, as configured (no namespace isolation)"
            self._warn_rlimits(self.reason)
            return
        problem = None
        if shutil.which("unshare") is None:
            problem = "the `unshare` command (util-linux) is not installed"
        else:
            try:
                self._exposed = _exposures(_interpreter_paths(self.python)) if os.geteuid() == 0 else {}
                probe = self.create("probe")
                try:
                    probe.ping()
                finally:
                    probe.close()
            except (SandboxError, OSError, subprocess.SubprocessError) as exc:
                problem = f"namespaces could not be set up: {exc}"
        if problem is None:
            self.reason = (
                "user, PID, network and mount namespaces via unshare; read-only host file system, private "
                f"tmpfs work directory, rlimits (as={self.memory_bytes}, nproc={self.pids_limit})"
            )
            return
        if wanted == "namespaces":
            raise SandboxUnavailableError(f"process sandbox with namespaces unavailable: {problem}")
        self.isolation = "rlimits"
        self.reason = f"rlimits only: {problem}"
        self._warn_rlimits(self.reason)

    @staticmethod
    def _warn_rlimits(reason: str) -> None:
        message = (
            f"miroenv process sandbox WITHOUT ISOLATION ({reason}): sandboxed code runs as this user, can "
            "read and write this user's files, reach the network and signal this user's processes. Use the "
            "Docker backend for untrusted code."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logger.warning(message)

    # -- sandboxes --------------------------------------------------------------------------------

    def _agent_config(self, pidns: bool) -> dict[str, Any]:
        bin_dir = str(Path(self.python).parent)
        env = {"PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        env.update(self.extra_env)
        return {"pidns": pidns, "interrupt_grace": self.interrupt_grace, "env": env}

    def _rlimits(self) -> dict[str, int]:
        return {
            "as": self.memory_bytes,
            "nproc": self.pids_limit,
            "fsize": self.fsize_bytes,
            "nofile": self.nofile,
            "cpu": self.cpu_seconds,
        }

    def _namespace_command(self, scratch: str) -> list[str]:
        root = os.geteuid() == 0
        cfg = {
            "python": self.python,
            "source_path": self._source_path,
            "uid": _RANDOM.randrange(1_000_000, 2_000_000_000) if root else None,
            "inner_uid": 1000,
            "tmp_size": self.tmp_bytes,
            "home_size": self.home_bytes,
            "stash": scratch,
            "expose": [[parent, sorted(children)] for parent, children in self._exposed.items()],
            "rlimits": self._rlimits(),
            "agent": self._agent_config(pidns=True),
        }
        flags = [
            "--pid",
            "--fork",
            "--kill-child",
            "--net",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
        ]
        if not root:
            flags = ["--user", "--map-root-user", *flags]
        return [
            "unshare",
            *flags,
            self.python,
            "-I",
            "-B",
            "-S",
            self._source_path,
            "setup",
            json.dumps(cfg),
            OWNER_ARG + self._owner,
        ]

    def _rlimit_command(self, workdir: str) -> list[str]:
        cfg = self._agent_config(pidns=False)
        cfg["workdir"] = workdir
        source = AGENT_PATH.read_text(encoding="utf-8")
        return [
            self.python,
            "-I",
            "-B",
            "-S",
            "-c",
            source,
            "agent",
            json.dumps(cfg),
            OWNER_ARG + self._owner,
        ]

    def _apply_rlimits(self) -> None:
        """In the child before exec (rlimits-only mode): every limit except the per-user process count."""
        for name, value in self._rlimits().items():
            if name != "nproc":
                limit = getattr(resource, f"RLIMIT_{name.upper()}")
                resource.setrlimit(limit, (value, value))

    def create(self, session: str) -> ProcessSandbox:
        """Start a fresh agent for `session` and wait for its greeting."""
        if self._closed:
            raise SandboxError("the process sandbox backend is closed")
        scratch = tempfile.mkdtemp(prefix="miroenv-proc-")
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            if self.isolation == "namespaces":
                os.chmod(scratch, 0o700)
                command = self._namespace_command(scratch)
                preexec = None
                cwd = "/"
            else:
                os.chmod(scratch, 0o700)
                command = self._rlimit_command(scratch)
                preexec = self._apply_rlimits
                cwd = scratch
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
            proc = subprocess.Popen(
                command,
                stdin=in_r,
                stdout=out_w,
                stderr=err_w,
                close_fds=True,
                start_new_session=True,
                cwd=cwd,
                env=env,
                preexec_fn=preexec,
            )
        except OSError as exc:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            shutil.rmtree(scratch, ignore_errors=True)
            raise SandboxUnavailableError(f"cannot start a process sandbox: {exc}") from exc
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        sandbox_id = f"proc-{os.getpid()}-{next(_COUNTER)}"
        client = AgentClient(
            PipeTransport(in_w, out_r, err_r),
            name=sandbox_id,
            max_output=self.max_output,
            interrupt_grace=self.interrupt_grace,
        )
        with self._lock:
            self._live[proc.pid] = (proc, scratch)
        sandbox = ProcessSandbox(client, sandbox_id, session, self._destroy, backend=self.name)
        sandbox.host_pid = proc.pid
        try:
            client.handshake(self.startup_timeout)
        except SandboxError:
            sandbox.close()
            raise
        return sandbox

    def _destroy(self, sandbox: AgentSandbox) -> None:
        assert isinstance(sandbox, ProcessSandbox)
        with self._lock:
            entry = self._live.pop(sandbox.host_pid, None)
        if entry is not None:
            self._kill(*entry)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], scratch: str) -> None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("process sandbox %d did not exit after SIGKILL", proc.pid)
        shutil.rmtree(scratch, ignore_errors=True)

    def agent_pids(self) -> list[int]:
        """Host pids of the live sandboxes' outer processes (for diagnostics and tests)."""
        with self._lock:
            return list(self._live)

    def close(self) -> None:
        """Kill every sandbox this backend started."""
        self._closed = True
        with self._lock:
            entries = list(self._live.values())
            self._live.clear()
        for entry in entries:
            self._kill(*entry)
        unregister_cleanup(self)

    def describe(self) -> str:
        """One line: backend, isolation and why."""
        return f"process backend ({self.isolation}): {self.reason}"


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` is gone within `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process_start_time(pid) is None:
            return True
        time.sleep(0.01)
    return process_start_time(pid) is None
