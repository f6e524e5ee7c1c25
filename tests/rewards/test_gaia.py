"""`question_scorer` must agree with GAIA's official scorer on every input; these tests check it does."""

from __future__ import annotations

import math
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.rewards import GaiaReward, RewardContext, question_scorer, scoring_mode
from miroenv.tasks import Task

# --- Reference: the GAIA leaderboard's scorer.py, transcribed literally -----------------------------
# Source: https://huggingface.co/spaces/gaia-benchmark/leaderboard/blob/main/scorer.py (revision
# 9f133d71362e77b3539f1514f31b9c101a545fec). Only the print() calls, the warnings.warn() call and the
# unused json/numpy imports are left out; everything else is as upstream wrote it.


def normalize_number_str(number_str: str) -> float:
    # we replace these common units and commas to allow
    # conversion to float
    for char in ["$", "%", ","]:
        number_str = number_str.replace(char, "")
    try:
        return float(number_str)
    except ValueError:
        return float("inf")


def split_string(
    s: str,
    char_list: list[str] = [",", ";"],  # noqa: B006 - upstream's signature
) -> list[str]:
    pattern = f"[{''.join(char_list)}]"
    return re.split(pattern, s)


def reference_question_scorer(
    model_answer: str,
    ground_truth: str,
) -> bool:
    def is_float(element: any) -> bool:
        try:
            float(element)
            return True
        except ValueError:
            return False

    if model_answer is None:
        model_answer = "None"

    # if gt is a number
    if is_float(ground_truth):
        normalized_answer = normalize_number_str(model_answer)
        return normalized_answer == float(ground_truth)

    # if gt is a list
    elif any(char in ground_truth for char in [",", ";"]):
        # question with the fish: normalization removes punct

        gt_elems = split_string(ground_truth)
        ma_elems = split_string(model_answer)

        # check length is the same
        if len(gt_elems) != len(ma_elems):
            return False

        # compare each element as float or str
        comparisons = []
        for ma_elem, gt_elem in zip(ma_elems, gt_elems):  # noqa: B905 - upstream's code
            if is_float(gt_elem):
                normalized_ma_elem = normalize_number_str(ma_elem)
                comparisons.append(normalized_ma_elem == float(gt_elem))
            else:
                # we do not remove punct since comparisons can include punct
                comparisons.append(
                    normalize_str(ma_elem, remove_punct=False) == normalize_str(gt_elem, remove_punct=False)
                )
        return all(comparisons)

    # if gt is a str
    else:
        return normalize_str(model_answer) == normalize_str(ground_truth)


def normalize_str(input_str, remove_punct=True) -> str:
    """
    Normalize a string by:
    - Removing all white spaces
    - Optionally removing punctuation (if remove_punct is True)
    - Converting to lowercase
    Parameters:
    - input_str: str, the string to normalize
    - remove_punct: bool, whether to remove punctuation (default: True)
    Returns:
    - str, the normalized string
    """
    # Remove all white spaces. Required e.g for seagull vs. sea gull
    no_spaces = re.sub(r"\s", "", input_str)

    # Remove punctuation, if specified.
    if remove_punct:
        translator = str.maketrans("", "", string.punctuation)
        return no_spaces.lower().translate(translator)
    else:
        return no_spaces.lower()


# --- Strategies --------------------------------------------------------------------------------------


def examples(n: int) -> settings:
    """Hypothesis settings for `n` examples; no example database, so test runs leave no files behind."""
    return settings(max_examples=n, deadline=None, database=None)


# Characters that steer the scorer between its modes and through its normalizations, plus some
# non-ASCII whitespace, digits and case mappings that Python's float()/lower()/\s treat specially.
TRICKY = [
    *"0123456789.,;$%+-_eE naifINFtyx\t\n",
    "\u00a0",  # no-break space: \s and float() both accept it
    "\u2003",  # em space
    "\u0661",  # Arabic-Indic digit one: float() accepts it
    "\uff15",  # fullwidth digit five
    "\u0130",  # capital I with dot: lower() yields two code points
    "\u00df",  # sharp s
    "!",
    "'",
    '"',
    "(",
    ")",
    "/",
    "-",
    "\u2019",  # right single quote: not in string.punctuation
]

tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=12)
any_text = st.one_of(st.text(max_size=20), tricky_text)

_FLOAT_WORDS = ["nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "-INFINITY", "infinity"]

number_values = st.one_of(
    st.integers(-(10**7), 10**7).map(float),
    st.integers(-(10**6), 10**6).map(lambda cents: cents / 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 3.0, 1000.0, 1e-5, 1e21, 2.5, 0.1 + 0.2]),
)


def _renderings(value: float) -> list[str]:
    """Ways to write `value`: exact, rounded, scientific, with thousands separators or PEP 515 underscores."""
    out = [repr(value), f"{value:e}", f"{value:.2f}", f"{value:,}", f"{value:g}", f"{value:.15g}"]
    if math.isfinite(value):
        out.append(repr(math.nextafter(value, math.inf)))  # a near miss: equal only within a tolerance
        if value == int(value):
            integer = int(value)
            out += [str(integer), f"{integer:,}", f"{integer:_}", f"{integer:,}.00"]
    return out


@st.composite
def numeric_text(draw: st.DrawFn, value: float | None = None) -> str:
    """A number written the many ways answers and gold answers write them ($, %, commas, signs...)."""
    if value is None:
        value = draw(number_values)
    body = draw(st.one_of(st.sampled_from(_renderings(value)), st.sampled_from(_FLOAT_WORDS)))
    prefix = draw(st.one_of(st.just(""), st.sampled_from(["$", "+", "-", "$-", " ", "~", "1"])))
    suffix = draw(st.one_of(st.just(""), st.sampled_from(["%", " ", "\n", ",", " USD", ".", "$", "0"])))
    return prefix + body + suffix


WORDS = ["fish", "sea gull", "Seagull", "a.b", "ab", "The", "cat", "N/A", "None", "x-y", "", " ", "3rd", "e"]


@st.composite
def list_item(draw: st.DrawFn) -> str:
    """One element of a list answer: a number, a word, or punctuation-laden text."""
    return draw(st.one_of(numeric_text(), st.sampled_from(WORDS), tricky_text))


@st.composite
def list_text(draw: st.DrawFn, items: list[str] | None = None) -> str:
    """Items joined with a mix of `,` and `;` separators, with or without spaces."""
    if items is None:
        items = draw(st.lists(list_item(), min_size=1, max_size=4))
    seps = draw(st.lists(st.sampled_from([",", ", ", ";", "; ", " ,", ",,"]), min_size=len(items)))
    out = items[0]
    for sep, item in zip(seps, items[1:], strict=False):
        out += sep + item
    return out


def _restatements(item: str) -> list[str]:
    """Ways a prediction might restate one list item: as is, recased, padded, with or without noise."""
    return [
        item,
        item.upper(),
        f" {item} ",
        f"\u00a0{item}\u2003",
        item.replace(".", ""),
        item.replace(" ", ""),
        f"${item}",
        f"{item}%",
    ]


@st.composite
def list_pair(draw: st.DrawFn) -> tuple[str, str]:
    """A list truth and a prediction that is often a near-copy of it (restated items, or a length change)."""
    items = draw(st.lists(list_item(), min_size=2, max_size=4))
    truth = draw(list_text(items))
    restated = [draw(st.sampled_from(_restatements(item))) for item in items]
    if draw(st.booleans()):
        restated = restated[:-1] if draw(st.booleans()) else [*restated, draw(list_item())]
    return truth, draw(list_text(restated))


# --- Properties --------------------------------------------------------------------------------------


def agree(prediction: str | None, truth: str) -> None:
    """Assert that ours and the reference give the same verdict."""
    assert question_scorer(prediction, truth) is reference_question_scorer(prediction, truth), (
        prediction,
        truth,
    )


@examples(500)
@given(prediction=any_text, truth=any_text)
def test_agrees_on_arbitrary_text(prediction: str, truth: str) -> None:
    agree(prediction, truth)


@examples(400)
@given(prediction=st.one_of(numeric_text(), any_text), truth=numeric_text())
def test_agrees_on_numeric_looking_text(prediction: str, truth: str) -> None:
    agree(prediction, truth)


@examples(300)
@given(data=st.data(), value=number_values)
def test_agrees_on_one_number_written_two_ways(data: st.DataObject, value: float) -> None:
    agree(data.draw(numeric_text(value)), data.draw(numeric_text(value)))


@examples(400)
@given(pair=list_pair())
def test_agrees_on_near_copies_of_lists(pair: tuple[str, str]) -> None:
    truth, prediction = pair
    agree(prediction, truth)


@examples(300)
@given(prediction=st.one_of(list_text(), any_text, numeric_text()), truth=list_text())
def test_agrees_on_unrelated_lists(prediction: str, truth: str) -> None:
    agree(prediction, truth)


@examples(200)
@given(
    truth=st.one_of(any_text, numeric_text(), list_text(), st.sampled_from(["None", "none", "N,one", "inf"]))
)
def test_agrees_on_none_prediction(truth: str) -> None:
    agree(None, truth)


# --- Pinned quirks of the official scorer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ("1000", "1,000", False),  # a comma in the truth means list mode, even for a number
        ("1, 000", "1,000", True),  # ... where "000" parses as the float 0
        ("$3.00", "3", True),  # $ % , are stripped, then float comparison
        ("3%", "3", True),
        ("1,000", "1000", True),
        ("3.0000000000000001", "3", True),  # float rounding
        ("three", "3", False),
        ("1_000", "1000", True),  # float() accepts PEP 515 underscores
        ("1e3", "1000", True),
        (" 42\n", "42", True),
        ("\u0664\u0662", "42", True),  # float() reads Arabic-Indic digits
        ("nan", "nan", False),  # NaN never equals itself
        ("anything at all", "inf", True),  # unparseable predictions count as +inf
        ("", "inf", True),
        (None, "inf", True),
        ("-inf", "inf", False),
        ("sea gull", "seagull", True),  # string mode drops all whitespace
        ("Sea-Gull!", "seagull", True),  # ... and ASCII punctuation, and case
        ("seagull\u2019", "seagull", False),  # non-ASCII punctuation survives
        ("sea\u00a0gull", "seagull", True),  # \s is Unicode-aware
        ("3.0000000001", "3", False),  # no tolerance beyond float rounding
        ("ab, c", "a.b, c", False),  # list mode keeps punctuation
        ("A.B ;C", "a.b, c", True),  # ... but not case, whitespace or the kind of separator
        ("xy; z", "x.y; z", False),  # a ";" alone also selects list mode
        ("a, b, c", "a, b", False),  # lengths must match
        ("1, 2", "1.0, 2.00", True),  # numeric list elements use the number rule
        ("$1, 2", "$1, 2", True),  # "$1" does not parse, so it is compared as text
        ("1, 2", "$1, 2", False),
        (None, "None", True),  # a missing answer is scored as the string "None"
        (None, "none.", True),
        (None, "0", False),
        ("", "", True),
        ("anything", "", False),
    ],
)
def test_known_quirks(prediction: str | None, truth: str, expected: bool) -> None:
    assert question_scorer(prediction, truth) is expected
    assert reference_question_scorer(prediction, truth) is expected


@pytest.mark.parametrize(
    ("truth", "mode"),
    [
        ("3", "number"),
        (" -1e3 ", "number"),
        ("nan", "number"),
        ("1,000", "list"),
        ("a;b", "list"),
        ("x", "string"),
    ],
)
def test_scoring_mode(truth: str, mode: str) -> None:
    assert scoring_mode(truth) == mode


def test_scorer_is_silent(capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder) -> None:
    question_scorer("oops", "1")
    question_scorer("a, b, c", "a, b")
    question_scorer(None, "x")
    assert capsys.readouterr() == ("", "")
    assert len(recwarn) == 0


# --- GaiaReward --------------------------------------------------------------------------------------


def ctx(answer: str | None, gold: str | None = "Paris", aliases: tuple[str, ...] = ()) -> RewardContext:
    """A context for a one-question task with the given gold answer and aliases."""
    return RewardContext(answer=answer, task=Task(task_id="t", question="q?", answer=gold, aliases=aliases))


def test_reward_correct_and_wrong() -> None:
    reward = GaiaReward()
    assert reward.name == "gaia"
    right = reward(ctx(" paris "))
    assert right.total == 1.0
    assert right.components == {"correct": 1.0}
    assert right.details["matched"] == "Paris"
    assert right.details["mode"] == "string"
    wrong = reward(ctx("London"))
    assert wrong.total == 0.0
    assert wrong.components == {"correct": 0.0}
    assert wrong.details["matched"] is None


def test_reward_accepts_aliases() -> None:
    reward = GaiaReward()
    result = reward(ctx("17000", gold="17", aliases=("17,000", "17000")))
    assert result.total == 1.0
    assert result.details["matched"] == "17000"
    assert result.details["mode"] == "number"


def test_reward_without_gold_answer_scores_zero() -> None:
    result = GaiaReward()(ctx("Paris", gold=None))
    assert result.total == 0.0
    assert result.components == {"correct": 0.0}
    assert "no gold answer" in result.details["reason"]


def test_reward_missing_answer_follows_the_official_scorer() -> None:
    assert GaiaReward()(ctx(None)).total == 0.0
    flagged = GaiaReward()(ctx(None, gold="None"))
    assert flagged.total == 1.0
    assert flagged.details["missing_answer"] is True
