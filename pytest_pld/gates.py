"""Gates: a threshold or a baseline comparison checked against a run record.

Plain functions over `RunRecord`s, so they are testable without pytest; the plugin's items
only turn a failed `GateResult` into a failed test with its message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import metrics
from .backends.base import INVALID
from .errors import PldError
from .report import fmt
from .runner import ExampleResult, RunRecord, load_record, save_record
from .suite import Bound, RegressionGate

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
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> GateResult:
    """Check one absolute threshold; the interval tells a reader how much noise is in it."""
    preds = record.predictions()
    observed = record.metrics.get(bound.metric)
    if observed is None:  # a record written before this gate existed
        observed = metrics.compute(bound.metric, preds)
    entry, _ = metrics.lookup(bound.metric, preds.labels)
    interval: tuple[float, float] | None = None
    if entry.resamplable and preds.gold and not math.isnan(observed):
        interval = metrics.bootstrap_interval(
            bound.metric, preds, n_resamples=n_resamples, confidence=confidence
        )
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
    )


def _invalid_examples(results: Sequence[ExampleResult], n: int = 3) -> str:
    bad = [r for r in results if r.pred == INVALID][:n]
    said = "; ".join(f"{r.id}: {r.raw[:40]!r}" for r in bad)
    return f"off-label answers, for example {said}" if bad else "no off-label answers"


# --- regression against a baseline --------------------------------------------------------------


def differences(new: RunRecord, old: RunRecord) -> list[str]:
    """Why two records cannot be compared example by example (empty when they can)."""
    out: list[str] = []
    new_key, old_key = new.comparable_key(), old.comparable_key()
    for key in new_key:
        if new_key[key] != old_key.get(key):
            out.append(f"{key}: baseline {old_key.get(key)!r}, this run {new_key[key]!r}")
    new_gold = {r.id: r.gold for r in new.results}
    old_gold = {r.id: r.gold for r in old.results}
    only_new = sorted(set(new_gold) - set(old_gold))
    only_old = sorted(set(old_gold) - set(new_gold))
    if only_new or only_old:
        out.append(
            f"example ids differ: {len(only_old)} only in the baseline "
            f"{_some(only_old)}, {len(only_new)} only in this run {_some(only_new)}"
        )
    relabelled = sorted(i for i in set(new_gold) & set(old_gold) if new_gold[i] != old_gold[i])
    if relabelled:
        out.append(f"gold labels differ for {len(relabelled)} examples {_some(relabelled)}")
    return out


def _some(ids: Sequence[str], n: int = 3) -> str:
    if not ids:
        return ""
    more = f", ... {len(ids) - n} more" if len(ids) > n else ""
    return "(" + ", ".join(ids[:n]) + more + ")"


def paired(new: RunRecord, old: RunRecord) -> tuple[metrics.Predictions, metrics.Predictions]:
    """Both records' predictions in the new record's example order (pairing by id)."""
    by_id = {r.id: r for r in old.results}
    old_sorted = [by_id[r.id] for r in new.results]
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
) -> GateResult:
    """Compare the run with the committed baseline, example by example.

    It fails only when the metric dropped by more than the margin with the gate's confidence:
    the one-sided upper confidence bound of (new - baseline) from a paired bootstrap lies
    below -margin. Pairing by id cancels per-example difficulty, so the test is much sharper
    than comparing two independent intervals, and noise alone does not block a merge.
    """
    label = gate.label
    where = shown_path or str(baseline_path)
    bound = f"drop <= {gate.margin:g} ({gate.confidence:.0%})"

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
    new_preds, old_preds = paired(record, old)
    # a two-sided interval at 2c-1 has the one-sided c upper bound as its upper end
    delta, low, high = metrics.paired_bootstrap_delta(
        gate.metric,
        new_preds,
        old_preds,
        n_resamples=n_resamples,
        confidence=2 * gate.confidence - 1,
    )
    before, after = metrics.compute(gate.metric, old_preds), metrics.compute(gate.metric, new_preds)
    passed = not high < -gate.margin
    change = f"{gate.metric} {fmt(before)} (baseline) -> {fmt(after)}, delta {delta:+.3f}"
    if passed:
        message = (
            f"{change}; with {gate.confidence:.0%} confidence the change is at most "
            f"{high:+.3f}, not a drop beyond the margin {gate.margin:g}"
        )
    else:
        message = (
            f"{label}: {change}; with {gate.confidence:.0%} confidence the drop is at "
            f"least {-high:.3f}, more than the margin {gate.margin:g}"
        )
    details = [_flips(record, old_preds, new_preds)]
    versions = (old.instructions.get("version"), record.instructions.get("version"))
    details.append(
        f"instructions: baseline v{versions[0]} "
        f"({str(old.instructions.get('hash', ''))[:12]}), this run v{versions[1]} "
        f"({str(record.instructions.get('hash', ''))[:12]})"
    )
    line = confusion_line(new_preds)
    if line:
        details.append(line)
    details.append(f"baseline: {where}")
    return GateResult(
        gate=label,
        metric=gate.metric,
        passed=passed,
        observed=delta,
        interval=(low, high),
        bound=bound,
        message=message,
        details=tuple(details),
    )


def _flips(record: RunRecord, old: metrics.Predictions, new: metrics.Predictions) -> str:
    ids = [r.id for r in record.results]
    worse = [i for i, g, a, b in zip(ids, new.gold, old.pred, new.pred) if a == g and b != g]
    better = [i for i, g, a, b in zip(ids, new.gold, old.pred, new.pred) if a != g and b == g]
    return (
        f"{len(ids)} examples paired by id: {len(worse)} went from right to wrong "
        f"{_some(worse)}, {len(better)} from wrong to right {_some(better)}".rstrip()
    )


def write_baseline(record: RunRecord, path: Path) -> Path:
    """Write the record as the new baseline, without re-pointing `record.path`."""
    return save_record(record, path, repoint=False)


__all__ = [
    "GateResult",
    "differences",
    "evaluate_bound",
    "evaluate_regression",
    "fmt",
    "fmt_interval",
    "paired",
    "write_baseline",
]
