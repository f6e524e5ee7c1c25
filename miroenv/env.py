"""`ResearchEnv`: a Gymnasium environment whose actions are assistant messages and whose tools act on a
replayed web and on sandboxes. Nothing the policy writes raises out of `step()`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from miroenv._version import __version__
from miroenv.history import History, Message
from miroenv.protocol.base import Action
from miroenv.protocol.boxed import extract_boxed
from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall
from miroenv.protocol.mcp_xml import safe_action_text, safe_repr
from miroenv.protocol.registry import get_format
from miroenv.protocol.text import has_surrogates, screen_parsed, scrub, scrub_text, scrub_value
from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext, get_reward
from miroenv.sandbox.base import NoSandboxBackend, SandboxBackend
from miroenv.sandbox.select import make_backend
from miroenv.spaces import UnicodeText
from miroenv.tasks import Task, load_tasks, resolve_task_files
from miroenv.tokens import TokenCounter, approx_token_count
from miroenv.tools.base import DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_MAX_EPISODE_DOWNLOAD_BYTES, EpisodeContext
from miroenv.tools.profiles import get_profile
from miroenv.tools.runner import CallOutcome, CallRunner, describe_call, problem_outcome, run_call
from miroenv.web.base import Web
from miroenv.web.llm_extract import LLMExtractor
from miroenv.web.snapshot import Snapshot

logger = logging.getLogger(__name__)

Phase = Literal["act", "summary", "done"]
MAX_TEXT_CHARS = 50_000_000


class EnvConfig(BaseModel):
    """Episode settings; `None` means "the profile's default"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str = "mirothinker_v1"
    tool_format: str | None = Field(
        default=None, description="mcp_xml | hermes | openai (default: profile's)"
    )
    max_tool_calls: int = Field(default=600, ge=0)
    max_turns: int | None = Field(default=600, ge=1, description="Assistant replies per episode.")
    max_context_tokens: int | None = Field(default=262_144, ge=1)
    max_episode_seconds: float | None = Field(default=None, gt=0)
    tool_timeout_s: float | None = Field(
        default=1200.0, gt=0, description="Per tool call (MiroThinker's 1,200 s); None: no limit."
    )
    keep_tool_results: int | None = Field(default=None, ge=-1, description="Recency window; -1 keeps all.")
    summary_turn: bool | None = None
    max_download_bytes: int = Field(
        default=DEFAULT_MAX_DOWNLOAD_BYTES, ge=0, description="Largest file one sandbox download brings out."
    )
    max_episode_download_bytes: int = Field(
        default=DEFAULT_MAX_EPISODE_DOWNLOAD_BYTES,
        ge=0,
        description="All of an episode's downloads together.",
    )
    keep_downloads: bool = Field(
        default=False, description="Leave downloads in output_dir after the episode (default: deleted)."
    )


class _Episode:
    """Mutable state of the episode in progress."""

    def __init__(
        self, task: Task, ctx: EpisodeContext, history: History, seed: int | None, started: float
    ) -> None:
        self.task = task
        self.ctx = ctx
        self.history = history
        self.seed = seed
        self.phase: Phase = "act"
        self.turns = 0
        self.tool_calls = 0
        self.errors = {"format": 0, "tool": 0, "infra": 0}
        self.started = started
        self.answer: str | None = None
        self.reward: RewardBreakdown | None = None
        self.terminated = False
        self.truncated = False
        self.truncated_by: str | None = None
        self.repairs = 0
        """Lone surrogates replaced in the current step's action (reported in `info["action_repairs"]`)."""


def _load_web(snapshot: str | Path | Web) -> Web:
    """The env's web; a snapshot without a usable search index warns (`SnapshotIndexWarning`) here."""
    web = snapshot if isinstance(snapshot, Web) else Snapshot(snapshot)
    if isinstance(web, Snapshot):
        web.warn_if_unsearchable()
    return web


def _load_task_list(
    tasks: Sequence[Task | Mapping[str, Any]] | str | Path | None, web: Web, attachments_root: Path | None
) -> list[Task]:
    """The env's tasks, every attachment checked to exist inside its folder: `attachments_root`, else the
    tasks file's folder; tasks given in code without a root must name their attachments by absolute path."""
    if tasks is None:
        tasks = Path(getattr(web, "path", "")) / "tasks.jsonl"
        if not tasks.is_file():
            raise ValueError("no tasks given and the snapshot has no tasks.jsonl; pass tasks=...")
    if isinstance(tasks, (str, Path)):
        root = attachments_root or Path(tasks).parent
        return load_tasks(tasks, root, must_exist=True)
    return [
        resolve_task_files(
            t if isinstance(t, Task) else Task.model_validate(t), attachments_root, f"tasks[{i}]"
        )
        for i, t in enumerate(tasks)
    ]


class ResearchEnv(gym.Env[str, Any]):
    """A research-agent episode: reset gives the prompt, each step takes the assistant's whole message.

    Args:
        snapshot: a snapshot directory (or any `Web`) the tools read.
        tasks: tasks, a tasks JSONL path, or None for the snapshot's own `tasks.jsonl`.
        reward: a reward name (`gaia`, `em`, `f1`, `contains`) or a `Reward`.
        sandbox: the backend for the Python tools: a `SandboxBackend`, or "auto" / "docker" / "process" /
            "none" (default: none, and those tools say so). A backend made from a name is closed with the env.
        config: an `EnvConfig`; keyword overrides of its fields are accepted too.
        token_counter: counts tokens for the context budget (default: ~4 bytes per token).
        clock: the time source for durations and the wall-clock budget; time is the env's only
            non-deterministic input, so pass a fake clock where `info` must be reproducible.
        output_dir: where `download_file_from_sandbox_to_local` writes files, one folder per episode
            (default: a private temporary folder); they are deleted when the episode ends unless
            `keep_downloads` is set.
        attachments_root: the folder task attachments must lie in (default: the tasks file's folder; tasks
            given in code name theirs by absolute path). Symlinks, `..` and paths outside it are refused.
        llm_extractor: answer `scrape_and_extract_info` with an LLM (recorded answers are replayed first)
            instead of the deterministic passage extractor.
    """

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - gymnasium declares it as an instance attribute

    def __init__(
        self,
        snapshot: str | Path | Web,
        tasks: Sequence[Task | Mapping[str, Any]] | str | Path | None = None,
        *,
        reward: str | Reward = "gaia",
        sandbox: SandboxBackend | str | None = None,
        config: EnvConfig | None = None,
        token_counter: TokenCounter | None = None,
        clock: Callable[[], float] = time.perf_counter,
        llm_extractor: LLMExtractor | None = None,
        output_dir: str | Path | None = None,
        attachments_root: str | Path | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        self.config = (
            (config or EnvConfig()).model_copy(update=overrides) if overrides else (config or EnvConfig())
        )
        EnvConfig.model_validate(self.config.model_dump())
        self.profile = get_profile(self.config.profile, llm_extractor=llm_extractor)
        self.format = get_format(self.config.tool_format or self.profile.tool_format)
        self.keep_tool_results = (
            self.config.keep_tool_results
            if self.config.keep_tool_results is not None
            else self.profile.keep_tool_results
        )
        self.summary_turn = (
            self.config.summary_turn if self.config.summary_turn is not None else self.profile.summary_turn
        )
        self._owns_web = not isinstance(snapshot, Web)
        self.web = _load_web(snapshot)
        self.attachments_root = Path(attachments_root) if attachments_root is not None else None
        self.tasks = _load_task_list(tasks, self.web, self.attachments_root)
        if not self.tasks:
            raise ValueError("the task list is empty")
        self._tasks_by_id = {t.task_id: t for t in self.tasks}
        self.reward_fn: Reward = get_reward(reward) if isinstance(reward, str) else reward
        self._owns_sandboxes = isinstance(sandbox, str)
        if isinstance(sandbox, str):
            self.sandboxes: SandboxBackend = make_backend(sandbox)
        else:
            self.sandboxes = sandbox or NoSandboxBackend()
        self.token_counter: TokenCounter = token_counter or approx_token_count
        self._clock = clock
        self.output_dir = Path(output_dir) if output_dir is not None else None
        if self.config.keep_downloads and self.output_dir is None:
            raise ValueError("keep_downloads=True needs an output_dir to keep the downloaded files in")
        self._router = self.profile.router()
        self.call_runner: CallRunner = run_call
        """Runs each parsed tool call; `run_call` unless a wrapper hooks in (`miroenv.testing.FaultInjection`)."""
        self.render_mode = render_mode
        self.observation_space = UnicodeText(MAX_TEXT_CHARS)
        self.action_space = UnicodeText(MAX_TEXT_CHARS)
        self._episode: _Episode | None = None
        self._episode_count = 0
        self._last_observation = ""

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on `options["task"]`, `options["task_id"]`, or a task drawn with `np_random`."""
        super().reset(seed=seed)
        self._end_episode()
        task = self._pick_task(options or {})
        self._episode_count += 1
        episode_seed = int(self.np_random.integers(0, 2**63 - 1))
        ctx = EpisodeContext(
            web=self.web,
            task=task,
            episode_id=f"{task.task_id}-{episode_seed:016x}",
            sandboxes=self.sandboxes,
            rng=np.random.default_rng(episode_seed),
            output_dir=self.output_dir / f"{task.task_id}-{episode_seed:016x}" if self.output_dir else None,
            max_download_bytes=self.config.max_download_bytes,
            max_episode_download_bytes=self.config.max_episode_download_bytes,
            keep_downloads=self.config.keep_downloads,
        )
        history = History(self.token_counter, self.keep_tool_results)
        self._episode = ep = _Episode(task, ctx, history, seed, self._clock())
        date = task.date or self.web.capture_date
        system = self.profile.system_prompt(date, self.format)
        user = self.profile.task_message(task)
        history.append(Message(role="system", content=system))
        history.append(Message(role="user", content=user))
        observation = f"{system}\n\n{user}"
        self._last_observation = observation
        info = self._info(ep, [], None)
        info["messages"] = history.full()
        info["tools"] = self.tools_openai()
        return observation, info

    def step(self, action: Action) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run every tool call in `action` and return their results; a reply without calls ends the episode
        (after the summary turn in the MiroThinker profile)."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("ResearchEnv.step() called before reset()")
        ep.repairs = 0
        if ep.phase == "done":
            info = self._info(ep, [], "the episode has already ended; call reset() to start a new one")
            return "The episode has ended.", 0.0, ep.terminated, ep.truncated, info

        ep.turns += 1
        if not isinstance(action, (str, Mapping)):
            ep.history.append(Message(role="assistant", content=scrub(safe_repr(action))))
            problem = (
                f"the action must be the assistant message as a string or an assistant message dict, "
                f"got {type(action).__name__}"
            )
            ep.errors["format"] += 1
            return self._respond(ep, [_format_outcome(problem)])

        text, repaired = scrub_text(safe_action_text(action)[0])
        tool_calls, calls_repaired = _history_tool_calls(action)
        ep.history.append(Message(role="assistant", content=text, tool_calls=tool_calls))
        ep.repairs = repaired + calls_repaired
        if ep.phase == "summary":
            return self._finish(ep, extract_boxed(text), terminated=True)

        parsed = self._parse(action)
        if not parsed.attempted_tool_use:
            if self.summary_turn:
                return self._ask_summary(ep)
            return self._finish(ep, extract_boxed(text), terminated=True)

        outcomes: list[CallOutcome] = []
        for call in parsed.calls:
            if ep.tool_calls >= self.config.max_tool_calls:
                ep.truncated_by = "tool_calls"
                break
            if self._out_of_time(ep):
                ep.truncated_by = "time"
                break
            ep.tool_calls += 1
            outcomes.append(self._run_call(ep, call))
        outcomes.extend(problem_outcome(p) for p in parsed.problems)
        for outcome in outcomes:
            if outcome.error_kind is not None:
                ep.errors[outcome.error_kind] += 1
        return self._respond(ep, outcomes)

    def render(self) -> str | None:
        """`ansi`: the last observation's text."""
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """End the episode (releasing its sandboxes) and close the snapshot if this env opened it."""
        self._end_episode()
        if self._owns_web:
            self.web.close()
        if self._owns_sandboxes:
            self.sandboxes.close()
        super().close()

    # ------------------------------------------------------------------ public helpers

    def context(self) -> list[dict[str, Any]]:
        """The messages to send to the model now, under the recency policy (older tool results replaced)."""
        return self._require_episode().history.context()

    def messages(self) -> list[dict[str, Any]]:
        """The full, unpruned conversation so far."""
        return self._require_episode().history.full()

    def tools_openai(self) -> list[dict[str, Any]]:
        """The profile's tools as an OpenAI `tools` list (for the `openai` format)."""
        return [spec.openai_function() for spec in self.profile.specs()]

    def get_task(self, task_id: str) -> Task:
        """The task with this id; `KeyError` naming it when the env has none."""
        try:
            return self._tasks_by_id[task_id]
        except KeyError:
            raise KeyError(f"unknown task_id {task_id!r}") from None

    @property
    def task(self) -> Task:
        """The task of the current episode."""
        return self._require_episode().task

    def episode_header(self) -> dict[str, Any]:
        """What a trajectory header records about this episode's setup."""
        ep = self._require_episode()
        return {
            "miroenv_version": __version__,
            "config": self.config.model_dump(),
            "profile": self.profile.name,
            "tool_format": self.format.name,
            "keep_tool_results": self.keep_tool_results,
            "summary_turn": self.summary_turn,
            "snapshot": {"name": self.web.name, "content_hash": self.web.content_hash},
            "task": ep.task.model_dump(),
            "seed": ep.seed,
            "reward": getattr(self.reward_fn, "name", type(self.reward_fn).__name__),
            "sandbox": {"backend": self.sandboxes.name, "isolation": self.sandboxes.isolation},
        }

    # ------------------------------------------------------------------ internals

    def _require_episode(self) -> _Episode:
        if self._episode is None:
            raise RuntimeError("no episode in progress: call reset() first")
        return self._episode

    def _pick_task(self, options: Mapping[str, Any]) -> Task:
        if "task" in options:
            task = options["task"]
            task = task if isinstance(task, Task) else Task.model_validate(task)
            return resolve_task_files(task, self.attachments_root, "reset(options['task'])")
        if "task_id" in options:
            return self.get_task(str(options["task_id"]))
        return self.tasks[int(self.np_random.integers(len(self.tasks)))]

    def _parse(self, action: Action) -> ParsedAction:
        """The calls in `action`, screened: names or arguments holding lone surrogates or NUL are problems."""
        try:
            parsed = self.format.parse(action)
        except Exception as exc:  # parsers promise not to raise; a bug there must not escape step()
            parsed = ParsedAction(
                text=safe_action_text(action)[0],
                problems=[ParseProblem(message=f"the message could not be parsed: {type(exc).__name__}")],
            )
        return screen_parsed(parsed)[0]

    def _run_call(self, ep: _Episode, call: ToolCall) -> CallOutcome:
        """`call_runner` on one call; a runner that raises (a bug, or a hook's) is reported as `infra`."""
        try:
            return self.call_runner(
                call, self._router, ep.ctx, self.profile.max_result_chars, self._clock, self._call_timeout(ep)
            )
        except Exception as exc:
            logger.exception("the call runner crashed on %s", call.name)
            error = f"internal error: {type(exc).__name__}: {scrub(str(exc))}"
            return CallOutcome(
                server=call.server,
                tool=call.name,
                arguments=dict(call.arguments),
                call_id=call.call_id,
                text=f"{describe_call(call.name, call.server)} failed. Error: {error}",
                error_kind="infra",
                error=error,
            )

    def _call_timeout(self, ep: _Episode) -> float | None:
        """The tool-call limit, shortened to what is left of the episode's wall-clock budget."""
        limits = [self.config.tool_timeout_s]
        if self.config.max_episode_seconds is not None:
            limits.append(self.config.max_episode_seconds - (self._clock() - ep.started))
        present = [limit for limit in limits if limit is not None]
        return max(min(present), 0.0) if present else None

    def _out_of_time(self, ep: _Episode) -> bool:
        limit = self.config.max_episode_seconds
        return limit is not None and self._clock() - ep.started > limit

    def _respond(
        self, ep: _Episode, outcomes: list[CallOutcome]
    ) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        outcomes = [_scrubbed_outcome(o) for o in outcomes]
        texts = [o.text for o in outcomes]
        if self.format.result_role == "user":
            observation = "\n".join(texts)
            ep.history.append(Message(role="user", content=observation, prunable=True))
        else:
            for index, outcome in enumerate(outcomes):
                ep.history.append(
                    Message(
                        role="tool",
                        content=outcome.text,
                        tool_call_id=outcome.call_id or f"call_{ep.turns}_{index}",
                        prunable=True,
                    )
                )
            observation = "\n".join(texts)
        self._last_observation = observation
        self._check_budgets(ep)
        if ep.truncated_by is not None:
            return self._finish(ep, None, terminated=False, observation=observation, outcomes=outcomes)
        return observation, 0.0, False, False, self._info(ep, outcomes, None)

    def _ask_summary(self, ep: _Episode) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        ep.phase = "summary"
        prompt = self.profile.summary_message(ep.task)
        ep.history.append(Message(role="user", content=prompt, prunable=True))
        self._last_observation = prompt
        self._check_budgets(ep)
        if ep.truncated_by is not None:
            return self._finish(ep, None, terminated=False, observation=prompt)
        return prompt, 0.0, False, False, self._info(ep, [], None)

    def _check_budgets(self, ep: _Episode) -> None:
        if ep.truncated_by is not None:
            return
        if self.config.max_turns is not None and ep.turns >= self.config.max_turns:
            ep.truncated_by = "turns"
        elif (
            self.config.max_context_tokens is not None
            and ep.history.context_tokens() > self.config.max_context_tokens
        ):
            ep.truncated_by = "context_tokens"
        elif self._out_of_time(ep):
            ep.truncated_by = "time"

    def _finish(
        self,
        ep: _Episode,
        answer: str | None,
        *,
        terminated: bool,
        observation: str = "",
        outcomes: Sequence[CallOutcome] = (),
    ) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        ep.phase = "done"
        ep.answer = answer
        ep.terminated = terminated
        ep.truncated = not terminated
        ep.reward = self.reward_fn(
            RewardContext(
                answer=answer,
                task=ep.task,
                tool_calls=ep.tool_calls,
                format_errors=ep.errors["format"],
                tool_errors=ep.errors["tool"],
                infra_errors=ep.errors["infra"],
                turns=ep.turns,
                terminated=ep.terminated,
                truncated=ep.truncated,
            )
        )
        for name, amount in ep.reward.cost.items():
            ep.ctx.add_cost(name, amount)
        self._last_observation = observation
        info = self._info(ep, list(outcomes), None)
        ep.ctx.close()
        return observation, float(ep.reward.total), ep.terminated, ep.truncated, info

    def _end_episode(self) -> None:
        if self._episode is not None:
            self._episode.ctx.close()
            self._episode = None

    def _info(self, ep: _Episode, outcomes: Sequence[CallOutcome], notice: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {
            "task_id": ep.task.task_id,
            "episode_id": ep.ctx.episode_id,
            "sandbox_isolation": self.sandboxes.isolation,
            "phase": ep.phase,
            "turn": ep.turns,
            "calls": [o.model_dump() for o in outcomes],
            "error_kinds": sorted({o.error_kind for o in outcomes if o.error_kind is not None}),
            "errors": dict(ep.errors),
            "cost": dict(ep.ctx.costs),
            "budget": {
                "tool_calls": ep.tool_calls,
                "max_tool_calls": self.config.max_tool_calls,
                "turns": ep.turns,
                "max_turns": self.config.max_turns,
                "context_tokens": ep.history.context_tokens(),
                "max_context_tokens": self.config.max_context_tokens,
                "elapsed_s": self._clock() - ep.started,
                "max_episode_seconds": self.config.max_episode_seconds,
            },
        }
        if notice is not None:
            info["notice"] = notice
        if ep.repairs:
            info["action_repairs"] = {"lone_surrogates": ep.repairs, "replaced_with": "U+FFFD"}
        if ep.phase == "done":
            info["answer"] = ep.answer
            info["truncated_by"] = ep.truncated_by
            if ep.reward is not None:
                info["reward_total"] = ep.reward.total
                info["reward_components"] = dict(ep.reward.components)
        return info


def _format_outcome(problem: str) -> CallOutcome:
    return problem_outcome(ParseProblem(message=problem))


def _history_tool_calls(action: Action) -> tuple[list[dict[str, Any]] | None, int]:
    """The OpenAI `tool_calls` of a message dict as the history keeps them (strings scrubbed), and the repairs."""
    if not isinstance(action, Mapping):
        return None, 0
    try:
        raw = action.get("tool_calls")
    except Exception:  # an odd mapping; the parser reports it
        return None, 0
    if not isinstance(raw, list):
        return None, 0
    tool_calls, repaired = scrub_value(raw)
    return [c for c in tool_calls if isinstance(c, dict)], repaired


def _scrubbed_outcome(outcome: CallOutcome) -> CallOutcome:
    """`outcome` with lone surrogates in its texts replaced, so observations and history always encode."""
    if not has_surrogates(outcome.text) and not has_surrogates(outcome.error or ""):
        return outcome
    error = scrub(outcome.error) if outcome.error is not None else None
    return outcome.model_copy(update={"text": scrub(outcome.text), "error": error})
