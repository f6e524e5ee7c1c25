"""Registers the Gymnasium ids, so `gymnasium.make("miroenv/Research-v0", snapshot=..., tasks=...)` works.

Gymnasium (with numpy) takes ~0.2 s to import and `import miroenv` (so every `miroenv` command) must not pay
for it: `register_when_gymnasium_loads` registers at once when Gymnasium is already imported, else right after
its import finishes, whoever imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

ENV_ID = "miroenv/Research-v0"


def register_envs() -> None:
    """Register `miroenv/Research-v0` once (idempotent)."""
    from gymnasium.envs.registration import register, registry

    if ENV_ID not in registry:
        register(id=ENV_ID, entry_point="miroenv.env:ResearchEnv", disable_env_checker=False)


class _RegisterAfterGymnasium(importlib.abc.MetaPathFinder):
    """Finds `gymnasium` with the other finders and makes its loader call `register_envs` once it has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """The usual spec of `gymnasium`, with registration added after its module code; None for others."""
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None:
            return spec
        run_module = loader.exec_module

        def exec_then_register(module: ModuleType) -> None:
            run_module(module)
            register_envs()

        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def register_when_gymnasium_loads() -> None:
    """Register now when Gymnasium is imported, else as soon as it is (without importing it here)."""
    if "gymnasium" in sys.modules:
        register_envs()
    elif not any(isinstance(finder, _RegisterAfterGymnasium) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterGymnasium())
