"""After the closed loop: the wording check, the token budget, the final choice on dev's
held-back fold, and the conditions table the proposal reports.

The held-back fold (`folds`) is scored only here. It makes one choice - the loop's rules or
the current ones - and every number the proposal reports comes from it, so those numbers are
not the ones the rules were selected on. A change is proposed only when it lifts the held-back
fold's macro-F1 by more than `min_gain` (with `strict`, only when the paired interval of the
lift excludes 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..conditions import ConditionsTable, compare_conditions
from ..folds import Fold
from ..instructions import InstructionSet, Rule
from ..runner import size_counter
from ..suite import Suite
from .answers import Teacher
from .budget import BudgetResult, fit_budget
from .cost import CostLedger
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
                notes.append(
                    f"not proposed: the rules lifted the selection fold but not the held-back "
                    f"fold (macro-F1 {before.macro_f1:.3f} -> {after.macro_f1:.3f}, interval "
                    f"{interval[1]:+.3f} .. {interval[2]:+.3f})"
                )
                log(notes[-1])
                current = list(base.rules)
                after = before
                interval = (0.0, 0.0, 0.0)
        proposed = base.with_rules(current, version=base.version + _changed(current, base))
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
    return Finished(current, fold, before, after, interval, checks, budget, table, notes)
