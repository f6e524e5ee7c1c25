"""Every Python example in README.md and docs/ runs as written: plain examples are executed from the
repository root; examples that are pytest test files (first line `# test_NAME.py`) are run by pytest and
must pass, once recording their golden files (`--miroenv-update-golden`) and once comparing with them."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
TEST_FILE = re.compile(r"# (test_\w+)\.py\n")
"""The first line that marks a block as a pytest test file, naming the file."""

BLOCKS = [
    (doc, index, block)
    for doc in DOCS
    for index, block in enumerate(BLOCK.findall(doc.read_text(encoding="utf-8")))
]
EXAMPLES = [
    pytest.param(block, id=f"{doc.name}#{index}")
    for doc, index, block in BLOCKS
    if not TEST_FILE.match(block)
]
TEST_FILES = [
    pytest.param(match.group(1), block, id=f"{doc.name}#{index}")
    for doc, index, block in BLOCKS
    if (match := TEST_FILE.match(block))
]


def test_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 8
    assert len(TEST_FILES) >= 1


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    exec(compile(code, "<docs example>", "exec"), namespace)
    assert os.getcwd() == str(ROOT)


def _test_functions(code: str) -> int:
    """How many test functions the file defines (each runs at least once)."""
    return sum(
        isinstance(node, ast.FunctionDef) and node.name.startswith("test_") for node in ast.parse(code).body
    )


def _only_passes(result: pytest.RunResult, functions: int) -> None:
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"} and outcomes["passed"] >= functions, result.stdout.str()[-3000:]


@pytest.mark.parametrize(("name", "code"), TEST_FILES)
def test_example_test_file_passes(name: str, code: str, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{name: code})
    functions = _test_functions(code)
    assert functions >= 1
    _only_passes(
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "--miroenv-update-golden"), functions
    )
    _only_passes(pytester.runpytest_subprocess("-p", "no:cacheprovider"), functions)
