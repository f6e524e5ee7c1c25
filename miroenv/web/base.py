"""The `Web` interface tools read from, and the models it speaks: search requests, responses, pages, files."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from miroenv.protocol.text import utf8
from miroenv.web.urls import match_key


def normalize_query(query: str) -> str:
    """The key a search query is recorded under: Unicode NFKC, case-folded, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", query).casefold())
    return " ".join(folded.split())


class SearchRequest(BaseModel):
    """A Serper-style search request (the `google_search` arguments that select results)."""

    model_config = ConfigDict(frozen=True)

    q: str
    gl: str = "us"
    hl: str = "en"
    location: str | None = None
    num: int = 10
    tbs: str | None = None
    page: int = 1
    autocorrect: bool | None = None

    def key(self) -> str:
        """Lookup key: the normalized query plus the parameters that change which results come back.

        `num` is not part of the key (it only cuts the list); `autocorrect` does not change recorded results.
        """
        params = {
            "gl": self.gl.strip().lower(),
            "hl": self.hl.strip().lower(),
            "location": (self.location or "").strip() or None,
            "page": self.page,
            "tbs": (self.tbs or "").strip() or None,
        }
        kept = {k: v for k, v in params.items() if v is not None}
        return normalize_query(self.q) + "\x1f" + json.dumps(kept, sort_keys=True, separators=(",", ":"))

    def default_page_key(self) -> str:
        """Key of the same query under default locale and first page: the fallback for partial matches."""
        return SearchRequest(q=self.q).key()


class SearchResponse(BaseModel):
    """Serper-shaped search results plus where they came from."""

    model_config = ConfigDict(frozen=True)

    payload: dict[str, Any] = Field(description="The Serper JSON (`organic`, `searchParameters`, ...).")
    source: Literal["recorded", "index", "empty", "live"]
    """`live`: fetched from the live search API just now (and recorded); the others are replays."""


class Page(BaseModel):
    """A captured web page: status, final URL, title, raw body and the text extracted from it at capture."""

    model_config = ConfigDict(frozen=True)

    url: str
    final_url: str
    status: int = 200
    title: str = ""
    content_type: str = "text/html"
    body: bytes | None = Field(default=None, description="Raw response body as captured, if kept.")
    text: str = Field(default="", description="Extracted Markdown/text; what tools show.")
    extractor: str = Field(
        default="provided", description="Name and version of the extractor that made `text`."
    )
    captured_at: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class FileEntry(BaseModel):
    """A downloadable file kept in the snapshot."""

    model_config = ConfigDict(frozen=True)

    url: str
    data: bytes
    content_type: str = "application/octet-stream"
    captured_at: str | None = None


def extraction_key(url: str, info: str, model: str) -> str:
    """The key of a recorded extraction: the page's match key, the question and the model, hashed."""
    raw = json.dumps([match_key(url), info, model], ensure_ascii=False)
    return hashlib.sha256(utf8(raw)).hexdigest()


def tool_call_key(server: str | None, tool: str, arguments: Mapping[str, Any]) -> str:
    """The key of a recorded tool result: server, tool and arguments (canonical JSON), hashed.

    Total on any text: arguments holding lone surrogates (decoded from JSON escapes) get a key of their own.
    """
    raw = json.dumps(
        [server or "", tool, arguments], sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(utf8(raw)).hexdigest()


class ToolResultRecord(BaseModel):
    """A tool's result text exactly as a recorded run received it (imported agent logs replay from these)."""

    model_config = ConfigDict(frozen=True)

    server: str | None
    tool: str
    arguments: dict[str, Any]
    result: str
    error_kind: Literal["tool", "infra"] | None = None
    recorded_at: str | None = None

    def key(self) -> str:
        """The record's lookup key."""
        return tool_call_key(self.server, self.tool, self.arguments)


class ExtractionRecord(BaseModel):
    """An LLM extractor's answer for one page and one `info_to_extract`, recorded for deterministic replay."""

    model_config = ConfigDict(frozen=True)

    url: str
    info: str
    model: str
    text: str
    tokens: int = 0
    recorded_at: str | None = None

    def key(self) -> str:
        """The record's lookup key."""
        return extraction_key(self.url, self.info, self.model)


class NotInSnapshotError(LookupError):
    """A URL the snapshot does not hold; the message is shown to the model."""

    def __init__(self, url: str, kind: str = "page", suggestion: str | None = None) -> None:
        self.url = url
        self.suggestion = suggestion
        message = f"The {kind} {url!r} is not in this snapshot of the web."
        if suggestion:
            message += f" The closest URL this snapshot holds on that site is {suggestion!r}."
        super().__init__(message)


class Web(ABC):
    """What tools see of the web: recorded or indexed search, pages and files. Implementations never raise
    for a miss except `NotInSnapshotError`."""

    @property
    @abstractmethod
    def name(self) -> str:
        """A short identifier (the snapshot name)."""

    @property
    @abstractmethod
    def content_hash(self) -> str:
        """A hash identifying the content, recorded in trajectories."""

    @property
    @abstractmethod
    def capture_date(self) -> str:
        """The date (YYYY-MM-DD) the web was captured; the default `Today is:` date of prompts."""

    @abstractmethod
    def search(self, request: SearchRequest) -> SearchResponse:
        """Results for `request`; an empty `organic` list when there is nothing to return."""

    @abstractmethod
    def page(self, url: str) -> Page:
        """The page at `url`, or `NotInSnapshotError`."""

    @abstractmethod
    def file(self, url: str) -> FileEntry:
        """The file at `url`, or `NotInSnapshotError`."""

    live: bool = False
    """True when lookups may go to the network (recording) and so may hang; replay never does."""

    def extraction(self, url: str, info: str, model: str) -> ExtractionRecord | None:
        """A recorded LLM extraction (default: this web records none)."""
        return None

    def tool_result(
        self, server: str | None, tool: str, arguments: Mapping[str, Any]
    ) -> ToolResultRecord | None:
        """A recorded result for exactly this call (default: this web records none)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release any handles (default: nothing to release)."""
