"""The reward interface: what a reward sees about an episode, what it returns, and lookup by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from miroenv.tasks import Task


class RewardContext(BaseModel):
    """Everything a reward may look at once an episode ends: the final answer, the task and counters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: str | None = Field(description="The extracted final answer; None when the agent gave none.")
    task: Task
    tool_calls: int = Field(default=0, ge=0)
    format_errors: int = Field(default=0, ge=0)
    tool_errors: int = Field(default=0, ge=0)
    infra_errors: int = Field(default=0, ge=0)
    turns: int = Field(default=0, ge=0)
    terminated: bool = False
    truncated: bool = False


class RewardBreakdown(BaseModel):
    """A reward's total plus every named part, so the environment's `info` can report each one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: float
    components: dict[str, float]
    details: dict[str, Any] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)
    """What computing this reward spent on live backends (judge calls and tokens), added to `info["cost"]`."""


@runtime_checkable
class Reward(Protocol):
    """Scores a finished episode; `name` labels its components when rewards are composed."""

    name: str

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Score the episode described by `ctx`."""
        ...


REWARD_NAMES: tuple[str, ...] = ("contains", "em", "f1", "gaia", "judge")
"""Names `get_reward` accepts."""


def get_reward(name: str) -> Reward:
    """Build the named reward with its defaults (names in `REWARD_NAMES`), for config files and CLIs.

    `judge` reads its endpoint and model from `MIROENV_JUDGE_*` environment variables."""
    from miroenv.rewards.gaia import GaiaReward
    from miroenv.rewards.judge import JudgeReward
    from miroenv.rewards.text import ContainsReward, ExactMatchReward, F1Reward

    factories: dict[str, Callable[[], Reward]] = {
        "contains": ContainsReward,
        "em": ExactMatchReward,
        "f1": F1Reward,
        "gaia": GaiaReward,
        "judge": JudgeReward,
    }
    factory = factories.get(name)
    if factory is None:
        raise ValueError(f"unknown reward {name!r}; valid choices: {', '.join(REWARD_NAMES)}")
    return factory()
