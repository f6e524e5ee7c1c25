"""The GAIA benchmark's official exact-match scorer, reproduced quirk for quirk, and a reward around it.

Confirmed against the GAIA leaderboard Space's `scorer.py`
(https://huggingface.co/spaces/gaia-benchmark/leaderboard/blob/main/scorer.py, revision
9f133d71362e77b3539f1514f31b9c101a545fec as transcribed in public ports, including the later
`model_answer is None -> "None"` line). Only its `print`/`warnings.warn` calls are left out; every
comparison is the same, so scores match the leaderboard's on every input.
"""

from __future__ import annotations

import math
import re
import string
from typing import Literal

from miroenv.rewards.base import RewardBreakdown, RewardContext

GaiaMode = Literal["number", "list", "string"]

_NUMBER_NOISE = ("$", "%", ",")
_LIST_SEPARATORS = re.compile(r"[,;]")
_WHITESPACE = re.compile(r"\s")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _is_float(text: str) -> bool:
    """Whether Python's `float()` accepts `text` (the official scorer's mode test)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def normalize_number_str(number_str: str) -> float:
    """Drop `$`, `%` and `,` and parse as a float; unparseable text becomes +inf, as upstream."""
    for char in _NUMBER_NOISE:
        number_str = number_str.replace(char, "")
    try:
        return float(number_str)
    except ValueError:
        return math.inf


def split_string(text: str) -> list[str]:
    """Split a list answer on every `,` and `;` (no trimming; empty pieces are kept), as upstream."""
    return _LIST_SEPARATORS.split(text)


def normalize_str(input_str: str, remove_punct: bool = True) -> str:
    """Remove all whitespace, lowercase, and optionally drop ASCII punctuation, as upstream."""
    no_spaces = _WHITESPACE.sub("", input_str).lower()
    return no_spaces.translate(_DROP_PUNCTUATION) if remove_punct else no_spaces


def scoring_mode(truth: str) -> GaiaMode:
    """Which rule the ground truth selects: a float, a `,`/`;` list, or a plain string."""
    if _is_float(truth):
        return "number"
    if "," in truth or ";" in truth:
        return "list"
    return "string"


def question_scorer(prediction: str | None, truth: str) -> bool:
    """Whether `prediction` matches `truth` under GAIA's official rules (None is scored as "None")."""
    if prediction is None:
        prediction = "None"
    mode = scoring_mode(truth)
    if mode == "number":
        return normalize_number_str(prediction) == float(truth)
    if mode == "list":
        truth_elems = split_string(truth)
        pred_elems = split_string(prediction)
        if len(truth_elems) != len(pred_elems):
            return False
        return all(
            _elements_match(pred_elem, truth_elem)
            for pred_elem, truth_elem in zip(pred_elems, truth_elems, strict=True)
        )
    return normalize_str(prediction) == normalize_str(truth)


def _elements_match(pred_elem: str, truth_elem: str) -> bool:
    """One list position: the number rule if the truth element parses, else punctuation-keeping text."""
    if _is_float(truth_elem):
        return normalize_number_str(pred_elem) == float(truth_elem)
    return normalize_str(pred_elem, remove_punct=False) == normalize_str(truth_elem, remove_punct=False)


class GaiaReward:
    """1.0 when the answer matches the gold answer or any alias under GAIA's official scorer, else 0.0."""

    name: str = "gaia"

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Score `ctx.answer` against each gold answer in turn; the first match wins."""
        golds = ctx.task.gold_answers
        if not golds:
            return RewardBreakdown(
                total=0.0, components={"correct": 0.0}, details={"reason": "task has no gold answer"}
            )
        matched = next((gold for gold in golds if question_scorer(ctx.answer, gold)), None)
        correct = 0.0 if matched is None else 1.0
        return RewardBreakdown(
            total=correct,
            components={"correct": correct},
            details={
                "matched": matched,
                "mode": scoring_mode(golds[0] if matched is None else matched),
                "missing_answer": ctx.answer is None,
            },
        )
