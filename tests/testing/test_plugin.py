"""The pytest plugin, loaded through its `pytest11` entry point in a separate pytest process."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

EPISODE_TEST = """
from miroenv import run_episode
from miroenv.testing import final_answer, scrape_call, search_call


def test_ten_line_episode(miroenv_snapshot, miroenv_env, miroenv_policy):
    snapshot = (
        miroenv_snapshot()
        .page("https://example.org/a", "The answer to everything is 42.", title="A")
        .search("the answer", ["https://example.org/a"])
        .task("t1", "What is the answer?", answer="42")
    )
    env = miroenv_env(snapshot)
    actions = [search_call("the answer"), scrape_call("https://example.org/a", "answer"), *final_answer("42")]
    result = run_episode(env, miroenv_policy(actions), task_id="t1", seed=0)
    assert result.reward == 1.0 and result.tool_calls == 2


def test_policy_from_the_snapshot_script(miroenv_snapshot, miroenv_env, miroenv_policy, tmp_path):
    snapshot = miroenv_snapshot("scripted").page("https://example.org/a", "It is 7.").task(
        "t", "What is it?", answer="7", actions=[scrape_call("https://example.org/a", "it"), *final_answer("7")]
    )
    assert snapshot.build().parent == tmp_path
    result = run_episode(miroenv_env(snapshot), miroenv_policy(snapshot, "t"), task_id="t")
    assert result.answer == "7"


CLOSED = []


def test_envs_are_closed_after_the_test(miroenv_snapshot, miroenv_env):
    env = miroenv_env(miroenv_snapshot().task("t", "q?", answer="a"))
    real_close = env.close
    env.close = lambda: (CLOSED.append(True), real_close())


def test_the_previous_env_was_closed():
    assert CLOSED == [True]
"""

REBUILD_TEST = """
from miroenv import run_episode
from miroenv.testing import final_answer, scrape_call


def declare(snapshot, name, value):
    url = f"https://example.org/{name}"
    return snapshot.page(url, f"{name} is {value}.").task(
        name, f"What is {name}?", answer=value, actions=[scrape_call(url, name), *final_answer(value)]
    )


def test_a_builder_changed_after_use_is_rebuilt(miroenv_snapshot, miroenv_env, miroenv_policy):
    snapshot = declare(miroenv_snapshot(), "a", "1")
    assert run_episode(miroenv_env(snapshot), miroenv_policy(snapshot, "a"), task_id="a").reward == 1.0

    declare(snapshot, "b", "2")
    env = miroenv_env(snapshot)
    result = run_episode(env, miroenv_policy(snapshot, "b"), task_id="b")
    assert result.reward == 1.0 and "b is 2." in result.observations[1]

    declare(snapshot, "c", "3")
    policy = miroenv_policy(snapshot, "c")
    result = run_episode(miroenv_env(snapshot), policy, task_id="c")
    assert result.reward == 1.0 and "c is 3." in result.observations[1]
"""


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    [entry] = [e for e in entry_points(group="pytest11") if e.name == "miroenv"]
    assert entry.value == "miroenv.testing.pytest_plugin"


def test_fixtures_work_through_the_installed_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_episode=EPISODE_TEST)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_env_and_policy_fixtures_rebuild_a_builder_changed_since_its_last_build(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_rebuild=REBUILD_TEST)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_fixtures_are_absent_when_the_plugin_is_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_episode=EPISODE_TEST)
    result = pytester.runpytest_subprocess("-p", "no:miroenv", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=3, failed=1)
    result.stdout.fnmatch_lines(["*fixture 'miroenv_snapshot' not found*"])


def test_project_fixtures_with_common_names_do_not_clash(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef env():\n    return 'mine'\n\n"
        "@pytest.fixture\ndef snapshot():\n    return 'also mine'\n"
    )
    pytester.makepyfile(
        "def test_both(env, snapshot, miroenv_env):\n    assert (env, snapshot) == ('mine', 'also mine')\n"
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_update_golden_option_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--miroenv-update-golden*"])


def test_loading_the_plugin_imports_neither_hypothesis_nor_docker() -> None:
    code = (
        "import sys, miroenv.testing.pytest_plugin\n"
        "print(sorted(m for m in ('hypothesis', 'docker', 'miroenv.testing.strategies', "
        "'miroenv.testing.faults') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_of_the_kit_resolves() -> None:
    import miroenv.testing as kit

    for name in kit.__all__:
        assert getattr(kit, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        kit.nope  # noqa: B018 - the attribute access is the test


def test_importing_the_kit_defers_hypothesis_until_strategies_are_used() -> None:
    code = (
        "import sys, miroenv.testing as kit\n"
        "kit.SnapshotBuilder, kit.FaultInjection, kit.assert_golden\n"
        "before = 'hypothesis' in sys.modules\n"
        "kit.valid_tool_calls\n"
        "print(before, 'hypothesis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
