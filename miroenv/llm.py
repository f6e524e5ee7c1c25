"""One client for OpenAI-compatible chat-completions endpoints, shared by the LLM extractor and the judge."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from miroenv.budgets import BudgetExceededError, CallBudget

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Statuses worth retrying (rate limits, overload, gateway trouble); other 4xx fail at once."""


class ChatEndpointError(RuntimeError):
    """The endpoint could not give an answer (down, refusing, malformed reply) after retries."""


class ChatCompletionsClient:
    """Sends one-message chat completions with retries and exponential backoff; counts requests.

    `label` names the endpoint in error messages ("judge endpoint ..."); `error` is the exception type
    raised, so each caller keeps its own error class; `budget` (shared by all processes of the machine)
    rate-limits and caps the requests.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        label: str = "chat endpoint",
        error: type[Exception] = ChatEndpointError,
        budget: CallBudget | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.label = label
        self.error = error
        self.budget = budget
        self.requests = 0
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    def complete(self, prompt: str, **params: Any) -> tuple[str, int]:
        """The reply text and total tokens for a single user message; `params` go into the request body."""
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
        body.update({key: value for key, value in params.items() if value is not None})
        last_error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            if self.budget is not None:
                try:
                    self.budget.before_call()
                except BudgetExceededError as exc:
                    raise self.error(f"{self.label}: {exc}") from exc
            try:
                with self._lock:
                    self.requests += 1
                response = self._client.post(f"{self.base_url}/chat/completions", json=body, headers=headers)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise self.error(f"{self.label} answered HTTP {response.status_code}: {response.text[:300]}")
            try:
                data = response.json()
                text = data["choices"][0]["message"]["content"]
                tokens = int((data.get("usage") or {}).get("total_tokens") or 0)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise self.error(f"{self.label} sent an unusable reply: {exc}") from exc
            if not isinstance(text, str):
                raise self.error(f"{self.label} sent a reply without text content")
            return text, tokens
        raise self.error(f"{self.label} failed after {self.retries + 1} attempts: {last_error}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None
