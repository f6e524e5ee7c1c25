"""Making any text a model writes safe to use: lone surrogates repaired, unusable tool-call values named.

A Python `str` may hold code points that UTF-8 cannot encode: lone UTF-16 surrogates (U+D800-U+DFFF), which
reach an env from JSON escapes such as `"\\ud800"` in an endpoint's reply. Everything that encodes text
(token counters, hashes, SQLite, the sandbox wire, HTTP bodies) would raise on them, so the env screens each
action here first: prose is repaired (`scrub_text`), and tool calls whose names or arguments hold a lone
surrogate or NUL are turned into `format` problems naming the value (`screen_parsed`), never run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall

REPLACEMENT = "\ufffd"
"""What a lone surrogate is replaced with (U+FFFD REPLACEMENT CHARACTER, as a UTF-8 decoder does)."""

MAX_SCRUB_DEPTH = 100
"""Nesting levels of an action dict that are copied; anything deeper is replaced by a short note."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNUSABLE = re.compile("[\ud800-\udfff\x00]")
_TOO_DEEP = "[nested too deeply]"


def has_surrogates(text: str) -> bool:
    """True when `text` holds a code point UTF-8 cannot encode (a lone surrogate)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def scrub_text(text: str) -> tuple[str, int]:
    """`text` with surrogate pairs joined and lone surrogates replaced by U+FFFD, and how many were repaired."""
    if not has_surrogates(text):
        return text, 0
    repaired = len(_SURROGATE.findall(text))
    fixed = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return fixed, repaired


def scrub(text: str) -> str:
    """`scrub_text` without the count: text that is always safe to encode as UTF-8."""
    return scrub_text(text)[0]


def utf8(text: str) -> bytes:
    """The UTF-8 bytes of `text`, lone surrogates encoded as their three-byte form instead of raising.

    For hashing and counting: distinct strings keep distinct bytes, and text without surrogates encodes
    exactly as `str.encode("utf-8")` does, so keys made before stay valid.
    """
    return text.encode("utf-8", "surrogatepass")


def scrub_value(value: object, depth: int = 0) -> tuple[Any, int]:
    """A JSON-shaped copy of an action value with every string scrubbed, and how many code points were repaired.

    Mappings become dicts with string keys, lists and tuples lists; strings, booleans, integers, finite
    floats and None are kept; anything else (bytes, sets, NaN, objects) becomes its repr. Values that cannot
    be read (a mapping whose iteration raises) and nesting beyond `MAX_SCRUB_DEPTH` become a short note, so a
    self-referencing dict is copied in bounded time.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if value is None or isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value, 0
    if depth >= MAX_SCRUB_DEPTH and isinstance(value, (Mapping, list, tuple)):
        return _TOO_DEEP, 0
    try:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            total = 0
            for key, item in list(value.items()):
                clean_key, key_fixes = scrub_text(key if isinstance(key, str) else _repr(key))
                clean_item, item_fixes = scrub_value(item, depth + 1)
                out[clean_key] = clean_item
                total += key_fixes + item_fixes
            return out, total
        if isinstance(value, (list, tuple)):
            items = [scrub_value(item, depth + 1) for item in value]
            return [item for item, _ in items], sum(fixes for _, fixes in items)
    except Exception as exc:
        return f"[unreadable {type(value).__name__}: {type(exc).__name__}]", 0
    return scrub_text(_repr(value))


def _repr(value: object) -> str:
    """`repr(value)`, or a note naming its type when its repr raises."""
    try:
        return repr(value)
    except Exception:
        return f"[{type(value).__name__} without a repr]"


def unusable_value(value: object, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first string in a decoded value that a tool cannot be given, as (where, what), or None.

    `where` is a path like `"q"`, `"headers.X-Key"` or `"items[2]"` (`"a key"` suffix for keys); `what` says
    which code point it holds: a lone surrogate (half of a UTF-16 pair, not a character) or NUL.
    """
    if isinstance(value, str):
        found = _UNUSABLE.search(value)
        if found is None:
            return None
        point = ord(found.group())
        what = "a NUL character (U+0000)" if point == 0 else f"a lone surrogate (U+{point:04X})"
        return path or "the value", f"{what} at position {found.start()}"
    if depth > MAX_SCRUB_DEPTH:
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str):
                bad_key = unusable_value(key, "", depth + 1)
                if bad_key is not None:
                    return f"a key of {path or 'the arguments'}", bad_key[1]
            found_item = unusable_value(item, scrub(where), depth + 1)
            if found_item is not None:
                return found_item
        return None
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        for index, item in enumerate(value):
            found_item = unusable_value(item, f"{path}[{index}]", depth + 1)
            if found_item is not None:
                return found_item
    return None


def call_problem(call: ToolCall) -> ParseProblem | None:
    """A problem when the call's names or arguments hold a code point no tool can be given (every door
    checks this before running a call: the env's parser screen, and `run_call` for MCP and other callers)."""
    for field, text in (("tool name", call.name), ("server name", call.server), ("call id", call.call_id)):
        if text is not None:
            found = unusable_value(text)
            if found is not None:
                return ParseProblem(
                    message=f"the {field} {text!r} holds {found[1]}; {_advice(found[1])}",
                    raw=scrub(call.raw),
                    call_id=scrub(call.call_id) if call.call_id is not None else None,
                )
    found = unusable_value(call.arguments)
    if found is None:
        return None
    where, what = found
    return ParseProblem(
        message=f"the arguments of tool {call.name!r} are not usable: {where!r} holds {what}; {_advice(what)}",
        raw=scrub(call.raw),
        call_id=call.call_id,
    )


def _advice(what: str) -> str:
    """How to write the value instead, for a problem found by `unusable_value`."""
    if what.startswith("a NUL"):
        return "leave NUL characters out (no tool accepts them)"
    return (
        "write whole characters (a JSON escape of one outside the Basic Multilingual Plane is a surrogate "
        'pair such as "\\ud83d\\ude00", never half of one)'
    )


def screen_parsed(parsed: ParsedAction) -> tuple[ParsedAction, int]:
    """`parsed` made safe to use: calls holding lone surrogates or NUL turned into problems naming the value,
    every other text scrubbed; also how many lone surrogates the message text held."""
    text, repaired = scrub_text(parsed.text)
    changed = repaired > 0
    calls: list[ToolCall] = []
    problems: list[ParseProblem] = []
    for call in parsed.calls:
        problem = call_problem(call)
        if problem is not None:
            problems.append(problem)
            changed = True
        elif has_surrogates(call.raw):
            calls.append(call.model_copy(update={"raw": scrub(call.raw)}))
            changed = True
        else:
            calls.append(call)
    for problem in parsed.problems:
        if any(has_surrogates(t) for t in (problem.message, problem.raw, problem.call_id or "")):
            problem = ParseProblem(
                message=scrub(problem.message),
                raw=scrub(problem.raw),
                call_id=scrub(problem.call_id) if problem.call_id is not None else None,
            )
            changed = True
        problems.append(problem)
    if not changed:
        return parsed, 0
    return ParsedAction(text=text, calls=calls, problems=problems), repaired
