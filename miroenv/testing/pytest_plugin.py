"""miroenv's pytest plugin (registered through the `pytest11` entry point): fixtures for snapshots declared
in code, envs on them, scripted policies and golden trajectories, plus `--miroenv-update-golden`.

Every fixture name starts with `miroenv_`, so none clashes with a project's own fixtures. Loading the plugin
imports nothing beyond pytest: the kit is imported when a fixture is first used.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from miroenv.env import ResearchEnv
    from miroenv.policy import ScriptedPolicy
    from miroenv.protocol.base import Action
    from miroenv.testing.builder import SnapshotBuilder
    from miroenv.testing.golden import GoldenCheck

UPDATE_GOLDEN_OPTION = "--miroenv-update-golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register `--miroenv-update-golden`."""
    group = parser.getgroup("miroenv")
    group.addoption(
        UPDATE_GOLDEN_OPTION,
        action="store_true",
        default=False,
        help="rewrite golden trajectory files with what the tests produce instead of comparing with them "
        "(same as MIROENV_UPDATE_GOLDEN=1)",
    )


@pytest.fixture
def miroenv_snapshot(tmp_path: Path) -> Callable[..., SnapshotBuilder]:
    """A factory of `SnapshotBuilder`s whose `build()` writes into this test's temporary directory."""
    from miroenv.testing.builder import SnapshotBuilder

    counter = itertools.count(1)

    def make(name: str = "test-snapshot", **kwargs: Any) -> SnapshotBuilder:
        kwargs.setdefault("path", tmp_path / f"snapshot-{next(counter)}")
        return SnapshotBuilder(name, **kwargs)

    return make


@pytest.fixture
def miroenv_env() -> Iterator[Callable[..., ResearchEnv]]:
    """A factory of `ResearchEnv`s on a snapshot (a directory, or a builder, rebuilt if it changed since it
    was built), closed after the test; keyword arguments go to `ResearchEnv`."""
    from miroenv.env import ResearchEnv
    from miroenv.testing.builder import SnapshotBuilder

    made: list[ResearchEnv] = []

    def make(snapshot: str | Path | SnapshotBuilder, tasks: Any = None, **kwargs: Any) -> ResearchEnv:
        if isinstance(snapshot, SnapshotBuilder):
            snapshot = snapshot.ensure_built()
        env = ResearchEnv(snapshot, tasks, **kwargs)
        made.append(env)
        return env

    yield make
    for env in reversed(made):
        env.close()


@pytest.fixture
def miroenv_policy() -> Callable[..., ScriptedPolicy]:
    """A factory of scripted policies: from a list of actions, or from a task's script in a snapshot's
    `actions.jsonl` (a directory or file, or a builder, rebuilt if it changed since it was built)."""
    from miroenv.policy import ScriptedPolicy, load_actions
    from miroenv.testing.builder import ACTIONS_FILE, SnapshotBuilder

    def make(
        script: Sequence[Action] | str | Path | SnapshotBuilder, task_id: str | None = None
    ) -> ScriptedPolicy:
        if isinstance(script, SnapshotBuilder):
            script = script.ensure_built()
        if isinstance(script, (str, Path)):
            path = Path(script)
            if path.is_dir():
                path = path / ACTIONS_FILE
            if task_id is None:
                raise ValueError(f"pass the task_id whose script to play from {path}")
            scripts = load_actions(path)
            if task_id not in scripts:
                raise KeyError(f"{path} has no actions for task {task_id!r}")
            return ScriptedPolicy(scripts[task_id])
        return ScriptedPolicy(list(script))

    return make


@pytest.fixture
def miroenv_golden(request: pytest.FixtureRequest) -> GoldenCheck:
    """`assert_golden` bound to this run's `--miroenv-update-golden` setting."""
    from miroenv.testing.golden import GoldenCheck

    update = bool(request.config.getoption(UPDATE_GOLDEN_OPTION))
    return GoldenCheck(update=True if update else None)
