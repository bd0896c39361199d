"""Gates: a threshold or a baseline comparison checked against a run record.

Plain functions over `RunRecord`s, so they are testable without pytest; the plugin's items
only turn a failed `GateResult` into a failed test with its message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import metrics
from .errors import PldError
from .example_clusters import describe, paired_clusters, record_clusters
from .labels import INVALID
from .numfmt import fmt
from .record import ExampleResult, RunRecord, calibration_contrast, load_record, save_record
from .suite import Bound, RegressionGate
from .verdicts import (
    DEFAULT_POWER,
    FamilyMember,
    family_text,
    fmt_p,
    mcnemar_text,
    power_text,
    violation_words,
)

if TYPE_CHECKING:
    from .stats import RegressionTest

#: Resamples for bootstrap intervals: enough for two stable decimals, cheap enough for CI.
N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class GateResult:
    """The verdict of one gate, with everything a failure message or a report needs."""

    gate: str  # the item name, e.g. "macro_f1>=0.6" or "regression[macro_f1]"
    metric: str
    passed: bool
    observed: float  # the metric value (for a regression gate: new - baseline)
    interval: tuple[float, float] | None  # bootstrap interval of `observed`, when it has one
    bound: str  # the requirement in words, e.g. ">= 0.6"
    message: str  # one line: observed against required
    details: tuple[str, ...] = field(default=())  # further lines for a failure message
    interval_method: str = ""  # "wilson", "cluster bootstrap", ... (stats.Interval.method)
    n_clusters: int | None = None  # clusters resampled; None: examples were
    cluster_key: str | None = None
    regression: RegressionTest | None = None  # a regression gate's statistics
    power_policy: str | None = None  # a regression gate's: warn | fail
    family: FamilyMember | None = None  # a per-class gate's test within its family

    @property
    def underpowered(self) -> bool:
        return self.regression is not None and self.regression.underpowered

    def text(self) -> str:
        return "\n".join([self.message, *(f"  {line}" for line in self.details)])


def fmt_interval(interval: tuple[float, float] | None, metric: str = "") -> str:
    if interval is None:
        return "-"
    return f"{fmt(interval[0], metric)}..{fmt(interval[1], metric)}"


def confusion_line(preds: metrics.Predictions, n: int = 3) -> str | None:
    pairs = metrics.worst_confusions(preds, n)
    if not pairs:
        return None
    text = ", ".join(f"{gold} -> {pred} ({count})" for gold, pred, count in pairs)
    return f"most confused (gold -> predicted): {text}"


# --- thresholds ---------------------------------------------------------------------------------


def evaluate_bound(
    bound: Bound,
    record: RunRecord,
    *,
    family: FamilyMember | None = None,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> GateResult:
    """Check one absolute threshold; the interval tells a reader how much noise is in it.

    The verdict is the observed value against the bound. The interval is the record's clusters'
    bootstrap, or Wilson's for a rate on few examples (`stats.metric_interval`); a per-class
    gate's `family` test is reported beside the verdict, never instead of it.
    """
    from .stats import metric_interval

    preds = record.predictions()
    clusters = record_clusters(record)
    observed = record.metrics.get(bound.metric)
    if observed is None:  # a record written before this gate existed
        observed = metrics.compute(bound.metric, preds)
    entry, _ = metrics.lookup(bound.metric, preds.labels)
    interval: tuple[float, float] | None = None
    method = ""
    if entry.resamplable and preds.gold and not math.isnan(observed):
        found = metric_interval(
            bound.metric, preds, clusters=clusters, confidence=confidence, n_resamples=n_resamples
        )
        interval, method = (found.low, found.high), found.method
    passed = bound.holds(observed)
    required = f"{bound.op} {bound.value:g}"
    shown = fmt(observed, bound.metric)
    if interval:
        shown += f" ({confidence:.0%} CI {fmt_interval(interval, bound.metric)})"
    if math.isnan(observed):
        message = (
            f"{bound.metric} is undefined in this run (NaN), required {required}; "
            "a gate never passes on an undefined value"
        )
    elif passed:
        message = f"{bound.metric} = {shown} meets {required}"
    else:
        message = f"{bound.metric} = {shown}, required {required}"
    details: list[str] = []
    if not passed:
        if family is not None:
            details.append(_family_line(family, violation_words(bound)))
        line = confusion_line(preds)
        if line and entry.higher_is_better:
            details.append(line)
        if bound.metric == "invalid_rate":
            details.append(_invalid_examples(record.results))
    return GateResult(
        gate=bound.label,
        metric=bound.metric,
        passed=passed,
        observed=observed,
        interval=interval,
        bound=required,
        message=message,
        details=tuple(details),
        interval_method=method,
        n_clusters=len(set(clusters)) if clusters else None,
        cluster_key=record.cluster_key if clusters else None,
        family=family,
    )


def family_of(
    bounds: Sequence[Bound], record: RunRecord, correction: str, *, confidence: float = CONFIDENCE
) -> Mapping[str, FamilyMember]:
    """The family tests of a suite's per-class gates on this record (`verdicts.family_tests`)."""
    from .verdicts import family_tests

    return family_tests(
        bounds,
        record.predictions(),
        correction=correction,
        alpha=round(1 - confidence, 12),  # 0.05, not 0.050000000000000044
        clusters=record_clusters(record),
    )


def _family_line(member: FamilyMember, violation: str) -> str:
    text = family_text(
        member.gate,
        member.p_value,
        member.adjusted_p,
        member.size,
        member.correction,
        member.alpha,
        violation,
    )
    if member.violated_adjusted:
        return f"{text}: the shortfall is evidence, not noise"
    return (
        f"{text}: the shortfall is within the noise of this sample"
        + (" and family" if member.correction == "holm" else "")
        + "; the gate fails on the observed value"
    )


def _invalid_examples(results: Sequence[ExampleResult], n: int = 3) -> str:
    bad = [r for r in results if r.pred == INVALID][:n]
    said = "; ".join(f"{r.id}: {r.raw[:40]!r}" for r in bad)
    return f"off-label answers, for example {said}" if bad else "no off-label answers"


# --- regression against a baseline --------------------------------------------------------------


def differences(
    new: RunRecord, old: RunRecord, *, names: tuple[str, str] = ("the baseline", "this run")
) -> list[str]:
    """Why two records cannot be compared example by example (empty when they can).
    `names`: how to call the old and the new record."""
    out: list[str] = []
    old_name, new_name = names
    new_key, old_key = new.comparable_key(), old.comparable_key()
    for key in new_key:
        if new_key[key] != old_key.get(key):
            out.append(
                f"{key}: {old_name.removeprefix('the ')} {old_key.get(key)!r}, "
                f"{new_name.removeprefix('the ')} {new_key[key]!r}"
            )
    new_gold = {r.id: r.gold for r in new.results}
    old_gold = {r.id: r.gold for r in old.results}
    only_new = sorted(set(new_gold) - set(old_gold))
    only_old = sorted(set(old_gold) - set(new_gold))
    if only_new or only_old:
        out.append(
            f"example ids differ: {len(only_old)} only in {old_name}"
            f"{_some(only_old)}, {len(only_new)} only in {new_name}{_some(only_new)}"
        )
    relabelled = sorted(i for i in set(new_gold) & set(old_gold) if new_gold[i] != old_gold[i])
    if relabelled:
        out.append(f"gold labels differ for {len(relabelled)} examples{_some(relabelled)}")
    return out


def _some(ids: Sequence[str], n: int = 3) -> str:
    if not ids:
        return ""
    more = f", ... {len(ids) - n} more" if len(ids) > n else ""
    return " (" + ", ".join(ids[:n]) + more + ")"


def pairs(new: RunRecord, old: RunRecord) -> list[tuple[ExampleResult, ExampleResult]]:
    """(old, new) results of the examples both records hold, in the new record's order."""
    by_id = {r.id: r for r in old.results}
    return [(by_id[r.id], r) for r in new.results if r.id in by_id]


def paired(new: RunRecord, old: RunRecord) -> tuple[metrics.Predictions, metrics.Predictions]:
    """Both records' predictions in the new record's example order (pairing by id)."""
    old_sorted = [o for o, _ in pairs(new, old)]
    new_preds = new.predictions()
    old_preds = metrics.Predictions(
        labels=tuple(old.labels),
        gold=tuple(r.gold for r in old_sorted),
        pred=tuple(r.pred for r in old_sorted),
    )
    return new_preds, old_preds


def evaluate_regression(
    gate: RegressionGate,
    record: RunRecord,
    baseline_path: Path,
    *,
    create_command: str,
    shown_path: str | None = None,
    n_resamples: int = N_RESAMPLES,
    power: str = DEFAULT_POWER,
) -> GateResult:
    """Compare the run with the committed baseline, example by example.

    It fails when the metric dropped by more than the margin with the gate's confidence:
    the one-sided upper confidence bound of (new - baseline) from a paired bootstrap lies
    below -margin. Pairing by id cancels per-example difficulty, so the test is much sharper
    than comparing two independent intervals, and noise alone does not block a merge.
    With cluster ids (the run's, else the baseline's) whole clusters are resampled.

    It also reports the smallest drop it could have caught (80% power) and, beside the
    bootstrap, the exact McNemar test; with `power="fail"` a gate that cannot see a drop of
    its margin fails too.
    """
    label = gate.label
    where = shown_path or str(baseline_path)
    bound = f"drop <= {gate.margin:g} ({gate.confidence:.0%})"
    old = _comparable_baseline(gate, record, baseline_path, where, bound, create_command)
    if isinstance(old, GateResult):
        return old
    from .stats import regression_test

    new_preds, old_preds = paired(record, old)
    clusters = paired_clusters(pairs(record, old))
    test = regression_test(
        gate.metric,
        new_preds,
        old_preds,
        margin=gate.margin,
        confidence=gate.confidence,
        clusters=clusters,
        n_resamples=n_resamples,
    )
    # a two-sided interval at 2c-1 has the one-sided c upper bound (test.upper) as its upper end
    _, low, high = metrics.paired_bootstrap_delta(
        gate.metric,
        new_preds,
        old_preds,
        n_resamples=n_resamples,
        confidence=2 * gate.confidence - 1,
        clusters=clusters,
    )
    before, after = metrics.compute(gate.metric, old_preds), metrics.compute(gate.metric, new_preds)
    detectable = test.detectable
    power_line = power_text(
        detectable=detectable.drop,
        margin=gate.margin,
        confidence=gate.confidence,
        needed_examples=detectable.needed_examples,
        needed_clusters=detectable.needed_clusters,
        policy=power,
        drop_seen=test.failed,
        power=detectable.power,
    )
    blind = test.underpowered and power == "fail"
    passed = not test.failed and not blind
    change = f"{gate.metric} {fmt(before)} (baseline) -> {fmt(after)}, delta {test.delta:+.3f}"
    if test.failed:
        message = (
            f"{label}: {change}; with {gate.confidence:.0%} confidence the drop is at "
            f"least {-test.upper:.3f}, more than the margin {gate.margin:g}"
        )
    elif blind:
        message = f"{label}: {change}; no drop beyond the margin seen, but {power_line}"
    else:
        message = (
            f"{change}; with {gate.confidence:.0%} confidence the change is at most "
            f"{test.upper:+.3f}, not a drop beyond the margin {gate.margin:g}"
        )
        if test.underpowered:
            message += f"; {power_line}"
    n_clusters = len(set(clusters)) if clusters else None
    cluster_key = (record.cluster_key or old.cluster_key) if clusters else None
    details = [
        _flips(record, old_preds, new_preds),
        (
            f"paired bootstrap over {describe(n_clusters, cluster_key)}: "
            f"one-sided p {fmt_p(test.p_value)} for a drop beyond {gate.margin:g}"
        ),
        mcnemar_text(test.mcnemar.worse, test.mcnemar.better, test.mcnemar.p_value),
    ]
    if not blind:
        details.append(power_line[0].upper() + power_line[1:])
    versions = (old.instructions.get("version"), record.instructions.get("version"))
    details.append(
        f"instructions: baseline v{versions[0]} "
        f"({str(old.instructions.get('hash', ''))[:12]}), this run v{versions[1]} "
        f"({str(record.instructions.get('hash', ''))[:12]})"
    )
    contrast = calibration_contrast(old, record, names=("the baseline", "this run"))
    if contrast:  # a calibration added, removed or refitted moves the metric too
        details.append(contrast)
    line = confusion_line(new_preds)
    if line:
        details.append(line)
    details.append(f"baseline: {where}")
    return GateResult(
        gate=label,
        metric=gate.metric,
        passed=passed,
        observed=test.delta,
        interval=(low, high),
        bound=bound,
        message=message,
        details=tuple(details),
        interval_method="paired cluster bootstrap" if clusters else "paired bootstrap",
        n_clusters=n_clusters,
        cluster_key=cluster_key,
        regression=test,
        power_policy=power,
    )


def _comparable_baseline(
    gate: RegressionGate,
    record: RunRecord,
    baseline_path: Path,
    where: str,
    bound: str,
    create_command: str,
) -> RunRecord | GateResult:
    """The baseline record, or the failed gate that says why there is none to compare with
    (missing, unreadable, or of another suite, split, sample, model or labels)."""
    label = gate.label

    def fail(message: str, *details: str) -> GateResult:
        return GateResult(
            gate=label,
            metric=gate.metric,
            passed=False,
            observed=math.nan,
            interval=None,
            bound=bound,
            message=message,
            details=details,
        )

    if not baseline_path.exists():
        return fail(
            f"{label}: the baseline {where} does not exist",
            f"create it with: {create_command}",
            "then commit it, so later runs are compared against it",
        )
    try:
        old = load_record(baseline_path)
    except PldError as exc:
        return fail(
            f"{label}: the baseline {where} cannot be read: {exc.message}",
            f"re-create it with: {create_command}",
        )
    diffs = differences(record, old)
    if diffs:
        return fail(
            f"{label}: the baseline {where} is not comparable with this run",
            *diffs,
            "a baseline is only compared with a run of the same suite, split, sample, "
            "model and labels",
            f"re-create it with: {create_command}",
        )
    return old


def _flips(record: RunRecord, old: metrics.Predictions, new: metrics.Predictions) -> str:
    ids = [r.id for r in record.results]
    worse = [i for i, g, a, b in zip(ids, new.gold, old.pred, new.pred) if a == g and b != g]
    better = [i for i, g, a, b in zip(ids, new.gold, old.pred, new.pred) if a != g and b == g]
    return (
        f"{len(ids)} examples paired by id: {len(worse)} went from right to wrong"
        f"{_some(worse)}, {len(better)} from wrong to right{_some(better)}"
    )


def write_baseline(record: RunRecord, path: Path) -> Path:
    """Write the record as the new baseline, without re-pointing `record.path`."""
    return save_record(record, path, repoint=False)


__all__ = [
    "GateResult",
    "differences",
    "evaluate_bound",
    "evaluate_regression",
    "family_of",
    "fmt",
    "fmt_interval",
    "paired",
    "pairs",
    "write_baseline",
]
