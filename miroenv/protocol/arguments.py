"""Decoding tool-call arguments: strict JSON first, then bounded lenient repair of what models really write."""

from __future__ import annotations

import ast
import json
import re
import sys
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

import json_repair

MAX_REPAIR_CHARS = 256 * 1024
"""Broken arguments longer than this are not repaired at all (Python-literal parsing is linear but slow)."""

MAX_HEURISTIC_REPAIR_CHARS = 4 * 1024
"""Broken arguments longer than this skip json_repair, which is quadratic on some inputs (e.g. `]e}]e}...`)."""

MAX_REPAIR_DEPTH = 200
"""Broken arguments whose brackets nest deeper than this are not repaired (cost and recursion)."""

REPAIR_EVENTS_PER_CHAR = 40
"""Python call events one json_repair run may make per input character (plus a fixed allowance).

Legitimate repairs make 15-20 per character; json_repair is quadratic in calls on inputs such as
`{1}{1}{1}...`. Counting calls rather than seconds bounds that cost while keeping results identical on
fast and slow machines.
"""

REPAIR_EVENTS_BASE = 100_000
"""The fixed part of a json_repair run's call-event allowance."""

_EXAMPLE = '{"key": "value"}'
_LANG_TAG = re.compile(r"[A-Za-z0-9_+-]*")
_JUNK_ONLY = re.compile(r"[\s{},]*")


class ArgumentsError(ValueError):
    """Tool-call arguments that cannot be turned into a JSON object; `reason` reads well after "are"/"is"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"arguments are {reason}")
        self.reason = reason


def decode_arguments(text: str) -> tuple[dict[str, Any], bool]:
    """Decode arguments text into a dict, returning `(arguments, repaired)`; raises only `ArgumentsError`."""
    if not isinstance(text, str):
        raise ArgumentsError(f"not text: got {type(text).__name__}; expected a JSON object like {_EXAMPLE}")
    if not text.strip():
        return {}, False
    try:
        value = json.loads(text)
    except RecursionError:
        detail = "the brackets nest too deeply"
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
    else:
        if isinstance(value, dict):
            return value, False
        return _require_object(value), True
    return _repair(text.strip(), detail), True


def arguments_from_value(value: object) -> tuple[dict[str, Any], bool]:
    """Arguments given as a value (a JSON string, a mapping, or null) as a JSON-able dict and a repaired flag."""
    if value is None:
        return {}, False
    if isinstance(value, str):
        return decode_arguments(value)
    if isinstance(value, Mapping):
        try:
            converted = _to_json(value, 0)
        except Exception:
            converted = _NOT_JSON
        if isinstance(converted, dict):
            return converted, False
        raise ArgumentsError(
            "not a JSON object: it holds keys that are not strings or values that are not JSON "
            f"(strings, numbers, booleans, null, arrays, objects); expected a JSON object like {_EXAMPLE}"
        )
    raise ArgumentsError(f"not a JSON object: got {_kind(value)}; expected a JSON object like {_EXAMPLE}")


def _repair(text: str, detail: str) -> dict[str, Any]:
    """Lenient decoding of text that strict JSON rejected, or `ArgumentsError` naming the JSON error."""
    core, fenced = _strip_fence(text)
    if fenced and not core:
        return {}
    try:
        value = json.loads(core, strict=False)
    except Exception:
        pass
    else:
        return _require_object(value)
    objects = _concatenated_objects(core)
    if objects:
        if all(obj == objects[0] for obj in objects):
            return objects[0]
        raise ArgumentsError(
            f"not valid JSON: {detail}; it is {len(objects)} different JSON objects one after another, but a "
            f"call takes one, so write one call for each; expected a JSON object like {_EXAMPLE}"
        )
    if len(core) > MAX_REPAIR_CHARS:
        raise ArgumentsError(
            f"not valid JSON: {detail}; text over {MAX_REPAIR_CHARS} characters is not repaired, "
            f"so send a strictly valid JSON object like {_EXAMPLE}"
        )
    if _bracket_depth(core) > MAX_REPAIR_DEPTH:
        raise ArgumentsError(
            f"not valid JSON: {detail}; brackets nested over {MAX_REPAIR_DEPTH} levels deep are not "
            f"repaired, so send a strictly valid JSON object like {_EXAMPLE}"
        )
    python_value = _python_literal(core)
    if python_value is not None:
        return python_value
    if len(core) > MAX_HEURISTIC_REPAIR_CHARS:
        raise ArgumentsError(
            f"not valid JSON: {detail}; text over {MAX_HEURISTIC_REPAIR_CHARS} characters is only repaired "
            f"when it is a Python dict literal, so send a strictly valid JSON object like {_EXAMPLE}"
        )
    try:
        repaired = _json_repair(core)
    except _BudgetExceeded:
        raise ArgumentsError(
            f"not valid JSON: {detail}; it is too broken to repair, "
            f"so send a strictly valid JSON object like {_EXAMPLE}"
        ) from None
    if isinstance(repaired, dict) and (repaired or _JUNK_ONLY.fullmatch(core)):
        return repaired
    raise ArgumentsError(f"not valid JSON: {detail}; expected a JSON object like {_EXAMPLE}")


def _concatenated_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects of text made of two or more of them one after another (`{"q":"a"}{"q":"b"}`), else []."""
    decoder = json.JSONDecoder(strict=False)
    objects: list[dict[str, Any]] = []
    pos = 0
    try:
        while pos < len(text):
            value, pos = decoder.raw_decode(text, pos)
            if not isinstance(value, dict):
                return []
            objects.append(value)
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
    except (ValueError, RecursionError):
        return []
    return objects if len(objects) > 1 else []


def _require_object(value: object) -> dict[str, Any]:
    """`value` if it is a dict; a string holding a JSON object is unwrapped once (double-encoded arguments)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            inner = json.loads(value)
        except Exception:
            inner = None
        if isinstance(inner, dict):
            return inner
    raise ArgumentsError(f"not a JSON object: got {_kind(value)}; expected a JSON object like {_EXAMPLE}")


def _strip_fence(text: str) -> tuple[str, bool]:
    """Remove a Markdown code fence (```json ... ```) around the text, returning the body and whether one was."""
    if not text.startswith("```"):
        return text, False
    body = text[3:]
    tag = _LANG_TAG.match(body)
    if tag is not None:
        body = body[tag.end() :]
    body = body.rstrip()
    if body.endswith("```"):
        body = body[:-3]
    return body.strip(), True


def _bracket_depth(text: str) -> int:
    """The deepest nesting of `{`/`[` in the text, counting brackets inside strings too (an upper bound)."""
    depth = deepest = 0
    for char in text:
        if char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]" and depth:
            depth -= 1
    return deepest


def _python_literal(text: str) -> dict[str, Any] | None:
    """The text as a Python dict literal (single quotes, True/None, tuples), or None when it is not one."""
    if not text.startswith("{"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = ast.literal_eval(text)
    except Exception:
        return None
    converted = _to_json(value, 0)
    return converted if isinstance(converted, dict) else None


class _BudgetExceeded(BaseException):
    """Raised inside json_repair when it exceeds its call-event budget (a BaseException: never swallowed)."""


def _json_repair(text: str) -> object:
    """json_repair's best guess for the text (None when it fails); `_BudgetExceeded` when it runs too long.

    The budget is enforced with a per-thread profile hook counting call events. When another profiler is
    already installed (e.g. cProfile), the hook is not installed and json_repair runs unbounded.
    """
    events = 0
    budget = REPAIR_EVENTS_BASE + REPAIR_EVENTS_PER_CHAR * len(text)

    def count_events(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal events
        events += 1
        if events > budget:
            raise _BudgetExceeded

    guarded = sys.getprofile() is None
    if guarded:
        sys.setprofile(count_events)
    try:
        value = json_repair.repair_json(text, return_objects=True, skip_json_loads=True)
    except Exception:
        return None
    finally:
        if guarded:
            sys.setprofile(None)
    if isinstance(value, dict):
        return _to_json(value, 0)
    return value


_NOT_JSON = object()


def _to_json(value: object, depth: int) -> Any:
    """A plain JSON-able copy of `value` (tuples become lists), or `_NOT_JSON` when something is not JSON."""
    if depth > MAX_REPAIR_DEPTH:
        return _NOT_JSON
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            converted = _to_json(item, depth + 1)
            if not isinstance(key, str) or converted is _NOT_JSON:
                return _NOT_JSON
            out[key] = converted
        return out
    if isinstance(value, (list, tuple)):
        items = [_to_json(item, depth + 1) for item in value]
        return _NOT_JSON if any(item is _NOT_JSON for item in items) else items
    return _NOT_JSON


def _kind(value: object) -> str:
    """A short description of a decoded value's JSON type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"
