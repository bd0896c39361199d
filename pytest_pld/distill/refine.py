"""Phase 3: the closed loop. The student decides which rules stay.

1. Selection: candidates are tried one at a time (largest cluster first); a rule is kept only
   when the student's dev-split macro-F1 rises by more than `min_gain`. Each decision records the
   paired-bootstrap interval of its delta: on a few dozen dev examples one flipped answer moves
   macro-F1 by several points, and the report says which gains are within that noise.
2. Revision rounds: the student runs the kept rules on train examples; the rules that argue for
   the label it wrongly gave (or failed to give) are sent to the teacher with those failures
   *and* with successes, and a revision replaces its rule (keeping its id) only if dev improves.
   A label the student misses that no rule argues for (every label, when selection kept no
   rule) gets a new rule from the teacher the same way, kept only if dev improves. The loop
   stops when a round no longer lowers the dev error.

The dev split is only ever scored, never shown to the teacher; the gate split is never read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import metrics
from ..backends.base import Backend
from ..instructions import InstructionSet, Rule
from ..metrics import Predictions
from ..render import render_user_message
from ..runner import ExampleResult, LazyBackend, run_suite
from ..suite import Suite, example_fields
from .answers import Teacher, ask_for_rule, entity_terms
from .cost import CostLedger
from .guard import SPAN_WORDS, LeakageCheck
from .prompts import RULE_SCHEMA, coverage_messages, revision_messages
from .synthesize import Candidate

MAX_REVISIONS_PER_ROUND = 3
FAILURES_SHOWN = 4
SUCCESSES_SHOWN = 3
BOOTSTRAP_RESAMPLES = 300


@dataclass
class Score:
    metrics: dict[str, float]
    preds: Predictions
    results: list[ExampleResult]

    @property
    def macro_f1(self) -> float:
        return self.metrics.get("macro_f1", metrics.compute("macro_f1", self.preds))

    @property
    def accuracy(self) -> float:
        return self.metrics.get("accuracy", metrics.compute("accuracy", self.preds))

    def brief(self) -> dict[str, float]:
        return {
            "macro_f1": round(self.macro_f1, 4),
            "accuracy": round(self.accuracy, 4),
            "n": len(self.results),
        }


class Student:
    """Scores instruction sets with the student through the runner (and its response cache,
    so re-scoring a rule list it has seen costs nothing)."""

    def __init__(
        self,
        suite: Suite,
        model: str,
        ledger: CostLedger,
        *,
        cache_path: Path | None = None,
        cache_mode: str = "use",
        progress: bool | None = False,
        factory: Callable[[str], Backend] | None = None,
    ) -> None:
        """`factory` creates the backend (default `get_backend`); the student role passes
        one with its endpoint and options."""
        self.suite = suite
        self.model = model
        self.ledger = ledger
        self.cache_path = cache_path
        self.cache_mode = cache_mode
        self.progress = progress
        self.lazy = LazyBackend(model) if factory is None else LazyBackend(model, factory)
        self._memo: dict[tuple[str, str, int | None], Score] = {}

    def score(self, iset: InstructionSet, split: str, limit: int | None) -> Score:
        key = (iset.content_hash(), split, limit)
        if key not in self._memo:
            record = run_suite(
                self.suite,
                split=split,
                limit=limit,
                model=self.model,
                instructions=iset,
                backend=self.lazy,
                write_record=False,
                progress=self.progress,
                cache_path=self.cache_path,
                cache_mode=self.cache_mode,
            )
            self.ledger.record_student(record.cache_misses, record.cache_hits)
            self._memo[key] = Score(
                dict(record.metrics), record.predictions(), list(record.results)
            )
        return self._memo[key]

    def close(self) -> None:
        self.lazy.close()


@dataclass
class Decision:
    candidate: Candidate
    rule_id: str
    accepted: bool
    reason: str
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    delta: float = 0.0
    interval: tuple[float, float] = (0.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "rule_id": self.rule_id,
            "accepted": self.accepted,
            "reason": self.reason,
            "text": c.text,
            "label": c.label,
            "method": c.method,
            "support": c.support,
            "round": c.round,
            "replaces": c.replaces,
            "note": c.note,
            "leak": c.leak,
            "before": self.before,
            "after": self.after,
            "delta": round(self.delta, 4),
            "interval": [round(self.interval[0], 4), round(self.interval[1], 4)],
        }


@dataclass
class RoundReport:
    number: int
    kind: str  # baseline | selection | revision
    dev: dict[str, float]
    tried: int = 0
    kept: int = 0
    note: str = ""

    def line(self) -> str:
        what = {
            "baseline": "baseline (current rules)",
            "selection": f"selection: {self.kept} of {self.tried} candidates kept",
            "revision": f"revision: {self.kept} of {self.tried} revised or new rules kept",
        }[self.kind]
        text = (
            f"round {self.number}  {what}; dev macro-F1 {self.dev['macro_f1']:.3f}, "
            f"accuracy {self.dev['accuracy']:.3f} (n={self.dev['n']:.0f})"
        )
        return text + (f"  [{self.note}]" if self.note else "")


@dataclass
class LoopResult:
    rules: list[Rule]
    baseline: Score
    final: Score
    rounds: list[RoundReport]
    decisions: list[Decision]
    stop_reason: str = ""
    accepted: dict[str, Decision] = field(default_factory=dict)  # rule id -> last accepted


class Ids(Protocol):
    """Hands out new rule ids (propose.IdAllocator): peek for a trial, take when kept, so a
    trial is scored with exactly the id it would be written with."""

    def peek(self) -> str: ...

    def take(self) -> str: ...


def _delta(new: Score, old: Score, confidence: float) -> tuple[float, float, float]:
    if new.preds.gold != old.preds.gold:  # different samples (never, with a fixed limit)
        d = new.macro_f1 - old.macro_f1
        return d, d, d
    return metrics.paired_bootstrap_delta(
        "macro_f1", new.preds, old.preds, n_resamples=BOOTSTRAP_RESAMPLES, confidence=confidence
    )


def _same_words(a: str, b: str) -> bool:
    return " ".join(a.lower().split()) == " ".join(b.lower().split())


class ClosedLoop:
    def __init__(
        self,
        suite: Suite,
        base: InstructionSet,
        student: Student,
        *,
        teacher: Teacher | None,
        mode: str,
        header: str,
        ids: Ids,
        ledger: CostLedger,
        leak: LeakageCheck,
        limit_dev: int | None,
        limit_train: int | None,
        min_gain: float = 0.0,
        confidence: float = 0.95,
        strict: bool = False,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    ) -> None:
        self.suite, self.base, self.student = suite, base, student
        self.teacher, self.mode, self.header = teacher, mode, header
        self.ids, self.ledger, self.leak = ids, ledger, leak
        self.limit_dev, self.limit_train = limit_dev, limit_train
        self.min_gain, self.confidence, self.log = min_gain, confidence, log
        self.strict = strict  # keep a rule only when its gain's interval excludes 0
        self.decisions: list[Decision] = []
        self.accepted: dict[str, Decision] = {}

    def dev(self, rules: Sequence[Rule]) -> Score:
        return self.student.score(self.base.with_rules(rules), "dev", self.limit_dev)

    def _try(
        self, current: list[Rule], best: Score, cand: Candidate, rule: Rule, position: int | None
    ) -> tuple[list[Rule], Score]:
        """Score `current` with `rule` added (position None) or put at `position`; keep it
        only if dev macro-F1 rises by more than min_gain."""
        if cand.leak:
            self.decisions.append(
                Decision(cand, rule.id, False, f"copies gate-split-only text: {cand.leak!r}")
            )
            self.log(
                f"  {rule.id}: dropped, copies {SPAN_WORDS}+ words found only in the "
                f"gate split's inputs: {cand.leak!r}"
            )
            return current, best
        trial = list(current)
        if position is None:
            trial.append(rule)
        else:
            trial[position] = rule
        score = self.dev(trial)
        delta, lo, hi = _delta(score, best, self.confidence)
        gained = score.macro_f1 - best.macro_f1 > self.min_gain
        accepted = gained and (lo > 0 or not self.strict)
        reason = "dev macro-F1 improved" if gained else "no dev gain"
        if gained and lo <= 0:
            reason += (
                " but within noise (the interval includes 0)"
                if self.strict
                else " (within noise: the interval includes 0)"
            )
        decision = Decision(
            cand, rule.id, accepted, reason, best.brief(), score.brief(), delta, (lo, hi)
        )
        self.decisions.append(decision)
        self.log(
            f"  {'keep' if accepted else 'drop'} {rule.id} ({cand.method}, "
            f"{cand.label}): dev macro-F1 {best.macro_f1:.3f} -> {score.macro_f1:.3f}"
        )
        if not accepted:
            return current, best
        self.accepted[rule.id] = decision
        return trial, score

    def run(self, candidates: Sequence[Candidate], rounds: int) -> LoopResult:
        current = list(self.base.rules)
        with self.ledger.phase("select"):
            baseline = self.dev(current)
            reports = [RoundReport(0, "baseline", baseline.brief())]
            best = baseline
            tried = 0
            for cand in sorted(candidates, key=lambda c: -c.support):
                rule = Rule(id=self.ids.peek(), text=cand.text, label=cand.label)
                before = len(current)
                current, best = self._try(current, best, cand, rule, None)
                tried += 1
                if len(current) > before:
                    self.ids.take()
            kept = sum(d.accepted for d in self.decisions)
            reports.append(RoundReport(1, "selection", best.brief(), tried, kept))
        stop = ""
        for number in range(2, rounds + 2):
            if self.teacher is None:
                stop = "no teacher to revise rules (medoid-only run)"
                break
            with self.ledger.phase("revise"):
                report, current, new_best = self._revise(number, current, best)
            reports.append(report)
            if report.note == "no train failures":
                stop = f"round {number}: the student made no mistakes on the train sample"
                break
            if new_best.macro_f1 <= best.macro_f1:
                stop = f"round {number} did not lower the dev error; stopped"
                best = new_best
                break
            best = new_best
        else:
            if rounds:
                stop = f"ran all {rounds} revision round(s)"
        return LoopResult(
            current, baseline, best, reports, self.decisions, stop, dict(self.accepted)
        )

    def _revise(
        self, number: int, current: list[Rule], best: Score
    ) -> tuple[RoundReport, list[Rule], Score]:
        assert self.teacher is not None
        train = self.student.score(self.base.with_rules(current), "train", self.limit_train)
        examples = {e.id: e for e in self.suite.load_examples("train", limit=self.limit_train)}
        fails = [r for r in train.results if r.pred != r.gold and r.id in examples]
        wins = [r for r in train.results if r.pred == r.gold and r.id in examples]
        if not fails:
            return (
                RoundReport(number, "revision", best.brief(), note="no train failures"),
                current,
                best,
            )
        # a rule conflicts when the student gave its label wrongly, or missed its label
        blame: list[tuple[int, int | None, str, list[ExampleResult]]] = []
        for index, rule in enumerate(current):
            if rule.label is None:
                continue
            wrong = [r for r in fails if r.pred == rule.label]
            missed = [r for r in fails if r.gold == rule.label]
            if wrong or missed:
                blame.append((len(wrong) + len(missed), index, rule.label, wrong + missed))
        # a label the student misses that no rule argues for gets a new rule (also when
        # selection kept none, so the loop still has something to work on)
        covered = {rule.label for rule in current}
        for label in self.suite.labels:
            missed = [r for r in fails if r.gold == label]
            if missed and label not in covered:
                blame.append((len(missed), None, label, missed))
        blame.sort(key=lambda t: (-t[0], -1 if t[1] is None else t[1]))
        tried = kept = 0
        # the task's own words, which a general rule may use
        vocabulary = [*self.suite.labels, self.base.preamble, *self.base.label_definitions.values()]
        for _, position, label, bad in blame[:MAX_REVISIONS_PER_ROUND]:
            old = current[position] if position is not None else None
            good = [r for r in wins if r.gold == label] or wins
            shown_bad, shown_good = bad[:FAILURES_SHOWN], good[:SUCCESSES_SHOWN]
            failures = [(self._text(examples[r.id]), r.gold, r.pred) for r in shown_bad]
            successes = [(self._text(examples[r.id]), r.gold) for r in shown_good]
            entities = sorted(
                {
                    t
                    for r in [*shown_bad, *shown_good]
                    for t in entity_terms(examples[r.id].fields, allowed=vocabulary)
                }
            )
            messages = (
                revision_messages(self.header, old.text, label, failures, successes, mode=self.mode)
                if old is not None
                else coverage_messages(self.header, label, failures, successes, mode=self.mode)
            )
            answer = ask_for_rule(
                self.teacher,
                messages,
                mode=self.mode,
                label=label,
                entities=entities,
                schema=RULE_SCHEMA,
            )
            tried += 1
            shown = f"{len(failures)} failures, {len(successes)} successes shown"
            tokens = answer.prompt_tokens + answer.completion_tokens
            if old is not None:  # a revision keeps its rule's id, place and provenance
                cand = Candidate(
                    text=answer.rule,
                    label=label,
                    method="revision",
                    support=int(old.provenance.get("support", 0) or 0),
                    trace_ids=tuple(old.provenance.get("traces", ()) or ()),
                    round=number,
                    replaces=old.id,
                    note=shown,
                    teacher_calls=answer.attempts,
                    tokens=tokens,
                )
                trial = Rule(
                    id=old.id,
                    text=answer.rule,
                    label=label,
                    tags=old.tags,
                    provenance=old.provenance,
                )
                what = "revision"
            else:  # a new rule is appended under the next free id
                cand = Candidate(
                    text=answer.rule,
                    label=label,
                    method="coverage",
                    support=len(bad),
                    round=number,
                    note=f"no rule for {label}; {shown}",
                    teacher_calls=answer.attempts,
                    tokens=tokens,
                )
                trial = Rule(id=self.ids.peek(), text=answer.rule, label=label)
                what = f"new rule for {label}"
            if not answer.ok or answer.entity_terms:
                why = answer.error or f"names example words ({', '.join(answer.entity_terms)})"
                self.decisions.append(Decision(cand, trial.id, False, f"{what} unusable: {why}"))
                self.log(f"  {trial.id}: {what} unusable ({why})")
                continue
            if old is not None and _same_words(answer.rule, old.text):
                self.decisions.append(Decision(cand, trial.id, False, "revision is unchanged"))
                continue
            cand.leak = self.leak.copied_span(answer.rule)
            before = current
            current, best = self._try(current, best, cand, trial, position)
            if current is not before:
                kept += 1
                if old is None:
                    self.ids.take()
        return RoundReport(number, "revision", best.brief(), tried, kept), current, best

    def _text(self, example: Any) -> str:
        return render_user_message(
            self.suite.user_template, example_fields(example), where=str(self.suite.path)
        )
