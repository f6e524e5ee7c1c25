"""The one missing-extra error: which modules it covers, its message, and the extractor that will not guess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from miroenv.extras import MissingExtraError, ensure_extra, requires_extra
from miroenv.web.extract import extract_page
from tests.cli.test_first_contact import _run


def test_a_missing_module_of_the_extra_becomes_the_typed_error() -> None:
    with pytest.raises(MissingExtraError) as caught, requires_extra("import", "WARC export"):
        raise ModuleNotFoundError("No module named 'warcio.warcwriter'", name="warcio.warcwriter")
    assert str(caught.value) == (
        "WARC export needs the 'import' extra (no module named 'warcio'): pip install 'miroenv[import]'"
    )
    assert isinstance(caught.value, ImportError) and caught.value.extra == "import"


def test_a_module_outside_the_extra_is_not_blamed_on_it() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, requires_extra("mcp", "serve-mcp"):
        raise ModuleNotFoundError("No module named 'miroenv.nothing'", name="miroenv.nothing")
    assert not isinstance(caught.value, MissingExtraError)


def test_an_unknown_extra_is_named() -> None:
    with pytest.raises(ValueError, match="unknown extra 'imports'; known: browser, docker, import"):
        ensure_extra("imports", "x")


def test_installed_extras_pass() -> None:
    ensure_extra("import", "HTML extraction")
    assert extract_page(b"<html><body><p>Hello there, reader.</p></body></html>", "https://e.org/").text


def test_html_extraction_without_trafilatura_raises_instead_of_using_bs4(tmp_path: Path) -> None:
    code = (
        "from miroenv.web.extract import extract_page\n"
        "page = extract_page(b'# Title\\n\\nbody', 'https://e.org/a.md', 'text/markdown')\n"
        "assert (page.title, page.extractor) == ('Title', 'passthrough'), page\n"
        "extract_page(b'<html><body><p>Hello there, reader.</p></body></html>', 'https://e.org/')\n"
    )
    env_run = _run([sys.executable, "-c", code], tmp_path)
    assert env_run.returncode == 1
    assert env_run.stderr.strip().splitlines()[-1] == (
        "miroenv.extras.MissingExtraError: HTML extraction needs the 'import' extra "
        "(no module named 'bs4'): pip install 'miroenv[import]'"
    )


def test_only_trafilatura_missing_is_still_an_error(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['trafilatura'] = None\n"
        "from miroenv.web.extract import extract_page\n"
        "try:\n    extract_page(b'<html><body><p>Hello there, reader.</p></body></html>', 'https://e.org/')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "HTML extraction needs the 'import' extra (no module named 'trafilatura')" in done.stdout
