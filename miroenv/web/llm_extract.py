"""The optional LLM extractor for `scrape_and_extract_info`, as MiroThinker does it, made replayable.

It asks an OpenAI-compatible chat-completions endpoint with MiroThinker's extraction prompt. Answers are
cached on disk (diskcache) so the same question costs one call, and recorded into a snapshot so later
replays return them without the endpoint. Without a `base_url` it only replays.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import diskcache
import httpx

from miroenv.web.base import ExtractionRecord, extraction_key

EXTRACTION_PROMPT = """You are given a piece of content and the requirement of information to extract. Your task is to extract the information specifically requested. Be precise and focus exclusively on the requested information.

INFORMATION TO EXTRACT:
{info}

INSTRUCTIONS:
1. Extract the information relevant to the focus above.
2. If the exact information is not found, extract the most closely related details.
3. Be specific and include exact details when available.
4. Clearly organize the extracted information for easy understanding.
5. Do not include general summaries or unrelated content.

CONTENT TO ANALYZE:
{content}

EXTRACTED INFORMATION:"""

MAX_CONTENT_CHARS = 102_400 * 4
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class ExtractorError(RuntimeError):
    """The endpoint could not give an answer (down, refusing, malformed reply) after retries."""


class LLMExtractor:
    """Extracts `info_to_extract` from page text with an LLM; cached on disk and recordable into a snapshot.

    Args:
        model: the model name sent to the endpoint, and part of every cache/record key.
        base_url: the endpoint's base URL (`.../v1`); None (and no `MIROENV_EXTRACTOR_BASE_URL`) replays only.
        api_key: bearer token (default: `MIROENV_EXTRACTOR_API_KEY` or `OPENAI_API_KEY`).
        cache_dir: where answers are cached on disk (None: no disk cache).
        record_to: a snapshot directory to record every new answer into.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path | None = None,
        record_to: str | Path | None = None,
        timeout: float = 120.0,
        max_tokens: int = 8192,
        temperature: float = 1.0,
        retries: int = 3,
        backoff: float = 1.0,
    ) -> None:
        self.model = model
        self.base_url = (base_url or os.environ.get("MIROENV_EXTRACTOR_BASE_URL") or "").rstrip("/") or None
        self.api_key = (
            api_key or os.environ.get("MIROENV_EXTRACTOR_API_KEY") or os.environ.get("OPENAI_API_KEY")
        )
        self.cache = diskcache.Cache(str(cache_dir)) if cache_dir is not None else None
        self.record_to = Path(record_to) if record_to is not None else None
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.backoff = backoff
        self.calls = 0
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    @property
    def live(self) -> bool:
        """True when an endpoint is configured (otherwise only recorded or cached answers are returned)."""
        return self.base_url is not None

    def cached(self, url: str, info: str) -> ExtractionRecord | None:
        """A disk-cached answer, if any."""
        if self.cache is None:
            return None
        value = self.cache.get(extraction_key(url, info, self.model))
        return ExtractionRecord.model_validate(value) if isinstance(value, dict) else None

    def extract(self, url: str, content: str, info: str) -> ExtractionRecord:
        """The answer for (url, info): from the disk cache, else from the endpoint (then cached and recorded)."""
        hit = self.cached(url, info)
        if hit is not None:
            return hit
        if not self.live:
            raise ExtractorError(f"no recorded extraction for {url!r} and no extractor endpoint configured")
        text, tokens = self._complete(
            EXTRACTION_PROMPT.format(info=info, content=content[:MAX_CONTENT_CHARS])
        )
        record = ExtractionRecord(url=url, info=info, model=self.model, text=text, tokens=tokens)
        if self.cache is not None:
            self.cache.set(record.key(), record.model_dump())
        if self.record_to is not None:
            self._record(record)
        return record

    def _record(self, record: ExtractionRecord) -> None:
        from miroenv.web.snapshot import SnapshotWriter

        with self._lock, SnapshotWriter(self.record_to) as writer:  # type: ignore[arg-type]
            writer.add_extraction(record)

    def _complete(self, prompt: str) -> tuple[str, int]:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        last_error = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                self.calls += 1
                response = self._client.post(f"{self.base_url}/chat/completions", json=body, headers=headers)
            except httpx.HTTPError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUSES:
                last_error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise ExtractorError(
                    f"extractor endpoint answered HTTP {response.status_code}: {response.text[:300]}"
                )
            try:
                data = response.json()
                text = data["choices"][0]["message"]["content"]
                tokens = int((data.get("usage") or {}).get("total_tokens") or 0)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ExtractorError(f"extractor endpoint sent an unusable reply: {exc}") from exc
            if not isinstance(text, str):
                raise ExtractorError("extractor endpoint sent a reply without text content")
            return text, tokens
        raise ExtractorError(f"extractor endpoint failed after {self.retries + 1} attempts: {last_error}")

    def close(self) -> None:
        """Close the HTTP client and the disk cache."""
        if self._client is not None:
            self._client.close()
        if self.cache is not None:
            self.cache.close()
