"""Tool-call protocol: parsing and rendering tool calls in MiroThinker MCP XML, Hermes and OpenAI formats."""

from miroenv.protocol.arguments import ArgumentsError, decode_arguments
from miroenv.protocol.base import Action, ToolCallFormat, ToolSpec, action_text
from miroenv.protocol.boxed import extract_boxed
from miroenv.protocol.calls import ParsedAction, ParseProblem, ToolCall
from miroenv.protocol.hermes import HermesFormat
from miroenv.protocol.mcp_xml import McpXmlFormat, parse_mcp_xml
from miroenv.protocol.openai import OpenAIFormat
from miroenv.protocol.registry import FORMATS, get_format

__all__ = [
    "FORMATS",
    "Action",
    "ArgumentsError",
    "HermesFormat",
    "McpXmlFormat",
    "OpenAIFormat",
    "ParseProblem",
    "ParsedAction",
    "ToolCall",
    "ToolCallFormat",
    "ToolSpec",
    "action_text",
    "decode_arguments",
    "extract_boxed",
    "get_format",
    "parse_mcp_xml",
]
