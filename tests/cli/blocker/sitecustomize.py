"""Put on PYTHONPATH: makes the packages of miroenv's extras unimportable, as in a base `pip install miroenv`."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

BLOCKED = frozenset(os.environ.get("MIROENV_TEST_BLOCKED_MODULES", "").split(",")) - {""}


class _Blocker(importlib.abc.MetaPathFinder):
    """Raises ModuleNotFoundError for a blocked top-level package and everything under it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Refuse blocked names; let the other finders handle the rest."""
        top = fullname.partition(".")[0]
        if top in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by the test)", name=fullname)
        return None


sys.meta_path.insert(0, _Blocker())
