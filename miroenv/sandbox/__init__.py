"""Code execution sandboxes: the interface, and the backends that implement it."""

from miroenv.sandbox.base import (
    ExecResult,
    NoSandboxBackend,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxUnavailableError,
)

__all__ = [
    "ExecResult",
    "NoSandboxBackend",
    "Sandbox",
    "SandboxBackend",
    "SandboxError",
    "SandboxUnavailableError",
]
