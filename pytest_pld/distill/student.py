"""The student that scores instruction sets for distill, on named folds of train and dev.

What a set is judged by (`Score.preds`) is its calibrated answers where the student returns
label scores and distill selects on them (`--select-on calibrated`, the default): offsets
refitted for that very set, so that a rule counts only for what it adds beyond moving the
label prior. Judging every candidate on dev's held-back fold would spend that fold on hundreds
of comparisons and leave no honest final check, so a fold is calibrated by cross-fitting
inside it (the selection fold, where candidates are compared, and the train sample), except a
fold named in `fit_folds`: the held-back fold answers with offsets fitted on the whole
selection fold, and is read only for the final choice (`crossfit`). A student without label
scores, or `--select-on raw`, is judged by its own answers, as before. The raw scores come
from the response cache, so refitting calls no model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import metrics
from ..backends.base import Backend
from ..calibration import missing_scores
from ..conditions import SuiteEvaluator
from ..crossfit import Calibrated, cross_fitted, fitted_on
from ..errors import PldError
from ..folds import Fold
from ..instructions import InstructionSet, Rule
from ..metrics import Predictions
from ..record import ExampleResult
from ..suite import Suite
from . import CALIBRATED, RAW, SELECT_ON
from .cost import CostLedger

BOOTSTRAP_RESAMPLES = 300


@dataclass
class Score:
    """A set's results on a fold: the student's own answers (`raw`), its calibrated ones where
    it was judged on them, and what it is judged by (`preds`)."""

    raw: Predictions
    results: list[ExampleResult]
    fold: Fold
    #: computes the calibrated answers when they are first read (None: the results lack label
    #: scores); lazy, so results read only for their raw answers (the conditions table) fit
    #: nothing and score no other fold
    calibrate: Callable[[], Calibrated] | None = field(default=None, repr=False)
    judged_calibrated: bool = False  # what `preds` holds: the calibrated answers, or the raw

    @functools.cached_property
    def calibrated(self) -> Predictions | None:
        if self.calibrate is None:
            return None
        answers = self.calibrate()
        return dataclasses.replace(self.raw, pred=answers.pred, tie=answers.tie)

    @functools.cached_property
    def preds(self) -> Predictions:
        if self.judged_calibrated and self.calibrated is not None:
            return self.calibrated
        return self.raw

    @functools.cached_property
    def macro_f1(self) -> float:
        return metrics.compute("macro_f1", self.preds)

    @functools.cached_property
    def accuracy(self) -> float:
        return metrics.compute("accuracy", self.preds)

    def brief(self) -> dict[str, float]:
        """The judged numbers, and the raw ones beside them when the judged are calibrated."""
        out = {
            "macro_f1": round(self.macro_f1, 4),
            "accuracy": round(self.accuracy, 4),
            "n": len(self.results),
        }
        if self.judged_calibrated:
            out["raw_macro_f1"] = round(metrics.compute("macro_f1", self.raw), 4)
            out["raw_accuracy"] = round(metrics.compute("accuracy", self.raw), 4)
        return out


def delta(new: Score, old: Score, confidence: float) -> tuple[float, float, float]:
    """macro-F1(new) - macro-F1(old) on the same fold, on what both are judged by, with its
    paired bootstrap interval (whole clusters resampled where the fold's examples have groups)."""
    if new.preds.gold != old.preds.gold:  # different samples (never, on one fold)
        d = new.macro_f1 - old.macro_f1
        return d, d, d
    return metrics.paired_bootstrap_delta(
        "macro_f1",
        new.preds,
        old.preds,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence=confidence,
        clusters=new.fold.clusters,
    )


class Student:
    """Scores instruction sets with the student through the runner (and its response cache,
    so re-scoring a rule list it has seen costs nothing), memoised per set and fold."""

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
        select_on: str = CALIBRATED,
        fit_folds: Mapping[str, Fold] | None = None,
    ) -> None:
        """`factory` creates the backend (default `get_backend`); the student role passes
        one with its endpoint and options. `select_on`: what sets are judged by (calibrated
        falls back to raw for a student without label scores; `judged_on` and `note` say so).
        `fit_folds`: fold name -> the fold whose offsets calibrate it (else cross-fitted)."""
        if select_on not in SELECT_ON:
            raise PldError(f"unknown --select-on {select_on!r}", hint="choose calibrated or raw")
        self.suite = suite
        self.model = model
        self.ledger = ledger
        self.runner = SuiteEvaluator(
            suite, model, cache_mode, cache_path=cache_path, progress=progress, factory=factory
        )
        self.lazy = self.runner.lazy
        self.select_on = select_on
        self.fit_folds = dict(fit_folds or {})
        #: what the sets are judged by, decided by the first set scored
        self.judged_on: str | None = RAW if select_on == RAW else None
        self.note = ""  # why the sets are judged on raw answers although calibrated was asked
        self._memo: dict[tuple[str, str, str], Score] = {}

    def score(self, iset: InstructionSet, fold: Fold) -> Score:
        ids = hashlib.sha256("\n".join(e.id for e in fold.examples).encode()).hexdigest()
        key = (iset.content_hash(), fold.name, ids)
        if key not in self._memo:
            record = self.runner.record(iset, fold)
            self.ledger.record_student(record.cache_misses, record.cache_hits)
            results = list(record.results)
            score = Score(record.predictions(), results, fold)
            score.judged_calibrated = self._calibrating(results)
            if not missing_scores(results, self.suite.labels):
                score.calibrate = functools.partial(self.calibrated, iset, fold, results)
            self._memo[key] = score
        return self._memo[key]

    def calibrated(
        self, iset: InstructionSet, fold: Fold, results: Sequence[ExampleResult]
    ) -> Calibrated:
        """The set's calibrated answers on `fold`: fitted on its results on the fold named in
        `fit_folds`, else cross-fitted inside `fold`."""
        labels = self.suite.labels
        fit = self.fit_folds.get(fold.name)
        if fit is not None and fit.examples:
            return fitted_on(self.score(iset, fit).results, results, labels, student=self.model)
        return cross_fitted(results, labels, fold.clusters, student=self.model)

    def _calibrating(self, results: Sequence[ExampleResult]) -> bool:
        if self.judged_on is None:  # the first set scored decides, so every set is judged alike
            lacking = missing_scores(results, self.suite.labels)
            self.judged_on = RAW if lacking else CALIBRATED
            if lacking:
                self.note = (
                    f"selected on raw answers: {self.model} returned no score for every label "
                    f"for {len(lacking)} of {len(results)} examples (first: {lacking[0].id}), so "
                    "no calibration can be refitted for each candidate set (a server must "
                    "return logprobs; see README, Calibrating label scores)"
                )
        return self.judged_on == CALIBRATED

    def results(self, iset: InstructionSet, fold: Fold) -> Sequence[ExampleResult]:
        """`conditions.Evaluate` over this student (same cache, memo and cost ledger)."""
        return self.score(iset, fold).results

    def close(self) -> None:
        self.runner.close()


class Scorer:
    """A rule list scored on one fold over a fixed instruction set (preamble, output)."""

    def __init__(self, student: Student, base: InstructionSet, fold: Fold) -> None:
        self.student, self.base, self.fold = student, base, fold

    def __call__(self, rules: Sequence[Rule]) -> Score:
        return self.student.score(self.base.with_rules(rules), self.fold)
