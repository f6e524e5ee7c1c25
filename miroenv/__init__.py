"""miroenv: deterministic, sandboxed Gymnasium environments for LLM research agents.

`import miroenv` registers `miroenv/Research-v0` with Gymnasium (at once, or when Gymnasium gets imported); the
public names below are imported on first use, so importing the package (or its pytest plugin) does not load
Gymnasium, the env, the web stack or the sandboxes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miroenv._version import __version__
from miroenv.registration import ENV_ID, register_envs, register_when_gymnasium_loads

if TYPE_CHECKING:
    from miroenv.env import EnvConfig, ResearchEnv
    from miroenv.evaluation import EvalConfig, EvalReport, evaluate
    from miroenv.policy import ScriptedPolicy, load_actions, run_episode
    from miroenv.protocol.calls import ParsedAction, ToolCall
    from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext
    from miroenv.tasks import Task, load_tasks
    from miroenv.trajectory import RecordTrajectory, Trajectory, read_trajectories
    from miroenv.web.snapshot import Snapshot, SnapshotWriter

_EXPORTS: dict[str, str] = {
    "EnvConfig": "miroenv.env",
    "ResearchEnv": "miroenv.env",
    "EvalConfig": "miroenv.evaluation",
    "EvalReport": "miroenv.evaluation",
    "evaluate": "miroenv.evaluation",
    "ScriptedPolicy": "miroenv.policy",
    "load_actions": "miroenv.policy",
    "run_episode": "miroenv.policy",
    "ParsedAction": "miroenv.protocol.calls",
    "ToolCall": "miroenv.protocol.calls",
    "Reward": "miroenv.rewards.base",
    "RewardBreakdown": "miroenv.rewards.base",
    "RewardContext": "miroenv.rewards.base",
    "Task": "miroenv.tasks",
    "load_tasks": "miroenv.tasks",
    "RecordTrajectory": "miroenv.trajectory",
    "Trajectory": "miroenv.trajectory",
    "read_trajectories": "miroenv.trajectory",
    "Snapshot": "miroenv.web.snapshot",
    "SnapshotWriter": "miroenv.web.snapshot",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'miroenv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


register_when_gymnasium_loads()

__all__ = [
    "ENV_ID",
    "EnvConfig",
    "EvalConfig",
    "EvalReport",
    "ParsedAction",
    "RecordTrajectory",
    "ResearchEnv",
    "Reward",
    "RewardBreakdown",
    "RewardContext",
    "ScriptedPolicy",
    "Snapshot",
    "SnapshotWriter",
    "Task",
    "ToolCall",
    "Trajectory",
    "__version__",
    "evaluate",
    "load_actions",
    "load_tasks",
    "read_trajectories",
    "register_envs",
    "run_episode",
]
