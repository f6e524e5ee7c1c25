"""The process backend isolates wherever its interpreter lives, or refuses; never unisolated in silence.

Namespaces are made unavailable for real: the backend runs in a child started with ``unshare --user``
and no id mapping, where creating further namespaces fails with EPERM, as in an unprivileged container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from miroenv import ResearchEnv, Task
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox.base import SandboxUnavailableError
from miroenv.sandbox.process import ALLOW_UNISOLATED_ENV, ProcessSandboxBackend
from miroenv.sandbox.select import select_backend
from miroenv.tools.python import sandbox_public_id
from miroenv.trajectory import RecordTrajectory, iter_trajectories

from .conftest import LIMITS, make_venv, namespace_backend, skip_or_fail


def probe(paths: list[str]) -> str:
    """Code printing the interpreter and uid, whether its prefix is mounted read-only, and which of
    `paths` it can read."""
    return (
        "import os, sys\n"
        "print(sys.executable, os.getuid())\n"
        "mounts = [line.split() for line in open('/proc/self/mountinfo')]\n"
        "over = [(len(m[4]), i, m) for i, m in enumerate(mounts)\n"
        "        if sys.prefix == m[4] or sys.prefix.startswith(m[4].rstrip('/') + '/')]\n"
        "print('ro' in max(over)[2][5].split(','))\n"
        f"for path in {sorted(paths)!r}:\n"
        "    try:\n        open(path).read()\n        print('READ', path)\n"
        "    except OSError as exc:\n        print(type(exc).__name__, path)\n"
    )


def call(tool: str, **arguments: object) -> str:
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))


@pytest.fixture(scope="module")
def user_home_venv() -> Iterator[str]:
    """A virtualenv in a /home/<user> directory others may not enter (mode 0750), as a user would have."""
    home = Path(tempfile.mkdtemp(prefix="miroenv-u-", dir="/home"))
    home.chmod(0o750)
    yield make_venv(home)
    shutil.rmtree(home, ignore_errors=True)


def _system_python() -> str:
    found = shutil.which("python3", path="/usr/bin:/bin")
    if found is None:
        skip_or_fail("no system python3 in /usr/bin")
    assert found is not None
    return found


@pytest.mark.parametrize("place", ["this", "base", "system", "tmp", "home", "user_home"])
def test_isolates_wherever_the_interpreter_lives(
    place: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A virtualenv under /tmp or a home directory, the base (pyenv here) and the system Python: all run
    isolated, with their own paths read-only and the host's /tmp and home directory out of sight."""
    python = {
        "this": lambda: sys.executable,
        "base": lambda: getattr(sys, "_base_executable", sys.executable),
        "system": _system_python,
        "tmp": lambda: request.getfixturevalue("tmp_venv_python"),
        "home": lambda: request.getfixturevalue("home_venv_python"),
        "user_home": lambda: request.getfixturevalue("user_home_venv"),
    }[place]()
    host_tmp = Path(tempfile.mkdtemp(prefix="miroenv-planted-")) / "secret.txt"
    host_tmp.write_text("host /tmp secret")
    host_home = Path(tempfile.mkdtemp(prefix=".miroenv-planted-", dir=Path.home())) / "secret.txt"
    host_home.write_text("host home secret")
    backend = namespace_backend(python=python)
    try:
        assert backend.isolation == "namespaces"
        sandbox = backend.create("placement")
        try:
            result = sandbox.run_python(probe([str(host_tmp), str(host_home)]), timeout=30)
            assert result.stdout.splitlines() == [
                f"{python} 1000",
                "True",
                *sorted(f"FileNotFoundError {path}" for path in (host_tmp, host_home)),
            ], result
        finally:
            sandbox.close()
    finally:
        backend.close()
        shutil.rmtree(host_tmp.parent, ignore_errors=True)
        shutil.rmtree(host_home.parent, ignore_errors=True)


def test_an_unreadable_interpreter_path_is_refused_by_name(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root host runs sandboxes as another user")
    locked = tmp_path / "locked"
    locked.mkdir()
    python = make_venv(locked)
    Path(python).parent.parent.chmod(0o700)
    with pytest.raises(SandboxUnavailableError, match="other users may not read"):
        ProcessSandboxBackend(python=python, isolation="namespaces", **LIMITS)


# -- refusing where namespaces cannot be had ---------------------------------------------------------


def _without_namespaces(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child that cannot create namespaces (an unmapped user namespace)."""
    if shutil.which("unshare") is None:
        skip_or_fail("util-linux `unshare` is not installed")
    environment = {k: v for k, v in os.environ.items() if k != ALLOW_UNISOLATED_ENV}
    environment.update(env)
    return subprocess.run(
        ["unshare", "--user", sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def test_process_and_auto_refuse_with_one_clear_error_when_namespaces_are_unavailable() -> None:
    child = _without_namespaces(
        """
        from miroenv.sandbox.base import SandboxUnavailableError
        from miroenv.sandbox.select import select_backend
        for kind in ("process", "auto"):
            try:
                select_backend(kind, image="miroenv-no-such-image:never")
            except SandboxUnavailableError as exc:
                print(kind, "REFUSED", exc)
            else:
                print(kind, "RAN")
        """
    )
    lines = child.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["process", "REFUSED"], ["auto", "REFUSED"]], child
    for line in lines:
        assert "Operation not permitted" in line and f"{ALLOW_UNISOLATED_ENV}=1" in line
        assert "isolation='unisolated'" in line
    assert "Docker unavailable" in lines[1]
    assert "WITHOUT ISOLATION" not in child.stderr


def test_the_cli_refusal_is_one_line_without_a_traceback() -> None:
    child = _without_namespaces(
        "import sys\nfrom miroenv.cli import app\nsys.argv = ['miroenv', 'sandbox', 'check', '--backend', "
        "'process']\napp()"
    )
    assert child.returncode == 2, child
    assert "Traceback" not in child.stderr + child.stdout
    errors = [line for line in (child.stderr + child.stdout).splitlines() if "cannot isolate" in line]
    assert len(errors) == 1 and errors[0].startswith("error: "), child


def test_opting_in_runs_unisolated_and_says_so_in_info_and_header(demo_dir: Path, tmp_path: Path) -> None:
    child = _without_namespaces(
        f"""
        from miroenv import ResearchEnv, Task
        from miroenv.protocol.calls import ToolCall
        from miroenv.protocol.mcp_xml import McpXmlFormat
        from miroenv.trajectory import RecordTrajectory
        env = RecordTrajectory(ResearchEnv({str(demo_dir)!r}, sandbox="auto"), {str(tmp_path / "t.jsonl")!r})
        env.reset(options={{"task": Task(task_id="u", question="q", answer="a")}})
        make = ToolCall(server="tool-python", name="create_sandbox", arguments={{}})
        obs, _, _, _, info = env.step(str(McpXmlFormat().render_call(make)))
        print(info["sandbox_isolation"], obs)
        env.close()
        """,
        **{ALLOW_UNISOLATED_ENV: "1", "MIROENV_SANDBOX_IMAGE": "miroenv-no-such-image:never"},
    )
    assert child.stdout.startswith("unisolated Sandbox created with sandbox_id:"), child
    assert child.stderr.count("WITHOUT ISOLATION") == 1, child.stderr
    (trajectory,) = iter_trajectories(tmp_path / "t.jsonl")
    assert trajectory.header.env["sandbox"] == {"backend": "process", "isolation": "unisolated"}


def test_an_unknown_isolation_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="unknown process sandbox isolation 'rlimits'"):
        ProcessSandboxBackend(isolation="rlimits")


def test_a_missing_unshare_refuses() -> None:
    with pytest.raises(SandboxUnavailableError, match=r"`/nonexistent/unshare` command .* is not installed"):
        ProcessSandboxBackend(unshare="/nonexistent/unshare", **LIMITS)


# -- the level used is reported ----------------------------------------------------------------------


def test_isolation_is_in_step_info_and_the_trajectory_header(demo_dir: Path, tmp_path: Path) -> None:
    selection = select_backend("process", process_options=LIMITS)
    env = RecordTrajectory(ResearchEnv(demo_dir, sandbox=selection.backend), tmp_path / "t.jsonl")
    try:
        _, info = env.reset(options={"task": Task(task_id="iso", question="q", answer="a")})
        assert info["sandbox_isolation"] == "namespaces"
        observation, _, _, _, info = env.step(call("create_sandbox"))
        assert info["sandbox_isolation"] == "namespaces" and "sandbox_id" in observation
        sid = sandbox_public_id("iso", 1)
        observation, *_ = env.step(call("run_command", sandbox_id=sid, command="hostname"))
        assert "stdout='sandbox\\n'" in observation
    finally:
        env.close()
        selection.backend.close()
    (trajectory,) = iter_trajectories(tmp_path / "t.jsonl")
    assert trajectory.header.env["sandbox"] == {"backend": "process", "isolation": "namespaces"}
    assert "IPC, UTS" in selection.reason
