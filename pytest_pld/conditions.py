"""Controls for an instruction set: zero-shot, zero-shot + calibration, k-shot, the set itself
(PLD) and PLD + calibration, on the same examples, and the ship rule they decide (`ship_rule`).

PLD's macro-F1 minus each condition's, and PLD + calibration's minus each, get paired bootstrap
intervals (whole clusters resampled: the suite's cluster_key, as in pld run's intervals, else
the examples' groups), so a reviewer sees whether the rules beat what is cheaper: no rules, a
few labelled examples, or just moving the label prior. Each condition's predicted-label
distribution stands next to the gold one, with its tie rate where results carry ties: a lift
that comes from answering one label more often shows there first.

A calibrated row is its prompt's raw label scores on the evaluated examples plus prior-shift
offsets fitted for that prompt (`calibration.fit_prior_shift`) on dev examples that are not
evaluated: all of dev when another split is evaluated, the selection fold when dev's held-back
fold is (`folds`). The answers are taken as a written calibration takes them. Fitting costs
the prompt's dev answers (in the response cache when `pld distill` or an earlier table scored
them) and no other model call. `zero-shot + calibration` is what earlier versions called the
prior-shift control.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics
from .errors import PldError, counted
from .folds import DEFAULT_HOLDOUT, Fold, sample, split_holdout
from .prior_shift import has_scores
from .ship_rule import PLD, PLD_CALIBRATED, ZERO_SHOT, ZERO_SHOT_CALIBRATED, ShipRule

if TYPE_CHECKING:
    from .backends.base import Backend
    from .instructions import InstructionSet
    from .record import ExampleResult, RunRecord
    from .suite import Suite

#: evaluates an instruction set on a fold; results in the fold's order
Evaluate = Callable[["InstructionSet", Fold], Sequence["ExampleResult"]]

#: the JSON's schema; 2: the row schema 1 called "prior-shift" is "zero-shot + calibration"
SCHEMA = 2

__all__ = ["PLD", "PLD_CALIBRATED", "ZERO_SHOT", "ZERO_SHOT_CALIBRATED"]


def result_tie(result: ExampleResult) -> bool | None:
    """Whether the answer was an exact top-score tie: the result's own `tie` where the backend
    records one, else from its label scores, else unknown (None)."""
    tie = getattr(result, "tie", None)
    if tie is not None:
        return bool(tie)
    if result.scores and len(result.scores) > 1:
        top = sorted(result.scores.values(), reverse=True)
        return top[0] == top[1]
    return None


Delta = tuple[float, float, float]


@dataclass
class Condition:
    name: str
    applies: bool = True
    macro_f1: float = float("nan")
    accuracy: float = float("nan")
    predicted: dict[str, int] = field(default_factory=dict)
    tie_rate: float | None = None
    vs_pld: Delta | None = None  # PLD - this condition, macro-F1
    vs_calibrated_pld: Delta | None = None  # PLD + calibration - this condition
    note: str = ""
    preds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "applies": self.applies}
        if self.applies:
            out.update(
                {
                    "macro_f1": round(self.macro_f1, 4),
                    "accuracy": round(self.accuracy, 4),
                    "predicted": self.predicted,
                    "tie_rate": None if self.tie_rate is None else round(self.tie_rate, 4),
                }
            )
            if self.vs_pld is not None:
                out["pld_minus_this"] = [round(x, 4) for x in self.vs_pld]
            if self.vs_calibrated_pld is not None:
                out["calibrated_pld_minus_this"] = [round(x, 4) for x in self.vs_calibrated_pld]
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class RowCalibration:
    """The offsets of one calibrated row and what they did on the dev examples they were fitted
    on (in-sample)."""

    offsets: Mapping[str, float]
    fit: str  # "dev, 310 examples"
    fit_n: int
    fit_before: float  # macro-F1 of the prompt's raw answers there
    fit_after: float  # with the offsets

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": dict(self.offsets),
            "fit": self.fit,
            "fit_n": self.fit_n,
            "fit_macro_f1_before": round(self.fit_before, 4),
            "fit_macro_f1_after": round(self.fit_after, 4),
        }


@dataclass
class ConditionsTable:
    suite: str
    split: str
    fold: str  # what was evaluated: the split, or dev's held-back fold
    n: int
    clusters: int | None  # clusters resampled by the bootstrap; None: examples
    model: str
    instructions: str  # "name vN (R rules)"
    labels: list[str]
    gold: dict[str, int]
    conditions: list[Condition]
    confidence: float
    calibrations: dict[str, RowCalibration] = field(default_factory=dict)  # row -> offsets
    ship: ShipRule | None = None
    notes: list[str] = field(default_factory=list)
    cluster_key: str | None = None  # what a cluster is (the suite's cluster_key)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    def to_json(self) -> dict[str, Any]:
        zero = self.calibrations.get(ZERO_SHOT_CALIBRATED)
        return {
            "suite": self.suite,
            "split": self.split,
            "evaluated": self.fold,
            "n": self.n,
            "clusters": self.clusters,
            "cluster_key": self.cluster_key,
            "model": self.model,
            "instructions": self.instructions,
            "labels": self.labels,
            "gold": self.gold,
            "confidence": self.confidence,
            "conditions": [c.to_json() for c in self.conditions],
            "calibrations": {name: c.to_json() for name, c in self.calibrations.items()},
            # schema 1's key: the zero-shot offsets, for readers of older tables
            "prior_shift": None if zero is None else zero.to_json(),
            "ship_rule": None if self.ship is None else self.ship.to_json(),
            "notes": self.notes,
        }


def _predictions(labels: Sequence[str], gold: Sequence[str], pred: Sequence[str]) -> Any:
    return metrics.Predictions(labels=tuple(labels), gold=tuple(gold), pred=tuple(pred))


def _measured(
    name: str,
    labels: Sequence[str],
    gold: Sequence[str],
    pred: Sequence[str],
    ties: Sequence[bool | None],
) -> Condition:
    p = _predictions(labels, gold, pred)
    known = [t for t in ties if t is not None]
    counts = Counter(pred)
    return Condition(
        name,
        macro_f1=metrics.compute("macro_f1", p),
        accuracy=metrics.compute("accuracy", p),
        predicted={label: counts.get(label, 0) for label in dict.fromkeys([*labels, *pred])},
        tie_rate=sum(known) / len(known) if known else None,
        preds=tuple(pred),
    )


def _from_results(name: str, labels: Sequence[str], results: Sequence[ExampleResult]) -> Condition:
    return _measured(
        name,
        labels,
        [r.gold for r in results],
        [r.pred for r in results],
        [result_tie(r) for r in results],
    )


@dataclass(frozen=True)
class _Calibrator:
    """Makes a prompt's calibrated row: offsets fitted on `fit` (None: why it cannot apply)."""

    labels: list[str]
    evaluate: Evaluate
    fit: Fold | None
    student: str
    why_not: str  # "" when the rows apply

    def row(
        self, name: str, iset: InstructionSet, results: Sequence[ExampleResult]
    ) -> tuple[Condition, RowCalibration | None]:
        from .calibration import fit_prior_shift
        from .crossfit import answered

        if self.why_not:
            return Condition(name, applies=False, note=self.why_not), None
        assert self.fit is not None
        fit_rows = list(self.evaluate(iset, self.fit))
        if not has_scores([r.scores for r in fit_rows], self.labels):
            return Condition(name, applies=False, note="the dev answers carry no scores"), None
        offsets = fit_prior_shift(fit_rows, self.labels, student=self.student)
        on_fit = [p for p, _ in answered(offsets, fit_rows, self.labels)]
        fit_gold = [r.gold for r in fit_rows]
        where = f"{self.fit.name}, {len(self.fit)} examples"
        calibration = RowCalibration(
            offsets,
            where,
            len(fit_rows),
            metrics.compute(
                "macro_f1", _predictions(self.labels, fit_gold, [r.pred for r in fit_rows])
            ),
            metrics.compute("macro_f1", _predictions(self.labels, fit_gold, on_fit)),
        )
        out = answered(offsets, results, self.labels)
        row = _measured(
            name,
            self.labels,
            [r.gold for r in results],
            [p for p, _ in out],
            [t for _, t in out],
        )
        return row, calibration


def compare_conditions(
    suite: Suite,
    iset: InstructionSet,
    evaluate: Evaluate,
    evaluated: Fold,
    fit: Fold | None,
    *,
    shots: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
    resamples: int = 1000,
    model: str = "",
) -> ConditionsTable:
    """Zero-shot, zero-shot + calibration, k-shot (when `shots`), PLD (`iset`) and PLD +
    calibration on the examples of `evaluated`; the calibrated rows apply when the results
    carry label scores and `fit` has examples. `evaluate` must return raw answers (as
    `SuiteEvaluator` does: it leaves the set's own calibration out)."""
    from .shots import with_shots

    labels = list(suite.labels)
    if not evaluated.examples:
        raise PldError(f"no examples to evaluate in {evaluated.name}", path=suite.path)
    notes: list[str] = []
    student = model or suite.student
    zero = iset.without_rules()
    zero_results = list(evaluate(zero, evaluated))
    why_not = ""
    if not has_scores([r.scores for r in zero_results], labels):
        why_not = f"does not apply: {student} returns no per-label scores"
    elif fit is None or not fit.examples:
        why_not = "does not apply: no dev examples to fit the offsets on"
    calibrator = _Calibrator(labels, evaluate, fit, student, why_not)
    calibrations: dict[str, RowCalibration] = {}

    def calibrated(name: str, prompt: InstructionSet, results: Sequence[ExampleResult]) -> None:
        row, calibration = calibrator.row(name, prompt, results)
        rows.append(row)
        if calibration is not None:
            calibrations[name] = calibration

    rows = [_from_results(ZERO_SHOT, labels, zero_results)]
    calibrated(ZERO_SHOT_CALIBRATED, zero, zero_results)
    if shots:
        name = f"{shots}-shot"
        try:
            shot_set = with_shots(suite, zero, shots, seed)
        except PldError as exc:
            rows.append(Condition(name, applies=False, note=exc.message))
        else:
            rows.append(_from_results(name, labels, evaluate(shot_set, evaluated)))
            if evaluated.split == "train":
                notes.append("the k-shot examples come from train, the split evaluated here")
    if not iset.rules and not iset.examples:
        notes.append("the instruction set has no rules or examples: PLD is the zero-shot prompt")
    if iset.calibration is not None:
        notes.append(
            "the set's own calibration section is not applied here: each calibrated row is "
            "refitted for its prompt on the dev examples named in its note"
        )
    pld_results = list(evaluate(iset, evaluated))
    rows.append(_from_results(PLD, labels, pld_results))
    calibrated(PLD_CALIBRATED, iset, pld_results)
    gold = tuple(r.gold for r in zero_results)

    def paired(new: Condition, old: Condition) -> Delta:
        return metrics.paired_bootstrap_delta(
            "macro_f1",
            _predictions(labels, gold, new.preds),
            _predictions(labels, gold, old.preds),
            n_resamples=resamples,
            confidence=confidence,
            clusters=evaluated.clusters,
        )

    by_name = {row.name: row for row in rows}
    for row in rows:
        for reference, attr in ((PLD, "vs_pld"), (PLD_CALIBRATED, "vs_calibrated_pld")):
            other = by_name[reference]
            if row.applies and other.applies and row is not other:
                setattr(row, attr, paired(other, row))
    ship = ShipRule(None, None, confidence, bool(iset.rules or iset.examples), why_not=why_not)
    if by_name[ZERO_SHOT_CALIBRATED].applies and by_name[PLD_CALIBRATED].applies:
        zero_cal = by_name[ZERO_SHOT_CALIBRATED]
        ship = ShipRule(
            paired(zero_cal, by_name[ZERO_SHOT]),
            paired(by_name[PLD_CALIBRATED], zero_cal),
            confidence,
            ship.has_rules,
        )
    elif not why_not:
        ship = ShipRule(
            None, None, confidence, ship.has_rules, why_not="a calibrated row does not apply"
        )
    counts = Counter(gold)
    return ConditionsTable(
        suite=suite.name,
        split=evaluated.split,
        fold=evaluated.name,
        n=len(evaluated),
        clusters=evaluated.n_clusters if evaluated.clusters is not None else None,
        cluster_key=evaluated.cluster_key,
        model=student,
        instructions=f"{iset.name} v{iset.version} ({len(iset.rules)} rules)",
        labels=labels,
        gold={label: counts.get(label, 0) for label in labels},
        conditions=rows,
        confidence=confidence,
        calibrations=calibrations,
        ship=ship,
        notes=notes,
    )


def folds_for(
    suite: Suite,
    split: str,
    *,
    limit: int | None = None,
    limit_fit: int | None = None,
    holdout: float = DEFAULT_HOLDOUT,
) -> tuple[Fold, Fold | None]:
    """(evaluated, fit): `split` (sampled to `limit`) and dev; for split dev, dev's held-back
    fold and its selection fold, so the offsets are never fitted on what is evaluated. A split
    the suite does not declare is a PldError (from `Suite.load_examples`)."""
    key = suite.cluster_key or None  # intervals resample what pld run's do
    if split == "dev":
        rest, held = split_holdout(suite.load_examples("dev"), holdout)
        return (
            Fold("dev/held-back", "dev", tuple(sample(held, limit)), key),
            Fold("dev/selection", "dev", tuple(sample(rest, limit_fit)), key),
        )
    evaluated = Fold(split, split, tuple(suite.load_examples(split, limit=limit)), key)
    if "dev" not in suite.splits:
        return evaluated, None
    dev = tuple(suite.load_examples("dev", limit=limit_fit))
    return evaluated, Fold("dev", "dev", dev, key)


def _contents(iset: InstructionSet) -> str:
    """What a condition's prompt holds, for its progress line: "1 rule", "0 rules, 2 examples"."""
    text = counted(len(iset.rules), "rule")
    if iset.examples:
        text += f", {counted(len(iset.examples), 'example')}"
    return text


class SuiteEvaluator:
    """`Evaluate` through the runner and the response cache, one backend for every condition."""

    def __init__(
        self,
        suite: Suite,
        model: str | None = None,
        cache_mode: str = "use",
        *,
        cache_path: Path | None = None,
        progress: bool | None = None,
        factory: Callable[[str], Backend] | None = None,
    ) -> None:
        """`factory` creates the backend (default `get_backend`); the student role passes
        one with its endpoint and options."""
        from .runner import LazyBackend

        self.suite = suite
        self.model = model or suite.student
        self.cache_mode, self.cache_path, self.progress = cache_mode, cache_path, progress
        self.lazy = LazyBackend(self.model, factory)
        self.model_calls = self.cache_hits = 0

    def record(self, iset: InstructionSet, fold: Fold) -> RunRecord:
        """The run record of `iset` on the fold's examples (not written to disk), with the raw
        student: the set's own `calibration:` section is left out, because every caller fits
        the calibration it measures (for that prompt, on examples it names)."""
        import dataclasses

        from .runner import run_suite

        record = run_suite(
            self.suite,
            split=fold.split,
            examples=fold.examples,
            model=self.model,
            instructions=dataclasses.replace(iset, calibration=None),
            backend=self.lazy,
            cache_mode=self.cache_mode,
            cache_path=self.cache_path,
            progress=self.progress,
            write_record=False,
            progress_desc=f"{self.suite.name}/{fold.name}, {_contents(iset)}",
        )
        self.model_calls += record.cache_misses
        self.cache_hits += record.cache_hits
        return record

    def __call__(self, iset: InstructionSet, fold: Fold) -> Sequence[ExampleResult]:
        return self.record(iset, fold).results

    def close(self) -> None:
        self.lazy.close()
