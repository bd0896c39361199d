"""Asking a teacher for one rule and checking what comes back.

Structure is the backend's job, not the model's goodwill: JSON mode sends a JSON schema (where
the server supports structured output) and still validates the answer; prefill mode starts the
answer for the model and stops it at the first newline. Either way, a malformed answer gets
exactly one repair request, then counts as a failure with its reason.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..backends.base import GENERATE_DEFAULTS, GenerateOptions, Generation, Message
from ..errors import PldError
from .prompts import RULE_PREFILL, RULE_STOP, repair_message

MODES = ("json", "prefill")
MIN_WORDS = 4
MAX_WORDS = 80

# errors a teacher call may raise that mean "this call failed", not "the program is broken"
CALL_ERRORS: tuple[type[BaseException], ...] = (PldError, TimeoutError, ConnectionError, OSError)


class Teacher(Protocol):
    name: str

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation: ...


def default_mode(teacher_name: str) -> str:
    """Local models are small: prefill + stop strings. Remote ones get a JSON schema."""
    return "prefill" if teacher_name.split(":", 1)[0] == "local" else "json"


@dataclass
class RuleAnswer:
    rule: str = ""
    reasoning: str = ""
    error: str = ""  # why it failed (empty when ok)
    attempts: int = 0
    entity_terms: tuple[str, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    call_error: bool = False  # the backend raised (timeout, server down), vs a bad answer
    raw: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.rule)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-]*", text)


def garbage_reason(rule: str) -> str:
    """Why a rule is unusable as written, or '' when it is fine."""
    words = _words(rule)
    if len(words) < MIN_WORDS:
        return f"the rule is empty or too short ({len(words)} words)"
    if len(words) > MAX_WORDS:
        return f"the rule is too long ({len(words)} words; at most {MAX_WORDS})"
    letters = sum(c.isalpha() for c in rule)
    if letters < 0.6 * len(rule.replace(" ", "")):
        return "the rule is mostly not words"
    top = max(words.count(w) for w in set(words))
    if len(words) >= 8 and top > 0.4 * len(words):
        return "the rule repeats itself"
    return ""


def parse_json_object(text: str) -> dict[str, Any]:
    """The first JSON object in `text` (models wrap it in prose or code fences)."""
    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    start = cleaned.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    try:
        value, _ = json.JSONDecoder().raw_decode(cleaned[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ValueError("the JSON is not an object")  # noqa: TRY004 - callers catch ValueError
    return value


def rule_key(text: str) -> str:
    """A rule's words with case and spacing set aside: two rules with one key say the same
    (a synthesis that repeats the medoid, a revision or paraphrase that hands the rule back)."""
    return " ".join(text.lower().split())


def normalise_rule(text: str, label: str | None) -> str:
    """One clean sentence that names the label it argues for (the student only reads text)."""
    rule = " ".join(text.split()).strip().strip("\"'`").strip()
    rule = re.sub(r"^(?:rule\s*\d*\s*[:.-]\s*)", "", rule, flags=re.IGNORECASE).strip()
    if rule and rule[0].islower():
        rule = rule[0].upper() + rule[1:]
    rule = rule.rstrip(" ,;:")
    if not rule:
        return ""
    if label and not re.search(rf"(?<!\w){re.escape(label)}(?!\w)", rule, re.IGNORECASE):
        rule = rule.rstrip(".")
        if re.search(r"\bthen\b", rule, re.IGNORECASE):
            rule += f" (label: {label})"
        else:
            rule += f", then the label is {label}"
    if not rule.endswith((".", "!", "?")):
        rule += "."
    return rule


def find_entities(rule: str, terms: Iterable[str]) -> tuple[str, ...]:
    """The example-specific terms a rule copies (case-insensitive, whole words)."""
    found = []
    for term in terms:
        if re.search(rf"(?<!\w){re.escape(term)}(?!\w)", rule, re.IGNORECASE):
            found.append(term)
    return tuple(sorted(set(found)))


def entity_terms(fields: Mapping[str, Any], *, allowed: Iterable[str] = ()) -> tuple[str, ...]:
    """Words that name this example's specifics: short fields beside the main text (a target
    such as 'chess player') and their content words, and capitalised words inside texts.
    `allowed` is the task's own vocabulary (labels, preamble), which a general rule may of
    course use."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    allow = {w.lower() for text in allowed for w in _words(text)}
    stop = set(ENGLISH_STOP_WORDS) | allow

    def keep(word: str) -> bool:
        return len(word) >= 3 and word.lower() not in stop and not word.isdigit()

    texts = [v for v in fields.values() if isinstance(v, str) and v.strip()]
    longest = max(texts, key=lambda v: len(_words(v)), default="")
    terms: set[str] = set()
    for value in texts:
        words = _words(value)
        # a short field beside the main text names the example's subject (a target, a topic)
        if len(words) <= 4 and value is not longest:
            content = [w for w in words if keep(w)]
            if content:
                terms.add(value.strip().lower())
                terms.update(w.lower() for w in content)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", value):
            for w in _words(sentence)[1:]:  # a sentence's first word is capitalised anyway
                if w[0].isupper() and keep(w):
                    terms.add(w.lower())
    return tuple(sorted(terms))


def ask_for_rule(
    teacher: Teacher,
    messages: Sequence[Message],
    *,
    mode: str,
    label: str | None,
    entities: Sequence[str] = (),
    max_tokens: int = 200,
    want_reasoning: bool = False,
    schema: Mapping[str, Any] | None = None,
    repair_entities: bool | None = None,
    temperature: float | None = None,
    seed: int | None = None,
) -> RuleAnswer:
    """One teacher call, plus one repair call when the answer is unusable or copies the
    example's entities. An entity-copying rule that survives the repair is kept, flagged.
    `temperature` and `seed` (a sampled draw) go to both calls; the repair's messages differ,
    so the same seed does not repeat the first answer.

    `repair_entities` (default: only in json mode) spends the repair on an entity-copying
    rule. Small local models do not take the hint - Qwen2.5-Coder-0.5B named the entity again
    in 11 of 11 repairs here, at 2x the teacher time - so in prefill mode such a rule is only
    flagged, and the distiller prefers unflagged rules as cluster representatives."""
    if repair_entities is None:
        repair_entities = mode == "json"
    if mode == "prefill":
        options = GenerateOptions(
            max_tokens=min(max_tokens, 96),
            stop=RULE_STOP,
            prefill=RULE_PREFILL,
            temperature=temperature,
            seed=seed,
        )
    else:
        options = GenerateOptions(
            max_tokens=max_tokens, json_schema=schema, temperature=temperature, seed=seed
        )
    answer = RuleAnswer()
    history = list(messages)
    flagged: RuleAnswer | None = None
    for attempt in (1, 2):
        answer.attempts = attempt
        started = time.perf_counter()
        try:
            gen = teacher.generate(history, options)
        except CALL_ERRORS as exc:
            answer.latency_s += time.perf_counter() - started
            answer.error = f"teacher call failed: {exc}".splitlines()[0]
            answer.call_error = True
            break
        answer.latency_s += gen.latency_s or time.perf_counter() - started
        answer.prompt_tokens += gen.prompt_tokens
        answer.completion_tokens += gen.completion_tokens
        answer.raw.append(gen.text)
        rule, reasoning, error = _read(gen.text, mode, label, want_reasoning)
        if not error:
            copied = find_entities(rule, entities)
            if not copied:
                answer.rule, answer.reasoning, answer.error = rule, reasoning, ""
                answer.entity_terms = ()
                return answer
            if flagged is None:
                flagged = RuleAnswer(rule=rule, reasoning=reasoning, entity_terms=copied)
            if not repair_entities:
                break
            error = (
                f"the rule names words of this example ({', '.join(copied)}); describe "
                "the kind of cue instead"
            )
        answer.error = error
        if attempt == 1:
            shown = gen.text if mode == "json" else RULE_PREFILL.removeprefix("Rule: ") + gen.text
            history = [
                *history,
                Message("assistant", shown.strip() or "(empty)"),
                repair_message(error, mode=mode),
            ]
    if flagged is not None and not answer.call_error:
        # the repair did not give an entity-free rule: keep the first usable one, flagged,
        # so reviewers and the distiller can see it is specific
        answer.rule, answer.reasoning = flagged.rule, flagged.reasoning
        answer.entity_terms, answer.error = flagged.entity_terms, ""
    return answer


def _read(text: str, mode: str, label: str | None, want_reasoning: bool) -> tuple[str, str, str]:
    """(rule, reasoning, error) from a raw answer."""
    reasoning = ""
    if mode == "prefill":
        first = text.strip().splitlines()[0] if text.strip() else ""
        raw_rule = "If " + first.strip() if first else ""
    else:
        try:
            data = parse_json_object(text)
        except ValueError as exc:
            return "", "", str(exc)
        value = data.get("rule")
        if not isinstance(value, str):
            return "", "", "the JSON has no string field 'rule'"
        raw_rule = value
        if want_reasoning:
            why = data.get("reasoning")
            if not isinstance(why, str) or not why.strip():
                return "", "", "the JSON has no string field 'reasoning'"
            reasoning = " ".join(why.split())
    problem = garbage_reason(raw_rule)
    if problem:
        return "", reasoning, problem
    return normalise_rule(raw_rule, label), reasoning, ""
