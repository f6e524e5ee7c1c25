"""Retries for live requests: exponential backoff with jitter on 429/5xx and network errors, honouring
`Retry-After`."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

logger = logging.getLogger(__name__)


def is_retryable_status(status: int) -> bool:
    """True for statuses worth another try: 429 Too Many Requests and server errors."""
    return status == 429 or 500 <= status <= 599


def parse_retry_after(value: str | None, now: Callable[[], datetime] | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date); None if absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now() if now is not None else datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: `attempts` tries in all, delays doubling from `base_delay`."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    retry_network_errors: bool = True

    def delay(self, retry: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds before retry number `retry` (1-based): the server's `Retry-After` (capped) when it sent one,
        else exponential backoff with equal jitter (half fixed, half random)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        jitter = rng.uniform(0, ceiling / 2) if rng is not None else random.uniform(0, ceiling / 2)
        return ceiling / 2 + jitter


class RetriesExhausted(Exception):
    """Every attempt failed with a network error; `last` is the final one."""

    def __init__(self, attempts: int, last: Exception) -> None:
        super().__init__(f"{type(last).__name__}: {last} (after {attempts} attempt{'s' * (attempts != 1)})")
        self.attempts = attempts
        self.last = last


def send_with_retries(
    send: Callable[[], httpx.Response],
    policy: RetryPolicy,
    *,
    before_attempt: Callable[[], object] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    what: str = "request",
) -> tuple[httpx.Response, int]:
    """Call `send` until it returns a non-retryable status or the attempts run out; returns the last response
    and the number of attempts made. Network errors are retried too, then raised as `RetriesExhausted`.

    Responses given up on are closed; the one returned is not (it may be streaming)."""
    attempts = max(1, policy.attempts)
    for attempt in range(1, attempts + 1):
        if before_attempt is not None:
            before_attempt()
        try:
            response = send()
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            if not policy.retry_network_errors or attempt == attempts:
                raise RetriesExhausted(attempt, exc) from exc
            wait = policy.delay(attempt, rng=rng)
            logger.info("%s: %s; retry %d in %.2fs", what, exc, attempt, wait)
            sleep(wait)
            continue
        if not is_retryable_status(response.status_code) or attempt == attempts:
            return response, attempt
        wait = policy.delay(attempt, parse_retry_after(response.headers.get("retry-after")), rng)
        logger.info("%s: HTTP %d; retry %d in %.2fs", what, response.status_code, attempt, wait)
        response.close()
        sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover
