"""Record mode is `ResearchEnv(snapshot=RecordingWeb(...))`: an episode recorded live replays byte for byte."""

from __future__ import annotations

from pathlib import Path

from miroenv import ResearchEnv, ScriptedPolicy, Snapshot, Task, run_episode
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.web.record import RecordingWeb

from .conftest import PageServer, SearchServer, record_kwargs

TASK = Task(task_id="recorded", question="What does the article about ENIAC say?", answer="ENIAC")


def call(server: str, name: str, **arguments: object) -> str:
    return "Let me look.\n\n" + str(
        McpXmlFormat().render_call(ToolCall(server=server, name=name, arguments=arguments))
    )


def scrape(url: str) -> str:
    return call(
        "jina_scrape_llm_summary", "scrape_and_extract_info", url=url, info_to_extract="who worked on it"
    )


def test_recorded_episode_replays_byte_identically(
    page_server: PageServer, search_server: SearchServer, snapshot_dir: Path
) -> None:
    search_server.link_base = page_server.base_url
    actions = [
        call("search_and_scrape_webpage", "google_search", q="ENIAC history", num=3),
        scrape(page_server.url("/redirect/eniac-history-1-1")),
        scrape(page_server.url("/pages/eniac-history-1-1/")),
        scrape(page_server.url("/files/data.csv")),
        scrape(page_server.url("/forbidden")),
        scrape(page_server.url("/missing")),
        "The article says \\boxed{ENIAC}.",
        "Final answer: \\boxed{ENIAC}",
    ]
    web = RecordingWeb(snapshot_dir, **record_kwargs(search_server))
    env = ResearchEnv(web, [TASK])
    costs: list[dict[str, float]] = []
    recorded = run_episode(
        env,
        ScriptedPolicy(actions),
        task_id="recorded",
        seed=7,
        on_step=lambda view: costs.append(view.info["cost"]),
    )
    env.close()
    assert costs[-1] == {"search_requests": 1.0}, "the live search call is counted against the episode"
    web.close()
    assert recorded.terminated and recorded.reward == 1.0
    assert recorded.errors == {"format": 0, "tool": 1, "infra": 1}, "404 is the model's miss; 403 is infra"
    assert "Paragraph 2 of the article about eniac-history-1-1" in recorded.observations[2]
    assert len(search_server.requests) == 1
    hits_after_recording = dict(page_server.hits)

    env = ResearchEnv(Snapshot(snapshot_dir), [TASK])
    replayed = run_episode(env, ScriptedPolicy(actions), task_id="recorded", seed=7)
    env.close()
    ok = [i for i in range(len(actions) + 1) if i != 5]  # step 5 is the 403: infra, never recorded
    assert [replayed.observations[i] for i in ok] == [recorded.observations[i] for i in ok]
    assert replayed.errors == {"format": 0, "tool": 2, "infra": 0}
    assert page_server.hits == hits_after_recording and len(search_server.requests) == 1, (
        "replay stays offline"
    )
