"""Host-side file handling, attacked through `ResearchEnv` as a model (or a hostile task file) would.

Task attachments must resolve inside the task's folder: symlinks (anywhere on the path), `..` and absolute
paths outside it are refused, and nothing behind them reaches a sandbox. Files the model brings out of its
sandbox stream to disk under per-file and per-episode caps and are gone once the episode ends: a sparse
250 MB file downloaded again and again costs the host neither memory nor disk.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv, Task
from miroenv.env import EnvConfig
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox.base import SandboxBackend, SandboxError
from miroenv.sandbox.docker import DockerSandboxBackend, default_image, docker_status
from miroenv.sandbox.process import ProcessSandboxBackend
from miroenv.task_loaders import load_task_file
from miroenv.tasks import AttachmentError, resolve_attachment, save_tasks
from miroenv.testing.builder import SnapshotBuilder
from miroenv.tools.python import sandbox_public_id
from tests.sandbox.conftest import DOCKER_HINT, skip_or_fail

SPARSE = 250 * 1024 * 1024
"""`truncate -s 250M`: what the sparse file claims to hold."""

SECRET = "host secret: do not leak"


def call(tool: str, **arguments: object) -> str:
    """The model's text for one tool-python call."""
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))


@pytest.fixture(scope="module", params=["process", "docker"])
def backend(request: pytest.FixtureRequest) -> Iterator[SandboxBackend]:
    """Each real backend in turn (Docker skips without a daemon and image, and fails on CI)."""
    if request.param == "process":
        try:
            chosen: SandboxBackend = ProcessSandboxBackend(isolation="namespaces")
        except SandboxError as exc:
            skip_or_fail(f"process sandboxes with namespaces are unavailable here: {exc}")
            raise
    else:
        image = default_image()
        usable, reason = docker_status(image)
        if not usable:
            skip_or_fail(DOCKER_HINT.format(reason=reason))
        chosen = DockerSandboxBackend(image, pool_size=1, max_containers=4)
    yield chosen
    chosen.close()


def start(env: ResearchEnv, task: Task | None = None) -> str:
    """Reset `env` (on `task` if given) and create a sandbox; returns its id."""
    env.reset(seed=0, options={"task": task} if task is not None else None)
    observation = env.step(call("create_sandbox"))[0]
    sandbox_id = sandbox_public_id(env.task.task_id, 1)
    assert observation == f"Sandbox created with sandbox_id: {sandbox_id}", observation
    return sandbox_id


def shell(env: ResearchEnv, sandbox_id: str, command: str) -> str:
    """The observation of `run_command`."""
    return env.step(call("run_command", sandbox_id=sandbox_id, command=command))[0]


def download(env: ResearchEnv, sandbox_id: str, path: str, name: str | None = None) -> tuple[str, list[str]]:
    """The observation and error kinds of `download_file_from_sandbox_to_local`."""
    arguments: dict[str, object] = {"sandbox_id": sandbox_id, "sandbox_file_path": path}
    if name is not None:
        arguments["local_filename"] = name
    observation, _, _, _, info = env.step(call("download_file_from_sandbox_to_local", **arguments))
    return observation, info["error_kinds"]


# -- a sparse huge file, downloaded again and again -------------------------------------------------

SPARSE_EPISODE = """
import json, sys
from pathlib import Path
from miroenv import ResearchEnv, Task
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox import make_backend

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
def call(tool, **arguments):
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))

snapshot, kind, out, downloads = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
backend = make_backend(kind)
env = ResearchEnv(snapshot, sandbox=backend, output_dir=out)
env.reset(seed=0, options={"task": Task(task_id="sparse", question="?")})
sid = env.step(call("create_sandbox"))[0].rsplit(" ", 1)[1]
made = env.step(call("run_command", sandbox_id=sid, command="truncate -s 250M big.bin && stat -c %s big.bin"))[0]
before = hwm()
steps = []
for i in range(downloads):
    observation, _, _, _, info = env.step(call(
        "download_file_from_sandbox_to_local", sandbox_id=sid, sandbox_file_path="/home/user/big.bin",
        local_filename=f"big{i}.bin"))
    path = Path(observation.removeprefix("File downloaded successfully to: "))
    on_disk = [path.stat().st_size, path.stat().st_blocks * 512] if path.is_file() else None
    steps.append({"observation": observation, "error_kinds": info["error_kinds"], "on_disk": on_disk})
peak = hwm()
env.reset(seed=1, options={"task": Task(task_id="next", question="?")})
left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
env.close()
backend.close()
print(json.dumps({"made": made, "growth": peak - before, "steps": steps, "left_after_reset": left}))
"""


def test_a_sparse_huge_file_downloaded_repeatedly_costs_the_host_no_memory_and_is_gone_after_reset(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-c", SPARSE_EPISODE, str(demo_dir), backend.name, str(out), "6"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert f"stdout='{SPARSE}\\n'" in report["made"]
    steps = report["steps"]
    # The default caps: 256 MiB per file, 1 GiB per episode; four 250 MiB copies fit, the fifth does not.
    for step in steps[:4]:
        assert (
            step["observation"].startswith("File downloaded successfully to: ") and step["error_kinds"] == []
        )
        size, allocated = step["on_disk"]
        assert size == SPARSE and allocated < SPARSE // 100  # its zeros were written as holes
    for step in steps[4:]:
        assert step["error_kinds"] == ["tool"] and step["on_disk"] is None
        assert step["observation"] == (
            f"[ERROR]: Cannot download '/home/user/big.bin' from sandbox {sandbox_public_id('sparse', 1)}: "
            f"this episode's downloads are capped at {1 << 30} bytes in total and only "
            f"{(1 << 30) - 4 * SPARSE} bytes are left, less than the file's size. "
            "Work on the file inside the sandbox instead."
        )
    # The old code held every copy in memory: six of them were 1.5 GiB of peak RSS.
    assert report["growth"] < 48 << 20, f"peak RSS grew by {report['growth'] >> 20} MiB"
    assert report["left_after_reset"] == []


def test_the_per_file_cap_refuses_before_copying_and_both_caps_are_configurable(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path
) -> None:
    config = EnvConfig(max_download_bytes=1000, max_episode_download_bytes=2500)
    env = ResearchEnv(demo_dir, sandbox=backend, config=config, output_dir=tmp_path)
    try:
        sid = start(env, Task(task_id="caps", question="?"))
        shell(env, sid, "head -c 1000 /dev/urandom > ok.bin && head -c 1001 /dev/urandom > big.bin")
        observation, kinds = download(env, sid, "big.bin")
        assert kinds == ["tool"] and observation == (
            f"[ERROR]: Cannot download 'big.bin' from sandbox {sid}: the file is larger than the 1000-byte limit "
            "for one download. Work on it inside the sandbox instead, or download a smaller part of it."
        )
        assert not list(tmp_path.rglob("*big.bin*"))  # not even a partial copy
        for _ in range(2):
            observation, kinds = download(env, sid, "ok.bin")
            assert kinds == [] and observation.startswith("File downloaded successfully to: ")
        observation, kinds = download(env, sid, "ok.bin")
        assert kinds == ["tool"] and "only 500 bytes are left" in observation
    finally:
        env.close()


def test_without_an_output_dir_downloads_go_to_a_private_folder_removed_at_reset_and_close(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = ResearchEnv(demo_dir, sandbox=backend)
    try:
        for round_ in range(2):
            sid = start(env, Task(task_id=f"tmp{round_}", question="?"))
            shell(env, sid, "printf 'a,b\\n1,2' > table.csv")
            observation, kinds = download(env, sid, "/home/user/table.csv")
            assert (
                kinds == []
                and observation == f"File downloaded successfully to: tmpfiles/sandbox_{sid}_table.csv"
            )
            (written,) = tmp_path.glob(f"miroenv-downloads-*/tmpfiles/sandbox_{sid}_table.csv")
            assert written.read_bytes() == b"a,b\n1,2"
        env.reset(seed=0, options={"task": Task(task_id="after", question="?")})
        assert not list(tmp_path.glob("miroenv-downloads-*"))
        start(env, Task(task_id="last", question="?"))
        sid = sandbox_public_id("last", 1)
        shell(env, sid, "echo x > x.txt")
        download(env, sid, "x.txt")
        assert list(tmp_path.glob("miroenv-downloads-*"))
    finally:
        env.close()
    assert not list(tmp_path.glob("miroenv-downloads-*"))


def test_keep_downloads_leaves_them_in_the_output_dir_and_needs_one(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="keep_downloads=True needs an output_dir"):
        ResearchEnv(demo_dir, keep_downloads=True)
    env = ResearchEnv(demo_dir, sandbox=backend, output_dir=tmp_path, keep_downloads=True)
    try:
        sid = start(env, Task(task_id="keep", question="?"))
        shell(env, sid, "echo kept > kept.txt")
        observation, _ = download(env, sid, "kept.txt")
        env.reset(seed=0, options={"task": Task(task_id="next", question="?")})
    finally:
        env.close()
    assert Path(observation.removeprefix("File downloaded successfully to: ")).read_text() == "kept\n"


def test_links_special_files_and_odd_names_in_the_sandbox(
    demo_dir: Path, backend: SandboxBackend, tmp_path: Path
) -> None:
    env = ResearchEnv(demo_dir, sandbox=backend, output_dir=tmp_path)
    try:
        sid = start(env, Task(task_id="odd", question="?"))
        shell(
            env,
            sid,
            "echo inside > real.txt && ln -s real.txt link.txt && ln -s /dev/zero zero && mkfifo fifo "
            "&& ln -s /nowhere dangling && mkdir folder",
        )
        observation, kinds = download(env, sid, "link.txt")  # a link inside the sandbox: its target
        assert kinds == [] and Path(observation.rsplit(": ", 1)[1]).read_bytes() == b"inside\n"
        not_regular = "not a regular file (devices, pipes and sockets cannot be downloaded)."
        for path in ("zero", "/dev/zero", "fifo", "/dev/stdin"):
            observation, kinds = download(env, sid, path)
            assert kinds == ["tool"] and observation.endswith(not_regular), observation
        observation, kinds = download(env, sid, "dangling")
        assert kinds == ["tool"] and observation.endswith("file does not exist.")
        observation, kinds = download(env, sid, "folder")
        assert kinds == ["tool"] and observation.endswith("path is a directory, not a file.")
        for name in ("..", "."):
            observation, kinds = download(env, sid, "real.txt", name)
            assert kinds == ["tool"] and "give a file name" in observation
        observation, kinds = download(env, sid, "real.txt", "../../escape.txt")  # only its last part is used
        assert kinds == [] and observation.endswith(f"/tmpfiles/sandbox_{sid}_escape.txt")
        assert not (tmp_path.parent / "escape.txt").exists()
        assert shell(env, sid, "echo still alive").endswith("stdout='still alive\\n', exit_code=0, error='')")
    finally:
        env.close()


# -- attachments ------------------------------------------------------------------------------------


@pytest.fixture
def task_folder(tmp_path: Path) -> Path:
    """A task folder with one real attachment, beside a secret the tasks must not reach."""
    (tmp_path / "secret.txt").write_text(SECRET)
    folder = tmp_path / "tasks"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "table.csv").write_text("x,y\n1,2\n")
    return folder


def tasks_file(folder: Path, *files: str) -> Path:
    """A tasks JSONL in `folder` whose one task `t` has these attachments."""
    path = folder / "tasks.jsonl"
    save_tasks([Task(task_id="t", question="?", files=files)], path)
    return path


def test_a_normal_attachment_reaches_the_sandbox(
    demo_dir: Path, backend: SandboxBackend, task_folder: Path
) -> None:
    env = ResearchEnv(demo_dir, tasks_file(task_folder, "data/table.csv"), sandbox=backend)
    try:
        assert env.tasks[0].files == (str((task_folder / "data" / "table.csv").resolve()),)
        sid = start(env)
        assert "stdout='x,y\\n1,2\\n'" in shell(env, sid, "cat /home/user/table.csv")
        observation, _, _, _, info = env.step(
            call("upload_file_from_local_to_sandbox", sandbox_id=sid, local_file_path=env.tasks[0].files[0])
        )
        assert observation == "File uploaded to /home/user/table.csv" and info["error_kinds"] == []
    finally:
        env.close()


@pytest.mark.parametrize(
    ("make", "name", "why"),
    [
        (
            lambda f: (f / "link.txt").symlink_to(f.parent / "secret.txt"),
            "link.txt",
            "goes through a symlink",
        ),
        (lambda f: (f / "linked").symlink_to(f.parent), "linked/secret.txt", "goes through a symlink"),
        (lambda f: (f / "inner").symlink_to(f / "data"), "inner/table.csv", "goes through a symlink"),
        (lambda f: None, "../secret.txt", "goes through '..'"),
        (lambda f: None, "data/../../secret.txt", "goes through '..'"),
        (lambda f: None, "{parent}/secret.txt", "is outside the task's folder"),
        (lambda f: None, "/etc/passwd", "is outside the task's folder"),
        (lambda f: None, "missing.csv", "does not exist"),
        (lambda f: None, "data", "is not a regular file"),
        (lambda f: os.mkfifo(f / "fifo"), "fifo", "is not a regular file"),
    ],
)
def test_attachments_that_escape_the_task_folder_are_refused_when_the_env_loads_them(
    demo_dir: Path, task_folder: Path, make: object, name: str, why: str
) -> None:
    assert callable(make)
    make(task_folder)
    name = name.format(parent=task_folder.parent)
    path = tasks_file(task_folder, name)
    with pytest.raises(AttachmentError) as refused:
        ResearchEnv(demo_dir, path)
    message = str(refused.value)
    assert message.startswith((f"{path}:1: ", f"{path}: ")) and why in message  # the line, when it is known
    assert f"task 't': attachment {name!r} " in message


def test_a_task_passed_to_reset_is_checked_there(demo_dir: Path, task_folder: Path) -> None:
    link = task_folder / "link.txt"
    link.symlink_to(task_folder.parent / "secret.txt")
    env = ResearchEnv(demo_dir)
    try:
        with pytest.raises(
            AttachmentError, match=r"task 'given': attachment '.*link\.txt' goes through a symlink"
        ):
            env.reset(options={"task": Task(task_id="given", question="?", files=(str(link),))})
        with pytest.raises(AttachmentError, match="is a relative path, but the task has no folder"):
            env.reset(options={"task": Task(task_id="given", question="?", files=("data/table.csv",))})
        table = task_folder / "data" / "table.csv"
        env.reset(options={"task": Task(task_id="given", question="?", files=(str(table),))})
        assert env.task.files == (str(table.resolve()),)
    finally:
        env.close()


def test_an_attachment_swapped_for_a_link_after_loading_is_not_followed(
    demo_dir: Path, backend: SandboxBackend, task_folder: Path
) -> None:
    env = ResearchEnv(demo_dir, tasks_file(task_folder, "data/table.csv"), sandbox=backend)
    try:
        (task_folder / "data").rename(task_folder / "moved")
        (task_folder / "data").symlink_to(task_folder.parent)  # data/table.csv now leads outside...
        (task_folder.parent / "table.csv").write_text(SECRET)  # ...to a planted secret
        env.reset(seed=0)
        observation, _, _, _, info = env.step(call("create_sandbox"))
        assert info["error_kinds"] == ["infra"]
        assert observation.startswith(
            f"[ERROR]: task file {env.tasks[0].files[0]} of task 't' could not be read"
        )
        sid = sandbox_public_id("t", 1)
        observation, _, _, _, info = env.step(
            call("upload_file_from_local_to_sandbox", sandbox_id=sid, local_file_path=env.tasks[0].files[0])
        )
        assert info["error_kinds"] == ["tool"] and SECRET not in observation
        assert SECRET not in shell(env, sid, "cat /home/user/table.csv; ls -la /home/user")
    finally:
        env.close()


def test_attachments_root_and_benchmark_loaders(demo_dir: Path, task_folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = tasks_file(elsewhere, "data/table.csv")
    with pytest.raises(AttachmentError, match="does not exist"):
        ResearchEnv(demo_dir, path)
    env = ResearchEnv(demo_dir, path, attachments_root=task_folder)
    assert env.tasks[0].files == (str((task_folder / "data" / "table.csv").resolve()),)
    env.close()
    (task_folder / "link.pdf").symlink_to(task_folder.parent / "secret.txt")
    for layout, key in (("gaia", "file_name"), ("miroflow", "file_path")):
        for name, why in (("link.pdf", "goes through a symlink"), ("../secret.txt", "goes through '..'")):
            metadata = task_folder / f"{layout}.jsonl"
            record = {"task_id": "g1", "Question": "?", "task_question": "?", key: name}
            metadata.write_text(json.dumps(record) + "\n")
            with pytest.raises(AttachmentError, match=f"{metadata}:1: task 'g1': attachment .* {why}"):
                load_task_file(metadata, layout)


def test_builder_attachments_under_the_snapshot_keep_working(backend: SandboxBackend, tmp_path: Path) -> None:
    builder = SnapshotBuilder("attachments", path=tmp_path / "snap")
    builder.task("b1", "What is in notes.txt?", "b=3", files={"notes.txt": "b=3\n"})
    snapshot = builder.build()
    env = ResearchEnv(snapshot, sandbox=backend)
    try:
        sid = start(env)
        assert "stdout='b=3\\n'" in shell(env, sid, "cat notes.txt")
    finally:
        env.close()


names = st.lists(
    st.one_of(
        st.sampled_from(["..", ".", "", "data", "table.csv", "link", "up", "secret.txt", "tasks", "/", "//"]),
        st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
    ),
    max_size=5,
).map("/".join)
"""Attachment names: path pieces that matter (`..`, links, absolute roots) mixed with any code points,
lone surrogates and NUL included."""


@pytest.fixture(scope="module")
def linked_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tasks/data/table.csv, with tasks/link -> ../secret.txt and tasks/data/up -> tasks beside it."""
    folder = tmp_path_factory.mktemp("linked")
    (folder / "tasks" / "data").mkdir(parents=True)
    (folder / "tasks" / "data" / "table.csv").write_text("x\n")
    (folder / "secret.txt").write_text(SECRET)
    (folder / "tasks" / "link").symlink_to(folder / "secret.txt")
    (folder / "tasks" / "data" / "up").symlink_to(folder / "tasks")
    return folder


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_any_attachment_name_resolves_inside_the_folder_or_is_refused(linked_folder: Path, name: str) -> None:
    try:
        resolved = resolve_attachment(name, linked_folder / "tasks", "t")
    except AttachmentError as exc:
        assert "task 't': attachment" in str(exc)
        return
    assert Path(resolved) == (linked_folder / "tasks" / "data" / "table.csv").resolve()  # the one file there
