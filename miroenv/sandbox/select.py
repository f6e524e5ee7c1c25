"""Choosing a sandbox backend: `make_backend("auto" | "docker" | "process" | "none")`, saying which and why.

``auto`` takes Docker when the SDK is installed, a daemon answers and the sandbox image is present;
otherwise the process backend in namespaces. Where neither can isolate code, ``auto`` (like
``process``) raises one `SandboxUnavailableError` saying why and how to opt into running unisolated
(``MIROENV_ALLOW_UNISOLATED=1``); it never quietly runs code unisolated. The choice and its reason are
logged (a warning whenever ``auto`` falls back) and returned by `select_backend`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Literal, get_args

from miroenv.sandbox.base import NoSandboxBackend, SandboxBackend, SandboxError, SandboxUnavailableError

logger = logging.getLogger(__name__)

BackendKind = Literal["auto", "docker", "process", "none"]
BACKEND_KINDS: tuple[str, ...] = get_args(BackendKind)


def check_backend_kind(kind: str) -> str:
    """`kind` if it names a backend; else a ValueError listing the valid names."""
    if kind not in BACKEND_KINDS:
        raise ValueError(f"unknown sandbox backend {kind!r}; valid choices: {', '.join(BACKEND_KINDS)}")
    return kind


KIND_ENV = "MIROENV_SANDBOX"
"""Environment variable read when no kind is given (default ``auto``)."""


@dataclass(frozen=True)
class BackendSelection:
    """The backend picked, its kind, and why it (and not another) was picked."""

    backend: SandboxBackend
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"sandbox backend: {self.kind} ({self.reason})"


def _docker(image: str | None, options: dict[str, Any]) -> SandboxBackend:
    from miroenv.sandbox.docker import DockerSandboxBackend

    return DockerSandboxBackend(image, **options)


def _process(options: dict[str, Any]) -> Any:
    from miroenv.sandbox.process import ProcessSandboxBackend

    return ProcessSandboxBackend(**options)


def select_backend(
    kind: BackendKind | str | None = None,
    *,
    image: str | None = None,
    docker_options: dict[str, Any] | None = None,
    process_options: dict[str, Any] | None = None,
) -> BackendSelection:
    """Build the backend `kind` names (default: $MIROENV_SANDBOX, else ``auto``) and say why."""
    kind = kind or os.environ.get(KIND_ENV) or "auto"
    docker_options = dict(docker_options or {})
    process_options = dict(process_options or {})
    if kind == "none":
        reason = "code execution disabled (sandbox='none')"
        return _announce(BackendSelection(NoSandboxBackend(reason), "none", reason))
    if kind == "docker":
        backend = _docker(image, docker_options)
        return _announce(BackendSelection(backend, "docker", _describe(backend, "requested")))
    if kind == "process":
        backend = _process(process_options)
        return _announce(BackendSelection(backend, "process", f"requested; {backend.reason}"))
    check_backend_kind(kind)

    from miroenv.sandbox.docker import default_image, docker_status

    image = image or default_image()
    usable, why_not = docker_status(image)
    if usable:
        try:
            backend = _docker(image, docker_options)
            return _announce(BackendSelection(backend, "docker", _describe(backend, why_not)))
        except SandboxError as exc:
            why_not = str(exc)
    try:
        backend = _process(process_options)
    except SandboxError as exc:
        raise SandboxUnavailableError(f"no sandbox for code: Docker unavailable ({why_not}); {exc}") from exc
    reason = f"Docker unavailable ({why_not}); using the process backend: {backend.reason}"
    return _announce(BackendSelection(backend, "process", reason), fallback=True)


def _describe(backend: SandboxBackend, why: str) -> str:
    describe = getattr(backend, "describe", None)
    return f"{why}; {describe()}" if callable(describe) else why


def _announce(selection: BackendSelection, fallback: bool = False) -> BackendSelection:
    logger.log(logging.WARNING if fallback else logging.INFO, "%s", selection)
    return selection


def make_backend(
    kind: BackendKind | str | None = None,
    *,
    image: str | None = None,
    docker_options: dict[str, Any] | None = None,
    process_options: dict[str, Any] | None = None,
) -> SandboxBackend:
    """The backend for `kind` (see `select_backend`, which also returns the reason)."""
    return select_backend(
        kind, image=image, docker_options=docker_options, process_options=process_options
    ).backend


__all__ = [
    "BACKEND_KINDS",
    "BackendKind",
    "BackendSelection",
    "SandboxUnavailableError",
    "check_backend_kind",
    "make_backend",
    "select_backend",
]
