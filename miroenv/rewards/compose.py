"""Reward composition: weighted sums of rewards, format penalties and per-tool-call costs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext


def _check_amount(value: float, what: str) -> float:
    """Reject a negative or non-finite penalty/cost, which would silently turn into a bonus or NaN."""
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def _charge(amount: float) -> float:
    """`-amount` without the `-0.0` that would otherwise show up in reports when nothing is charged."""
    return -amount + 0.0


class WeightedSum:
    """Sum of `weight * part.total`; each part's components are reported as `part.component`.

    Components hold every part's own components under `"<part name>.<component>"` (unweighted) and
    each part's weighted total under `"<part name>"`; details hold each part's details by name.
    """

    def __init__(self, parts: Sequence[tuple[Reward, float]], name: str = "weighted") -> None:
        """Check the parts (at least one, unique names, finite weights) and keep them in order."""
        if not parts:
            raise ValueError("WeightedSum needs at least one (reward, weight) part")
        names = [reward.name for reward, _ in parts]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"WeightedSum parts need distinct names; repeated: {', '.join(duplicates)}")
        for reward, weight in parts:
            if not math.isfinite(weight):
                raise ValueError(f"weight for {reward.name!r} must be finite, got {weight!r}")
        self.name: str = name
        self.parts: tuple[tuple[Reward, float], ...] = tuple((reward, float(w)) for reward, w in parts)

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Score every part, weight its total, and report all of it."""
        total = 0.0
        components: dict[str, float] = {}
        details: dict[str, Any] = {}
        cost: dict[str, float] = {}
        for reward, weight in self.parts:
            part = reward(ctx)
            for key, amount in part.cost.items():
                cost[key] = cost.get(key, 0.0) + amount
            weighted = weight * part.total
            total += weighted
            entries = {f"{reward.name}.{key}": value for key, value in part.components.items()}
            entries[reward.name] = weighted
            for key, value in entries.items():
                if key in components:
                    raise ValueError(f"component name {key!r} is produced twice in {self.name!r}")
                components[key] = value
            details[reward.name] = part.details
        return RewardBreakdown(total=total, components=components, details=details, cost=cost)


class FormatPenalty:
    """Charges for malformed tool calls and for ending without a final answer."""

    def __init__(self, penalty: float = 0.1, per_error: bool = True, name: str = "format_penalty") -> None:
        """`penalty` per format error (or once if any, when `per_error` is False) and once if no answer."""
        self.penalty: float = _check_amount(penalty, "penalty")
        self.per_error: bool = per_error
        self.name: str = name

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Sum of the `format_errors` and `missing_answer` charges."""
        errors = ctx.format_errors if self.per_error else min(ctx.format_errors, 1)
        components = {
            "format_errors": _charge(self.penalty * errors),
            "missing_answer": _charge(self.penalty if ctx.answer is None else 0.0),
        }
        return RewardBreakdown(total=sum(components.values()), components=components)


class ToolCallCost:
    """Charges a fixed cost per tool call, to favour agents that answer with fewer calls."""

    def __init__(self, per_call: float, name: str = "tool_cost") -> None:
        """`per_call` is subtracted once for every tool call the episode made."""
        self.per_call: float = _check_amount(per_call, "per_call")
        self.name: str = name

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """`-per_call * tool_calls`."""
        cost = _charge(self.per_call * ctx.tool_calls)
        return RewardBreakdown(total=cost, components={"tool_calls": cost})
