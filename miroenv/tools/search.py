"""`google_search`: Serper-shaped web search answered from the snapshot (recorded queries, then the index)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import ConfigDict, WithJsonSchema

from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolArguments, ToolFailure
from miroenv.web.base import SearchRequest
from miroenv.web.index import SnapshotIndexError

OptionalInt = Annotated[int | None, WithJsonSchema({"type": "integer"})]
OptionalStr = Annotated[str | None, WithJsonSchema({"type": "string"})]
OptionalBool = Annotated[bool | None, WithJsonSchema({"type": "boolean"})]

BLOCKED_LINK_PARTS = ("huggingface.co/datasets", "huggingface.co/spaces")
"""Links MiroThinker drops from results: they can leak benchmark answers."""

GOOGLE_SEARCH_DESCRIPTION = """
    Tool to perform web searches via Serper API and retrieve rich results.

    It is able to retrieve organic search results, people also ask,
    related searches, and knowledge graph.

    Args:
        q: Search query string
        gl: Optional region code for search results in ISO 3166-1 alpha-2 format (e.g., 'us')
        hl: Optional language code for search results in ISO 639-1 format (e.g., 'en')
        location: Optional location for search results (e.g., 'SoHo, New York, United States', 'California, United States')
        num: Number of results to return (default: 10)
        tbs: Time-based search filter ('qdr:h' for past hour, 'qdr:d' for past day, 'qdr:w' for past week, 'qdr:m' for past month, 'qdr:y' for past year)
        page: Page number of results to return (default: 1)
        autocorrect: Whether to autocorrect spelling in query

    Returns:
        Dictionary containing search results and metadata.
    """

REPEAT_STATE_KEY = "google_search.queries"


class GoogleSearchArgs(ToolArguments):
    """Arguments of `google_search` (schema identical to MiroThinker's FastMCP listing)."""

    model_config = ConfigDict(title="google_searchArguments")

    q: str
    gl: str = "us"
    hl: str = "en"
    location: OptionalStr = None
    num: OptionalInt = None
    tbs: OptionalStr = None
    page: OptionalInt = None
    autocorrect: OptionalBool = None


def is_blocked_link(link: str) -> bool:
    """True for Hugging Face dataset and space links, which MiroThinker hides from search results."""
    return any(part in link for part in BLOCKED_LINK_PARTS)


def dump_tool_json(payload: Any) -> str:
    """How MiroThinker's MCP servers serialize a dict result: 2-space indented JSON, non-ASCII kept."""
    return json.dumps(payload, ensure_ascii=False, indent=2)


class GoogleSearch(Tool[GoogleSearchArgs]):
    """Web search over the snapshot, answering in Serper's JSON shape."""

    name = "google_search"
    description = GOOGLE_SEARCH_DESCRIPTION
    arguments_model = GoogleSearchArgs

    def __init__(self, reject_repeats: bool = True) -> None:
        self.reject_repeats = reject_repeats

    def run(self, args: GoogleSearchArgs, ctx: EpisodeContext) -> str:
        used: set[str] = ctx.state.setdefault(REPEAT_STATE_KEY, set())
        if self.reject_repeats and args.q in used:
            raise ToolFailure(
                f"The query '{args.q}' has already been used in previous google_search. "
                "Please try a different query or keyword."
            )
        query = args.q.strip()
        if not query:
            return dump_tool_json(
                {"success": False, "error": "Search query 'q' is required and cannot be empty", "results": []}
            )
        request = SearchRequest(
            q=query,
            gl=args.gl,
            hl=args.hl,
            location=args.location,
            num=args.num if args.num is not None else 10,
            tbs=args.tbs,
            page=args.page if args.page is not None else 1,
            autocorrect=args.autocorrect,
        )
        try:
            response = ctx.web.search(request)
        except SnapshotIndexError as exc:
            raise InfraFailure(f"[ERROR]: search is unavailable: {exc}") from exc
        if response.source == "live":
            ctx.add_cost("search_requests", 1)
        organic = [
            item
            for item in response.payload.get("organic", [])
            if not is_blocked_link(str(item.get("link", "")))
        ]
        if request.num > 0:
            organic = organic[: request.num]
        used.add(args.q)
        return dump_tool_json(
            {"organic": organic, "searchParameters": response.payload.get("searchParameters", {})}
        )
