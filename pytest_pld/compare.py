"""`pld compare`: two run records paired by example id - deltas, McNemar, flips, or why not.

Records of the same suite, split, sample, model, labels and data are compared example by
example, exactly as `pld review` compares its two sides (`review.reviewer.paired_deltas`), and
printed in the review's format (`report.comparison`). Records that differ in any of those are
not compared: the result lists every difference instead, because a delta between different
models or data would be read as the effect of an instruction change.

Calibration does not stop a comparison (a calibration is part of an instruction change), but a
record with calibrated answers against one with raw answers, or two calibrated differently, is
flagged as such, and the raw students' accuracy and macro-F1 are compared beside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .gates import differences
from .record import RunRecord, answers_kind, sides_answers
from .review.results import SuiteReport

#: `pld compare`'s exit codes (its --help quotes them)
COMPARED, NOT_COMPARABLE = 0, 1
#: the names the differences use for the two records
NAMES = ("A", "B")


@dataclass(frozen=True)
class RecordSummary:
    """Who one side is: enough to tell the two records apart in a report."""

    path: str
    suite: str
    split: str
    limit: int | None
    model: str
    instructions: str  # "name vN (hash)"
    examples: int
    created_at: str
    calibration: str = ""  # "calibrated (prior-shift, ...)", "raw (...)"; "": none in the set

    @classmethod
    def of(cls, record: RunRecord) -> RecordSummary:
        iset = record.instructions
        return cls(
            path=record.path or "-",
            suite=record.suite,
            split=record.split,
            limit=record.limit,
            model=record.model,
            instructions=(
                f"{iset.get('name')} v{iset.get('version')} ({str(iset.get('hash', ''))[:12]})"
            ),
            examples=len(record.results),
            created_at=record.created_at or "-",
            calibration=_answers(record),
        )

    def line(self) -> str:
        answers = f", answers {self.calibration}" if self.calibration else ""
        return (
            f"{self.path}: {self.suite}/{self.split}, {self.examples} examples, model "
            f"{self.model}, instructions {self.instructions}{answers}, created {self.created_at}"
        )


def _answers(record: RunRecord) -> str:
    return "" if record.calibration is None else answers_kind(record)


@dataclass
class Comparison:
    a: RecordSummary  # the reference ("base")
    b: RecordSummary  # the one compared with it ("head"); deltas are B - A
    problems: list[str] = field(default_factory=list)  # why they cannot be paired
    report: SuiteReport | None = None  # the paired comparison, when they can

    @property
    def comparable(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return COMPARED if self.comparable else NOT_COMPARABLE


def compare_records(a: RunRecord, b: RunRecord, *, resamples: int = 1000) -> Comparison:
    """Pair B with A by example id; deltas B - A with paired (clustered) bootstrap intervals,
    the exact McNemar test and the flipped examples - or the reasons they cannot be paired."""
    from .review.reviewer import paired_deltas

    comparison = Comparison(RecordSummary.of(a), RecordSummary.of(b))
    comparison.problems = differences(b, a, names=NAMES)
    if comparison.problems:
        return comparison
    paired = paired_deltas(b.labels, a, b, resamples)
    comparison.report = SuiteReport(
        suite=b.suite,
        split=b.split,
        limit=b.limit,
        model=b.model,
        status="compared",
        examples=paired.examples,
        metrics=paired.metrics,
        right_to_wrong=paired.right_to_wrong,
        wrong_to_right=paired.wrong_to_right,
        records={"base": a.path, "head": b.path},
        mcnemar=paired.mcnemar,
        clusters=paired.clusters,
        cluster_key=paired.cluster_key,
        calibration=sides_answers(a, b),
        raw_metrics=paired.raw_metrics,
        calibration_note=paired.calibration_note,
    )
    return comparison


__all__ = [
    "COMPARED",
    "NOT_COMPARABLE",
    "Comparison",
    "RecordSummary",
    "compare_records",
]
