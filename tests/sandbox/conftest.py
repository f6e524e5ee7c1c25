"""Fixtures for the sandbox tests: both backends with small limits and short timeouts.

Docker tests need a daemon and the sandbox image; without them they skip, saying how to enable them,
except on CI (CI=true), where a missing daemon or image is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from miroenv.sandbox.base import SandboxBackend, SandboxError
from miroenv.sandbox.client import AgentSandbox
from miroenv.sandbox.docker import DockerSandboxBackend, default_image, docker_status
from miroenv.sandbox.process import ProcessSandboxBackend

BACKENDS = ["process", "docker", "process_tmp_venv", "process_home_venv"]
"""Every sandbox test runs on Docker and on the process backend with this interpreter, a virtualenv
under the temporary directory and one under the home directory (private in the sandbox, exposed
read-only only for the interpreter's own paths)."""

LIMITS: dict[str, Any] = {
    "memory_bytes": 384 << 20,
    "pids_limit": 96,
    "nofile": 256,
    "tmp_bytes": 32 << 20,
    "home_bytes": 32 << 20,
    "interrupt_grace": 0.5,
    "inodes": 16384,
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
    backend = namespace_backend()
    yield backend
    backend.close()


def make_venv(parent: Path) -> str:
    """A virtualenv under `parent` (no pip; this interpreter's site-packages through a .pth); its python."""
    venv = parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "miroenv-test.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return str(python)


@pytest.fixture(scope="session")
def tmp_venv_python() -> Iterator[str]:
    """The python of a virtualenv under the temporary directory (like a checkout cloned into /tmp)."""
    parent = Path(tempfile.mkdtemp(prefix="miroenv-venv-", dir=tempfile.gettempdir()))
    yield make_venv(parent)
    shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def home_venv_python() -> Iterator[str]:
    """The python of a virtualenv under the home directory (the usual place for a user's venvs)."""
    parent = Path(tempfile.mkdtemp(prefix=".miroenv-venv-", dir=Path.home()))
    yield make_venv(parent)
    shutil.rmtree(parent, ignore_errors=True)


def namespace_backend(**options: Any) -> ProcessSandboxBackend:
    """A process backend that must isolate (skips where it cannot, fails on CI)."""
    try:
        return ProcessSandboxBackend(isolation="namespaces", **{**LIMITS, **options})
    except SandboxError as exc:
        skip_or_fail(f"process sandboxes with namespaces are unavailable here: {exc}")
        raise


@pytest.fixture(scope="session")
def process_tmp_venv_backend(tmp_venv_python: str) -> Iterator[ProcessSandboxBackend]:
    """The process backend running a virtualenv's interpreter from under the temporary directory."""
    backend = namespace_backend(python=tmp_venv_python)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def process_home_venv_backend(home_venv_python: str) -> Iterator[ProcessSandboxBackend]:
    """The process backend running a virtualenv's interpreter from under the home directory."""
    backend = namespace_backend(python=home_venv_python)
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
