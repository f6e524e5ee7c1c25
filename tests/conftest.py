"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from miroenv import ResearchEnv

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Real third-party data for tests (../shared/data from the project root); never copied into the repo."""


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; skips the test when it is absent, but fails on CI (CI=true) instead."""
    if not SHARED_DATA.is_dir():
        message = f"shared test data folder not found: {SHARED_DATA}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built demo snapshot (with its tasks.jsonl and actions.jsonl), shared by the session."""
    from miroenv.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "demo")


@pytest.fixture
def env(demo_dir: Path) -> Iterator[ResearchEnv]:
    """A MiroThinker-profile env on the demo snapshot, closed after the test."""
    from miroenv import ResearchEnv

    environment = ResearchEnv(demo_dir, demo_dir / "tasks.jsonl", sandbox="auto")
    yield environment
    environment.close()
