"""Tools, tool servers and the per-episode context they run in."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from miroenv.protocol.base import ToolSpec
from miroenv.sandbox.base import NoSandboxBackend, SandboxBackend
from miroenv.tasks import Task
from miroenv.web.base import Web

logger = logging.getLogger(__name__)

ArgsT = TypeVar("ArgsT", bound="ToolArguments")

DEFAULT_MAX_DOWNLOAD_BYTES = 256 << 20
"""Per file brought out of a sandbox to the host (`download_file_from_sandbox_to_local`)."""
DEFAULT_MAX_EPISODE_DOWNLOAD_BYTES = 1 << 30
"""All of one episode's downloads from its sandboxes together."""


class ToolFailure(Exception):
    """The tool refused the call (bad arguments, page not in the snapshot): the model's to fix, kind `tool`.

    `str(exc)` is the exact result text the model sees.
    """


class InfraFailure(Exception):
    """Our side failed (sandbox died, backend down): kind `infra`, so a trainer can mask the episode.

    `str(exc)` is the exact result text the model sees.
    """


class EpisodeContext:
    """Per-episode resources and state handed to every tool call; closed when the episode ends."""

    def __init__(
        self,
        *,
        web: Web,
        task: Task,
        episode_id: str,
        sandboxes: SandboxBackend | None = None,
        rng: np.random.Generator | None = None,
        output_dir: Path | None = None,
        max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES,
        max_episode_download_bytes: int = DEFAULT_MAX_EPISODE_DOWNLOAD_BYTES,
        keep_downloads: bool = False,
    ) -> None:
        self.web = web
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.output_dir = output_dir
        """Where files the agent brings out of its sandbox are written (None: a private temporary folder)."""
        self.max_download_bytes = max_download_bytes
        """The largest file `download_file_from_sandbox_to_local` brings out."""
        self.max_episode_download_bytes = max_episode_download_bytes
        """The bytes all of this episode's downloads may add up to."""
        self.keep_downloads = keep_downloads
        """Leave downloaded files in `output_dir` when the episode ends (default: they are deleted)."""
        self.costs: dict[str, float] = {}
        """What this episode spent on live backends (requests, tokens), reported in `info["cost"]`."""
        self.task = task
        self.episode_id = episode_id
        self.sandboxes: SandboxBackend = sandboxes or NoSandboxBackend()
        self.state: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []

    def add_cost(self, name: str, amount: float) -> None:
        """Count `amount` of `name` (e.g. extractor requests or tokens) against this episode."""
        if amount:
            self.costs[name] = self.costs.get(name, 0.0) + amount

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run `closer` when the episode ends (release sandboxes, temporary files)."""
        self._closers.append(closer)

    def close(self) -> None:
        """Run every closer once, newest first; a failing closer is logged and does not stop the others."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception:
                logger.exception("episode %s: cleanup failed", self.episode_id)


def _publish_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    schema.pop("description", None)
    if not getattr(model, "schema_title", True):
        schema.pop("title", None)


class ToolArguments(BaseModel):
    """Base of every tool's argument model. The class docstring is for developers: it is kept out of the
    published schema (the tool description is what the model reads); `schema_title = False` drops the
    top-level title, as FastMCP 2 listings do."""

    model_config = ConfigDict(json_schema_extra=_publish_schema)
    schema_title: ClassVar[bool] = True


class Tool(ABC, Generic[ArgsT]):
    """One callable tool: a name, a description, a pydantic argument model and a `run` method."""

    name: ClassVar[str]
    description: ClassVar[str]
    arguments_model: ClassVar[type[ToolArguments]]

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema prompts and MCP listings show for the arguments (pydantic's, titles included,
        which is also what FastMCP-based MiroThinker servers publish)."""
        return self.arguments_model.model_json_schema()

    def may_hang(self, ctx: EpisodeContext) -> bool:
        """Whether a call can block on something outside this process (network, sandbox), and so needs the
        tool-call timeout's watchdog thread; replayed lookups cannot, and run inline."""
        return ctx.web.live

    @abstractmethod
    def run(self, args: ArgsT, ctx: EpisodeContext) -> str:
        """Execute the call and return the result text; raise `ToolFailure` or `InfraFailure` on failure."""


@dataclass(frozen=True)
class ToolServer:
    """A named group of tools (an MCP server in the MiroThinker profile)."""

    name: str
    tools: tuple[Tool[Any], ...]

    def specs(self) -> list[ToolSpec]:
        """What prompts show about this server's tools."""
        return [
            ToolSpec(
                server=self.name,
                name=tool.name,
                description=tool.description,
                input_schema=tool.input_schema(),
            )
            for tool in self.tools
        ]
