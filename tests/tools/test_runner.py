"""`run_call`, the one path every door (env step, MCP server, eval) runs tool calls through."""

from __future__ import annotations

from pathlib import Path

import pytest

from miroenv.tools.standalone import run_tool_once
from miroenv.web.snapshot import Snapshot


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("google_search", {"q": "Ada\ud800Lovelace"}, "'q' holds a lone surrogate (U+D800) at position 3"),
        ("google_search", {"q": "Ada\x00"}, "'q' holds a NUL character (U+0000) at position 3"),
        (
            "scrape_and_extract_info",
            {"url": "https://en.wikipedia.org/wiki/\udfff", "info_to_extract": "date"},
            "'url' holds a lone surrogate (U+DFFF)",
        ),
        ("google_search", {"q": "ok", "location": {"\ud83d": 1}}, "a key of location"),
    ],
)
def test_unusable_code_points_in_arguments_are_a_format_outcome_naming_the_value(
    demo_dir: Path, tool: str, arguments: dict[str, object], named: str
) -> None:
    outcome = run_tool_once(Snapshot(demo_dir), tool, arguments)
    assert outcome.error_kind == "format"
    assert named in outcome.text
    outcome.text.encode("utf-8")  # the observation itself is always encodable


def test_control_characters_other_than_nul_reach_the_tool(demo_dir: Path) -> None:
    outcome = run_tool_once(Snapshot(demo_dir), "google_search", {"q": "Ada \x01 Lovelace"})
    assert outcome.error_kind is None and '"organic"' in outcome.text
