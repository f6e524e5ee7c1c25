"""Kernel objects through `ResearchEnv.step`, as a model would make them, on both backends: SysV shared
memory, message queues and semaphores stay in their episode's sandbox (the next episode and the host
never see them, and their memory is released when the env closes), and a million empty files fill the
sandbox's inode cap instead of host memory."""

from __future__ import annotations

import ast
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from miroenv import ResearchEnv, Task
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox.base import SandboxBackend
from miroenv.tools.python import sandbox_public_id

from .conftest import LIMITS

SHM_BYTES = 128 << 20

LIBC = (
    "import ctypes, errno\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]\n"
    "libc.shmat.restype = ctypes.c_void_p\n"
    "libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]\n"
    "libc.shmdt.argtypes = [ctypes.c_void_p]\n"
    "class Msg(ctypes.Structure):\n"
    "    _fields_ = [('mtype', ctypes.c_long), ('mtext', ctypes.c_char * 64)]\n"
)

PLANT = LIBC + (
    "shm = libc.shmget({key}, {size}, 0o1666)\n"
    "addr = libc.shmat(shm, None, 0)\n"
    "ctypes.memset(addr, 7, {size})\n"
    "libc.shmdt(addr)\n"
    "msq = libc.msgget({key}, 0o1666)\n"
    "sent = libc.msgsnd(msq, ctypes.byref(Msg(1, b'planted by episode 1')), 64, 0)\n"
    "sem = libc.semget({key}, 1, 0o1666)\n"
    "print(shm >= 0, addr not in (None, 2**64 - 1), sent == 0, sem >= 0)"
)

LOOK = LIBC + (
    "found = []\n"
    "for get in (lambda: libc.shmget({key}, 0, 0), lambda: libc.msgget({key}, 0), lambda: libc.semget({key}, 0, 0)):\n"
    "    found.append(get() >= 0 or errno.errorcode[ctypes.get_errno()])\n"
    "msq = libc.msgget({key}, 0)\n"
    "message = Msg()\n"
    "got = libc.msgrcv(msq, ctypes.byref(message), 64, 0, 0o4000) if msq >= 0 else -1\n"
    "print(found, message.mtext if got > 0 else None)"
)


def call(tool: str, **arguments: object) -> str:
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))


def stdout_of(observation: str) -> str:
    """The stdout of a `CommandResult(...)` observation."""
    assert observation.startswith("CommandResult("), observation
    start = observation.index("stdout=") + len("stdout=")
    end = observation.index(", exit_code=", start)
    text = ast.literal_eval(observation[start:end])
    assert isinstance(text, str)
    return text


class Episode:
    """One episode with one sandbox, driven through `step()` like a model would."""

    def __init__(self, env: ResearchEnv, task_id: str) -> None:
        self.env = env
        env.reset(options={"task": Task(task_id=task_id, question="q", answer="a")})
        observation = env.step(call("create_sandbox"))[0]
        self.sid = sandbox_public_id(task_id, 1)
        assert self.sid in observation, observation

    def python(self, code: str) -> str:
        """Run `code` with `run_python_code`; its stdout."""
        return stdout_of(self.env.step(call("run_python_code", sandbox_id=self.sid, code_block=code))[0])


@pytest.fixture(params=["process", "docker"])
def ipc_backend(request: pytest.FixtureRequest) -> SandboxBackend:
    """The backend under attack: each of the two."""
    found: SandboxBackend = request.getfixturevalue(f"{request.param}_backend")
    return found


@pytest.fixture
def env(demo_dir: Path, ipc_backend: SandboxBackend) -> Iterator[ResearchEnv]:
    environment = ResearchEnv(demo_dir, sandbox=ipc_backend)
    yield environment
    environment.close()


def host_ipc_keys() -> set[int]:
    """The keys of every SysV IPC object the host's IPC namespace holds."""
    keys = set()
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            keys.update(int(line.split()[0]) for line in list(fh)[1:] if line.strip())
    return keys


def host_shmem() -> int:
    """Bytes of shared memory (SysV, tmpfs) the host holds, from /proc/meminfo."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def test_sysv_ipc_stays_in_its_episode_and_off_the_host(env: ResearchEnv) -> None:
    key = random.SystemRandom().randrange(1 << 20, 1 << 30)
    first = Episode(env, "plant")
    assert first.python(PLANT.format(key=key, size=1 << 20)) == "True True True True\n"
    seen = first.python(LOOK.format(key=key))
    assert seen == "[True, True, True] b'planted by episode 1'\n", "the lookup must find what is there"
    assert key not in host_ipc_keys(), "a sandbox's SysV IPC objects must not be in the host's namespace"
    second = Episode(env, "look")
    assert second.python(LOOK.format(key=key)) == "['ENOENT', 'ENOENT', 'ENOENT'] None\n"
    assert key not in host_ipc_keys()


def test_shared_memory_is_released_when_the_env_closes(demo_dir: Path, ipc_backend: SandboxBackend) -> None:
    env = ResearchEnv(demo_dir, sandbox=ipc_backend)
    try:
        before = host_shmem()
        episode = Episode(env, "pin")
        key = random.SystemRandom().randrange(1 << 20, 1 << 30)
        assert episode.python(PLANT.format(key=key, size=SHM_BYTES)) == "True True True True\n"
        pinned = host_shmem()
        assert pinned - before > SHM_BYTES * 3 // 4, "the segment's pages must be counted while it lives"
    finally:
        env.close()
    deadline = time.monotonic() + 60
    while host_shmem() > pinned - SHM_BYTES * 3 // 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host_shmem() <= pinned - SHM_BYTES * 3 // 4, "the segment outlived its sandbox"


def inode_nr() -> int:
    """Inodes the host kernel has allocated (first field of /proc/sys/fs/inode-nr)."""
    return int(Path("/proc/sys/fs/inode-nr").read_text().split()[0])


@pytest.mark.parametrize("directory", ["/tmp", "/home/user", "/dev/shm"])
def test_a_million_empty_files_hit_the_inode_cap(env: ResearchEnv, directory: str) -> None:
    code = (
        "import errno, os\n"
        f"os.makedirs('{directory}/many', exist_ok=True)\n"
        "made = 0\n"
        "try:\n"
        "    for i in range(10**6):\n"
        f"        os.close(os.open(f'{directory}/many/{{i}}', os.O_CREAT | os.O_WRONLY, 0o600))\n"
        "        made += 1\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno], made)\n"
    )
    episode = Episode(env, "inodes")
    before = inode_nr()
    name, made = episode.python(code).split()
    assert name == "ENOSPC" and 1000 < int(made) <= LIMITS["inodes"], (name, made)
    assert inode_nr() - before < 500_000, "the host must not have paid for the files the cap refused"
    assert episode.python(f"import shutil; shutil.rmtree('{directory}/many'); print('ok')") == "ok\n"
    assert episode.python("open('after.txt', 'w').write('room again')") == "10\n"
