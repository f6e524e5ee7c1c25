"""Final-answer extraction: the content of the last `\\boxed{...}`, as MiroThinker's summary prompt asks for."""

from __future__ import annotations

import re

_BOX_OPEN = re.compile(r"\\boxed\s*\{")
_BRACE_OR_ESCAPE = re.compile(r"\\.|[{}]", re.DOTALL)


def extract_boxed(text: str) -> str | None:
    """The stripped content of the last top-level `\\boxed{...}` (nested braces kept), or None without one."""
    content: str | None = None
    pos = 0
    while True:
        match = _BOX_OPEN.search(text, pos)
        if match is None:
            return content
        end = _closing_brace(text, match.end())
        if end is None:
            return text[match.end() :].strip()
        content = text[match.end() : end].strip()
        pos = end + 1


def _closing_brace(text: str, start: int) -> int | None:
    """Index of the `}` closing a group opened just before `start`; escaped braces (`\\{`) do not count."""
    depth = 1
    for token in _BRACE_OR_ESCAPE.finditer(text, start):
        char = token.group()
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return token.start()
    return None
