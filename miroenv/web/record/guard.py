"""SSRF guard: live fetches go only to public addresses unless private ones are explicitly allowed.

A URL passes when its scheme is http(s) and every address its host resolves to (IPv4 and IPv6) is public: not
private, loopback, link-local, multicast, reserved, unspecified, shared (CGNAT) or otherwise non-global, also
when an IPv4 address hides inside an IPv6 one (mapped, 6to4, Teredo, NAT64). The httpx fetcher checks again at
connect time on the very address it connects to, so DNS rebinding between check and connect does not help.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

ALLOWED_SCHEMES = frozenset({"http", "https"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedURLError(Exception):
    """A URL the guard refuses to fetch; `reason` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"refused to fetch {url!r}: {reason}")
        self.url = url
        self.reason = reason


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), via the system resolver."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public target (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} (embedded in {address})" if reason else None
    for flag in ("loopback", "unspecified", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{flag}"):
            return f"{address} is a {flag.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a globally routable address"
    return None


class URLGuard:
    """Decides which URLs and addresses live recording may contact (thread-safe, stateless)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allow_networks: Iterable[str | IPNetwork] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in allow_networks
        )
        self.resolver = resolver

    def check_address(self, address: str, url: str = "") -> IPAddress:
        """The parsed address if it may be contacted; `BlockedURLError` otherwise."""
        try:
            parsed = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError as exc:
            raise BlockedURLError(url or address, f"{address!r} is not an IP address") from exc
        if self.allow_private or any(parsed in network for network in self.allow_networks):
            return parsed
        reason = blocked_reason(parsed)
        if reason:
            raise BlockedURLError(url or address, reason)
        return parsed

    def resolve(self, host: str, port: int, url: str = "") -> list[str]:
        """Resolve `host` and check every address; returns them all, or raises if any one is refused."""
        where = url or f"{host}:{port}"
        literal = host.strip("[]")
        try:
            ipaddress.ip_address(literal.split("%", 1)[0])
        except ValueError:
            try:
                addresses = list(self.resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise BlockedURLError(where, f"cannot resolve host {host!r}: {exc}") from exc
        else:
            addresses = [literal]
        if not addresses:
            raise BlockedURLError(where, f"host {host!r} resolves to no address")
        for address in addresses:
            self.check_address(address, where)
        return addresses

    def check_url(self, url: str) -> list[str]:
        """Check scheme and host of `url` and every address the host resolves to; returns those addresses."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise BlockedURLError(url, f"invalid URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ALLOWED_SCHEMES:
            raise BlockedURLError(url, f"scheme {scheme or '(none)'!r} is not http or https")
        host = parts.hostname
        if not host:
            raise BlockedURLError(url, "the URL has no host")
        return self.resolve(host, port or (443 if scheme == "https" else 80), url)
