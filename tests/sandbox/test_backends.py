"""Backend machinery: container hardening, the warm pool and its cap, leak sweeps after the host is
killed, clean-up on SIGTERM, and backend selection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from miroenv.sandbox.base import NoSandboxBackend, SandboxError, SandboxUnavailableError
from miroenv.sandbox.docker import LABEL, LABEL_OWNER, LABEL_SESSION, DockerSandbox, DockerSandboxBackend
from miroenv.sandbox.process import OWNER_ARG, ProcessSandboxBackend, owner_alive
from miroenv.sandbox.select import make_backend, select_backend

from .conftest import LIMITS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _docker_api() -> Any:
    import docker  # type: ignore[import-untyped]

    return docker.from_env().api


def _containers_of(owner: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _docker_api().containers(
        all=True, filters={"label": f"{LABEL_OWNER}={owner}"}
    )
    return found


def _spawn(script: str) -> subprocess.Popen[str]:
    """A Python child running `script` (from the project root), its first stdout line awaited."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
    )


def _first_line(child: subprocess.Popen[str], timeout: float = 60) -> str:
    assert child.stdout is not None
    line = ""
    reader = threading.Thread(target=lambda: globals().__setitem__("_line", child.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    line = str(globals().pop("_line", ""))
    if not line:
        child.kill()
        raise AssertionError(f"child printed nothing: {child.stderr.read() if child.stderr else ''}")
    return line.strip()


# -- Docker hardening and pool -----------------------------------------------------------------------


def test_container_hardening(docker_backend: DockerSandboxBackend) -> None:
    sandbox = docker_backend.create("hardening")
    try:
        info = _docker_api().inspect_container(sandbox.container_id)
    finally:
        sandbox.close()
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == LIMITS["pids_limit"]
    assert host["Memory"] == host["MemorySwap"] == LIMITS["memory_bytes"]
    assert host["CpuQuota"] > 0 and host["CpuPeriod"] == 100_000
    assert {u["Name"] for u in host["Ulimits"]} == {"nofile", "fsize"}
    assert host["LogConfig"]["Type"] == "none"
    assert set(host["Tmpfs"]) == {"/home/user", "/tmp", "/dev/shm"}
    assert all(f"size={LIMITS['tmp_bytes']}" in host["Tmpfs"][p] for p in ("/home/user", "/tmp"))
    assert all(f"nr_inodes={LIMITS['inodes']}" in options for options in host["Tmpfs"].values())
    assert host["IpcMode"] == "private" and host["UTSMode"] in ("", "private")
    assert info["Config"]["Hostname"] == "sandbox"
    assert info["Config"]["User"] == "1000:1000"
    labels = info["Config"]["Labels"]
    assert labels[LABEL] == "1" and labels[LABEL_SESSION] == docker_backend.session_id
    assert owner_alive(labels[LABEL_OWNER])


def test_pool_hands_out_ready_containers_and_never_reuses_them(docker_backend: DockerSandboxBackend) -> None:
    assert docker_backend.wait_ready(2, timeout=60)
    ready = [s.container_id for s in docker_backend._ready]
    first = docker_backend.create("episode-1")
    assert first.container_id == ready[0], "handed out from the pool, not started on demand"
    assert first.session == "episode-1"
    first.close()
    second = docker_backend.create("episode-2")
    second.close()
    assert second.container_id != first.container_id
    assert docker_backend.drain_removals(timeout=60)
    import docker

    with pytest.raises(docker.errors.NotFound):
        _docker_api().inspect_container(first.container_id)


def test_a_dead_pooled_container_is_skipped(docker_backend: DockerSandboxBackend) -> None:
    assert docker_backend.wait_ready(2, timeout=60)
    doomed = docker_backend._ready[0].container_id
    _docker_api().kill(doomed)
    time.sleep(0.5)
    sandbox = docker_backend.create("after-death")
    try:
        assert sandbox.container_id != doomed
        assert sandbox.run_python("6 * 7", timeout=10).stdout == "42\n"
    finally:
        sandbox.close()


def test_pool_cap_waits_then_fails_clearly(docker_image: str) -> None:
    backend = DockerSandboxBackend(docker_image, pool_size=0, max_containers=1, acquire_timeout=0.5, **LIMITS)
    try:
        held = backend.create("holder")
        start = time.monotonic()
        with pytest.raises(SandboxError, match="pool exhausted"):
            backend.create("starved")
        assert time.monotonic() - start >= 0.5
        backend.acquire_timeout = 60
        got: list[DockerSandbox] = []
        waiter = threading.Thread(target=lambda: got.append(backend.create("waiter")))
        waiter.start()
        time.sleep(0.3)
        assert not got, "must wait while the cap is reached"
        held.close()
        waiter.join(60)
        assert got and got[0].run_python("1 + 1", timeout=10).stdout == "2\n"
        got[0].close()
    finally:
        backend.close()


def test_close_removes_every_container(docker_image: str) -> None:
    backend = DockerSandboxBackend(docker_image, pool_size=1, **LIMITS)
    backend.create("in-use")
    assert backend.wait_ready(1, timeout=60)
    owner = backend._owner
    backend.close()
    assert [c for c in _containers_of(owner) if c["Labels"].get(LABEL_SESSION) == backend.session_id] == []


def test_close_while_the_pool_fills_leaves_nothing(docker_image: str) -> None:
    backend = DockerSandboxBackend(docker_image, pool_size=3, jitter=0, **LIMITS)
    time.sleep(0.2)
    backend.close()
    mine = [c for c in _containers_of(backend._owner) if c["Labels"].get(LABEL_SESSION) == backend.session_id]
    assert mine == []


def test_host_sigkill_then_startup_sweep_removes_docker_orphans(docker_image: str) -> None:
    child = _spawn(
        f"""
        import time
        from miroenv.sandbox.docker import DockerSandboxBackend
        backend = DockerSandboxBackend({docker_image!r}, pool_size=1, sweep=False, memory_bytes={LIMITS["memory_bytes"]})
        sandbox = backend.create("doomed")
        backend.wait_ready(1)
        print(backend._owner, flush=True)
        time.sleep(600)
        """
    )
    owner = _first_line(child)
    orphans = {c["Id"] for c in _containers_of(owner)}
    assert len(orphans) == 2
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not owner_alive(owner)
    sweeper = DockerSandboxBackend(docker_image, pool_size=0, **LIMITS)
    try:
        assert orphans <= set(sweeper.swept)
        assert sweeper.drain_removals(timeout=60)
        assert _containers_of(owner) == []
    finally:
        sweeper.close()


# -- process backend lifetime ------------------------------------------------------------------------


def _owner_processes(owner: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if (OWNER_ARG + owner).encode() in fh.read().split(b"\0"):
                        found.append(int(name))
            except OSError:
                pass
    return found


def test_host_sigkill_then_startup_sweep_kills_process_orphans(
    process_backend: ProcessSandboxBackend,
) -> None:
    child = _spawn(
        """
        import time
        from miroenv.sandbox.process import ProcessSandboxBackend
        backend = ProcessSandboxBackend(isolation="namespaces", sweep=False)
        sandbox = backend.create("doomed")
        pid = sandbox.host_pid
        agent = int(open(f"/proc/{pid}/task/{pid}/children").read().split()[0])
        print(backend._owner, agent, flush=True)
        time.sleep(600)
        """
    )
    owner, agent = _first_line(child).split()
    # A stopped agent cannot notice that its host is gone: only the sweep can remove it.
    os.kill(int(agent), signal.SIGSTOP)
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.3)
    assert int(agent) in _owner_processes(owner)
    sweeper = ProcessSandboxBackend(isolation="namespaces", **LIMITS)
    try:
        assert sweeper.swept >= 1
        deadline = time.monotonic() + 10
        while _owner_processes(owner) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _owner_processes(owner) == []
    finally:
        sweeper.close()


def test_sandboxes_end_with_their_host_process() -> None:
    child = _spawn(
        """
        import time
        from miroenv.sandbox.process import ProcessSandboxBackend
        backend = ProcessSandboxBackend(isolation="namespaces", sweep=False)
        sandbox = backend.create("doomed")
        print(backend._owner, flush=True)
        time.sleep(600)
        """
    )
    owner = _first_line(child)
    assert _owner_processes(owner)
    child.send_signal(signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while _owner_processes(owner) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _owner_processes(owner) == [], "the agent must exit when its host's channel closes"


def test_sigterm_cleans_up_and_chains_the_previous_handler() -> None:
    child = _spawn(
        """
        import os, signal, sys, time
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            os._exit(0)
        signal.signal(signal.SIGTERM, previous)
        from miroenv.sandbox.process import ProcessSandboxBackend
        backend = ProcessSandboxBackend(isolation="namespaces", sweep=False)
        sandbox = backend.create("doomed")
        print(backend._owner, flush=True)
        time.sleep(600)
        """
    )
    owner = _first_line(child)
    assert _owner_processes(owner)
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=30)
    assert "previous handler ran" in out
    assert _owner_processes(owner) == []


# -- selection ---------------------------------------------------------------------------------------


def test_none_backend_says_why() -> None:
    backend = make_backend("none")
    assert isinstance(backend, NoSandboxBackend)
    with pytest.raises(SandboxUnavailableError, match="disabled"):
        backend.create("s")


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        make_backend("vm")


def test_auto_falls_back_to_the_process_backend_and_says_why() -> None:
    selection = select_backend("auto", image="miroenv-no-such-image:never", process_options=LIMITS)
    try:
        assert selection.kind == "process"
        assert "Docker unavailable" in selection.reason and "namespaces" in selection.reason
        sandbox = selection.backend.create("s")
        assert sandbox.run_python("6 * 7", timeout=10).stdout == "42\n"
        sandbox.close()
    finally:
        selection.backend.close()


def test_auto_picks_docker_when_daemon_and_image_are_there(docker_image: str) -> None:
    selection = select_backend("auto", image=docker_image, docker_options={"pool_size": 0, **LIMITS})
    try:
        assert selection.kind == "docker"
        assert docker_image in selection.reason
    finally:
        selection.backend.close()


def test_unisolated_on_request_warns_loudly_and_still_runs_code() -> None:
    with pytest.warns(RuntimeWarning, match="WITHOUT ISOLATION"):
        backend = ProcessSandboxBackend(isolation="unisolated", **LIMITS)
    try:
        assert backend.isolation == "unisolated"
        sandbox = backend.create("s")
        sandbox.run_python("kept = 5", timeout=10)
        result = sandbox.run_python("while True:\n    pass", timeout=1)
        assert result.timed_out and not result.state_lost
        assert sandbox.run_python("kept", timeout=10).stdout == "5\n"
        assert sandbox.run_command("sleep 30", timeout=1).timed_out
        sandbox.close()
    finally:
        backend.close()


def test_process_close_returns_only_once_every_sandbox_process_is_gone() -> None:
    """`close()` waits for the namespace's init too (killed by `--kill-child` only after `unshare` dies),
    so nothing carrying the owner mark is left the moment it returns."""
    for _ in range(5):
        backend = ProcessSandboxBackend(**LIMITS)
        sandboxes = [backend.create(f"s{i}") for i in range(2)]
        for sandbox in sandboxes:
            assert sandbox.run_python("import time; x = 6 * 7; print(x)", timeout=30).stdout.strip() == "42"
        assert _owner_processes(backend._owner)
        backend.close()
        assert _owner_processes(backend._owner) == []
