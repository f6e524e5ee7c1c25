"""Optional dependencies: which `pip install 'miroenv[EXTRA]'` provides which module, and the one error for a missing one.

A base install (`pip install miroenv`) has no extras. Code that needs one imports it inside
`with requires_extra("import", "WARC export"):`, so a missing package becomes a `MissingExtraError` naming the
extra to install; `ensure_extra` checks a whole extra before work starts (no half-written snapshot). The CLI
prints the message on one line and exits 2.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["EXTRA_MODULES", "MissingExtraError", "ensure_extra", "requires_extra"]

EXTRA_MODULES: dict[str, frozenset[str]] = {
    "import": frozenset({"warcio", "trafilatura", "bs4", "lxml", "lxml_html_clean"}),
    "docker": frozenset({"docker"}),
    "browser": frozenset({"playwright"}),
    "ray": frozenset({"ray"}),
    "mcp": frozenset({"mcp", "mcp_types", "uvicorn", "starlette", "sse_starlette"}),
    "tokenizers": frozenset({"tiktoken"}),
}
"""The top-level modules each extra of pyproject.toml installs (and that miroenv imports only on demand)."""


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the miroenv extra that installs it."""

    def __init__(self, extra: str, feature: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra (no module named '{module}'): pip install 'miroenv[{extra}]'",
            name=module,
        )
        self.extra = extra
        self.feature = feature
        self.module = module


@contextmanager
def requires_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module of `extra` imported in the block into a `MissingExtraError` for `feature`."""
    if extra not in EXTRA_MODULES:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRA_MODULES))}")
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRA_MODULES[extra]:
            raise
        raise MissingExtraError(extra, feature, top) from exc


def ensure_extra(extra: str, feature: str) -> None:
    """Import every module of `extra` now, so `feature` fails with `MissingExtraError` before it writes anything."""
    with requires_extra(extra, feature):
        for module in sorted(EXTRA_MODULES[extra]):
            importlib.import_module(module)
