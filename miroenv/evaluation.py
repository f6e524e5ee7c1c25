"""Evaluating a served model: `ResearchEnv` episodes driven by any OpenAI-compatible chat-completions endpoint.

`evaluate(EvalConfig(...))` plays every (task, run) pair: it sends `env.context()` (MiroThinker's context policy
applied) to the endpoint, feeds the reply back to `env.step()` and stops when the env says the episode ended.
The out directory holds `config.json` (what was evaluated), `results.jsonl` (one row per finished episode,
flushed as each finishes), a trajectory file per episode under `trajectories/` and `summary.json`. Running
again with the same out directory only plays the pairs without a row, and the summary covers every row. A
run holds an exclusive lock on `out/.lock`, so a second evaluation of the same directory is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from miroenv._version import __version__
from miroenv.env import EnvConfig, ResearchEnv
from miroenv.jsonl import JsonlError, JsonlWriter, iter_jsonl, replace_file
from miroenv.llm import (
    ChatCompletionsClient,
    ChatEndpointError,
    ChatEndpointUnavailableError,
    ChatReply,
    check_base_url,
)
from miroenv.policy import StepView, iter_episode, summarize_episode
from miroenv.protocol.base import Action
from miroenv.protocol.registry import get_format
from miroenv.rewards.base import REWARD_NAMES, Reward
from miroenv.sandbox.base import SandboxError
from miroenv.sandbox.select import check_backend_kind, select_backend
from miroenv.scoring import ERROR_KINDS, ScoreRow, resolve_reward, summarize
from miroenv.task_loaders import load_task_file
from miroenv.tasks import Task
from miroenv.tools.profiles import get_profile
from miroenv.trajectory import RecordTrajectory
from miroenv.web.snapshot import Snapshot, SnapshotError

EVAL_ERROR_KINDS: tuple[str, ...] = (*ERROR_KINDS, "endpoint")
"""Errors counted in a summary: the env's (format, tool, infra) plus episodes the endpoint failed."""
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".lock"
TRAJECTORY_DIR = "trajectories"
WORKER_STOP_GRACE = 2.0
"""Seconds a stopping run waits for its episodes in flight; a worker stuck longer (in a slow request) is left."""
IDENTITY_FIELDS: tuple[str, ...] = (
    "model",
    "snapshot_hash",
    "tasks_hash",
    "profile",
    "tool_format",
    "reward",
    "sampling",
    "extra_body",
    "max_tool_calls",
    "max_turns",
)
"""What must match for a rerun to resume an out directory (anything else, like concurrency, may change)."""


class EvalError(ValueError):
    """The evaluation cannot start: bad settings, or an out directory that holds a different evaluation."""


class EndpointUnavailableError(RuntimeError):
    """Every episode of this invocation failed to get replies from the model endpoint."""


class EvalConfig(BaseModel):
    """What to evaluate and how; `None` sampling values fall back to the profile's defaults."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(min_length=1, description="The endpoint's base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str = Field(min_length=1, description="The `model` field of every request.")
    snapshot: Path
    tasks: Path | None = Field(default=None, description="Task file (default: the snapshot's tasks.jsonl).")
    task_format: str = Field(default="jsonl", description="Layout of the task file (see `TASK_LOADERS`).")
    limit: int | None = Field(default=None, ge=1, description="Only the first N tasks.")
    out: Path
    profile: str = "mirothinker_v1"
    tool_format: str | None = Field(default=None, description="mcp_xml | hermes | openai (profile's).")
    reward: str = Field(default="gaia", description="gaia | f1 | em | contains | judge")
    runs: int = Field(default=1, ge=1, description="Episodes per task (pass@k uses them).")
    concurrency: int = Field(default=4, ge=1, description="Episodes in flight at once.")
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, description="New tokens per reply.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="More request-body fields.")
    max_tool_calls: int | None = Field(default=None, ge=0, description="Per episode (env default 600).")
    max_turns: int | None = Field(default=None, ge=1, description="Replies per episode (env default 600).")
    sandbox: str = Field(default="auto", description="auto | docker | process | none")
    api_key: SecretStr | None = Field(default=None, exclude=True)
    retries: int = Field(default=5, ge=0, description="Retries per request on endpoint errors.")
    backoff: float = Field(default=1.0, ge=0, description="First retry delay; it doubles each retry.")
    request_timeout: float = Field(default=600.0, gt=0)
    seed: int = 0
    success_threshold: float = Field(default=1.0, description="Reward counted as solved.")
    rerun_failed: bool = Field(
        default=True, description="Play again episodes whose row is an endpoint failure."
    )
    force: bool = Field(default=False, exclude=True, description="Resume even if the evaluation differs.")

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str) -> str:
        get_profile(value)
        return value

    @field_validator("tool_format")
    @classmethod
    def _check_tool_format(cls, value: str | None) -> str | None:
        if value is not None:
            get_format(value)
        return value

    @field_validator("reward")
    @classmethod
    def _check_reward(cls, value: str) -> str:
        if value not in REWARD_NAMES:
            raise ValueError(f"unknown reward {value!r}; valid choices: {', '.join(REWARD_NAMES)}")
        return value

    @field_validator("sandbox")
    @classmethod
    def _check_sandbox(cls, value: str) -> str:
        return check_backend_kind(value)

    def sampling(self) -> dict[str, Any]:
        """temperature / top_p / max_tokens sent with each request: these settings, else the profile's."""
        defaults = get_profile(self.profile).sampling
        chosen = {
            "temperature": self.temperature if self.temperature is not None else defaults.temperature,
            "top_p": self.top_p if self.top_p is not None else defaults.top_p,
            "max_tokens": self.max_tokens if self.max_tokens is not None else defaults.max_tokens,
        }
        return {key: value for key, value in chosen.items() if value is not None}


class EvalSetup(BaseModel):
    """What `config.json` records: the identity a resumed run must match, plus the settings used."""

    model: str
    snapshot_name: str
    snapshot_hash: str
    tasks_hash: str
    task_count: int
    profile: str
    tool_format: str | None
    reward: str
    sampling: dict[str, Any]
    extra_body: dict[str, Any]
    max_tool_calls: int | None
    max_turns: int | None
    miroenv_version: str
    config: dict[str, Any]


class EvalRow(BaseModel):
    """One finished episode (a line of results.jsonl): the answer, the reward and what it took."""

    task_id: str
    run: int = Field(ge=1, description="Which of the `runs` episodes of this task, from 1.")
    model: str
    seed: int
    episode_id: str | None = None
    question: str
    gold: str | None
    aliases: list[str] = Field(default_factory=list)
    answer: str | None
    reward: float
    components: dict[str, float] = Field(default_factory=dict)
    terminated: bool
    truncated: bool
    truncated_by: str | None = None
    steps: int
    tool_calls: int
    errors: dict[str, int] = Field(description="By kind: format, tool, infra (counts) and endpoint (0 or 1).")
    error: str | None = Field(default=None, description="Why the endpoint failed the episode.")
    endpoint_unavailable: bool = Field(
        default=False,
        description="The failure was connection errors or retryable statuses outlasting the retries.",
    )
    model_calls: int = Field(default=0, description="Replies received.")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    duration_s: float = 0.0
    trajectory: str = Field(description="The episode's trajectory file, relative to the out directory.")
    finished_at: str

    @property
    def key(self) -> tuple[str, int]:
        """(task_id, run): what identifies the episode across reruns."""
        return self.task_id, self.run

    @property
    def endpoint_failed(self) -> bool:
        """True when the endpoint's failure ended the episode (it did not reach the env's end)."""
        return self.error is not None


class EvalProgress(BaseModel):
    """Counts for a progress display, over every row so far (resumed ones included)."""

    total: int
    done: int = 0
    resumed: int = 0
    solved: int = 0
    tool_calls: int = 0
    errors: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(EVAL_ERROR_KINDS, 0))

    @property
    def accuracy(self) -> float:
        """Solved share of the finished episodes."""
        return self.solved / self.done if self.done else 0.0

    def add(self, row: EvalRow, threshold: float) -> None:
        """Count one more finished episode."""
        self.done += 1
        self.solved += is_solved(row.reward, threshold)
        self.tool_calls += row.tool_calls
        for kind, count in row.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count


class EvalSummary(BaseModel):
    """The evaluation's totals over every row (old and new): accuracy, pass@k, tool calls, errors."""

    model: str
    snapshot: str
    reward: str
    runs: int
    tasks: int
    episodes: int
    complete: int = Field(description="Episodes that reached the env's end (no endpoint failure).")
    success_threshold: float
    accuracy: float = Field(description="Share of episodes whose reward reaches the threshold.")
    mean_reward: float
    pass_at_k: dict[int, float] = Field(description="Unbiased pass@k averaged over tasks with ≥ k episodes.")
    mean_tool_calls: float
    errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    played: int = Field(description="Episodes played by this invocation.")
    resumed: int = Field(description="Episodes found finished in the out directory and skipped.")
    requests: int = Field(description="HTTP requests this invocation sent to the endpoint, retries included.")


class EvalReport(BaseModel):
    """Every row and the summary."""

    rows: list[EvalRow]
    summary: EvalSummary


ProgressCallback = Callable[[EvalProgress, EvalRow | None], None]
"""Called once before the first episode (row None) and after every finished episode, on the caller's thread."""


def is_solved(reward: float, threshold: float) -> bool:
    """Whether a reward counts as a solve (the tolerance `scoring.summarize` uses)."""
    return reward >= threshold - 1e-9


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task from n episodes with c solved: 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def trajectory_name(task_id: str, run: int) -> str:
    """A file name for the episode's trajectory that is safe for any task id (hash-suffixed when altered)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", task_id)[:100]
    if safe != task_id or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha256(task_id.encode()).hexdigest()[:10]}"
    return f"{safe}.run{run}.jsonl"


def episode_seed(seed: int, task_id: str, run: int) -> int:
    """The reset seed of a (task, run) pair: the same whatever the order or concurrency."""
    digest = hashlib.sha256(f"{seed}\0{task_id}\0{run}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def read_results(path: str | Path) -> list[EvalRow]:
    """Rows of a results.jsonl file (none if absent); a torn last line (a killed writer) is ignored.

    Read with `miroenv.jsonl.iter_jsonl`: a bad line elsewhere is a `JsonlError`, a row that is JSON but not a
    results row an `EvalError`, both naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for lineno, data in iter_jsonl(path, objects=True):
        try:
            rows.append(EvalRow.model_validate(data))
        except ValidationError as exc:
            raise EvalError(f"{path}:{lineno}: not a results row ({exc.errors()[0]['msg']})") from exc
    return rows


def latest_rows(rows: Iterable[EvalRow]) -> dict[tuple[str, int], EvalRow]:
    """The last row of each (task_id, run): a replayed endpoint failure supersedes the failed row."""
    return {row.key: row for row in rows}


def summarize_rows(
    rows: Sequence[EvalRow],
    *,
    model: str,
    snapshot: str,
    reward: str,
    runs: int,
    success_threshold: float = 1.0,
    played: int = 0,
    resumed: int = 0,
    requests: int = 0,
) -> EvalSummary:
    """Accuracy, mean reward, mean tool calls and errors (via `scoring.summarize`) plus pass@1 and pass@runs."""
    scored = summarize([_score_row(row) for row in rows], reward, success_threshold=success_threshold)
    per_task: dict[str, list[bool]] = {}
    for row in rows:
        per_task.setdefault(row.task_id, []).append(is_solved(row.reward, success_threshold))
    passes: dict[int, float] = {}
    for k in sorted({1, runs}):
        eligible = [outcomes for outcomes in per_task.values() if len(outcomes) >= k]
        if eligible:
            passes[k] = sum(pass_at_k(len(o), sum(o), k) for o in eligible) / len(eligible)
    return EvalSummary(
        model=model,
        snapshot=snapshot,
        reward=reward,
        runs=runs,
        tasks=len(per_task),
        episodes=scored.episodes,
        complete=scored.complete,
        success_threshold=success_threshold,
        accuracy=scored.accuracy,
        mean_reward=scored.mean_reward,
        pass_at_k=passes,
        mean_tool_calls=scored.mean_tool_calls,
        errors=dict.fromkeys(EVAL_ERROR_KINDS, 0) | scored.errors,
        prompt_tokens=sum(row.prompt_tokens for row in rows),
        completion_tokens=sum(row.completion_tokens for row in rows),
        played=played,
        resumed=resumed,
        requests=requests,
    )


def _score_row(row: EvalRow) -> ScoreRow:
    return ScoreRow(
        path=row.trajectory,
        episode=0,
        episode_id=row.episode_id or "",
        task_id=row.task_id,
        question=row.question,
        answer=row.answer,
        gold=row.gold,
        aliases=row.aliases,
        reward=row.reward,
        components=row.components,
        stored_reward=None,
        stored_reward_name=None,
        reproduced=None,
        complete=not row.endpoint_failed,
        terminated=row.terminated,
        truncated=row.truncated,
        truncated_by=row.truncated_by,
        steps=row.steps,
        tool_calls=row.tool_calls,
        errors=row.errors,
    )


def reply_action(reply: ChatReply) -> Action:
    """The env action for a reply: its text, or the assistant message dict when it carries tool calls."""
    if reply.tool_calls:
        return {"role": "assistant", "content": reply.content, "tool_calls": reply.tool_calls}
    return reply.content or ""


def tasks_digest(tasks: Sequence[Task]) -> str:
    """A hash of the task list (ids, questions, answers, everything), for the resume check."""
    payload = json.dumps([task.model_dump(mode="json") for task in tasks], sort_keys=True)
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


class _Stopped(Exception):
    """The run is stopping (interrupt or endpoint down everywhere): abandon the episode without a row."""


class _EpisodeUsage:
    """What one episode's model calls cost."""

    def __init__(self) -> None:
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, reply: ChatReply) -> None:
        self.calls += 1
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens


class ResultsLog(JsonlWriter):
    """Appends rows to results.jsonl, one flushed line each, after cutting off a torn last line."""

    def append(self, row: EvalRow) -> None:
        """Write the row as one line."""
        self.write(row)


class Evaluation:
    """One evaluation over an out directory: checks the setup, resumes, plays the pending episodes."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.out = config.out
        try:
            self.sampling = config.sampling()
            self.tasks = self._load_tasks()
        except (OSError, ValueError) as exc:
            raise EvalError(str(exc)) from exc
        self.stop = threading.Event()
        self.give_up_after = max(3, config.concurrency)
        """The run gives up when this many first episodes all fail because the endpoint is unavailable."""

    def _load_tasks(self) -> list[Task]:
        path = self.config.tasks or self.config.snapshot / "tasks.jsonl"
        if not path.is_file():
            raise EvalError(f"task file not found: {path}")
        tasks = load_task_file(path, self.config.task_format)
        if self.config.limit is not None:
            tasks = tasks[: self.config.limit]
        if not tasks:
            raise EvalError(f"no tasks in {path}")
        return tasks

    # ------------------------------------------------------------------ setup and resume

    def setup(self, web: Snapshot) -> EvalSetup:
        """The identity and settings of this evaluation, as `config.json` records them."""
        c = self.config
        return EvalSetup(
            model=c.model,
            snapshot_name=web.name,
            snapshot_hash=web.content_hash,
            tasks_hash=tasks_digest(self.tasks),
            task_count=len(self.tasks),
            profile=c.profile,
            tool_format=c.tool_format,
            reward=c.reward,
            sampling=self.sampling,
            extra_body=c.extra_body,
            max_tool_calls=c.max_tool_calls,
            max_turns=c.max_turns,
            miroenv_version=__version__,
            config=c.model_dump(mode="json"),
        )

    def check_resumable(self, setup: EvalSetup) -> None:
        """Refuse an out directory holding a different evaluation (unless forced)."""
        path = self.out / CONFIG_FILE
        if not path.is_file() or self.config.force:
            return
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise EvalError(
                f"{path} is not valid JSON ({exc.msg}); --force (force=True) overwrites it"
            ) from exc
        mine = setup.model_dump(mode="json")
        differing = [
            f"{name} ({stored.get(name)!r} there, {mine[name]!r} now)"
            for name in IDENTITY_FIELDS
            if stored.get(name) != mine[name]
        ]
        if differing:
            raise EvalError(
                f"{self.out} holds results of a different evaluation: {'; '.join(differing)}. "
                "Use another out directory, or --force (force=True) to resume anyway."
            )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold an exclusive lock on `out/.lock` (recording this pid in it); `EvalError` when another run has it."""
        path = self.out / LOCK_FILE
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EvalError(f"cannot use the out directory {self.out}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise EvalError(
                f"another evaluation is using this directory (pid {holder}): {self.out}. "
                "Wait for it to finish, or use another out directory."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise EvalError(f"cannot lock {path}: {exc}") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            os.close(fd)

    # ------------------------------------------------------------------ running

    def run(self, progress: ProgressCallback | None = None) -> EvalReport:
        """Play every pending (task, run) pair, then summarise all rows and write summary.json.

        Everything that can fail on bad settings (snapshot, reward, sandbox backend, envs) is built before
        config.json is written; the envs and the backend are closed however the run ends."""
        c = self.config
        with contextlib.ExitStack() as stack:
            try:
                web = Snapshot(c.snapshot)
            except (SnapshotError, OSError) as exc:
                raise EvalError(f"cannot open snapshot {c.snapshot}: {exc}") from exc
            stack.callback(web.close)
            try:
                reward = resolve_reward(c.reward)
            except ValueError as exc:
                raise EvalError(str(exc)) from exc
            close_reward = getattr(reward, "close", None)
            if callable(close_reward):
                stack.callback(close_reward)
            setup = self.setup(web)
            stack.enter_context(self._exclusive())
            self.check_resumable(setup)
            try:
                previous = latest_rows(read_results(self.out / RESULTS_FILE))
            except JsonlError as exc:
                raise EvalError(f"cannot resume: {exc}") from exc
            finished = {key for key, row in previous.items() if not (c.rerun_failed and row.endpoint_failed)}
            pending = [(task, run) for run in range(1, c.runs + 1) for task in self.tasks]
            pending = [(task, run) for task, run in pending if (task.task_id, run) not in finished]
            envs = self._open_envs(web, reward, min(c.concurrency, len(pending)), stack) if pending else []
            replace_file(self.out / CONFIG_FILE, (setup.model_dump_json(indent=2) + "\n").encode())
            (self.out / TRAJECTORY_DIR).mkdir(exist_ok=True)
            return self._run(web, reward, previous, pending, envs, progress, stack)

    def _open_envs(
        self, web: Snapshot, reward: Reward, count: int, stack: contextlib.ExitStack
    ) -> list[ResearchEnv]:
        """The sandbox backend and `count` envs sharing it, each closed when `stack` unwinds (envs first)."""
        c = self.config
        try:
            selection = select_backend(c.sandbox)
        except (SandboxError, ValueError) as exc:
            raise EvalError(f"cannot start the {c.sandbox!r} sandbox backend: {exc}") from exc
        stack.callback(selection.backend.close)
        options: dict[str, Any] = {"profile": c.profile, "tool_format": c.tool_format}
        if c.max_tool_calls is not None:
            options["max_tool_calls"] = c.max_tool_calls
        if c.max_turns is not None:
            options["max_turns"] = c.max_turns
        envs: list[ResearchEnv] = []
        for _ in range(count):
            try:
                env = ResearchEnv(
                    web,
                    self.tasks,
                    reward=reward,
                    sandbox=selection.backend,
                    config=EnvConfig(**options),
                    output_dir=self.out / "files",
                )
            except (ValueError, OSError, SandboxError) as exc:
                raise EvalError(f"cannot build the environment: {exc}") from exc
            stack.callback(env.close)
            envs.append(env)
        return envs

    def _run(
        self,
        web: Snapshot,
        reward: Reward,
        previous: dict[tuple[str, int], EvalRow],
        pending: list[tuple[Task, int]],
        envs: list[ResearchEnv],
        progress: ProgressCallback | None,
        stack: contextlib.ExitStack,
    ) -> EvalReport:
        c = self.config
        wanted_keys = {(task.task_id, run) for run in range(1, c.runs + 1) for task in self.tasks}
        status = EvalProgress(total=len(wanted_keys))
        for key in wanted_keys - {(task.task_id, run) for task, run in pending}:
            status.add(previous[key], c.success_threshold)
        status.resumed = status.done
        if progress is not None:
            progress(status, None)
        client = ChatCompletionsClient(
            c.base_url,
            api_key=c.api_key.get_secret_value() if c.api_key is not None else None,
            timeout=c.request_timeout,
            retries=c.retries,
            backoff=c.backoff,
            label=f"model endpoint {c.base_url}",
            unavailable_error=ChatEndpointUnavailableError,
            cancel=self.stop,
        )
        stack.callback(client.close)
        log = ResultsLog(self.out / RESULTS_FILE)
        stack.callback(log.close)
        new_rows, gave_up = (
            self._play_all(envs, client, pending, log, status, progress) if pending else ([], False)
        )
        rows = [
            row for key, row in latest_rows([*previous.values(), *new_rows]).items() if key in wanted_keys
        ]
        summary = summarize_rows(
            rows,
            model=c.model,
            snapshot=web.name,
            reward=getattr(reward, "name", c.reward),
            runs=c.runs,
            success_threshold=c.success_threshold,
            played=len(new_rows),
            resumed=status.resumed,
            requests=client.requests,
        )
        replace_file(self.out / SUMMARY_FILE, (summary.model_dump_json(indent=2) + "\n").encode())
        failed = [row for row in new_rows if row.endpoint_failed]
        if failed and (gave_up or len(failed) == len(new_rows)):
            which = (
                "every episode played"
                if len(failed) == len(new_rows)
                else f"the first {self.give_up_after} episodes"
            )
            raise EndpointUnavailableError(
                f"{which} failed to get replies from {c.base_url} ({len(new_rows)} of {len(pending)} played"
                f"{' before giving up' if gave_up else ''}); last error: {failed[-1].error}"
            )
        return EvalReport(rows=rows, summary=summary)

    def _play_all(
        self,
        envs: list[ResearchEnv],
        client: ChatCompletionsClient,
        pending: list[tuple[Task, int]],
        log: ResultsLog,
        status: EvalProgress,
        progress: ProgressCallback | None,
    ) -> tuple[list[EvalRow], bool]:
        """Play the pending episodes on daemon worker threads; (rows logged, whether the run gave up).

        However it ends, the workers are told to stop and given `WORKER_STOP_GRACE` seconds (an interrupt never
        waits for a slow request), and every row finished by then is logged. The run gives up when the first
        max(3, concurrency) episodes all fail because the endpoint is unavailable (not when it refuses a
        request, like a 400 for an over-long context)."""
        c = self.config
        jobs: queue.Queue[tuple[Task, int]] = queue.Queue()
        for job in pending:
            jobs.put(job)
        done: queue.Queue[EvalRow | BaseException] = queue.Queue()
        workers = [
            threading.Thread(
                target=self._worker, args=(env, client, jobs, done), daemon=True, name=f"miroenv-eval-{i}"
            )
            for i, env in enumerate(envs)
        ]
        for worker in workers:
            worker.start()
        rows: list[EvalRow] = []
        late: list[EvalRow] = []
        gave_up = False

        def record(row: EvalRow) -> None:
            log.append(row)
            rows.append(row)
            status.add(row, c.success_threshold)

        try:
            for _ in range(len(pending)):
                item = done.get()
                if isinstance(item, BaseException):
                    raise item
                record(item)
                if progress is not None:
                    progress(status, item)
                if len(rows) == self.give_up_after and all(row.endpoint_unavailable for row in rows):
                    gave_up = True
                    break
        finally:
            self.stop.set()
            deadline = time.monotonic() + WORKER_STOP_GRACE
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            while True:
                try:
                    item = done.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, EvalRow):
                    record(item)
                    late.append(item)
        for row in late:
            if progress is not None:
                progress(status, row)
        return rows, gave_up

    def _worker(
        self,
        env: ResearchEnv,
        client: ChatCompletionsClient,
        jobs: queue.Queue[tuple[Task, int]],
        done: queue.Queue[EvalRow | BaseException],
    ) -> None:
        while not self.stop.is_set():
            try:
                task, run = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                done.put(self._episode(env, client, task, run))
            except _Stopped:
                return
            except BaseException as exc:  # handed to the main thread, which stops the run and raises it
                done.put(exc)

    def _episode(self, env: ResearchEnv, client: ChatCompletionsClient, task: Task, run: int) -> EvalRow:
        """Play one episode, recording its trajectory; an endpoint failure ends it with an `endpoint` row."""
        c = self.config
        seed = episode_seed(c.seed, task.task_id, run)
        name = trajectory_name(task.task_id, run)
        path = self.out / TRAJECTORY_DIR / name
        path.unlink(missing_ok=True)
        recorder = RecordTrajectory(env, path)
        usage = _EpisodeUsage()
        params: dict[str, Any] = {"model": c.model, **self.sampling, **c.extra_body}
        if env.format.name == "openai":
            params["tools"] = env.tools_openai()

        def act(observation: str) -> Action:
            if self.stop.is_set():
                raise _Stopped()
            try:
                reply = client.chat(env.context(), **params)
            except ChatEndpointError:
                if self.stop.is_set():  # cancelled, or failed while the run stops: abandoned, not a row
                    raise _Stopped() from None
                raise
            usage.add(reply)
            return reply_action(reply)

        views: list[StepView] = []
        error: str | None = None
        unavailable = False
        started = time.perf_counter()
        try:
            for view in iter_episode(recorder, act, task_id=task.task_id, seed=seed):
                views.append(view)
        except ChatEndpointError as exc:
            error = str(exc)
            unavailable = isinstance(exc, ChatEndpointUnavailableError)
        finally:
            recorder.writer.close()
        result = summarize_episode(views)
        last = views[-1].info
        return EvalRow(
            task_id=task.task_id,
            run=run,
            model=c.model,
            seed=seed,
            episode_id=views[0].info.get("episode_id"),
            question=task.question,
            gold=task.answer,
            aliases=list(task.aliases),
            answer=result.answer,
            reward=result.reward,
            components=result.reward_components,
            terminated=result.terminated,
            truncated=result.truncated,
            truncated_by=last.get("truncated_by"),
            steps=result.steps,
            tool_calls=result.tool_calls,
            errors={
                **dict.fromkeys(EVAL_ERROR_KINDS, 0),
                **result.errors,
                "endpoint": int(error is not None),
            },
            error=error,
            endpoint_unavailable=unavailable,
            model_calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            duration_s=time.perf_counter() - started,
            trajectory=f"{TRAJECTORY_DIR}/{name}",
            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


def evaluate(config: EvalConfig, progress: ProgressCallback | None = None) -> EvalReport:
    """Evaluate `config.model` on the tasks, resuming `config.out`; `EvalError` / `EndpointUnavailableError`."""
    return Evaluation(config).run(progress)


__all__ = [
    "EVAL_ERROR_KINDS",
    "EndpointUnavailableError",
    "EvalConfig",
    "EvalError",
    "EvalProgress",
    "EvalReport",
    "EvalRow",
    "EvalSetup",
    "EvalSummary",
    "Evaluation",
    "ProgressCallback",
    "episode_seed",
    "evaluate",
    "latest_rows",
    "pass_at_k",
    "read_results",
    "summarize_rows",
    "trajectory_name",
]
