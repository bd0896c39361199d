"""The held-back fold's numbers as the proposal reports them: the current and the proposed set,
each raw and calibrated (offsets fitted for that set on dev's selection fold), with the
predicted labels against the gold ones and the paired differences. A reviewer can then tell a
rule effect (it survives calibration) from a prior shift (it does not)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .. import metrics
from ..metrics import Predictions
from .student import BOOTSTRAP_RESAMPLES, Score

Delta = tuple[float, float, float]  # (difference, low, high)


@dataclass
class HeldBack:
    fold: str
    fit: str  # the fold the calibrations were fitted on
    judged_on: str  # what the final choice read: calibrated | raw
    confidence: float
    answers: dict[str, Predictions]  # "current, raw", "proposed, calibrated", ...
    deltas: dict[str, Delta] = field(default_factory=dict)  # raw | calibrated: proposed - current

    @classmethod
    def of(
        cls, before: Score, after: Score, *, fit: str, judged_on: str, confidence: float
    ) -> HeldBack:
        answers = {}
        for who, score in (("current", before), ("proposed", after)):
            answers[f"{who}, raw"] = score.raw
            if score.calibrated is not None:
                answers[f"{who}, calibrated"] = score.calibrated
        out = cls(before.fold.name, fit, judged_on, confidence, answers)
        for kind in ("raw", "calibrated"):
            new, old = answers.get(f"proposed, {kind}"), answers.get(f"current, {kind}")
            if new is not None and old is not None:
                out.deltas[kind] = metrics.paired_bootstrap_delta(
                    "macro_f1",
                    new,
                    old,
                    n_resamples=BOOTSTRAP_RESAMPLES,
                    confidence=confidence,
                    clusters=after.fold.clusters,
                )
        return out

    @property
    def gold(self) -> Predictions:
        return next(iter(self.answers.values()))

    def to_json(self) -> dict[str, Any]:
        p = self.gold
        return {
            "fold": self.fold,
            "n": len(p.gold),
            "calibrations_fitted_on": self.fit,
            "final_choice_on": self.judged_on,
            "gold": _counts(p.labels, p.gold),
            "answers": {
                name: {
                    "macro_f1": round(metrics.compute("macro_f1", a), 4),
                    "accuracy": round(metrics.compute("accuracy", a), 4),
                    "predicted": _counts(a.labels, a.pred),
                }
                for name, a in self.answers.items()
            },
            "proposed_minus_current": {k: [round(x, 4) for x in d] for k, d in self.deltas.items()},
        }

    def lines(self) -> list[str]:
        p = self.gold
        head = f"# {self.fold} (n={len(p.gold)}): "
        if "calibrated" in self.deltas:
            head += (
                f"raw and calibrated answers (each set's offsets fitted on {self.fit}); the "
                f"final choice read the {self.judged_on} ones"
            )
        else:
            head += "the student's answers (it returned no label scores to calibrate)"
        out = [head]
        rows = [("", "macro-F1", "accuracy", "predicted labels")]
        for name, a in self.answers.items():
            rows.append(
                (
                    name,
                    f"{metrics.compute('macro_f1', a):.3f}",
                    f"{metrics.compute('accuracy', a):.3f}",
                    _shown(_counts(a.labels, a.pred)),
                )
            )
        rows.append(("gold", "", "", _shown(_counts(p.labels, p.gold))))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]
            out.append("  " + "  ".join(cells).rstrip())
        for kind, (d, lo, hi) in self.deltas.items():
            out.append(
                f"  proposed - current, {kind}: macro-F1 {d:+.3f} ({self.confidence:.0%} paired "
                f"interval {lo:+.3f} .. {hi:+.3f})"
            )
        return out


def _counts(labels: tuple[str, ...], answers: tuple[str, ...]) -> dict[str, int]:
    counts = Counter(answers)
    return {label: counts.get(label, 0) for label in dict.fromkeys([*labels, *answers])}


def _shown(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())
