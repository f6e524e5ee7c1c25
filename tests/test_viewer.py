"""The HTML trajectory report: self-contained, escaped, and rendered in a real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from miroenv import load_actions, read_trajectories
from miroenv.cli import app
from miroenv.viewer import JS, load_episodes, render_html, write_report
from miroenv.web.record.fetch import CHROMIUM_ARGS, DEFAULT_CHROMIUM
from tests.test_scoring import record_episodes

CHROMIUM = Path(DEFAULT_CHROMIUM)
HOSTILE: dict[str, list[Any]] = {
    "turing-award-first": [
        '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> just thinking',
        '<think>plan </think></pre></details><b>bold?</b>\n\\boxed{<img src=y onerror="window.__pwned=3">}',
    ]
}

runner = CliRunner()


@pytest.fixture(scope="module")
def trajectories(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The demo's five episodes plus one whose actions and answer carry HTML and script."""
    folder = tmp_path_factory.mktemp("viewer")
    demo = record_episodes(demo_dir, folder / "demo.jsonl", load_actions(demo_dir / "actions.jsonl"))
    hostile = record_episodes(demo_dir, folder / "hostile.jsonl", HOSTILE)
    return [demo, hostile]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright; skipped when absent, except on CI (CI=true) where it fails."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed"
    if problem is None and not (CHROMIUM.exists() or shutil.which("chromium")):
        problem = f"Chromium not found at {CHROMIUM}"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_report_is_self_contained_and_escaped(trajectories: list[Path]) -> None:
    html = render_html(load_episodes(trajectories))
    assert "window.__pwned" in html
    assert "<script>window" not in html and "<img src=x" not in html and "<b>bold?</b>" not in html
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert len(re.findall(r"<script\b", html)) == 1
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html), "no external resources"
    assert "<link" not in html and "@import" not in html
    digest = base64.b64encode(hashlib.sha256(JS.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html and "default-src 'none'" in html


def test_long_texts_are_folded_and_capped(trajectories: list[Path]) -> None:
    episodes = load_episodes(trajectories[:1])
    html = render_html(episodes, max_chars=100)
    assert "more characters not shown" in html
    assert html.count('<details class="result">') >= 5
    assert html.count('<details class="think">') == sum(len(item.trajectory.steps) for item in episodes)


def test_page_renders_every_step_in_chromium(browser: Any, trajectories: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["view", *map(str, trajectories), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output

    episodes = [t for path in trajectories for t in read_trajectories(path)]
    steps = sum(len(t.steps) for t in episodes)
    tool_errors = sum(c.get("error_kind") == "tool" for t in episodes for s in t.steps for c in s.calls)
    format_errors = sum(c.get("error_kind") == "format" for t in episodes for s in t.steps for c in s.calls)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")

    assert problems == []
    assert requests == [out.as_uri()]
    assert page.locator("li.step").count() == steps == 29
    assert page.locator("article.episode").count() == len(episodes) == 6
    assert page.locator("table.episodes tbody tr").count() == 6
    assert page.locator("svg rect.bar").count() == 6 and page.locator("svg circle.reward").count() == 6
    assert page.locator(".call.err-tool").count() == tool_errors == 2
    assert page.locator(".call.err-format").count() == format_errors == 1
    assert page.locator("li.step.has-error").count() == 3
    assert page.evaluate("window.__pwned") is None
    hostile = page.locator("article.episode").nth(5)
    assert "<script>window.__pwned = 1</script>" in hostile.inner_text()
    assert '\\boxed{<img src=y onerror="window.__pwned=3">}' in hostile.inner_text()
    assert hostile.locator("b", has_text="bold?").count() == 0 and hostile.locator("img").count() == 0
    assert "</pre></details><b>bold?</b>" in hostile.inner_text()

    think = page.locator("details.think").first
    assert not think.evaluate("d => d.open")
    page.click("#expand-all")
    assert think.evaluate("d => d.open")
    page.check("#errors-only")
    assert page.locator("li.step:visible").count() == 3

    page.uncheck("#errors-only")
    page.click("#collapse-all")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
    assert problems == []


def test_write_report_on_an_incomplete_episode(trajectories: list[Path], tmp_path: Path) -> None:
    lines = trajectories[0].read_text(encoding="utf-8").splitlines()
    torn = tmp_path / "torn.jsonl"
    torn.write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    html = write_report([torn], tmp_path / "r.html", title="A <torn> run").read_text(encoding="utf-8")
    assert "incomplete (no footer)" in html and "<title>A &lt;torn&gt; run</title>" in html
    assert html.count('<li class="step') == 3
