"""miroenv: deterministic, sandboxed Gymnasium environments for LLM research agents."""

from miroenv._version import __version__
from miroenv.env import EnvConfig, ResearchEnv
from miroenv.policy import ScriptedPolicy, load_actions, run_episode
from miroenv.protocol.calls import ParsedAction, ToolCall
from miroenv.registration import ENV_ID, register_envs
from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext
from miroenv.tasks import Task, load_tasks
from miroenv.trajectory import RecordTrajectory, Trajectory, read_trajectories
from miroenv.web.snapshot import Snapshot, SnapshotWriter

register_envs()

__all__ = [
    "ENV_ID",
    "EnvConfig",
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
    "load_actions",
    "load_tasks",
    "read_trajectories",
    "register_envs",
    "run_episode",
]
