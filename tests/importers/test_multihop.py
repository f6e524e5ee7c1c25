"""HotpotQA, MuSiQue and 2WikiMultihopQA: pages per title, tasks, layouts, duplicate titles, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miroenv.importers import (
    ImportFormatError,
    import_hotpotqa,
    import_musique,
    import_twowiki,
    wikipedia_url,
)
from miroenv.jsonl import JsonlError
from miroenv.tasks import load_tasks
from miroenv.web import Snapshot
from tests.importers.helpers import pages_of, run_cli


def test_wikipedia_urls_are_spelled_like_wikipedia() -> None:
    assert wikipedia_url("Lilu (mythology)") == "https://en.wikipedia.org/wiki/Lilu_(mythology)"
    assert wikipedia_url("Alû") == "https://en.wikipedia.org/wiki/Al%C3%BB"
    assert wikipedia_url("AC/DC") == "https://en.wikipedia.org/wiki/AC/DC"
    assert wikipedia_url("'Adud al-Dawla") == "https://en.wikipedia.org/wiki/%27Adud_al-Dawla"
    assert wikipedia_url("iPhone  4S") == "https://en.wikipedia.org/wiki/IPhone_4S"
    assert wikipedia_url("Q&A? 100%") == "https://en.wikipedia.org/wiki/Q%26A%3F_100%25"


def test_hotpotqa_official_json_and_corpus(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "hotpotqa_train"
    report = import_hotpotqa(
        [folder / "hotpotqa_train.json", folder / "hotpotqa_train_corpus.json"],
        tmp_path / "snap",
        capture_date="2017-10-01",
    )
    assert (report.pages, report.tasks, report.merged) == (994, 100, 0)
    page = Snapshot(tmp_path / "snap").page("https://en.wikipedia.org/wiki/Demon_Dice")
    assert page.title == "Demon Dice" and page.content_type == "text/plain"
    assert page.text.startswith(
        "Demon Dice, originally published as Chaos Progenitus, is a collectible dice game"
    )
    assert (
        "game created by Lester Smith (designer of the better-known Dragon Dice) and Tim Brown. In it,"
        in page.text
    )
    assert page.captured_at == "2017-10-01T00:00:00+00:00"
    tasks = {t.task_id: t for t in load_tasks(tmp_path / "snap" / "tasks.jsonl")}
    task = tasks["5a77ec115542992a6e59dff7"]
    assert task.question == "If Gallu is a demon Lilu is what?" and task.answer == "a spirit"
    assert task.metadata["supporting_facts"] == [["Alû", 3], ["Lilu (mythology)", 0]]
    assert task.metadata["supporting_urls"][0] == "https://en.wikipedia.org/wiki/Al%C3%BB"
    assert task.metadata["type"] == "bridge" and task.metadata["level"] == "easy"
    assert Snapshot(tmp_path / "snap").page(task.metadata["supporting_urls"][1]).title == "Lilu (mythology)"


def test_hotpotqa_hugging_face_layout_gives_the_same_snapshot(shared_data: Path, tmp_path: Path) -> None:
    questions = json.loads(
        (shared_data / "hotpotqa_train" / "hotpotqa_train.json").read_text(encoding="utf-8")
    )
    rows = [
        {
            "id": q["_id"],
            "question": q["question"],
            "answer": q["answer"],
            "type": q["type"],
            "level": q["level"],
            "supporting_facts": {
                "title": [f[0] for f in q["supporting_facts"]],
                "sent_id": [f[1] for f in q["supporting_facts"]],
            },
            "context": {"title": [c[0] for c in q["context"]], "sentences": [c[1] for c in q["context"]]},
        }
        for q in questions
    ]
    hf = tmp_path / "train.jsonl"
    hf.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    official = import_hotpotqa(
        [shared_data / "hotpotqa_train" / "hotpotqa_train.json"], tmp_path / "a", capture_date="2024-01-01"
    )
    converted = import_hotpotqa([hf], tmp_path / "b", capture_date="2024-01-01")
    assert official.content_hash == converted.content_hash
    assert load_tasks(tmp_path / "a" / "tasks.jsonl") == load_tasks(tmp_path / "b" / "tasks.jsonl")


def test_musique_questions_and_corpus_merge_same_titles(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "musique_train"
    report = import_musique(
        [folder / "musique_train.json", folder / "musique_train_corpus.json"], tmp_path / "snap"
    )
    corpus = json.loads((folder / "musique_train_corpus.json").read_text(encoding="utf-8"))
    by_title: dict[str, list[str]] = {}
    for item in corpus:
        if item["text"].strip() not in by_title.setdefault(item["title"], []):
            by_title[item["title"]].append(item["text"].strip())
    assert report.pages == len(by_title) == 1764
    assert report.tasks == 100 and report.merged > 0
    title = next(t for t, texts in by_title.items() if len(texts) > 1)
    page = pages_of(tmp_path / "snap")[wikipedia_url(title)]
    assert page.title == title and page.metadata["paragraphs"] >= 2
    first_seen = page.text.split("\n\n")
    assert set(by_title[title]) <= set(first_seen)
    task = next(t for t in load_tasks(tmp_path / "snap" / "tasks.jsonl") if t.task_id == "2hop__150763_14904")
    assert task.answer == "G. Stanley Hall" and task.aliases == ("Stanley Hall",)
    assert task.metadata["answerable"] is True and len(task.metadata["question_decomposition"]) == 2
    snap = Snapshot(tmp_path / "snap")
    assert all(snap.page(url) for url in task.metadata["supporting_urls"])


def test_duplicate_titles_keep_first_seen_order_and_drop_repeats(tmp_path: Path) -> None:
    source = tmp_path / "corpus.json"
    source.write_text(
        json.dumps(
            [
                {"title": "Same", "text": "First paragraph."},
                {"title": "Other", "text": "Unrelated."},
                {"title": "Same", "text": "Second paragraph."},
                {"title": "Same", "text": "  First   paragraph. "},
                {"title": "Same", "paragraph_text": "Third paragraph."},
            ]
        ),
        encoding="utf-8",
    )
    report = import_musique([source], tmp_path / "snap")
    page = pages_of(tmp_path / "snap")["https://en.wikipedia.org/wiki/Same"]
    assert page.text == "First paragraph.\n\nSecond paragraph.\n\nThird paragraph."
    assert (report.pages, report.merged) == (2, 2)
    assert any("1 repeated paragraphs" in note for note in report.notes)


def test_2wiki_corpus(shared_data: Path, tmp_path: Path) -> None:
    report = import_twowiki([shared_data / "2wiki_corpus" / "2wikimultihopqa_corpus.json"], tmp_path / "snap")
    assert (report.pages, report.tasks, report.tasks_path) == (6119, 0, None)
    page = Snapshot(tmp_path / "snap").page("https://en.wikipedia.org/wiki/Teutberga")
    assert page.text.startswith("Teutberga( died 11 November 875) was a queen of Lotharingia")


@pytest.mark.parametrize(
    ("fmt", "files", "pages", "tasks"),
    [
        (
            "hotpotqa",
            ["hotpotqa_train/hotpotqa_train.json", "hotpotqa_train/hotpotqa_train_corpus.json"],
            994,
            100,
        ),
        ("musique", ["musique_train/musique_train.json"], None, 100),
        ("2wiki", ["2wiki_corpus/2wikimultihopqa_corpus.json"], 6119, 0),
    ],
)
def test_cli_imports_each_dataset(
    shared_data: Path, tmp_path: Path, fmt: str, files: list[str], pages: int | None, tasks: int
) -> None:
    out = tmp_path / "snap"
    result = run_cli(
        "snapshot",
        "import",
        fmt,
        *(shared_data / f for f in files),
        "--out",
        out,
        "--capture-date",
        "2020-01-01",
    )
    assert result.exit_code == 0, result.output
    snap = Snapshot(out)
    assert snap.capture_date == "2020-01-01" and snap.name == "snap"
    if pages is not None:
        assert snap.manifest.counts["pages"] == pages
    assert (out / "tasks.jsonl").exists() == bool(tasks)
    if tasks:
        assert len(load_tasks(out / "tasks.jsonl")) == tasks and "tasks written to" in result.output


def test_importing_twice_extends_and_keeps_tasks(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    import_hotpotqa([shared_data / "hotpotqa_train" / "hotpotqa_train.json"], out, capture_date="2024-01-01")
    report = import_musique([shared_data / "musique_train" / "musique_train.json"], out)
    assert not report.created
    assert len(load_tasks(out / "tasks.jsonl")) == 200
    assert Snapshot(out).capture_date == "2024-01-01"


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (
            '[{"_id": "a", "question": "q?", "context": [["T", "not a list"], ["U"]]}]',
            r"record 0: field 'context\[1\]'",
        ),
        ('[{"_id": "a", "context": []}]', r"record 0: field 'question': missing"),
        ('[{"_id": "a", "question": "q?"}]', r"record 0: field 'context': a question needs"),
        ('[{"_id": "a", "question": 3, "context": []}]', r"field 'question': expected str, got int"),
        ('[{"title": "T"}]', r"record 0: field 'text': missing"),
        (
            '[{"id": "m", "question": "q", "paragraphs": [{"title": "T"}]}]',
            r"paragraphs\[0\]: field 'paragraph_text'",
        ),
        ('[{"question": "q", "context": []}]', r"field '_id': missing question id"),
        ("[1, 2]", r"record 0: expected a JSON object, got int"),
        ('{"broken": ', r"bad\.json:1:\d+: not valid JSON"),
    ],
)
def test_malformed_input_names_file_record_and_field(tmp_path: Path, content: str, pattern: str) -> None:
    source = tmp_path / "bad.json"
    source.write_text(content, encoding="utf-8")
    with pytest.raises(ImportFormatError, match=pattern):
        import_hotpotqa([source], tmp_path / "snap")
    assert not (tmp_path / "snap").exists()
    result = run_cli("snapshot", "import", "hotpotqa", source, "--out", tmp_path / "snap")
    assert result.exit_code == 2 and "bad.json" in result.output


def test_jsonl_errors_name_the_line(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"title": "A", "text": "a"}\n\n{"title": "B"\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"bad\.jsonl:3: not valid JSON"):
        import_twowiki([source], tmp_path / "snap")
