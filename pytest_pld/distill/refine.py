"""Phase 3: the closed loop. The student decides which rules stay.

1. Selection, cluster by cluster (largest first): every candidate of a cluster (the teacher's
   syntheses, the medoid, the most central general member; `synthesize`) that passes the
   generality test (`generalise`) is scored on the dev selection fold with the rules kept so
   far, and the one with the best macro-F1 is kept if it beats the current rules by more than
   `min_gain` (with `strict`, only when its paired-bootstrap interval excludes 0). Each decision
   records that interval: on a few dozen dev examples one flipped answer moves macro-F1 by
   several points, and the report says which gains are within that noise. Macro-F1 is that
   of the calibrated answers where the student returns label scores (`student`: each set with
   offsets refitted for it, cross-fitted inside the fold), so a rule that only moves the label
   prior gains nothing a calibration does not.
2. Revision rounds: the student runs the kept rules on train examples; the rules that argue for
   the label it wrongly gave (or failed to give; calibrated answers, cross-fitted on the train
   sample, when selecting on those) are sent to the teacher with those failures
   *and* with successes, and a revision replaces its rule (keeping its id) only if dev improves.
   A label the student misses that no rule argues for (every label, when selection kept no
   rule) gets a new rule from the teacher the same way, kept only if dev improves. The loop
   stops when a round no longer lowers the dev error.

Only train and dev's selection fold are read here: dev's held-back fold is for the final choice
and the reported numbers (`pipeline`), the dev split is never shown to the teacher, and the
gate split is never read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..folds import Fold
from ..instructions import InstructionSet, Rule
from ..record import ExampleResult
from ..render import render_user_message
from ..suite import Suite, example_fields
from .answers import Teacher, ask_for_rule, rule_key
from .cost import CostLedger
from .guard import SPAN_WORDS, LeakageCheck
from .prompts import RULE_SCHEMA, coverage_messages, revision_messages
from .student import Score, Scorer, Student, delta
from .synthesize import Candidate

MAX_REVISIONS_PER_ROUND = 3
FAILURES_SHOWN = 4
SUCCESSES_SHOWN = 3


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
        dev = self.dev
        judged = "calibrated " if "raw_macro_f1" in dev else ""
        raw = f"; raw {dev['raw_macro_f1']:.3f}, {dev['raw_accuracy']:.3f}" if judged else ""
        text = (
            f"round {self.number}  {what}; {judged}dev macro-F1 {dev['macro_f1']:.3f}, "
            f"accuracy {dev['accuracy']:.3f} (n={dev['n']:.0f}{raw})"
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


@dataclass
class Trial:
    cand: Candidate
    rule: Rule
    rules: list[Rule]  # the rule list it was scored with
    score: Score
    delta: float
    interval: tuple[float, float]


def by_cluster(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by cluster (one group per cluster-less candidate), the largest
    cluster first; within a cluster, in the order synthesis made them."""
    groups: dict[object, list[Candidate]] = {}
    for i, cand in enumerate(candidates):
        groups.setdefault(cand.cluster if cand.cluster is not None else ("single", i), []).append(
            cand
        )
    return sorted(groups.values(), key=lambda g: -max(c.support for c in g))


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
        select: Fold,
        train: Fold,
        vet: Callable[[Candidate], Candidate | None] = lambda c: c,
        min_gain: float = 0.0,
        confidence: float = 0.95,
        strict: bool = False,
        log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    ) -> None:
        self.suite, self.base, self.student = suite, base, student
        self.teacher, self.mode, self.header = teacher, mode, header
        self.ids, self.ledger, self.leak = ids, ledger, leak
        self.dev = Scorer(student, base, select)
        self.train = train
        # the generality test for revisions: a candidate as it may be proposed, or None
        self.vet = vet
        self.min_gain, self.confidence, self.log = min_gain, confidence, log
        self.strict = strict  # keep a rule only when its gain's interval excludes 0
        self.decisions: list[Decision] = []
        self.accepted: dict[str, Decision] = {}

    def _leaks(self, cand: Candidate, rule_id: str) -> bool:
        if not cand.leak:
            return False
        self.decisions.append(
            Decision(cand, rule_id, False, f"copies gate-split-only text: {cand.leak!r}")
        )
        self.log(
            f"  {rule_id}: dropped, copies {SPAN_WORDS}+ words found only in the "
            f"gate split's inputs: {cand.leak!r}"
        )
        return True

    def _measure(
        self, current: list[Rule], best: Score, cand: Candidate, rule: Rule, position: int | None
    ) -> Trial:
        """Score `current` with `rule` added (position None) or put at `position`."""
        trial = list(current)
        if position is None:
            trial.append(rule)
        else:
            trial[position] = rule
        score = self.dev(trial)
        d, lo, hi = delta(score, best, self.confidence)
        return Trial(cand, rule, trial, score, d, (lo, hi))

    def _decide(self, t: Trial, best: Score, why_not: str = "") -> bool:
        """Keep the trial only if dev macro-F1 rises by more than min_gain (and, when strict,
        its interval excludes 0); `why_not` overrides: another candidate did better."""
        lo = t.interval[0]
        gained = t.score.macro_f1 - best.macro_f1 > self.min_gain
        accepted = gained and (lo > 0 or not self.strict) and not why_not
        reason = why_not or ("dev macro-F1 improved" if gained else "no dev gain")
        if gained and lo <= 0 and not why_not:
            reason += (
                " but within noise (the interval includes 0)"
                if self.strict
                else " (within noise: the interval includes 0)"
            )
        decision = Decision(
            t.cand, t.rule.id, accepted, reason, best.brief(), t.score.brief(), t.delta, t.interval
        )
        self.decisions.append(decision)
        judged = "calibrated " if t.score.calibrated is not None else ""
        self.log(
            f"  {'keep' if accepted else 'drop'} {t.rule.id} ({t.cand.method}, "
            f"{t.cand.label}): {judged}dev macro-F1 {best.macro_f1:.3f} -> {t.score.macro_f1:.3f}"
        )
        if accepted:
            self.accepted[t.rule.id] = decision
        return accepted

    def _try(
        self, current: list[Rule], best: Score, cand: Candidate, rule: Rule, position: int | None
    ) -> tuple[list[Rule], Score]:
        if self._leaks(cand, rule.id):
            return current, best
        t = self._measure(current, best, cand, rule, position)
        return (t.rules, t.score) if self._decide(t, best) else (current, best)

    def _select_cluster(
        self, group: Sequence[Candidate], current: list[Rule], best: Score
    ) -> tuple[list[Rule], Score, int]:
        """Score every candidate of one cluster (vetted by the generality test before the
        loop); keep the best one if it helps."""
        rule_id = self.ids.peek()
        trials: list[Trial] = []
        for cand in group:
            cand.leak = self.leak.copied_span(cand.text)
            if self._leaks(cand, rule_id):
                continue
            if any(rule_key(cand.text) == rule_key(t.cand.text) for t in trials):
                continue  # a generalisation may equal another candidate of the cluster
            rule = Rule(id=rule_id, text=cand.text, label=cand.label)
            trials.append(self._measure(current, best, cand, rule, None))
        if not trials:
            return current, best, 0
        # the best dev macro-F1 wins, then accuracy; equal scores go to the earlier candidate
        # (the teacher's merged rule, which speaks for the whole cluster, before the medoid)
        winner = max(
            enumerate(trials), key=lambda it: (it[1].score.macro_f1, it[1].score.accuracy, -it[0])
        )[1]
        for t in trials:
            if t is not winner:
                self._decide(
                    t,
                    best,
                    f"another candidate of its cluster did better on dev "
                    f"({winner.score.macro_f1:.3f} vs {t.score.macro_f1:.3f})",
                )
        if self._decide(winner, best):
            self.ids.take()
            return winner.rules, winner.score, len(trials)
        return current, best, len(trials)

    def run(self, candidates: Sequence[Candidate], rounds: int) -> LoopResult:
        current = list(self.base.rules)
        with self.ledger.phase("select"):
            baseline = self.dev(current)
            reports = [RoundReport(0, "baseline", baseline.brief())]
            best = baseline
            tried = 0
            for group in by_cluster(candidates):
                current, best, scored = self._select_cluster(group, current, best)
                tried += scored
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
        train = self.student.score(self.base.with_rules(current), self.train)
        examples = {e.id: e for e in self.train.examples}
        # the answers the rules are judged by (calibrated ones when selecting on those): the
        # failures a rule should fix are the ones a calibration does not
        judged = [replace(r, pred=p) for r, p in zip(train.results, train.preds.pred)]
        fails = [r for r in judged if r.pred != r.gold and r.id in examples]
        wins = [r for r in judged if r.pred == r.gold and r.id in examples]
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
        for _, position, label, bad in blame[:MAX_REVISIONS_PER_ROUND]:
            old = current[position] if position is not None else None
            good = [r for r in wins if r.gold == label] or wins
            shown_bad, shown_good = bad[:FAILURES_SHOWN], good[:SUCCESSES_SHOWN]
            failures = [(self._text(examples[r.id]), r.gold, r.pred) for r in shown_bad]
            successes = [(self._text(examples[r.id]), r.gold) for r in shown_good]
            shown_ids = tuple(r.id for r in [*shown_bad, *shown_good])
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
                    source_ids=shown_ids,
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
                    source_ids=shown_ids,
                    note=f"no rule for {label}; {shown}",
                    teacher_calls=answer.attempts,
                    tokens=tokens,
                )
                trial = Rule(id=self.ids.peek(), text=answer.rule, label=label)
                what = f"new rule for {label}"
            if not answer.ok:
                self.decisions.append(
                    Decision(cand, trial.id, False, f"{what} unusable: {answer.error}")
                )
                self.log(f"  {trial.id}: {what} unusable ({answer.error})")
                continue
            if old is not None and rule_key(answer.rule) == rule_key(old.text):
                self.decisions.append(Decision(cand, trial.id, False, "revision is unchanged"))
                continue
            vetted = self.vet(cand)
            if vetted is None:
                why = "names words of the examples it was shown and could not be generalised"
                self.decisions.append(Decision(cand, trial.id, False, f"{what} {why}"))
                self.log(f"  {trial.id}: {what} dropped ({why})")
                continue
            cand, trial = vetted, replace(trial, text=vetted.text)
            cand.leak = self.leak.copied_span(cand.text)
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
