"""The layouts of multi-hop QA datasets (HotpotQA, 2WikiMultihopQA, MuSiQue) read into pages and tasks.

Accepted, per file (`.json`: a JSON list or object; `.jsonl`/`.ndjson`: one record per line):

- HotpotQA-style questions (HotpotQA, 2WikiMultihopQA): `_id` or `id`, `question`, `answer` (optional),
  `supporting_facts`, `context`; `context` is either official `[[title, [sentence, ...]], ...]` or the Hugging
  Face `datasets` columns `{"title": [...], "sentences": [[...], ...]}` (likewise `supporting_facts` as
  `[[title, sent_id], ...]` or `{"title": [...], "sent_id": [...]}`).
- MuSiQue questions: `id`, `question`, `answer`, `answer_aliases`, `answerable`, `paragraphs` (each with
  `title` and `paragraph_text`), `question_decomposition`.
- Paragraph corpora: records `{title, text}` (or `paragraph_text`, or `sentences`), or one JSON object
  `{title: [sentence, ...]}` (or `{title: text}`).

Every paragraph becomes part of a page (see `miroenv.importers.paragraphs` for the duplicate-title rule);
every question becomes a `Task` written to `tasks.jsonl` in the snapshot directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from miroenv.importers.base import (
    ImportFormatError,
    ImportReport,
    check_sources,
    day_start,
    is_jsonl,
    iter_records,
    json_records,
    load_json,
    require,
    snapshot_session,
    write_tasks,
)
from miroenv.importers.paragraphs import PageMerger, join_sentences, wikipedia_url
from miroenv.tasks import Task

TaskBuilder = Callable[[dict[str, Any], Path, str, PageMerger, ImportReport], Task]


def _sentences(value: Any, path: Path, where: str, field: str) -> list[str]:
    """A sentence list (a lone string is one sentence), or `ImportFormatError`."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ImportFormatError(path, where, "expected a list of sentence strings", field=field)
    return value


def context_pairs(record: dict[str, Any], path: Path, where: str) -> list[tuple[str, list[str]]]:
    """(title, sentences) of a HotpotQA-style `context`, official or Hugging Face layout."""
    context = record["context"]
    if isinstance(context, dict):
        titles = context.get("title")
        sentences = context.get("sentences")
        if not isinstance(titles, list) or not isinstance(sentences, list) or len(titles) != len(sentences):
            raise ImportFormatError(
                path,
                where,
                "expected {'title': [...], 'sentences': [[...]]} of equal length",
                field="context",
            )
        pairs = list(zip(titles, sentences, strict=True))
    elif isinstance(context, list):
        pairs = []
        for index, item in enumerate(context):
            if not isinstance(item, list) or len(item) != 2:
                raise ImportFormatError(
                    path, where, "expected [title, [sentences]]", field=f"context[{index}]"
                )
            pairs.append((item[0], item[1]))
    else:
        raise ImportFormatError(
            path, where, f"expected a list or object, got {type(context).__name__}", field="context"
        )
    out: list[tuple[str, list[str]]] = []
    for index, (title, sentences) in enumerate(pairs):
        if not isinstance(title, str):
            raise ImportFormatError(path, where, "title must be a string", field=f"context[{index}]")
        out.append((title, _sentences(sentences, path, where, f"context[{index}]")))
    return out


def supporting_facts(record: dict[str, Any], path: Path, where: str) -> list[list[Any]]:
    """`supporting_facts` as `[[title, sent_id], ...]` from either layout (empty when absent)."""
    facts = record.get("supporting_facts")
    if facts is None:
        return []
    if isinstance(facts, dict):
        titles, ids = facts.get("title"), facts.get("sent_id")
        if not isinstance(titles, list) or not isinstance(ids, list) or len(titles) != len(ids):
            raise ImportFormatError(
                path,
                where,
                "expected {'title': [...], 'sent_id': [...]} of equal length",
                field="supporting_facts",
            )
        return [[t, i] for t, i in zip(titles, ids, strict=True)]
    if isinstance(facts, list) and all(isinstance(f, list) and len(f) == 2 for f in facts):
        return [list(f) for f in facts]
    raise ImportFormatError(path, where, "expected [[title, sent_id], ...]", field="supporting_facts")


def question_id(record: dict[str, Any], path: Path, where: str) -> str:
    """The question id: `_id` (official layout) or `id`."""
    for key in ("_id", "id"):
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)
    raise ImportFormatError(path, where, "missing question id (also looked for 'id')", field="_id")


def answer_of(record: dict[str, Any], path: Path, where: str) -> str | None:
    """The gold answer, None when absent (test splits)."""
    answer = record.get("answer")
    if answer is None or isinstance(answer, str):
        return answer
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return str(answer)
    raise ImportFormatError(path, where, f"expected a string, got {type(answer).__name__}", field="answer")


def hotpot_style_task(
    record: dict[str, Any], path: Path, where: str, merger: PageMerger, report: ImportReport
) -> Task:
    """Pages from a HotpotQA-style question's context, and its task (supporting facts in metadata)."""
    question = require(record, "question", str, path, where)
    for title, sentences in context_pairs(record, path, where):
        merger.add(title, join_sentences(sentences), report)
    facts = supporting_facts(record, path, where)
    metadata: dict[str, Any] = {
        "dataset": merger.dataset,
        "supporting_facts": facts,
        "supporting_urls": list(dict.fromkeys(wikipedia_url(str(f[0])) for f in facts)),
    }
    for key in ("type", "level", "evidences"):
        if record.get(key) is not None:
            metadata[key] = record[key]
    return Task(
        task_id=question_id(record, path, where),
        question=question,
        answer=answer_of(record, path, where),
        metadata=metadata,
    )


def musique_task(
    record: dict[str, Any], path: Path, where: str, merger: PageMerger, report: ImportReport
) -> Task:
    """Pages from a MuSiQue question's paragraphs, and its task (aliases, supporting titles in metadata)."""
    question = require(record, "question", str, path, where)
    paragraphs = require(record, "paragraphs", list, path, where)
    supporting: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        spot = f"{where}, paragraphs[{index}]"
        title = require(paragraph, "title", str, path, spot)
        text = paragraph.get("paragraph_text", paragraph.get("text"))
        if not isinstance(text, str):
            raise ImportFormatError(path, spot, "missing or not a string", field="paragraph_text")
        url = merger.add(title, text, report)
        if paragraph.get("is_supporting") and url is not None:
            supporting.append(url)
    aliases = record.get("answer_aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ImportFormatError(path, where, "expected a list of strings", field="answer_aliases")
    metadata: dict[str, Any] = {"dataset": merger.dataset, "supporting_urls": list(dict.fromkeys(supporting))}
    for key in ("answerable", "question_decomposition"):
        if record.get(key) is not None:
            metadata[key] = record[key]
    return Task(
        task_id=question_id(record, path, where),
        question=question,
        answer=answer_of(record, path, where),
        aliases=tuple(aliases),
        metadata=metadata,
    )


def _corpus_record(
    record: dict[str, Any], path: Path, where: str, merger: PageMerger, report: ImportReport
) -> None:
    """One paragraph-corpus record: `title` plus `text`, `paragraph_text` or `sentences`."""
    title = require(record, "title", str, path, where)
    for key in ("text", "paragraph_text", "sentences"):
        if key in record:
            merger.add(title, join_sentences(_sentences(record[key], path, where, key)), report)
            return
    raise ImportFormatError(
        path, where, "missing (also looked for 'paragraph_text', 'sentences')", field="text"
    )


def _title_map(data: dict[str, Any], path: Path, merger: PageMerger, report: ImportReport) -> None:
    """A `{title: [sentences]}` corpus."""
    for title, sentences in data.items():
        merger.add(title, join_sentences(_sentences(sentences, path, f"key {title!r}", title)), report)


def _is_title_map(data: Any) -> bool:
    """Whether a whole JSON document is a `{title: sentences}` corpus rather than one record."""
    return isinstance(data, dict) and not ({"question", "title", "context", "paragraphs"} & data.keys())


def import_multihop(
    sources: Sequence[Path],
    out: Path,
    *,
    dataset: str,
    name: str | None,
    capture_date: str | None,
) -> ImportReport:
    """Import multi-hop QA files of any accepted layout (module docstring) as pages plus tasks."""
    paths = check_sources(sources)
    report = ImportReport(format=dataset, snapshot=str(out), created=True, sources=[str(p) for p in paths])
    merger = PageMerger(dataset)
    tasks: dict[str, Task] = {}
    with snapshot_session(out, report, name=name, capture_date=capture_date) as writer:
        for path in paths:
            if is_jsonl(path):
                records = iter_records(path)
            else:
                whole = load_json(path)
                if _is_title_map(whole):
                    _title_map(whole, path, merger, report)
                    continue
                records = json_records(whole)
            for where, record in records:
                if not isinstance(record, dict):
                    raise ImportFormatError(
                        path, where, f"expected a JSON object, got {type(record).__name__}"
                    )
                builder: TaskBuilder | None = None
                if "paragraphs" in record:
                    builder = musique_task
                elif "context" in record:
                    builder = hotpot_style_task
                elif "question" in record:
                    raise ImportFormatError(
                        path, where, "a question needs 'context' or 'paragraphs'", field="context"
                    )
                if builder is None:
                    _corpus_record(record, path, where, merger, report)
                    continue
                task = builder(record, path, where, merger, report)
                if task.task_id in tasks:
                    report.skip("duplicate question id (first kept)")
                    continue
                tasks[task.task_id] = task
        merger.write(writer, report, day_start(writer.manifest.capture_date))
        write_tasks(list(tasks.values()), out, report)
    return report
