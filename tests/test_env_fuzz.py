"""Hypothesis fuzzing of `step()`: arbitrary text and malformed tool calls never raise out of the env."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miroenv import ResearchEnv
from miroenv.testing.strategies import broken_mcp_calls, fragment_soup

actions = st.one_of(st.text(max_size=400), fragment_soup, broken_mcp_calls)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(actions, min_size=1, max_size=6))
def test_step_never_raises_and_reports_bad_calls(demo_dir: Path, batch: list[str]) -> None:
    env = ResearchEnv(demo_dir)
    try:
        env.reset(seed=0)
        for action in batch:
            obs, reward, terminated, truncated, info = env.step(action)
            assert isinstance(obs, str) and isinstance(reward, float)
            assert isinstance(info["errors"], dict)
            if "format" in info["error_kinds"]:
                assert not terminated and not truncated
                assert "could not be parsed" in obs
            if terminated or truncated:
                env.reset(seed=1)
    finally:
        env.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=broken_mcp_calls)
def test_unclosed_or_broken_mcp_call_keeps_episode_going(demo_dir: Path, action: str) -> None:
    env = ResearchEnv(demo_dir)
    try:
        env.reset(seed=0)
        obs, _, terminated, truncated, info = env.step(action)
        assert not terminated and not truncated
        assert info["phase"] == "act"
        assert obs.strip()
        assert info["error_kinds"], "a broken call must be reported as an error"
    finally:
        env.close()
