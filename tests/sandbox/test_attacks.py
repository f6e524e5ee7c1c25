"""DESIGN.md §10's attacks, each against both backends; after each, a fresh sandbox must work (the
`sandbox` fixture checks that) and, where the sandbox itself survives, so must its next call."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.client import AgentSandbox
from miroenv.sandbox.docker import DockerSandbox
from miroenv.sandbox.process import ProcessSandbox, process_start_time

from .conftest import TIMEOUT

COUNT_PROCESSES = (
    "import os\n"
    "len([p for p in os.listdir('/proc') if p.isdigit() and open(f'/proc/{p}/stat').read().split(') ')[1][0] != 'Z'])"
)


def process_count(sandbox: AgentSandbox) -> int:
    """Live processes in the sandbox (the agent, the worker, and the counting process itself)."""
    return int(sandbox.run_python(COUNT_PROCESSES, timeout=10).stdout)


def assert_works(sandbox: AgentSandbox) -> None:
    result = sandbox.run_python("6 * 7", timeout=10)
    assert result.stdout == "42\n", result


def _rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Samples this process's RSS while the block runs; yields a list that ends up holding the growth."""
    baseline = _rss_bytes()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    growth: list[int] = []
    try:
        yield growth
    finally:
        done.set()
        sampler.join()
        growth.append(peak[0] - baseline)


# -- runaway CPU -------------------------------------------------------------------------------------


def test_infinite_loop_is_interrupted_and_state_kept(sandbox: AgentSandbox) -> None:
    sandbox.run_python("kept = 'yes'", timeout=10)
    start = time.monotonic()
    result = sandbox.run_python("while True:\n    pass", timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 3
    assert result.timed_out and not result.state_lost
    assert "timed out" in (result.error or "")
    assert "KeyboardInterrupt" in result.stderr
    assert sandbox.run_python("kept", timeout=10).stdout == "'yes'\n"


def test_infinite_loop_swallowing_base_exception_is_killed(sandbox: AgentSandbox) -> None:
    sandbox.run_python("kept = 1", timeout=10)
    code = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    start = time.monotonic()
    result = sandbox.run_python(code, timeout=TIMEOUT)
    assert time.monotonic() - start < TIMEOUT + 4
    assert result.timed_out and result.state_lost
    after = sandbox.run_python("kept", timeout=10)
    assert after.error == "NameError: name 'kept' is not defined"
    assert_works(sandbox)


def test_shell_infinite_loop_is_killed(sandbox: AgentSandbox) -> None:
    sandbox.run_python("kept = 1", timeout=10)
    result = sandbox.run_command("trap '' INT TERM; while :; do :; done", timeout=TIMEOUT)
    assert result.timed_out and result.exit_code is None
    assert sandbox.run_python("kept", timeout=10).stdout == "1\n", (
        "a shell timeout must not cost Python state"
    )


# -- process bombs -----------------------------------------------------------------------------------


def test_python_fork_bomb(sandbox: AgentSandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except BaseException:\n        pass"
    result = sandbox.run_python(code, timeout=TIMEOUT)
    assert result.timed_out
    assert process_count(sandbox) <= 3
    assert_works(sandbox)


def test_shell_fork_bomb_timing_out(sandbox: AgentSandbox) -> None:
    result = sandbox.run_command(":(){ :|:& };:; sleep 30", timeout=TIMEOUT)
    assert result.timed_out
    assert process_count(sandbox) <= 3
    assert_works(sandbox)


def test_shell_fork_bomb_left_in_the_background(sandbox: AgentSandbox) -> None:
    sandbox.run_command(":(){ :|:& };:", timeout=TIMEOUT)
    time.sleep(0.5)
    assert_works(sandbox)
    follow = sandbox.run_command("echo still here", timeout=TIMEOUT * 2)
    assert follow.stdout == "still here\n", "a command that cannot fork must sweep the bomb and retry"


def test_double_forked_daemon_dies_with_a_python_timeout(sandbox: AgentSandbox) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        open('/tmp/daemon.pid', 'w').write(str(os.getpid()))\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "while True:\n"
        "    pass\n"
    )
    result = sandbox.run_python(code, timeout=TIMEOUT)
    assert result.timed_out
    pid = int(sandbox.read_file("/tmp/daemon.pid"))
    assert sandbox.run_python(f"import os; os.path.exists('/proc/{pid}')", timeout=10).stdout == "False\n"
    assert process_count(sandbox) <= 3


def test_double_forked_daemon_dies_with_a_shell_timeout(sandbox: AgentSandbox) -> None:
    command = "(setsid sh -c 'echo $$ > /tmp/d.pid; while :; do sleep 0.05; done' &); sleep 30"
    result = sandbox.run_command(command, timeout=TIMEOUT)
    assert result.timed_out
    pid = int(sandbox.read_file("/tmp/d.pid"))
    assert sandbox.run_python(f"import os; os.path.exists('/proc/{pid}')", timeout=10).stdout == "False\n"


# -- memory ------------------------------------------------------------------------------------------


def test_memory_bomb_is_reported_as_out_of_memory(sandbox: AgentSandbox) -> None:
    sandbox.run_python("kept = 1", timeout=10)
    code = "hoard = []\nwhile True:\n    hoard.append(b'x' * (16 << 20))"
    result = sandbox.run_python(code, timeout=30)
    assert "out of memory" in (result.error or ""), result
    assert not result.timed_out
    assert_works(sandbox)


def test_one_huge_allocation_is_reported_as_out_of_memory(sandbox: AgentSandbox) -> None:
    result = sandbox.run_python("b = bytearray(64 << 30)", timeout=30)
    assert "out of memory" in (result.error or ""), result
    assert_works(sandbox)


# -- output floods -----------------------------------------------------------------------------------


def test_100_mb_of_stdout_is_truncated_without_reaching_host_memory(sandbox: AgentSandbox) -> None:
    code = "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(100 * 1024):\n    sys.stdout.write(line)\nprint('END')"
    with peak_rss_growth() as growth:
        result = sandbox.run_python(code, timeout=60)
    assert not result.timed_out, result.error
    assert result.truncated
    assert result.stdout.startswith("xxxx") and result.stdout.endswith("END\n")
    assert "bytes truncated" in result.stdout
    assert len(result.stdout) < 100_000
    assert growth[0] < 16 << 20, f"host RSS grew by {growth[0] >> 20} MiB"
    assert_works(sandbox)


def test_shell_flood_is_truncated(sandbox: AgentSandbox) -> None:
    with peak_rss_growth() as growth:
        result = sandbox.run_command("head -c 104857600 /dev/zero; echo END", timeout=60)
    assert result.truncated and result.exit_code == 0
    assert result.stdout.endswith("END\n") and len(result.stdout) < 100_000
    assert growth[0] < 16 << 20


def test_10_mb_line_without_newline_is_truncated(sandbox: AgentSandbox) -> None:
    with peak_rss_growth() as growth:
        result = sandbox.run_python("import sys\n_ = sys.stdout.write('y' * (10 << 20))", timeout=30)
    assert result.truncated
    assert result.stdout.startswith("yyy") and result.stdout.endswith("yyy")
    head, _, tail = result.stdout.partition("\n[... ")
    assert "\n" not in head and tail.endswith("truncated ...]\n" + "y" * (len(tail) - tail.index("]\n") - 2))
    assert growth[0] < 16 << 20
    assert_works(sandbox)


def test_invalid_utf8_and_nul_bytes(sandbox: AgentSandbox) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'ok\\xff\\xfe\\x00end\\n')\n_ = sys.stderr.buffer.write(b'\\xc3\\x28\\x00')"
    result = sandbox.run_python(code, timeout=10)
    assert result.stdout == "ok\ufffd\ufffd\ufffdend\n"
    assert result.stderr == "\ufffd(\ufffd"
    shell = sandbox.run_command(r"printf 'a\377b\000c'", timeout=10)
    assert shell.stdout == "a\ufffdb\ufffdc"
    assert sandbox.run_python("'\\udcff'.encode('utf-8', 'surrogatepass')", timeout=10).exit_code == 0


# -- disk and descriptors ----------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["/tmp", "/home/user"])
def test_filling_a_directory_stops_at_its_cap(sandbox: AgentSandbox, directory: str) -> None:
    result = sandbox.run_command(f"dd if=/dev/zero of={directory}/fill bs=1M count=4096", timeout=30)
    assert result.exit_code != 0
    assert "No space left on device" in result.stderr
    size = int(sandbox.run_command(f"stat -c %s {directory}/fill", timeout=10).stdout)
    assert size <= 40 << 20
    assert_works(sandbox)
    sandbox.run_command(f"rm -f {directory}/fill", timeout=10)
    sandbox.write_file(f"{directory}/after.txt", b"room again")


def test_exhausting_file_descriptors(sandbox: AgentSandbox) -> None:
    code = (
        "import errno\nfds = []\n"
        "try:\n    while True:\n        fds.append(open('/dev/null'))\n"
        "except OSError as exc:\n    print(errno.errorcode[exc.errno], len(fds) < 5000)"
    )
    result = sandbox.run_python(code, timeout=10)
    assert result.stdout == "EMFILE True\n", result
    assert sandbox.run_command("echo shell ok", timeout=10).stdout == "shell ok\n"
    assert_works(sandbox)


# -- network and privileges --------------------------------------------------------------------------


def test_network_egress_is_blocked(sandbox: AgentSandbox) -> None:
    code = (
        "import socket\n"
        "for host in ('1.1.1.1', '8.8.8.8'):\n"
        "    try:\n"
        "        socket.create_connection((host, 53), timeout=2)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as exc:\n"
        "        print('blocked')\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80)\n"
        "    print('RESOLVED')\n"
        "except OSError:\n"
        "    print('dns blocked')\n"
    )
    result = sandbox.run_python(code, timeout=20)
    assert result.stdout == "blocked\nblocked\ndns blocked\n", result


def test_runs_as_non_root_without_capabilities(sandbox: AgentSandbox) -> None:
    result = sandbox.run_command(
        "id -u; grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs)' /proc/self/status", timeout=10
    )
    lines = result.stdout.split("\n")
    assert lines[0] == "1000"
    status = dict(line.split(":\t") for line in lines[1:] if line)
    assert status == {
        "CapPrm": "0000000000000000",
        "CapEff": "0000000000000000",
        "CapAmb": "0000000000000000",
        "NoNewPrivs": "1",
    }
    assert sandbox.run_command("su -c true root </dev/null", timeout=10).exit_code != 0


def test_writing_the_root_file_system_fails(sandbox: AgentSandbox) -> None:
    code = (
        "import errno\n"
        "for path in ('/etc/miroenv-planted', '/usr/miroenv-planted', '/miroenv-planted', '/var/miroenv-planted'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print(errno.errorcode[exc.errno])\n"
    )
    result = sandbox.run_python(code, timeout=10)
    assert "WROTE" not in result.stdout
    assert set(result.stdout.split()) <= {"EROFS", "EACCES"}
    assert not os.path.exists("/etc/miroenv-planted")


# -- killing the agent -------------------------------------------------------------------------------


def test_kill_everything_from_inside_leaves_the_agent_standing(sandbox: AgentSandbox) -> None:
    result = sandbox.run_command("kill -9 -1; kill -9 1; echo survived", timeout=10)
    assert result.stdout == "survived\n"
    after = sandbox.run_python("6 * 7", timeout=10)
    assert after.stdout == "42\n" and after.state_lost


def test_worker_exit_loses_state_but_not_the_sandbox(sandbox: AgentSandbox) -> None:
    sandbox.run_python("kept = 1", timeout=10)
    result = sandbox.run_python("import os\nos._exit(3)", timeout=10)
    assert result.state_lost and result.error == "the Python worker exited with code 3"
    assert sandbox.run_python("'kept' in globals()", timeout=10).stdout == "False\n"


def _kill_agent_from_outside(sandbox: AgentSandbox) -> None:
    if isinstance(sandbox, ProcessSandbox):
        os.kill(_agent_host_pid(sandbox), 9)
    else:
        assert isinstance(sandbox, DockerSandbox)
        import docker  # type: ignore[import-untyped]

        docker.from_env().api.kill(sandbox.container_id)


def test_a_killed_agent_is_an_infra_error(sandbox: AgentSandbox) -> None:
    _kill_agent_from_outside(sandbox)
    with pytest.raises(SandboxError):
        sandbox.run_python("1", timeout=5)
    with pytest.raises(SandboxError):
        sandbox.run_command("true", timeout=5)


def _agent_host_pid(sandbox: AgentSandbox) -> int:
    if isinstance(sandbox, ProcessSandbox):
        with open(f"/proc/{sandbox.host_pid}/task/{sandbox.host_pid}/children") as fh:
            return int(fh.read().split()[0])
    assert isinstance(sandbox, DockerSandbox)
    import docker

    return int(docker.from_env().api.inspect_container(sandbox.container_id)["State"]["Pid"])


def test_a_hung_agent_hits_the_host_hard_deadline(sandbox: AgentSandbox) -> None:
    pid = _agent_host_pid(sandbox)
    sandbox.client.hard_margin = 1.0
    os.kill(pid, 19)  # SIGSTOP
    try:
        start = time.monotonic()
        with pytest.raises(SandboxError, match="hard deadline"):
            sandbox.run_python("1", timeout=0.5)
        assert time.monotonic() - start < 0.5 + sandbox.client.interrupt_grace + 1.0 + 1.0
    finally:
        os.kill(pid, 18)  # SIGCONT


# -- isolation between sandboxes ---------------------------------------------------------------------


def test_sandboxes_do_not_see_each_other(backend: object) -> None:
    from miroenv.sandbox.base import SandboxBackend

    assert isinstance(backend, SandboxBackend)
    first = backend.create("episode-k")
    second = backend.create("episode-k+1")
    try:
        first.run_command("echo secret > /home/user/planted; echo secret > /tmp/planted", timeout=10)
        first.run_python("import builtins; builtins.planted = 1", timeout=10)
        check = second.run_command("ls /home/user /tmp; cat /home/user/planted /tmp/planted", timeout=10)
        assert "planted" not in check.stdout and check.exit_code != 0
        assert (
            second.run_python("import builtins; hasattr(builtins, 'planted')", timeout=10).stdout == "False\n"
        )
        pids = second.run_command("ls /proc | grep -c '^[0-9]'", timeout=10).stdout
        assert int(pids) <= 5, "agent, worker, shell, ls, grep"
    finally:
        first.close()
        second.close()
    third = backend.create("episode-k+2")
    # Only the read-only mount points of a virtualenv living under /tmp may show there.
    exposed = sorted(
        {p.split("/")[2] for p in getattr(backend, "exposed_paths", ()) if p.startswith("/tmp/")}
    )
    try:
        assert third.run_command("ls -A /home/user /tmp", timeout=10).stdout.split() == [
            "/home/user:",
            "/tmp:",
            *exposed,
        ]
    finally:
        third.close()


def test_process_start_time_identifies_processes() -> None:
    assert process_start_time(os.getpid()) is not None
    assert process_start_time(2**22 + 12345) is None
