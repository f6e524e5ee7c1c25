"""Crash-safe snapshots: `miroenv snapshot import` and `snapshot reindex` SIGKILLed at random points, index
builds included, leave a snapshot that either verifies and searches correctly or says it has no (or an out of
date) index; a killed rebuild keeps the previous index serving the same results; stale build folders go."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from miroenv.web import (
    NoSearchIndexError,
    SearchRequest,
    Snapshot,
    SnapshotError,
    SnapshotIndexWarning,
    SnapshotWriter,
    build_index_from_snapshot,
)
from miroenv.web import index as index_module
from miroenv.web.index import META_FILE, SnapshotIndex, remove_stale_builds

DOCS = 3000
"""Corpus size: big enough that the index build takes a while to kill into, small enough to import often."""

WORDS = [f"w{i}" for i in range(2000)]


def corpus_url(doc: int) -> str:
    """The URL the corpus gives document `doc`."""
    return f"https://corpus.example/doc/{doc}"


def write_corpus(path: Path, first: int, count: int, seed: int = 0) -> Path:
    """A BrowseComp-Plus-style JSONL corpus of `count` documents; document i holds the unique word marker<i>."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for doc in range(first, first + count):
            text = " ".join(rng.choice(WORDS) for _ in range(80)) + f" marker{doc}"
            record = {"docid": doc, "url": corpus_url(doc), "title": f"Document {doc}", "text": text}
            handle.write(json.dumps(record) + "\n")
    return path


def cli(*args: str) -> list[str]:
    """The command line running `miroenv ARGS...` with this interpreter."""
    return [sys.executable, "-m", "miroenv.cli", *args]


def leftovers(snapshot: Path) -> list[str]:
    """Build folders and lock files of the snapshot's index still on disk."""
    return sorted(name for name in os.listdir(snapshot) if name.startswith(".index."))


def building(snapshot: Path) -> bool:
    """Whether an index build folder exists in the snapshot right now."""
    try:
        return any(name.endswith(".building") for name in os.listdir(snapshot))
    except FileNotFoundError:
        return False


def run_and_kill(
    command: list[str],
    *,
    after_s: float | None = None,
    in_build_of: Path | None = None,
    build_delay_s: float = 0.0,
    timeout_s: float = 240.0,
) -> bool:
    """Run `command`, SIGKILL it `after_s` seconds in, or `build_delay_s` after an index build folder appears
    in `in_build_of`; returns whether it was killed (False: it finished first)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while process.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise AssertionError(f"{command} still running after {timeout_s} s")
            if after_s is not None and elapsed >= after_s:
                break
            if in_build_of is not None and building(in_build_of):
                time.sleep(build_delay_s)
                break
            time.sleep(0.001)
        if process.poll() is not None:
            return False
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        return True
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def top_links(snap: Snapshot, query: str, num: int = 5) -> list[str]:
    """The links google_search's snapshot lookup returns for `query`."""
    return [item["link"] for item in snap.search(SearchRequest(q=query, num=num)).payload["organic"]]


def info(snapshot: Path) -> subprocess.CompletedProcess[str]:
    """`miroenv snapshot info` on the snapshot (wide output, so messages are not wrapped)."""
    return subprocess.run(
        cli("snapshot", "info", str(snapshot)),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )


def check_after_kill(snapshot: Path, probes: list[int]) -> str:
    """The state a killed import left, after checking the one promise: a snapshot that verifies either searches
    correctly or says (in `snapshot info` and on search) that it has no index and how to build one."""
    try:
        snap = Snapshot(snapshot)
    except SnapshotError:
        return "unreadable"  # killed before the manifest was first written: nothing claims to be a snapshot
    assert leftovers(snapshot) == [], "stale build folders survived opening the snapshot"
    report = info(snapshot)
    try:
        snap.verify()
    except SnapshotError as exc:
        assert "content hash mismatch" in str(exc)
        assert report.returncode == 2 and "verified" not in report.stdout
        return "unverified"
    status = snap.index_status(full=True)
    if status.ok:
        assert report.returncode == 0 and "index verified" in report.stdout, report.stdout
        for doc in probes:
            assert top_links(snap, f"marker{doc}")[:1] == [corpus_url(doc)], doc
        return "searchable"
    assert status.state == "missing", status
    assert report.returncode == 1, report.stdout
    assert "no search index" in report.stdout and "miroenv snapshot reindex" in report.stdout
    with pytest.raises(NoSearchIndexError, match="miroenv snapshot reindex"):
        snap.search(SearchRequest(q=f"marker{probes[0]}"))
    return "no index"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated corpus file."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", 0, DOCS)


@pytest.fixture(scope="module")
def full_import(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The corpus imported to completion (the baseline the killed runs are compared with) and how long the
    import took, which sets the range of the random kill times."""
    out = tmp_path_factory.mktemp("complete") / "snap"
    started = time.monotonic()
    subprocess.run(
        cli("snapshot", "import", "corpus-jsonl", str(corpus), "--out", str(out)),
        check=True,
        capture_output=True,
        timeout=240,
    )
    return out, time.monotonic() - started


@pytest.fixture(scope="module")
def imported(full_import: tuple[Path, float]) -> Path:
    """The completely imported snapshot."""
    return full_import[0]


QUERIES = ["w1 w2", "w17 w400 w1999", "marker7", "w5 w6 w7 w8", "document w42"]


def results(snapshot: Path) -> list[list[dict[str, Any]]]:
    """The full search payloads of `QUERIES` (titles, links, snippets, order)."""
    snap = Snapshot(snapshot)
    return [snap.search(SearchRequest(q=query)).payload["organic"] for query in QUERIES]


@pytest.mark.parametrize("seed", range(6))
def test_import_killed_at_a_random_moment(
    seed: int,
    corpus: Path,
    full_import: tuple[Path, float],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    rng = random.Random(seed)
    out = tmp_path / "snap"
    killed = run_and_kill(
        cli("snapshot", "import", "corpus-jsonl", str(corpus), "--out", str(out)),
        after_s=rng.uniform(0.35, 1.05) * full_import[1],
    )
    state = check_after_kill(out, [0, DOCS - 1, rng.randrange(DOCS)])
    record_property("state_after_kill", state if killed else "finished")
    assert killed or state == "searchable"


@pytest.mark.parametrize("seed", range(3))
def test_import_killed_during_its_index_build_says_it_has_no_index(
    seed: int, corpus: Path, tmp_path: Path
) -> None:
    rng = random.Random(100 + seed)
    out = tmp_path / "snap"
    killed = run_and_kill(
        cli("snapshot", "import", "corpus-jsonl", str(corpus), "--out", str(out)),
        in_build_of=out,
        build_delay_s=rng.uniform(0.0, 0.05),
    )
    assert killed, "the import finished before its index build could be killed"
    assert check_after_kill(out, [0, DOCS - 1, rng.randrange(DOCS)]) == "no index"
    subprocess.run(cli("snapshot", "reindex", str(out)), check=True, capture_output=True, timeout=240)
    assert check_after_kill(out, [0, DOCS - 1, rng.randrange(DOCS)]) == "searchable"


@pytest.mark.parametrize("seed", range(2))
def test_killed_rebuild_keeps_the_previous_index_serving_the_same_results(
    seed: int, imported: Path, tmp_path: Path
) -> None:
    snapshot = tmp_path / "snap"
    shutil.copytree(imported, snapshot)
    before = results(snapshot)
    assert all(before), "every probe query finds pages"
    killed = run_and_kill(
        cli("snapshot", "reindex", str(snapshot)),
        in_build_of=snapshot,
        build_delay_s=random.Random(seed).uniform(0.0, 0.2),
    )
    assert killed
    assert check_after_kill(snapshot, [0, DOCS - 1]) == "searchable"
    assert results(snapshot) == before
    subprocess.run(cli("snapshot", "reindex", str(snapshot)), check=True, capture_output=True, timeout=240)
    assert results(snapshot) == before, "rankings differ between two builds of the same pages"


def test_extending_import_killed_in_its_index_build_keeps_the_old_index_and_says_it_is_out_of_date(
    imported: Path, tmp_path: Path
) -> None:
    snapshot = tmp_path / "snap"
    shutil.copytree(imported, snapshot)
    before = results(snapshot)
    more = write_corpus(tmp_path / "more.jsonl", DOCS, 500, seed=1)
    killed = run_and_kill(
        cli("snapshot", "import", "corpus-jsonl", str(more), "--out", str(snapshot)), in_build_of=snapshot
    )
    assert killed
    snap = Snapshot(snapshot)
    snap.verify()
    status = snap.index_status(full=True)
    assert status.state == "stale" and "miroenv snapshot reindex" in status.message
    assert results(snapshot) == before
    report = info(snapshot)
    assert report.returncode == 1 and "out of date" in report.stdout
    subprocess.run(cli("snapshot", "reindex", str(snapshot)), check=True, capture_output=True, timeout=240)
    assert Snapshot(snapshot).index_status(full=True).ok
    assert top_links(Snapshot(snapshot), f"marker{DOCS + 3}")[:1] == [corpus_url(DOCS + 3)]


def test_a_running_build_is_left_alone_by_readers(imported: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "snap"
    shutil.copytree(imported, snapshot)
    before = results(snapshot)
    process = subprocess.Popen(cli("snapshot", "reindex", str(snapshot)), stdout=subprocess.DEVNULL)
    try:
        while not building(snapshot) and process.poll() is None:
            time.sleep(0.001)
        assert process.poll() is None, "the build finished before a reader could open the snapshot"
        snap = Snapshot(snapshot)
        assert building(snapshot) or process.poll() is not None, "a reader removed a live build folder"
        assert [link for link in top_links(snap, "w1 w2")] == [item["link"] for item in before[0][:5]]
    finally:
        assert process.wait(timeout=240) == 0
    assert leftovers(snapshot) == []
    assert results(snapshot) == before


def small_snapshot(path: Path, pages: int = 40) -> Path:
    """A snapshot of `pages` pages with an index."""
    with SnapshotWriter(path, name="small", capture_date="2024-01-01") as writer:
        for doc in range(pages):
            writer.add_page(corpus_url(doc), title=f"Document {doc}", text=f"w{doc % 7} common marker{doc}")
    build_index_from_snapshot(path)
    return path


def test_stale_builds_are_removed_only_when_their_builder_is_gone(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    live = snapshot / ".index.aaaa.building"
    live.mkdir()
    dead = snapshot / ".index.bbbb.building"
    dead.mkdir()
    (dead / "pages.bin").write_bytes(b"half")
    legacy = snapshot / ".index.x7_q2kd1.building"
    legacy.mkdir()
    lock = FileLock(str(snapshot / ".index.aaaa.lock"))
    with lock:
        Snapshot(snapshot)
        assert leftovers(snapshot) == [".index.aaaa.building", ".index.aaaa.lock"]
    Snapshot(snapshot)
    assert leftovers(snapshot) == []


def test_the_next_build_removes_stale_builds(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    (snapshot / ".index.cccc.building").mkdir()
    (snapshot / ".index.cccc.lock").touch()
    build_index_from_snapshot(snapshot)
    assert leftovers(snapshot) == []


def test_a_previous_index_retired_by_a_build_that_died_is_put_back(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    before = top_links(Snapshot(snapshot), "w3 common")
    # Where a build without an atomic exchange dies between its two renames: the old index retired, the new
    # one not yet in place.
    os.rename(snapshot / "index", snapshot / ".index.dddd.old")
    (snapshot / ".index.dddd.building").mkdir()
    snap = Snapshot(snapshot)
    assert leftovers(snapshot) == []
    assert snap.index_status(full=True).ok
    assert top_links(snap, "w3 common") == before


def test_an_index_left_by_an_older_version_between_its_renames_is_put_back(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    os.rename(snapshot / "index", snapshot / ".index.old-0123abcd")
    assert Snapshot(snapshot).index_status().ok
    assert leftovers(snapshot) == []


def test_builds_without_an_atomic_exchange_switch_by_two_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    before = top_links(Snapshot(snapshot), "w3 common")
    monkeypatch.setattr(index_module, "_exchange", lambda first, second: False)
    build_index_from_snapshot(snapshot)
    assert leftovers(snapshot) == []
    snap = Snapshot(snapshot)
    assert snap.index_status(full=True).ok
    assert top_links(snap, "w3 common") == before


def test_verify_covers_the_index(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    Snapshot(snapshot).verify()
    term = next((snapshot / "index").glob("*.term"))
    data = bytearray(term.read_bytes())
    data[len(data) // 2] ^= 0xFF
    term.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=r"index files do not match its metadata: \S+\.term changed"):
        Snapshot(snapshot).verify()
    assert Snapshot(snapshot).verify(index=False)
    report = info(snapshot)
    assert report.returncode == 2 and "index damaged" in report.stdout and "reindex" in report.stdout


def test_an_index_that_does_not_open_is_damaged_not_missing(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    (snapshot / "index" / META_FILE).unlink()
    snap = Snapshot(snapshot)
    status = snap.index_status()
    assert status.state == "damaged" and "miroenv snapshot reindex" in status.message
    with pytest.raises(SnapshotError, match="damaged"):
        snap.verify()


def test_index_without_matching_page_count_is_damaged(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    pages = [(corpus_url(doc), "t", "w1") for doc in range(3)]
    meta = json.loads((snapshot / "index" / META_FILE).read_text())
    SnapshotIndex.build(snapshot / "index", pages, content_hash=meta["content_hash"])
    status = Snapshot(snapshot).index_status(full=True)
    assert status.state == "damaged" and "holds 3 pages but the snapshot has 40" in status.message


def test_env_on_an_index_less_snapshot_warns_and_its_searches_say_why(demo_dir: Path, tmp_path: Path) -> None:
    from miroenv import ResearchEnv

    snapshot = tmp_path / "demo"
    shutil.copytree(demo_dir, snapshot)
    shutil.rmtree(snapshot / "index")
    with pytest.warns(SnapshotIndexWarning, match=r"no search index.*miroenv snapshot reindex"):
        env = ResearchEnv(snapshot)
    try:
        env.reset(seed=0)
        action = (
            "<use_mcp_tool>\n<server_name>search_and_scrape_webpage</server_name>\n"
            "<tool_name>google_search</tool_name>\n"
            '<arguments>{"q": "a query nobody recorded zzz"}</arguments>\n</use_mcp_tool>'
        )
        observation, _, terminated, _, step_info = env.step(action)
        assert "no search index" in observation and "miroenv snapshot reindex" in observation
        assert not terminated
        assert [call["error_kind"] for call in step_info["calls"]] == ["infra"]
    finally:
        env.close()


def test_env_on_a_searchable_snapshot_does_not_warn(demo_dir: Path) -> None:
    from miroenv import ResearchEnv

    with warnings.catch_warnings():
        warnings.simplefilter("error", SnapshotIndexWarning)
        ResearchEnv(demo_dir).close()


def test_snapshot_search_cli_says_the_index_is_missing(demo_dir: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "demo"
    shutil.copytree(demo_dir, snapshot)
    shutil.rmtree(snapshot / "index")
    result = subprocess.run(
        cli("snapshot", "search", str(snapshot), "a query nobody recorded zzz", "--json"),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert result.returncode == 1
    assert "index missing" in result.stderr and "miroenv snapshot reindex" in result.stderr
    assert "no search index" in result.stdout


def test_remove_stale_builds_writes_nothing_without_leftovers(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    before = sorted(os.listdir(snapshot))
    assert remove_stale_builds(snapshot / "index") == []
    assert sorted(os.listdir(snapshot)) == before


def test_a_build_replaces_a_file_where_the_index_goes(tmp_path: Path) -> None:
    snapshot = small_snapshot(tmp_path / "s")
    shutil.rmtree(snapshot / "index")
    (snapshot / "index").write_text("not an index")
    assert Snapshot(snapshot).index_status().state == "missing"
    build_index_from_snapshot(snapshot)
    assert leftovers(snapshot) == []
    assert Snapshot(snapshot).index_status(full=True).ok
