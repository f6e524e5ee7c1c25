"""The sandbox interface the Python tools use; backends (Docker, process) implement it."""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict


class ExecResult(BaseModel):
    """What one command or Python cell produced."""

    model_config = ConfigDict(frozen=True)

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = 0
    error: str | None = None
    timed_out: bool = False
    state_lost: bool = False
    truncated: bool = False


class SandboxError(Exception):
    """The sandbox itself failed (died, unreachable, out of capacity): an `infra` error, not the model's."""


class SandboxUnavailableError(SandboxError):
    """No sandbox backend can serve this request."""


class Sandbox(ABC):
    """One isolated execution environment, owned by a single episode."""

    sandbox_id: str

    @abstractmethod
    def run_python(self, code: str, timeout: float) -> ExecResult:
        """Run `code` in the persistent Python worker (globals survive between calls)."""

    @abstractmethod
    def run_command(self, command: str, timeout: float) -> ExecResult:
        """Run a shell command (`bash -c`)."""

    @abstractmethod
    def write_file(self, path: str, data: bytes) -> None:
        """Create or replace a file inside the sandbox."""

    @abstractmethod
    def read_file(self, path: str) -> bytes:
        """Read a file from inside the sandbox."""

    def read_file_into(self, path: str, sink: Callable[[bytes], object], max_bytes: int) -> int:
        """Copy a file out of the sandbox into `sink` piece by piece and return its size; one larger than
        `max_bytes` raises `OSError(EFBIG)`. This default reads it whole; agent sandboxes stream it."""
        data = self.read_file(path)
        if len(data) > max_bytes:
            raise OSError(errno.EFBIG, f"file is larger than {max_bytes} bytes", path)
        sink(data)
        return len(data)

    @abstractmethod
    def close(self) -> None:
        """Destroy the sandbox; it is never reused."""


class SandboxBackend(ABC):
    """Hands out fresh sandboxes."""

    name: str
    isolation: str = "unspecified"
    """How code is kept from the host: ``container`` (Docker), ``namespaces`` or ``unisolated`` (process
    backend), ``disabled`` (no code runs); reported in step `info` and trajectory headers."""

    @abstractmethod
    def create(self, session: str) -> Sandbox:
        """A new sandbox for `session` (an episode id); raises `SandboxError` when none can be had."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources (pools, daemons)."""


class NoSandboxBackend(SandboxBackend):
    """The backend used when code execution is not configured: every request fails with a clear reason."""

    name = "none"
    isolation = "disabled"

    def __init__(self, reason: str = "no sandbox backend is configured for this environment") -> None:
        self.reason = reason

    def create(self, session: str) -> Sandbox:
        raise SandboxUnavailableError(f"code execution is unavailable: {self.reason}")
