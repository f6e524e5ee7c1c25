"""Importers of recorded agent runs: MiroRL rollouts, MiroFlow/MiroThinker task logs and miroenv's own
trajectories become a snapshot of every tool result plus trajectories that replay against it."""

from collections.abc import Callable

from miroenv.logs.episode import (
    ImportedEpisode,
    ImportSummary,
    RecordedCall,
    RecordedStep,
    split_results,
    write_import,
)
from miroenv.logs.miroflow import TaskLogError, import_miroflow, load_miroflow, parse_task_log
from miroenv.logs.mirorl import RolloutError, import_mirorl, load_mirorl, parse_rollout
from miroenv.logs.ours import SANDBOX_TOOLS, import_ours
from miroenv.logs.prompt import RecoveredPrompt, prompt_date, recover_prompt

IMPORTERS: dict[str, Callable[..., ImportSummary]] = {
    "mirorl": import_mirorl,
    "miroflow": import_miroflow,
    "ours": import_ours,
}
"""Importer functions by the format name `miroenv trajectories import` takes."""

__all__ = [
    "IMPORTERS",
    "SANDBOX_TOOLS",
    "ImportSummary",
    "ImportedEpisode",
    "RecordedCall",
    "RecordedStep",
    "RecoveredPrompt",
    "RolloutError",
    "TaskLogError",
    "import_miroflow",
    "import_mirorl",
    "import_ours",
    "load_miroflow",
    "load_mirorl",
    "parse_rollout",
    "parse_task_log",
    "prompt_date",
    "recover_prompt",
    "split_results",
    "write_import",
]
