"""Import miroenv's own trajectories (a run recorded live, or against another snapshot) into a snapshot of
their tool results, so they replay offline with the profile they were recorded with.

A call whose every occurrence got the same result is recorded for exactly that call. A call that got different
results (a repeated `google_search` refused the second time) is not: the profile's own tools answer it, from
the search responses recorded here, so stateful behaviour such as the repeat refusal replays as it happened.
Format problems and infra errors are not web content and are not recorded; neither are the sandbox tools'
results (they come from running code, not from the web).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from miroenv.logs.episode import (
    SNAPSHOT_DIR,
    TASKS_FILE,
    TRAJECTORIES_FILE,
    ImportSummary,
    SnapshotRecorder,
)
from miroenv.logs.prompt import prompt_date
from miroenv.protocol.calls import ToolCall
from miroenv.tasks import Task, save_tasks
from miroenv.tools.python import (
    CreateSandbox,
    DownloadFileFromInternetToSandbox,
    DownloadFileFromSandboxToLocal,
    RunCommand,
    RunPythonCode,
    UploadFileFromLocalToSandbox,
)
from miroenv.trajectory import Trajectory, TrajectoryWriter, iter_trajectories
from miroenv.web.snapshot import SnapshotWriter

SANDBOX_TOOLS: frozenset[str] = frozenset(
    cls.name
    for cls in (
        CreateSandbox,
        RunCommand,
        RunPythonCode,
        UploadFileFromLocalToSandbox,
        DownloadFileFromInternetToSandbox,
        DownloadFileFromSandboxToLocal,
    )
)
"""Tools whose results are not recorded by default."""


def _pinned_task(trajectory: Trajectory) -> Task:
    """The header's task, its date pinned to the prompt's `Today is:` date when the task left it open."""
    task = Task.model_validate(trajectory.header.env["task"])
    if task.date is None:
        date = prompt_date(trajectory.header.observation)
        if date is not None:
            task = task.model_copy(update={"date": date})
    return task


def import_ours(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    name: str | None = None,
    skip_tools: Collection[str] = SANDBOX_TOOLS,
) -> ImportSummary:
    """Record the tool results of miroenv trajectory files into `out/snapshot/` and copy the trajectories
    (pointing at that snapshot, prompt dates pinned) to `out/trajectories.jsonl`."""
    out = Path(out)
    snapshot_dir = out / SNAPSHOT_DIR
    trajectories_path = out / TRAJECTORIES_FILE
    summary = ImportSummary(
        format="ours", out=str(out), snapshot=str(snapshot_dir), trajectories=str(trajectories_path)
    )
    episodes: list[tuple[str, Trajectory, Task]] = []
    recorder = SnapshotRecorder(per_occurrence=False)
    for source in sources:
        for position, trajectory in enumerate(iter_trajectories(source), start=1):
            task = _pinned_task(trajectory)
            episodes.append((f"{source}#{position}", trajectory, task))
            for step in trajectory.steps:
                for call in step.calls:
                    tool = call.get("tool")
                    kind = call.get("error_kind")
                    if not tool or kind in ("format", "infra") or tool in skip_tools:
                        continue
                    arguments = call.get("arguments")
                    recorder.add(
                        trajectory.header.episode_id,
                        ToolCall(
                            server=call.get("server"),
                            name=str(tool),
                            arguments=arguments if isinstance(arguments, dict) else {},
                        ),
                        str(call.get("text", "")),
                        "tool" if kind == "tool" else None,
                    )
    dates = sorted(t.date for _, _, t in episodes if t.date)
    if not dates:
        raise ValueError("the trajectories name no prompt date; cannot choose the snapshot's capture date")
    tasks: dict[str, Task] = {}
    for _, _, task in episodes:
        tasks.setdefault(task.task_id, task)
    trajectories_path.unlink(missing_ok=True)
    with SnapshotWriter(
        snapshot_dir,
        name=name or "ours-import",
        capture_date=dates[0],
        description=f"Tool results of {len(episodes)} miroenv trajectories.",
        overwrite=True,
    ) as writer:
        recorder.write(writer, summary, f"{dates[0]}T00:00:00+00:00")
        manifest = writer.finalize()
    save_tasks(tasks.values(), snapshot_dir / TASKS_FILE)
    writer_out = TrajectoryWriter(trajectories_path)
    try:
        for where, trajectory, task in episodes:
            env: dict[str, Any] = dict(trajectory.header.env)
            env["task"] = task.model_dump()
            env["snapshot"] = {"name": manifest.name, "content_hash": manifest.content_hash}
            header = trajectory.header.model_copy(
                update={
                    "env": env,
                    "source": {
                        "format": "ours",
                        "file": where,
                        "snapshot": trajectory.header.env.get("snapshot"),
                    },
                }
            )
            writer_out.write(header)
            for step in trajectory.steps:
                writer_out.write(step)
            if trajectory.footer is not None:
                writer_out.write(trajectory.footer)
    finally:
        writer_out.close()
    summary.episodes = len(episodes)
    summary.steps = sum(len(t.steps) for _, t, _ in episodes)
    summary.tool_calls = sum(1 for _, t, _ in episodes for s in t.steps for c in s.calls if c.get("tool"))
    return summary
