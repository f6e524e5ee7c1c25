"""URL canonicalization: the keys under which a snapshot finds a page however a model spells its URL.

`canonical_url` is the strict form (lower-case scheme and host, IDNA host, default port, fragment and tracking
parameters dropped, query sorted, percent-escapes normalized; path and query case kept). `match_key` goes
further and forgets what commonly varies between spellings of one page: http/https, a leading `www.`, and a
trailing slash. Neither ever raises.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

TRACKING_PARAMS = frozenset(
    {"gclid", "fbclid", "msclkid", "dclid", "yclid", "gbraid", "wbraid", "mc_cid", "mc_eid", "igshid", "_ga",
     "_gl", "spm", "ref_src"}
)  # fmt: skip
"""Query parameters that only track the visitor; `utm_*` parameters are dropped as well."""

DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = "/:@!$'()*,;-._~?"
_RESERVED_ESCAPES = re.compile(r"%(2[fF]|3[fF]|23|25|26|3[dD]|2[bB])")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _is_tracking(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in TRACKING_PARAMS


def _normalize_escapes(part: str, safe: str) -> str:
    """Decode percent-escapes except those of reserved characters, then re-escape what must be escaped."""
    pieces = _RESERVED_ESCAPES.split(part)
    out: list[str] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 1:
            out.append("%" + piece.upper())
        else:
            out.append(quote(unquote(piece), safe=safe))
    return "".join(out)


def _host(hostname: str) -> str:
    host = "".join(hostname.split()).rstrip(".").lower()
    if not host or host.isascii():
        return host
    try:
        encoded = host.encode("idna").decode("ascii")
    except UnicodeError:
        return host
    return "".join(encoded.split()).rstrip(".").lower()


def canonical_url(url: str) -> str:
    """The canonical spelling of `url` (see module docstring); unparseable input comes back stripped."""
    text = url.strip()
    if not text:
        return text
    if not _SCHEME.match(text):
        text = "http://" + text.lstrip("/")
    try:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        host = _host(parts.hostname or "")
        port = parts.port
    except ValueError:
        return url.strip()
    netloc = host
    if port is not None and DEFAULT_PORTS.get(scheme) != port:
        netloc = f"{host}:{port}"
    path = _normalize_escapes(parts.path, _SAFE_PATH) or "/"
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    query = urlencode(sorted(pairs), quote_via=quote, safe=_SAFE_QUERY)
    return urlunsplit((scheme, netloc, path, query, ""))


def match_key(url: str) -> str:
    """A key equal for the usual variants of one page: canonical form without scheme, `www.` or trailing slash."""
    canonical = canonical_url(url)
    try:
        parts = urlsplit(canonical)
    except ValueError:
        return canonical
    netloc = parts.netloc.removeprefix("www.")
    path = parts.path.rstrip("/") or "/"
    return netloc + path + (f"?{parts.query}" if parts.query else "")


def host_of(url: str) -> str:
    """The lower-case host of `url` without `www.` ('' when there is none)."""
    return match_key(url).split("/", 1)[0].split(":", 1)[0]
