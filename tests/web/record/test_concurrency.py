"""Many threads and processes recording into one snapshot, one process killed with SIGKILL midway."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from miroenv.web import SearchRequest, Snapshot, SnapshotWriter
from miroenv.web.record import RecordingWeb

from .conftest import PageServer, SearchServer, record_kwargs

ROOT = Path(__file__).resolve().parents[3]


def test_processes_record_concurrently_and_a_killed_one_loses_nothing_written(
    page_server: PageServer, search_server: SearchServer, tmp_path: Path
) -> None:
    page_server.page_delay = 0.02
    snapshot = tmp_path / "shared"
    count = 40
    workers = []
    for worker in range(4):
        progress = tmp_path / f"progress-{worker}.txt"
        progress.touch()
        command = [
            sys.executable, "-m", "tests.web.record.record_worker", str(snapshot), page_server.base_url,
            search_server.base_url, f"w{worker}", str(count), str(progress),
        ]  # fmt: skip
        workers.append((subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE), progress))

    victim, victim_progress = workers[0]
    deadline = time.monotonic() + 30
    while len(victim_progress.read_text().splitlines()) < 8:
        assert victim.poll() is None, victim.stderr.read().decode() if victim.stderr else ""
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL

    for process, _ in workers[1:]:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()

    completed = [line for _, progress in workers for line in progress.read_text().splitlines()]
    killed_midway = len(victim_progress.read_text().splitlines())
    assert 8 <= killed_midway < count + count // 4, "the victim was killed before it finished"

    SnapshotWriter(snapshot).close()
    snap = Snapshot(snapshot)
    snap.verify()
    conn = sqlite3.connect(snapshot / "snapshot.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    for item in completed:
        if item.startswith("search:"):
            assert snap.search(SearchRequest(q=item.removeprefix("search:"))).source == "recorded", item
        else:
            assert snap.page(item).url == item
    victim_pages = [
        line for line in victim_progress.read_text().splitlines() if not line.startswith("search:")
    ]
    assert snap.manifest.counts["pages"] >= 3 * count + len(victim_pages)
    assert snap.manifest.counts["pages"] == len(list(snap.iter_pages()))


def test_threads_share_one_recorder_and_fetch_each_url_once(
    page_server: PageServer, search_server: SearchServer, snapshot_dir: Path
) -> None:
    page_server.page_delay = 0.05
    urls = [page_server.url(f"/pages/t{i % 5}") for i in range(40)]
    with RecordingWeb(snapshot_dir, **record_kwargs(search_server)) as web, ThreadPoolExecutor(8) as pool:
        pages = list(pool.map(web.page, urls))
        results = list(pool.map(lambda i: web.search(SearchRequest(q=f"q{i % 3}")), range(24)))
        stats = web.stats
    assert all(p == pages[i % 5] for i, p in enumerate(pages))
    assert {path: hits for path, hits in page_server.hits.items()} == {f"/pages/t{i}": 1 for i in range(5)}
    assert len(search_server.requests) == 3
    assert sorted(r.source for r in results) == ["live"] * 3 + ["recorded"] * 21, "one live fetch per query"
    assert stats == {
        "pages_recorded": 5,
        "pages_replayed": 35,
        "searches_recorded": 3,
        "searches_replayed": 21,
    }
    Snapshot(snapshot_dir).verify()
