"""The optional LLM extractor for `scrape_and_extract_info`, as MiroThinker does it, made replayable.

It asks an OpenAI-compatible chat-completions endpoint with MiroThinker's extraction prompt. Answers are
cached on disk (diskcache) so the same question costs one call, and recorded into a snapshot so later
replays return them without the endpoint. Without a `base_url` it only replays.
"""

from __future__ import annotations

import threading
from pathlib import Path

import diskcache

from miroenv.budgets import CallBudget
from miroenv.llm import ChatEndpointError, configured_client
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


class ExtractorError(ChatEndpointError):
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
        budget: CallBudget | None = None,
    ) -> None:
        self.model = model
        self.cache = diskcache.Cache(str(cache_dir)) if cache_dir is not None else None
        self.record_to = Path(record_to) if record_to is not None else None
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._lock = threading.Lock()
        self._endpoint = configured_client(
            "EXTRACTOR",
            base_url,
            api_key,
            label="extractor endpoint",
            error=ExtractorError,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            budget=budget,
        )
        self.base_url = self._endpoint.base_url if self._endpoint is not None else None

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
        assert self._endpoint is not None, "extract() asks the endpoint only when one is configured"
        return self._endpoint.complete(
            prompt, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )

    @property
    def calls(self) -> int:
        """Requests sent to the endpoint so far (retries included)."""
        return self._endpoint.requests if self._endpoint is not None else 0

    def close(self) -> None:
        """Close the HTTP client and the disk cache."""
        if self._endpoint is not None:
            self._endpoint.close()
        if self.cache is not None:
            self.cache.close()
