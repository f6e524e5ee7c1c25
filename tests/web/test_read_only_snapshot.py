"""A snapshot on a read-only file system (a shared dataset mount) opens, searches and reads pages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from miroenv.web.base import SearchRequest
from miroenv.web.snapshot import Snapshot


@pytest.fixture
def read_only_snapshot(demo_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """The demo snapshot behind a read-only bind mount (as root) or without write permission (as a user), with
    the folder a killed index build left (which readers there cannot remove)."""
    source = tmp_path / "source"
    shutil.copytree(demo_dir, source, ignore=shutil.ignore_patterns(".tantivy-*"))
    (source / ".index.0123abcd.building").mkdir()
    if os.geteuid() != 0:
        for folder in (source, source / "index"):
            folder.chmod(0o555)
        yield source
        for folder in (source, source / "index"):
            folder.chmod(0o755)
        return
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    bind = subprocess.run(["mount", "--bind", str(source), str(mounted)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount as root here: {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], check=True, capture_output=True)
        yield mounted
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=False)


def test_read_only_snapshot_searches_and_reads(read_only_snapshot: Path) -> None:
    assert not os.access(read_only_snapshot / "index", os.W_OK)
    snapshot = Snapshot(read_only_snapshot)
    response = snapshot.search(SearchRequest(q="babbage difference engine never recorded"))
    links = [item["link"] for item in response.payload["organic"]]
    assert "https://en.wikipedia.org/wiki/Difference_engine" in links
    assert "ENIAC" in snapshot.page("https://en.wikipedia.org/wiki/ENIAC").title
    assert not any(p.name.startswith(".tantivy-") for p in (read_only_snapshot / "index").iterdir())
    index = snapshot.index()
    assert index is not None
    index.close()
    snapshot.close()


def test_the_lock_folder_is_removed_when_the_process_exits(read_only_snapshot: Path) -> None:
    code = (
        "import sys\n"
        "from miroenv.web.snapshot import Snapshot\n"
        "from miroenv.web.base import SearchRequest\n"
        "snapshot = Snapshot(sys.argv[1])\n"
        "snapshot.search(SearchRequest(q='ada lovelace notes'))\n"
        "print(snapshot.index()._shadow)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(read_only_snapshot)], capture_output=True, text=True, check=True
    )
    shadow = Path(result.stdout.strip())
    assert shadow.name.startswith("miroenv-index-")
    assert not shadow.exists()


def test_read_only_snapshot_with_a_killed_build_opens_and_writes_nothing(read_only_snapshot: Path) -> None:
    before = sorted(os.listdir(read_only_snapshot))
    snapshot = Snapshot(read_only_snapshot)
    assert snapshot.index_status(full=True).ok
    assert snapshot.search(SearchRequest(q="ada lovelace notes")).source == "index"
    assert sorted(os.listdir(read_only_snapshot)) == before
    snapshot.close()
