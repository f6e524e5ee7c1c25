"""Looking up a tool-call format by the name a config or CLI uses."""

from __future__ import annotations

from miroenv.protocol.base import ToolCallFormat
from miroenv.protocol.hermes import HermesFormat
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.protocol.openai import OpenAIFormat

_CLASSES: dict[str, type[ToolCallFormat]] = {
    cls.name: cls for cls in (McpXmlFormat, HermesFormat, OpenAIFormat)
}

FORMATS: tuple[str, ...] = tuple(_CLASSES)
"""Names accepted by `get_format`, MiroThinker's own format first."""


def get_format(name: str) -> ToolCallFormat:
    """A fresh instance of the format called `name`; ValueError listing the valid names otherwise."""
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown tool-call format {name!r}; valid formats: {', '.join(FORMATS)}")
    return cls()
