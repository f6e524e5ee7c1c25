"""The `miroenv` Typer application objects shared by every command module, and the lazy command table.

The groups know every command's name, module and one-line help statically (`ROOT_COMMANDS`,
`SNAPSHOT_COMMANDS`), so `miroenv --help` imports no command module; a command's module is imported when that
command runs or its own `--help` is asked. A command that needs an extra that is not installed raises
`MissingExtraError`, which the root group prints as one line and turns into exit status 2.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from miroenv.extras import MissingExtraError

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives and its one-line help (the first line of its docstring or group help)."""

    module: str
    help: str


ROOT_COMMANDS: dict[str, LazyCommand] = {
    "demo": LazyCommand(
        "miroenv.cli.run",
        "Run the bundled demo: five research tasks (one computed in a sandbox) solved by a scripted policy.",
    ),
    "run": LazyCommand(
        "miroenv.cli.run", "Run recorded actions against a snapshot and write the trajectories."
    ),
    "eval": LazyCommand(
        "miroenv.cli.eval",
        "Evaluate a served model: episodes driven through an OpenAI-compatible endpoint, resumable, with pass@k.",
    ),
    "replay": LazyCommand(
        "miroenv.cli.replay",
        "Re-run trajectories through the env and report every observation, answer and reward that differs.",
    ),
    "score": LazyCommand(
        "miroenv.cli.score",
        "Re-score trajectories under a reward without re-running tools; judge verdicts are stored and reused.",
    ),
    "view": LazyCommand(
        "miroenv.cli.score",
        "Write one self-contained HTML report: a timeline per episode and a summary table with a chart.",
    ),
    "serve-mcp": LazyCommand(
        "miroenv.cli.serve_mcp",
        "Serve the profile's tools over MCP with MiroThinker's server and tool names; one episode per session.",
    ),
    "snapshot": LazyCommand("miroenv.cli.app", "Inspect, build, import and export snapshots."),
    "trajectories": LazyCommand(
        "miroenv.cli.replay", "Import agent logs (MiroRL, MiroFlow, miroenv) as trajectories plus a snapshot."
    ),
    "sandbox": LazyCommand("miroenv.cli.sandbox", "Build and inspect the Docker sandbox image."),
}
"""`miroenv COMMAND`: the module that defines each command and its one-line help, in help order."""

SNAPSHOT_COMMANDS: dict[str, LazyCommand] = {
    "info": LazyCommand("miroenv.cli.snapshot", "Show a snapshot's manifest and check its content hash."),
    "build-demo": LazyCommand(
        "miroenv.cli.snapshot", "(Re)write the bundled demo snapshot, tasks and actions."
    ),
    "search": LazyCommand(
        "miroenv.cli.snapshot",
        "Search a snapshot exactly as the `google_search` tool does (recorded query, else the index).",
    ),
    "get": LazyCommand(
        "miroenv.cli.snapshot",
        "Show a page as the page tools read it (same URL matching, same stored text).",
    ),
    "reindex": LazyCommand(
        "miroenv.cli.snapshot",
        "(Re)build a snapshot's full-text search index from its pages; a killed build keeps the old index.",
    ),
    "import": LazyCommand(
        "miroenv.cli.snapshot_io",
        "Import datasets or web archives into a snapshot; QA formats also write tasks.jsonl into it.",
    ),
    "export": LazyCommand(
        "miroenv.cli.snapshot_io",
        "Export a snapshot's pages, redirects and files as WARC, readable back by `snapshot import warc`.",
    ),
    "record": LazyCommand(
        "miroenv.cli.snapshot_record",
        "Record searches and pages from the live web into a snapshot; what it already holds is not fetched again.",
    ),
}
"""`miroenv snapshot COMMAND`: the module that defines each command and its one-line help, in help order."""


class LazyGroup(TyperGroup):
    """A Typer group that lists its commands from a static table and imports a command's module on first use."""

    lazy: ClassVar[dict[str, LazyCommand]] = {}
    path: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listing = False

    def list_commands(self, ctx: Context) -> list[str]:
        """The table's commands in its order, then any other registered command."""
        return [*self.lazy, *(name for name in super().list_commands(ctx) if name not in self.lazy)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command, its module imported on demand; a help-only stand-in while this group's help prints."""
        command = self.commands.get(cmd_name)
        entry = self.lazy.get(cmd_name)
        if command is not None or entry is None:
            return command
        if self._listing:
            return TyperCommand(cmd_name, help=entry.help)
        importlib.import_module(entry.module)
        built: Command | None = typer.main.get_command(app)
        for name in (*self.path, cmd_name):
            built = built.commands.get(name) if isinstance(built, TyperGroup) else None
        if built is None:
            raise RuntimeError(
                f"{entry.module} does not define the command {' '.join((*self.path, cmd_name))!r}"
            )
        self.commands[cmd_name] = built
        return built

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """This group's help; the command list comes from the table, so no command module is imported."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class RootGroup(LazyGroup):
    """`miroenv`: a missing extra anywhere below becomes one `error:` line and exit status 2."""

    lazy = ROOT_COMMANDS

    def invoke(self, ctx: Context) -> Any:
        """Run the command; `MissingExtraError` and a refused sandbox are reported without a traceback."""
        from miroenv.sandbox.base import SandboxUnavailableError

        try:
            return super().invoke(ctx)
        except (MissingExtraError, SandboxUnavailableError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc


class SnapshotGroup(LazyGroup):
    """`miroenv snapshot`."""

    lazy = SNAPSHOT_COMMANDS
    path = ("snapshot",)


app = typer.Typer(
    help="Deterministic research-agent environments: replayed web, sandboxes, rewards.",
    no_args_is_help=True,
    cls=RootGroup,
)
snapshot_app = typer.Typer(help=ROOT_COMMANDS["snapshot"].help, no_args_is_help=True, cls=SnapshotGroup)
app.add_typer(snapshot_app, name="snapshot")

console = Console(highlight=False)


def load_all_commands() -> None:
    """Import every command module, so the Typer apps hold every command (for the generated reference)."""
    for entry in (*ROOT_COMMANDS.values(), *SNAPSHOT_COMMANDS.values()):
        importlib.import_module(entry.module)


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group below `miroenv`, depth first, as argument tuples (`("snapshot", "import")`)."""
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(group: TyperGroup, prefix: tuple[str, ...]) -> None:
        context = typer.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            found.append((*prefix, name))
            if isinstance(command, TyperGroup):
                walk(command, (*prefix, name))

    if not isinstance(root, TyperGroup):
        raise RuntimeError("the miroenv app is not a command group")
    walk(root, ())
    return found
