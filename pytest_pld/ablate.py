"""`pld ablate SUITE`: leave-one-rule-out on the dev split.

Each rule's effect is the metric with the full set minus the metric without that rule, on the
same examples, with a paired bootstrap interval (per-example difficulty cancels out, so the
interval is much tighter than comparing two unpaired scores; whole clusters are resampled
where the suite has a cluster_key or the examples groups). Rules whose removal does not lower
macro-F1 or accuracy are prune candidates: they cost prompt tokens on every call and earned
nothing on this sample.

Where the student returns label scores, the effects are measured on calibrated answers: every
variant (the full set, each set without one rule, the set without rules) gets prior-shift
offsets refitted for it, cross-fitted on the ablated examples (`crossfit`: each part of their
clusters answered with offsets fitted on the others), so a rule whose only effect is to move
the label prior, which the variant's own calibration moves as well, shows no effect and is a
prune candidate. The raw effects are reported beside them. Refitting calls no model: the
scores are the variants' own, from the same runs.

It runs on dev by default. The gate split is allowed (a report may want each shipped rule's
effect there) but noted in the result: choosing rules by their effect on the gate split fits
the gate, which is why distill never reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PldError

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from .backends.base import Backend
    from .instructions import InstructionSet
    from .suite import Suite

METRICS = ("macro_f1", "accuracy")


@dataclass
class Effect:
    value: float  # metric(with the rule) - metric(without it); > 0: the rule helps
    low: float
    high: float


@dataclass
class RuleAblation:
    id: str
    text: str
    tokens: int  # prompt size the rule costs (tokens, or chars with --no-tokens)
    effects: dict[str, Effect]  # on the student's own (raw) answers
    model_calls: int
    #: on calibrated answers (offsets refitted per variant); None: the student has no scores
    calibrated_effects: dict[str, Effect] | None = None

    @property
    def judged(self) -> dict[str, Effect]:
        """The effects a prune decision reads: the calibrated ones where there are any."""
        return self.calibrated_effects if self.calibrated_effects is not None else self.effects

    @property
    def prune_candidate(self) -> bool:
        return all(e.value <= 0 for e in self.judged.values())


@dataclass
class Ablation:
    suite: str
    split: str
    limit: int | None
    model: str
    instructions: str  # "name vN"
    examples: int
    size_unit: str
    full: dict[str, float]  # the metrics with every rule
    rules: list[RuleAblation]
    all_rules: RuleAblation | None  # removing every rule at once (the set's total effect)
    model_calls: int = 0
    cache_hits: int = 0
    resamples: int = 1000
    notes: list[str] = field(default_factory=list)
    #: the full set's metrics on calibrated answers (None: no label scores, raw effects only)
    full_calibrated: dict[str, float] | None = None

    @property
    def prune_candidates(self) -> list[str]:
        return [r.id for r in self.rules if r.prune_candidate]


def _effects(full: Any, without: Any, resamples: int, clusters: Any) -> dict[str, Effect]:
    """Each metric's full - without, paired (`full` and `without`: Predictions)."""
    from .metrics import paired_bootstrap_delta

    out = {}
    for name in METRICS:
        value, low, high = paired_bootstrap_delta(
            name, full, without, n_resamples=resamples, clusters=clusters
        )
        out[name] = Effect(value, low, high)
    return out


def ablate(
    suite: Suite,
    *,
    split: str = "dev",
    limit: int | None = None,
    model: str | None = None,
    tokens: bool = True,
    resamples: int = 1000,
    cache_mode: str = "use",
    progress: Callable[[str], None] | None = None,
    factory: Callable[[str], Backend] | None = None,
) -> Ablation:
    """Run the full set, each leave-one-out variant and the no-rules variant on one split.
    `factory` makes the student backend (the student role's endpoint and options); default:
    `get_backend`."""
    from . import metrics
    from .calibration import missing_scores
    from .conditions import SuiteEvaluator
    from .crossfit import cross_fitted
    from .folds import Fold
    from .runner import size_counter

    iset = suite.load_instructions()
    if not iset.rules:
        raise PldError("the instruction set has no rules to ablate", path=iset.path, key="rules")
    model_name = model or suite.student
    fold = Fold(split, split, tuple(suite.load_examples(split, limit=limit)), suite.cluster_key)
    evaluate = SuiteEvaluator(suite, model_name, cache_mode, progress=None, factory=factory)
    labels = suite.labels
    say = progress or (lambda message: None)
    notes: list[str] = []
    try:

        def answers(variant: InstructionSet) -> tuple[Any, Any, Any]:
            """The variant's run record, raw answers and calibrated ones (None: no scores)."""
            record = evaluate.record(variant, fold)
            raw = record.predictions()
            if missing_scores(record.results, labels):
                return record, raw, None
            fitted = cross_fitted(record.results, labels, fold.clusters, student=model_name)
            return record, raw, dataclasses.replace(raw, pred=fitted.pred, tie=fitted.tie)

        def size(variant: InstructionSet) -> int:
            return count(suite.system_prompt(variant))

        say(f"full set ({len(iset.rules)} rules)")
        full, full_raw, full_cal = answers(iset)
        count, unit = size_counter(evaluate.lazy, tokens=tokens, notes=notes)
        result = Ablation(
            suite.name,
            full.split,
            limit,
            model_name,
            f"{iset.name} v{iset.version}",
            len(full.results),
            unit,
            {n: full.metrics.get(n, float("nan")) for n in METRICS},
            [],
            None,
            full.cache_misses,
            full.cache_hits,
            resamples,
        )
        if full_cal is not None:
            result.full_calibrated = {n: metrics.compute(n, full_cal) for n in METRICS}
        else:
            notes.append(
                f"{model_name} returned no score for every label, so the effects are on its "
                "raw answers only (no calibration can be refitted per variant)"
            )
        full_size = size(iset)
        variants = [
            (r.id, r.text, iset.with_rules([x for x in iset.rules if x.id != r.id]))
            for r in iset.rules
        ]
        variants.append(("(all rules)", "", iset.with_rules([])))
        for rule_id, text, variant in variants:
            say(f"without {rule_id}")
            record, raw, cal = answers(variant)
            result.model_calls += record.cache_misses
            result.cache_hits += record.cache_hits
            row = RuleAblation(
                rule_id,
                text,
                full_size - size(variant),
                _effects(full_raw, raw, resamples, fold.clusters),
                record.cache_misses,
            )
            if full_cal is not None and cal is not None:
                row.calibrated_effects = _effects(full_cal, cal, resamples, fold.clusters)
            if rule_id == "(all rules)":
                result.all_rules = row
            else:
                result.rules.append(row)
    finally:
        evaluate.close()
    result.notes.extend(notes)
    if result.split == suite.gate_split:
        result.notes.append(
            f"{result.split!r} is the split the gates use: choosing rules by "
            "their effect on it fits the gate; prefer --split dev"
        )
    if result.examples < 30:
        result.notes.append(
            f"{result.examples} examples give wide intervals: confirm a prune "
            "candidate on more data (--limit) before removing it"
        )
    return result


# --- reading it back ---------------------------------------------------------------------------

ABLATION_HINT = "make one with: pld ablate SUITE --format json > ABLATION.json"


def load_ablation(path: Path) -> Ablation:
    """Read what `report.ablation.format_json` wrote (for `pld report --ablation`)."""
    from .textio import read_json

    data = read_json(path, what="ablation file", missing_hint=ABLATION_HINT, hint=ABLATION_HINT)
    return ablation_from_json(data, path)


def ablation_from_json(data: Any, path: str | Path | None = None) -> Ablation:
    if not isinstance(data, dict) or "rules" not in data:
        what = "a run record" if isinstance(data, dict) and "results" in data else "something else"
        raise PldError(
            f"this is {what}, not an ablation (the output of pld ablate --format json)",
            path=path,
            hint=ABLATION_HINT,
        )
    if data.get("schema") != 1:
        raise PldError(
            f"unsupported ablation schema {data.get('schema')!r}", path=path, hint=ABLATION_HINT
        )

    def effects(d: Any) -> dict[str, Effect]:
        return {name: Effect(**{k: float(v) for k, v in d[name].items()}) for name in METRICS}

    def rule(d: Any) -> RuleAblation:
        calibrated = d.get("calibrated_effects")  # absent from files of earlier versions
        return RuleAblation(
            str(d["id"]),
            str(d["text"]),
            int(d["tokens"]),
            effects(d["effects"]),
            int(d["model_calls"]),
            None if calibrated is None else effects(calibrated),
        )

    try:
        return Ablation(
            suite=str(data["suite"]),
            split=str(data["split"]),
            limit=None if data["limit"] is None else int(data["limit"]),
            model=str(data["model"]),
            instructions=str(data["instructions"]),
            examples=int(data["examples"]),
            size_unit=str(data["size_unit"]),
            full={name: float(data["full"][name]) for name in METRICS},
            rules=[rule(r) for r in data["rules"]],
            all_rules=rule(data["all_rules"]) if data.get("all_rules") else None,
            model_calls=int(data.get("model_calls", 0)),
            cache_hits=int(data.get("cache_hits", 0)),
            resamples=int(data.get("resamples", 1000)),
            notes=[str(n) for n in data.get("notes", [])],
            full_calibrated=None
            if data.get("full_calibrated") is None
            else {name: float(data["full_calibrated"][name]) for name in METRICS},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PldError(
            f"the ablation has the wrong shape ({type(exc).__name__}: {exc})",
            path=path,
            hint=ABLATION_HINT,
        ) from None
