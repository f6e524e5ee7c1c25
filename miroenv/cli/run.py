"""`miroenv demo` and `miroenv run`: recorded actions played through the real env, trajectories written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from miroenv.cli.app import app, console
from miroenv.demo import demo_snapshot
from miroenv.env import ResearchEnv
from miroenv.policy import EpisodeResult, ScriptedPolicy, StepView, load_actions, run_episode
from miroenv.sandbox.select import BackendSelection, select_backend
from miroenv.trajectory import RecordTrajectory
from miroenv.web.snapshot import SnapshotError

SANDBOX_HELP = "Backend for the Python tools: auto | docker | process | none."


def _preview(text: str, limit: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _print_step(view: StepView) -> None:
    if view.index == 0:
        return
    info = view.info
    for call in info.get("calls", []):
        name = call["tool"] or "(unparsed call)"
        args = json.dumps(call["arguments"], ensure_ascii=False)
        style = {"format": "yellow", "tool": "magenta", "infra": "red"}.get(
            call.get("error_kind") or "", "green"
        )
        kind = f" [{call['error_kind']} error]" if call.get("error_kind") else ""
        console.print(f"  [{style}]→ {escape(name)}{kind}[/] {escape(_preview(args, 120))}")
        console.print(f"    [dim]{escape(_preview(call['text']))}[/]")
    if not info.get("calls"):
        if info.get("phase") == "summary":
            console.print("  [cyan]↳ final reply; summary prompt sent[/]")
        elif view.terminated or view.truncated:
            console.print(f"  [cyan]↳ answer:[/] {escape(str(info.get('answer')))}")


def _run_tasks(
    env: ResearchEnv, scripts: dict[str, list[Any]], out: Path, *, verbose: bool
) -> list[EpisodeResult]:
    recorder = RecordTrajectory(env, out)
    results: list[EpisodeResult] = []
    task_ids = [t.task_id for t in env.tasks if t.task_id in scripts]
    missing = [t.task_id for t in env.tasks if t.task_id not in scripts]
    if missing:
        console.print(f"[yellow]no recorded actions for: {', '.join(missing)} (skipped)[/]")
    try:
        for number, task_id in enumerate(task_ids, start=1):
            task = env.get_task(task_id)
            console.rule(f"[bold]episode {number}/{len(task_ids)}: {escape(task_id)}")
            console.print(f"[bold]Q:[/] {escape(task.question)}")
            result = run_episode(
                recorder,
                ScriptedPolicy(scripts[task_id]),
                task_id=task_id,
                seed=number,
                on_step=_print_step if verbose else None,
            )
            status = "terminated" if result.terminated else "truncated"
            console.print(
                f"[bold]episode {number}/{len(task_ids)} done[/]: {result.steps} steps, {result.tool_calls} tool "
                f"calls, {status}, answer={escape(repr(result.answer))}, reward={result.reward:.2f}"
            )
            results.append(result)
    finally:
        recorder.close()
    return results


def _summary_table(results: list[EpisodeResult], env: ResearchEnv) -> Table:
    table = Table(title="Results")
    for column in ("task", "answer", "gold", "reward", "steps", "tool calls", "errors f/t/i"):
        table.add_column(column)
    for r in results:
        gold = env.get_task(r.task_id).answer or ""
        errors = f"{r.errors['format']}/{r.errors['tool']}/{r.errors['infra']}"
        table.add_row(
            r.task_id, str(r.answer), gold, f"{r.reward:.2f}", str(r.steps), str(r.tool_calls), errors
        )
    mean = sum(r.reward for r in results) / len(results) if results else 0.0
    table.caption = f"mean reward {mean:.3f} over {len(results)} episodes"
    return table


def _demo_backend(kind: str) -> BackendSelection:
    """The demo's sandbox: as `select_backend` picks it, except that ``auto`` with no isolated sandbox to be had
    runs the demo without code execution (saying why) instead of refusing, so the demo runs on any machine."""
    from miroenv.sandbox.base import NoSandboxBackend, SandboxUnavailableError

    try:
        return select_backend(kind)
    except SandboxUnavailableError as exc:
        if kind != "auto":
            raise
        reason = f"no isolated sandbox here, so code execution is off (its calls report infra errors): {exc}"
        console.print(f"[yellow]note:[/] {escape(reason)}")
        return BackendSelection(NoSandboxBackend(reason), "none", reason)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the trajectories (JSONL).")] = Path(
        "runs/demo-trajectories.jsonl"
    ),
    snapshot: Annotated[
        Path | None, typer.Option(help="Demo snapshot directory (default: snapshots/demo, else built fresh).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Only print the per-episode lines and the table.")] = False,
    sandbox: Annotated[str, typer.Option(help=SANDBOX_HELP)] = "auto",
) -> None:
    """Run the bundled demo: five research tasks (one computed in a sandbox) solved by a scripted policy."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with demo_snapshot(snapshot) as path:
        selection = _demo_backend(sandbox)
        env = ResearchEnv(path, path / "tasks.jsonl", sandbox=selection.backend)
        console.print(
            f"snapshot [bold]{escape(env.web.name)}[/] ({escape(env.web.content_hash[:19])}…), "
            f"profile {env.profile.name}, format {env.format.name}\n{escape(str(selection))}"
        )
        try:
            results = _run_tasks(env, load_actions(path / "actions.jsonl"), out, verbose=not quiet)
        finally:
            env.close()
            selection.backend.close()
    console.print(_summary_table(results, env))
    for r in results:
        console.print(f"reward {r.task_id}: {r.reward:.2f}")
    console.print(f"trajectories written to {out}")


@app.command()
def run(
    snapshot: Annotated[Path, typer.Option(help="Snapshot directory.")],
    tasks: Annotated[Path, typer.Option(help="Tasks JSONL.")],
    actions: Annotated[Path, typer.Option(help="Actions JSONL: {task_id, actions: [...]} per line.")],
    out: Annotated[Path, typer.Option(help="Trajectory file to write (JSONL).")],
    profile: Annotated[str, typer.Option(help="Tool profile.")] = "mirothinker_v1",
    tool_format: Annotated[str | None, typer.Option("--format", help="mcp_xml | hermes | openai")] = None,
    reward: Annotated[str, typer.Option(help="gaia | em | f1 | contains")] = "gaia",
    verbose: Annotated[bool, typer.Option(help="Show every tool call.")] = False,
    sandbox: Annotated[str, typer.Option(help=SANDBOX_HELP)] = "auto",
) -> None:
    """Run recorded actions against a snapshot and write the trajectories."""
    try:
        env = ResearchEnv(
            snapshot, tasks, reward=reward, profile=profile, tool_format=tool_format, sandbox=sandbox
        )
        scripts = load_actions(actions)
    except (SnapshotError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = _run_tasks(env, scripts, out, verbose=verbose)
    finally:
        env.close()
    console.print(_summary_table(results, env))
    console.print(f"trajectories written to {out}")
