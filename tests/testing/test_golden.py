"""Golden trajectories: identical runs pass, a changed observation or injected fault fails naming the step,
the field and the difference, volatile fields are ignored, and update mode rewrites the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from miroenv import ResearchEnv, ScriptedPolicy, read_trajectories
from miroenv.demo import ACTIONS
from miroenv.testing import (
    DEFAULT_IGNORED,
    FaultInjection,
    SnapshotBuilder,
    assert_golden,
    final_answer,
    scrape_call,
    search_call,
)
from miroenv.testing.golden import UPDATE_ENV

pytest_plugins = ["pytester"]

TASK = "babbage-eniac-gap"


def _run(demo_dir: Path, golden: Path, **kwargs: object) -> None:
    env = ResearchEnv(demo_dir)
    try:
        assert_golden(env, ScriptedPolicy(ACTIONS[TASK]), golden, task_id=TASK, **kwargs)  # type: ignore[arg-type]
    finally:
        env.close()


def _rewrite_step(golden: Path, index: int, **changes: object) -> None:
    lines = golden.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    step = next(r for r in records if r["type"] == "step" and r["index"] == index)
    step.update(changes)
    golden.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_identical_runs_pass_and_update_mode_writes_the_file(demo_dir: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden" / "babbage.jsonl"
    _run(demo_dir, golden, update=True)
    assert len(read_trajectories(golden)[0].steps) == 7
    _run(demo_dir, golden)


def test_a_changed_observation_fails_naming_step_field_and_diff(demo_dir: Path, tmp_path: Path) -> None:
    golden = tmp_path / "babbage.jsonl"
    _run(demo_dir, golden, update=True)
    stored = json.loads(golden.read_text().splitlines()[2])
    assert stored["index"] == 2
    _rewrite_step(
        golden, 2, observation=stored["observation"].replace("already been used", "been seen before")
    )
    with pytest.raises(AssertionError) as failure:
        _run(demo_dir, golden)
    message = str(failure.value)
    assert f"differs from the golden trajectory {golden} at step 2, field observation:" in message
    assert "expected: \"The query 'Charles Babbage birth date' has been seen before" in message
    assert "actual:   \"The query 'Charles Babbage birth date' has already been used" in message
    assert "    -The query 'Charles Babbage birth date' has been seen before" in message
    assert "    +The query 'Charles Babbage birth date' has already been used" in message
    assert "--miroenv-update-golden" in message


def test_volatile_fields_are_ignored_unless_asked_for(demo_dir: Path, tmp_path: Path) -> None:
    golden = tmp_path / "babbage.jsonl"
    _run(demo_dir, golden, update=True)
    _rewrite_step(golden, 3, duration_s=123.0)
    _run(demo_dir, golden)
    with pytest.raises(AssertionError, match=r"at step 1, field calls\[0\]\.duration_s:\n  expected: "):
        _run(demo_dir, golden, ignore=DEFAULT_IGNORED - {"duration_s"})


def test_a_changed_snapshot_is_reported_in_the_header_or_at_the_step_that_read_it(tmp_path: Path) -> None:
    def build(text: str, where: str) -> Path:
        return (
            SnapshotBuilder("golden")
            .page("https://example.org/a", text, title="A")
            .search("the answer", ["https://example.org/a"])
            .task("t", "What is the answer?", answer="42")
            .build(tmp_path / where)
        )

    actions = [search_call("the answer"), scrape_call("https://example.org/a", "answer"), *final_answer("42")]
    golden = tmp_path / "t.jsonl"
    for path, kwargs in (
        (build("The answer is 42.", "old"), {"update": True}),
        (build("The answer is 43.", "new"), {}),
    ):
        env = ResearchEnv(path)
        try:
            if kwargs:
                assert_golden(env, ScriptedPolicy(actions), golden, task_id="t", update=True)
                continue
            with pytest.raises(AssertionError, match=r"at header, field env\.snapshot\.content_hash"):
                assert_golden(env, ScriptedPolicy(actions), golden, task_id="t")
            with pytest.raises(
                AssertionError, match=r"at step 1, field observation:(.|\n)*-.*42(.|\n)*\+.*43"
            ):
                assert_golden(
                    env,
                    ScriptedPolicy(actions),
                    golden,
                    task_id="t",
                    ignore=DEFAULT_IGNORED | {"content_hash"},
                )
        finally:
            env.close()


def test_a_different_fault_is_a_difference_even_when_the_observation_is_the_same(tmp_path: Path) -> None:
    page = "https://example.org/a"
    path = (
        SnapshotBuilder("golden")
        .page(page, "The answer is 42. " * 20, title="A")
        .task("t", "What is the answer?", answer="42")
        .build(tmp_path / "snapshot")
    )
    actions = [scrape_call(page, "answer"), *final_answer("42")]
    golden = tmp_path / "faults.jsonl"

    def check(**kwargs: Any) -> None:
        env = FaultInjection(ResearchEnv(path), seed=0, rates={"truncated_page": 1.0})
        try:
            assert_golden(env, ScriptedPolicy(actions), golden, task_id="t", **kwargs)
        finally:
            env.close()

    check(update=True)
    stored = json.loads(golden.read_text().splitlines()[1])
    [fault] = stored["faults"]
    assert fault["kind"] == "truncated_page"
    check()
    _rewrite_step(golden, 1, faults=[{**fault, "kind": "empty_page"}])
    with pytest.raises(
        AssertionError,
        match=r"at step 1, field faults\[0\]\.kind:\n  expected: 'empty_page'\n  actual:   'truncated_page'",
    ):
        check()
    _rewrite_step(golden, 1, faults=[])
    with pytest.raises(AssertionError, match=r"at step 1, field faults\[0\]: absent from the expected"):
        check()


def test_a_shorter_episode_is_reported_as_a_missing_step(demo_dir: Path, tmp_path: Path) -> None:
    golden = tmp_path / "babbage.jsonl"
    _run(demo_dir, golden, update=True)
    env = ResearchEnv(demo_dir)
    try:
        shorter = ScriptedPolicy(["\\boxed{155}", "\\boxed{155}"])
        with pytest.raises(AssertionError, match="at step 1, field action:"):
            assert_golden(env, shorter, golden, task_id=TASK)
    finally:
        env.close()
    lines = golden.read_text().splitlines()
    golden.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(
        AssertionError,
        match=r"at step 7: absent from the expected trajectory; actual has \{'action': '<think>.*155\}', 'observation': ''\}",
    ):
        _run(demo_dir, golden)


def test_missing_golden_file_says_how_to_create_it(
    demo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    golden = tmp_path / "none.jsonl"
    with pytest.raises(AssertionError, match="does not exist; run pytest with --miroenv-update-golden"):
        _run(demo_dir, golden)
    monkeypatch.setenv(UPDATE_ENV, "1")
    _run(demo_dir, golden)
    assert golden.is_file()


def test_update_option_through_pytest(pytester: pytest.Pytester, demo_dir: Path) -> None:
    pytester.makepyfile(
        f"""
        from pathlib import Path
        from miroenv import ResearchEnv
        from miroenv.demo import ACTIONS

        def test_golden(miroenv_env, miroenv_policy, miroenv_golden):
            env = miroenv_env({str(demo_dir)!r})
            policy = miroenv_policy(ACTIONS["{TASK}"])
            miroenv_golden(env, policy, Path(__file__).parent / "golden.jsonl", task_id="{TASK}")
        """
    )
    missing = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*golden trajectory*does not exist*"])
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--miroenv-update-golden").assert_outcomes(
        passed=1
    )
    assert (pytester.path / "golden.jsonl").is_file()
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
