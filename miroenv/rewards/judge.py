"""An LLM-judge reward: an OpenAI-compatible grader with the BrowseComp and HLE judge templates built in.

Verdicts are looked up in memory (verdicts loaded from a trajectory with `remember`), then in a disk cache
(diskcache), and only then asked of the endpoint, so scoring the same answer twice costs one call. The key
covers the template text, the judge model, the question, the answer and the gold answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import diskcache
from pydantic import BaseModel, ConfigDict

from miroenv.budgets import CallBudget
from miroenv.llm import ChatEndpointError, configured_client
from miroenv.rewards.base import RewardBreakdown, RewardContext
from miroenv.tasks import Task

_GRADER_PROMPT = """Judge whether the following [response] to [question] is correct or not based on the precise and unambiguous [correct_answer] below.

[question]: {question}

[response]: {response}

Your judgement must be in the format and criteria specified below:

extracted_final_answer: The final exact answer extracted from the [response]. Put the extracted answer as 'None' if there is no exact, final answer to extract from the response.

[correct_answer]: {correct_answer}

reasoning: Explain why the extracted_final_answer is correct or incorrect based on [correct_answer], focusing only on if there are meaningful differences between [correct_answer] and the extracted_final_answer. Do not comment on any background to the problem, do not attempt to solve the problem, do not argue for any answer different than [correct_answer], focus only on whether the answers match.

correct: Answer 'yes' if extracted_final_answer matches the [correct_answer] given above, or is within a small margin of error for numerical problems. Answer 'no' otherwise, i.e. if there if there is any inconsistency, ambiguity, non-equivalency, or if the extracted answer is incorrect.


confidence: The extracted confidence score between 0|\\%| and 100|\\%| from [response]. Put 100 if there is no confidence score available."""

BROWSECOMP_TEMPLATE = _GRADER_PROMPT
"""BrowseComp's grader prompt (OpenAI simple-evals): the verdict is read from its `correct: yes|no` line."""

HLE_TEMPLATE = _GRADER_PROMPT
"""Humanity's Last Exam's judge prompt; upstream asks for its fields as structured output (`structured=True`)."""

JUDGE_TEMPLATES: dict[str, str] = {"browsecomp": BROWSECOMP_TEMPLATE, "hle": HLE_TEMPLATE}
"""Built-in judge prompts by name; each has `{question}`, `{response}` and `{correct_answer}` slots."""

STRUCTURED_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "extracted_answer",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "extracted_final_answer": {"type": "string"},
                "reasoning": {"type": "string"},
                "correct": {"type": "string", "enum": ["yes", "no"]},
                "confidence": {"type": "integer"},
                "strict": {"type": "boolean"},
            },
            "required": ["extracted_final_answer", "reasoning", "correct", "confidence", "strict"],
            "additionalProperties": False,
        },
    },
}
"""The `response_format` sent when `structured=True`: HLE's judge fields as a strict JSON schema."""

VerdictSource = Literal["memory", "cache", "endpoint", "no_answer", "no_gold"]

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_FIELD = re.compile(
    r"^[\s>*_#`-]*(extracted_final_answer|reasoning|correct|confidence|strict)[\s*_`]*:[\s*_`]*(.*)$",
    re.IGNORECASE,
)
_YES_NO = re.compile(r"^[\s\"'`*_\[(]*(yes|no|true|false|incorrect|correct)\b", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class JudgeError(ChatEndpointError):
    """The judge endpoint gave no usable reply (down, refusing, malformed) after retries, or none is set."""


class ParsedVerdict(BaseModel):
    """What a judge reply says: the verdict and the fields around it (`parsed` False when none was found)."""

    model_config = ConfigDict(frozen=True)

    correct: bool
    parsed: bool
    extracted_final_answer: str | None = None
    reasoning: str | None = None
    confidence: float | None = None


class JudgeVerdict(BaseModel):
    """One judged answer: its key and inputs, the judge's reply and the verdict parsed from it."""

    model_config = ConfigDict(frozen=True)

    key: str
    template: str
    model: str
    question: str
    answer: str
    gold: str
    correct: bool
    parsed: bool
    extracted_final_answer: str | None = None
    reasoning: str | None = None
    confidence: float | None = None
    reply: str = ""
    tokens: int = 0


def resolve_template(template: str) -> tuple[str, str]:
    """`(name, prompt)` for a built-in template name, or `("custom", template)` for a prompt with slots."""
    if template in JUDGE_TEMPLATES:
        return template, JUDGE_TEMPLATES[template]
    if all(slot in template for slot in ("{question}", "{response}", "{correct_answer}")):
        return "custom", template
    raise ValueError(
        f"unknown judge template {template!r}; valid names: {', '.join(sorted(JUDGE_TEMPLATES))} "
        "(or a prompt with {question}, {response} and {correct_answer} slots)"
    )


def default_cache_dir() -> Path:
    """Where the CLI caches verdicts: `MIROENV_JUDGE_CACHE`, else `$XDG_CACHE_HOME/miroenv/judge` (~/.cache)."""
    configured = os.environ.get("MIROENV_JUDGE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "miroenv" / "judge"


def judge_key(template: str, model: str, question: str, answer: str, gold: str) -> str:
    """The cache/record key of a verdict: a hash of the template (name and text), model, question, answer, gold."""
    raw = json.dumps([*resolve_template(template), model, question, answer, gold], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def gold_text(task: Task) -> str | None:
    """The `[correct_answer]` shown to the judge: the gold answer, with any aliases listed after it."""
    golds = task.gold_answers
    if not golds:
        return None
    if len(golds) == 1:
        return golds[0]
    return f"{golds[0]} (also accepted: {'; '.join(golds[1:])})"


def _yes_no(value: Any) -> bool | None:
    """`True`/`False` for a yes/no-like value, None when it is neither."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    match = _YES_NO.match(value)
    if match is None:
        return None
    return match.group(1).lower() in {"yes", "true", "correct"}


def _number(value: Any) -> float | None:
    """The first number in `value` (a confidence like `85%`), None when there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER.search(value)
        return float(match.group()) if match else None
    return None


def _text(value: Any) -> str | None:
    """A stripped string field, None when missing or empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object embedded in `text` (fenced or bare), in order."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def _from_json(text: str) -> ParsedVerdict | None:
    """The verdict from the last JSON object with a yes/no `correct` key, if any."""
    for obj in reversed(_json_objects(text)):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        correct = _yes_no(lowered.get("correct"))
        if correct is None:
            continue
        return ParsedVerdict(
            correct=correct,
            parsed=True,
            extracted_final_answer=_text(lowered.get("extracted_final_answer")),
            reasoning=_text(lowered.get("reasoning")),
            confidence=_number(lowered.get("confidence")),
        )
    return None


def _from_lines(text: str) -> ParsedVerdict | None:
    """The verdict from `field: value` lines (the templates' format); the last yes/no `correct` wins."""
    fields: dict[str, list[str]] = {}
    verdict: bool | None = None
    current: list[str] | None = None
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match is None:
            if current is not None:
                current.append(line)
            continue
        name = match.group(1).lower()
        value = match.group(2).rstrip(" *_`")
        if name == "correct":
            said = _yes_no(value)
            if said is not None:
                verdict = said
            current = None
            continue
        current = [value]
        fields[name] = current
    if verdict is None:
        return None
    return ParsedVerdict(
        correct=verdict,
        parsed=True,
        extracted_final_answer=_text("\n".join(fields.get("extracted_final_answer", []))),
        reasoning=_text("\n".join(fields.get("reasoning", []))),
        confidence=_number(" ".join(fields.get("confidence", []))),
    )


def parse_verdict(reply: str) -> ParsedVerdict:
    """Read a judge reply: a JSON object with `correct`, else the `correct: yes|no` line; else incorrect."""
    text = _THINK.sub("", reply)
    return _from_json(text) or _from_lines(text) or ParsedVerdict(correct=False, parsed=False)


class JudgeReward:
    """1.0 when an LLM judge finds the answer matches the gold answer, else 0.0 (verdict in `details`).

    Args:
        model: the judge model name (default: `MIROENV_JUDGE_MODEL`); part of every verdict key.
        template: `browsecomp`, `hle`, or a custom prompt with `{question}`, `{response}`, `{correct_answer}`.
        base_url: the endpoint's base URL (`.../v1`; default `MIROENV_JUDGE_BASE_URL`); None only reuses verdicts.
        api_key: bearer token (default: `MIROENV_JUDGE_API_KEY` or `OPENAI_API_KEY`).
        cache_dir: where verdicts are cached on disk (None: no disk cache).
        structured: ask for the fields as a JSON schema `response_format` (as HLE's judge script does).
    """

    name: str = "judge"

    def __init__(
        self,
        model: str | None = None,
        *,
        template: str = "browsecomp",
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | Path | None = None,
        timeout: float = 120.0,
        max_tokens: int | None = None,
        temperature: float | None = 0.0,
        retries: int = 3,
        backoff: float = 1.0,
        budget: CallBudget | None = None,
        structured: bool = False,
    ) -> None:
        resolved = model or os.environ.get("MIROENV_JUDGE_MODEL")
        if not resolved:
            raise ValueError("the judge needs a model name (pass model=... or set MIROENV_JUDGE_MODEL)")
        self.model: str = resolved
        self.template_name, self.prompt = resolve_template(template)
        self.template: str = template
        self.structured = structured
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache = diskcache.Cache(str(cache_dir)) if cache_dir is not None else None
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.verdicts: dict[str, JudgeVerdict] = {}
        self._lock = threading.Lock()
        self._endpoint = configured_client(
            "JUDGE",
            base_url,
            api_key,
            label="judge endpoint",
            error=JudgeError,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            budget=budget,
        )
        self.base_url = self._endpoint.base_url if self._endpoint is not None else None

    @property
    def live(self) -> bool:
        """True when an endpoint is configured (otherwise only remembered or cached verdicts are used)."""
        return self.base_url is not None

    def key(self, question: str, answer: str, gold: str) -> str:
        """The verdict key for this judge's template and model."""
        return judge_key(self.template, self.model, question, answer, gold)

    def key_for(self, ctx: RewardContext) -> str | None:
        """The verdict key for an episode, None when nothing is judged (no answer or no gold answer)."""
        gold = gold_text(ctx.task)
        if ctx.answer is None or gold is None:
            return None
        return self.key(ctx.task.question, ctx.answer, gold)

    def remember(self, verdicts: Iterable[JudgeVerdict | Mapping[str, Any]]) -> None:
        """Reuse verdicts recorded earlier (e.g. in a trajectory) without asking the endpoint again."""
        with self._lock:
            for item in verdicts:
                verdict = item if isinstance(item, JudgeVerdict) else JudgeVerdict.model_validate(item)
                self.verdicts[verdict.key] = verdict

    def judge(self, question: str, answer: str, gold: str) -> tuple[JudgeVerdict, VerdictSource]:
        """The verdict for one answer and where it came from: memory, the disk cache, or the endpoint."""
        key = self.key(question, answer, gold)
        with self._lock:
            known = self.verdicts.get(key)
        if known is not None:
            return known, "memory"
        cached = self.cache.get(key) if self.cache is not None else None
        if isinstance(cached, dict):
            verdict = JudgeVerdict.model_validate(cached)
            with self._lock:
                self.verdicts[key] = verdict
            return verdict, "cache"
        if not self.live:
            raise JudgeError(
                "no recorded verdict for this answer and no judge endpoint configured "
                "(pass base_url=... or set MIROENV_JUDGE_BASE_URL)"
            )
        prompt = self.prompt.format(question=question, response=answer, correct_answer=gold)
        reply, tokens = self._complete(prompt)
        parsed = parse_verdict(reply)
        verdict = JudgeVerdict(
            key=key,
            template=self.template_name,
            model=self.model,
            question=question,
            answer=answer,
            gold=gold,
            reply=reply,
            tokens=tokens,
            **parsed.model_dump(),
        )
        if self.cache is not None:
            self.cache.set(key, verdict.model_dump())
        with self._lock:
            self.verdicts[key] = verdict
        return verdict, "endpoint"

    def __call__(self, ctx: RewardContext) -> RewardBreakdown:
        """Judge `ctx.answer` against the task's gold answer(s); no answer or no gold scores 0 without a call."""
        gold = gold_text(ctx.task)
        if gold is None:
            return RewardBreakdown(
                total=0.0, components={"correct": 0.0}, details={"reason": "task has no gold answer"}
            )
        if ctx.answer is None:
            return RewardBreakdown(total=0.0, components={"correct": 0.0}, details={"reason": "no answer"})
        verdict, source = self.judge(ctx.task.question, ctx.answer, gold)
        correct = 1.0 if verdict.correct else 0.0
        asked = source == "endpoint"
        return RewardBreakdown(
            total=correct,
            components={"correct": correct},
            cost={"judge_calls": 1.0, "judge_tokens": float(verdict.tokens)} if asked else {},
            details={
                "key": verdict.key,
                "source": source,
                "model": verdict.model,
                "template": verdict.template,
                "parsed": verdict.parsed,
                "extracted_final_answer": verdict.extracted_final_answer,
                "reasoning": verdict.reasoning,
                "confidence": verdict.confidence,
            },
        )

    def _complete(self, prompt: str) -> tuple[str, int]:
        assert self._endpoint is not None, "judge() asks the endpoint only when one is configured"
        return self._endpoint.complete(
            prompt,
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            response_format=STRUCTURED_FORMAT if self.structured else None,
        )

    @property
    def requests(self) -> int:
        """Requests sent to the endpoint so far (retries included)."""
        return self._endpoint.requests if self._endpoint is not None else 0

    def close(self) -> None:
        """Close the HTTP client and the disk cache."""
        if self._endpoint is not None:
            self._endpoint.close()
        if self.cache is not None:
            self.cache.close()
