"""Token buckets, Retry-After parsing, backoff with jitter, and the retry loop."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timezone

import httpx
import pytest

from miroenv.web.record import HostRateLimiter, RetryPolicy, TokenBucket, shared_limiter
from miroenv.web.record.retry import RetriesExhausted, parse_retry_after, send_with_retries


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)


def test_token_bucket_allows_a_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)
    assert bucket.acquire() == pytest.approx(1.0), "waiters queue up behind each other"
    clock.now += 10
    assert bucket.acquire() == 0.0, "tokens refill up to the burst"
    with pytest.raises(ValueError):
        TokenBucket(rate=0)


def test_host_limiter_keeps_one_bucket_per_host_and_is_shared_per_process() -> None:
    clock = FakeClock()
    limiter = HostRateLimiter(rate=1.0, burst=1, clock=clock, sleep=clock.sleep)
    assert limiter.acquire("a.example") == 0.0
    assert limiter.acquire("B.example") == 0.0
    assert limiter.acquire("A.EXAMPLE.") == pytest.approx(1.0)
    assert limiter.bucket("a.example") is limiter.bucket("A.example")
    assert shared_limiter(3.0, 2.0) is shared_limiter(3.0, 2.0)
    assert shared_limiter(3.0, 2.0) is not shared_limiter(4.0, 2.0)


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=lambda: now) == 0.0
    assert (
        parse_retry_after(None) is None
        and parse_retry_after("soon") is None
        and parse_retry_after("") is None
    )


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, max_retry_after=60.0)
    rng = random.Random(0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.delay(retry, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1, "jittered"
    assert policy.delay(1, retry_after=30.0) == 30.0
    assert policy.delay(1, retry_after=600.0) == 60.0


def test_send_with_retries_honours_retry_after_and_gives_up() -> None:
    responses = iter(
        [
            httpx.Response(429, headers={"Retry-After": "3"}),
            httpx.Response(503),
            httpx.Response(200, text="ok"),
        ]
    )
    slept: list[float] = []
    turns: list[int] = []
    policy = RetryPolicy(attempts=4, base_delay=0.5, max_delay=0.5)
    response, attempts = send_with_retries(
        lambda: next(responses), policy, before_attempt=lambda: turns.append(1), sleep=slept.append
    )
    assert response.status_code == 200 and attempts == 3 and len(turns) == 3
    assert slept[0] == 3.0 and 0.25 <= slept[1] <= 0.5

    response, attempts = send_with_retries(lambda: httpx.Response(404), policy, sleep=slept.append)
    assert response.status_code == 404 and attempts == 1, "a 404 is not retried"

    def refuse() -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(RetriesExhausted, match="after 2 attempts"):
        send_with_retries(refuse, RetryPolicy(attempts=2, base_delay=0.0), sleep=slept.append)
    with pytest.raises(RetriesExhausted, match="after 1 attempt"):
        send_with_retries(refuse, RetryPolicy(attempts=3, retry_network_errors=False), sleep=slept.append)
