"""What every report says about a run record's calibration: that its answers are calibrated and
how, the raw student's numbers beside the calibrated ones, and the predicted labels raw and
calibrated, so that a reader can tell a rule's effect from a moved label prior.

One wording for the terminal (`pld run`, the gate table), the Markdown report, the JUnit
properties, the HTML page and `pld compare`. A record without a calibration gets nothing here,
so the reports of uncalibrated sets read exactly as before.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import metrics
from ..calibration import describe_section
from ..labels import INVALID

if TYPE_CHECKING:
    from ..record import RunRecord


@dataclass(frozen=True)
class CalibrationSummary:
    """A record's calibration for the reports; `applied` False: switched off for the run."""

    applied: bool
    fit: str  # 'prior-shift, fitted on dev (310 examples) for local:...'
    raw_macro_f1: float | None = None  # the raw student's, on this run's examples
    macro_f1: float | None = None  # the calibrated answers'
    raw_accuracy: float | None = None
    accuracy: float | None = None

    def text(self) -> str:
        """'calibrated (prior-shift, fitted on ...; raw macro-F1 0.329 -> calibrated 0.728)'
        or 'raw: calibration switched off (...)'."""
        if not self.applied:
            return f"raw: calibration switched off for this run (the set's {self.fit})"
        return (
            f"calibrated ({self.fit}; raw macro-F1 {self.raw_macro_f1:.3f} -> calibrated "
            f"{self.macro_f1:.3f})"
        )


def summarize_calibration(record: RunRecord) -> CalibrationSummary | None:
    """None for a record without a calibration (none in the set, or an older record)."""
    cal = record.calibration
    if cal is None:
        return None
    if not record.calibrated:
        return CalibrationSummary(applied=False, fit=describe_section(cal))
    raw, new = record.raw_predictions(), record.predictions()
    return CalibrationSummary(
        applied=True,
        fit=describe_section(cal),
        raw_macro_f1=metrics.compute("macro_f1", raw),
        macro_f1=metrics.compute("macro_f1", new),
        raw_accuracy=metrics.compute("accuracy", raw),
        accuracy=metrics.compute("accuracy", new),
    )


def label_counts(record: RunRecord) -> list[tuple[str, int, int, int]]:
    """(label, gold, raw, calibrated) counts of every label, and of `invalid` when any
    answer was off-label; for a calibrated record."""
    gold = Counter(r.gold for r in record.results)
    raw = Counter(record.raw_predictions().pred)
    new = Counter(r.pred for r in record.results)
    shown = [*record.labels, *([INVALID] if raw[INVALID] or new[INVALID] else [])]
    return [(label, gold[label], raw[label], new[label]) for label in shown]


__all__ = ["CalibrationSummary", "label_counts", "summarize_calibration"]
