"""`miroenv score` (re-score trajectories without re-running tools) and `miroenv view` (an HTML report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from miroenv.cli.app import app, console
from miroenv.rewards.base import REWARD_NAMES, Reward, get_reward
from miroenv.rewards.judge import JUDGE_TEMPLATES, JudgeReward, default_cache_dir
from miroenv.scoring import ScoreReport, score_trajectories
from miroenv.viewer import MAX_CHARS, write_report

errors = Console(stderr=True, highlight=False)

SCORE_REWARDS: tuple[str, ...] = (*REWARD_NAMES, "judge")


def _fail(message: str) -> typer.Exit:
    errors.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(2)


def _build_reward(
    name: str,
    *,
    template: str,
    base_url: str | None,
    model: str | None,
    cache_dir: Path | None,
    no_cache: bool,
    structured: bool,
) -> Reward:
    if name not in SCORE_REWARDS:
        raise _fail(f"unknown reward {name!r}; valid choices: {', '.join(SCORE_REWARDS)}")
    if name != "judge":
        return get_reward(name)
    if template not in JUDGE_TEMPLATES:
        raise _fail(
            f"unknown judge template {template!r}; valid choices: {', '.join(sorted(JUDGE_TEMPLATES))}"
        )
    try:
        return JudgeReward(
            model,
            template=template,
            base_url=base_url,
            cache_dir=None if no_cache else (cache_dir or default_cache_dir()),
            structured=structured,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc


def _table(report: ScoreReport) -> Table:
    many_files = len({row.path for row in report.rows}) > 1
    table = Table(title=f"Re-scored with {report.reward}")
    for column in ("#", "task", "answer", "gold", "reward", "stored", "tool calls", "errors f/t/i"):
        table.add_column(
            column, justify="right" if column in {"#", "reward", "stored", "tool calls"} else "left"
        )
    for row in report.rows:
        where = f"{Path(row.path).name}:{row.episode + 1}" if many_files else str(row.episode + 1)
        stored = "—" if row.stored_reward is None else f"{row.stored_reward:.2f}"
        if row.reproduced is False:
            stored = f"[red]{stored}[/]"
        answer = "[dim](none)[/]" if row.answer is None else escape(row.answer)
        table.add_row(
            escape(where),
            escape(row.task_id),
            answer,
            escape(row.gold or ""),
            f"{row.reward:.2f}",
            stored,
            str(row.tool_calls),
            f"{row.errors.get('format', 0)}/{row.errors.get('tool', 0)}/{row.errors.get('infra', 0)}",
        )
    s = report.summary
    table.caption = (
        f"accuracy {s.accuracy:.3f} (reward ≥ {s.success_threshold:g}) · mean reward {s.mean_reward:.3f} · "
        f"mean tool calls {s.mean_tool_calls:.2f} · {s.episodes} episodes ({s.complete} complete)"
    )
    return table


@app.command()
def score(
    trajectories: Annotated[list[Path], typer.Argument(help="Trajectory files (JSONL).")],
    reward: Annotated[str, typer.Option(help="gaia | f1 | em | contains | judge")] = "gaia",
    judge_template: Annotated[str, typer.Option(help="Judge prompt: browsecomp | hle.")] = "browsecomp",
    base_url: Annotated[
        str | None,
        typer.Option(help="Judge endpoint, OpenAI-compatible .../v1 (default $MIROENV_JUDGE_BASE_URL)."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Judge model (default $MIROENV_JUDGE_MODEL).")] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Judge verdict cache (default $MIROENV_JUDGE_CACHE or ~/.cache/miroenv/judge)."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use the on-disk verdict cache.")
    ] = False,
    structured: Annotated[
        bool, typer.Option(help="Ask the judge for JSON-schema structured output (as HLE's script does).")
    ] = False,
    workers: Annotated[int, typer.Option(min=1, help="Judge requests in flight at once.")] = 4,
    write: Annotated[
        bool, typer.Option("--write/--no-write", help="Store new judge verdicts in the trajectory files.")
    ] = True,
    threshold: Annotated[float, typer.Option(help="Reward counted as a success for accuracy.")] = 1.0,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a reward differs from the one stored at run time.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Re-score trajectories under a reward without re-running tools; judge verdicts are stored and reused."""
    scorer = _build_reward(
        reward,
        template=judge_template,
        base_url=base_url,
        model=model,
        cache_dir=cache_dir,
        no_cache=no_cache,
        structured=structured,
    )
    try:
        report = score_trajectories(
            trajectories, scorer, write_back=write, success_threshold=threshold, workers=workers
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from exc
    finally:
        if isinstance(scorer, JudgeReward):
            scorer.close()
    mismatched = report.summary.compared - report.summary.reproduced
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        console.print(_table(report))
        s = report.summary
        console.print(f"errors by kind: {', '.join(f'{k} {v}' for k, v in s.errors.items())}")
        if s.compared:
            style = "green" if not mismatched else "red"
            console.print(
                f"[{style}]{s.reproduced}/{s.compared} rewards reproduce the ones stored at run time[/]"
            )
        if isinstance(scorer, JudgeReward):
            console.print(f"judge requests: {s.judge_requests}")
        for path in report.written:
            console.print(f"judge verdicts stored in {escape(path)}")
    if check and mismatched:
        raise typer.Exit(1)


@app.command()
def view(
    trajectories: Annotated[list[Path], typer.Argument(help="Trajectory files (JSONL).")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")] = Path("report.html"),
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
    max_chars: Annotated[int, typer.Option(min=1, help="Longest text block shown in full.")] = MAX_CHARS,
) -> None:
    """Write one self-contained HTML report: a timeline per episode and a summary table with a chart."""
    try:
        path = write_report(trajectories, out, title=title, max_chars=max_chars)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"report written to {escape(str(path))} ({path.stat().st_size:,} bytes)")
