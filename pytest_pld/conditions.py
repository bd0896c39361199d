"""Controls for an instruction set: zero-shot, k-shot, a prior shift, and the set itself (PLD).

All four are evaluated on the same examples, and PLD's macro-F1 minus each control's gets a
paired bootstrap interval (whole clusters resampled: the suite's cluster_key, as in pld run's
intervals, else the examples' groups), so a reviewer sees whether the rules beat what is
cheaper: no rules, a few labelled examples, or just moving the label prior (`prior_shift`).
Each condition's predicted-label distribution stands next to the gold one, with its tie rate
where results carry ties: a lift that comes from answering one label more often shows there
first.

The prior-shift offsets are fitted on dev examples that are not evaluated: all of dev when
another split is evaluated, the selection fold when dev's held-back fold is (`folds`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics
from .errors import PldError, counted
from .folds import DEFAULT_HOLDOUT, Fold, sample, split_holdout
from .prior_shift import PriorShift, fit_results, has_scores, shifted_labels

if TYPE_CHECKING:
    from .backends.base import Backend
    from .instructions import InstructionSet
    from .record import ExampleResult, RunRecord
    from .suite import Suite

#: evaluates an instruction set on a fold; results in the fold's order
Evaluate = Callable[["InstructionSet", Fold], Sequence["ExampleResult"]]

ZERO_SHOT, PRIOR_SHIFT, PLD = "zero-shot", "prior-shift", "PLD"


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


@dataclass
class Condition:
    name: str
    applies: bool = True
    macro_f1: float = float("nan")
    accuracy: float = float("nan")
    predicted: dict[str, int] = field(default_factory=dict)
    tie_rate: float | None = None
    vs_pld: tuple[float, float, float] | None = None  # PLD - this condition, macro-F1
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
        if self.note:
            out["note"] = self.note
        return out


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
    prior: PriorShift | None = None
    fit: str = ""  # what the offsets were fitted on
    notes: list[str] = field(default_factory=list)
    cluster_key: str | None = None  # what a cluster is (the suite's cluster_key)

    def condition(self, name: str) -> Condition:
        return next(c for c in self.conditions if c.name == name)

    def to_json(self) -> dict[str, Any]:
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
            "prior_shift": None if self.prior is None else self.prior.to_json() | {"fit": self.fit},
            "notes": self.notes,
        }


def _predictions(labels: Sequence[str], gold: Sequence[str], pred: Sequence[str]) -> Any:
    return metrics.Predictions(labels=tuple(labels), gold=tuple(gold), pred=tuple(pred))


def _measured(
    name: str, labels: Sequence[str], gold: Sequence[str], pred: Sequence[str], ties: list[Any]
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
    """Zero-shot, k-shot (when `shots`), prior-shift (when the zero-shot results carry label
    scores and `fit` is given) and PLD (`iset`) on the examples of `evaluated`."""
    from .shots import with_shots

    labels = list(suite.labels)
    if not evaluated.examples:
        raise PldError(f"no examples to evaluate in {evaluated.name}", path=suite.path)
    notes: list[str] = []
    zero = iset.without_rules()
    zero_results = list(evaluate(zero, evaluated))
    rows = [_from_results(ZERO_SHOT, labels, zero_results)]
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
    prior, fitted_on = None, ""
    scored = has_scores([r.scores for r in zero_results], labels)
    if not scored:
        rows.append(
            Condition(
                PRIOR_SHIFT,
                applies=False,
                note=f"does not apply: {model or suite.student} returns no per-label scores",
            )
        )
    elif fit is None or not fit.examples:
        rows.append(Condition(PRIOR_SHIFT, applies=False, note="no dev examples to fit it on"))
    else:
        fit_rows = list(evaluate(zero, fit))
        if not has_scores([r.scores for r in fit_rows], labels):
            rows.append(
                Condition(PRIOR_SHIFT, applies=False, note="the dev answers carry no scores")
            )
        else:
            prior = fit_results(fit_rows, labels)
            fitted_on = f"{fit.name}, {len(fit)} examples"
            pred = shifted_labels(
                [r.scores or {} for r in zero_results],
                [r.pred for r in zero_results],
                [r.id for r in zero_results],
                labels,
                prior.offsets,
            )
            row = _measured(
                PRIOR_SHIFT,
                labels,
                [r.gold for r in zero_results],
                pred,
                [result_tie(r) for r in zero_results],
            )
            row.note = f"offsets fitted on {fitted_on}; never on the evaluated examples"
            rows.append(row)
    if not iset.rules and not iset.examples:
        notes.append("the instruction set has no rules or examples: PLD is the zero-shot prompt")
    pld = _from_results(PLD, labels, evaluate(iset, evaluated))
    rows.append(pld)
    gold = tuple(r.gold for r in zero_results)
    new = _predictions(labels, gold, pld.preds)
    for row in rows[:-1]:
        if row.applies:
            row.vs_pld = metrics.paired_bootstrap_delta(
                "macro_f1",
                new,
                _predictions(labels, gold, row.preds),
                n_resamples=resamples,
                confidence=confidence,
                clusters=evaluated.clusters,
            )
    counts = Counter(gold)
    return ConditionsTable(
        suite=suite.name,
        split=evaluated.split,
        fold=evaluated.name,
        n=len(evaluated),
        clusters=evaluated.n_clusters if evaluated.clusters is not None else None,
        cluster_key=evaluated.cluster_key,
        model=model or suite.student,
        instructions=f"{iset.name} v{iset.version} ({len(iset.rules)} rules)",
        labels=labels,
        gold={label: counts.get(label, 0) for label in labels},
        conditions=rows,
        confidence=confidence,
        prior=prior,
        fit=fitted_on,
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
        """The run record of `iset` on the fold's examples (not written to disk)."""
        from .runner import run_suite

        record = run_suite(
            self.suite,
            split=fold.split,
            examples=fold.examples,
            model=self.model,
            instructions=iset,
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
