"""SQuAD/HotpotQA text metrics and the em/f1/contains rewards built on them."""

from __future__ import annotations

import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.rewards import (
    ContainsReward,
    ExactMatchReward,
    F1Reward,
    RewardContext,
    contains_match,
    exact_match,
    normalize_answer,
    token_f1,
)
from miroenv.tasks import Task

# --- Reference: HotpotQA's hotpot_evaluate_v1.py (same normalize_answer as SQuAD v1.1), transcribed ---


def reference_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def reference_f1_score(prediction, ground_truth):
    normalized_prediction = reference_normalize_answer(prediction)
    normalized_ground_truth = reference_normalize_answer(ground_truth)

    ZERO_METRIC = (0, 0, 0)

    if (
        normalized_prediction in ["yes", "no", "noanswer"]
        and normalized_prediction != normalized_ground_truth
    ):
        return ZERO_METRIC
    if (
        normalized_ground_truth in ["yes", "no", "noanswer"]
        and normalized_prediction != normalized_ground_truth
    ):
        return ZERO_METRIC

    prediction_tokens = normalized_prediction.split()
    ground_truth_tokens = normalized_ground_truth.split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return ZERO_METRIC
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1, precision, recall


# --- Strategies --------------------------------------------------------------------------------------

VOCAB = [
    "the",
    "a",
    "an",
    "The",
    "A",
    "yes",
    "no",
    "noanswer",
    "Yes.",
    "cat",
    "cat's",
    "dog",
    "Paris",
    "1990",
]
PIECES = st.one_of(
    st.sampled_from(VOCAB), st.text(alphabet=" .,!-'abcnot\t", max_size=6), st.text(max_size=4)
)
answers = st.lists(PIECES, max_size=6).map(" ".join)
ascii_words = st.text(alphabet=string.ascii_letters + string.digits + " ,.!?'-", max_size=20)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


# --- Properties --------------------------------------------------------------------------------------


@PROPERTY
@given(pred=answers, gold=answers)
def test_f1_is_in_unit_interval_and_symmetric(pred: str, gold: str) -> None:
    score = token_f1(pred, gold)
    assert 0.0 <= score <= 1.0
    assert token_f1(gold, pred) == score


@PROPERTY
@given(pred=answers, gold=answers)
def test_exact_match_implies_full_f1_and_containment(pred: str, gold: str) -> None:
    assert exact_match(pred, gold) == exact_match(gold, pred)
    if exact_match(pred, gold):
        assert token_f1(pred, gold) == 1.0
        assert contains_match(pred, gold)


@PROPERTY
@given(pred=answers, gold=answers)
def test_full_f1_means_same_bag_of_tokens(pred: str, gold: str) -> None:
    same_bag = Counter(normalize_answer(pred).split()) == Counter(normalize_answer(gold).split())
    assert (token_f1(pred, gold) == 1.0) == same_bag


@PROPERTY
@given(pred=answers, gold=answers)
def test_agrees_with_hotpotqa_except_when_both_sides_are_empty(pred: str, gold: str) -> None:
    assert normalize_answer(pred) == reference_normalize_answer(pred)
    expected = reference_f1_score(pred, gold)[0]
    if not normalize_answer(pred) and not normalize_answer(gold):
        expected = 1.0  # SQuAD 2.0: two empty answers agree; HotpotQA's evaluator would say 0
    assert token_f1(pred, gold) == expected


@PROPERTY
@given(before=ascii_words, gold=ascii_words, after=ascii_words)
def test_an_answer_surrounding_the_gold_contains_it(before: str, gold: str, after: str) -> None:
    if normalize_answer(gold):
        assert contains_match(f"{before} {gold} {after}", gold)


@PROPERTY
@given(text=st.text(max_size=30))
def test_normalization_is_idempotent(text: str) -> None:
    once = normalize_answer(text)
    assert normalize_answer(once) == once


# --- Known examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Quick, brown fox!", "quick brown fox"),
        ("  an   apple\ta day ", "apple day"),
        ("Theatre", "theatre"),  # articles are whole words only
        ("the-end", "theend"),  # punctuation goes first, so no article is left to drop
        ("U.S.A.", "usa"),
        ("", ""),
    ],
)
def test_normalize_answer(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


@pytest.mark.parametrize(
    ("pred", "gold", "f1"),
    [
        ("Denver Broncos", "The Denver Broncos", 1.0),
        ("the cat sat", "cat on mat", 0.4),  # p = 1/2, r = 1/3
        ("Broncos", "Denver Broncos", 2 / 3),
        ("cat cat", "cat", 2 / 3),  # repeated tokens count once per match
        ("yes", "no", 0.0),
        ("Yes.", "yes", 1.0),
        ("yes it is", "yes", 0.0),  # HotpotQA: a yes/no gold needs an exact yes/no
        ("no answer", "noanswer", 0.0),
        ("the", "a", 1.0),  # both empty after normalization
        ("", "Paris", 0.0),
        ("Paris", "", 0.0),
    ],
)
def test_token_f1_examples(pred: str, gold: str, f1: float) -> None:
    assert token_f1(pred, gold) == pytest.approx(f1)


def test_exact_match_examples() -> None:
    assert exact_match("the Eiffel Tower", "Eiffel tower.")
    assert not exact_match("Eiffel Tower, Paris", "Eiffel Tower")


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("It was the Eiffel Tower, in Paris.", "eiffel tower", True),
        ("Paris", "Paris, France", False),
        ("the 1990s", "1990", True),  # a character substring, not a token match
        ("anything", "The", False),  # an empty normalized gold only matches an empty answer
        ("a", "The", True),
    ],
)
def test_contains_match_examples(pred: str, gold: str, expected: bool) -> None:
    assert contains_match(pred, gold) is expected


# --- Rewards -----------------------------------------------------------------------------------------


def ctx(
    answer: str | None, gold: str | None = "Denver Broncos", aliases: tuple[str, ...] = ()
) -> RewardContext:
    """A context for a one-question task with the given gold answer and aliases."""
    return RewardContext(answer=answer, task=Task(task_id="t", question="q?", answer=gold, aliases=aliases))


def test_reward_names_and_components() -> None:
    assert ExactMatchReward().name == "em"
    assert F1Reward().name == "f1"
    assert ContainsReward().name == "contains"
    assert ExactMatchReward()(ctx("the denver broncos")).components == {"exact_match": 1.0}
    assert F1Reward()(ctx("Broncos")).components == {"f1": pytest.approx(2 / 3)}
    assert ContainsReward()(ctx("It was the Denver Broncos.")).components == {"contains": 1.0}


def test_rewards_take_the_best_gold_answer() -> None:
    context = ctx("Broncos", aliases=("Broncos", "Denver"))
    for reward in (ExactMatchReward(), F1Reward(), ContainsReward()):
        result = reward(context)
        assert result.total == 1.0
        assert result.details["best_gold"] == "Broncos"
    partial = F1Reward()(ctx("Denver", aliases=("Denver Colorado Broncos",)))
    assert partial.total == pytest.approx(2 / 3)
    assert partial.details["best_gold"] == "Denver Broncos"


@pytest.mark.parametrize("reward", [ExactMatchReward(), F1Reward(), ContainsReward()])
def test_missing_answer_or_gold_scores_zero(reward: ExactMatchReward | F1Reward | ContainsReward) -> None:
    no_answer = reward(ctx(None, gold="the"))  # "" would otherwise match an empty normalized gold
    assert no_answer.total == 0.0
    assert no_answer.details["reason"] == "no answer"
    no_gold = reward(ctx("Denver Broncos", gold=None))
    assert no_gold.total == 0.0
    assert "no gold answer" in no_gold.details["reason"]
    assert list(no_gold.components.values()) == [0.0]
