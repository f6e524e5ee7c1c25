"""MiroFlow/MiroThinker task logs, built here the way MiroThinker v1.0 writes them, import and replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miroenv import read_trajectories
from miroenv.logs import TaskLogError, import_miroflow, load_miroflow, parse_task_log
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.protocol.prompts import render_mirothinker_system_prompt, render_summary_prompt
from miroenv.replay import replay_files
from miroenv.tools.profiles import MIROTHINKER_TASK_SUFFIX, mirothinker_v1
from miroenv.tools.recorded import RecordedProfileSpec, recorded_profile
from miroenv.tools.search import dump_tool_json
from miroenv.web.base import SearchRequest
from miroenv.web.snapshot import Snapshot

DATE = "2025-09-30"
QUESTION = "In which city were the 1952 Summer Olympics held, and how many nations took part?"
TASK = QUESTION + MIROTHINKER_TASK_SUFFIX
SEARCH_Q = "1952 Summer Olympics host city nations"
PAGE = "https://en.wikipedia.org/wiki/1952_Summer_Olympics"


def mcp_call(server: str, tool: str, **arguments: Any) -> str:
    return str(McpXmlFormat().render_call(ToolCall(server=server, name=tool, arguments=arguments)))


def think(text: str) -> str:
    return f"<think>\n{text}\n</think>\n\n"


def serper(q: str, *titles: str) -> str:
    """A Serper response as MiroThinker's MCP server returns it: indented JSON, non-ASCII kept."""
    organic = [
        {
            "title": t,
            "link": f"https://example.org/{i}",
            "snippet": f"{t} — Helsinki, 69 nations.",
            "position": i,
        }
        for i, t in enumerate(titles, start=1)
    ]
    return dump_tool_json(
        {
            "searchParameters": {"q": q, "gl": "us", "hl": "en", "type": "search", "engine": "google"},
            "organic": organic,
            "relatedSearches": [{"query": "1952 Olympics Helsinki"}],
            "credits": 1,
        }
    )


def extraction(url: str, text: str) -> str:
    return dump_tool_json(
        {
            "success": True,
            "url": url,
            "extracted_info": text,
            "error": "",
            "scrape_stats": {
                "line_count": 120,
                "char_count": 9000,
                "last_char_line": 120,
                "all_content_displayed": True,
            },
            "model_used": "gpt-4.1-mini",
            "tokens_used": 2100,
        }
    )


def task_log(
    task_id: str, search_titles: tuple[str, ...], *, parts: bool, budget_cut: bool = False
) -> dict[str, Any]:
    """A MiroThinker v1.0 task log: results of one turn joined by newlines in one user message, summary at the end."""
    specs = mirothinker_v1().specs()

    def user(text: str) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "text", "text": text}] if parts else text}

    python_error = (
        "Tool call to run_python_code on tool-python failed. Error: [ERROR]: sandbox sbx-123 not found"
    )
    messages: list[dict[str, Any]] = [
        user(TASK),
        {
            "role": "assistant",
            "content": think("Search first.")
            + mcp_call("search_and_scrape_webpage", "google_search", q=SEARCH_Q),
        },
        user(serper(SEARCH_Q, *search_titles)),
        {
            "role": "assistant",
            "content": think("Read the page and search the count.")
            + mcp_call(
                "jina_scrape_llm_summary",
                "scrape_and_extract_info",
                url=PAGE,
                info_to_extract="number of nations",
            )
            + "\n\n"
            + mcp_call(
                "search_and_scrape_webpage",
                "google_search",
                q="1952 Olympics number of nations",
                gl="us",
                hl="en",
            ),
        },
        user(
            extraction(PAGE, "69 nations took part.\nHost: Helsinki")
            + "\n"
            + serper("1952 Olympics number of nations", "Olympics 1952")
        ),
        {
            "role": "assistant",
            "content": think("Compute.")
            + mcp_call("tool-python", "run_python_code", code_block="print(69)", sandbox_id="sbx-123"),
        },
        user(python_error),
    ]
    if budget_cut:
        messages.append(
            {
                "role": "assistant",
                "content": think("Once more.")
                + mcp_call("search_and_scrape_webpage", "google_search", q="Helsinki 1952"),
            }
        )
    else:
        messages.append(
            {
                "role": "assistant",
                "content": think("I know enough.") + "Helsinki hosted it; 69 nations took part.",
            }
        )
    messages.append(user(render_summary_prompt(TASK)))
    messages.append({"role": "assistant", "content": think("Answer.") + "\\boxed{Helsinki, 69}"})
    return {
        "status": "success",
        "start_time": "2025-09-30 10:00:00",
        "end_time": "2025-09-30 10:03:00",
        "task_id": task_id,
        "input": {"task_description": QUESTION, "task_file_name": ""},
        "ground_truth": "Helsinki, 69",
        "final_boxed_answer": "Helsinki, 69",
        "final_judge_result": "CORRECT",
        "main_agent_message_history": {
            "system_prompt": render_mirothinker_system_prompt(specs, DATE),
            "message_history": messages,
        },
        "step_logs": [],
    }


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    first = task_log("olympics-1952", ("Helsinki 1952", "1952 Summer Olympics"), parts=True)
    second = task_log("olympics-1952", ("1952 Summer Olympics", "Helsinki Games"), parts=False)
    older = task_log("budget", ("Helsinki 1952",), parts=False, budget_cut=True)
    history = older.pop("main_agent_message_history")
    older["message_history"] = [
        {"role": "system", "content": history["system_prompt"]},
        *history["message_history"],
    ]
    (directory / "task_olympics_run1.json").write_text(json.dumps(first, ensure_ascii=False, indent=2))
    (directory / "task_olympics_run2.json").write_text(json.dumps(second, ensure_ascii=False, indent=2))
    (directory / "older.jsonl").write_text(json.dumps(older) + "\n")
    return directory


def test_log_becomes_steps_with_the_summary_turn(logs_dir: Path) -> None:
    episode = parse_task_log(json.loads((logs_dir / "task_olympics_run1.json").read_text()), "t")
    assert [s.kind for s in episode.steps] == ["tools", "tools", "tools", "reply", "final"]
    assert episode.summary_turn and episode.answer == "Helsinki, 69" and episode.log_answer == "Helsinki, 69"
    assert (
        episode.task.question == QUESTION
        and episode.task.answer == "Helsinki, 69"
        and episode.task.date == DATE
    )
    assert episode.user_message == TASK
    two = episode.steps[1].calls
    assert [c.call.name for c in two] == ["scrape_and_extract_info", "google_search"]
    assert json.loads(two[0].result or "")["extracted_info"].startswith("69 nations")
    assert json.loads(two[1].result or "")["searchParameters"]["q"] == "1952 Olympics number of nations"
    assert episode.steps[2].calls[0].error_kind == "tool"
    assert episode.steps[3].observation == render_summary_prompt(TASK)
    assert episode.prompt.specs == mirothinker_v1().specs()


def test_recovered_profile_shows_the_recorded_prompt(logs_dir: Path) -> None:
    episode = parse_task_log(json.loads((logs_dir / "task_olympics_run1.json").read_text()), "t")
    spec = RecordedProfileSpec.create(episode.prompt.text, episode.prompt.specs, date=DATE, summary_turn=True)
    profile = recorded_profile(spec)
    assert profile.specs() == mirothinker_v1().specs()
    assert profile.system_prompt(DATE, McpXmlFormat()) == episode.prompt.text
    assert "Today is: 2026-01-01" in profile.system_prompt("2026-01-01", McpXmlFormat())
    assert profile.task_message(episode.task) == TASK


def test_logs_import_and_replay_identically(logs_dir: Path, tmp_path: Path) -> None:
    summary = import_miroflow([logs_dir], tmp_path / "out")
    assert summary.episodes == 3 and summary.unrecorded == 1
    trajectories = read_trajectories(tmp_path / "out" / "trajectories.jsonl")
    assert [t.header.env["task"]["task_id"] for t in trajectories] == [
        "budget",
        "olympics-1952",
        "olympics-1952-2",
    ]
    budget, first, _ = trajectories
    assert budget.header.env["summary_turn"] is False and first.header.env["summary_turn"] is True
    assert (budget.steps[3].model_extra or {})["observation_recorded"] is False
    assert [s.observation for s in first.steps][3] == render_summary_prompt(TASK)
    assert first.footer is not None and first.footer.answer == "Helsinki, 69" and first.footer.reward == 1.0
    assert summary.occurrence_results == 3  # the first search got three different responses
    report = replay_files([tmp_path / "out" / "trajectories.jsonl"], tmp_path / "out")
    assert report.identical, [t.first_difference for t in report.trajectories]
    assert report.totals["tool_observations"] == 3 + 3 + 3
    assert report.totals["identical_tool_observations"] == 9
    assert [t.compared for t in report.trajectories] == [1 + 3 + 1, 1 + 5, 1 + 5]


def test_snapshot_keeps_searches_and_results(logs_dir: Path, tmp_path: Path) -> None:
    import_miroflow([logs_dir], tmp_path / "out")
    snapshot = Snapshot(tmp_path / "out" / "snapshot")
    response = snapshot.search(SearchRequest(q="1952 Olympics number of nations"))
    assert response.source == "recorded" and response.payload["organic"][0]["title"] == "Olympics 1952"
    arguments = {"url": PAGE, "info_to_extract": "number of nations"}
    record = snapshot.tool_result("jina_scrape_llm_summary", "scrape_and_extract_info", arguments)
    assert record is not None and json.loads(record.result)["model_used"] == "gpt-4.1-mini"
    assert snapshot.capture_date == DATE
    snapshot.close()


def test_bad_logs_are_reported(tmp_path: Path) -> None:
    with pytest.raises(TaskLogError, match="message"):
        parse_task_log({"task_id": "x"}, "x")
    with pytest.raises(TaskLogError, match="system prompt"):
        parse_task_log({"message_history": [{"role": "user", "content": "q"}]}, "x")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TaskLogError, match=r"broken\.json"):
        load_miroflow([broken])
