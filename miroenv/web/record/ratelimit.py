"""Per-host rate limiting for live recording: one token bucket per host, shared by every recorder in a process.

Limits are per process: several recording processes each get the full rate. Sharing a budget across processes
(a lock file or a small server holding the buckets) is not implemented yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second up to `burst`; `acquire` blocks until a token is free (thread-safe)."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._stamp = clock()
        self._lock = threading.Lock()

    def _reserve(self) -> float:
        """Take a token (possibly going into debt) and return how long the caller must wait for it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait


class HostRateLimiter:
    """One `TokenBucket` per host name, created on first use."""

    def __init__(
        self,
        rate: float = 2.0,
        burst: float = 4.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        TokenBucket(rate, burst)  # validate the parameters now rather than on first use
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, host: str) -> TokenBucket:
        """The bucket of `host` (case-insensitive)."""
        key = host.lower().rstrip(".")
        with self._lock:
            found = self._buckets.get(key)
            if found is None:
                found = self._buckets[key] = TokenBucket(
                    self.rate, self.burst, clock=self._clock, sleep=self._sleep
                )
            return found

    def acquire(self, host: str) -> float:
        """Wait for a token for `host`; returns the seconds waited."""
        return self.bucket(host).acquire()


_SHARED: dict[tuple[float, float], HostRateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(rate: float, burst: float) -> HostRateLimiter:
    """The process-wide limiter for these settings: every recorder asking for them shares its buckets."""
    with _SHARED_LOCK:
        limiter = _SHARED.get((rate, burst))
        if limiter is None:
            limiter = _SHARED[(rate, burst)] = HostRateLimiter(rate, burst)
        return limiter
