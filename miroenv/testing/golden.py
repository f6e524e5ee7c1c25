"""Golden trajectories: run a policy, compare the recorded episode with a stored trajectory file, and on a
mismatch fail with the first difference (where, which field, expected and actual, a short text diff).

Fields that change from run to run (durations, timestamps, episode ids, the package version) are ignored by
default; `update=True`, `MIROENV_UPDATE_GOLDEN=1` or pytest's `--miroenv-update-golden` rewrites the file.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import BaseModel

from miroenv.policy import iter_episode
from miroenv.protocol.base import Action
from miroenv.trajectory import RecordTrajectory, Trajectory, read_trajectories

UPDATE_ENV = "MIROENV_UPDATE_GOLDEN"
DEFAULT_IGNORED: frozenset[str] = frozenset(
    {"duration_s", "elapsed_s", "recorded_at", "captured_at", "timestamp", "episode_id", "miroenv_version"}
)
"""Keys ignored at any depth by default: durations, timestamps, episode ids and the package version."""
DIFF_LINES = 12
"""Longest text diff shown in a failure message."""
VALUE_CHARS = 300
"""Longest expected/actual value shown in a failure message."""


class Difference(BaseModel):
    """Where two trajectories first differ."""

    record: str
    """`header`, `step N` or `footer`."""
    field: str
    """The field's path inside the record, e.g. `observation` or `calls[0].text`."""
    expected: Any = None
    actual: Any = None
    missing: str | None = None
    """Set when a record or field is present on one side only: `expected` or `actual` (the side lacking it)."""

    def describe(self) -> str:
        """A readable account: location, both values (shortened) and a diff of the two texts."""
        where = f"{self.record}, field {self.field}" if self.field else self.record
        if self.missing is not None:
            other = "actual" if self.missing == "expected" else "expected"
            value = self.actual if self.missing == "expected" else self.expected
            return f"{where}: absent from the {self.missing} trajectory; {other} has {_short(value)}"
        lines = [f"{where}:", f"  expected: {_short(self.expected)}", f"  actual:   {_short(self.actual)}"]
        if isinstance(self.expected, str) and isinstance(self.actual, str):
            diff = list(
                difflib.unified_diff(
                    self.expected.splitlines(),
                    self.actual.splitlines(),
                    "expected",
                    "actual",
                    n=1,
                    lineterm="",
                )
            )
            if diff:
                shown = diff[:DIFF_LINES] + (
                    [f"... {len(diff) - DIFF_LINES} more diff lines"] if len(diff) > DIFF_LINES else []
                )
                lines.append("  diff:")
                lines.extend(f"    {line}" for line in shown)
        return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 20] + f"... ({len(text)} chars)"


def strip_ignored(value: Any, ignore: Collection[str]) -> Any:
    """`value` with every mapping key in `ignore` removed, at any depth."""
    if isinstance(value, dict):
        return {k: strip_ignored(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list):
        return [strip_ignored(item, ignore) for item in value]
    return value


def _walk(expected: Any, actual: Any, path: str) -> Iterator[tuple[str, Any, Any, str | None]]:
    """(path, expected, actual, missing side) for each differing leaf, in document order."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in [*expected, *(k for k in actual if k not in expected)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                yield sub, expected[key], None, "actual"
            elif key not in expected:
                yield sub, None, actual[key], "expected"
            else:
                yield from _walk(expected[key], actual[key], sub)
    elif isinstance(expected, list) and isinstance(actual, list):
        for index in range(max(len(expected), len(actual))):
            sub = f"{path}[{index}]"
            if index >= len(actual):
                yield sub, expected[index], None, "actual"
            elif index >= len(expected):
                yield sub, None, actual[index], "expected"
            else:
                yield from _walk(expected[index], actual[index], sub)
    elif expected != actual or type(expected) is not type(actual):
        yield path, expected, actual, None


def _records(trajectory: Trajectory) -> list[tuple[str, dict[str, Any]]]:
    records = [("header", trajectory.header.model_dump())]
    records += [(f"step {step.index}", step.model_dump()) for step in trajectory.steps]
    if trajectory.footer is not None:
        records.append(("footer", trajectory.footer.model_dump()))
    return records


_SUMMARY_KEYS = {
    "step": ("action", "observation"),
    "footer": ("answer", "reward", "terminated", "truncated"),
    "header": ("episode_id",),
}


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """The telling fields of a record present on one side only."""
    return {key: record.get(key) for key in _SUMMARY_KEYS.get(str(record.get("type")), ())}


def first_difference(
    expected: Trajectory, actual: Trajectory, *, ignore: Collection[str] = DEFAULT_IGNORED
) -> Difference | None:
    """The first difference between two episodes (header, then each step, then the footer), or None."""
    wanted, got = _records(expected), _records(actual)
    for index in range(max(len(wanted), len(got))):
        if index >= len(got):
            name, record = wanted[index]
            return Difference(record=name, field="", expected=_summary(record), missing="actual")
        if index >= len(wanted):
            name, record = got[index]
            return Difference(record=name, field="", actual=_summary(record), missing="expected")
        (name, left), (other, right) = wanted[index], got[index]
        if name != other:
            return Difference(record=f"record {index}", field="type", expected=name, actual=other)
        for path, exp, act, missing in _walk(strip_ignored(left, ignore), strip_ignored(right, ignore), ""):
            return Difference(record=name, field=path, expected=exp, actual=act, missing=missing)
    return None


def record_episode(
    env: gym.Env[str, Any],
    policy: Callable[[str], Action],
    path: str | Path,
    *,
    task_id: str | None = None,
    seed: int | None = 0,
) -> Trajectory:
    """Run one episode of `policy` on `env` (left open), recording it to `path`; returns the trajectory."""
    recorder = RecordTrajectory(env, path)
    try:
        for _ in iter_episode(recorder, policy, task_id=task_id, seed=seed):
            pass
    finally:
        recorder.writer.close()
    return read_trajectories(path)[-1]


def update_requested(update: bool | None = None) -> bool:
    """`update` when given, else whether `MIROENV_UPDATE_GOLDEN` is set to a true value."""
    if update is not None:
        return update
    return os.environ.get(UPDATE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def assert_golden(
    env: gym.Env[str, Any],
    policy: Callable[[str], Action],
    golden: str | Path,
    *,
    task_id: str | None = None,
    seed: int | None = 0,
    ignore: Collection[str] = DEFAULT_IGNORED,
    update: bool | None = None,
) -> Trajectory:
    """Run `policy` on `env` and compare the episode with the trajectory stored in `golden`; `AssertionError`
    naming the first difference on a mismatch. In update mode the file is (re)written instead."""
    golden = Path(golden)
    with tempfile.TemporaryDirectory(prefix="miroenv-golden-") as scratch:
        recorded = Path(scratch) / "trajectory.jsonl"
        actual = record_episode(env, policy, recorded, task_id=task_id, seed=seed)
        if update_requested(update):
            golden.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(recorded, golden)
            return actual
    if not golden.is_file():
        raise AssertionError(
            f"golden trajectory {golden} does not exist; run pytest with --miroenv-update-golden "
            f"(or set {UPDATE_ENV}=1) to record it"
        )
    stored = read_trajectories(golden)
    if len(stored) != 1:
        raise AssertionError(f"golden trajectory {golden} holds {len(stored)} episodes; expected exactly one")
    difference = first_difference(stored[0], actual, ignore=ignore)
    if difference is not None:
        raise AssertionError(
            f"the episode differs from the golden trajectory {golden} at {difference.describe()}\n"
            f"(if the change is intended, rerun with --miroenv-update-golden or {UPDATE_ENV}=1)"
        )
    return actual


class GoldenCheck:
    """`assert_golden` with the update mode and ignored keys fixed (what the `miroenv_golden` fixture gives)."""

    def __init__(self, update: bool | None = None, ignore: Collection[str] = DEFAULT_IGNORED) -> None:
        self.update = update
        self.ignore = ignore

    def __call__(
        self,
        env: gym.Env[str, Any],
        policy: Callable[[str], Action],
        golden: str | Path,
        *,
        task_id: str | None = None,
        seed: int | None = 0,
        ignore: Collection[str] | None = None,
    ) -> Trajectory:
        """Run and compare (or record, in update mode); see `assert_golden`."""
        return assert_golden(
            env,
            policy,
            golden,
            task_id=task_id,
            seed=seed,
            ignore=self.ignore if ignore is None else ignore,
            update=self.update,
        )
