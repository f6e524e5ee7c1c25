"""A local forward proxy that puts the SSRF guard in front of Chromium.

Playwright's request interception does not see redirect hops, so a page (or one of its images) redirecting to a
private address would slip past it. Routed through this proxy, every connection the browser opens (documents,
subresources, redirect hops, WebSockets, HTTPS tunnels) is resolved and checked here, and made to the checked
address; refused ones get `403`. It listens on 127.0.0.1 only and relays, it does not inspect TLS.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import selectors
import socket
import socketserver
import threading
from urllib.parse import urlsplit

from miroenv.web.record.guard import BlockedURLError, URLGuard

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
_HOP_HEADERS = frozenset({b"proxy-connection", b"connection", b"keep-alive", b"proxy-authorization"})


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """Read a request head up to the blank line; returns (head, bytes read past it), or None on EOF/overflow."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            return None
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit("//" + authority)
    return parts.hostname or "", parts.port or default_port


def _pipe(client: socket.socket, upstream: socket.socket, idle_timeout: float) -> None:
    """Relay bytes both ways until the upstream side closes (or nothing moves for `idle_timeout`)."""
    selector = selectors.DefaultSelector()
    peers = {client: upstream, upstream: client}
    for sock in peers:
        selector.register(sock, selectors.EVENT_READ)
    try:
        while True:
            events = selector.select(idle_timeout)
            if not events:
                return
            for key, _ in events:
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if data:
                    try:
                        peers[source].sendall(data)
                    except OSError:
                        return
                elif source is upstream:
                    return
                else:
                    selector.unregister(client)
                    with contextlib.suppress(OSError):
                        upstream.shutdown(socket.SHUT_WR)
    finally:
        selector.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: GuardProxy


class _ProxyHandler(socketserver.BaseRequestHandler):
    """Handles one client connection: a CONNECT tunnel or one plain-HTTP request in absolute form."""

    server: _ProxyServer

    def handle(self) -> None:
        proxy = self.server.proxy
        client: socket.socket = self.request
        client.settimeout(proxy.idle_timeout)
        try:
            read = _read_head(client)
            if read is None:
                return
            head, rest = read
            line, _, header_block = head.partition(b"\r\n")
            parts = line.split(b" ")
            if len(parts) != 3:
                self._reply(client, 400, "malformed request line")
                return
            method, target, version = parts
            if method.upper() == b"CONNECT":
                host, port = _split_authority(target.decode("latin-1"), 443)
                upstream = self._open(client, host, port, f"https://{target.decode('latin-1')}/")
                if upstream is None:
                    return
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            else:
                url = target.decode("latin-1")
                split = urlsplit(url)
                if split.scheme.lower() != "http" or not split.hostname:
                    self._reply(client, 400, f"not an absolute http URL: {url}")
                    return
                upstream = self._open(client, split.hostname, split.port or 80, url)
                if upstream is None:
                    return
                path = (split.path or "/") + (f"?{split.query}" if split.query else "")
                headers = [
                    h
                    for h in header_block.split(b"\r\n")
                    if h and h.split(b":", 1)[0].strip().lower() not in _HOP_HEADERS
                ]
                request_head = b"\r\n".join(
                    [method + b" " + path.encode("latin-1") + b" " + version, *headers, b"Connection: close"]
                )
                upstream.sendall(request_head + b"\r\n\r\n")
            with upstream:
                if rest:
                    upstream.sendall(rest)
                _pipe(client, upstream, proxy.idle_timeout)
        except OSError as exc:
            logger.debug("guard proxy: connection ended: %s", exc)

    def _open(self, client: socket.socket, host: str, port: int, url: str) -> socket.socket | None:
        proxy = self.server.proxy
        try:
            return proxy.connect(host, port, url)
        except BlockedURLError as exc:
            proxy.note_refusal(url, exc.reason)
            self._reply(client, 403, f"blocked by the miroenv SSRF guard: {exc.reason}")
        except OSError as exc:
            self._reply(client, 502, f"cannot connect to {host}:{port}: {exc}")
        return None

    @staticmethod
    def _reply(client: socket.socket, status: int, message: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
        body = message.encode("utf-8")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            client.sendall(head.encode("latin-1") + body)


class GuardProxy:
    """The proxy server, running in a daemon thread on 127.0.0.1 until `close`."""

    def __init__(self, guard: URLGuard, *, connect_timeout: float = 15.0, idle_timeout: float = 60.0) -> None:
        self.guard = guard
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.refused: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)
        """Recent refusals as (url, reason), newest last."""
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="miroenv-guard-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the proxy listens, as a proxy URL for the browser."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def connect(self, host: str, port: int, url: str) -> socket.socket:
        """A socket to `host:port` on a checked address; `BlockedURLError` if any address is refused."""
        addresses = self.guard.resolve(host, port, url)
        error: OSError | None = None
        for address in addresses:
            try:
                return socket.create_connection((address, port), timeout=self.connect_timeout)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error

    def note_refusal(self, url: str, reason: str) -> None:
        """Remember a refusal (tests and logs read `refused`)."""
        logger.info("guard proxy refused %s: %s", url, reason)
        self.refused.append((url, reason))

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
