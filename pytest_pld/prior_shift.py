"""The prior-shift control: the zero-shot prompt with one additive offset per label.

A rule such as "If Ethiopia is an incredibly starving country, then the label is race" can
lift macro-F1 by making the student answer race more often, not through what it says. The
cheapest way to move a label prior is to add a constant to each label's score; if the rules
do not beat that, they are a prior shift in words.

The offsets are fitted on dev examples (never on the split they are evaluated on) to maximise
macro-F1 there, by coordinate search: labels in sorted order (so the fit does not depend on
the order of the suite's label list), each offset set by an exact line search (macro-F1 only
changes where a label's adjusted score crosses the best other one, so those crossing points
are the only candidates), until a sweep over all labels no longer raises macro-F1. Among
equally good offsets the one closest to 0 is kept: the smallest shift that does the job.
Applying the offsets needs per-label scores (log-probabilities), which the `local:` backend
stores in each result; no model is called again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .labels import tie_key

MAX_SWEEPS = 25
#: how far past the last crossing point an offset goes when the best interval is unbounded
EDGE_MARGIN = 0.5


@dataclass(frozen=True)
class PriorShift:
    offsets: dict[str, float]  # label -> additive offset to its score
    fit_n: int  # examples the offsets were fitted on
    fit_before: float  # their macro-F1 with no offsets (the zero-shot answers)
    fit_after: float  # their macro-F1 with the offsets
    sweeps: int

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": {k: round(v, 4) for k, v in self.offsets.items()},
            "fit_n": self.fit_n,
            "fit_macro_f1_before": round(self.fit_before, 4),
            "fit_macro_f1_after": round(self.fit_after, 4),
            "sweeps": self.sweeps,
        }


def has_scores(score_rows: Sequence[Mapping[str, float] | None], labels: Sequence[str]) -> bool:
    """True when every row scores every label (what the control needs)."""
    return bool(score_rows) and all(
        row is not None and all(label in row for label in labels) for row in score_rows
    )


def macro_f1(gold: Any, pred: Any, n_labels: int) -> float:
    """Macro-F1 over label indices 0..n_labels-1, zero_division=0 (as `metrics.macro_f1`)."""
    import numpy as np

    tp = np.bincount(gold[gold == pred], minlength=n_labels)[:n_labels]
    n_gold = np.bincount(gold[gold >= 0], minlength=n_labels)[:n_labels]
    n_pred = np.bincount(pred[pred >= 0], minlength=n_labels)[:n_labels]
    denom = n_gold + n_pred
    f1 = np.divide(2.0 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    return float(f1.mean())


def predict(
    scores: Any,
    offsets: Any,
    labels: Sequence[str],
    ids: Sequence[str],
    fallback: Sequence[int],
) -> Any:
    """Label index per row of scores + offsets. An exact tie keeps the backend's own answer
    (`fallback`) when it is among the tied labels - so zero offsets reproduce the zero-shot
    answers exactly - and otherwise goes to the tied label with the smallest hash of (example
    id, label): deterministic and independent of label order."""
    import numpy as np

    adjusted = scores + offsets[None, :]
    top = adjusted.max(axis=1, keepdims=True)
    tied = adjusted == top
    out = adjusted.argmax(axis=1)
    for i in map(int, np.flatnonzero(tied.sum(axis=1) > 1)):
        candidates = [int(k) for k in np.flatnonzero(tied[i])]
        if fallback[i] in candidates:
            out[i] = fallback[i]
        else:
            out[i] = min(candidates, key=lambda k: tie_key(ids[i], labels[k]))
    return out


def _line_search(
    scores: Any, offsets: Any, gold: Any, k: int, current: float
) -> tuple[float, float]:
    """The offset of label k that maximises macro-F1 with the others fixed, and that macro-F1
    (under a strict '>' at crossings; `fit_offsets` re-checks with `predict`)."""
    import numpy as np

    n, n_labels = scores.shape
    adjusted = scores + offsets[None, :]
    others = adjusted.copy()
    others[:, k] = -np.inf
    other = others.argmax(axis=1)  # what each example says when label k does not win
    margin = others.max(axis=1) - scores[:, k]  # label k wins iff its offset > margin
    order = np.argsort(margin, kind="stable")
    m, g, o = margin[order], gold[order], other[order]
    # t = number of examples (smallest margins first) that flip to k
    base_tp = np.bincount(o[o == g], minlength=n_labels)[:n_labels].astype(float)
    base_pred = np.bincount(o, minlength=n_labels)[:n_labels].astype(float)
    n_gold = np.bincount(g[g >= 0], minlength=n_labels)[:n_labels].astype(float)
    lost_tp = np.zeros((n + 1, n_labels))
    lost_pred = np.zeros((n + 1, n_labels))
    hit = (o == g).astype(float)
    lost_tp[1:] = np.cumsum(np.eye(n_labels)[o] * hit[:, None], axis=0)
    lost_pred[1:] = np.cumsum(np.eye(n_labels)[o], axis=0)
    tp = base_tp[None, :] - lost_tp
    n_pred = base_pred[None, :] - lost_pred
    tp[:, k] = np.concatenate([[0.0], np.cumsum(g == k)])
    n_pred[:, k] = np.arange(n + 1)
    denom = n_gold[None, :] + n_pred
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(axis=1)
    # t flips are reachable only between distinct margins: offset in (m[t-1], m[t]]
    lows = np.concatenate([[-np.inf], m])
    highs = np.concatenate([m, [np.inf]])
    reachable = lows < highs
    best = f1[reachable].max()
    choices = []
    for t in np.flatnonzero(reachable & (f1 >= best - 1e-12)):
        lo, hi = lows[t], highs[t]
        if lo < current <= hi:
            value = current
        elif lo < 0 <= hi:
            value = 0.0
        elif np.isinf(lo):
            value = hi - EDGE_MARGIN
        elif np.isinf(hi):
            value = lo + EDGE_MARGIN
        else:
            value = (lo + hi) / 2
        choices.append(value)
    value = min(choices, key=lambda v: (v != current, abs(v)))
    return float(value), float(best)


def fit_offsets(
    scores: Any,
    gold: Any,
    labels: Sequence[str],
    ids: Sequence[str],
    fallback: Sequence[int],
    *,
    max_sweeps: int = MAX_SWEEPS,
) -> PriorShift:
    """Offsets (in the order of `labels`) that maximise macro-F1 of `predict` on these rows.
    `gold` holds label indices (-1 for a gold label outside `labels`)."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.intp)
    n_labels = len(labels)
    offsets = np.zeros(n_labels)

    def value(candidate: Any) -> float:
        return macro_f1(gold, predict(scores, candidate, labels, ids, fallback), n_labels)

    before = best = value(offsets)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        improved = False
        for k in sorted(range(n_labels), key=lambda i: labels[i]):
            proposal, _ = _line_search(scores, offsets, gold, k, offsets[k])
            if proposal == offsets[k]:
                continue
            trial = offsets.copy()
            trial[k] = proposal
            score = value(trial)
            if score > best + 1e-12:
                offsets, best, improved = trial, score, True
        if not improved:
            break
    return PriorShift(
        {label: float(offsets[i]) for i, label in enumerate(labels)},
        len(gold),
        before,
        best,
        sweeps,
    )


def shifted_labels(
    score_rows: Sequence[Mapping[str, float]],
    answers: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
    offsets: Mapping[str, float],
) -> list[str]:
    """The answers the zero-shot scores give once `offsets` are added."""
    import numpy as np

    matrix = np.asarray([[row[label] for label in labels] for row in score_rows], dtype=np.float64)
    index = {label: i for i, label in enumerate(labels)}
    fallback = [index.get(a, -1) for a in answers]
    shift = np.asarray([offsets.get(label, 0.0) for label in labels])
    return [labels[i] for i in predict(matrix, shift, labels, ids, fallback)]


def fit_on(
    score_rows: Sequence[Mapping[str, float]],
    answers: Sequence[str],
    gold: Sequence[str],
    ids: Sequence[str],
    labels: Sequence[str],
) -> PriorShift:
    """`fit_offsets` on results given as score mappings, answers and gold labels."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[row[label] for label in labels] for row in score_rows]
    return fit_offsets(
        matrix,
        [index.get(g, -1) for g in gold],
        labels,
        ids,
        [index.get(a, -1) for a in answers],
    )


def fit_results(results: Sequence[Any], labels: Sequence[str]) -> PriorShift:
    """`fit_on` for results of the runner (their scores, answers, gold labels and ids)."""
    return fit_on(
        [r.scores or {} for r in results],
        [r.pred for r in results],
        [r.gold for r in results],
        [r.id for r in results],
        labels,
    )
