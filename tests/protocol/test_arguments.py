"""decode_arguments: strict JSON, bounded lenient repair, and errors that say an object was expected."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miroenv.protocol.arguments import (
    MAX_HEURISTIC_REPAIR_CHARS,
    MAX_REPAIR_CHARS,
    MAX_REPAIR_DEPTH,
    ArgumentsError,
    arguments_from_value,
    decode_arguments,
)


def test_strict_json_is_not_marked_repaired() -> None:
    assert decode_arguments('{"q": "Dolly the sheep", "num": 10, "ok": true, "x": null}') == (
        {"q": "Dolly the sheep", "num": 10, "ok": True, "x": None},
        False,
    )


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_arguments_are_an_empty_object(text: str) -> None:
    assert decode_arguments(text) == ({}, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'q': 'single quotes'}", {"q": "single quotes"}),
        ("{'a': True, 'b': False, 'c': None}", {"a": True, "b": False, "c": None}),
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
        ('{q: "unquoted key", num: 3}', {"q": "unquoted key", "num": 3}),
        ('```json\n{"q": "fenced"}\n```', {"q": "fenced"}),
        ('```\n{"q": "bare fence"}\n```', {"q": "bare fence"}),
        ('```json {"q": "one line"}```', {"q": "one line"}),
        ("{'q': \"it's\"}", {"q": "it's"}),
        ("{'q': 'O\\'Reilly'}", {"q": "O'Reilly"}),
        ("{'code': '''print(\"hi\")'''}", {"code": 'print("hi")'}),
        ("{'q': 'a' 'b'}", {"q": "ab"}),
        ("{'pair': (1, 2)}", {"pair": [1, 2]}),
        ('{"q": "truncated', {"q": "truncated"}),
        ('"{\\"q\\": \\"double encoded\\"}"', {"q": "double encoded"}),
        ('Sure: {"q": "prose around"} done', {"q": "prose around"}),
    ],
)
def test_lenient_repair(text: str, expected: dict[str, Any]) -> None:
    assert decode_arguments(text) == (expected, True)


@pytest.mark.parametrize(
    ("text", "got"),
    [('"just a string"', "a string"), ("[1, 2]", "an array"), ("42", "a number"), ("null", "null")],
)
def test_valid_json_that_is_not_an_object_is_rejected(text: str, got: str) -> None:
    with pytest.raises(ArgumentsError) as info:
        decode_arguments(text)
    assert f"got {got}" in info.value.reason
    assert "expected a JSON object" in str(info.value)


@pytest.mark.parametrize("text", ["hello world", "{this is not json}", "<html>", '{"a": 1}{"b": 2}', "}"])
def test_unrepairable_text_names_the_json_error(text: str) -> None:
    with pytest.raises(ArgumentsError) as info:
        decode_arguments(text)
    message = str(info.value)
    assert message.startswith("arguments are not valid JSON: ")
    assert "line 1 column" in message
    assert "expected a JSON object" in message


def test_error_is_a_value_error_and_reason_reads_after_are() -> None:
    with pytest.raises(ValueError) as info:
        decode_arguments("nope")
    assert isinstance(info.value, ArgumentsError)
    assert str(info.value) == f"arguments are {info.value.reason}"


def test_huge_broken_input_is_refused_quickly() -> None:
    text = '{"code": "' + "x" * (MAX_REPAIR_CHARS + 10)
    started = time.monotonic()
    with pytest.raises(ArgumentsError) as info:
        decode_arguments(text)
    assert time.monotonic() - started < 2
    assert f"over {MAX_REPAIR_CHARS} characters" in str(info.value)


def test_raw_newlines_in_strings_are_repaired_at_any_size() -> None:
    code = 'print("hi")\n\tx = 1\n' * 50_000
    arguments, repaired = decode_arguments('{"code": "' + code.replace('"', '\\"') + '"}')
    assert arguments == {"code": code}
    assert repaired is True


def test_large_python_dict_literal_is_repaired() -> None:
    value = {f"k{i}": [i, "it's", None, True] for i in range(2_000)}
    assert decode_arguments(str(value)) == (value, True)


def test_large_text_that_only_json_repair_could_fix_is_refused() -> None:
    text = "{" + ", ".join(f"key{i}: 1" for i in range(MAX_HEURISTIC_REPAIR_CHARS // 8))
    with pytest.raises(
        ArgumentsError, match=f"over {MAX_HEURISTIC_REPAIR_CHARS} characters is only repaired"
    ):
        decode_arguments(text)


@pytest.mark.parametrize("unit", ["{1}", "]e}", "e\\}", "{]", '/"{'])
def test_pathological_repairs_are_bounded(unit: str) -> None:
    text = ('{"k": ' + unit * MAX_HEURISTIC_REPAIR_CHARS)[:MAX_HEURISTIC_REPAIR_CHARS]
    started = time.monotonic()
    with contextlib.suppress(ArgumentsError):
        decode_arguments(text)
    assert time.monotonic() - started < 3


def test_call_heavy_repair_runs_out_of_budget() -> None:
    with pytest.raises(ArgumentsError, match="too broken to repair"):
        decode_arguments("{1}" * 1_300)


def test_huge_valid_json_is_still_accepted() -> None:
    code = "print(1)\n" * 200_000
    arguments, repaired = decode_arguments('{"code": ' + f'"{code}"'.replace("\n", "\\n") + "}")
    assert arguments == {"code": code}
    assert repaired is False


def test_deep_nesting_is_refused_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(ArgumentsError) as info:
        decode_arguments("{" * 100_000)
    assert time.monotonic() - started < 2
    assert f"over {MAX_REPAIR_DEPTH} levels" in str(info.value)


def test_deeply_nested_valid_json_does_not_crash() -> None:
    with pytest.raises(ArgumentsError):
        decode_arguments('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")


def test_non_string_input_raises_arguments_error() -> None:
    with pytest.raises(ArgumentsError, match="not text"):
        decode_arguments(123)  # type: ignore[arg-type]


def test_arguments_from_value() -> None:
    assert arguments_from_value(None) == ({}, False)
    assert arguments_from_value('{"a": 1}') == ({"a": 1}, False)
    assert arguments_from_value({"a": (1, {"b": None})}) == ({"a": [1, {"b": None}]}, False)
    with pytest.raises(ArgumentsError, match="got an array"):
        arguments_from_value([1])
    with pytest.raises(ArgumentsError, match="not strings"):
        arguments_from_value({1: "int key"})
    with pytest.raises(ArgumentsError, match="not JSON"):
        arguments_from_value({"a": {1, 2}})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_decodes_to_a_dict_or_raises_arguments_error(text: str) -> None:
    try:
        arguments, repaired = decode_arguments(text)
    except ArgumentsError as exc:
        assert exc.reason
    else:
        assert isinstance(arguments, dict)
        assert all(isinstance(key, str) for key in arguments)
        assert isinstance(repaired, bool)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="{}[]\"':,\\ \nabc1-.TrueNone`#/*", max_size=400))
def test_json_like_noise_decodes_to_a_dict_or_raises_arguments_error(text: str) -> None:
    try:
        arguments, _ = decode_arguments(text)
    except ArgumentsError:
        return
    assert isinstance(arguments, dict)
