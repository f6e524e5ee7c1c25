"""`miroenv eval`: evaluate a model served behind an OpenAI-compatible endpoint on a snapshot's tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from miroenv.cli.app import app, console
from miroenv.evaluation import (
    EndpointUnavailableError,
    EvalConfig,
    EvalError,
    EvalProgress,
    EvalRow,
    EvalSummary,
    evaluate,
)
from miroenv.task_loaders import TASK_LOADERS

stderr = Console(stderr=True, highlight=False)
"""Errors and progress go to stderr, so stdout holds only the summary (JSON with --json)."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    stderr.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _stats(status: EvalProgress) -> str:
    kinds = " ".join(f"{kind} {count}" for kind, count in status.errors.items() if count)
    return (
        f"accuracy {status.accuracy:.3f} · tool calls {status.tool_calls} · errors {kinds or 'none'}"
        if status.done
        else "waiting for the first episode"
    )


class ProgressDisplay:
    """A live rich progress bar on a terminal; one line per finished episode otherwise (logs, CI)."""

    def __init__(self, out: Console) -> None:
        self.console = out
        self.live = out.is_terminal
        self.bar = Progress(
            TextColumn("[bold]eval[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=out,
            disable=not self.live,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def __call__(self, status: EvalProgress, row: EvalRow | None) -> None:
        if self.task is None:
            self.task = self.bar.add_task(
                "eval", total=status.total, completed=status.done, stats=_stats(status)
            )
            if status.resumed:
                self.console.print(f"resuming: {status.resumed} of {status.total} episodes already finished")
        self.bar.update(self.task, completed=status.done, stats=_stats(status))
        if row is None or self.live:
            return
        outcome = (
            f"[red]endpoint error[/]: {escape(row.error)}"
            if row.error is not None
            else f"reward {row.reward:.2f} · {row.tool_calls} tool calls · answer {escape(repr(row.answer))}"
        )
        self.console.print(
            f"[{status.done}/{status.total}] {escape(row.task_id)} run {row.run}: {outcome}", soft_wrap=True
        )


def summary_table(summary: EvalSummary) -> Table:
    """The final summary as a two-column table."""
    table = Table(title=f"{summary.model} on {summary.snapshot} ({summary.reward})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("tasks × runs", f"{summary.tasks} × {summary.runs} ({summary.episodes} episodes)")
    table.add_row(f"accuracy (reward ≥ {summary.success_threshold:g})", f"{summary.accuracy:.3f}")
    table.add_row("mean reward", f"{summary.mean_reward:.3f}")
    for k, value in summary.pass_at_k.items():
        table.add_row(f"pass@{k}", f"{value:.3f}")
    table.add_row("mean tool calls", f"{summary.mean_tool_calls:.2f}")
    for kind, count in summary.errors.items():
        table.add_row(f"{kind} errors", str(count))
    table.add_row(
        "tokens (prompt / completion)", f"{summary.prompt_tokens:,} / {summary.completion_tokens:,}"
    )
    table.add_row("played / resumed", f"{summary.played} / {summary.resumed}")
    table.add_row("requests (with retries)", str(summary.requests))
    return table


OPTION_OF_FIELD = {
    "tool_format": "--format",
    "request_timeout": "--timeout",
    "success_threshold": "--threshold",
}
"""`EvalConfig` fields whose command-line option is not simply the field name with dashes."""


def settings_problems(error: ValidationError) -> str:
    """Each invalid setting as `--option: why` (pydantic's wording without its prefixes), one per line."""
    problems = []
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else ""
        option = OPTION_OF_FIELD.get(name, "--" + name.replace("_", "-"))
        message = str(problem["msg"]).removeprefix("Value error, ")
        problems.append(f"{option}: {message}")
    return "\n".join(problems)


def _extra_body(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--extra-body is not valid JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise _fail("--extra-body must be a JSON object")
    return value


@app.command("eval")
def eval_command(
    base_url: Annotated[str, typer.Option(help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.")],
    model: Annotated[str, typer.Option(help="Model name sent with every request.")],
    snapshot: Annotated[Path, typer.Option(help="Snapshot directory the tools read.")],
    tasks: Annotated[
        Path | None, typer.Option(help="Task file (default: the snapshot's tasks.jsonl).")
    ] = None,
    task_format: Annotated[
        str, typer.Option(help=f"Task file layout: {' | '.join(TASK_LOADERS)}.")
    ] = "jsonl",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N tasks.")] = None,
    out: Annotated[
        Path, typer.Option(help="Output directory; rerunning with it resumes the evaluation.")
    ] = Path("runs/eval"),
    profile: Annotated[
        str, typer.Option(help="Tool profile (prompt, tools, sampling defaults).")
    ] = "mirothinker_v1",
    tool_format: Annotated[
        str | None, typer.Option("--format", help="mcp_xml | hermes | openai (default: the profile's).")
    ] = None,
    reward: Annotated[
        str, typer.Option(help="gaia | f1 | em | contains | judge ($MIROENV_JUDGE_*).")
    ] = "gaia",
    runs: Annotated[
        int, typer.Option(min=1, help="Episodes per task; pass@k is reported for k=1 and k=runs.")
    ] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes in flight at once.")] = 4,
    temperature: Annotated[
        float | None, typer.Option(help="Default: the profile's (MiroThinker: 1.0).")
    ] = None,
    top_p: Annotated[float | None, typer.Option(help="Default: the profile's (MiroThinker: 0.95).")] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="New tokens per reply. Default: the profile's (MiroThinker: 16384)."),
    ] = None,
    extra_body: Annotated[
        str | None, typer.Option(help="More request fields as a JSON object, e.g. '{\"top_k\": 20}'.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar=["MIROENV_EVAL_API_KEY", "OPENAI_API_KEY"],
            show_envvar=True,
            help="Bearer token for the endpoint (never written to the out directory).",
        ),
    ] = None,
    sandbox: Annotated[
        str, typer.Option(help="Backend for the Python tools: auto | docker | process | none.")
    ] = "auto",
    max_tool_calls: Annotated[int | None, typer.Option(min=0, help="Per episode (default 600).")] = None,
    max_turns: Annotated[
        int | None, typer.Option(min=1, help="Model replies per episode (default 600).")
    ] = None,
    retries: Annotated[
        int, typer.Option(min=0, help="Retries per request on 429 / 5xx / connection errors.")
    ] = 5,
    backoff: Annotated[
        float, typer.Option(min=0.0, help="First retry delay in seconds; doubles each retry.")
    ] = 1.0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds per request.")] = 600.0,
    seed: Annotated[int, typer.Option(help="Base of every episode's reset seed.")] = 0,
    threshold: Annotated[float, typer.Option(help="Reward counted as solved.")] = 1.0,
    rerun_failed: Annotated[
        bool,
        typer.Option(
            "--rerun-failed/--keep-failed", help="On resume, play again episodes the endpoint failed."
        ),
    ] = True,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even if the out directory holds a different evaluation.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Evaluate a served model: episodes driven through an OpenAI-compatible endpoint, resumable, with pass@k."""
    try:
        config = EvalConfig(
            base_url=base_url,
            model=model,
            snapshot=snapshot,
            tasks=tasks,
            task_format=task_format,
            limit=limit,
            out=out,
            profile=profile,
            tool_format=tool_format,
            reward=reward,
            runs=runs,
            concurrency=concurrency,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            extra_body=_extra_body(extra_body),
            max_tool_calls=max_tool_calls,
            max_turns=max_turns,
            sandbox=sandbox,
            api_key=api_key,
            retries=retries,
            backoff=backoff,
            request_timeout=timeout,
            seed=seed,
            success_threshold=threshold,
            rerun_failed=rerun_failed,
            force=force,
        )
    except ValidationError as exc:
        raise _fail(settings_problems(exc)) from exc
    try:
        with ProgressDisplay(stderr) as display:
            report = evaluate(config, display)
    except EvalError as exc:
        raise _fail(str(exc)) from exc
    except EndpointUnavailableError as exc:
        raise _fail(f"{exc}. Rows and summary are in {out}; rerun to retry.", code=1) from exc
    except KeyboardInterrupt:
        stderr.print(f"[yellow]interrupted[/]: finished episodes are in {escape(str(out))}; rerun to resume.")
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(report.summary.model_dump_json(indent=2))
        return
    console.print(summary_table(report.summary))
    console.print(
        f"accuracy {report.summary.accuracy:.3f} · results {escape(str(out / 'results.jsonl'))} · "
        f"summary {escape(str(out / 'summary.json'))}",
        soft_wrap=True,
    )
