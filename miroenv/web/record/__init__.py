"""Live recording into snapshots: `RecordingWeb` answers from the snapshot first and records what it lacks.

Search goes to a Serper-compatible API, pages through httpx (Playwright with the system Chromium for pages that
need JavaScript), every fetch behind an SSRF guard, a per-host rate limit and retries. See docs/recording.md.
"""

from miroenv.web.record.errors import LiveMissError, RecordingError
from miroenv.web.record.fetch import BrowserFetcher, FetchResult, HttpFetcher
from miroenv.web.record.guard import BlockedURLError, URLGuard
from miroenv.web.record.proxy import GuardProxy
from miroenv.web.record.ratelimit import HostRateLimiter, TokenBucket, shared_limiter
from miroenv.web.record.recording import RecordingConfig, RecordingWeb, RecordOutcome
from miroenv.web.record.retry import RetryPolicy
from miroenv.web.record.serper import SerperClient

__all__ = [
    "BlockedURLError",
    "BrowserFetcher",
    "FetchResult",
    "GuardProxy",
    "HostRateLimiter",
    "HttpFetcher",
    "LiveMissError",
    "RecordOutcome",
    "RecordingConfig",
    "RecordingError",
    "RecordingWeb",
    "RetryPolicy",
    "SerperClient",
    "TokenBucket",
    "URLGuard",
    "shared_limiter",
]
