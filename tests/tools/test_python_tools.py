"""MiroThinker's tool-python tools on a real (process) sandbox: ids, persistence, files, error kinds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from miroenv import ResearchEnv, Task
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox import make_backend
from miroenv.sandbox.base import SandboxBackend
from miroenv.tools.python import sandbox_public_id


def call(tool: str, **arguments: object) -> str:
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))


@pytest.fixture(scope="module")
def backend() -> Iterator[SandboxBackend]:
    chosen = make_backend("process")
    yield chosen
    chosen.close()


@pytest.fixture
def episode(demo_dir: Path, backend: SandboxBackend, tmp_path: Path) -> Iterator[tuple[ResearchEnv, str]]:
    attachment = tmp_path / "data.csv"
    attachment.write_text("x,y\n1,2\n3,4\n")
    env = ResearchEnv(demo_dir, sandbox=backend)
    task = Task(task_id="py", question="Sum the y column.", answer="6", files=(str(attachment),))
    env.reset(options={"task": task})
    observation = env.step(call("create_sandbox"))[0]
    sandbox_id = sandbox_public_id("py", 1)
    assert observation == f"Sandbox created with sandbox_id: {sandbox_id}"
    yield env, sandbox_id
    env.close()


def test_state_persists_and_task_files_are_in_the_sandbox(episode: tuple[ResearchEnv, str]) -> None:
    env, sid = episode
    env.step(
        call(
            "run_python_code",
            sandbox_id=sid,
            code_block="import csv\nrows = list(csv.DictReader(open('data.csv')))",
        )
    )
    observation, _, _, _, info = env.step(
        call("run_python_code", sandbox_id=sid, code_block="sum(int(r['y']) for r in rows)")
    )
    assert observation == "CommandResult(stderr='', stdout='6\\n', exit_code=0, error='')"
    assert info["error_kinds"] == []


def test_errors_in_user_code_are_results_not_failures(episode: tuple[ResearchEnv, str]) -> None:
    env, sid = episode
    observation, _, _, _, info = env.step(call("run_python_code", sandbox_id=sid, code_block="1/0"))
    assert "ZeroDivisionError" in observation and info["error_kinds"] == []
    observation, *_ = env.step(call("run_command", sandbox_id=sid, command="exit 3"))
    assert "exit_code=3" in observation


def test_unknown_and_placeholder_ids_are_tool_errors(episode: tuple[ResearchEnv, str]) -> None:
    env, _ = episode
    observation, _, _, _, info = env.step(call("run_command", sandbox_id="sandbox1", command="ls"))
    assert observation.startswith("[ERROR]: 'sandbox1' is not a valid sandbox_id.") and info[
        "error_kinds"
    ] == ["tool"]
    observation, _, _, _, info = env.step(
        call("run_command", sandbox_id="i0000000000000000000", command="ls")
    )
    assert "Failed to connect to sandbox" in observation and info["error_kinds"] == ["tool"]


def test_file_mistakes_are_tool_errors(episode: tuple[ResearchEnv, str]) -> None:
    env, sid = episode
    observation, _, _, _, info = env.step(
        call(
            "download_file_from_sandbox_to_local", sandbox_id=sid, sandbox_file_path="/home/user/missing.txt"
        )
    )
    assert "file does not exist" in observation and info["error_kinds"] == ["tool"]
    observation, _, _, _, info = env.step(
        call("upload_file_from_local_to_sandbox", sandbox_id=sid, local_file_path="/etc/passwd")
    )
    assert "Local file does not exist" in observation and info["error_kinds"] == ["tool"]
    env.step(call("run_command", sandbox_id=sid, command="echo hello > out.txt"))
    observation, *_ = env.step(
        call("download_file_from_sandbox_to_local", sandbox_id=sid, sandbox_file_path="/home/user/out.txt")
    )
    assert observation == f"File downloaded successfully to: tmpfiles/sandbox_{sid}_out.txt"


def test_internet_download_comes_from_the_snapshot(episode: tuple[ResearchEnv, str]) -> None:
    env, sid = episode
    observation, *_ = env.step(
        call(
            "download_file_from_internet_to_sandbox",
            sandbox_id=sid,
            url="https://en.wikipedia.org/wiki/ENIAC",
        )
    )
    assert observation == "File downloaded to /home/user/ENIAC"
    observation, *_ = env.step(call("run_command", sandbox_id=sid, command="grep -c 'vacuum tubes' ENIAC"))
    assert "stdout='1\\n'" in observation
    observation, _, _, _, info = env.step(
        call("download_file_from_internet_to_sandbox", sandbox_id=sid, url="https://nowhere.example/file.bin")
    )
    assert "not in this snapshot" in observation and info["error_kinds"] == ["tool"]


def test_downloads_land_in_the_episode_output_folder(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path
) -> None:
    env = ResearchEnv(demo_dir, sandbox=backend, output_dir=tmp_path / "out")
    env.reset(seed=0, options={"task": Task(task_id="dl", question="?")})
    env.step(call("create_sandbox"))
    sid = sandbox_public_id("dl", 1)
    env.step(call("run_command", sandbox_id=sid, command="printf 'a,b' > table.csv"))
    observation, *_ = env.step(
        call("download_file_from_sandbox_to_local", sandbox_id=sid, sandbox_file_path="/home/user/table.csv")
    )
    (written,) = (tmp_path / "out").rglob("*.csv")
    assert observation == f"File downloaded successfully to: {written}"
    assert written.read_bytes() == b"a,b" and written.name == f"sandbox_{sid}_table.csv"
    env.close()
    assert not written.exists() and list((tmp_path / "out").iterdir()) == []
