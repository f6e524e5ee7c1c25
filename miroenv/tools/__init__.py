"""Tools the agent calls, grouped into servers and profiles."""

from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolFailure, ToolServer
from miroenv.tools.profiles import PROFILES, ToolProfile, get_profile, minimal, mirothinker_v1
from miroenv.tools.runner import CallOutcome, ToolRouter, run_call

__all__ = [
    "PROFILES",
    "CallOutcome",
    "EpisodeContext",
    "InfraFailure",
    "Tool",
    "ToolFailure",
    "ToolProfile",
    "ToolRouter",
    "ToolServer",
    "get_profile",
    "minimal",
    "mirothinker_v1",
    "run_call",
]
