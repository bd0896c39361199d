"""After the closed loop: the wording check, the token budget, the final choice on dev's
held-back fold, and the conditions table the proposal reports.

The held-back fold (`folds`) is scored only here. It makes one choice - the loop's rules or
the current ones - and every number the proposal reports comes from it, so those numbers are
not the ones the rules were selected on. A change is proposed only when it lifts the held-back
fold's macro-F1 by more than `min_gain` (with `strict`, only when the paired interval of the
lift excludes 0). Selecting on calibrated answers, that macro-F1 is each set's with offsets
fitted for it on the whole selection fold (`student.Student`'s `fit_folds`): the held-back fold
answers with them and fits nothing, so it stays an honest final check.

A proposed change carries the calibration refitted for the proposed set on all the dev examples
distill scored (both folds), so that `pld distill --write` writes rules and a calibration that
is not stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..calibration import (
    PRIOR_SHIFT,
    Calibration,
    fit_prior_shift,
    fitted,
    missing_scores,
    sha256_text,
)
from ..conditions import ConditionsTable, compare_conditions
from ..folds import Fold
from ..instructions import InstructionSet, Rule
from ..runner import size_counter
from ..suite import Suite
from . import CALIBRATED
from .answers import Teacher
from .budget import BudgetResult, fit_budget
from .cost import CostLedger
from .held_back import HeldBack
from .student import Score, Scorer, Student, delta
from .wording import WordingCheck, check_wording

LONGEST_COUNTED = 20  # user messages tokenised for the budget: the longest by characters


@dataclass
class Finished:
    rules: list[Rule]
    fold: Fold  # where the reported numbers come from
    before: Score  # the current rules there
    after: Score  # the proposed rules there
    interval: tuple[float, float, float]
    wording: list[WordingCheck] = field(default_factory=list)
    budget: BudgetResult | None = None
    conditions: ConditionsTable | None = None
    notes: list[str] = field(default_factory=list)
    held_back: HeldBack | None = None  # raw and calibrated, current and proposed
    calibration: Calibration | None = None  # refitted for the proposed set on dev


def _changed(rules: Sequence[Rule], base: InstructionSet) -> bool:
    return [r.as_dict() for r in rules] != [r.as_dict() for r in base.rules]


def longest_user_tokens(suite: Suite, folds: Sequence[Fold], count: Callable[[str], int]) -> int:
    from ..render import render_user_message
    from ..suite import example_fields

    where = str(suite.path)
    users = {
        render_user_message(suite.user_template, example_fields(e), where=where)
        for fold in folds
        for e in fold.examples
    }
    longest = sorted(users, key=len, reverse=True)[:LONGEST_COUNTED]
    return max((count(u) for u in longest), default=0)


def finish(
    suite: Suite,
    base: InstructionSet,
    rules: Sequence[Rule],
    changed_ids: Sequence[str],
    student: Student,
    ledger: CostLedger,
    *,
    select: Fold,
    held: Fold,
    train: Fold,
    teacher: Teacher | None,
    mode: str,
    header: str,
    wording: str,
    min_gain: float,
    strict: bool,
    confidence: float,
    shots: int,
    seed: int,
    log: Callable[[str], None],
) -> Finished:
    notes: list[str] = []
    current = list(rules)
    on_select = Scorer(student, base, select)
    checks: list[WordingCheck] = []
    if wording != "off" and teacher is not None and changed_ids:
        with ledger.phase("wording"):
            log("wording check: scoring a paraphrase of each new or reworded rule")
            current, checks = check_wording(
                current,
                changed_ids,
                on_select,
                teacher,
                mode=mode,
                header=header,
                confidence=confidence,
                action=wording,
                log=log,
            )
    elif wording != "off" and changed_ids:
        notes.append("wording check skipped: no teacher to reword the rules (--teacher none)")
    budget = None
    if suite.max_prompt_tokens:
        with ledger.phase("budget"):
            count, unit = size_counter(student.lazy, notes=notes)
            if unit == "tokens":
                budget = fit_budget(
                    current,
                    base,
                    on_select,
                    lambda iset: count(suite.system_prompt(iset)),
                    budget=suite.max_prompt_tokens,
                    user_tokens=longest_user_tokens(suite, [train, select, held], count),
                )
                current = budget.rules
                notes.extend(budget.notes)
                if budget.pruned:
                    notes.append(
                        f"{len(budget.pruned)} rule(s) pruned to fit max_prompt_tokens "
                        f"{suite.max_prompt_tokens} (counted with the longest user message of "
                        "train and dev; the gate counts its own split's)"
                    )
    fold = held
    if not held.examples:
        fold = select
        notes.append(
            "no held-back dev fold (--holdout 0, or a dev split too small for one): the "
            "numbers below are those the rules were selected on, so they are optimistic"
        )
    with ledger.phase("held-back"):
        before = student.score(base, fold)
        after = student.score(base.with_rules(current), fold)
        interval = delta(after, before, confidence)
        if _changed(current, base):
            lifted = after.macro_f1 - before.macro_f1 > min_gain
            if not lifted or (strict and interval[1] <= 0):
                judged = "calibrated " if student.judged_on == CALIBRATED else ""
                notes.append(
                    f"not proposed: the rules lifted the selection fold but not the held-back "
                    f"fold ({judged}macro-F1 {before.macro_f1:.3f} -> {after.macro_f1:.3f}, "
                    f"interval {interval[1]:+.3f} .. {interval[2]:+.3f})"
                )
                log(notes[-1])
                current = list(base.rules)
                after = before
                interval = (0.0, 0.0, 0.0)
        held_back = HeldBack.of(
            before,
            after,
            fit=select.name if fold is held else f"{select.name} (cross-fitted)",
            judged_on=student.judged_on or CALIBRATED,
            confidence=confidence,
        )
        proposed = base.with_rules(current, version=base.version + _changed(current, base))
        calibration = None
        if _changed(current, base):
            calibration = refit_for(suite, proposed, student, [select, held], after, notes)
        elif base.calibration is not None:
            stale = base.calibration.is_stale(
                student.model, suite.system_prompt(base), suite=suite.name
            )
            if stale:
                notes.append(f"no rule change, so nothing is written, but {stale}")
        table = compare_conditions(
            suite,
            proposed,
            student.results,
            fold,
            select if fold is held else None,
            shots=shots,
            seed=seed,
            confidence=confidence,
            model=student.model,
        )
    return Finished(
        current, fold, before, after, interval, checks, budget, table, notes, held_back, calibration
    )


def refit_for(
    suite: Suite,
    proposed: InstructionSet,
    student: Student,
    folds: list[Fold],
    after: Score,
    notes: list[str],
) -> Calibration | None:
    """The prior-shift calibration of the proposed set, fitted on every dev example distill
    scored (the folds' results are in the response cache: no model call), with its provenance
    (student, split dev, examples and their ids' digest, the rendered prompt's digest). None,
    with a note, when the student returns no label scores (`after`: its reported results)."""
    labels = suite.labels
    results = []
    if after.calibrate is not None:
        results = [r for fold in folds if fold.examples for r in student.results(proposed, fold)]
    if not results or missing_scores(results, labels):
        if proposed.calibration is not None:
            notes.append(
                f"the instruction file's calibration is stale for the proposed rules, and "
                f"{student.model} returns no label scores to refit it"
            )
        return None
    cal = fitted(
        PRIOR_SHIFT,
        fit_prior_shift(results, labels, student=student.model),
        results,
        labels,
        student=student.model,
        system_prompt_sha256=sha256_text(suite.system_prompt(proposed)),
        split="dev",
    )
    if student.model != suite.student:
        notes.append(
            f"the calibration is fitted for {student.model}, not the suite's student "
            f"{suite.student}: for the suite's student it is stale (pld validate says so)"
        )
    return cal
