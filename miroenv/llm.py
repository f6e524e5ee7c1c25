"""One client for OpenAI-compatible chat-completions endpoints, shared by the LLM extractor and the judge."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel, Field

from miroenv.budgets import BudgetExceededError, CallBudget

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Statuses worth retrying (rate limits, overload, gateway trouble); other 4xx fail at once."""


class ChatEndpointError(RuntimeError):
    """The endpoint could not give an answer (down, refusing, malformed reply) after retries."""


class ChatEndpointUnavailableError(ChatEndpointError):
    """Connection errors or retryable statuses (`RETRY_STATUSES`) outlasted every retry: the endpoint looks down."""


def check_base_url(base_url: str) -> str:
    """`base_url` if it is an absolute http(s) URL with a host and a valid port; `ValueError` saying why not."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{base_url!r} is not a valid URL ({exc})") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError(f"{base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000/v1")
    if not url.host:
        raise ValueError(f"{base_url!r} has no host, e.g. http://127.0.0.1:8000/v1")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"{base_url!r} has port {url.port}, outside 1-65535")
    return base_url


class ChatReply(BaseModel):
    """One assistant reply: its text, any OpenAI tool calls, why generation stopped and the token usage."""

    content: str | None
    tool_calls: list[Any] | None = Field(
        default=None, description="As the endpoint sent them; the env reports malformed entries to the model."
    )
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    attempts: int = Field(default=1, description="HTTP requests it took, retries included.")


class ChatCompletionsClient:
    """Sends chat completions with retries and exponential backoff (honouring `Retry-After`); counts requests.

    `label` names the endpoint in error messages ("judge endpoint ..."); `error` is the exception type
    raised, so each caller keeps its own error class, and `unavailable_error` (default `error`) the one raised
    when connection errors or `RETRY_STATUSES` outlast the retries; `budget` (shared by all processes of the
    machine) rate-limits and caps the requests. Connection errors and `RETRY_STATUSES` are retried `retries`
    times, waiting `backoff * 2**n` seconds (at most `max_backoff`) or what the server's `Retry-After` asks (at
    most `max_retry_after`). Once `cancel` is set, no further request or retry is made: `error` is raised at
    once. An invalid URL fails at once. One HTTP client is shared by every thread; `close()` closes it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_retry_after: float = 120.0,
        label: str = "chat endpoint",
        error: type[Exception] = ChatEndpointError,
        unavailable_error: type[Exception] | None = None,
        budget: CallBudget | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.label = label
        self.error = error
        self.unavailable_error = unavailable_error or error
        self.budget = budget
        self.cancel = cancel
        self.requests = 0
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    def complete(self, prompt: str, **params: Any) -> tuple[str, int]:
        """The reply text and total tokens for a single user message; `params` go into the request body."""
        reply = self.chat([{"role": "user", "content": prompt}], **params)
        if not isinstance(reply.content, str):
            raise self.error(f"{self.label} sent a reply without text content")
        return reply.content, reply.total_tokens

    def chat(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatReply:
        """The assistant's reply to a whole conversation; `params` (None values dropped) go into the body."""
        body: dict[str, Any] = {"messages": [dict(message) for message in messages]}
        body.update({key: value for key, value in params.items() if value is not None})
        data, attempts = self._post(body)
        try:
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
            tool_calls = message.get("tool_calls") or None
            usage = data.get("usage") or {}
            reply = ChatReply(
                content=content if isinstance(content, str) or content is None else str(content),
                tool_calls=list(tool_calls) if tool_calls is not None else None,
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                total_tokens=int(usage.get("total_tokens") or 0),
                attempts=attempts,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self.error(f"{self.label} sent an unusable reply: {exc}") from exc
        return reply

    def _post(self, body: dict[str, Any]) -> tuple[Any, int]:
        """POST `body` to `/chat/completions` until a usable status or the retries run out; (JSON, attempts)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        last_error = "no attempt made"
        wait = 0.0
        for attempt in range(self.retries + 1):
            if attempt:
                self._wait(wait)
            wait = min(self.backoff * 2**attempt, self.max_backoff)
            if self.budget is not None:
                try:
                    self.budget.before_call()
                except BudgetExceededError as exc:
                    raise self.error(f"{self.label}: {exc}") from exc
            http = self._http()
            try:
                response = http.post(url, json=body, headers=headers)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise self.error(f"{self.label} has an unusable URL {url!r}: {exc}") from exc
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            except RuntimeError as exc:
                if not http.is_closed:
                    raise
                raise self.error(f"{self.label}: the client was closed during the request") from exc
            if response.status_code in RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                # imported here: miroenv.web.record imports the tools, which import this module
                from miroenv.web.record.retry import parse_retry_after

                asked = parse_retry_after(response.headers.get("retry-after"))
                if asked is not None:
                    wait = min(asked, self.max_retry_after)
                continue
            if response.status_code >= 400:
                raise self.error(f"{self.label} answered HTTP {response.status_code}: {response.text[:300]}")
            try:
                return response.json(), attempt + 1
            except ValueError as exc:
                raise self.error(f"{self.label} sent an unusable reply: {exc}") from exc
        raise self.unavailable_error(f"{self.label} failed after {self.retries + 1} attempts: {last_error}")

    def _wait(self, seconds: float) -> None:
        """Sleep before a retry; return early and raise `error` when `cancel` is set meanwhile."""
        if self.cancel is None:
            time.sleep(seconds)
        elif self.cancel.wait(seconds):
            raise self.error(f"{self.label}: cancelled")

    def _http(self) -> httpx.Client:
        """The shared HTTP client (made on first use, under the lock), counting the request about to be sent."""
        with self._lock:
            if self.cancel is not None and self.cancel.is_set():
                raise self.error(f"{self.label}: cancelled")
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            self.requests += 1
            return self._client

    def close(self) -> None:
        """Close the HTTP connection pool (a later request opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def configured_client(
    env_prefix: str,
    base_url: str | None,
    api_key: str | None,
    *,
    label: str,
    error: type[Exception],
    timeout: float,
    retries: int,
    backoff: float,
    budget: CallBudget | None,
) -> ChatCompletionsClient | None:
    """The client for an optional endpoint, or None when none is configured.

    `base_url` and `api_key` fall back to `MIROENV_<env_prefix>_BASE_URL` and `MIROENV_<env_prefix>_API_KEY`
    (then `OPENAI_API_KEY`), as the judge and the LLM extractor document.
    """
    url = (base_url or os.environ.get(f"MIROENV_{env_prefix}_BASE_URL") or "").rstrip("/")
    if not url:
        return None
    key = api_key or os.environ.get(f"MIROENV_{env_prefix}_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return ChatCompletionsClient(
        url,
        api_key=key,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        label=label,
        error=error,
        budget=budget,
    )
