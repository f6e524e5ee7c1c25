"""Weighted sums, format penalties and tool-call costs: totals add up and every part is reported."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.rewards import (
    FormatPenalty,
    GaiaReward,
    Reward,
    RewardBreakdown,
    RewardContext,
    ToolCallCost,
    WeightedSum,
)
from miroenv.tasks import Task

TASK = Task(task_id="t", question="What is 6 * 7?", answer="42")


def ctx(answer: str | None = "42", *, tool_calls: int = 0, format_errors: int = 0) -> RewardContext:
    """A finished episode on `TASK` with the given answer and counters."""
    return RewardContext(answer=answer, task=TASK, tool_calls=tool_calls, format_errors=format_errors)


class Constant:
    """A stand-in reward with a fixed total, one component and some details."""

    def __init__(self, name: str, value: float, component: str = "value") -> None:
        """Always report `value` under `component`."""
        self.name = name
        self.value = value
        self.component = component

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """The fixed breakdown, whatever the episode."""
        return RewardBreakdown(
            total=self.value, components={self.component: self.value}, details={"v": self.value}
        )


def test_gaia_with_penalty_and_cost() -> None:
    reward = WeightedSum([(GaiaReward(), 1.0), (FormatPenalty(0.1), 1.0), (ToolCallCost(0.01), 1.0)])
    result = reward(ctx("42", tool_calls=3, format_errors=2))
    assert result.total == pytest.approx(1.0 - 0.2 - 0.03)
    assert result.components == pytest.approx(
        {
            "gaia.correct": 1.0,
            "gaia": 1.0,
            "format_penalty.format_errors": -0.2,
            "format_penalty.missing_answer": 0.0,
            "format_penalty": -0.2,
            "tool_cost.tool_calls": -0.03,
            "tool_cost": -0.03,
        }
    )
    assert result.details["gaia"]["matched"] == "42"
    assert set(result.details) == {"gaia", "format_penalty", "tool_cost"}


def test_components_are_unweighted_but_part_totals_are_weighted() -> None:
    result = WeightedSum([(Constant("a", 1.0), 0.5), (Constant("b", 2.0), -2.0)], name="mix")(ctx())
    assert reward_name(WeightedSum([(Constant("a", 1.0), 1.0)], name="mix")) == "mix"
    assert result.total == pytest.approx(0.5 - 4.0)
    assert result.components == {"a.value": 1.0, "a": 0.5, "b.value": 2.0, "b": -4.0}
    assert result.details == {"a": {"v": 1.0}, "b": {"v": 2.0}}


def reward_name(reward: Reward) -> str:
    """The name a reward reports (typed through the protocol)."""
    return reward.name


def test_nested_sums_prefix_twice() -> None:
    inner = WeightedSum([(Constant("a", 1.0), 2.0)], name="inner")
    result = WeightedSum([(inner, 3.0)])(ctx())
    assert result.total == 6.0
    assert result.components == {"inner.a.value": 1.0, "inner.a": 2.0, "inner": 6.0}


def test_weighted_sum_rejects_bad_parts() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WeightedSum([])
    with pytest.raises(ValueError, match="repeated: a"):
        WeightedSum([(Constant("a", 1.0), 1.0), (Constant("a", 2.0), 1.0)])
    with pytest.raises(ValueError, match="finite"):
        WeightedSum([(Constant("a", 1.0), math.nan)])
    clash = WeightedSum([(Constant("a", 1.0, component="b"), 1.0), (Constant("a.b", 1.0), 1.0)])
    with pytest.raises(ValueError, match=re.escape("'a.b'")):
        clash(ctx())


def test_format_penalty_per_error_and_once() -> None:
    per_error = FormatPenalty(0.25)(ctx(format_errors=3))
    assert per_error.total == pytest.approx(-0.75)
    assert per_error.components == pytest.approx({"format_errors": -0.75, "missing_answer": 0.0})
    once = FormatPenalty(0.25, per_error=False)(ctx(format_errors=3))
    assert once.total == pytest.approx(-0.25)
    missing = FormatPenalty(0.25, per_error=False)(ctx(None))
    assert missing.components == {"format_errors": 0.0, "missing_answer": -0.25}
    assert missing.total == -0.25


def test_nothing_charged_reports_positive_zero() -> None:
    for result in (FormatPenalty()(ctx()), ToolCallCost(0.5)(ctx())):
        assert result.total == 0.0
        assert all(math.copysign(1.0, value) == 1.0 for value in [result.total, *result.components.values()])


def test_tool_call_cost() -> None:
    result = ToolCallCost(0.05)(ctx(tool_calls=4))
    assert result.total == pytest.approx(-0.2)
    assert result.components == pytest.approx({"tool_calls": -0.2})
    assert ToolCallCost(0.05, name="search_cost").name == "search_cost"


@pytest.mark.parametrize("amount", [-0.1, math.inf, math.nan])
def test_penalties_must_be_finite_and_non_negative(amount: float) -> None:
    with pytest.raises(ValueError):
        FormatPenalty(amount)
    with pytest.raises(ValueError):
        ToolCallCost(amount)


def test_everything_satisfies_the_protocol() -> None:
    for reward in (GaiaReward(), FormatPenalty(), ToolCallCost(0.1), WeightedSum([(GaiaReward(), 1.0)])):
        assert isinstance(reward, Reward)


counts = st.integers(min_value=0, max_value=50)
amounts = st.floats(min_value=0.0, max_value=10.0)
weights = st.floats(min_value=-10.0, max_value=10.0)


@settings(max_examples=200, deadline=None, database=None)
@given(
    answer=st.one_of(st.none(), st.sampled_from(["42", "41", "forty-two"])),
    tool_calls=counts,
    format_errors=counts,
    penalty=amounts,
    per_error=st.booleans(),
    per_call=amounts,
    w_gaia=weights,
    w_format=weights,
    w_cost=weights,
)
def test_total_is_the_weighted_sum_of_part_totals(
    answer: str | None,
    tool_calls: int,
    format_errors: int,
    penalty: float,
    per_error: bool,
    per_call: float,
    w_gaia: float,
    w_format: float,
    w_cost: float,
) -> None:
    context = ctx(answer, tool_calls=tool_calls, format_errors=format_errors)
    parts: list[tuple[Reward, float]] = [
        (GaiaReward(), w_gaia),
        (FormatPenalty(penalty, per_error=per_error), w_format),
        (ToolCallCost(per_call), w_cost),
    ]
    result = WeightedSum(parts)(context)
    singles = [(reward(context), weight) for reward, weight in parts]
    for single, _ in singles:
        assert single.total == pytest.approx(sum(single.components.values()))
    assert result.total == pytest.approx(sum(weight * single.total for single, weight in singles))
    assert result.total == pytest.approx(sum(result.components[reward.name] for reward, _ in parts))
    charged = min(format_errors, 1) if not per_error else format_errors
    expected_format = -penalty * (charged + (answer is None))
    assert result.components["format_penalty"] == pytest.approx(w_format * expected_format)
    assert result.components["tool_cost.tool_calls"] == pytest.approx(-per_call * tool_calls)
