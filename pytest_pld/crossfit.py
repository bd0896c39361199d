"""Calibrated answers that no example was fitted on: what `pld distill` selects rules by, what
`pld ablate` measures rule effects with, and what `pld conditions`' calibrated rows show.

A small student's label prior swamps what its rules say (StereoSet's 0.5B: raw macro-F1 0.33,
0.65 with four offsets), so a rule set is judged with a calibration refitted *for it*
(prior-shift offsets on its own label scores, `calibration.fit_prior_shift`): a rule then
counts only for what it adds beyond moving the prior. Measured on the examples they were
fitted on, the offsets would flatter every set by as much as they can overfit, so they never
answer an example they were fitted on:

- **Cross-fitting** (`cross_fitted`): a fold's units (the suite's clusters, else the examples'
  groups, else the examples) are dealt into `PARTS` parts in the order of a salted hash, and
  each part is answered with offsets fitted on the other parts. Every example gets one
  calibrated answer from offsets fitted without it, so macro-F1 and paired bootstrap intervals
  are computed on those answers as on raw ones; two sets scored on one fold are cross-fitted
  with the same parts, so their comparison stays paired. Four parts fit each calibration on
  three quarters of the fold (36 of distill's 48 default selection examples), close to the
  calibration fitted on the whole fold, where halves would fit four labels' offsets on 24.
- **Fitted elsewhere** (`fitted_on`): offsets fitted on one fold answer another (distill's
  held-back fold with the selection fold's offsets; the split `pld conditions` evaluates with
  dev's).

The answer is taken as a written calibration takes it (`calibration.Calibration.answer`: an
exact tie goes by a hash of the example id and the label). Raw scores come from the response
cache, so refitting calls no model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .calibration import Scored, fit_prior_shift, require_scores
from .datasets import split_fraction
from .errors import PldError
from .labels import top_label

PARTS = 4
SALT = "pld-crossfit:"


@dataclass(frozen=True)
class Calibrated:
    """Calibrated answers of some results, in their order, and the offsets that gave them."""

    pred: tuple[str, ...]
    tie: tuple[bool, ...]  # the calibrated top score tied exactly with another label's
    offsets: tuple[Mapping[str, float], ...]  # one per part (cross-fitted), or the one fit


def parts_of(units: Sequence[str], parts: int = PARTS) -> list[int]:
    """The part of each position: distinct units ordered by a salted sha256 (independent of the
    order of the examples) and dealt round-robin into `parts` parts of near-equal size."""
    distinct = sorted(set(units), key=lambda unit: (split_fraction(SALT + unit), unit))
    count = min(parts, len(distinct))
    part = {unit: i % count for i, unit in enumerate(distinct)}
    return [part[unit] for unit in units]


def answered(
    offsets: Mapping[str, float], results: Sequence[Scored], labels: Sequence[str]
) -> list[tuple[str, bool]]:
    """(calibrated answer, tie) of each result with `offsets` added to its label scores."""
    return [
        top_label(
            {label: float((r.scores or {})[label]) + offsets[label] for label in labels}, r.id
        )
        for r in results
    ]


def cross_fitted(
    results: Sequence[Scored],
    labels: Sequence[str],
    units: Sequence[str] | None,
    *,
    student: str,
    parts: int = PARTS,
) -> Calibrated:
    """Each result answered with offsets fitted on the other parts of `results`. `units` keeps
    related examples in one part (None, or a single unit: each example is its own)."""
    require_scores(results, labels, student=student)
    if len(results) < 2:
        raise PldError(
            f"cannot cross-fit a calibration on {len(results)} example: the offsets that answer "
            "an example must be fitted on others",
            hint="score more examples, or select on the raw answers (--select-on raw)",
        )
    if units is None or len(set(units)) < 2:
        units = [r.id for r in results]
    index = parts_of(units, parts)
    pred, tie = [""] * len(results), [False] * len(results)
    fits = []
    for part in sorted(set(index)):
        fit = [r for r, i in zip(results, index) if i != part]
        offsets = fit_prior_shift(fit, labels, student=student)
        fits.append(offsets)
        held = [j for j, i in enumerate(index) if i == part]
        for j, (label, tied) in zip(held, answered(offsets, [results[j] for j in held], labels)):
            pred[j], tie[j] = label, tied
    return Calibrated(tuple(pred), tuple(tie), tuple(fits))


def fitted_on(
    fit: Sequence[Scored], results: Sequence[Scored], labels: Sequence[str], *, student: str
) -> Calibrated:
    """`results` answered with offsets fitted on `fit` (other examples)."""
    require_scores(results, labels, student=student)
    offsets = fit_prior_shift(fit, labels, student=student)
    out = answered(offsets, results, labels)
    return Calibrated(tuple(p for p, _ in out), tuple(t for _, t in out), (offsets,))
