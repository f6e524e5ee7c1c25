"""Registers the Gymnasium ids, so `gymnasium.make("miroenv/Research-v0", snapshot=..., tasks=...)` works."""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

ENV_ID = "miroenv/Research-v0"


def register_envs() -> None:
    """Register `miroenv/Research-v0` once (idempotent)."""
    if ENV_ID not in registry:
        register(id=ENV_ID, entry_point="miroenv.env:ResearchEnv", disable_env_checker=False)
