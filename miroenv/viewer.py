"""A self-contained HTML report of trajectories: one timeline per episode plus a summary table and chart.

Everything is inlined (CSS, a few lines of JS, the SVG chart), so the file opens anywhere without a
network; a Content-Security-Policy allows only that one script (by hash) and no fetches at all. Every piece
of trajectory text is HTML-escaped: model output is shown as text, never interpreted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any, NamedTuple

from miroenv._version import __version__
from miroenv.protocol.base import action_text
from miroenv.scoring import JUDGE_FIELD, episode_errors, episode_tool_calls
from miroenv.trajectory import StepRecord, Trajectory, read_trajectories

FOLD_CHARS = 600
"""Texts longer than this (or than `FOLD_LINES` lines) are folded into a `<details>`."""
FOLD_LINES = 12
MAX_CHARS = 200_000
"""Default cap on one text block in the report; the rest is noted as omitted (the JSONL keeps it all)."""

_THINK = re.compile(r"<think>(.*?)(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)

CSS = """
:root { --fg:#1d232a; --muted:#5f6b76; --bg:#f6f7f9; --card:#fff; --line:#d9dee4; --accent:#2f6fde;
  --ok:#1f8a4c; --bad:#c62f2f; --mid:#c98a12; --format:#b7791f; --tool:#a23bb5; --infra:#d23030; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg);
  background:var(--bg); }
header.top { padding:16px 24px; background:#202a36; color:#fff; }
header.top h1 { margin:0 0 4px; font-size:20px; }
header.top p { margin:0; color:#c5ced8; font-size:12px; }
.controls { margin-top:10px; display:flex; gap:10px; align-items:center; flex-wrap:wrap; }
.controls button { font:inherit; padding:3px 10px; border-radius:4px; border:1px solid #8794a3;
  background:#2d3a49; color:#fff; cursor:pointer; }
main { padding:16px 24px; max-width:1280px; margin:0 auto; }
section.summary, article.episode { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:16px; margin-bottom:18px; }
h2 { margin:0 0 10px; font-size:17px; } h3 { margin:12px 0 6px; font-size:14px; }
.metrics { display:flex; gap:18px; flex-wrap:wrap; margin-bottom:10px; }
.metric { background:var(--bg); border-radius:6px; padding:6px 12px; }
.metric b { display:block; font-size:18px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:4px 8px; text-align:left; vertical-align:top; }
th { background:var(--bg); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.chart { width:100%; overflow-x:auto; margin:8px 0 14px; }
.chart svg { display:block; max-width:100%; height:auto; }
pre { margin:4px 0; padding:8px; background:#f3f4f6; border-radius:4px; white-space:pre-wrap;
  word-break:break-word; font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
details > summary { cursor:pointer; color:var(--muted); }
details.think > summary { color:#6b5ba8; font-style:italic; }
details.think pre { background:#f5f2fd; }
.meta { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; font-size:12px; color:var(--muted); }
.meta dd { margin:0; color:var(--fg); word-break:break-all; }
.task { border-left:4px solid var(--accent); padding:4px 12px; margin:10px 0; background:#f2f6fd; }
.question { white-space:pre-wrap; font-size:15px; }
ol.timeline { list-style:none; margin:10px 0; padding:0 0 0 18px; border-left:2px solid var(--line); }
li.step { position:relative; margin:0 0 12px; padding:8px 12px; border:1px solid var(--line);
  border-radius:6px; background:#fff; }
li.step::before { content:""; position:absolute; left:-26px; top:12px; width:12px; height:12px;
  border-radius:50%; background:var(--accent); border:2px solid #fff; }
li.step.has-error::before { background:var(--bad); }
.step-head { display:flex; gap:10px; align-items:baseline; font-size:12px; color:var(--muted); margin-bottom:4px; }
.step-head b { color:var(--fg); font-size:13px; }
.turn .text { white-space:pre-wrap; }
.call { margin:6px 0; padding:6px 10px; border-left:3px solid var(--ok); background:#f8faf9; border-radius:4px; }
.call .call-head { font-weight:600; font-size:13px; }
.call .server { color:var(--muted); font-weight:400; }
.call.err-format { border-color:var(--format); background:#fdf7ea; }
.call.err-tool { border-color:var(--tool); background:#fbf1fd; }
.call.err-infra { border-color:var(--infra); background:#fdf0f0; }
.badge { display:inline-block; padding:0 6px; border-radius:9px; font-size:11px; font-weight:600; color:#fff;
  background:var(--muted); }
.badge.format { background:var(--format); } .badge.tool { background:var(--tool); }
.badge.infra { background:var(--infra); } .badge.ok { background:var(--ok); } .badge.bad { background:var(--bad); }
.badge.mid { background:var(--mid); }
.error-msg { color:var(--bad); margin:2px 0; white-space:pre-wrap; }
.call[class*="err-"] .result pre { color:var(--bad); }
.observation { border-left:3px solid var(--accent); padding-left:8px; margin-top:6px; }
.label { font-size:11px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.outcome { border-top:1px solid var(--line); padding-top:8px; }
.omitted { color:var(--muted); font-style:italic; }
body.errors-only li.step:not(.has-error) { display:none; }
a { color:var(--accent); }
"""

JS = """
(function () {
  function setAll(open) {
    document.querySelectorAll("details").forEach(function (d) { d.open = open; });
  }
  document.getElementById("expand-all").addEventListener("click", function () { setAll(true); });
  document.getElementById("collapse-all").addEventListener("click", function () { setAll(false); });
  document.getElementById("errors-only").addEventListener("change", function (e) {
    document.body.classList.toggle("errors-only", e.target.checked);
  });
})();
"""


class SourcedTrajectory(NamedTuple):
    """A trajectory with the file it came from and its position there."""

    path: str
    episode: int
    trajectory: Trajectory


def load_episodes(paths: Iterable[str | Path]) -> list[SourcedTrajectory]:
    """Every episode of the given trajectory files, in order."""
    return [
        SourcedTrajectory(str(path), episode, trajectory)
        for path in paths
        for episode, trajectory in enumerate(read_trajectories(path))
    ]


def _mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a dict, else an empty one (headers from other tools may lack fields)."""
    return value if isinstance(value, dict) else {}


def _e(value: Any) -> str:
    """HTML-escape any value (quotes included, so it is safe in attributes too)."""
    return escape(str(value), quote=True)


def _cap(text: str, max_chars: int) -> str:
    """The text, cut at `max_chars` with a note of how much the report leaves out."""
    if len(text) <= max_chars:
        return _e(text)
    omitted = len(text) - max_chars
    return f'{_e(text[:max_chars])}<span class="omitted">\n[… {omitted:,} more characters not shown]</span>'


def _block(text: str, label: str, max_chars: int, css: str = "") -> str:
    """A `<pre>` of `text`, folded into a `<details>` when it is long."""
    klass = f' class="{css}"' if css else ""
    body = f"<pre>{_cap(text, max_chars)}</pre>"
    if len(text) <= FOLD_CHARS and text.count("\n") < FOLD_LINES:
        return f"<div{klass}>{body}</div>"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    preview = first if len(first) <= 90 else first[:89] + "…"
    return (
        f"<details{klass}><summary>{_e(label)} · {len(text):,} chars · "
        f"<code>{_e(preview)}</code></summary>{body}</details>"
    )


def _assistant_text(text: str, max_chars: int) -> str:
    """The assistant's text with each `<think>` block folded."""
    parts: list[str] = []
    position = 0
    for match in _THINK.finditer(text):
        before = text[position : match.start()].strip()
        if before:
            parts.append(f'<div class="text">{_cap(before, max_chars)}</div>')
        thought = match.group(1).strip()
        parts.append(
            f'<details class="think"><summary>thinking · {len(thought):,} chars</summary>'
            f"<pre>{_cap(thought, max_chars)}</pre></details>"
        )
        position = match.end()
    rest = text[position:].strip()
    if rest:
        parts.append(f'<div class="text">{_cap(rest, max_chars)}</div>')
    return "".join(parts) or '<div class="text omitted">(empty reply)</div>'


def _action(step: StepRecord, max_chars: int) -> str:
    """The assistant turn: its text (thinking folded) and any native tool calls of a message dict."""
    action = step.action
    html = []
    if isinstance(action, dict):
        reasoning = action.get("reasoning_content") or action.get("reasoning")
        if isinstance(reasoning, str) and reasoning.strip():
            html.append(
                f'<details class="think"><summary>thinking · {len(reasoning):,} chars</summary>'
                f"<pre>{_cap(reasoning, max_chars)}</pre></details>"
            )
        html.append(_assistant_text(action_text(action), max_chars))
        if action.get("tool_calls"):
            native = json.dumps(action["tool_calls"], ensure_ascii=False, indent=2)
            html.append(_block(native, "native tool_calls", max_chars))
    else:
        html.append(_assistant_text(action, max_chars))
    return f'<div class="turn assistant"><div class="label">assistant</div>{"".join(html)}</div>'


def _call(call: dict[str, Any], max_chars: int) -> str:
    """One tool call: name, arguments, result (folded when long) and its error, highlighted by kind."""
    kind = call.get("error_kind")
    klass = f"call err-{_e(kind)}" if kind else "call"
    tool = call.get("tool") or "(unparsed call)"
    server = f' <span class="server">{_e(call["server"])}</span>' if call.get("server") else ""
    badge = f' <span class="badge {_e(kind)}">{_e(kind)} error</span>' if kind else ""
    flags = []
    if call.get("truncated"):
        flags.append('<span class="badge mid">result truncated</span>')
    if isinstance(call.get("duration_s"), (int, float)):
        flags.append(f'<span class="label">{call["duration_s"]:.3f}s</span>')
    arguments = call.get("arguments")
    args = json.dumps(arguments, ensure_ascii=False, indent=2) if arguments else ""
    message = str(call.get("error") or "")
    shown = message and message.strip() != str(call.get("text", "")).strip()
    error = f'<p class="error-msg">{_cap(message, max_chars)}</p>' if shown else ""
    return (
        f'<div class="{klass}"><div class="call-head">→ {_e(tool)}{server}{badge} {" ".join(flags)}</div>'
        f"{_block(args, 'arguments', max_chars, 'args') if args else ''}{error}"
        f"{_block(str(call.get('text', '')), 'result', max_chars, 'result')}</div>"
    )


def _step(episode: int, step: StepRecord, max_chars: int) -> str:
    """One step of the timeline: the assistant turn, its tool calls, or the observation it got back."""
    kinds = sorted(set(step.error_kinds) | {str(c["error_kind"]) for c in step.calls if c.get("error_kind")})
    classes = "step" + (" has-error" if kinds else "") + "".join(f" err-{_e(k)}" for k in kinds)
    badges = "".join(f'<span class="badge {_e(k)}">{_e(k)} error</span>' for k in kinds)
    budget = step.budget
    used = f"tool calls so far: {_e(budget['tool_calls'])}" if "tool_calls" in budget else ""
    tokens = f"context tokens: {_e(budget['context_tokens'])}" if "context_tokens" in budget else ""
    end = ""
    if step.terminated or step.truncated:
        end = f'<span class="badge {"ok" if step.terminated else "mid"}">{"terminated" if step.terminated else "truncated"}</span>'
    head = (
        f'<div class="step-head"><b>Step {_e(step.index)}</b><span>{step.duration_s:.3f}s</span>'
        f"<span>{used}</span><span>{tokens}</span>{badges}{end}</div>"
    )
    body = [_action(step, max_chars)]
    body.extend(_call(call, max_chars) for call in step.calls)
    if not step.calls and step.observation:
        body.append(
            '<div class="observation"><div class="label">observation</div>'
            f"{_block(step.observation, 'observation', max_chars)}</div>"
        )
    return (
        f'<li class="{classes}" id="ep-{episode}-step-{_e(step.index)}" data-step="{_e(step.index)}">'
        f"{head}{''.join(body)}</li>"
    )


def _status(trajectory: Trajectory) -> tuple[str, str]:
    """(css class, label) describing how the episode ended."""
    footer = trajectory.footer
    if footer is None:
        return "bad", "incomplete (no footer)"
    if footer.truncated:
        return "mid", f"truncated ({footer.truncated_by or 'budget'})"
    return "ok", "terminated"


def _reward_class(reward: float | None) -> str:
    if reward is None or reward <= 0:
        return "bad"
    return "ok" if reward >= 1.0 else "mid"


def _outcome(trajectory: Trajectory, max_chars: int) -> str:
    """The footer: answer, reward with its components, status, budget use and any judge verdicts."""
    footer = trajectory.footer
    status_class, status = _status(trajectory)
    if footer is None:
        return (
            f'<div class="outcome"><h3>Outcome</h3><span class="badge {status_class}">{_e(status)}</span> '
            f"{len(trajectory.steps)} steps recorded</div>"
        )
    rows = "".join(
        f'<tr><td>{_e(name)}</td><td class="num">{value:.4g}</td></tr>'
        for name, value in footer.reward_components.items()
    )
    components = (
        f'<table class="components"><tr><th>component</th><th class="num">value</th></tr>{rows}</table>'
        if rows
        else ""
    )
    judged = (footer.model_extra or {}).get(JUDGE_FIELD)
    verdicts = ""
    if isinstance(judged, dict) and judged:
        items = []
        for verdict in judged.values():
            if not isinstance(verdict, dict):
                continue
            correct = bool(verdict.get("correct"))
            items.append(
                f'<li><span class="badge {"ok" if correct else "bad"}">{"correct" if correct else "incorrect"}</span> '
                f"{_e(verdict.get('template', ''))} judge, {_e(verdict.get('model', ''))}: extracted "
                f"<code>{_e(verdict.get('extracted_final_answer'))}</code>"
                f"{_block(str(verdict.get('reasoning') or verdict.get('reply') or ''), 'reasoning', max_chars)}</li>"
            )
        verdicts = f"<h3>Judge verdicts</h3><ul>{''.join(items)}</ul>"
    errors = ", ".join(f"{_e(k)}: {_e(v)}" for k, v in footer.errors.items())
    return (
        '<div class="outcome"><h3>Outcome</h3>'
        f'<p>answer: <code>{_e(footer.answer)}</code> · reward <span class="badge {_reward_class(footer.reward)}">'
        f'{footer.reward:.4g}</span> · <span class="badge {status_class}">{_e(status)}</span> · '
        f"{footer.steps} steps · {footer.tool_calls} tool calls · errors {errors or 'none'}</p>"
        f"{components}{verdicts}</div>"
    )


def _episode(number: int, item: SourcedTrajectory, max_chars: int) -> str:
    """One episode: where it came from, the task, the first prompt (folded), the timeline and the outcome."""
    trajectory = item.trajectory
    env = trajectory.header.env
    task = _mapping(env.get("task"))
    snapshot = _mapping(env.get("snapshot"))
    meta = {
        "file": f"{item.path} (episode {item.episode + 1})",
        "episode id": trajectory.header.episode_id,
        "snapshot": f"{snapshot.get('name', '?')} {snapshot.get('content_hash', '')}".strip(),
        "profile / format": f"{env.get('profile', '?')} / {env.get('tool_format', '?')}",
        "seed": env.get("seed"),
        "reward": env.get("reward"),
    }
    meta_html = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in meta.items())
    gold = task.get("answer")
    aliases = task.get("aliases") or []
    gold_html = f"<p>gold: <code>{_e(gold)}</code>" + (
        f" (also: {', '.join(f'<code>{_e(a)}</code>' for a in aliases)})</p>" if aliases else "</p>"
    )
    prompt = _block(trajectory.header.observation, "first observation (system prompt and task)", max_chars)
    steps = "".join(_step(number, step, max_chars) for step in trajectory.steps)
    return (
        f'<article class="episode" id="ep-{number}" data-steps="{len(trajectory.steps)}">'
        f'<h2>Episode {number + 1} · {_e(task.get("task_id", "?"))}</h2><dl class="meta">{meta_html}</dl>'
        f'<div class="task"><div class="label">task</div><p class="question">{_e(task.get("question", ""))}</p>'
        f"{gold_html}</div>{prompt}"
        f'<ol class="timeline">{steps}</ol>{_outcome(trajectory, max_chars)}</article>'
    )


def _chart(episodes: Sequence[SourcedTrajectory]) -> str:
    """An inline SVG chart: tool calls per episode as bars (left axis), the reward as dots (right axis)."""
    count = len(episodes)
    calls = [episode_tool_calls(item.trajectory) for item in episodes]
    rewards = [item.trajectory.footer.reward if item.trajectory.footer else None for item in episodes]
    top_calls = max([*calls, 1])
    top_reward = max([1.0, *(r for r in rewards if r is not None)])
    left, right, top, bottom, height = 48, 48, 16, 34, 220
    slot = max(8.0, min(110.0, 900 / max(count, 1)))
    width = left + right + slot * count
    plot = height - top - bottom

    def y_calls(value: float) -> float:
        return top + plot * (1 - value / top_calls)

    def y_reward(value: float) -> float:
        return top + plot * (1 - max(0.0, value) / top_reward)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height}" width="{width:.0f}" '
        f'height="{height}" role="img" '
        f'aria-label="tool calls and reward per episode">',
        f'<line x1="{left}" y1="{top + plot}" x2="{width - right:.0f}" y2="{top + plot}" stroke="#8a96a3"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = top + plot * (1 - fraction)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right:.0f}" y2="{y:.1f}" stroke="#e4e8ec"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#5f6b76">'
            f"{top_calls * fraction:.3g}</text>"
            f'<text x="{width - right + 6:.0f}" y="{y + 4:.1f}" font-size="11" fill="#2f6fde">'
            f"{top_reward * fraction:.3g}</text>"
        )
    parts.append(
        f'<text x="12" y="{top + plot / 2:.0f}" font-size="11" fill="#5f6b76" '
        f'transform="rotate(-90 12 {top + plot / 2:.0f})" text-anchor="middle">tool calls</text>'
        f'<text x="{width - 8:.0f}" y="{top + plot / 2:.0f}" font-size="11" fill="#2f6fde" '
        f'transform="rotate(90 {width - 8:.0f} {top + plot / 2:.0f})" text-anchor="middle">reward</text>'
    )
    colors = {"ok": "#1f8a4c", "mid": "#c98a12", "bad": "#c62f2f"}
    radius = max(2.0, min(5.0, slot * 0.35))
    for number, (item, n_calls, reward) in enumerate(zip(episodes, calls, rewards, strict=True)):
        x = left + slot * number
        y = y_calls(n_calls)
        task = _mapping(item.trajectory.header.env.get("task"))
        label = f"episode {number + 1} {task.get('task_id', '')}: {n_calls} tool calls, reward " + (
            "none (incomplete)" if reward is None else f"{reward:.4g}"
        )
        bar = (
            f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{top + plot - y:.1f}" fill="#9fb4d0"><title>{_e(label)}</title></rect>'
        )
        dot = ""
        if reward is not None:
            dot = (
                f'<circle class="reward" cx="{x + slot / 2:.1f}" cy="{y_reward(reward):.1f}" r="{radius:.1f}" '
                f'fill="{colors[_reward_class(reward)]}" stroke="#fff"><title>{_e(label)}</title></circle>'
            )
        tick = ""
        if count <= 40 or number % max(1, count // 20) == 0:
            tick = (
                f'<text x="{x + slot / 2:.1f}" y="{top + plot + 14}" font-size="10" text-anchor="middle" '
                f'fill="#5f6b76">{number + 1}</text>'
            )
        parts.append(f'<a href="#ep-{number}">{bar}{dot}</a>{tick}')
    parts.append(
        f'<text x="{left + (width - left - right) / 2:.0f}" y="{height - 4}" font-size="11" text-anchor="middle" '
        f'fill="#5f6b76">episode</text></svg>'
    )
    caption = "bars: tool calls per episode (left axis) · dots: reward (right axis) · click to jump"
    return f'<figure class="chart">{"".join(parts)}<figcaption class="label">{caption}</figcaption></figure>'


def _summary(episodes: Sequence[SourcedTrajectory]) -> str:
    """Headline metrics, the chart, and a table with one linked row per episode."""
    count = len(episodes)
    rewards = [item.trajectory.footer.reward if item.trajectory.footer else 0.0 for item in episodes]
    calls = [episode_tool_calls(item.trajectory) for item in episodes]
    errors: dict[str, int] = {}
    rows = []
    for number, (item, reward, n_calls) in enumerate(zip(episodes, rewards, calls, strict=True)):
        trajectory = item.trajectory
        kinds = episode_errors(trajectory)
        for kind, n in kinds.items():
            errors[kind] = errors.get(kind, 0) + n
        task = _mapping(trajectory.header.env.get("task"))
        footer = trajectory.footer
        status_class, status = _status(trajectory)
        rows.append(
            f'<tr><td class="num"><a href="#ep-{number}">{number + 1}</a></td>'
            f"<td>{_e(task.get('task_id', '?'))}</td><td><code>{_e(footer.answer if footer else None)}</code></td>"
            f"<td><code>{_e(task.get('answer'))}</code></td>"
            f'<td class="num"><span class="badge {_reward_class(reward if footer else None)}">{reward:.4g}</span></td>'
            f'<td class="num">{len(trajectory.steps)}</td><td class="num">{n_calls}</td>'
            f'<td class="num">{kinds.get("format", 0)}/{kinds.get("tool", 0)}/{kinds.get("infra", 0)}</td>'
            f'<td><span class="badge {status_class}">{_e(status)}</span></td></tr>'
        )
    mean_reward = sum(rewards) / count if count else 0.0
    mean_calls = sum(calls) / count if count else 0.0
    solved = sum(r >= 1.0 for r in rewards)
    metrics = {
        "episodes": str(count),
        "mean reward": f"{mean_reward:.3f}",
        "reward ≥ 1": f"{solved}/{count}",
        "mean tool calls": f"{mean_calls:.2f}",
        "steps": str(sum(len(item.trajectory.steps) for item in episodes)),
        "errors f/t/i": f"{errors.get('format', 0)}/{errors.get('tool', 0)}/{errors.get('infra', 0)}",
    }
    metrics_html = "".join(f'<div class="metric"><b>{_e(v)}</b>{_e(k)}</div>' for k, v in metrics.items())
    head = "".join(
        f"<th{' class=num' if name in {'#', 'reward', 'steps', 'tool calls', 'errors f/t/i'} else ''}>{name}</th>"
        for name in ("#", "task", "answer", "gold", "reward", "steps", "tool calls", "errors f/t/i", "status")
    )
    return (
        f'<section class="summary" id="summary"><h2>Summary</h2><div class="metrics">{metrics_html}</div>'
        f'{_chart(episodes) if episodes else ""}<table class="episodes"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def render_html(
    episodes: Sequence[SourcedTrajectory], *, title: str | None = None, max_chars: int = MAX_CHARS
) -> str:
    """The whole report as one HTML document (inline CSS, JS and SVG; no external resources)."""
    script_hash = base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")
    policy = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; img-src data:"
    )
    files = sorted({item.path for item in episodes})
    heading = title or f"miroenv trajectories · {len(episodes)} episode{'s' if len(episodes) != 1 else ''}"
    body = "".join(_episode(number, item, max_chars) for number, item in enumerate(episodes))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(heading)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{_e(heading)}</h1><p>{_e(", ".join(files))} · miroenv {_e(__version__)}</p>'
        '<div class="controls"><button type="button" id="expand-all">expand all</button>'
        '<button type="button" id="collapse-all">collapse all</button>'
        '<label><input type="checkbox" id="errors-only"> only steps with errors</label></div></header>'
        f"<main>{_summary(episodes)}{body}</main><script>{JS}</script></body></html>\n"
    )


def write_report(
    paths: Iterable[str | Path], out: str | Path, *, title: str | None = None, max_chars: int = MAX_CHARS
) -> Path:
    """Render the trajectories in `paths` into one self-contained HTML file at `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(load_episodes(paths), title=title, max_chars=max_chars), encoding="utf-8")
    return out
