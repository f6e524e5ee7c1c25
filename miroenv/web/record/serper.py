"""A client for Serper-compatible search APIs: `POST {base_url}/search` with an `X-API-KEY` header."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import httpx

from miroenv._version import __version__
from miroenv.budgets import BudgetExceededError, CallBudget
from miroenv.web.base import SearchRequest
from miroenv.web.record.errors import RecordingError
from miroenv.web.record.ratelimit import HostRateLimiter
from miroenv.web.record.retry import RetriesExhausted, RetryPolicy, send_with_retries

SERPER_BASE_URL = "https://google.serper.dev"
BASE_URL_ENV = "MIROENV_SERPER_BASE_URL"
API_KEY_ENV = "SERPER_API_KEY"
MIN_RECORDED_RESULTS = 10
"""Searches are recorded with at least this many results: a replay asking for more than a recording that
asked for fewer would otherwise get the short list (`num` only cuts recorded lists)."""

DROPPED_RESPONSE_KEYS = frozenset({"credits"})
"""Account details in Serper responses that do not belong in a snapshot."""


def serper_payload(request: SearchRequest, min_results: int = MIN_RECORDED_RESULTS) -> dict[str, Any]:
    """The JSON body Serper takes for `request`: q, gl, hl, num, page, and location/tbs/autocorrect when set."""
    payload: dict[str, Any] = {
        "q": request.q,
        "gl": request.gl,
        "hl": request.hl,
        "num": max(request.num, min_results),
        "page": request.page,
    }
    if request.location:
        payload["location"] = request.location
    if request.tbs:
        payload["tbs"] = request.tbs
    if request.autocorrect is not None:
        payload["autocorrect"] = request.autocorrect
    return payload


class SerperClient:
    """Thread-safe Serper search client with retries, a per-host rate limit and timeouts.

    The base URL comes from the argument, else `MIROENV_SERPER_BASE_URL`, else Serper's own; the key from the
    argument, else `SERPER_API_KEY`. The key is required only by Serper itself (compatible servers may not
    need one). The base URL is operator configuration, so the SSRF guard does not apply to it.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limiter: HostRateLimiter | None = None,
        transport: httpx.BaseTransport | None = None,
        budget: CallBudget | None = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or SERPER_BASE_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self.retry = retry or RetryPolicy()
        self.rate_limiter = rate_limiter
        self.budget = budget
        """Machine-wide rate limit and spend cap on search calls, shared by every process."""
        self._host = urlsplit(self.base_url).hostname or ""
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            trust_env=False,
            headers={"User-Agent": f"miroenv/{__version__} (snapshot recorder)"},
        )

    def search(self, request: SearchRequest) -> dict[str, Any]:
        """The Serper JSON for `request` (minus account details); `RecordingError` when it cannot be had."""
        if not self.api_key and self.base_url == SERPER_BASE_URL:
            raise RecordingError(
                f"Search failed: no Serper API key (set {API_KEY_ENV}, or point {BASE_URL_ENV} at a "
                "Serper-compatible server)."
            )
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-KEY"] = self.api_key
        payload = serper_payload(request)
        what = f"search {request.q!r}"

        def send() -> httpx.Response:
            return self._client.post(f"{self.base_url}/search", json=payload, headers=headers)

        def wait_turn() -> None:
            if self.rate_limiter is not None:
                self.rate_limiter.acquire(self._host)
            if self.budget is not None:
                try:
                    self.budget.before_call()
                except BudgetExceededError as exc:
                    raise RecordingError(f"Search failed: {exc}") from exc

        try:
            response, attempts = send_with_retries(send, self.retry, before_attempt=wait_turn, what=what)
        except RetriesExhausted as exc:
            raise RecordingError(f"Search failed: {what}: {exc}") from exc
        if response.status_code in (401, 403):
            raise RecordingError(
                f"Search failed: the search API refused the key (HTTP {response.status_code}); check {API_KEY_ENV}."
            )
        if response.status_code != 200:
            raise RecordingError(
                f"Search failed: {what}: HTTP {response.status_code} after {attempts} attempt"
                f"{'s' * (attempts != 1)}."
            )
        try:
            data = response.json()
        except ValueError as exc:
            raise RecordingError(f"Search failed: {what}: the search API answered invalid JSON") from exc
        if not isinstance(data, dict):
            raise RecordingError(f"Search failed: {what}: the search API answered {type(data).__name__}")
        return {key: value for key, value in data.items() if key not in DROPPED_RESPONSE_KEYS}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()
