"""The generated CLI reference documents every command and option the CLI has."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from miroenv.cli import app
from miroenv.cli.reference import cli_reference_markdown


def _commands(group: TyperGroup, prefix: str) -> list[tuple[str, Any]]:
    """Every command under `group`, depth first, with its full invocation path."""
    found: list[tuple[str, Any]] = []
    context = typer.Context(group)
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        found.append((f"{prefix} {name}", command))
        if isinstance(command, TyperGroup):
            found.extend(_commands(command, f"{prefix} {name}"))
    return found


def test_reference_has_every_command_and_option() -> None:
    page = cli_reference_markdown()
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    commands = _commands(root, "miroenv")
    assert len(commands) >= 15
    for path, command in commands:
        assert f"## `{path}`" in page, path
        section = page.split(f"## `{path}`", 1)[1].split("\n## ", 1)[0]
        for parameter in command.params:
            if parameter.param_type_name == "option" and not getattr(parameter, "hidden", False):
                assert parameter.opts[0] in section, (path, parameter.opts[0])


def test_reference_starts_with_title_and_provenance() -> None:
    page = cli_reference_markdown()
    assert page.startswith("# Command-line reference\n\nThis page is generated")
    assert "$ miroenv [OPTIONS] COMMAND [ARGS]..." in page
