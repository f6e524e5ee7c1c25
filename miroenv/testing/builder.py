"""`SnapshotBuilder`: declare a snapshot in code (pages, recorded searches, files, tasks and their scripted
actions) and write it as a real snapshot with `SnapshotWriter`, index, `tasks.jsonl` and `actions.jsonl`.

Every timestamp defaults to midnight of the capture date, so building the same declaration twice gives the
same content hash.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from miroenv.jsonl import write_jsonl
from miroenv.protocol.base import Action
from miroenv.tasks import Task, save_tasks
from miroenv.web.base import FileEntry, Page, SearchRequest
from miroenv.web.index import build_index_from_snapshot
from miroenv.web.snapshot import SnapshotWriter

TASKS_FILE = "tasks.jsonl"
ACTIONS_FILE = "actions.jsonl"
TASK_FILES_DIR = "task_files"
"""Where `build()` writes task attachments given as contents, one folder per task."""
SNIPPET_CHARS = 160
"""Length of the snippet made for a search result given as a bare URL."""

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DECLARED_ATTRIBUTES = frozenset({"name", "capture_date", "description", "captured_at"})
"""Public attributes that are part of the declaration: setting one changes what `build()` writes."""
SearchResult = str | Mapping[str, Any]
"""A search result: a page URL (title and snippet are taken from the page) or a Serper `organic` item."""


class _TaskSpec(BaseModel):
    """A declared task; attachments given as contents are written at build time."""

    model_config = ConfigDict(frozen=True)

    task: Task
    contents: dict[str, bytes] = {}


class SnapshotBuilder:
    """A snapshot declared in code; every declaring method returns the builder, so calls chain."""

    def __init__(
        self,
        name: str = "test-snapshot",
        *,
        capture_date: str = "2025-01-01",
        description: str = "",
        path: str | Path | None = None,
    ) -> None:
        if not _DATE.match(capture_date):
            raise ValueError(f"capture_date must be YYYY-MM-DD, got {capture_date!r}")
        self.name = name
        self.capture_date = capture_date
        self.description = description
        self.path = Path(path) if path is not None else None
        """Where `build()` writes when given no path (the pytest fixture sets a temporary directory)."""
        self.built_path: Path | None = None
        """Where the last `build()` wrote the snapshot."""
        self.captured_at = f"{capture_date}T00:00:00+00:00"
        """The default capture and recording time of everything declared."""
        self._pages: dict[str, Page] = {}
        self._searches: dict[str, tuple[SearchRequest, list[SearchResult]]] = {}
        self._files: dict[str, FileEntry] = {}
        self._tasks: dict[str, _TaskSpec] = {}
        self._actions: dict[str, list[Action]] = {}
        self._changed = True

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in _DECLARED_ATTRIBUTES:
            super().__setattr__("_changed", True)

    @property
    def changed(self) -> bool:
        """Whether something was declared (or a declared attribute set) since the last `build()`, or it
        never ran: the built snapshot, if any, is out of date."""
        return self._changed

    # ------------------------------------------------------------------ declaring

    def page(
        self,
        url: str,
        text: str | None = None,
        *,
        html: str | None = None,
        title: str | None = None,
        status: int = 200,
        content_type: str | None = None,
        captured_at: str | None = None,
    ) -> SnapshotBuilder:
        """A page at `url` from its `text` (Markdown, stored as given) or its `html` (kept as the body and
        extracted like a recorded page); `title` defaults to the extracted one."""
        if (text is None) == (html is None):
            raise ValueError(f"page {url!r}: give exactly one of text= or html=")
        self._check_new(url, self._pages, f"page {url!r}")
        if html is not None:
            from miroenv.web.extract import extract_page

            extracted = extract_page(html, url, content_type or "text/html")
            page = Page(
                url=url,
                final_url=url,
                status=status,
                title=extracted.title if title is None else title,
                content_type=content_type or "text/html",
                body=html.encode("utf-8"),
                text=extracted.text,
                extractor=extracted.extractor,
                captured_at=captured_at or self.captured_at,
            )
        else:
            page = Page(
                url=url,
                final_url=url,
                status=status,
                title=title or "",
                content_type=content_type or "text/markdown",
                text=text or "",
                captured_at=captured_at or self.captured_at,
            )
        self._pages[url] = page
        self._changed = True
        return self

    def search(self, query: str | SearchRequest, results: Sequence[SearchResult]) -> SnapshotBuilder:
        """A recorded search: `query` (or a full request with gl, hl, num, ...) returns `results` in order,
        each a declared page's URL or a Serper `organic` item (`title`, `link`, `snippet`, ...)."""
        request = SearchRequest(q=query) if isinstance(query, str) else query
        self._check_new(request.key(), self._searches, f"search {request.q!r}")
        for result in results:
            if not isinstance(result, (str, Mapping)):
                raise TypeError(
                    f"search {request.q!r}: a result must be a URL or a Serper result dict, got "
                    f"{type(result).__name__}"
                )
        self._searches[request.key()] = (request, list(results))
        self._changed = True
        return self

    def file(
        self, url: str, data: bytes | str, *, content_type: str = "application/octet-stream"
    ) -> SnapshotBuilder:
        """A downloadable file at `url` (what `download_file_from_internet_to_sandbox` fetches)."""
        self._check_new(url, self._files, f"file {url!r}")
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self._files[url] = FileEntry(
            url=url, data=raw, content_type=content_type, captured_at=self.captured_at
        )
        self._changed = True
        return self

    def task(
        self,
        task: str | Task,
        question: str | None = None,
        answer: str | None = None,
        *,
        aliases: Sequence[str] = (),
        date: str | None = None,
        files: Mapping[str, bytes | str] | Sequence[str | Path] = (),
        metadata: Mapping[str, Any] | None = None,
        actions: Sequence[Action] | None = None,
    ) -> SnapshotBuilder:
        """A task (or a ready `Task`); `files` are attachments, as paths or as {file name: contents} written
        into the snapshot directory; `actions` is the task's scripted policy, written to `actions.jsonl`."""
        contents: dict[str, bytes] = {}
        if isinstance(task, Task):
            built = task
        else:
            if question is None:
                raise ValueError(f"task {task!r}: a question is required")
            paths: tuple[str, ...] = ()
            if isinstance(files, Mapping):
                for name, data in files.items():
                    if Path(name).name != name or name in ("", ".", ".."):
                        raise ValueError(f"task {task!r}: attachment name {name!r} must be a plain file name")
                    contents[name] = data.encode("utf-8") if isinstance(data, str) else data
            else:
                paths = tuple(str(Path(p).resolve()) for p in files)
            built = Task(
                task_id=task,
                question=question,
                answer=answer,
                aliases=tuple(aliases),
                date=date,
                files=paths,
                metadata=dict(metadata or {}),
            )
        self._check_new(built.task_id, self._tasks, f"task {built.task_id!r}")
        self._tasks[built.task_id] = _TaskSpec(task=built, contents=contents)
        self._changed = True
        if actions is not None:
            self.actions(built.task_id, actions)
        return self

    def actions(self, task_id: str, actions: Sequence[Action]) -> SnapshotBuilder:
        """The scripted actions of `task_id` (a declared task), replacing any given before."""
        self._actions[task_id] = list(actions)
        self._changed = True
        return self

    # ------------------------------------------------------------------ building

    @property
    def tasks(self) -> list[Task]:
        """The declared tasks, in order (attachments given as contents have no path until `build()`)."""
        return [spec.task for spec in self._tasks.values()]

    def build(self, path: str | Path | None = None, *, index: bool = True) -> Path:
        """Write the snapshot into `path` (default: the builder's `path`), replacing any snapshot there, with
        its full-text index (unless `index=False`), `tasks.jsonl` and `actions.jsonl`; returns the path."""
        if path is None and self.path is None:
            raise ValueError("build() needs a path: pass one, or create the builder with path=...")
        target = Path(path) if path is not None else self.path
        assert target is not None
        unknown = sorted(set(self._actions) - set(self._tasks))
        if unknown:
            raise ValueError(f"actions given for undeclared task(s): {', '.join(unknown)}")
        with SnapshotWriter(
            target,
            name=self.name,
            capture_date=self.capture_date,
            description=self.description,
            overwrite=True,
        ) as writer:
            for page in self._pages.values():
                writer.put_page(page)
            for request, results in self._searches.values():
                writer.add_search(
                    request, organic=[self._result(r) for r in results], recorded_at=self.captured_at
                )
            for entry in self._files.values():
                writer.add_file(
                    entry.url, entry.data, content_type=entry.content_type, captured_at=entry.captured_at
                )
        if index:
            build_index_from_snapshot(target)
        self._write_tasks(target)
        self._write_actions(target)
        self.built_path = target
        self._changed = False
        return target

    def ensure_built(self) -> Path:
        """The built snapshot, up to date: the last `build()`'s directory while nothing changed since and it
        is still there, else a fresh build (into `path`, or where the last one went); the pytest fixtures use
        it, so a builder extended after it was built is never served stale."""
        if self.changed or self.built_path is None or not (self.built_path / "manifest.json").is_file():
            return self.build(self.path or self.built_path)
        return self.built_path

    def _write_tasks(self, target: Path) -> None:
        tasks_path = target / TASKS_FILE
        if not self._tasks:
            tasks_path.unlink(missing_ok=True)
            return
        tasks: list[Task] = []
        for spec in self._tasks.values():
            paths = list(spec.task.files)
            for name, data in spec.contents.items():
                attachment = target / TASK_FILES_DIR / spec.task.task_id / name
                attachment.parent.mkdir(parents=True, exist_ok=True)
                attachment.write_bytes(data)
                paths.append(str(attachment.resolve()))
            tasks.append(spec.task.model_copy(update={"files": tuple(paths)}))
        save_tasks(tasks, tasks_path)

    def _write_actions(self, target: Path) -> None:
        actions_path = target / ACTIONS_FILE
        if not self._actions:
            actions_path.unlink(missing_ok=True)
            return
        write_jsonl(
            actions_path,
            (
                {"task_id": task_id, "actions": self._actions[task_id]}
                for task_id in self._tasks
                if task_id in self._actions
            ),
        )

    def _result(self, result: SearchResult) -> dict[str, Any]:
        """A Serper `organic` item: given as is, or made from the declared page at a URL."""
        if not isinstance(result, str):
            return dict(result)
        page = self._pages.get(result)
        if page is None:
            return {"title": "", "link": result, "snippet": ""}
        body = [line for line in page.text.splitlines() if not line.lstrip().startswith("#")]
        snippet = " ".join(" ".join(body).split()) or " ".join(page.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 4].rstrip() + " ..."
        return {"title": page.title, "link": result, "snippet": snippet}

    @staticmethod
    def _check_new(key: str, table: Mapping[str, Any], label: str) -> None:
        if key in table:
            raise ValueError(f"{label} is declared twice")
