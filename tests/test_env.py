"""ResearchEnv: Gymnasium conformance, episode semantics, budgets, context policy, determinism."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import miroenv
from miroenv import ResearchEnv, Task
from miroenv.demo import ACTIONS, TASKS, WIKI
from miroenv.history import OMITTED_TOOL_RESULT
from miroenv.policy import ScriptedPolicy, run_episode
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat


def mcp(call: ToolCall) -> str:
    return str(McpXmlFormat().render_call(call))


def search_action(q: str) -> str:
    return mcp(ToolCall(server="search_and_scrape_webpage", name="google_search", arguments={"q": q}))


class TickClock:
    """A deterministic clock: each reading is one millisecond after the previous one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def test_gymnasium_make_and_check_env(demo_dir: Path) -> None:
    env = gym.make(miroenv.ENV_ID, snapshot=demo_dir, tasks=demo_dir / "tasks.jsonl", clock=TickClock())
    try:
        check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=3)
        assert isinstance(obs, str) and env.observation_space.contains(obs)
        obs, _reward, terminated, truncated, _info = env.step(search_action("Charles Babbage birth date"))
        assert "Charles_Babbage" in obs and not terminated and not truncated
    finally:
        env.close()


def test_reset_observation_is_system_prompt_and_task(env: ResearchEnv) -> None:
    obs, info = env.reset(options={"task_id": "ada-standard"})
    assert obs.startswith("In this environment you have access to a set of tools")
    assert "Today is: 2025-11-13" in obs
    assert obs.endswith("wrap the final answer in \\boxed{}.")
    assert [m["role"] for m in info["messages"]] == ["system", "user"]
    assert info["budget"]["tool_calls"] == 0


def test_task_date_overrides_snapshot_date(env: ResearchEnv) -> None:
    task = Task(task_id="dated", question="What?", answer="x", date="2030-01-02")
    obs, _ = env.reset(options={"task": task})
    assert "Today is: 2030-01-02" in obs and "2025-11-13" not in obs


def test_task_choice_uses_env_rng_only(env: ResearchEnv) -> None:
    py_state, np_state = random.getstate(), np.random.get_state()
    first = [env.reset(seed=s)[1]["task_id"] for s in range(8)]
    second = [env.reset(seed=s)[1]["task_id"] for s in range(8)]
    assert first == second
    assert len(set(first)) > 1
    assert random.getstate() == py_state
    assert all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(np.random.get_state(), np_state, strict=True)
    )


def test_demo_task_solved_through_summary_turn(env: ResearchEnv) -> None:
    result = run_episode(env, ScriptedPolicy(ACTIONS["ada-standard"]), task_id="ada-standard")
    assert result.terminated and not result.truncated
    assert result.answer == "MIL-STD-1815"
    assert result.reward == 1.0
    assert result.reward_components == {"correct": 1.0}
    assert result.tool_calls == 3
    assert "Summarize the above conversation" in result.observations[-2]
    assert (
        'The original question is repeated here for reference:\n\n"The programming language'
        in (result.observations[-2])
    )


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.task_id)
def test_every_demo_task_is_solved(env: ResearchEnv, task: Task) -> None:
    result = run_episode(env, ScriptedPolicy(ACTIONS[task.task_id]), task_id=task.task_id)
    assert result.reward == 1.0, result
    assert result.answer is not None


def test_same_actions_give_byte_identical_observations(demo_dir: Path) -> None:
    runs = []
    for _ in range(2):
        env = ResearchEnv(demo_dir, demo_dir / "tasks.jsonl", sandbox="auto")
        observations = []
        for index, task in enumerate(TASKS):
            result = run_episode(env, ScriptedPolicy(ACTIONS[task.task_id]), task_id=task.task_id, seed=index)
            observations.extend(result.observations)
        env.close()
        runs.append(observations)
    assert runs[0] == runs[1]
    assert sum(len(o) for o in runs[0]) > 10_000


def test_repeated_query_is_refused_as_in_mirothinker(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "babbage-eniac-gap"})
    first = env.step(search_action("Charles Babbage birth date"))
    assert "1791" in first[0]
    obs, _, terminated, truncated, info = env.step(search_action("Charles Babbage birth date"))
    assert obs == (
        "The query 'Charles Babbage birth date' has already been used in previous google_search. "
        "Please try a different query or keyword."
    )
    assert info["error_kinds"] == ["tool"] and not terminated and not truncated


def test_search_results_are_serper_shaped_and_drop_hugging_face(env: ResearchEnv) -> None:
    import json

    env.reset(options={"task_id": "turing-award-first"})
    obs, *_ = env.step(search_action("Turing Award first recipient"))
    payload = json.loads(obs)
    assert list(payload) == ["organic", "searchParameters"]
    links = [item["link"] for item in payload["organic"]]
    assert links == [WIKI + "Turing_Award", WIKI + "Alan_Turing"]
    assert [item["position"] for item in payload["organic"]] == [1, 2]
    assert obs.startswith('{\n  "organic": [\n    {\n')


def test_page_outside_snapshot_is_a_tool_error_observation(env: ResearchEnv) -> None:
    import json

    env.reset(options={"task_id": "babbage-eniac-gap"})
    call = ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": "https://nowhere.example/x", "info_to_extract": "anything"},
    )
    obs, _, _, _, info = env.step(mcp(call))
    payload = json.loads(obs)
    assert payload["success"] is False
    assert "not in this snapshot" in payload["error"]
    assert info["calls"][0]["error_kind"] == "tool"


def test_scrape_returns_passages_matching_the_question(env: ResearchEnv) -> None:
    import json

    env.reset(options={"task_id": "babbage-eniac-gap"})
    call = ToolCall(
        server="jina_scrape_llm_summary",
        name="scrape_and_extract_info",
        arguments={"url": WIKI + "ENIAC", "info_to_extract": "when was ENIAC formally dedicated"},
    )
    payload = json.loads(env.step(mcp(call))[0])
    assert payload["success"] is True
    assert "15 February 1946" in payload["extracted_info"]
    assert "six women" not in payload["extracted_info"]
    assert payload["scrape_stats"]["all_content_displayed"] is True


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        ("<use_mcp_tool><server_name>search_and_scrape_webpage</server_name>", "use_mcp_tool"),
        (
            "<use_mcp_tool>\n<server_name>search_and_scrape_webpage</server_name>\n<tool_name>google_search"
            "</tool_name>\n<arguments>\n{not json at all\n</arguments>\n</use_mcp_tool>",
            "google_search",
        ),
    ],
)
def test_malformed_call_gets_format_observation_and_episode_continues(
    env: ResearchEnv, action: str, needle: str
) -> None:
    env.reset(options={"task_id": "ada-standard"})
    obs, reward, terminated, truncated, info = env.step(action)
    assert not terminated and not truncated and reward == 0.0
    assert info["error_kinds"] == ["format"]
    assert "could not be parsed" in obs and needle in obs
    obs, *_ = env.step(search_action("Charles Babbage birth date"))
    assert "1791" in obs


def test_unknown_server_and_tool_are_named(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    obs, *_ = env.step(mcp(ToolCall(server="no-such-server", name="google_search", arguments={"q": "x"})))
    assert (
        obs
        == "Tool call to google_search on no-such-server failed. Error: Server 'no-such-server' not found."
    )
    obs, _, _, _, info = env.step(
        mcp(ToolCall(server="search_and_scrape_webpage", name="bing", arguments={}))
    )
    assert obs == "Unknown tool: bing"
    assert info["error_kinds"] == ["tool"]


def test_invalid_arguments_name_the_field(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    obs, _, _, _, info = env.step(
        mcp(ToolCall(server="search_and_scrape_webpage", name="google_search", arguments={"query": "x"}))
    )
    assert obs.startswith("Error executing tool google_search: 1 validation error for google_searchArguments")
    assert "\nq\n  Field required" in obs
    assert info["error_kinds"] == ["tool"]


def test_python_tools_without_backend_report_infra(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, sandbox="none")
    env.reset(options={"task_id": "ada-standard"})
    obs, _, terminated, _, info = env.step(mcp(ToolCall(server="tool-python", name="create_sandbox")))
    assert info["error_kinds"] == ["infra"] and not terminated
    assert "code execution is unavailable" in obs
    obs, _, _, _, info = env.step(
        mcp(
            ToolCall(
                server="tool-python",
                name="run_python_code",
                arguments={"sandbox_id": "default", "code_block": "1"},
            )
        )
    )
    assert obs.startswith("[ERROR]: 'default' is not a valid sandbox_id.")
    assert info["error_kinds"] == ["tool"]


@pytest.mark.parametrize("action", [42, None, 3.5, ["list"], b"bytes"])
def test_non_text_action_is_a_format_error(env: ResearchEnv, action: Any) -> None:
    env.reset(options={"task_id": "ada-standard"})
    obs, _reward, terminated, truncated, info = env.step(action)
    assert info["error_kinds"] == ["format"] and "must be the assistant message" in obs
    assert not terminated and not truncated


def test_several_calls_in_one_message_run_in_order(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    action = (
        search_action("Charles Babbage birth date") + "\n" + search_action("ENIAC formally dedicated date")
    )
    obs, _, _, _, info = env.step(action)
    assert [c["arguments"]["q"] for c in info["calls"]] == [
        "Charles Babbage birth date",
        "ENIAC formally dedicated date",
    ]
    assert obs == "\n".join(c["text"] for c in info["calls"])
    assert info["budget"]["tool_calls"] == 2


def test_recency_policy_prunes_view_not_history(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, keep_tool_results=2)
    env.reset(options={"task_id": "ada-standard"})
    for i in range(5):
        env.step(search_action(f"query number {i}"))
    context, full = env.context(), env.messages()
    assert len(context) == len(full) == 2 + 2 * 5
    omitted = [m for m in context if m["content"] == OMITTED_TOOL_RESULT]
    assert len(omitted) == 3
    assert context[1] == full[1]
    assert context[-1] == full[-1] and context[-3] == full[-3]
    assert all(m["content"] != OMITTED_TOOL_RESULT for m in full)
    keep_all = ResearchEnv(demo_dir, keep_tool_results=-1)
    keep_all.reset(options={"task_id": "ada-standard"})
    for i in range(7):
        keep_all.step(search_action(f"query number {i}"))
    assert keep_all.context() == keep_all.messages()


def test_mirothinker_profile_keeps_five_by_default(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    for i in range(8):
        env.step(search_action(f"query {i}"))
    assert sum(m["content"] == OMITTED_TOOL_RESULT for m in env.context()) == 3


def test_tool_call_budget_truncates(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, max_tool_calls=2)
    env.reset(options={"task_id": "ada-standard"})
    assert env.step(search_action("a"))[3] is False
    assert env.step(search_action("b"))[3] is False
    _obs, reward, terminated, truncated, info = env.step(search_action("c"))
    assert truncated and not terminated
    assert info["truncated_by"] == "tool_calls" and info["budget"]["tool_calls"] == 2
    assert info["answer"] is None and reward == 0.0


def test_turn_budget_truncates(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, max_turns=2)
    env.reset(options={"task_id": "ada-standard"})
    assert env.step("<use_mcp_tool>broken")[3] is False
    _, _, terminated, truncated, info = env.step("<use_mcp_tool>broken")
    assert truncated and not terminated and info["truncated_by"] == "turns"


def test_context_budget_truncates(demo_dir: Path) -> None:
    _, info = ResearchEnv(demo_dir).reset(options={"task_id": "ada-standard"})
    limit = info["budget"]["context_tokens"] + 600
    env = ResearchEnv(demo_dir, max_context_tokens=limit)
    env.reset(options={"task_id": "ada-standard"})
    truncated = False
    for i in range(40):
        _, _, _, truncated, info = env.step(search_action(f"Turing Award first recipient {i}"))
        if truncated:
            break
    assert truncated and info["truncated_by"] == "context_tokens"
    assert info["budget"]["context_tokens"] > limit


def test_pluggable_token_counter_is_used(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, token_counter=lambda text: 1000, max_context_tokens=2500)
    _, info = env.reset(options={"task_id": "ada-standard"})
    assert info["budget"]["context_tokens"] == 2000
    _, _, _, truncated, info = env.step(search_action("x"))
    assert truncated and info["truncated_by"] == "context_tokens"


def test_wall_clock_budget_truncates(demo_dir: Path) -> None:
    import time

    env = ResearchEnv(demo_dir, max_episode_seconds=0.05)
    env.reset(options={"task_id": "ada-standard"})
    time.sleep(0.1)
    _, _, terminated, truncated, info = env.step(search_action("x"))
    assert truncated and not terminated and info["truncated_by"] == "time"


def test_step_after_end_does_not_raise(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    env.step("I think I know.")
    _, reward, terminated, _, _ = env.step("\\boxed{MIL-STD-1815}")
    assert terminated and reward == 1.0
    _obs, reward, terminated, _, info = env.step("more")
    assert terminated and reward == 0.0 and "ended" in info["notice"]


def test_openai_message_dict_action(demo_dir: Path) -> None:
    env = ResearchEnv(demo_dir, tool_format="openai")
    obs, info = env.reset(options={"task_id": "ada-standard"})
    assert any(t["function"]["name"] == "google_search" for t in info["tools"])
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_7",
                "type": "function",
                "function": {"name": "google_search", "arguments": '{"q": "Charles Babbage birth date"}'},
            }
        ],
    }
    obs, _, _, _, info = env.step(message)
    assert "1791" in obs
    context = env.context()
    assert context[-2]["tool_calls"][0]["id"] == "call_7"
    assert context[-1] == {"role": "tool", "content": obs, "tool_call_id": "call_7"}


def test_info_carries_per_call_details(env: ResearchEnv) -> None:
    env.reset(options={"task_id": "ada-standard"})
    _, _, _, _, info = env.step(search_action("Charles Babbage birth date"))
    (call,) = info["calls"]
    assert call["server"] == "search_and_scrape_webpage" and call["tool"] == "google_search"
    assert call["error_kind"] is None and call["duration_s"] >= 0
    assert set(info["budget"]) >= {"tool_calls", "max_tool_calls", "turns", "context_tokens", "elapsed_s"}
    assert info["errors"] == {"format": 0, "tool": 0, "infra": 0}


def test_constructor_errors_are_clear(demo_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tool profile"):
        ResearchEnv(demo_dir, profile="nope")
    with pytest.raises(ValueError, match="mcp_xml"):
        ResearchEnv(demo_dir, tool_format="yaml")
    with pytest.raises(ValueError, match="no tasks given"):
        ResearchEnv(_empty_snapshot(tmp_path))


def _empty_snapshot(path: Path) -> Path:
    from miroenv import SnapshotWriter

    with SnapshotWriter(path / "empty", name="empty", capture_date="2020-01-01"):
        pass
    return path / "empty"
