"""Episode rewards: GAIA's official scorer, SQuAD-style text metrics, and their composition."""

from miroenv.rewards.base import Reward, RewardBreakdown, RewardContext, get_reward
from miroenv.rewards.compose import FormatPenalty, ToolCallCost, WeightedSum
from miroenv.rewards.gaia import (
    GaiaMode,
    GaiaReward,
    normalize_number_str,
    normalize_str,
    question_scorer,
    scoring_mode,
    split_string,
)
from miroenv.rewards.judge import JudgeReward
from miroenv.rewards.text import (
    ContainsReward,
    ExactMatchReward,
    F1Reward,
    contains_match,
    exact_match,
    normalize_answer,
    token_f1,
)

__all__ = [
    "ContainsReward",
    "ExactMatchReward",
    "F1Reward",
    "FormatPenalty",
    "GaiaMode",
    "GaiaReward",
    "JudgeReward",
    "Reward",
    "RewardBreakdown",
    "RewardContext",
    "ToolCallCost",
    "WeightedSum",
    "contains_match",
    "exact_match",
    "get_reward",
    "normalize_answer",
    "normalize_number_str",
    "normalize_str",
    "question_scorer",
    "scoring_mode",
    "split_string",
    "token_f1",
]
