"""`miroenv trajectories import` and `miroenv replay`: turn agent logs into trajectories plus a snapshot, and
re-run trajectories to check that every observation comes back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from miroenv.cli.app import app, console
from miroenv.logs import IMPORTERS, ImportSummary
from miroenv.replay import ReplayReport, TrajectoryReplay, replay_files, report_json
from miroenv.sandbox.select import make_backend
from miroenv.web.snapshot import SnapshotError

trajectories_app = typer.Typer(
    help="Import agent logs (MiroRL, MiroFlow, miroenv) as trajectories plus a snapshot.",
    no_args_is_help=True,
)
app.add_typer(trajectories_app, name="trajectories")


def _print_import(summary: ImportSummary) -> None:
    """What an import wrote, in a few lines."""
    console.print(
        f"imported {summary.episodes} {summary.format} episodes: {summary.steps} steps, "
        f"{summary.tool_calls} tool calls"
    )
    console.print(
        f"snapshot {escape(summary.snapshot)}: {summary.tool_results} results recorded per call, "
        f"{summary.occurrence_results} per occurrence, {summary.searches} searches, {summary.pages} pages"
    )
    if summary.unrecorded:
        console.print(f"[yellow]{summary.unrecorded} observations are not in the logs (not compared)[/]")
    for profile in summary.profiles:
        console.print(f"recorded profile {escape(profile)}")
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(f"trajectories written to {escape(summary.trajectories)}")


@trajectories_app.command("import")
def import_logs(
    log_format: Annotated[str, typer.Argument(metavar="FORMAT", help="mirorl | miroflow | ours")],
    sources: Annotated[list[Path], typer.Argument(help="Log files (or directories of MiroFlow logs).")],
    out: Annotated[Path, typer.Option(help="Output directory: snapshot/ and trajectories.jsonl.")],
    name: Annotated[str | None, typer.Option(help="Snapshot name (default: <format>-import).")] = None,
    reward: Annotated[
        str, typer.Option(help="Reward scored into imported logs' footers (mirorl, miroflow).")
    ] = "gaia",
    as_json: Annotated[bool, typer.Option("--json", help="Print the import summary as JSON.")] = False,
) -> None:
    """Import agent logs: trajectories in miroenv's format plus a snapshot of every tool result they saw."""
    importer = IMPORTERS.get(log_format)
    if importer is None:
        console.print(f"[red]error:[/] unknown format {escape(log_format)!r}; choose {', '.join(IMPORTERS)}")
        raise typer.Exit(2)
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        console.print(f"[red]error:[/] no such file: {escape(', '.join(missing))}")
        raise typer.Exit(2)
    try:
        options: dict[str, str | None] = {"name": name}
        if log_format != "ours":
            options["reward"] = reward
        summary = importer(sources, out, **options)
    except (ValueError, OSError, SnapshotError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(summary.model_dump_json(indent=2))
    else:
        _print_import(summary)


def _describe(result: TrajectoryReplay) -> str:
    """One status line per replayed trajectory."""
    where = f"{result.file}#{result.position}"
    tools = f"{result.identical_tool_observations}/{result.tool_observations} tool observations identical"
    answer = {True: "answer matches", False: "answer differs", None: "answer not recorded"}[
        result.answer_match
    ]
    reward = {True: "reward matches", False: "reward differs", None: "reward not compared"}[
        result.reward_match
    ]
    line = f"{escape(where)} {escape(result.task_id)}: {result.steps} steps, {tools}, {answer}, {reward}"
    if result.identical:
        return f"[green]identical[/] {line}"
    steps = ", ".join(str(i) for i in result.differing_steps) or "none"
    return f"[red]differs[/]   {line}; differing steps: {steps}"


def _print_report(report: ReplayReport) -> None:
    """Status lines, diffs of what differs, and the totals."""
    for result in report.trajectories:
        console.print(_describe(result))
        if not result.identical:
            if result.answer_match is False:
                console.print(
                    f"    answer: recorded {escape(repr(result.answer))}, replayed {escape(repr(result.replayed_answer))}"
                )
            if result.reward_match is False:
                console.print(f"    reward: recorded {result.reward}, replayed {result.replayed_reward}")
            if result.first_difference:
                console.print(escape(result.first_difference.rstrip("\n")), soft_wrap=True)
        for note in result.notes:
            console.print(f"    [dim]note: {escape(note)}[/]")
    totals = report.totals
    console.print(
        f"{totals['identical_trajectories']}/{totals['trajectories']} trajectories identical; "
        f"{totals['identical_tool_observations']}/{totals['tool_observations']} tool observations identical; "
        f"{totals['differing_steps']} differing steps, {totals['answer_mismatches']} answer and "
        f"{totals['reward_mismatches']} reward mismatches"
    )


@app.command()
def replay(
    trajectories: Annotated[list[Path], typer.Argument(help="Trajectory JSONL files.")],
    snapshot: Annotated[Path, typer.Option(help="Snapshot directory (or an import's output directory).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    sandbox: Annotated[
        str, typer.Option(help="Backend for the Python tools: auto | docker | process | none.")
    ] = "auto",
) -> None:
    """Re-run trajectories through the env and report every observation, answer and reward that differs."""
    backend = make_backend(sandbox)
    try:
        report = replay_files(trajectories, snapshot, sandbox=backend)
    except (ValueError, OSError, SnapshotError, json.JSONDecodeError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    finally:
        backend.close()
    if as_json:
        typer.echo(report_json(report))
    else:
        _print_report(report)
    if not report.identical:
        raise typer.Exit(1)
