"""The process backend: the sandbox agent as a local process, for machines without a Docker daemon.

Each sandbox is the agent running as PID 1 of new PID, network, mount, IPC, UTS (and, where the kernel
has them, cgroup) namespaces made with ``unshare``, then entering a user namespace of its own in which it
is the unprivileged uid 1000 with no capabilities and ``no_new_privs``. Before dropping privileges,
``agent.py setup`` makes every mount read-only, gives the sandbox private tmpfs capped in bytes and in
inodes for /tmp, /dev/shm, /var/tmp, /run and /home (the work directory is /home/user, as in the Docker
image), covers the calling user's home directory (and, on a root host, any directory on the
interpreter's path that others may not enter) with an empty read-only tmpfs, and binds the
interpreter's own directories (binary, prefixes, standard library, site-packages) back read-only at the
same place: a virtualenv under /tmp or a home directory, a pyenv build in ~/.pyenv and a system Python
all work. SysV IPC objects live in the sandbox's IPC namespace (its total shared memory capped at the
memory limit) and die with it. On a root host the sandbox's processes run as a fresh random uid, so
process limits are per sandbox.

It never degrades in silence: where namespaces cannot be had (an unprivileged container, a kernel
without user namespaces, no ``unshare``), creating the backend raises `SandboxUnavailableError` saying
why, unless running unisolated was asked for explicitly, with ``isolation="unisolated"`` or
``MIROENV_ALLOW_UNISOLATED=1`` (which lets ``isolation="auto"`` fall back). Unisolated, the agent runs as
the calling user with rlimits in a private temporary work directory, with network, file system and
other processes all reachable; `isolation` (also in step `info` and trajectory headers) then says
``unisolated``.
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

Isolation = Literal["auto", "namespaces", "unisolated"]
ISOLATION_CHOICES: tuple[str, ...] = ("auto", "namespaces", "unisolated")

ALLOW_UNISOLATED_ENV = "MIROENV_ALLOW_UNISOLATED"
"""Set to 1 to let ``isolation="auto"`` run code unisolated where namespaces cannot be had."""

WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/home")
"""The places a sandbox gets as private, writable tmpfs."""

SMALL_TMPFS = 1 << 20
"""Size of the small tmpfs (/var/tmp, /run) in bytes."""

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


_PROBE = (
    "import json, site, sys, sysconfig\n"
    "paths = [sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]\n"
    "paths += [sysconfig.get_path(n) for n in ('stdlib', 'platstdlib', 'purelib', 'platlib')]\n"
    "paths += site.getsitepackages()\n"
    "print(json.dumps(paths))"
)


def allow_unisolated() -> bool:
    """Whether $MIROENV_ALLOW_UNISOLATED says code may run unisolated when namespaces cannot be had."""
    return os.environ.get(ALLOW_UNISOLATED_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve_python(python: str) -> str:
    """The absolute path of interpreter `python` (a path, or a name looked up on PATH)."""
    found = python if os.sep in python else shutil.which(python)
    if not found or not os.path.isfile(found):
        raise SandboxUnavailableError(f"the sandbox interpreter {python!r} was not found")
    return os.path.abspath(found)


def interpreter_paths(python: str) -> list[str]:
    """What an interpreter needs inside the sandbox: its binary, prefixes, standard library, site-packages.

    Each path both as the interpreter reports it and resolved (a virtualenv's ``bin/python`` is a link to
    its base interpreter, which may live elsewhere); only paths that exist, sorted.
    """
    try:
        run = subprocess.run([python, "-I", "-c", _PROBE], capture_output=True, text=True, timeout=60)
        reported = json.loads(run.stdout) if run.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise SandboxUnavailableError(f"cannot run the sandbox interpreter {python}: {exc}") from exc
    if not isinstance(reported, list):
        detail = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
        raise SandboxUnavailableError(f"cannot run the sandbox interpreter {python}: {detail}")
    found: set[str] = set()
    for path in [python, *reported]:
        if isinstance(path, str) and path and os.path.exists(path):
            found.update((os.path.abspath(path), os.path.realpath(path)))
    return sorted(found)


def _under(path: str, root: str) -> bool:
    """Whether `path` is `root` or lies below it."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost_blocked(path: str) -> str | None:
    """The outermost directory on the way to `path` that other users may not enter, if any."""
    parts = Path(path).parts
    for depth in range(2, len(parts)):
        directory = str(Path(*parts[:depth]))
        if not os.stat(directory).st_mode & 0o001:
            return directory
    return None


def home_directories() -> list[str]:
    """The calling user's home directories ($HOME and the password database's), to hide from sandboxes."""
    import pwd

    found = {os.path.expanduser("~")}
    with contextlib.suppress(KeyError):
        found.add(pwd.getpwuid(os.geteuid()).pw_dir)
    return sorted(
        os.path.realpath(home)
        for home in found
        if home and os.path.isdir(home) and os.path.realpath(home) != "/"
    )


def plan_exposure(paths: list[str], *, others_only: bool) -> tuple[list[str], list[str]]:
    """(directories to cover with an empty read-only tmpfs, `paths` to bind back read-only at their place).

    Covered: the calling user's home directories and, when the sandbox user is another uid
    (`others_only`, a root host), the outermost directory on the way to each path that others may not
    enter. Bound back: the paths under a covered or private writable directory. A path that is such a
    directory or contains one is refused, since binding it would expose the host's copy.
    """
    writable = [d for d in WRITABLE_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    hide = {h for h in home_directories() if not any(_under(h, w) for w in writable)}
    if others_only:
        for path in paths:
            blocked = _outermost_blocked(path)
            if blocked is not None and not any(_under(blocked, w) for w in writable):
                hide.add(blocked)
            mode = os.stat(path).st_mode
            needed = 0o005 if os.path.isdir(path) else 0o004
            if mode & needed != needed:
                raise SandboxUnavailableError(
                    f"the sandbox interpreter needs {path}, which other users may not read (mode "
                    f"{mode & 0o777:o}); the sandbox runs as another user"
                )
    covered = sorted(set(writable) | hide)
    bind: list[str] = []
    for path in sorted(paths):
        inside = [root for root in covered if _under(root, path)]
        if inside:
            raise SandboxUnavailableError(
                f"the sandbox interpreter needs {path}, which would expose the host's {inside[0]}"
            )
        if any(_under(path, root) for root in covered) and not any(_under(path, b) for b in bind):
            bind.append(path)
    hide = {h for h in hide if not any(_under(h, other) and h != other for other in hide)}
    return sorted(hide), bind


class ProcessSandbox(AgentSandbox):
    """A process-backend sandbox: the agent behind an ``unshare`` process on this host."""

    host_pid: int = 0
    setup_notes: tuple[str, ...] = ()
    """What the namespace setup could not do (e.g. a sysctl it may not set), from the agent's greeting."""


class ProcessSandboxBackend(SandboxBackend):
    """Sandboxes as local agent processes in fresh namespaces; refuses where those cannot be had.

    `isolation`: ``namespaces`` (required, else `SandboxUnavailableError`), ``auto`` (the same, unless
    $MIROENV_ALLOW_UNISOLATED=1, which allows falling back to unisolated) or ``unisolated`` (rlimits only,
    as the calling user: for trusted code on machines without namespaces).
    """

    name = "process"

    def __init__(
        self,
        *,
        python: str | None = None,
        isolation: Isolation | str = "auto",
        memory_bytes: int = 2 << 30,
        pids_limit: int = 256,
        nofile: int = 1024,
        fsize_bytes: int = 1 << 30,
        cpu_seconds: int = 3600,
        tmp_bytes: int = 256 << 20,
        home_bytes: int = 512 << 20,
        inodes: int = 32768,
        max_output: int = DEFAULT_MAX_OUTPUT,
        interrupt_grace: float = 1.0,
        startup_timeout: float = 15.0,
        env: dict[str, str] | None = None,
        sweep: bool = True,
        unshare: str = "unshare",
    ) -> None:
        if isolation not in ISOLATION_CHOICES:
            raise ValueError(
                f"unknown process sandbox isolation {isolation!r}; valid choices: {', '.join(ISOLATION_CHOICES)}"
            )
        self.python = resolve_python(python or sys.executable)
        self.memory_bytes = memory_bytes
        self.pids_limit = pids_limit
        self.nofile = nofile
        self.fsize_bytes = fsize_bytes
        self.cpu_seconds = cpu_seconds
        self.tmp_bytes = tmp_bytes
        self.home_bytes = home_bytes
        self.inodes = inodes
        self.max_output = max_output
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self.extra_env = dict(env or {})
        self.unshare = unshare
        self.session_id = f"miroenv-{os.getpid()}-{_RANDOM.getrandbits(32):08x}"
        self._owner = owner_token()
        self._source_path = str(AGENT_PATH)
        self._lock = threading.RLock()
        self._live: dict[int, tuple[subprocess.Popen[bytes], str | None]] = {}
        self._closed = False
        self._hide: list[str] = []
        self._bind: list[str] = []
        self._cgroup = os.path.exists("/proc/self/ns/cgroup")
        self.swept = sweep_orphan_processes() if sweep else 0
        self.isolation: Literal["namespaces", "unisolated"] = "namespaces"
        self.reason = ""
        self._choose_isolation(isolation)
        register_cleanup(self)

    # -- isolation --------------------------------------------------------------------------------

    def _choose_isolation(self, wanted: str) -> None:
        """Set up namespaces (checked with a real probe sandbox), or refuse unless unisolated was asked for."""
        if wanted == "unisolated":
            self._go_unisolated("as configured (isolation='unisolated')")
            return
        problem = self._namespace_problem()
        if problem is None:
            return
        if wanted == "auto" and allow_unisolated():
            self._go_unisolated(f"{problem}; {ALLOW_UNISOLATED_ENV}=1 allows running unisolated")
            return
        raise SandboxUnavailableError(
            f"the process sandbox cannot isolate code on this machine: {problem}. Use the Docker backend "
            "(sandbox='docker'), or, for trusted code only, run it unisolated as this user: "
            f"isolation='unisolated' or {ALLOW_UNISOLATED_ENV}=1"
        )

    def _namespace_problem(self) -> str | None:
        """Why namespace sandboxes cannot be had here (None when a probe sandbox answered)."""
        if shutil.which(self.unshare) is None:
            return f"the `{self.unshare}` command (util-linux) is not installed"
        try:
            self._hide, self._bind = plan_exposure(
                interpreter_paths(self.python), others_only=os.geteuid() == 0
            )
            probe = self.create("probe")
            try:
                probe.ping()
            finally:
                probe.close()
        except (SandboxError, OSError, subprocess.SubprocessError) as exc:
            return f"namespaces could not be set up ({exc})"
        spaces = "user, PID, network, mount, IPC, UTS" + (" and cgroup" if self._cgroup else "")
        self.reason = (
            f"{spaces} namespaces via unshare; read-only host file system, private tmpfs work "
            f"directories (capped at {self.inodes} inodes), rlimits (as={self.memory_bytes}, "
            f"nproc={self.pids_limit})"
        )
        if probe.setup_notes:
            self.reason += "; setup notes: " + "; ".join(probe.setup_notes)
        return None

    def _go_unisolated(self, why: str) -> None:
        self.isolation = "unisolated"
        self.reason = f"UNISOLATED, rlimits only: {why}"
        message = (
            f"miroenv process sandbox WITHOUT ISOLATION ({why}): sandboxed code runs as this user, can "
            "read and write this user's files, reach the network and signal this user's processes. Use the "
            "Docker backend for untrusted code."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=4)

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

    def _tmpfs_table(self) -> list[tuple[str, int, str, int]]:
        """(directory, bytes, mode, inodes) of each private writable tmpfs."""
        sizes = {"/tmp": self.tmp_bytes, "/dev/shm": self.tmp_bytes, "/home": self.home_bytes}
        table = []
        for directory in WRITABLE_DIRS:
            size = sizes.get(directory, SMALL_TMPFS)
            inodes = self.inodes if directory in sizes else 1024
            table.append((directory, size, "0755" if directory in ("/run", "/home") else "1777", inodes))
        return table

    def _namespace_command(self) -> list[str]:
        root = os.geteuid() == 0
        page = os.sysconf("SC_PAGE_SIZE")
        cfg = {
            "python": self.python,
            "source_path": self._source_path,
            "uid": _RANDOM.randrange(1_000_000, 2_000_000_000) if root else None,
            "inner_uid": 1000,
            "hostname": "sandbox",
            "tmpfs": self._tmpfs_table(),
            "hide": self._hide,
            "bind": self._bind,
            "sysctls": {
                "kernel/shmmax": self.memory_bytes,
                "kernel/shmall": max(1, self.memory_bytes // page),
                "kernel/shmmni": 64,
                "kernel/msgmni": 64,
            },
            "rlimits": self._rlimits(),
            "agent": self._agent_config(pidns=True),
        }
        flags = ["--pid", "--fork", "--kill-child", "--net", "--mount", "--mount-proc", "--ipc", "--uts"]
        if self._cgroup:
            flags.append("--cgroup")
        flags += ["--propagation", "private"]
        if not root:
            flags = ["--user", "--map-root-user", *flags]
        return [
            self.unshare,
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
        """In the child before exec (unisolated mode): every limit except the per-user process count."""
        for name, value in self._rlimits().items():
            if name != "nproc":
                limit = getattr(resource, f"RLIMIT_{name.upper()}")
                resource.setrlimit(limit, (value, value))

    def create(self, session: str) -> ProcessSandbox:
        """Start a fresh agent for `session` and wait for its greeting."""
        if self._closed:
            raise SandboxError("the process sandbox backend is closed")
        scratch: str | None = None
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            if self.isolation == "namespaces":
                command = self._namespace_command()
                preexec = None
                cwd = "/"
            else:
                scratch = tempfile.mkdtemp(prefix="miroenv-proc-")
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
            if scratch is not None:
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
            hello = client.handshake(self.startup_timeout)
        except SandboxError:
            sandbox.close()
            raise
        sandbox.setup_notes = tuple(str(note) for note in hello.get("notes") or ())
        return sandbox

    def _destroy(self, sandbox: AgentSandbox) -> None:
        assert isinstance(sandbox, ProcessSandbox)
        with self._lock:
            entry = self._live.pop(sandbox.host_pid, None)
        if entry is not None:
            self._kill(*entry)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes], scratch: str | None) -> None:
        """SIGKILL the sandbox and wait until it is gone: `unshare`, and the namespace's init (its child,
        killed by `--kill-child` only once `unshare` has died), so nothing of it outlives `close()`."""
        children = _children(proc.pid)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            logger.warning("process sandbox %d did not exit after SIGKILL", proc.pid)
        for pid in children:
            if not wait_gone(pid, 5):
                logger.warning("process sandbox %d: its namespace's init %d outlived SIGKILL", proc.pid, pid)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    @property
    def exposed_paths(self) -> tuple[str, ...]:
        """The interpreter's paths bound read-only into each sandbox under otherwise private directories."""
        return tuple(self._bind)

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


def _children(pid: int) -> list[int]:
    """The pids of `pid`'s child processes (none if it is gone), each with its start time checked later."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            return [int(child) for child in fh.read().split()]
    except (OSError, ValueError):
        return []


def _dead(pid: int) -> bool:
    """Whether process `pid` has exited: no longer listed, or a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` has exited within `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _dead(pid):
            return True
        time.sleep(0.01)
    return _dead(pid)
