"""Markdown tables of one run record for the gates' report (`--pld-report`): per-class scores,
the confusion matrix and, for calibrated answers, the raw student's beside them; and `md_cell`,
which makes text from pull requests safe in a table cell."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..metrics import Predictions


def record_tables(record_path: str) -> list[str]:
    """Per-class scores and the confusion matrix, read from the run record."""
    from .. import metrics
    from ..errors import PldError
    from ..record import load_record

    try:
        record = load_record(Path(record_path))
    except PldError:
        return []
    preds = record.predictions()
    scores = metrics.per_class(preds)
    lines = ["| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, s in scores.items():
        lines.append(
            f"| {md_cell(label)} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} "
            f"| {s['support']} |"
        )
    title = "Per-class scores (calibrated answers):" if record.calibrated else "Per-class scores:"
    return [title, "", *lines, "", *confusion_markdown(preds), *raw_markdown(record)]


def raw_markdown(record: Any) -> list[str]:
    """A calibrated run's predicted labels raw and calibrated, and the raw macro-F1 and
    accuracy beside the calibrated ones: a moved prior shows as moved counts."""
    from .calibration_notes import label_counts, summarize_calibration

    found = summarize_calibration(record)
    if found is None or not found.applied:
        return []
    lines = [
        "Raw and calibrated answers (the gates judge the calibrated ones):",
        "",
        "| | raw | calibrated |",
        "|---|--:|--:|",
        f"| macro_f1 | {found.raw_macro_f1:.3f} | {found.macro_f1:.3f} |",
        f"| accuracy | {found.raw_accuracy:.3f} | {found.accuracy:.3f} |",
        "",
        "| label | gold | predicted raw | predicted calibrated |",
        "|---|--:|--:|--:|",
    ]
    lines += [
        f"| {md_cell(label)} | {gold} | {raw} | {new} |"
        for label, gold, raw, new in label_counts(record)
    ]
    return [*lines, ""]


def confusion_markdown(preds: Predictions) -> list[str]:
    """The confusion matrix as a Markdown table: gold labels down, predicted across (with
    `invalid` for answers outside the labels); the diagonal - the correct answers - in bold."""
    from ..labels import INVALID
    from ..metrics import confusion

    matrix = confusion(preds)
    cols = [*preds.labels, INVALID]
    lines = [
        "Confusion matrix (rows: gold, columns: predicted):",
        "",
        "| gold \\ predicted | " + " | ".join(md_cell(c) for c in cols) + " |",
        "|---|" + "--:|" * len(cols),
    ]
    for gold, row in matrix.items():
        cells = [f"**{row[c]}**" if c == gold else str(row[c]) for c in cols]
        lines.append(f"| {md_cell(gold)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def md_cell(text: str) -> str:
    """Text for a Markdown table cell: labels come from pull requests, so markup stays text
    and a `|` does not split the cell."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("|", "\\|").replace("\n", " ")


__all__ = ["confusion_markdown", "md_cell", "raw_markdown", "record_tables"]
