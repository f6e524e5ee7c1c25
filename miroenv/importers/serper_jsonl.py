"""Recorded Serper searches: JSON Lines, one search per line, replayed exactly for the same query.

Accepted line shapes:

1. A full Serper response: `{"searchParameters": {"q": ..., "gl"?, "hl"?, "location"?, "num"?, "tbs"?,
   "page"?, "type"?}, "organic": [...], ...}`. The request is read from `searchParameters`; the whole object is
   stored as the response.
2. A wrapped record: `{"query" | "q": ..., <request parameters>?, "params"?: {<request parameters>},
   "response" | "result" | "results": <Serper response object, or a bare `organic` list>, "recorded_at"?}`,
   or the same with the list directly under `organic`. Request parameters are `gl`, `hl`, `location`, `num`,
   `tbs`, `page`, `autocorrect`.

`organic` must be a list of objects with a string `link`. Searches of another Serper type (`news`, `images`,
...) and error responses (`{"message": ..., "statusCode": ...}` without results) are skipped and counted. When
the same request (normalized query plus parameters) appears twice, the first line is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from miroenv.importers.base import (
    ImportFormatError,
    ImportReport,
    check_sources,
    day_start,
    snapshot_session,
)
from miroenv.jsonl import iter_jsonl
from miroenv.web.base import SearchRequest

REQUEST_FIELDS = ("gl", "hl", "location", "num", "tbs", "page", "autocorrect")
_RESPONSE_KEYS = ("response", "result", "results")


def _request(query: Any, params: dict[str, Any], path: Path, where: str, field: str) -> SearchRequest:
    """The `SearchRequest` of a line, or `ImportFormatError` naming the bad parameter."""
    if not isinstance(query, str) or not query.strip():
        raise ImportFormatError(path, where, "expected a non-empty query string", field=field)
    kwargs = {key: params[key] for key in REQUEST_FIELDS if params.get(key) is not None}
    try:
        return SearchRequest(q=query, **kwargs)
    except ValidationError as exc:
        error = exc.errors()[0]
        bad = ".".join(str(p) for p in error["loc"])
        raise ImportFormatError(path, where, error["msg"], field=bad) from exc


def _check_organic(organic: Any, path: Path, where: str, prefix: str) -> None:
    """Require a list of result objects, each with a string `link`."""
    if not isinstance(organic, list):
        raise ImportFormatError(path, where, f"expected a list, got {type(organic).__name__}", field=prefix)
    for index, item in enumerate(organic):
        if not isinstance(item, dict):
            raise ImportFormatError(path, where, "expected an object", field=f"{prefix}[{index}]")
        if not isinstance(item.get("link"), str):
            raise ImportFormatError(path, where, "missing or not a string", field=f"{prefix}[{index}].link")


def _parse(record: Any, path: Path, where: str) -> tuple[SearchRequest, dict[str, Any]] | str:
    """(request, response payload) of one line, or the reason to skip it."""
    if not isinstance(record, dict):
        raise ImportFormatError(path, where, f"expected a JSON object, got {type(record).__name__}")
    if "searchParameters" in record:
        params = record["searchParameters"]
        if not isinstance(params, dict):
            raise ImportFormatError(path, where, "expected an object", field="searchParameters")
        request = _request(params.get("q"), params, path, where, "searchParameters.q")
        payload = dict(record)
        search_type = params.get("type")
        prefix = "organic"
    else:
        query_key = "query" if "query" in record else "q"
        extra = record.get("params") or {}
        if not isinstance(extra, dict):
            raise ImportFormatError(path, where, "expected an object", field="params")
        request = _request(record.get(query_key), {**record, **extra}, path, where, query_key)
        response_key = next((k for k in _RESPONSE_KEYS if k in record), None)
        if response_key is None and "organic" not in record:
            raise ImportFormatError(
                path,
                where,
                "no results: expected 'response', 'result', 'results' or 'organic'",
                field="response",
            )
        response = record[response_key] if response_key else record["organic"]
        prefix = response_key or "organic"
        if isinstance(response, list):
            payload = {"organic": response}
        elif isinstance(response, dict):
            payload = dict(response)
            prefix += ".organic"
        else:
            raise ImportFormatError(
                path, where, f"expected an object or a list, got {type(response).__name__}", field=prefix
            )
        nested = payload.get("searchParameters")
        search_type = nested.get("type") if isinstance(nested, dict) else record.get("type")
        payload.setdefault("searchParameters", _search_parameters(request))
    if search_type not in (None, "search"):
        return f"search type {search_type!r} (only web search is replayed)"
    if "organic" not in payload and ("message" in payload or "statusCode" in payload):
        return "error response (no results)"
    _check_organic(payload.get("organic", []), path, where, prefix)
    return request, payload


def _search_parameters(request: SearchRequest) -> dict[str, Any]:
    """Serper's `searchParameters` for a wrapped response that lacks them."""
    params: dict[str, Any] = {"q": request.q, "gl": request.gl, "hl": request.hl}
    for key in ("location", "tbs"):
        if getattr(request, key):
            params[key] = getattr(request, key)
    if request.num != 10:
        params["num"] = request.num
    if request.page != 1:
        params["page"] = request.page
    return {**params, "type": "search", "engine": "google"}


def import_serper_jsonl(
    sources: Sequence[Path], out: Path, *, name: str | None = None, capture_date: str | None = None
) -> ImportReport:
    """Record each search line (shapes: module docstring) with `SnapshotWriter.add_search`."""
    paths = check_sources(sources)
    report = ImportReport(
        format="serper-jsonl", snapshot=str(out), created=True, sources=[str(p) for p in paths]
    )
    seen: set[str] = set()
    with snapshot_session(out, report, name=name, capture_date=capture_date) as writer:
        default_time = day_start(writer.manifest.capture_date)
        for path in paths:
            for lineno, record in iter_jsonl(path):
                parsed = _parse(record, path, f"line {lineno}")
                if isinstance(parsed, str):
                    report.skip(parsed)
                    continue
                request, payload = parsed
                if request.key() in seen:
                    report.skip("duplicate query (first kept)")
                    continue
                seen.add(request.key())
                recorded_at = record.get("recorded_at")
                writer.add_search(
                    request,
                    payload,
                    recorded_at=recorded_at if isinstance(recorded_at, str) else default_time,
                )
                report.searches += 1
    return report
