"""The committed demo snapshot is exactly what `build_demo` writes."""

from __future__ import annotations

from pathlib import Path

from miroenv.demo import ACTIONS, TASKS
from miroenv.web import Snapshot

ROOT = Path(__file__).resolve().parents[1]


def test_committed_demo_matches_a_fresh_build(demo_dir: Path) -> None:
    committed = ROOT / "snapshots" / "demo"
    assert Snapshot(committed).verify() == Snapshot(demo_dir).verify()
    for name in ("tasks.jsonl", "actions.jsonl"):
        assert (committed / name).read_text() == (demo_dir / name).read_text(), name


def test_demo_has_tasks_and_scripts_for_each() -> None:
    assert 3 <= len(TASKS) <= 5
    assert {t.task_id for t in TASKS} == set(ACTIONS)
    assert all(t.answer for t in TASKS)
