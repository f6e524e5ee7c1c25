"""Code execution sandboxes: the interface, and the backends that implement it.

`make_backend("auto")` picks the Docker backend (hardened containers from a warm pool) when a daemon and
the image are available, else the process backend (namespaces; where those cannot be had it refuses
unless running unisolated was asked for, see `process.py`); both run the same in-sandbox agent (`agent.py`) and speak the same framed protocol (`framing.py`,
`client.py`).
"""

from miroenv.sandbox.base import (
    ExecResult,
    NoSandboxBackend,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxUnavailableError,
)
from miroenv.sandbox.client import AgentClient, AgentGoneError, AgentSandbox
from miroenv.sandbox.docker import DockerSandboxBackend, docker_status
from miroenv.sandbox.process import ProcessSandboxBackend
from miroenv.sandbox.select import BackendSelection, make_backend, select_backend

__all__ = [
    "AgentClient",
    "AgentGoneError",
    "AgentSandbox",
    "BackendSelection",
    "DockerSandboxBackend",
    "ExecResult",
    "NoSandboxBackend",
    "ProcessSandboxBackend",
    "Sandbox",
    "SandboxBackend",
    "SandboxError",
    "SandboxUnavailableError",
    "docker_status",
    "make_backend",
    "select_backend",
]
