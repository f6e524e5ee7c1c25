"""Recover what a recorded MCP system prompt offered: its date, servers, tools, descriptions and schemas.

MiroThinker-style prompts list tools as `## Server name: S`, `### Tool name: T`, `Description: ...` and
`Input JSON schema: {...}` sections; the schema is a Python dict repr (one line in MiroThinker v1.0, indented
in MiroRL rollouts) or JSON. Parsing is lenient: a schema that cannot be read becomes `{}` and is reported.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from miroenv.protocol.base import ToolSpec

DATE_PATTERN = re.compile(r"Today is: (\d{4}-\d{2}-\d{2})")
_SERVER = "## Server name: "
_TOOL = "### Tool name: "
_DESCRIPTION = "Description: "
_SCHEMA = "Input JSON schema: "
_LINE_HEADING = re.compile(r"^(## Server name: |### Tool name: )(.*)$", re.MULTILINE)


class RecoveredPrompt(BaseModel):
    """A system prompt as recorded, with the date and tool list read back out of it."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(description="The system prompt exactly as the agent received it.")
    date: str | None = Field(default=None, description="The `Today is:` date, YYYY-MM-DD.")
    specs: list[ToolSpec] = Field(default_factory=list, description="Tools in prompt order, with servers.")
    problems: list[str] = Field(default_factory=list, description="Sections that could not be read fully.")

    @property
    def servers(self) -> list[str]:
        """Server names in prompt order."""
        return list(dict.fromkeys(spec.server for spec in self.specs))


def prompt_date(text: str) -> str | None:
    """The first `Today is: YYYY-MM-DD` date in `text`."""
    match = DATE_PATTERN.search(text)
    return match.group(1) if match else None


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket group opening at `start`, skipping quoted strings; None if unclosed."""
    depth = 0
    quote: str | None = None
    index = start
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None


def parse_schema(text: str) -> dict[str, Any] | None:
    """A schema written as JSON or as a Python dict literal; None when it is neither."""
    for loader in (json.loads, ast.literal_eval):
        try:
            value = loader(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _tool_section(server: str, name: str, body: str) -> tuple[ToolSpec, str | None]:
    """One tool's spec from the text after its `### Tool name:` line, and a problem if any."""
    description = ""
    schema: dict[str, Any] = {}
    problem: str | None = None
    rest = body
    if rest.startswith(_DESCRIPTION):
        cut = rest.find("\n" + _SCHEMA)
        if cut == -1:
            description, rest = rest[len(_DESCRIPTION) :].rstrip("\n"), ""
        else:
            description, rest = rest[len(_DESCRIPTION) : cut], rest[cut + 1 :]
    if rest.startswith(_SCHEMA):
        schema_text = rest[len(_SCHEMA) :]
        opening = schema_text.find("{")
        end = _balanced_end(schema_text, opening) if opening != -1 else None
        parsed = parse_schema(schema_text[opening:end]) if end is not None else None
        if parsed is None:
            problem = f"tool {name!r} on {server!r}: the input schema could not be read"
        else:
            schema = parsed
    else:
        problem = f"tool {name!r} on {server!r}: no input schema"
    return ToolSpec(server=server, name=name, description=description, input_schema=schema), problem


def recover_prompt(text: str) -> RecoveredPrompt:
    """Read the date and every server's tools (name, description, schema) out of a system prompt."""
    specs: list[ToolSpec] = []
    problems: list[str] = []
    headings = list(_LINE_HEADING.finditer(text))
    server: str | None = None
    for number, heading in enumerate(headings):
        kind, value = heading.group(1), heading.group(2).strip()
        if kind == _SERVER:
            server = value
            continue
        if server is None:
            problems.append(f"tool {value!r} is listed before any server")
            continue
        end = headings[number + 1].start() if number + 1 < len(headings) else len(text)
        spec, problem = _tool_section(server, value, text[heading.end() + 1 : end])
        specs.append(spec)
        if problem is not None:
            problems.append(problem)
    return RecoveredPrompt(text=text, date=prompt_date(text), specs=specs, problems=problems)
