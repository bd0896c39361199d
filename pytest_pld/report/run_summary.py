"""What `pld run` prints about a run record: each metric with its interval, the predicted labels
against the gold ones, and how often the model's answer was a tie; for a set with a
calibration, how the answers were calibrated and the raw student's labels beside them.

Held-out evaluations used to need a script against `metrics` for exactly these numbers; the
intervals are the ones the gates show (clusters, Wilson for rates on few examples).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..example_clusters import describe, record_clusters
from ..labels import INVALID
from ..numfmt import fmt
from .calibration_notes import CalibrationSummary, summarize_calibration

if TYPE_CHECKING:
    from ..record import RunRecord


@dataclass(frozen=True)
class MetricLine:
    name: str
    value: float
    low: float | None = None
    high: float | None = None
    method: str = ""  # stats.Interval.method; "" without an interval


@dataclass(frozen=True)
class RunSummary:
    examples: int
    clusters: int | None
    cluster_key: str | None
    confidence: float
    metrics: list[MetricLine]
    labels: list[tuple[str, int, int]]  # label, gold count, predicted count (with invalid)
    ties: int | None  # answers that were ties; None when results do not record ties
    skipped: dict[str, int] = field(default_factory=dict)  # RunRecord.skipped
    limit: int | None = None  # the sample size asked for (RunRecord.limit)
    calibration: CalibrationSummary | None = None  # None: the set has no calibration
    raw_predicted: dict[str, int] | None = None  # label -> the raw student's count, calibrated


def summarize(record: RunRecord, *, resamples: int = 1000, confidence: float = 0.95) -> RunSummary:
    from .. import metrics
    from ..stats import metric_interval

    preds = record.predictions()
    clusters = record_clusters(record)
    lines = []
    for name, value in record.metrics.items():
        try:
            entry, _ = metrics.lookup(name, preds.labels)
        except KeyError:  # a metric this version does not know: shown without an interval
            lines.append(MetricLine(name, value))
            continue
        if not entry.resamplable or math.isnan(value):
            lines.append(MetricLine(name, value))
            continue
        found = metric_interval(
            name, preds, clusters=clusters, confidence=confidence, n_resamples=resamples
        )
        lines.append(MetricLine(name, value, found.low, found.high, found.method))
    gold, predicted = Counter(preds.gold), Counter(preds.pred)
    labels = [(label, gold.get(label, 0), predicted.get(label, 0)) for label in record.labels]
    labels.append((INVALID, 0, predicted.get(INVALID, 0)))
    calibration = summarize_calibration(record)
    raw = Counter(record.raw_predictions().pred) if record.calibrated else None
    return RunSummary(
        examples=len(record.results),
        clusters=len(set(clusters)) if clusters else None,
        cluster_key=record.cluster_key if clusters else None,
        confidence=confidence,
        metrics=lines,
        labels=labels,
        ties=record.tie_count(),
        skipped=dict(record.skipped),
        limit=record.limit,
        calibration=calibration,
        raw_predicted=dict(raw) if raw is not None else None,
    )


def summary_lines(summary: RunSummary) -> list[str]:
    """The summary as indented text lines for the terminal."""
    from ..suite.data_checks import limit_text, skipped_text

    notes = [skipped_text(summary.skipped), limit_text(summary.limit, summary.examples)]
    out = [] if summary.calibration is None else [f"answers: {summary.calibration.text()}"]
    table = [["metric", "value", f"{summary.confidence:.0%} interval", "method"]]
    for m in summary.metrics:
        interval = "-" if m.low is None else f"{fmt(m.low, m.name)}..{fmt(m.high, m.name)}"
        table.append([m.name, fmt(m.value, m.name), interval, m.method])
    out += _columns(table)
    out.append(f"intervals over {describe(summary.clusters, summary.cluster_key)}")
    raw = summary.raw_predicted
    out.append("labels: gold, predicted" if raw is None else "labels: gold, raw, calibrated")
    width = max(len(label) for label, _, _ in summary.labels)
    for label, gold, predicted in summary.labels:
        if label == INVALID and not predicted and not (raw or {}).get(INVALID):
            continue
        gold_text = "-" if label == INVALID else str(gold)
        raw_text = "" if raw is None else f"  {raw.get(label, 0):>5}"
        out.append(f"  {label:<{width}}  {gold_text:>5}{raw_text}  {predicted:>5}")
    if summary.ties is None:
        out.append("ties: not recorded (answers without label scores, or an older record)")
    else:
        share = summary.ties / summary.examples if summary.examples else 0.0
        out.append(f"ties: {summary.ties} of {summary.examples} answers ({share:.1%})")
    out += [f"note: {note}" for note in notes if note]
    return [f"  {line}" for line in out]


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


__all__ = ["MetricLine", "RunSummary", "summarize", "summary_lines"]
