"""The MiroThinker v1.0 profile reproduces MiroThinker's prompt, tool listing and schemas."""

from __future__ import annotations

import pytest

from miroenv.protocol.prompts import render_mirothinker_system_prompt
from miroenv.protocol.registry import get_format
from miroenv.tools.profiles import get_profile, minimal, mirothinker_v1

# The `Input JSON schema:` lines MiroThinker v1.0's prompt shows (FastMCP listings printed as Python dicts),
# as rendered by its release with the library versions it pinned.
EXPECTED_SCHEMAS = {
    "create_sandbox": ("{'properties': {'timeout': {'default': 600, 'title': 'Timeout'}}, 'type': 'object'}"),
    "run_command": (
        "{'properties': {'command': {'title': 'Command', 'type': 'string'}, 'sandbox_id': {'title': 'Sandbox Id', 'type': 'string'}}, 'required': ['command', 'sandbox_id'], 'type': 'object'}"
    ),
    "run_python_code": (
        "{'properties': {'code_block': {'title': 'Code Block', 'type': 'string'}, 'sandbox_id': {'title': 'Sandbox Id', 'type': 'string'}}, 'required': ['code_block', 'sandbox_id'], 'type': 'object'}"
    ),
    "upload_file_from_local_to_sandbox": (
        "{'properties': {'sandbox_id': {'title': 'Sandbox Id', 'type': 'string'}, 'local_file_path': {'title': 'Local File Path', 'type': 'string'}, 'sandbox_file_path': {'default': '/home/user', 'title': 'Sandbox File Path', 'type': 'string'}}, 'required': ['sandbox_id', 'local_file_path'], 'type': 'object'}"
    ),
    "download_file_from_internet_to_sandbox": (
        "{'properties': {'sandbox_id': {'title': 'Sandbox Id', 'type': 'string'}, 'url': {'title': 'Url', 'type': 'string'}, 'sandbox_file_path': {'default': '/home/user', 'title': 'Sandbox File Path', 'type': 'string'}}, 'required': ['sandbox_id', 'url'], 'type': 'object'}"
    ),
    "download_file_from_sandbox_to_local": (
        "{'properties': {'sandbox_id': {'title': 'Sandbox Id', 'type': 'string'}, 'sandbox_file_path': {'title': 'Sandbox File Path', 'type': 'string'}, 'local_filename': {'default': None, 'title': 'Local Filename', 'type': 'string'}}, 'required': ['sandbox_id', 'sandbox_file_path'], 'type': 'object'}"
    ),
    "google_search": (
        "{'properties': {'q': {'title': 'Q', 'type': 'string'}, 'gl': {'default': 'us', 'title': 'Gl', 'type': 'string'}, 'hl': {'default': 'en', 'title': 'Hl', 'type': 'string'}, 'location': {'default': None, 'title': 'Location', 'type': 'string'}, 'num': {'default': None, 'title': 'Num', 'type': 'integer'}, 'tbs': {'default': None, 'title': 'Tbs', 'type': 'string'}, 'page': {'default': None, 'title': 'Page', 'type': 'integer'}, 'autocorrect': {'default': None, 'title': 'Autocorrect', 'type': 'boolean'}}, 'required': ['q'], 'title': 'google_searchArguments', 'type': 'object'}"
    ),
    "scrape_and_extract_info": (
        "{'properties': {'url': {'title': 'Url', 'type': 'string'}, 'info_to_extract': {'title': 'Info To Extract', 'type': 'string'}, 'custom_headers': {'additionalProperties': {'type': 'string'}, 'default': None, 'title': 'Custom Headers', 'type': 'object'}}, 'required': ['url', 'info_to_extract'], 'title': 'scrape_and_extract_infoArguments', 'type': 'object'}"
    ),
}


def test_servers_and_tools_in_mirothinker_order() -> None:
    specs = mirothinker_v1().specs()
    assert [(s.server, s.name) for s in specs] == [
        ("tool-python", "create_sandbox"),
        ("tool-python", "run_command"),
        ("tool-python", "run_python_code"),
        ("tool-python", "upload_file_from_local_to_sandbox"),
        ("tool-python", "download_file_from_internet_to_sandbox"),
        ("tool-python", "download_file_from_sandbox_to_local"),
        ("search_and_scrape_webpage", "google_search"),
        ("jina_scrape_llm_summary", "scrape_and_extract_info"),
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEMAS))
def test_schema_renders_exactly_as_mirothinker(name: str) -> None:
    (spec,) = [s for s in mirothinker_v1().specs() if s.name == name]
    assert str(spec.input_schema) == EXPECTED_SCHEMAS[name]


def test_system_prompt_layout_and_whitespace() -> None:
    prompt = render_mirothinker_system_prompt(mirothinker_v1().specs(), "2025-11-13")
    assert prompt.startswith(
        "In this environment you have access to a set of tools you can use to answer the user's question. \n\n"
    )
    assert "Today is: 2025-11-13\n\n# Tool-Use Formatting Instructions \n\n" in prompt
    assert "\nDescription: \nRequest to use a tool provided by a MCP server." in prompt
    assert '"param2": "value2 \\"escaped string\\""\n}\n</arguments>' in prompt
    assert (
        "Here are the functions available in JSONSchema format:\n\n\n## Server name: tool-python\n" in prompt
    )
    assert (
        "\n## Server name: search_and_scrape_webpage\n### Tool name: google_search\nDescription: \n    Tool"
        in prompt
    )
    assert (
        "        Dictionary containing search results and metadata.\n    \nInput JSON schema: {'properties'"
        in prompt
    )
    assert prompt.endswith(
        "\n\n# General Objective\n\nYou accomplish a given task iteratively, breaking it down into clear steps and "
        "working through them methodically.\n\n# Agent Specific Objective\n\nYou are a task-solving agent that uses "
        "tools step-by-step to answer the user's question. Your goal is to provide complete, accurate and "
        "well-reasoned answers using additional tools."
    )
    for name, schema in EXPECTED_SCHEMAS.items():
        assert f"### Tool name: {name}\n" in prompt
        assert f"Input JSON schema: {schema}\n" in prompt


def test_task_message_and_summary_prompt() -> None:
    from miroenv.tasks import Task

    profile = mirothinker_v1()
    task = Task(task_id="t", question="What is X?")
    assert profile.task_message(task) == (
        "What is X?\nYou should follow the format instruction in the request strictly and wrap the final answer "
        "in \\boxed{}."
    )
    summary = profile.summary_message(task)
    assert summary.startswith(
        "Summarize the above conversation, and output the FINAL ANSWER to the original question."
    )
    assert '\n\n"What is X?"\n\nWrap your final answer in \\boxed{}.\n' in summary
    assert summary.endswith("Do NOT include any invisible or non-printable characters in the answer output.")


def test_other_formats_get_a_generic_prompt_with_their_tool_section() -> None:
    profile = mirothinker_v1()
    hermes = profile.system_prompt("2024-01-01", get_format("hermes"))
    assert "Today is: 2024-01-01" in hermes and "<tool_call>" in hermes and "<use_mcp_tool>" not in hermes


def test_minimal_profile_and_unknown_profile() -> None:
    profile = minimal()
    assert profile.tool_format == "hermes" and not profile.summary_turn and profile.keep_tool_results == -1
    assert {s.name for s in profile.specs()} >= {"google_search", "scrape", "run_python_code"}
    with pytest.raises(ValueError, match="minimal, mirothinker_v1"):
        get_profile("nope")
