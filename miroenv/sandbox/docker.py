"""The Docker backend: one hardened container per sandbox, from a warm pool, driven over its attach socket.

Each container runs the agent (``python3 -I -B -S -c <agent.py text>``) as its main process, PID 1, with no
network, a read-only root file system, tmpfs capped in bytes and inodes for /home/user (the work
directory), /tmp and /dev/shm, a private IPC namespace and host name,
every capability dropped, ``no-new-privileges``, a non-root user, a process limit, memory equal to
memory+swap, a CPU quota, nofile/fsize ulimits, logging off and labels naming the owning process. The
host attaches to the container's stdin/stdout before starting it and keeps that socket: a tool call is
one frame each way on it, with no Docker API call.

Warm pool: background threads keep up to `pool_size` containers created, started and health-checked
(the agent's greeting, then a Python no-op that also warms the worker) ahead of demand, with a random delay before each creation so many processes do not
hit the daemon in step. `create()` pops a ready container (O(1)); if none is ready it starts one itself,
as long as the hard cap `max_containers` (ready + starting + in use + being removed) allows. **When the
cap is reached, `create()` waits up to `acquire_timeout` seconds for capacity and then raises
`SandboxError`.** Containers are never reused: `close()` hands them to background removal.

Leak control: at start the backend removes labelled containers whose owner process (pid plus start time,
on this host and boot) is gone; at interpreter exit and on SIGTERM (chaining any earlier handler) it
removes everything it created. Containers are created with stdin-once, so if the host process is killed
its agents see end of input and exit, and the next backend's sweep removes the stopped containers.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import queue
import random
import socket
import threading
import time
from typing import Any

from miroenv.sandbox.base import SandboxBackend, SandboxError, SandboxUnavailableError
from miroenv.sandbox.client import (
    DEFAULT_MAX_OUTPUT,
    AgentClient,
    AgentSandbox,
    AttachSocketTransport,
    register_cleanup,
    unregister_cleanup,
)
from miroenv.sandbox.process import AGENT_PATH, owner_alive, owner_token

_RANDOM = random.SystemRandom()
"""Names, uids and jitter: from the OS, never from (or disturbing) the global `random` state episodes seed."""

logger = logging.getLogger(__name__)

DEFAULT_IMAGE = "miroenv-sandbox:latest"
"""The sandbox image built by `miroenv sandbox build` (override with `image=` or $MIROENV_SANDBOX_IMAGE)."""

IMAGE_ENV = "MIROENV_SANDBOX_IMAGE"
LABEL = "miroenv.sandbox"
LABEL_OWNER = "miroenv.owner"
LABEL_HOST = "miroenv.host"
LABEL_SESSION = "miroenv.session"
WORKDIR = "/home/user"

_COUNTER = itertools.count(1)


def default_image() -> str:
    """The image name to use: $MIROENV_SANDBOX_IMAGE, else `DEFAULT_IMAGE`."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def host_identity() -> str:
    """``<hostname>/<boot id>``: containers labelled with another boot of this host have dead owners."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = "unknown"
    return f"{socket.gethostname()}/{boot}"


def _import_docker() -> Any:
    try:
        import docker  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise SandboxUnavailableError(
            "the docker Python SDK is not installed (pip install 'miroenv[docker]')"
        ) from exc
    return docker


def docker_status(image: str | None = None, timeout: float = 30.0) -> tuple[bool, str]:
    """(usable, reason): whether a Docker daemon answers and has the sandbox image."""
    image = image or default_image()
    try:
        docker = _import_docker()
    except SandboxUnavailableError as exc:
        return False, str(exc)
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        return False, f"no Docker daemon answers ({type(exc).__name__}: {exc})"
    try:
        client.api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return (
            False,
            f"the Docker daemon has no image {image!r} (build it: `miroenv sandbox build --offline`)",
        )
    except Exception as exc:
        return False, f"cannot inspect image {image!r}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return True, f"Docker daemon reachable and image {image!r} present"


class DockerSandbox(AgentSandbox):
    """A sandbox that is one container."""

    container_id: str = ""


class DockerSandboxBackend(SandboxBackend):
    """Hardened containers from a warm pool; see the module docstring for the pool and leak policies."""

    name = "docker"
    isolation = "container"

    def __init__(
        self,
        image: str | None = None,
        *,
        pool_size: int = 2,
        max_containers: int = 32,
        acquire_timeout: float = 60.0,
        memory_bytes: int = 1 << 30,
        cpus: float = 1.0,
        pids_limit: int = 256,
        nofile: int = 1024,
        fsize_bytes: int = 1 << 30,
        tmp_bytes: int = 256 << 20,
        home_bytes: int = 512 << 20,
        shm_bytes: int = 64 << 20,
        inodes: int = 32768,
        user: str = "1000:1000",
        python: str = "python3",
        max_output: int = DEFAULT_MAX_OUTPUT,
        interrupt_grace: float = 1.0,
        startup_timeout: float = 30.0,
        jitter: float = 0.05,
        fill_threads: int = 2,
        env: dict[str, str] | None = None,
        log_driver: str = "none",
        docker_client: Any = None,
        sweep: bool = True,
    ) -> None:
        docker = _import_docker()
        self._docker = docker
        self.image = image or default_image()
        self.pool_size = max(0, pool_size)
        self.max_containers = max(1, max_containers)
        self.acquire_timeout = acquire_timeout
        self.memory_bytes = memory_bytes
        self.cpus = cpus
        self.pids_limit = pids_limit
        self.nofile = nofile
        self.fsize_bytes = fsize_bytes
        self.tmp_bytes = tmp_bytes
        self.home_bytes = home_bytes
        self.shm_bytes = shm_bytes
        self.inodes = inodes
        self.user = user
        self.python = python
        self.max_output = max_output
        self.interrupt_grace = interrupt_grace
        self.startup_timeout = startup_timeout
        self.jitter = jitter
        self.extra_env = dict(env or {})
        self.log_driver = log_driver
        self.session_id = f"miroenv-{os.getpid()}-{_RANDOM.getrandbits(32):08x}"
        self._owner = owner_token()
        self._host = host_identity()
        self._source = AGENT_PATH.read_text(encoding="utf-8")
        try:
            self._client = docker_client or docker.from_env(timeout=max(30, int(startup_timeout)))
            self._api = self._client.api
            self._api.ping()
        except Exception as exc:
            raise SandboxUnavailableError(f"no Docker daemon answers: {exc}") from exc
        try:
            self._api.inspect_image(self.image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailableError(
                f"Docker image {self.image!r} not found; build it with `miroenv sandbox build --offline`"
            ) from exc
        self._cond = threading.Condition()
        self._ready: collections.deque[DockerSandbox] = collections.deque()
        self._in_use: dict[str, DockerSandbox] = {}
        self._starting = 0
        self._removing: set[str] = set()
        self._closed = False
        self.last_error: str | None = None
        self._failures = 0
        self._removals: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        for index in range(2):
            self._spawn(self._remove_loop, f"miroenv-docker-rm-{index}")
        self.swept = self.sweep_orphans() if sweep else []
        for index in range(max(1, fill_threads) if self.pool_size else 0):
            self._spawn(self._fill_loop, f"miroenv-docker-fill-{index}")
        register_cleanup(self)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- containers -------------------------------------------------------------------------------

    def _labels(self) -> dict[str, str]:
        return {LABEL: "1", LABEL_OWNER: self._owner, LABEL_HOST: self._host, LABEL_SESSION: self.session_id}

    def container_settings(self) -> dict[str, Any]:
        """The hardening applied to every container (the keyword arguments of `create_host_config`)."""
        ulimit = self._docker.types.Ulimit
        return {
            "network_mode": "none",
            "read_only": True,
            # Every tmpfs is capped in inodes too: a million empty files must fill it, not host memory.
            "tmpfs": {
                WORKDIR: f"rw,exec,nosuid,nodev,size={self.home_bytes},nr_inodes={self.inodes},mode=0755,"
                "uid=1000,gid=1000",
                "/tmp": f"rw,exec,nosuid,nodev,size={self.tmp_bytes},nr_inodes={self.inodes},mode=1777",
                "/dev/shm": f"rw,nosuid,nodev,noexec,size={self.shm_bytes},nr_inodes={self.inodes},mode=1777",
            },
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "pids_limit": self.pids_limit,
            "mem_limit": self.memory_bytes,
            "memswap_limit": self.memory_bytes,
            "cpu_period": 100_000,
            "cpu_quota": max(1000, int(self.cpus * 100_000)),
            "ulimits": [
                ulimit(name="nofile", soft=self.nofile, hard=self.nofile),
                ulimit(name="fsize", soft=self.fsize_bytes, hard=self.fsize_bytes),
            ],
            "log_config": self._docker.types.LogConfig(
                type=self.log_driver,
                config={"max-size": "1m", "max-file": "1"} if self.log_driver == "json-file" else {},
            ),
            # No Docker init: it would run as the sandbox user with the control channel as its stdio,
            # reachable by sandboxed code through /proc/1/fd. The agent is PID 1 and reaps orphans itself.
            "init": False,
            # Private SysV IPC and host name: nothing planted there outlives the container or reaches the host.
            "ipc_mode": "private",
            "sysctls": {
                "kernel.shmmax": str(self.memory_bytes),
                "kernel.shmall": str(max(1, self.memory_bytes // os.sysconf("SC_PAGE_SIZE"))),
                "kernel.shmmni": "64",
                "kernel.msgmni": "64",
            },
        }

    def _start_container(self) -> DockerSandbox:
        """Create, attach, start and health-check one container (the cold path)."""
        name = f"miroenv-{os.getpid()}-{next(_COUNTER)}-{_RANDOM.getrandbits(24):06x}"
        agent_cfg = {
            "pidns": True,
            "workdir": WORKDIR,
            "interrupt_grace": self.interrupt_grace,
            "env": self.extra_env,
        }
        container_id = ""
        try:
            created = self._api.create_container(
                self.image,
                entrypoint=[self.python, "-I", "-B", "-S", "-c", self._source],
                command=["agent", json.dumps(agent_cfg)],
                user=self.user,
                working_dir=WORKDIR,
                environment={"HOME": WORKDIR, "LANG": "C.UTF-8"},
                labels=self._labels(),
                name=name,
                hostname="sandbox",
                stdin_open=True,
                detach=False,
                tty=False,
                host_config=self._api.create_host_config(**self.container_settings()),
                use_config_proxy=False,
            )
            container_id = created["Id"]
            attached = self._api.attach_socket(
                container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            raw = getattr(attached, "_sock", attached)
            self._api.start(container_id)
        except Exception as exc:
            if container_id:
                self._schedule_removal(container_id)
            raise SandboxError(f"cannot start a sandbox container from {self.image!r}: {exc}") from exc
        client = AgentClient(
            AttachSocketTransport(raw, keepalive=attached),
            name=container_id[:12],
            max_output=self.max_output,
            interrupt_grace=self.interrupt_grace,
        )
        sandbox = DockerSandbox(client, container_id[:12], "", self._release, backend=self.name)
        sandbox.container_id = container_id
        try:
            client.handshake(self.startup_timeout)
            warm = client.run_python("None", self.startup_timeout, warmup=True)
            if warm.exit_code != 0:
                raise SandboxError(f"the sandbox's Python worker does not work: {warm.error} {warm.stderr}")
        except SandboxError:
            client.close()
            self._schedule_removal(container_id)
            raise
        return sandbox

    # -- pool -------------------------------------------------------------------------------------

    def _live(self) -> int:
        return len(self._ready) + self._starting + len(self._in_use) + len(self._removing)

    def _fill_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not (
                    len(self._ready) + self._starting < self.pool_size and self._live() < self.max_containers
                ):
                    self._cond.wait()
                if self._closed:
                    return
                self._starting += 1
            time.sleep(_RANDOM.uniform(0, self.jitter))
            try:
                sandbox = self._start_container()
            except Exception as exc:
                with self._cond:
                    self._starting -= 1
                    self._failures += 1
                    self.last_error = str(exc)
                    failures = self._failures
                    self._cond.notify_all()
                logger.warning("sandbox pool: container start failed (%d in a row): %s", failures, exc)
                time.sleep(min(10.0, 0.2 * 2 ** min(failures, 6)))
                continue
            with self._cond:
                self._starting -= 1
                self._failures = 0
                if self._closed:
                    # close() is waiting for starters to finish; it removes what is in `_removing`.
                    sandbox.client.close()
                    self._removing.add(sandbox.container_id)
                else:
                    self._ready.append(sandbox)
                self._cond.notify_all()

    def create(self, session: str) -> DockerSandbox:
        """A fresh, health-checked container for `session`: from the pool when one is ready."""
        deadline = time.monotonic() + self.acquire_timeout
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxError("the Docker sandbox backend is closed")
                while self._ready:
                    sandbox = self._ready.popleft()
                    if sandbox.client.alive():
                        return self._hand_out(sandbox, session)
                    self._schedule_removal(sandbox.container_id)
                if self._live() < self.max_containers:
                    self._starting += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(
                        f"sandbox pool exhausted: {len(self._in_use)} containers in use, "
                        f"{self._starting} starting, {len(self._removing)} being removed (max_containers="
                        f"{self.max_containers}); waited {self.acquire_timeout:g} s"
                    )
                self._cond.wait(left)
        try:
            started = self._start_container()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            self._cond.notify_all()
            if not self._closed:
                return self._hand_out(started, session)
            started.client.close()
            self._removing.add(started.container_id)
        raise SandboxError("the Docker sandbox backend was closed while this sandbox started")

    def _hand_out(self, sandbox: DockerSandbox, session: str) -> DockerSandbox:
        sandbox.session = session
        self._in_use[sandbox.container_id] = sandbox
        self._cond.notify_all()
        return sandbox

    def _release(self, sandbox: AgentSandbox) -> None:
        assert isinstance(sandbox, DockerSandbox)
        with self._cond:
            self._in_use.pop(sandbox.container_id, None)
            self._schedule_removal(sandbox.container_id)

    # -- removal ----------------------------------------------------------------------------------

    def _schedule_removal(self, container_id: str) -> None:
        """Queue a container for background removal (call with or without the lock)."""
        with self._cond:
            if container_id and container_id not in self._removing:
                self._removing.add(container_id)
                self._removals.put(container_id)

    def _remove_now(self, container_id: str) -> None:
        try:
            self._api.remove_container(container_id, force=True, v=True)
        except self._docker.errors.NotFound:
            pass
        except self._docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: another removal of it is already in progress
                logger.warning("cannot remove sandbox container %s: %s", container_id[:12], exc)
        except Exception as exc:
            logger.warning("cannot remove sandbox container %s: %s", container_id[:12], exc)
        with self._cond:
            self._removing.discard(container_id)
            self._cond.notify_all()

    def _remove_loop(self) -> None:
        while True:
            container_id = self._removals.get()
            if container_id is None:
                return
            self._remove_now(container_id)

    def drain_removals(self, timeout: float = 60.0) -> bool:
        """Wait until every container queued for removal is gone; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._removing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def sweep_orphans(self) -> list[str]:
        """Queue removal of labelled containers whose owner process is dead; returns their ids."""
        hostname, _, boot = self._host.partition("/")
        orphans = []
        try:
            found = self._api.containers(all=True, filters={"label": LABEL})
        except Exception as exc:
            logger.warning("sandbox leak sweep failed: %s", exc)
            return []
        for info in found:
            labels = info.get("Labels") or {}
            their_host, _, their_boot = str(labels.get(LABEL_HOST, "")).partition("/")
            if their_host != hostname:
                continue
            if their_boot != boot or not owner_alive(str(labels.get(LABEL_OWNER, ""))):
                orphans.append(info["Id"])
        with self._cond:
            for container_id in orphans:
                self._schedule_removal(container_id)
        if orphans:
            logger.info("sandbox leak sweep: removing %d orphaned containers", len(orphans))
        return orphans

    # -- lifetime ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Pool counters: ready, starting, in use, being removed."""
        with self._cond:
            return {
                "ready": len(self._ready),
                "starting": self._starting,
                "in_use": len(self._in_use),
                "removing": len(self._removing),
            }

    def wait_ready(self, count: int | None = None, timeout: float = 60.0) -> bool:
        """Wait until the pool holds `count` (default: `pool_size`) ready containers."""
        want = self.pool_size if count is None else count
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < want:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Stop filling the pool and remove every container this backend created (waits for removal)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            # Containers still starting are removed by their starters; wait for them (bounded).
            deadline = time.monotonic() + self.startup_timeout + 10
            while self._starting and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            leftovers = [s.container_id for s in self._ready] + list(self._in_use)
            clients = [s.client for s in self._ready] + [s.client for s in self._in_use.values()]
            self._ready.clear()
            self._in_use.clear()
            pending = set(self._removing) | set(leftovers)
            self._removing |= pending
            self._cond.notify_all()
        for client in clients:
            client.close()
        workers = []
        for cid in sorted(pending):
            worker = threading.Thread(target=self._remove_now, args=(cid,), daemon=True)
            try:
                worker.start()
            except RuntimeError:  # no new threads at interpreter shutdown: remove it here
                self._remove_now(cid)
            else:
                workers.append(worker)
        for worker in workers:
            worker.join(timeout=30)
        for _ in range(2):
            self._removals.put(None)
        unregister_cleanup(self)

    def describe(self) -> str:
        """One line: backend, image, limits."""
        return (
            f"docker backend: image {self.image!r}, pool {self.pool_size} (max {self.max_containers}), "
            f"memory {self.memory_bytes >> 20} MiB, {self.cpus:g} CPU, pids {self.pids_limit}"
        )
