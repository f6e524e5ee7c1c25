"""Testing kit: declare snapshots and tasks in code, fixtures, tool-call strategies, fault injection, golden trajectories.

Names are imported on first use, so `import miroenv.testing` (and the pytest plugin) stays cheap and
hypothesis is only needed by the strategies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miroenv.testing.actions import (
        create_sandbox_call,
        final_answer,
        python_call,
        sandbox_id,
        scrape_call,
        search_call,
        tool_call,
    )
    from miroenv.testing.builder import SnapshotBuilder
    from miroenv.testing.faults import (
        FaultInjection,
        FaultInjector,
        FaultKind,
        FaultPlan,
        InjectedFault,
        crash_sandbox,
    )
    from miroenv.testing.golden import (
        DEFAULT_IGNORED,
        Difference,
        GoldenCheck,
        assert_golden,
        first_difference,
        record_episode,
    )
    from miroenv.testing.strategies import (
        ToolCallCase,
        malformed_tool_calls,
        tool_call_cases,
        valid_tool_calls,
    )

_EXPORTS: dict[str, str] = {
    "create_sandbox_call": "actions",
    "final_answer": "actions",
    "python_call": "actions",
    "sandbox_id": "actions",
    "scrape_call": "actions",
    "search_call": "actions",
    "tool_call": "actions",
    "SnapshotBuilder": "builder",
    "FaultInjection": "faults",
    "FaultInjector": "faults",
    "FaultKind": "faults",
    "FaultPlan": "faults",
    "InjectedFault": "faults",
    "crash_sandbox": "faults",
    "DEFAULT_IGNORED": "golden",
    "Difference": "golden",
    "GoldenCheck": "golden",
    "assert_golden": "golden",
    "first_difference": "golden",
    "record_episode": "golden",
    "ToolCallCase": "strategies",
    "malformed_tool_calls": "strategies",
    "tool_call_cases": "strategies",
    "valid_tool_calls": "strategies",
}

__all__ = [
    "DEFAULT_IGNORED",
    "Difference",
    "FaultInjection",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "GoldenCheck",
    "InjectedFault",
    "SnapshotBuilder",
    "ToolCallCase",
    "assert_golden",
    "crash_sandbox",
    "create_sandbox_call",
    "final_answer",
    "first_difference",
    "malformed_tool_calls",
    "python_call",
    "record_episode",
    "sandbox_id",
    "scrape_call",
    "search_call",
    "tool_call",
    "tool_call_cases",
    "valid_tool_calls",
]


def __getattr__(name: str) -> Any:
    """Import the module defining `name` on first access."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
