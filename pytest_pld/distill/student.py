"""The student that scores instruction sets for distill, on named folds of train and dev."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import metrics
from ..backends.base import Backend
from ..conditions import SuiteEvaluator
from ..folds import Fold
from ..instructions import InstructionSet, Rule
from ..metrics import Predictions
from ..record import ExampleResult
from ..suite import Suite
from .cost import CostLedger

BOOTSTRAP_RESAMPLES = 300


@dataclass
class Score:
    metrics: dict[str, float]
    preds: Predictions
    results: list[ExampleResult]
    fold: Fold

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


def delta(new: Score, old: Score, confidence: float) -> tuple[float, float, float]:
    """macro-F1(new) - macro-F1(old) on the same fold, with its paired bootstrap interval
    (whole clusters resampled where the fold's examples have groups)."""
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
    ) -> None:
        """`factory` creates the backend (default `get_backend`); the student role passes
        one with its endpoint and options."""
        self.suite = suite
        self.model = model
        self.ledger = ledger
        self.runner = SuiteEvaluator(
            suite, model, cache_mode, cache_path=cache_path, progress=progress, factory=factory
        )
        self.lazy = self.runner.lazy
        self._memo: dict[tuple[str, str, str], Score] = {}

    def score(self, iset: InstructionSet, fold: Fold) -> Score:
        ids = hashlib.sha256("\n".join(e.id for e in fold.examples).encode()).hexdigest()
        key = (iset.content_hash(), fold.name, ids)
        if key not in self._memo:
            record = self.runner.record(iset, fold)
            self.ledger.record_student(record.cache_misses, record.cache_hits)
            self._memo[key] = Score(
                dict(record.metrics), record.predictions(), list(record.results), fold
            )
        return self._memo[key]

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
