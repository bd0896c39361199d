"""`pld report --html`: one self-contained HTML page about a run record.

The page holds everything inline - CSS, SVG drawn by `report.charts`, no script, no font,
no image, no URL - so it can be attached to a CI run or mailed and opened anywhere, offline.
Records, suites and rules come from pull requests, so every name, id, label, raw answer and
rule text is escaped; the tests feed it `</svg><script>` to make sure.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__, metrics
from ..errors import PldError
from ..example_clusters import describe, record_clusters
from ..labels import INVALID
from ..numfmt import fmt
from ..stats import WILSON_BELOW
from ..suite.data_checks import skipped_text
from . import charts
from .calibration_notes import summarize_calibration
from .charts import Series, esc, para, raw_text, section, table
from .html_compare import ablation_section, compare_section

if TYPE_CHECKING:
    from ..ablate import Ablation
    from ..metrics import ClusterIds
    from ..record import ExampleResult, RunRecord
    from ..stats import Interval

SHARES = ("accuracy", "macro_f1", "invalid_rate")  # metrics in [0, 1], drawn on one axis
MAX_ROWS = 200  # off-label answers listed; the rest are counted
SCORE_BINS = 10
CLASS_SERIES = (("precision", "#4c78a8"), ("recall", "#f58518"), ("f1", "#54a24b"))

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:24px auto;
max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#555}.meta code{color:#222}section{overflow-x:auto}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}
.flag{border:2px solid #c62828;background:#fdecea;padding:8px 12px;margin:8px 0}
.note{color:#555;font-size:13px}
svg.chart{display:block;margin:8px 0;font:12px system-ui,sans-serif}
svg .axis{fill:#555}svg .small{font-size:11px;fill:#333}svg .strong{font-weight:600}
svg .on-dark{fill:#fff;font-weight:600}svg .diag{font-weight:600}
.raw{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;max-width:420px}
"""


@dataclass
class HtmlReport:
    html: str
    notes: list[str] = field(default_factory=list)  # for the terminal: what the page flags


def build_html(
    record: RunRecord,
    *,
    compare: RunRecord | None = None,
    ablation: Ablation | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
) -> HtmlReport:
    """The page for one record, optionally against a compared record and with an ablation."""
    if not record.results:
        raise PldError("the run record has no results to report", path=record.path, key="results")
    notes: list[str] = []
    preds = record.predictions()
    body = [
        _header(record),
        _metrics_section(record, preds, resamples, confidence),
        _labels_section(record, preds),
        _confusion_section(preds),
        _per_class_section(preds, resamples, confidence, record_clusters(record)),
        _scores_section(record),
        _invalid_section(record.results),
    ]
    if compare is not None:
        body.append(compare_section(record, compare, resamples, notes))
    if ablation is not None:
        body.append(ablation_section(record, ablation, notes))
    title = f"pld report: {record.suite}/{record.split}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(part for part in body if part)
        + f'<p class="note">pytest-pld {esc(__version__)}</p></body></html>\n'
    )
    return HtmlReport(page, notes)


def check_output_path(path: Path) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if not path.parent.is_dir():
        raise PldError(
            f"the folder {path.parent} does not exist",
            path=path,
            hint="create it first, or write the report somewhere else",
        )
    if path.is_dir():
        raise PldError("the output path is a folder", path=path, hint="name a file, e.g. out.html")


def write_html(report: HtmlReport, path: Path) -> Path:
    from ..yamlio import atomic_write_text

    check_output_path(path)
    atomic_write_text(path, report.html)
    return path


# --- sections ----------------------------------------------------------------------------------


def _header(record: RunRecord) -> str:
    iset = record.instructions
    facts = [
        ("record", record.path or "-"),
        ("model", record.model),
        (
            "instructions",
            (
                f"{iset.get('name')} v{iset.get('version')} ({iset.get('rules')} rules, "
                f"hash {str(iset.get('hash', ''))[:12]})"
            ),
        ),
        (
            "examples",
            f"{len(record.results)}" + (f" (--limit {record.limit})" if record.limit else ""),
        ),
        ("labels", ", ".join(record.labels)),
        *([("skipped", skipped_text(record.skipped))] if record.skipped else []),
        ("created", record.created_at or "-"),
        ("cache", f"{record.cache_hits} hits, {record.cache_misses} model calls"),
    ]
    calibration = summarize_calibration(record)
    if calibration is not None:
        facts.append(("answers", calibration.text()))
    items = "<br>".join(f"{esc(k)}: <code>{esc(v)}</code>" for k, v in facts)
    return (
        f"<header><h1>pld report: {esc(record.suite)} / {esc(record.split)}</h1>"
        f'<p class="meta">{items}</p></header>'
    )


def _interval(
    name: str,
    preds: metrics.Predictions,
    value: float,
    resamples: int,
    confidence: float,
    clusters: ClusterIds | None,
) -> Interval | None:
    from ..stats import metric_interval

    entry, _ = metrics.lookup(name, preds.labels)
    if not entry.resamplable or not preds.gold or math.isnan(value):
        return None
    return metric_interval(
        name, preds, clusters=clusters, confidence=confidence, n_resamples=resamples
    )


def _metrics_section(
    record: RunRecord, preds: metrics.Predictions, resamples: int, confidence: float
) -> str:
    values = dict(record.metrics)
    for name in SHARES:  # a record written without them (older runs) still gets them
        values.setdefault(name, metrics.compute(name, preds))
    clusters = record_clusters(record)
    rows, plotted = [], []
    for name, value in values.items():
        try:
            interval = _interval(name, preds, value, resamples, confidence, clusters)
        except KeyError:  # a metric this version does not know: show it, without an interval
            interval = None
        shown = (
            "-" if interval is None else f"{fmt(interval.low, name)} .. {fmt(interval.high, name)}"
        )
        method = "" if interval is None else interval.method
        rows.append([f"<code>{esc(name)}</code>", esc(fmt(value, name)), esc(shown), esc(method)])
        if name in SHARES and interval is not None:
            plotted.append((name, value, interval.low, interval.high))
    chart = charts.intervals(plotted, title="metrics with their intervals", domain=(0.0, 1.0))
    over = describe(len(set(clusters)) if clusters else None, record.cluster_key)
    calibration = summarize_calibration(record)
    raw = (
        para(
            f"These are the calibrated answers' metrics ({calibration.fit}); the raw student's "
            f"macro_f1 is {calibration.raw_macro_f1:.3f} and its accuracy "
            f"{calibration.raw_accuracy:.3f} on the same examples.",
            cls="",
        )
        if calibration is not None and calibration.applied
        else ""
    )
    return section(
        "Metrics",
        raw,
        table(["metric", "value", f"{confidence:.0%} interval", "method"], rows, {1, 2}),
        chart if plotted else "",
        para(
            f"Intervals: percentile bootstrap over the {len(record.results)} examples "
            + ("" if clusters is None else f"resampled as {over} ")
            + f"({resamples} resamples); Wilson score intervals for the accuracy, invalid and tie "
            f"rates under {WILSON_BELOW} examples, where the bootstrap under-covers; '-' "
            "where a metric has no interval (a maximum, a ratio)."
        ),
    )


def _labels_section(record: RunRecord, preds: metrics.Predictions) -> str:
    gold, pred = Counter(preds.gold), Counter(preds.pred)
    raw = Counter(record.raw_predictions().pred) if record.calibrated else None
    names = list(record.labels) + (
        [INVALID] if pred.get(INVALID) or (raw and raw.get(INVALID)) else []
    )
    series = [Series("gold", "#9e9e9e", [gold.get(n, 0) for n in names])]
    if raw is not None:  # the raw student's prior beside the calibrated one
        series.append(Series("predicted raw", "#9ecae1", [raw.get(n, 0) for n in names]))
    series.append(
        Series(
            "predicted" if raw is None else "predicted calibrated",
            "#e07b39",
            [pred.get(n, 0) for n in names],
        )
    )
    chart = charts.bars(
        names,
        series,
        title="gold and predicted label counts",
        value_text=lambda v: f"{v:.0f}",
    )
    return section("Predicted labels against gold", chart)


def _confusion_section(preds: metrics.Predictions) -> str:
    matrix = metrics.confusion(preds)
    rows = list(matrix)
    cols = [*preds.labels, INVALID]
    counts = [[matrix[r][c] for c in cols] for r in rows]
    chart = charts.heatmap(
        rows, cols, counts, title="confusion matrix (gold rows, predicted columns)"
    )
    return section(
        "Confusion matrix",
        chart,
        para("Rows: gold label; columns: predicted label (invalid: an answer outside the labels)."),
    )


def _per_class_section(
    preds: metrics.Predictions,
    resamples: int,
    confidence: float,
    clusters: ClusterIds | None = None,
) -> str:
    scores = metrics.per_class(preds)
    labels = list(scores)
    chart = charts.bars(
        labels,
        [
            Series(kind, colour, [scores[lab][kind] for lab in labels])
            for kind, colour in CLASS_SERIES
        ],
        title="per-class precision, recall and F1",
        maximum=1.0,
        value_text=lambda v: f"{v:.2f}",
    )
    rows = []
    for label in labels:
        s = scores[label]
        try:
            low, high = metrics.bootstrap_interval(
                f"f1[{label}]",
                preds,
                n_resamples=resamples,
                confidence=confidence,
                clusters=clusters,
            )
            interval = f"{low:.3f} .. {high:.3f}"
        except KeyError:  # a label with "]" cannot be spelt as a per-label metric name
            interval = "-"
        rows.append(
            [
                esc(label),
                f"{s['precision']:.3f}",
                f"{s['recall']:.3f}",
                f"{s['f1']:.3f}",
                interval,
                str(s["support"]),
            ]
        )
    scores_table = table(
        ["label", "precision", "recall", "F1", f"F1 {confidence:.0%} interval", "support"],
        rows,
        {1, 2, 3, 4, 5},
    )
    return section("Per-class precision, recall and F1", chart, scores_table)


def _label_probabilities(scores: dict[str, float], labels: list[str]) -> dict[str, float] | None:
    """The stored log-probabilities renormalised over the label set (a softmax)."""
    values = [scores.get(label, -math.inf) for label in labels]
    top = max(values)
    if not math.isfinite(top):
        return None
    weights = [math.exp(v - top) for v in values]
    total = sum(weights)
    return {label: w / total for label, w in zip(labels, weights)}


def _scores_section(record: RunRecord) -> str:
    scored = [r for r in record.results if r.scores]
    if not scored:
        return section(
            "Scores per label",
            para(
                "This record has no per-label scores: the local backend stores each label's "
                "log-probability, a model behind an OpenAI-compatible server returns only its "
                "answer.",
                cls="",
            ),
        )
    labels = list(record.labels)
    panels = []
    for label in labels:
        own, other = [0] * SCORE_BINS, [0] * SCORE_BINS
        for r in scored:
            probs = _label_probabilities(r.scores or {}, labels)
            if probs is None:
                continue
            b = min(int(probs[label] * SCORE_BINS), SCORE_BINS - 1)
            (own if r.gold == label else other)[b] += 1
        panels.append((label, [own, other]))
    chart = charts.stacked_histograms(
        panels,
        [("gold is this label", "#d6604d"), ("gold is another label", "#bdbdbd")],
        title="probability of each label, by gold label",
        x_label="p(label)",
    )
    missing = len(record.results) - len(scored)
    return section(
        "Scores per label",
        chart,
        para(
            "Each panel: the model's probability of that label (its log-probabilities "
            "renormalised over the labels) across the examples; a label the model separates "
            "well has its red bars on the right and grey ones on the left."
            + (f" {missing} examples without scores are left out." if missing else "")
            + (
                " These are the raw scores, before the calibration's offsets."
                if record.calibrated
                else ""
            )
        ),
    )


def _invalid_section(results: list[ExampleResult]) -> str:
    bad = [r for r in results if r.pred == INVALID]
    if not bad:
        return ""
    rows = [[f"<code>{esc(r.id)}</code>", esc(r.gold), raw_text(r.raw)] for r in bad[:MAX_ROWS]]
    more = para(f"{len(bad) - MAX_ROWS} more not listed.") if len(bad) > MAX_ROWS else ""
    return section(
        f"Off-label answers ({len(bad)})", table(["example", "gold", "raw answer"], rows), more
    )
