"""Page reading: `scrape_and_extract_info` (the passages answering a question) and a paged plain `scrape`."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, WithJsonSchema

from miroenv.tools.base import EpisodeContext, InfraFailure, Tool, ToolArguments, ToolFailure
from miroenv.tools.search import dump_tool_json, is_blocked_link
from miroenv.web.base import NotInSnapshotError, Page
from miroenv.web.llm_extract import ExtractorError, LLMExtractor
from miroenv.web.passages import best_passages

SCRAPE_AND_EXTRACT_DESCRIPTION = """
    Scrape content from a URL, including web pages, PDFs, code files, and other supported resources, and extract meaningful information using an LLM.
    If you need to extract information from a PDF, please use this tool.

    Args:
        url (str): The URL to scrape content from. Supports various types of URLs such as web pages, PDFs, raw text/code files (e.g., GitHub, Gist), and similar sources.
        info_to_extract (str): The specific types of information to extract (usually a question)
        custom_headers (Dict[str, str]): Additional headers to include in the scraping request

    Returns:
        Dict[str, Any]: A dictionary containing:
            - success (bool): Whether the operation was successful
            - url (str): The original URL
            - extracted_info (str): The extracted information
            - error (str): Error message if the operation failed
            - scrape_stats (Dict): Statistics about the scraped content
            - model_used (str): The model used for summarization
            - tokens_used (int): Number of tokens used (if available)
    """

MAX_SCRAPE_CHARS = 102_400 * 4
"""MiroThinker passes at most this many characters of a page to its extractor."""

DETERMINISTIC_EXTRACTOR = "miroenv-bm25-passages"

HF_SCRAPE_REFUSAL = "You are trying to scrape a Hugging Face dataset for answers, please do not use the scrape tool for this purpose."


class ScrapeAndExtractInfoArgs(ToolArguments):
    """Arguments of `scrape_and_extract_info` (schema identical to MiroThinker's FastMCP listing)."""

    model_config = ConfigDict(title="scrape_and_extract_infoArguments")

    url: str
    info_to_extract: str
    custom_headers: Annotated[
        dict[str, str] | None,
        WithJsonSchema({"additionalProperties": {"type": "string"}, "type": "object"}),
    ] = None


def _failure(url: str, error: str) -> str:
    return dump_tool_json(
        {
            "success": False,
            "url": url,
            "extracted_info": "",
            "error": error,
            "scrape_stats": {},
            "tokens_used": 0,
        }
    )


def fetch_page(ctx: EpisodeContext, url: str) -> Page:
    """The snapshot page for `url`, or `ToolFailure` carrying the not-in-snapshot message."""
    try:
        return ctx.web.page(url)
    except NotInSnapshotError as exc:
        raise ToolFailure(str(exc)) from exc


class ScrapeAndExtractInfo(Tool[ScrapeAndExtractInfoArgs]):
    """Reads a page from the snapshot and returns the passages that best match `info_to_extract`."""

    name = "scrape_and_extract_info"
    description = SCRAPE_AND_EXTRACT_DESCRIPTION
    arguments_model = ScrapeAndExtractInfoArgs

    def __init__(self, max_extract_chars: int = 4000, llm_extractor: LLMExtractor | None = None) -> None:
        self.max_extract_chars = max_extract_chars
        self.llm_extractor = llm_extractor

    def run(self, args: ScrapeAndExtractInfoArgs, ctx: EpisodeContext) -> str:
        url = args.url.strip()
        if is_blocked_link(url):
            raise ToolFailure(_failure(url, HF_SCRAPE_REFUSAL))
        if not url:
            raise ToolFailure(_failure(url, "Scraping failed: URL cannot be empty"))
        try:
            page = ctx.web.page(url)
        except NotInSnapshotError as exc:
            raise ToolFailure(_failure(url, f"Scraping failed: {exc}")) from exc
        content = page.text
        shown = content[:MAX_SCRAPE_CHARS]
        if self.llm_extractor is None:
            extracted = "\n\n".join(
                best_passages(shown, args.info_to_extract, max_chars=self.max_extract_chars)
            )
            model, tokens = DETERMINISTIC_EXTRACTOR, 0
        else:
            extracted, model, tokens = self._llm_extract(ctx, url, page, shown, args.info_to_extract)
        return dump_tool_json(
            {
                "success": True,
                "url": url,
                "extracted_info": extracted,
                "error": "",
                "scrape_stats": {
                    "line_count": content.count("\n") + 1,
                    "char_count": len(content),
                    "last_char_line": shown.count("\n") + 1,
                    "all_content_displayed": len(content) <= MAX_SCRAPE_CHARS,
                },
                "model_used": model,
                "tokens_used": tokens,
            }
        )

    def may_hang(self, ctx: EpisodeContext) -> bool:
        """Live pages or a live extractor endpoint can hang; replayed pages and recorded answers cannot."""
        return ctx.web.live or (self.llm_extractor is not None and self.llm_extractor.live)

    def _llm_extract(
        self, ctx: EpisodeContext, url: str, page: Page, content: str, info: str
    ) -> tuple[str, str, int]:
        """A recorded extraction from the snapshot, else the extractor's (cached or live) answer."""
        assert self.llm_extractor is not None
        recorded = ctx.web.extraction(page.url, info, self.llm_extractor.model)
        if recorded is None:
            before = self.llm_extractor.calls
            try:
                recorded = self.llm_extractor.extract(page.url, content, info)
            except ExtractorError as exc:
                raise InfraFailure(_failure(url, f"Jina Scrape and Extract Info: {exc}")) from exc
            finally:
                ctx.add_cost("extractor_requests", self.llm_extractor.calls - before)
            if self.llm_extractor.calls > before:
                ctx.add_cost("extractor_tokens", recorded.tokens)
        return recorded.text, recorded.model, recorded.tokens


class ScrapeArgs(ToolArguments):
    """Arguments of the plain `scrape` tool."""

    url: str = Field(description="The URL of the page to read.")
    page: int = Field(default=1, ge=1, description="Which part of a long page to read (1-based).")


class Scrape(Tool[ScrapeArgs]):
    """Returns a page's whole extracted text (Markdown), in numbered parts of bounded length."""

    name = "scrape"
    description = (
        "Read a web page and return its main text as Markdown. Long pages are split into numbered parts; "
        "ask for the next part with `page`."
    )
    arguments_model = ScrapeArgs

    def __init__(self, part_chars: int = 20_000) -> None:
        self.part_chars = part_chars

    def run(self, args: ScrapeArgs, ctx: EpisodeContext) -> str:
        page = fetch_page(ctx, args.url.strip())
        text = page.text
        parts = max(1, -(-len(text) // self.part_chars))
        if args.page > parts:
            raise ToolFailure(f"[ERROR]: page {args.page} does not exist: {page.url} has {parts} part(s).")
        body = text[(args.page - 1) * self.part_chars : args.page * self.part_chars]
        header = f"Title: {page.title}\nURL: {page.final_url}\nPart {args.page} of {parts}\n\n"
        return header + body
