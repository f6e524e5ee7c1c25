"""The CLI reference page, generated from the Typer app itself so the docs never drift from `--help`."""

from __future__ import annotations

import typer
from typer.cli import get_docs_for_click

from miroenv.cli.app import app


def cli_reference_markdown(program: str = "miroenv") -> str:
    """Markdown for every command and option of the `miroenv` CLI, as `typer ... utils docs` renders it."""
    command = typer.main.get_command(app)
    context = typer.Context(command, info_name=program)
    body = get_docs_for_click(obj=command, ctx=context, name=program, title="Command-line reference")
    note = (
        "This page is generated from the command-line interface itself when the documentation is built; "
        "`miroenv COMMAND --help` prints the same text.\n\n"
    )
    title, _, rest = body.partition("\n\n")
    return f"{title}\n\n{note}{rest.strip()}\n"
