"""Shared import helpers: splitting one turn's joined results, classifying error results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroenv.logs import split_results
from miroenv.logs.episode import classify_result

SEARCH = '{\n  "organic": [\n    {"title": "a\\nb"}\n  ]\n}'
ERROR = "Tool call to run_python_code on tool-python failed. Error: boom"


@pytest.mark.parametrize(
    ("parts"),
    [
        [SEARCH, SEARCH.replace("a", "c")],
        [ERROR, SEARCH],
        [SEARCH, ERROR, SEARCH],
        ["[ERROR]: no such sandbox", "stdout line 1"],
        ["", SEARCH],
    ],
)
def test_results_split_back_into_their_parts(parts: list[str]) -> None:
    assert split_results("\n".join(parts), len(parts)) == parts


def test_too_few_lines_for_the_calls() -> None:
    assert split_results("one line", 2) is None
    assert split_results("anything\nat all", 1) == ["anything\nat all"]


@given(st.lists(st.text(alphabet='ab{}\n"[', max_size=12), min_size=1, max_size=4))
def test_any_split_rejoins_exactly(parts: list[str]) -> None:
    joined = "\n".join(parts)
    split = split_results(joined, len(parts))
    assert split is not None and "\n".join(split) == joined and len(split) == len(parts)


def test_error_results_are_tool_errors() -> None:
    assert (
        classify_result("Tool execution failed: Search query and region code and language are required")
        == "tool"
    )
    assert classify_result(ERROR) == "tool"
    assert classify_result("[ERROR]: x") == "tool"
    assert classify_result('{"organic": []}') is None
    assert classify_result("Tool call to x completed") is None
