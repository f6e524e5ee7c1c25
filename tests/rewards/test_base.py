"""The reward models and the name registry."""

from __future__ import annotations

import pydantic
import pytest

import miroenv.rewards
from miroenv.rewards import (
    ContainsReward,
    ExactMatchReward,
    F1Reward,
    GaiaReward,
    Reward,
    RewardBreakdown,
    RewardContext,
    get_reward,
)
from miroenv.tasks import Task

TASK = Task(task_id="t", question="q?", answer="a")


@pytest.mark.parametrize(
    ("name", "cls"),
    [("gaia", GaiaReward), ("em", ExactMatchReward), ("f1", F1Reward), ("contains", ContainsReward)],
)
def test_get_reward_builds_each_named_reward(name: str, cls: type) -> None:
    reward = get_reward(name)
    assert isinstance(reward, cls)
    assert isinstance(reward, Reward)
    assert reward.name == name


def test_get_reward_names_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="valid choices: contains, em, f1, gaia, judge"):
        get_reward("GAIA ")


def test_context_defaults_and_validation() -> None:
    ctx = RewardContext(answer=None, task=TASK)
    assert (ctx.tool_calls, ctx.format_errors, ctx.tool_errors, ctx.infra_errors, ctx.turns) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert not ctx.terminated and not ctx.truncated
    with pytest.raises(pydantic.ValidationError):
        RewardContext(answer="x", task=TASK, tool_calls=-1)
    with pytest.raises(pydantic.ValidationError):
        RewardContext(answer="x", task=TASK, bogus=1)
    with pytest.raises(pydantic.ValidationError):
        ctx.answer = "changed"


def test_breakdown_details_default_to_a_fresh_dict() -> None:
    first = RewardBreakdown(total=1.0, components={"x": 1.0})
    second = RewardBreakdown(total=0.0, components={})
    assert first.details == {} and first.details is not second.details
    assert RewardBreakdown.model_validate_json(first.model_dump_json()) == first


def test_all_is_sorted_and_complete() -> None:
    names = miroenv.rewards.__all__
    assert names == sorted(names)
    assert all(hasattr(miroenv.rewards, name) for name in names)
