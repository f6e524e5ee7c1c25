"""Text that UTF-8 cannot encode (lone surrogates) made safe, and tool-call values no tool can take named."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miroenv.protocol.arguments import ArgumentsError, decode_arguments
from miroenv.protocol.calls import ParsedAction, ToolCall
from miroenv.protocol.text import (
    has_surrogates,
    screen_parsed,
    scrub,
    scrub_text,
    scrub_value,
    unusable_value,
    utf8,
)
from miroenv.testing.strategies import any_text, json_escapes
from miroenv.tokens import approx_token_count
from miroenv.web.base import ToolResultRecord, tool_call_key


@given(text=any_text)
def test_scrubbed_text_always_encodes_and_clean_text_is_untouched(text: str) -> None:
    clean, repaired = scrub_text(text)
    clean.encode("utf-8")
    assert repaired == sum(0xD800 <= ord(c) <= 0xDFFF for c in text)
    assert has_surrogates(text) == (repaired > 0)
    if not repaired:
        assert clean is text


@given(a=any_text, b=any_text)
def test_utf8_is_total_and_keeps_distinct_strings_distinct(a: str, b: str) -> None:
    assert (utf8(a) == utf8(b)) == (a == b)
    if not has_surrogates(a):
        assert utf8(a) == a.encode("utf-8")


@given(text=any_text)
def test_token_count_and_tool_call_key_take_any_text(text: str) -> None:
    assert approx_token_count(text) >= 0
    key = tool_call_key("s", "t", {"q": text})
    assert len(key) == 64
    if not has_surrogates(text):
        canonical = json.dumps(
            ["s", "t", {"q": text}], sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        assert key == hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_a_recorded_result_for_escaped_surrogate_arguments_has_a_key_of_its_own() -> None:
    lone = ToolResultRecord(server="s", tool="google_search", arguments={"q": "\ud800"}, result="r")
    replaced = ToolResultRecord(server="s", tool="google_search", arguments={"q": "\ufffd"}, result="r")
    assert lone.key() != replaced.key()


@given(escape=json_escapes)
def test_every_json_escape_decodes_and_unusable_ones_are_named(escape: str) -> None:
    arguments, _ = decode_arguments(f'{{"q": "a{escape}"}}')
    point = int(escape[2:], 16)
    found = unusable_value(arguments)
    if point == 0 or 0xD800 <= point <= 0xDFFF:
        assert found is not None and found[0] == "q" and f"U+{point:04X}" in found[1]
    else:
        assert found is None


def test_unusable_values_are_found_at_their_path() -> None:
    assert unusable_value({"a": {"b": ["ok", "x\x00"]}}) == (
        "a.b[1]",
        "a NUL character (U+0000) at position 1",
    )
    assert unusable_value({"k\ud800": 1}) == (
        "a key of the arguments",
        "a lone surrogate (U+D800) at position 1",
    )
    assert unusable_value({"a": [1, 2.5, None, True, "fine \U0001f600"]}) is None


def test_screening_turns_unusable_calls_into_problems_and_keeps_good_ones() -> None:
    good = ToolCall(server="s", name="google_search", arguments={"q": "Ada"}, raw="<call \ud800>")
    bad = ToolCall(name="google_search", arguments={"q": "\ud800"}, call_id="c7")
    named = ToolCall(name="goo\x00gle", arguments={})
    parsed, repaired = screen_parsed(ParsedAction(text="hi \ud800", calls=[good, bad, named]))
    assert (parsed.text, repaired) == ("hi \ufffd", 1)
    assert [c.name for c in parsed.calls] == ["google_search"] and parsed.calls[0].raw == "<call \ufffd>"
    first, second = parsed.problems
    assert first.call_id == "c7" and "'q' holds a lone surrogate (U+D800)" in first.message
    assert "the tool name 'goo\\x00gle' holds a NUL character" in second.message
    clean = ParsedAction(text="fine", calls=[ToolCall(name="t")])
    assert screen_parsed(clean) == (clean, 0)


def test_action_dicts_are_copied_json_shaped_with_strings_scrubbed() -> None:
    looping: dict[str, object] = {}
    looping["self"] = looping
    value, repaired = scrub_value({"a": ("\ud800", b"x", {1: float("nan")}), "loop": looping})
    assert repaired == 1
    assert value["a"] == ["\ufffd", "b'x'", {"1": "nan"}]
    json.dumps(value, allow_nan=False).encode("utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [('{"q": "a"}{"q": "a"}', {"q": "a"}), ('{"q": "a"},\n{"q": "a"}', {"q": "a"})],
)
def test_a_repeated_arguments_object_is_one_object(text: str, expected: dict[str, str]) -> None:
    assert decode_arguments(text) == (expected, True)


def test_different_concatenated_objects_are_refused_not_guessed() -> None:
    with pytest.raises(ArgumentsError, match="2 different JSON objects one after another"):
        decode_arguments('{"q": "a"}{"q": "b"}')


@given(st.lists(st.dictionaries(st.sampled_from("ab"), st.integers(), min_size=1), min_size=2, max_size=4))
def test_concatenated_objects_are_one_object_only_when_all_equal(objects: list[dict[str, int]]) -> None:
    text = "".join(json.dumps(obj) for obj in objects)
    if all(obj == objects[0] for obj in objects):
        assert decode_arguments(text)[0] == objects[0]
    else:
        with pytest.raises(ArgumentsError):
            decode_arguments(text)


def test_scrub_joins_split_pairs() -> None:
    assert scrub("\ud83d\ude00 \ud83d") == "\U0001f600 \ufffd"
