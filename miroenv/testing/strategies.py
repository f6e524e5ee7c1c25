"""Hypothesis strategies for tool calls in every supported format (mcp_xml, hermes, openai), valid and
malformed, each paired with what it must parse to or be rejected as; plus the building blocks (tricky text,
JSON values, tag soup, odd message dicts) the protocol and env fuzz tests use.

Valid calls name one of a profile's tools, carry arguments that satisfy its input schema and are written by
the format's own renderer. Malformed ones are rejected either by the parser (`rejected_as="format"`:
unclosed or truncated tags, broken JSON, missing names) or by the tool (`rejected_as="tool"`: unknown tools,
wrong argument types, missing required arguments).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from miroenv.protocol.base import ToolSpec
from miroenv.protocol.calls import ErrorKind, ToolCall
from miroenv.protocol.mcp_xml import dump_json
from miroenv.protocol.registry import FORMATS, get_format
from miroenv.protocol.text import unusable_value
from miroenv.testing.actions import with_thought
from miroenv.tools.profiles import get_profile

# ---------------------------------------------------------------------------------- building blocks

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,30}", fullmatch=True)
"""Names a model could give a tool, server or call id."""

TAGS = [
    "</arguments>",
    "<use_mcp_tool>",
    "</use_mcp_tool>",
    "<tool_call>",
    "</tool_call>",
    "<think>",
    "</think>",
]
"""Tags of the text formats that a parser must not be fooled by when they appear inside values."""

tricky_text = st.lists(
    st.one_of(
        st.sampled_from(list("\"'{}[]<>/\\\n\t :,`")),
        st.sampled_from([*TAGS, "<arguments>", "<server_name>", "\\boxed{", "```json", "\\u0041"]),
        st.characters(codec="utf-8"),
    ),
    max_size=20,
).map("".join)
"""Short strings full of quotes, brackets, escapes and the formats' own tags."""

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_text,
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(tricky_text, children, max_size=4)
    ),
    max_leaves=12,
)
"""Any JSON value (with tricky strings)."""

json_objects = st.dictionaries(tricky_text, json_values, max_size=6)
"""Any JSON object: tool-call arguments as far as the parsers are concerned."""

tag_soup = st.lists(
    st.one_of(
        st.sampled_from(
            [
                *TAGS,
                "<server_name>",
                "</server_name>",
                "<tool_name>",
                "</tool_name>",
                "<arguments>",
                '{"name": "t", "arguments": {',
                "{'q': True,}",
                "```json",
                "s",
                "}",
                "{",
                '"',
            ]
        ),
        st.characters(),
    ),
    max_size=40,
).map("".join)
"""Text made of tag and JSON fragments: what a confused model writes."""

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=5)
)
odd_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), children, max_size=4),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=15,
)
"""Python values that are not JSON (bytes, tuples, sets, non-string keys) mixed with ones that are."""

odd_messages = st.one_of(
    st.dictionaries(
        st.sampled_from(["role", "content", "tool_calls", "function", "id", "name"]), odd_values, max_size=4
    ),
    st.fixed_dictionaries(
        {
            "content": st.one_of(odd_values, tag_soup),
            "tool_calls": st.lists(
                st.one_of(
                    odd_values,
                    st.fixed_dictionaries(
                        {
                            "id": odd_values,
                            "function": st.dictionaries(st.sampled_from(["name", "arguments"]), odd_values),
                        }
                    ),
                    st.fixed_dictionaries(
                        {
                            "id": odd_values,
                            "function": st.fixed_dictionaries(
                                {
                                    "name": st.one_of(identifiers, odd_values),
                                    "arguments": st.one_of(tag_soup, odd_values),
                                }
                            ),
                        }
                    ),
                ),
                max_size=4,
            ),
        }
    ),
)
"""Assistant-message dicts with odd shapes and values: what a buggy client could hand to `step()`."""

MCP_FRAGMENTS = [
    "<use_mcp_tool>",
    "</use_mcp_tool>",
    "<server_name>",
    "</server_name>",
    "<tool_name>",
    "</tool_name>",
    "<arguments>",
    "</arguments>",
    "search_and_scrape_webpage",
    "google_search",
    "tool-python",
    "jina_scrape_llm_summary",
    "scrape_and_extract_info",
    '{"q": "x"}',
    "{'q': 'y',}",
    "{",
    "}",
    '"',
    "\\",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    '{"name": "google_search", "arguments": {}}',
    "\\boxed{",
    "null",
    "\n",
    " ",
    "\x00",
    "\ud7ff",
    "🙂",
]
"""Pieces of MiroThinker-style calls, for text that looks like tool use without being well formed."""

fragment_soup = st.lists(st.sampled_from(MCP_FRAGMENTS), min_size=1, max_size=12).map("".join)
"""Concatenated `MCP_FRAGMENTS`."""

broken_mcp_calls = st.builds(
    lambda server, tool, args, close: (
        f"<use_mcp_tool>\n<server_name>{server}</server_name>\n<tool_name>{tool}</tool_name>\n"
        f"<arguments>\n{args}\n</arguments>" + ("\n</use_mcp_tool>" if close else "")
    ),
    st.sampled_from(["search_and_scrape_webpage", "tool-python", "", "x" * 300]),
    st.sampled_from(["google_search", "run_python_code", "", "scrape_and_extract_info"]),
    st.one_of(st.text(max_size=80), st.sampled_from(["{", "[1, 2]", '"str"', "{'q': None}", '{"q": 1e999}'])),
    st.booleans(),
)
"""MCP XML blocks with odd servers, tools and arguments, closed or not (their outcome is not predicted)."""

# ---------------------------------------------------------------------------------- cases with expectations


class ToolCallCase(BaseModel):
    """An action holding one tool call, and what the env must make of it."""

    model_config = ConfigDict(frozen=True)

    tool_format: str
    action: str | dict[str, Any]
    flaw: str
    """`none` for a valid call, else what is wrong with it (`unclosed_tag`, `broken_json`, `unknown_tool`, ...)."""
    expected_call: ToolCall | None
    """What the parser must return (None when the parser must reject the action)."""
    rejected_as: ErrorKind | None
    """None: the call is valid; `format`: the parser reports a problem; `tool`: the tool refuses it."""

    @property
    def valid(self) -> bool:
        """True for a well-formed call to a real tool with schema-valid arguments."""
        return self.rejected_as is None


GARBAGE_JSON = ["%%%", "{{{", "{]", ")(", "<<>>", "not json at all", "@@@ {", "undefined"]
"""Texts that no lenient repair turns into a JSON object."""

_PROSE = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<>\\{}"), max_size=40)
_thoughts = st.one_of(st.none(), _PROSE)
_strings = st.one_of(st.text(max_size=30), tricky_text)


def _decodes_to_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


_non_object_json = json_values.filter(
    lambda v: (
        v is not None
        and not isinstance(v, dict)
        and not (isinstance(v, str) and (not v.strip() or _decodes_to_object(v)))
    )
)
broken_arguments = st.one_of(st.sampled_from(GARBAGE_JSON), _non_object_json.map(dump_json))
"""Argument texts every parser must reject: not JSON and beyond repair, or JSON that is not an object."""

broken_argument_values = st.one_of(
    st.sampled_from(GARBAGE_JSON),
    _non_object_json.filter(lambda v: not isinstance(v, str)),
)
"""`arguments` values (inside a JSON payload) every parser must reject: non-object JSON, or a string that is
no JSON at all (strings are decoded leniently, so only garbage qualifies)."""


def schema_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values satisfying a tool input-schema property (the JSON Schema subset tool schemas use)."""
    if "anyOf" in schema:
        return st.one_of([schema_values(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind is None:
        return json_values
    if kind == "string":
        return _strings
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(10**6)), max_value=schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(schema_values(schema.get("items", {})), max_size=4)
    if kind == "object":
        extra = schema.get("additionalProperties")
        return st.dictionaries(
            _strings, schema_values(extra) if isinstance(extra, dict) else json_values, max_size=4
        )
    raise ValueError(f"no strategy for schema type {kind!r} in {schema}")


_WRONG_VALUES: dict[str, list[Any]] = {
    "string": [0, 7, 2.5, True, [1], {"a": "b"}],
    "integer": ["abc", "", 1.5, [1], {"a": 1}],
    "number": ["abc", [1.0], {"a": 1}],
    "boolean": ["maybe", 2, [True], {"a": True}],
    "object": ["text", [1, 2], 3, {"key": 1}],
    "array": ["text", {"a": 1}, 3],
}
"""Per schema type, values that pydantic's lax validation still refuses."""


_ABSENT = object()
"""Marks an optional argument left out."""


def schema_arguments(spec: ToolSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments valid for `spec`: every required property, and each optional one or not; no string holds NUL
    (the env refuses NUL in arguments as a `format` error)."""
    properties: dict[str, Any] = spec.input_schema.get("properties", {})
    required = set(spec.input_schema.get("required", []))
    fields = {
        name: schema_values(prop) if name in required else st.one_of(st.just(_ABSENT), schema_values(prop))
        for name, prop in properties.items()
    }
    return (
        st.fixed_dictionaries(fields)
        .map(lambda args: {k: v for k, v in args.items() if v is not _ABSENT})
        .filter(lambda args: unusable_value(args) is None)
    )


def _specs(profile: str) -> list[ToolSpec]:
    return get_profile(profile).specs()


def _render(tool_format: str, call: ToolCall, thought: str | None) -> str | dict[str, Any]:
    action = with_thought(get_format(tool_format).render_call(call), thought)
    return action if isinstance(action, str) else dict(action)


def _check_format(tool_format: str) -> None:
    if tool_format not in FORMATS:
        raise ValueError(f"unknown tool-call format {tool_format!r}; valid formats: {', '.join(FORMATS)}")


@st.composite
def _call_for(draw: st.DrawFn, tool_format: str, spec: ToolSpec, arguments: dict[str, Any]) -> ToolCall:
    server = spec.server if tool_format == "mcp_xml" else None
    call_id = draw(identifiers) if tool_format == "openai" else None
    return ToolCall(server=server, name=spec.name, arguments=arguments, call_id=call_id)


def valid_tool_calls(tool_format: str, profile: str = "mirothinker_v1") -> st.SearchStrategy[ToolCallCase]:
    """Calls to `profile`'s tools with schema-valid arguments, rendered by the format (maybe after a thought)."""
    _check_format(tool_format)

    @st.composite
    def cases(draw: st.DrawFn) -> ToolCallCase:
        spec = draw(st.sampled_from(_specs(profile)))
        call = draw(_call_for(tool_format, spec, draw(schema_arguments(spec))))
        return ToolCallCase(
            tool_format=tool_format,
            action=_render(tool_format, call, draw(_thoughts)),
            flaw="none",
            expected_call=call,
            rejected_as=None,
        )

    return cases()


def _format_flaws(tool_format: str) -> list[str]:
    if tool_format == "mcp_xml":
        return ["unclosed_tag", "truncated", "broken_json", "missing_tool_name", "missing_server_name"]
    if tool_format == "hermes":
        return ["unclosed_tag", "truncated", "broken_json", "broken_payload", "missing_tool_name"]
    return ["broken_json", "missing_tool_name", "entry_not_object", "missing_function", "tool_calls_not_list"]


TOOL_FLAWS = ["unknown_tool", "wrong_argument_type", "missing_argument"]


def _break_text(draw: st.DrawFn, tool_format: str, flaw: str, call: ToolCall, thought: str | None) -> str:
    """A text-format action for `call` damaged by `flaw` so that the parser must report a problem."""
    rendered = get_format(tool_format).render_call(call)
    assert isinstance(rendered, str)
    open_tag, close_tag = (
        ("<use_mcp_tool>", "</use_mcp_tool>") if tool_format == "mcp_xml" else ("<tool_call>", "</tool_call>")
    )
    if flaw == "unclosed_tag":
        broken = rendered[: -len(close_tag)].rstrip()
    elif flaw == "truncated":
        broken = rendered[: draw(st.integers(min_value=len(open_tag), max_value=len(rendered) - 1))]
    elif flaw == "broken_json" and tool_format == "mcp_xml":
        broken = (
            f"{open_tag}\n<server_name>{call.server}</server_name>\n<tool_name>{call.name}</tool_name>\n"
            f"<arguments>\n{draw(broken_arguments)}\n</arguments>\n{close_tag}"
        )
    elif flaw == "broken_json":
        payload = dump_json({"name": call.name, "arguments": draw(broken_argument_values)})
        broken = f"{open_tag}\n{_hermes_safe(payload)}\n{close_tag}"
    elif flaw == "broken_payload":
        broken = f"{open_tag}\n{_hermes_safe(draw(broken_arguments))}\n{close_tag}"
    elif flaw == "missing_tool_name" and tool_format == "mcp_xml":
        broken = rendered.replace(f"<tool_name>{call.name}</tool_name>\n", "", 1)
    elif flaw == "missing_tool_name":
        broken = f"{open_tag}\n{_hermes_safe(dump_json({'arguments': call.arguments}))}\n{close_tag}"
    elif flaw == "missing_server_name":
        broken = rendered.replace(f"<server_name>{call.server}</server_name>\n", "", 1)
    else:
        raise AssertionError(f"unknown flaw {flaw}")
    result = with_thought(broken, thought)
    assert isinstance(result, str)
    return result


def _hermes_safe(payload: str) -> str:
    """JSON payload text with `<tool_call>` escaped the way the Hermes renderer does (`</` is already)."""
    return payload.replace("<tool_call>", "\\u003ctool_call>")


def _break_message(draw: st.DrawFn, flaw: str, call: ToolCall, thought: str | None) -> dict[str, Any]:
    """An OpenAI message for `call` damaged by `flaw` so that the parser must report a problem."""
    entry: Any
    if flaw == "broken_json":
        entry = {
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.name, "arguments": draw(broken_arguments)},
        }
    elif flaw == "missing_tool_name":
        entry = {
            "id": call.call_id,
            "type": "function",
            "function": {"arguments": json.dumps(call.arguments)},
        }
    elif flaw == "entry_not_object":
        entry = draw(st.one_of(st.text(max_size=20), st.integers(), st.lists(st.integers(), max_size=3)))
    elif flaw == "missing_function":
        entry = {"id": call.call_id, "type": "function", "name": call.name}
    elif flaw == "tool_calls_not_list":
        return {
            "role": "assistant",
            "content": thought,
            "tool_calls": draw(st.sampled_from(["call", 3, {"id": "x"}])),
        }
    else:
        raise AssertionError(f"unknown flaw {flaw}")
    return {"role": "assistant", "content": thought, "tool_calls": [entry]}


def _wrong_typed(draw: st.DrawFn, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """`arguments` with one typed property given a value of the wrong type (None if no property is typed)."""
    typed = [
        (name, prop["type"])
        for name, prop in spec.input_schema.get("properties", {}).items()
        if prop.get("type") in _WRONG_VALUES
    ]
    if not typed:
        return None
    name, kind = draw(st.sampled_from(typed))
    return {**arguments, name: draw(st.sampled_from(_WRONG_VALUES[kind]))}


def malformed_tool_calls(
    tool_format: str, profile: str = "mirothinker_v1"
) -> st.SearchStrategy[ToolCallCase]:
    """Broken calls: ones the parser must report (`rejected_as="format"`) and well-formed ones naming an
    unknown tool or carrying invalid arguments, which the tool must refuse (`rejected_as="tool"`)."""
    _check_format(tool_format)
    specs = _specs(profile)
    known = {spec.name for spec in specs}
    servers = sorted({spec.server for spec in specs})

    @st.composite
    def cases(draw: st.DrawFn) -> ToolCallCase:
        spec = draw(st.sampled_from(specs))
        call = draw(_call_for(tool_format, spec, draw(schema_arguments(spec))))
        thought = draw(_thoughts)
        flaw = draw(st.sampled_from(_format_flaws(tool_format) + TOOL_FLAWS))
        if flaw in TOOL_FLAWS:
            if flaw == "unknown_tool":
                name = draw(identifiers.filter(lambda n: n not in known))
                server = draw(st.sampled_from(servers)) if tool_format == "mcp_xml" else None
                call = call.model_copy(update={"name": name, "server": server})
            else:
                required = [n for n in spec.input_schema.get("required", []) if n in call.arguments]
                wrong = _wrong_typed(draw, spec, call.arguments) if flaw == "wrong_argument_type" else None
                if wrong is not None:
                    call = call.model_copy(update={"arguments": wrong})
                elif required:
                    flaw = "missing_argument"
                    dropped = draw(st.sampled_from(required))
                    call = call.model_copy(
                        update={"arguments": {k: v for k, v in call.arguments.items() if k != dropped}}
                    )
                else:
                    flaw = "unknown_tool"
                    call = call.model_copy(
                        update={"name": draw(identifiers.filter(lambda n: n not in known))}
                    )
            return ToolCallCase(
                tool_format=tool_format,
                action=_render(tool_format, call, thought),
                flaw=flaw,
                expected_call=call,
                rejected_as="tool",
            )
        action: str | dict[str, Any]
        if tool_format == "openai":
            action = _break_message(draw, flaw, call, thought)
        else:
            action = _break_text(draw, tool_format, flaw, call, thought)
        return ToolCallCase(
            tool_format=tool_format, action=action, flaw=flaw, expected_call=None, rejected_as="format"
        )

    return cases()


def tool_call_cases(tool_format: str, profile: str = "mirothinker_v1") -> st.SearchStrategy[ToolCallCase]:
    """Valid and malformed calls, mixed."""
    return st.one_of(valid_tool_calls(tool_format, profile), malformed_tool_calls(tool_format, profile))


# ---------------------------------------------------------------------------------- any text, real malformations

any_characters = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None, exclude_categories=()),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=()),
    st.characters(min_codepoint=0, max_codepoint=0x9F, exclude_categories=()),
    st.sampled_from(["\x00", "\ud800", "\udfff", "\ufffd", "\ufeff", "\u2028", "\U0010ffff"]),
)
"""Every code point, lone surrogates (category Cs) and C0/C1 controls included, the last two drawn often, and
NUL, U+FFFD, a BOM, a line separator and the last code point drawn often too.

Hypothesis's own `text()` never draws surrogates; a Python `str` from a JSON reply (`"\\ud800"`) can hold them.
"""

any_text = st.lists(any_characters, max_size=200).map("".join)
"""Text drawn from every code point (`any_characters`). A list of characters joined, not `st.text`: `st.text`
merges the alphabets into one set of code points drawn evenly, and surrogates would come up once in 500."""

json_escapes = st.integers(min_value=0, max_value=0xFFFF).map(lambda unit: f"\\u{unit:04x}")
"""JSON `\\uXXXX` escapes of any UTF-16 code unit: NUL, controls, lone halves of surrogate pairs."""

REAL_SEED_CALLS = [
    ToolCall(
        server="search_and_scrape_webpage",
        name="google_search",
        arguments={"q": "Turing Award 1966", "gl": "us"},
    ),
    ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": "https://en.wikipedia.org/wiki/Alan_Perlis", "info_to_extract": "birth date"},
    ),
    ToolCall(
        server="tool-python",
        name="run_python_code",
        arguments={"code_block": "print(6 * 7)", "sandbox_id": "s"},
    ),
    ToolCall(
        server="tool-google-search", name="google_search", arguments={"q": "Mayor of Paterson 1967-1972"}
    ),
]
"""Calls shaped like the ones real MiroThinker rollouts make (the last names the server as MiroRL's logs do)."""

MALFORMATIONS = [
    "duplicated_name",
    "concatenated_json",
    "raw_controls",
    "unescaped_quotes",
    "escaped_unusable",
    "raw_surrogates",
    "truncated_json",
    "python_literal",
    "fenced_arguments",
    "unclosed_tag",
    "fenced_call",
    "nested_call",
    "thought_around",
    "huge_value",
    "noise_around",
]
"""What models really get wrong when writing calls (see `malformed_actions`)."""

_ARGUMENT_FLAWS = {
    "concatenated_json",
    "raw_controls",
    "unescaped_quotes",
    "escaped_unusable",
    "raw_surrogates",
    "truncated_json",
    "python_literal",
    "fenced_arguments",
    "huge_value",
}
"""The `MALFORMATIONS` that damage the arguments text (at most one applies per call)."""


def _string_paths(arguments: dict[str, Any]) -> list[str]:
    return [key for key, value in arguments.items() if isinstance(value, str)]


@st.composite
def _malformed_arguments(draw: st.DrawFn, call: ToolCall, flaw: str) -> str:
    """The JSON text of `call`'s arguments damaged by `flaw` (or intact for flaws elsewhere in the call)."""
    arguments = dict(call.arguments) or {"q": "x"}
    text = json.dumps(arguments, ensure_ascii=False)
    keys = _string_paths(arguments) or [next(iter(arguments))]
    key = draw(st.sampled_from(keys))
    value = str(arguments.get(key, ""))
    spot = draw(st.integers(min_value=0, max_value=len(value)))
    if flaw == "concatenated_json":
        other = draw(st.dictionaries(st.sampled_from(keys), any_text, min_size=1, max_size=2))
        return text + draw(st.sampled_from(["", "\n", " "])) + json.dumps(other, ensure_ascii=False)
    if flaw == "raw_controls":
        junk = draw(st.text(st.characters(max_codepoint=0x1F, exclude_categories=()), min_size=1, max_size=4))
        return text.replace(json.dumps(value, ensure_ascii=False), f'"{value[:spot]}{junk}{value[spot:]}"', 1)
    if flaw == "unescaped_quotes":
        return text.replace(json.dumps(value, ensure_ascii=False), f'"{value[:spot]}"{value[spot:]}"', 1)
    if flaw == "escaped_unusable":
        escapes = "".join(draw(st.lists(json_escapes, min_size=1, max_size=3)))
        lone = draw(st.sampled_from(["\\ud800", "\\udfff", "\\u0000", "\\ud83d", escapes]))
        return text.replace(json.dumps(value, ensure_ascii=False), f'"{value[:spot]}{lone}{value[spot:]}"', 1)
    if flaw == "raw_surrogates":
        lone = draw(
            st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3)
        )
        return text.replace(json.dumps(value, ensure_ascii=False), f'"{value[:spot]}{lone}{value[spot:]}"', 1)
    if flaw == "truncated_json":
        return text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]
    if flaw == "python_literal":
        return repr(arguments).replace("}", ", }") if draw(st.booleans()) else repr(arguments)
    if flaw == "fenced_arguments":
        return f"```{draw(st.sampled_from(['json', '', 'JSON']))}\n{text}\n```"
    if flaw == "huge_value":
        return json.dumps({**arguments, key: value + (draw(any_text) or "x") * 500}, ensure_ascii=False)
    return text


def _arguments_text(call: ToolCall, flaws: list[str]) -> st.SearchStrategy[str]:
    """The arguments text of `call` with the first argument flaw among `flaws` applied (intact if none)."""
    chosen = [flaw for flaw in flaws if flaw in _ARGUMENT_FLAWS]
    if not chosen:
        return st.just(json.dumps(call.arguments, ensure_ascii=False))
    return _malformed_arguments(call, chosen[0])


def _duplicated(name: str, draw: st.DrawFn) -> str:
    return draw(st.sampled_from([name + name, f"{name} {name}", f"{name}_{name}", name.upper()]))


@st.composite
def _malformed_text_call(draw: st.DrawFn, tool_format: str, call: ToolCall) -> str:
    """One `mcp_xml` or `hermes` action built from `call` with one or two real malformations."""
    flaws = draw(st.lists(st.sampled_from(MALFORMATIONS), min_size=1, max_size=2, unique=True))
    name = _duplicated(call.name, draw) if "duplicated_name" in flaws else call.name
    arg_text = draw(_arguments_text(call, flaws))
    if tool_format == "mcp_xml":
        parts = [
            "<use_mcp_tool>\n",
            f"<server_name>{call.server}</server_name>\n",
            f"<tool_name>{name}</tool_name>\n",
            f"<arguments>\n{arg_text}\n</arguments>\n",
            "</use_mcp_tool>",
        ]
    else:
        parts = ["<tool_call>\n", f'{{"name": "{name}", "arguments": {arg_text}}}\n', "</tool_call>"]
    if "unclosed_tag" in flaws:
        closing = [i for i, part in enumerate(parts) if "</" in part]
        index = draw(st.sampled_from(closing))
        parts[index] = parts[index][: parts[index].rfind("</")]
    if "nested_call" in flaws:
        inner = "".join(parts)
        parts.insert(draw(st.integers(min_value=1, max_value=len(parts) - 1)), inner)
    block = "".join(parts)
    if "fenced_call" in flaws:
        block = f"```{draw(st.sampled_from(['xml', '', 'json']))}\n{block}\n```"
    if "thought_around" in flaws:
        block = draw(
            st.sampled_from(
                [f"<think>\n{block}\n</think>", f"<think>\nlet me search\n{block}", f"</think>\n{block}"]
            )
        )
    if "noise_around" in flaws:
        block = f"{draw(any_text)}{block}{draw(st.one_of(any_text, st.sampled_from(TAGS)))}"
    return block


@st.composite
def _malformed_message(draw: st.DrawFn, call: ToolCall) -> dict[str, Any]:
    """An OpenAI assistant message dict whose `tool_calls` carry real malformations and arbitrary strings."""
    flaws = draw(st.lists(st.sampled_from(MALFORMATIONS), min_size=1, max_size=2, unique=True))
    name = _duplicated(call.name, draw) if "duplicated_name" in flaws else call.name
    arguments = draw(st.one_of(_arguments_text(call, flaws), any_text, tag_soup))
    entry: Any = {
        "id": draw(st.one_of(identifiers, any_text)),
        "type": "function",
        "function": {"name": draw(st.one_of(st.just(name), any_text)), "arguments": arguments},
    }
    entries = draw(st.lists(st.one_of(st.just(entry), odd_values), min_size=1, max_size=3))
    return {"role": "assistant", "content": draw(st.one_of(st.none(), any_text)), "tool_calls": entries}


def malformed_actions(
    tool_format: str, seeds: list[ToolCall] | None = None
) -> st.SearchStrategy[str | dict[str, Any]]:
    """Actions in `tool_format` built from real-looking calls (`seeds`, default `REAL_SEED_CALLS`) damaged the
    way models really damage them (`MALFORMATIONS`: duplicated names such as `google_searchgoogle_search`,
    concatenated JSON objects, raw control characters, unescaped quotes, JSON escapes of lone surrogates and
    NUL, truncation, unclosed tags, code fences, nested calls), plus text from every code point. Their outcome
    is not predicted: what holds for all of them is that `step()` answers and the episode goes on."""
    _check_format(tool_format)
    calls = st.sampled_from(list(seeds or REAL_SEED_CALLS))
    if tool_format == "openai":
        return st.one_of(calls.flatmap(_malformed_message), any_text, odd_messages)
    return st.one_of(calls.flatmap(lambda call: _malformed_text_call(tool_format, call)), any_text)
