"""SQuAD/HotpotQA-style text metrics (exact match, token F1, contains) and rewards built on them."""

from __future__ import annotations

import re
import string
from collections import Counter

from miroenv.rewards.base import RewardBreakdown, RewardContext

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_SPECIAL_ANSWERS = frozenset({"yes", "no", "noanswer"})


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's evaluator)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(pred: str, gold: str) -> bool:
    """Whether the two answers are equal after `normalize_answer`."""
    return normalize_answer(pred) == normalize_answer(gold)


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalized answers, as in HotpotQA's evaluator.

    A yes/no/noanswer answer on either side scores 0 unless both sides are equal (HotpotQA);
    when a side normalizes to nothing, the score is 1 only if both do (SQuAD 2.0).
    """
    norm_pred = normalize_answer(pred)
    norm_gold = normalize_answer(gold)
    if (norm_pred in _SPECIAL_ANSWERS or norm_gold in _SPECIAL_ANSWERS) and norm_pred != norm_gold:
        return 0.0
    pred_tokens = norm_pred.split()
    gold_tokens = norm_gold.split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def contains_match(pred: str, gold: str) -> bool:
    """Whether the normalized gold answer occurs in the normalized prediction (a character substring).

    A gold answer that normalizes to nothing only matches a prediction that does too, so that an
    article-only gold cannot be matched by every prediction.
    """
    norm_gold = normalize_answer(gold)
    norm_pred = normalize_answer(pred)
    if not norm_gold:
        return not norm_pred
    return norm_gold in norm_pred


class _BestOverGold:
    """Shared body of the text rewards: the best metric value over the task's gold answers."""

    name: str
    component: str

    def _score(self, pred: str, gold: str) -> float:
        """The metric for one prediction/gold pair."""
        raise NotImplementedError

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Score `ctx.answer` against every gold answer and keep the best (first on ties); None scores 0."""
        golds = ctx.task.gold_answers
        if not golds:
            return RewardBreakdown(
                total=0.0, components={self.component: 0.0}, details={"reason": "task has no gold answer"}
            )
        answer = ctx.answer
        if answer is None:
            return RewardBreakdown(
                total=0.0,
                components={self.component: 0.0},
                details={"reason": "no answer", "best_gold": None},
            )
        best_gold, best = max(((gold, self._score(answer, gold)) for gold in golds), key=lambda pair: pair[1])
        return RewardBreakdown(
            total=best, components={self.component: best}, details={"best_gold": best_gold}
        )


class ExactMatchReward(_BestOverGold):
    """1.0 when the answer equals a gold answer after SQuAD normalization, else 0.0."""

    name: str = "em"
    component: str = "exact_match"

    def _score(self, pred: str, gold: str) -> float:
        """`exact_match` as 1.0/0.0."""
        return float(exact_match(pred, gold))


class F1Reward(_BestOverGold):
    """The best token F1 between the answer and any gold answer (partial credit for HotpotQA-like tasks)."""

    name: str = "f1"
    component: str = "f1"

    def _score(self, pred: str, gold: str) -> float:
        """`token_f1`."""
        return token_f1(pred, gold)


class ContainsReward(_BestOverGold):
    """1.0 when a normalized gold answer occurs inside the normalized answer, else 0.0."""

    name: str = "contains"
    component: str = "contains"

    def _score(self, pred: str, gold: str) -> float:
        """`contains_match` as 1.0/0.0."""
        return float(contains_match(pred, gold))
