"""Fixtures for the sandbox tests: both backends with small limits and short timeouts.

Docker tests need a daemon and the sandbox image; without them they skip, saying how to enable them,
except on CI (CI=true), where a missing daemon or image is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from miroenv.sandbox.base import SandboxBackend, SandboxError
from miroenv.sandbox.client import AgentSandbox
from miroenv.sandbox.docker import DockerSandboxBackend, default_image, docker_status
from miroenv.sandbox.process import ProcessSandboxBackend

BACKENDS = ["process", "docker"]

LIMITS: dict[str, Any] = {
    "memory_bytes": 384 << 20,
    "pids_limit": 96,
    "nofile": 256,
    "tmp_bytes": 32 << 20,
    "home_bytes": 32 << 20,
    "interrupt_grace": 0.5,
}
"""Small limits so memory, disk and process attacks hit them fast."""

TIMEOUT = 2.0
"""The per-call timeout used by attacks that must time out."""

DOCKER_HINT = (
    "Docker sandbox tests need a Docker daemon and the sandbox image ({reason}). To enable them: install "
    "the SDK (pip install 'miroenv[docker]'), start dockerd (e.g. `nohup dockerd --bridge=none "
    "--iptables=false &`), and build the image (`miroenv sandbox build --offline`) or point "
    "MIROENV_SANDBOX_IMAGE at an image with python3 and bash."
)


def skip_or_fail(message: str) -> None:
    """Skip on a developer machine, fail on CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def process_backend() -> Iterator[ProcessSandboxBackend]:
    """The process backend with namespaces (skips where they are unavailable, fails on CI)."""
    try:
        backend = ProcessSandboxBackend(isolation="namespaces", **LIMITS)
    except SandboxError as exc:
        skip_or_fail(f"process sandboxes with namespaces are unavailable here: {exc}")
        raise
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image the Docker tests use."""
    image = default_image()
    usable, reason = docker_status(image)
    if not usable:
        skip_or_fail(DOCKER_HINT.format(reason=reason))
    return image


@pytest.fixture(scope="session")
def docker_backend(docker_image: str) -> Iterator[DockerSandboxBackend]:
    """The Docker backend with a small warm pool."""
    backend = DockerSandboxBackend(docker_image, pool_size=2, max_containers=12, cpus=1.0, **LIMITS)
    yield backend
    backend.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    """Each backend in turn."""
    found: SandboxBackend = request.getfixturevalue(f"{request.param}_backend")
    return found


@pytest.fixture
def sandbox(backend: SandboxBackend) -> Iterator[AgentSandbox]:
    """A fresh sandbox; afterwards (whatever the test did to it) a new sandbox must work."""
    box = backend.create("test")
    assert isinstance(box, AgentSandbox)
    yield box
    box.close()
    fresh = backend.create("after-test")
    try:
        result = fresh.run_python("6 * 7", timeout=10)
        assert result.stdout == "42\n", f"the next sandbox does not work after this test: {result}"
    finally:
        fresh.close()
