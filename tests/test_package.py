"""The package's public surface: every exported name resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym

import miroenv


def test_every_public_name_resolves() -> None:
    for name in miroenv.__all__:
        assert getattr(miroenv, name) is not None, name
    assert set(miroenv.__all__) <= set(dir(miroenv))


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        _ = miroenv.NoSuchThing  # type: ignore[attr-defined]
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown attribute resolved")


def test_import_registers_the_env_without_loading_it() -> None:
    code = (
        "import sys, miroenv, gymnasium\n"
        "assert miroenv.ENV_ID in gymnasium.registry\n"
        "heavy = sorted(m for m in ('miroenv.env', 'miroenv.web.snapshot', 'miroenv.sandbox.base', 'tantivy', 'httpx') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_import_does_not_load_gymnasium_and_registers_once_it_is_loaded() -> None:
    code = (
        "import sys, miroenv\n"
        "assert 'gymnasium' not in sys.modules and 'numpy' not in sys.modules\n"
        "from gymnasium.envs.registration import registry\n"
        "assert miroenv.ENV_ID in registry\n"
        "print(type(sys.modules['gymnasium'].__spec__.loader).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "SourceFileLoader"


def test_registered_id_makes_the_env(demo_dir) -> None:  # type: ignore[no-untyped-def]
    env = gym.make(miroenv.ENV_ID, snapshot=demo_dir, tasks=demo_dir / "tasks.jsonl", sandbox="none")
    assert isinstance(env.unwrapped, miroenv.ResearchEnv)
    env.close()
