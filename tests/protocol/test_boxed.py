"""extract_boxed: the last top-level \\boxed{...}, brace-depth aware."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroenv.protocol.boxed import extract_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"The answer is \boxed{Bonnie}.", "Bonnie"),
        (r"$\boxed{ 42 }$", "42"),
        (r"first \boxed{a} then \boxed{b}", "b"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{{a}{b{c}}} tail", "{a}{b{c}}"),
        (r"\boxed {spaced}", "spaced"),
        ("\\boxed\n{newline}", "newline"),
        (r"\boxed{June\ 16,\ 1982}", r"June\ 16,\ 1982"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{a \} b}", r"a \} b"),
        (r"\boxed{unclosed {nested} to the end  ", "unclosed {nested} to the end"),
        (r"\boxed{done} and \boxed{unclosed", "unclosed"),
        (r"\boxed{outer \boxed{inner} text}", r"outer \boxed{inner} text"),
        (r"\boxed{}", ""),
    ],
)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize("text", ["", "no box here", r"\boxed without brace", r"\fbox{x}", "boxed{x}"])
def test_no_box_is_none(text: str) -> None:
    assert extract_boxed(text) is None


def test_long_unbalanced_text_is_fast() -> None:
    text = r"\boxed{" * 200_000
    assert extract_boxed(text) == text[len(r"\boxed{") :].strip()


@given(st.text(alphabet="\\boxed{} a", max_size=200))
def test_never_raises_and_returns_stripped_text(text: str) -> None:
    result = extract_boxed(text)
    if result is not None:
        assert result == result.strip()
        assert result in text
    else:
        assert re.search(r"\\boxed\s*\{", text) is None
