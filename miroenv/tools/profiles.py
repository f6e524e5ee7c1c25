"""Tool profiles: which servers and tools an episode offers, in which call format, with which prompts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from miroenv.protocol.base import ToolCallFormat, ToolSpec
from miroenv.protocol.prompts import (
    render_generic_system_prompt,
    render_mirothinker_system_prompt,
    render_summary_prompt,
)
from miroenv.tasks import Task
from miroenv.tools.base import ToolServer
from miroenv.tools.python import (
    CreateSandbox,
    DownloadFileFromInternetToSandbox,
    DownloadFileFromSandboxToLocal,
    RunCommand,
    RunPythonCode,
    UploadFileFromLocalToSandbox,
)
from miroenv.tools.runner import ToolRouter
from miroenv.tools.scrape import Scrape, ScrapeAndExtractInfo
from miroenv.tools.search import GoogleSearch
from miroenv.web.llm_extract import LLMExtractor

MIROTHINKER_TASK_SUFFIX = "\nYou should follow the format instruction in the request strictly and wrap the final answer in \\boxed{}."


@dataclass(frozen=True)
class SamplingDefaults:
    """The chat-completion sampling a profile's model was evaluated with; None leaves the server's default."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    """New tokens per reply."""


MIROTHINKER_V1_SAMPLING = SamplingDefaults(temperature=1.0, top_p=0.95, max_tokens=16_384)
"""MiroThinker v1.0's evaluation settings: temperature 1.0, top-p 0.95, at most 16,384 new tokens per reply."""


@dataclass(frozen=True)
class ToolProfile:
    """A tool surface: servers, call format, prompt style and episode policies that go with it."""

    name: str
    servers: tuple[ToolServer, ...]
    tool_format: str
    summary_turn: bool
    """Send MiroThinker's summary prompt after a reply without tool calls; the next reply holds the answer."""
    keep_tool_results: int
    """Recency policy: tool results kept verbatim in `context()` (-1 keeps all)."""
    max_result_chars: int = 100_000
    mirothinker_prompt: bool = False
    task_suffix: str = ""
    sampling: SamplingDefaults = SamplingDefaults()
    """Default sampling for models driven through this profile (`miroenv eval`)."""
    _specs: list[ToolSpec] = field(default_factory=list, compare=False, repr=False)

    def specs(self) -> list[ToolSpec]:
        """Every tool's spec, servers in profile order."""
        if not self._specs:
            self._specs.extend(spec for server in self.servers for spec in server.specs())
        return list(self._specs)

    def router(self) -> ToolRouter:
        """A router over this profile's tools."""
        return ToolRouter(self.servers)

    def system_prompt(self, date: str, fmt: ToolCallFormat) -> str:
        """The system prompt for this profile in `fmt`, dated `date`."""
        if self.mirothinker_prompt and fmt.name == "mcp_xml":
            return render_mirothinker_system_prompt(self.specs(), date)
        return render_generic_system_prompt(self.specs(), date, fmt)

    def task_message(self, task: Task) -> str:
        """The first user message: the question plus the profile's answer-format instruction."""
        return task.question + self.task_suffix

    def summary_message(self, task: Task) -> str:
        """The summary turn's user message."""
        return render_summary_prompt(task.question)


def mirothinker_v1(keep_tool_results: int = 5, llm_extractor: LLMExtractor | None = None) -> ToolProfile:
    """MiroThinker v1.0: its three MCP servers (in its prompt order), MCP XML calls, keep-5 context, summary."""
    return ToolProfile(
        name="mirothinker_v1",
        servers=(
            ToolServer(
                "tool-python",
                (
                    CreateSandbox(),
                    RunCommand(),
                    RunPythonCode(),
                    UploadFileFromLocalToSandbox(),
                    DownloadFileFromInternetToSandbox(),
                    DownloadFileFromSandboxToLocal(),
                ),
            ),
            ToolServer("search_and_scrape_webpage", (GoogleSearch(reject_repeats=True),)),
            ToolServer("jina_scrape_llm_summary", (ScrapeAndExtractInfo(llm_extractor=llm_extractor),)),
        ),
        tool_format="mcp_xml",
        summary_turn=True,
        keep_tool_results=keep_tool_results,
        mirothinker_prompt=True,
        task_suffix=MIROTHINKER_TASK_SUFFIX,
        sampling=MIROTHINKER_V1_SAMPLING,
    )


def minimal(llm_extractor: LLMExtractor | None = None) -> ToolProfile:
    """A small surface for function-calling models: search, page reading and Python, Hermes-style calls."""
    return ToolProfile(
        name="minimal",
        servers=(
            ToolServer(
                "web",
                (
                    GoogleSearch(reject_repeats=False),
                    Scrape(),
                    ScrapeAndExtractInfo(llm_extractor=llm_extractor),
                ),
            ),
            ToolServer("python", (CreateSandbox(), RunPythonCode(), RunCommand())),
        ),
        tool_format="hermes",
        summary_turn=False,
        keep_tool_results=-1,
    )


PROFILES: dict[str, Callable[..., ToolProfile]] = {"mirothinker_v1": mirothinker_v1, "minimal": minimal}


def get_profile(name: str, *, llm_extractor: LLMExtractor | None = None) -> ToolProfile:
    """A fresh profile by name (optionally with an LLM extractor for page reading); `ValueError` lists names."""
    try:
        factory = PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown tool profile {name!r}; choose one of: {', '.join(sorted(PROFILES))}"
        ) from None
    return factory(llm_extractor=llm_extractor)
