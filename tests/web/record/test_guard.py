"""SSRF guard: private targets are refused before any connection, also after redirects and via DNS."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from miroenv.web import NotInSnapshotError, Snapshot
from miroenv.web.record import BlockedURLError, LiveMissError, RecordingWeb, URLGuard
from miroenv.web.record.guard import blocked_reason

from .conftest import PageServer, record_kwargs

BLOCKED_URLS = [
    "http://127.0.0.1/",
    "http://127.1.2.3:8080/x",
    "http://10.0.0.1/",
    "http://10.255.255.254/admin",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/",
    "http://[::1]:8080/x",
    "http://0.0.0.0/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://[2002:a00:1::]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[::]/",
]


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"the guard must not resolve the literal address {host}")


@pytest.mark.parametrize("url", BLOCKED_URLS)
def test_private_literal_addresses_are_refused(url: str) -> None:
    with pytest.raises(BlockedURLError) as info:
        URLGuard(resolver=no_dns).check_url(url)
    assert info.value.url == url and info.value.reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    assert URLGuard(resolver=no_dns).check_url(f"https://{host}/") == [address]


def test_every_resolved_address_is_checked() -> None:
    answers = {"public.test": ["93.184.216.34"], "mixed.test": ["93.184.216.34", "10.1.2.3"]}
    answers["rebind.test"] = ["2606:2800:220:1::1", "::1"]
    guard = URLGuard(resolver=lambda host, port: answers[host])
    assert guard.check_url("http://public.test/a") == ["93.184.216.34"]
    with pytest.raises(BlockedURLError, match=r"10\.1\.2\.3 is a private address"):
        guard.check_url("http://mixed.test/a")
    with pytest.raises(BlockedURLError, match=r"::1 is a loopback address"):
        guard.check_url("https://rebind.test/")


def test_unresolvable_hosts_and_other_schemes_are_refused() -> None:
    def fail(host: str, port: int) -> Sequence[str]:
        raise socket.gaierror(-2, "Name or service not known")

    guard = URLGuard(resolver=fail)
    with pytest.raises(BlockedURLError, match="cannot resolve"):
        guard.check_url("http://nowhere.invalid/")
    for url in ("file:///etc/passwd", "ftp://example.org/", "gopher://10.0.0.1/", "http:///nohost"):
        with pytest.raises(BlockedURLError):
            guard.check_url(url)


def test_allow_private_and_allow_networks() -> None:
    assert URLGuard(allow_private=True, resolver=no_dns).check_url("http://10.0.0.1/") == ["10.0.0.1"]
    guard = URLGuard(allow_networks=["127.0.0.0/8"], resolver=no_dns)
    assert guard.check_url("http://127.0.0.1:8000/") == ["127.0.0.1"]
    with pytest.raises(BlockedURLError):
        guard.check_url("http://10.0.0.1/")


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a TCP connection is attempted to during the test."""
    attempted: list[Any] = []
    real = socket.create_connection

    def spy(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempted.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", spy)
    return attempted


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/pages/a",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/",
        "http://[::1]:{port}/",
    ],
)
def test_recording_web_refuses_private_targets_without_traffic(
    url: str, page_server: PageServer, snapshot_dir: Path, connections: list[Any]
) -> None:
    target = url.format(port=page_server.httpd.server_address[1])
    with RecordingWeb(snapshot_dir, **record_kwargs(allow_private=False)) as web:
        with pytest.raises(LiveMissError) as info:
            web.page(target)
        assert isinstance(info.value, NotInSnapshotError)
        assert str(info.value) == f"The page {target!r} is not in this snapshot of the web."
        assert "address" in info.value.reason
    assert connections == [] and sum(page_server.hits.values()) == 0
    assert Snapshot(snapshot_dir).manifest.counts["pages"] == 0


def test_redirects_to_private_targets_are_refused(
    page_server: PageServer, snapshot_dir: Path, connections: list[Any]
) -> None:
    kwargs = record_kwargs(allow_private=False, allow_networks=("127.0.0.1/32",))
    with RecordingWeb(snapshot_dir, **kwargs) as web:
        assert "Article a" in web.page(page_server.url("/pages/a")).title
        with pytest.raises(LiveMissError, match="not in this snapshot") as info:
            web.page(page_server.url("/to-private"))
        assert "10.0.0.1 is a private address" in info.value.reason
        with pytest.raises(LiveMissError) as info:
            web.page(page_server.url("/to-loopback6"))
        assert "::1 is a loopback address" in info.value.reason
    assert {address[0] for address in connections} == {"127.0.0.1"}
    assert page_server.hits["/secret"] == 0
