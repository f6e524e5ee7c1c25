"""Replay never touches the network: no socket connects, no DNS lookups during whole episodes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv, ScriptedPolicy, run_episode
from miroenv.demo import ACTIONS


class NetworkUsed(AssertionError):
    """Raised by the guarded socket functions."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{name}{args[1:] if name.startswith('socket.') else args}")
            raise NetworkUsed(f"network used during replay: {name}")

        return guarded

    def local_or_refuse(name: str, original: Any) -> Any:
        """Unix-domain sockets (the Docker daemon's API socket) are local IPC, not the network."""

        def guarded(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
            if sock.family == socket.AF_UNIX:
                return original(sock, *args, **kwargs)
            return refuse(f"socket.{name}")(sock, *args, **kwargs)

        return guarded

    for name in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, name, local_or_refuse(name, getattr(socket.socket, name)))
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "create_connection"):
        monkeypatch.setattr(socket, name, refuse(name))
    return attempts


def test_guard_catches_a_connect(no_network: list[str]) -> None:
    with pytest.raises(NetworkUsed), socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))
    assert no_network
    with pytest.raises(NetworkUsed):
        socket.getaddrinfo("example.org", 80)


def test_demo_episodes_replay_without_network(demo_dir: Path, no_network: list[str]) -> None:
    env = ResearchEnv(demo_dir, sandbox="auto")
    rewards = [
        run_episode(env, ScriptedPolicy(actions), task_id=task_id, seed=0).reward
        for task_id, actions in ACTIONS.items()
    ]
    env.step("after the end")
    env.close()
    assert rewards == [1.0] * len(ACTIONS)
    assert no_network == []
