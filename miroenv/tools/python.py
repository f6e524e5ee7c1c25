"""MiroThinker's `tool-python` server: sandboxes for shell commands and persistent Python, and file transfer.

Sandbox ids are drawn from the episode's random generator, so observations stay identical across replays
whatever ids the backend uses internally.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import posixpath
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from pydantic import WithJsonSchema

from miroenv.sandbox.base import ExecResult, Sandbox, SandboxError
from miroenv.tasks import read_attachment
from miroenv.tools.base import ArgsT, EpisodeContext, InfraFailure, Tool, ToolArguments, ToolFailure
from miroenv.web.base import NotInSnapshotError

MAX_RESULT_LEN = 20_000
RESULT_TRUNCATED = " [Result truncated due to length limit]"
DEFAULT_TIMEOUT = 600
COMMAND_TIMEOUT = 60.0
"""Per-call timeout for `run_command` and `run_python_code`, in seconds."""

INVALID_SANDBOX_IDS = frozenset(
    {
        "default", "sandbox1", "sandbox", "some_id", "new_sandbox", "python", "create_sandbox", "sandbox123",
        "temp", "sandbox-0", "sandbox-1", "sandbox_0", "sandbox_1", "new", "0", "auto", "default_sandbox",
        "none", "sandbox_12345", "dummy", "sandbox_01",
    }
)  # fmt: skip
"""Placeholder ids models write instead of a real one; MiroThinker rejects them with a hint."""

SANDBOXES_KEY = "tool-python.sandboxes"
DOWNLOADS_KEY = "tool-python.downloads"
DOWNLOADS_FOLDER = "tmpfiles"
"""The folder, inside the episode's output folder, that downloads from sandboxes land in."""


def sandbox_public_id(task_id: str, ordinal: int) -> str:
    """The id the model sees for the episode's `ordinal`-th sandbox: e2b-like, and the same for the same task
    in every run (whatever the backend's own ids), so observations and scripted actions replay exactly."""
    return "i" + hashlib.sha256(f"{task_id}\x00{ordinal}".encode()).hexdigest()[:19]


SANDBOX_ID_DOC = (
    "    sandbox_id: The id of the sandbox to run the code in. Reuse existing sandboxes whenever possible. "
    "To create a new sandbox, use tool `create_sandbox`.\n"
)


class _NoTopTitle(ToolArguments):
    """FastMCP 2 publishes tool-python schemas without a top-level title; so do we."""

    schema_title = False


class CreateSandboxArgs(_NoTopTitle):
    """Arguments of `create_sandbox` (`timeout` is untyped in MiroThinker v1.0)."""

    timeout: Any = DEFAULT_TIMEOUT


class RunCommandArgs(_NoTopTitle):
    """Arguments of `run_command`."""

    command: str
    sandbox_id: str


class RunPythonCodeArgs(_NoTopTitle):
    """Arguments of `run_python_code`."""

    code_block: str
    sandbox_id: str


class UploadFileArgs(_NoTopTitle):
    """Arguments of `upload_file_from_local_to_sandbox`."""

    sandbox_id: str
    local_file_path: str
    sandbox_file_path: str = "/home/user"


class DownloadFromInternetArgs(_NoTopTitle):
    """Arguments of `download_file_from_internet_to_sandbox`."""

    sandbox_id: str
    url: str
    sandbox_file_path: str = "/home/user"


class DownloadToLocalArgs(_NoTopTitle):
    """Arguments of `download_file_from_sandbox_to_local`."""

    sandbox_id: str
    sandbox_file_path: str
    local_filename: Annotated[str | None, WithJsonSchema({"type": "string"})] = None


def _sandboxes(ctx: EpisodeContext) -> dict[str, Sandbox]:
    table: dict[str, Sandbox] | None = ctx.state.get(SANDBOXES_KEY)
    if table is None:
        table = {}
        ctx.state[SANDBOXES_KEY] = table

        def close_all() -> None:
            for sandbox in table.values():
                sandbox.close()
            table.clear()

        ctx.on_close(close_all)
    return table


def get_sandbox(ctx: EpisodeContext, sandbox_id: str) -> Sandbox:
    """The episode's sandbox with this public id; MiroThinker's messages for placeholders and unknown ids."""
    if sandbox_id in INVALID_SANDBOX_IDS:
        raise ToolFailure(
            f"[ERROR]: '{sandbox_id}' is not a valid sandbox_id. "
            "Please create a real sandbox first using the create_sandbox tool."
        )
    sandbox = _sandboxes(ctx).get(sandbox_id)
    if sandbox is None:
        raise ToolFailure(
            f"[ERROR]: Failed to connect to sandbox {sandbox_id}. "
            "Make sure the sandbox is created and the sandbox_id is correct."
        )
    return sandbox


def truncate_python_result(text: str) -> str:
    """The Python tools' own cut at 20,000 characters."""
    return text[:MAX_RESULT_LEN] + RESULT_TRUNCATED if len(text) > MAX_RESULT_LEN else text


def format_exec_result(result: ExecResult) -> str:
    """An execution result in MiroThinker's `CommandResult(...)` text form."""
    error = result.error or ""
    if not error and result.timed_out:
        error = "timed out"
    if result.state_lost and "state" not in error:
        error = (error + " " if error else "") + "(the Python state was lost and the worker restarted)"
    return (
        f"CommandResult(stderr={result.stderr!r}, stdout={result.stdout!r}, "
        f"exit_code={result.exit_code!r}, error={error!r})"
    )


class SandboxTool(Tool[ArgsT]):
    """A tool that talks to a sandbox: calls can block on another process, so they always get a watchdog."""

    def may_hang(self, ctx: EpisodeContext) -> bool:
        return True


class CreateSandbox(SandboxTool[CreateSandboxArgs]):
    """Creates a fresh sandbox for this episode and returns its id."""

    name = "create_sandbox"
    description = (
        "Create a linux sandbox.\n\nArgs:\n    timeout: Time in seconds before the sandbox is automatically "
        "shutdown. The default is 600 seconds.\n\nReturns:\n    The sandbox_id of the newly created sandbox. You "
        "should use this sandbox_id to run other tools in the sandbox."
    )
    arguments_model = CreateSandboxArgs

    def run(self, args: CreateSandboxArgs, ctx: EpisodeContext) -> str:
        table = _sandboxes(ctx)
        public_id = sandbox_public_id(ctx.task.task_id, len(table) + 1)
        try:
            sandbox = ctx.sandboxes.create(session=ctx.episode_id)
        except SandboxError as exc:
            raise InfraFailure(
                f"[ERROR]: Failed to create sandbox after 5 attempts: {exc}, please retry later."
            ) from exc
        table[public_id] = sandbox
        for path in ctx.task.files:
            local = Path(path)
            try:
                data = read_attachment(path)
            except OSError as exc:
                raise InfraFailure(
                    f"[ERROR]: task file {path} of task {ctx.task.task_id!r} could not be read (it must be a "
                    f"regular file, reached without symlinks): {exc.strerror or exc}"
                ) from exc
            try:
                sandbox.write_file(_target_path("/home/user", local.name), data)
            except (OSError, SandboxError) as exc:
                raise InfraFailure(
                    f"[ERROR]: task file {path} could not be placed in the sandbox: {exc}"
                ) from exc
        return f"Sandbox created with sandbox_id: {public_id}"


class RunCommand(SandboxTool[RunCommandArgs]):
    """Runs a shell command in a sandbox."""

    name = "run_command"
    description = (
        "Execute a lightweight shell command in the linux sandbox (no long-running, blocking, or resource-heavy "
        "processes).\n\nArgs:\n    command: The command to execute.\n    sandbox_id: The id of the sandbox to "
        "execute the command in. To create a new sandbox, use tool `create_sandbox`.\n\nReturns:\n    A "
        "CommandResult object containing the result of the command execution, format like "
        "CommandResult(stderr=..., stdout=..., exit_code=..., error=...)"
    )
    arguments_model = RunCommandArgs

    def run(self, args: RunCommandArgs, ctx: EpisodeContext) -> str:
        sandbox = get_sandbox(ctx, args.sandbox_id)
        try:
            result = sandbox.run_command(args.command, timeout=COMMAND_TIMEOUT)
        except SandboxError as exc:
            raise InfraFailure(
                f"[ERROR]: Failed to run command after 3 attempts.\n\nException type: {type(exc).__name__}\n"
                f"Details: {exc}"
            ) from exc
        return truncate_python_result(format_exec_result(result))


class RunPythonCode(SandboxTool[RunPythonCodeArgs]):
    """Runs Python in the sandbox's persistent interpreter."""

    name = "run_python_code"
    description = (
        "Run short, safe python code in a sandbox and return the execution result (avoid long loops or heavy "
        "tasks; must finish quickly).\n\nArgs:\n    code_block: The python code to run.\n"
        + SANDBOX_ID_DOC
        + "\nReturns:\n    A CommandResult object containing the result of the command execution, format like "
        "CommandResult(stderr=..., stdout=..., exit_code=..., error=...)"
    )
    arguments_model = RunPythonCodeArgs

    def run(self, args: RunPythonCodeArgs, ctx: EpisodeContext) -> str:
        sandbox = get_sandbox(ctx, args.sandbox_id)
        try:
            result = sandbox.run_python(args.code_block, timeout=COMMAND_TIMEOUT)
        except SandboxError as exc:
            raise InfraFailure(
                f"[ERROR]: Failed to run code in sandbox {args.sandbox_id} after 3 attempts. "
                f"Exception type: {type(exc).__name__}, Details: {exc}"
            ) from exc
        return truncate_python_result(format_exec_result(result))


def _target_path(directory: str, filename: str) -> str:
    return posixpath.join(directory or "/home/user", filename)


class UploadFileFromLocalToSandbox(SandboxTool[UploadFileArgs]):
    """Copies one of the task's files into the sandbox."""

    name = "upload_file_from_local_to_sandbox"
    description = (
        "Upload a local file to the `/home/user` dir of the remote python interpreter.\n\nArgs:\n"
        + SANDBOX_ID_DOC
        + "    local_file_path: The path of the file on local machine to upload.\n    sandbox_file_path: The path "
        "of directory to upload the file to in the sandbox. Default is `/home/user/`.\n\nReturns:\n    The path "
        "of the uploaded file in the remote python interpreter if the upload is successful."
    )
    arguments_model = UploadFileArgs

    def run(self, args: UploadFileArgs, ctx: EpisodeContext) -> str:
        sandbox = get_sandbox(ctx, args.sandbox_id)
        allowed = {str(Path(f)) for f in ctx.task.files}
        local = Path(args.local_file_path)
        if str(local) not in allowed or not local.exists():
            raise ToolFailure(f"[ERROR]: Local file does not exist: {args.local_file_path}")
        if not local.is_file():
            raise ToolFailure(f"[ERROR]: Path is not a file: {args.local_file_path}")
        target = _target_path(args.sandbox_file_path, local.name)
        try:
            sandbox.write_file(target, read_attachment(str(local)))
        except OSError as exc:
            raise ToolFailure(
                f"[ERROR]: Failed to upload file {args.local_file_path} to sandbox {args.sandbox_id}: {exc}"
            ) from exc
        except SandboxError as exc:
            raise InfraFailure(
                f"[ERROR]: Failed to upload file {args.local_file_path} to sandbox {args.sandbox_id}: {exc}"
            ) from exc
        return f"File uploaded to {target}"


class DownloadFileFromInternetToSandbox(SandboxTool[DownloadFromInternetArgs]):
    """Puts a file from the snapshot (the replayed internet) into the sandbox."""

    name = "download_file_from_internet_to_sandbox"
    description = (
        "Download a file from the internet to the `/home/user` dir of the sandbox (avoid large or slow URLs).\n\n"
        "Args:\n"
        + SANDBOX_ID_DOC
        + "    url: The URL of the file to download.\n    sandbox_file_path: The path of directory to download "
        "the file to in the sandbox. Default is `/home/user/`.\n\nReturns:\n    The path of the downloaded file "
        "in the sandbox if the download is successful."
    )
    arguments_model = DownloadFromInternetArgs

    def run(self, args: DownloadFromInternetArgs, ctx: EpisodeContext) -> str:
        sandbox = get_sandbox(ctx, args.sandbox_id)
        try:
            data = ctx.web.file(args.url).data
        except NotInSnapshotError:
            try:
                page = ctx.web.page(args.url)
            except NotInSnapshotError as exc:
                raise ToolFailure(
                    f"[ERROR]: Failed to download file from {args.url} to {args.sandbox_file_path} after 3 "
                    f"attempts.\n\nexit_code: 8\n\nDetails: stderr: {exc}"
                ) from exc
            data = page.body if page.body is not None else page.text.encode("utf-8")
        name = posixpath.basename(args.url.split("?", 1)[0].rstrip("/")) or "index.html"
        target = _target_path(args.sandbox_file_path, name)
        try:
            sandbox.write_file(target, data)
        except OSError as exc:
            raise ToolFailure(f"[ERROR]: Failed to download file from {args.url} to {target}: {exc}") from exc
        except SandboxError as exc:
            raise InfraFailure(
                f"[ERROR]: Failed to download file from {args.url} to {target}: {exc}"
            ) from exc
        return f"File downloaded to {target}"


class DownloadFileFromSandboxToLocal(SandboxTool[DownloadToLocalArgs]):
    """Copies a file out of the sandbox into the episode's local work directory."""

    name = "download_file_from_sandbox_to_local"
    description = (
        "Download a file from the sandbox to local system. Files in sandbox cannot be processed by tools from "
        "other servers - only local files and internet URLs can be processed by them.\n\nArgs:\n    sandbox_id: "
        "The id of the sandbox to download the file from. To have a sandbox, use tool `create_sandbox`.\n    "
        "sandbox_file_path: The path of the file to download on the sandbox.\n    local_filename: Optional "
        "filename to save as. If not provided, uses the original filename from sandbox_file_path.\n\nReturns:\n"
        "    The local path of the downloaded file if successful, otherwise error message."
    )
    arguments_model = DownloadToLocalArgs

    def run(self, args: DownloadToLocalArgs, ctx: EpisodeContext) -> str:
        sandbox = get_sandbox(ctx, args.sandbox_id)
        source = args.sandbox_file_path
        cannot = f"[ERROR]: Cannot download '{source}' from sandbox {args.sandbox_id}"
        name = Path(args.local_filename or posixpath.basename(source)).name
        if name in ("", ".", ".."):
            raise ToolFailure(f"{cannot}: give a file name (local_filename or a sandbox path ending in one).")
        downloads = _downloads(ctx)
        local = f"{DOWNLOADS_FOLDER}/sandbox_{args.sandbox_id}_{name}"
        left = max(ctx.max_episode_download_bytes - downloads.total, 0)
        limit = min(ctx.max_download_bytes, left)
        target = downloads.folder() / local
        try:
            writer = _SparseWriter(target)
        except (OSError, ValueError) as exc:
            raise ToolFailure(f"{cannot}: it cannot be saved as {name!r}: {exc}") from exc
        try:
            size = sandbox.read_file_into(source, writer.write, limit)
            writer.finish(size)
        except FileNotFoundError as exc:
            raise ToolFailure(f"{cannot}: file does not exist.") from exc
        except IsADirectoryError as exc:
            raise ToolFailure(f"{cannot}: path is a directory, not a file.") from exc
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                raise ToolFailure(f"{cannot}: {_cap_message(ctx, left, limit)}") from exc
            if exc.errno == errno.EINVAL:
                raise ToolFailure(
                    f"{cannot}: not a regular file (devices, pipes and sockets cannot be downloaded)."
                ) from exc
            raise ToolFailure(f"{cannot}: {exc}") from exc
        except _HostWriteError as exc:
            raise InfraFailure(f"[ERROR]: Failed to save '{source}' on the host: {exc}") from exc
        except SandboxError as exc:
            raise InfraFailure(f"[ERROR]: Failed to download '{source}': {exc}") from exc
        finally:
            writer.discard()
        if not downloads.add(local, target, size):
            raise InfraFailure(
                f"[ERROR]: Failed to download '{source}': the episode ended during the download."
            )
        if ctx.output_dir is None:
            return f"File downloaded successfully to: {local}"
        return f"File downloaded successfully to: {target}"


def _cap_message(ctx: EpisodeContext, left: int, limit: int) -> str:
    """Why a download was refused: the per-file cap, or what is left of the episode's total."""
    if limit < ctx.max_download_bytes:
        return (
            f"this episode's downloads are capped at {ctx.max_episode_download_bytes} bytes in total and only "
            f"{left} bytes are left, less than the file's size. Work on the file inside the sandbox instead."
        )
    return (
        f"the file is larger than the {ctx.max_download_bytes}-byte limit for one download. Work on it inside "
        "the sandbox instead, or download a smaller part of it."
    )


class _HostWriteError(Exception):
    """Writing a download to the host's disk failed (an `infra` error: the sandbox is fine)."""


class _SparseWriter:
    """Writes a download to a temporary name beside `target` as it streams in, leaving runs of zero bytes as
    holes (a sparse file costs the host no disk), and moves it into place once complete."""

    def __init__(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        self.handle: BinaryIO | None = self.part.open("xb")

    def write(self, piece: bytes) -> None:
        """Append `piece` (seeking over it when it is all zeros)."""
        assert self.handle is not None
        try:
            if piece.count(0) == len(piece):
                self.handle.seek(len(piece), os.SEEK_CUR)
            else:
                self.handle.write(piece)
        except OSError as exc:
            raise _HostWriteError(str(exc)) from exc

    def finish(self, size: int) -> None:
        """Fix the file's length (trailing holes included) and move it to `target`."""
        assert self.handle is not None
        try:
            self.handle.truncate(size)
            self.handle.close()
            self.handle = None
            os.replace(self.part, self.target)
        except OSError as exc:
            raise _HostWriteError(str(exc)) from exc

    def discard(self) -> None:
        """Remove what an unfinished download left (nothing once `finish` has run)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            self.part.unlink(missing_ok=True)


class Downloads:
    """What an episode brought out of its sandboxes: files on disk (never held in memory), their running
    total for the per-episode cap, and their removal when the episode ends unless `keep_downloads` is set."""

    def __init__(self, ctx: EpisodeContext) -> None:
        self.ctx = ctx
        self.total = 0
        """Bytes downloaded so far this episode (a file downloaded twice counts twice)."""
        self.files: dict[str, Path] = {}
        """Each download's name in the observation -> where it is on disk."""
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._closed = False
        ctx.on_close(self.release)

    def folder(self) -> Path:
        """The episode's output folder, or a private temporary one made on first use."""
        with self._lock:
            if self._closed:
                raise InfraFailure("[ERROR]: the episode has ended; its downloads were released.")
            if self._folder is None:
                output = self.ctx.output_dir
                self._folder = (
                    Path(tempfile.mkdtemp(prefix="miroenv-downloads-")) if output is None else output
                )
            return self._folder

    def add(self, local: str, path: Path, size: int) -> bool:
        """Count a finished download; False (and the file removed) when the episode ended meanwhile."""
        with self._lock:
            if self._closed:
                path.unlink(missing_ok=True)
                return False
            self.total += size
            self.files[local] = path
            return True

    def release(self) -> None:
        """Delete the episode's downloads (a temporary folder entirely; in `output_dir`, its downloads
        folder, and the output folder itself when that leaves it empty)."""
        with self._lock:
            self._closed = True
            folder, self._folder = self._folder, None
            self.files.clear()
        if folder is None:
            return
        if self.ctx.output_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        elif not self.ctx.keep_downloads:
            shutil.rmtree(folder / DOWNLOADS_FOLDER, ignore_errors=True)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _downloads(ctx: EpisodeContext) -> Downloads:
    """The episode's `Downloads`, made on first use."""
    downloads: Downloads | None = ctx.state.get(DOWNLOADS_KEY)
    if downloads is None:
        downloads = ctx.state[DOWNLOADS_KEY] = Downloads(ctx)
    return downloads


def downloaded_files(ctx: EpisodeContext) -> dict[str, Path]:
    """Where this episode's downloads from its sandboxes are on disk, by the name the model was shown."""
    downloads: Downloads | None = ctx.state.get(DOWNLOADS_KEY)
    return dict(downloads.files) if downloads is not None else {}
