"""Metrics: one pure function per metric, registered by name with its direction.

A metric takes a `Predictions` bundle and returns a float. Per-label metrics are spelt
`f1[Label]`, `precision[Label]`, `recall[Label]`. scikit-learn does the arithmetic where it
has the metric; it is imported lazily so that importing the plugin stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .labels import INVALID


@dataclass(frozen=True)
class Predictions:
    """Gold and predicted labels of one run (paired by position), plus per-example costs."""

    labels: tuple[str, ...]  # the suite's label set, in order
    gold: tuple[str, ...]
    pred: tuple[str, ...]
    latency_ms: tuple[float, ...] = ()
    prompt_tokens: tuple[int, ...] = ()
    # latency of the same examples without the rules, when the run measured it
    baseline_latency_ms: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # whether the top score tied exactly with another label's (scored backends)
    tie: tuple[bool, ...] = ()

    def subset(self, index: Sequence[int]) -> Predictions:
        pick = lambda xs: tuple(xs[i] for i in index) if xs else ()
        return Predictions(
            self.labels,
            pick(self.gold),
            pick(self.pred),
            pick(self.latency_ms),
            pick(self.prompt_tokens),
            pick(self.baseline_latency_ms),
            self.extra,
            tie=pick(self.tie),
        )


MetricFn = Callable[[Predictions], float]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str
    per_label: bool = False
    resamplable: bool = True  # meaningful under bootstrap resampling of examples


_REGISTRY: dict[str, Metric] = {}
_PER_LABEL: dict[str, Metric] = {}


def metric(
    name: str,
    *,
    higher_is_better: bool,
    description: str,
    per_label: bool = False,
    resamplable: bool = True,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    def register(fn: Callable[..., float]) -> Callable[..., float]:
        entry = Metric(name, fn, higher_is_better, description, per_label, resamplable)
        (_PER_LABEL if per_label else _REGISTRY)[name] = entry
        return fn

    return register


def _sk() -> Any:
    import sklearn.metrics

    return sklearn.metrics


@metric("accuracy", higher_is_better=True, description="share of exact label matches")
def accuracy(p: Predictions) -> float:
    return float(_sk().accuracy_score(p.gold, p.pred)) if p.gold else 0.0


@metric(
    "macro_f1",
    higher_is_better=True,
    description="unweighted mean F1 over the suite's labels (invalid answers count as wrong)",
)
def macro_f1(p: Predictions) -> float:
    if not p.gold:
        return 0.0
    return float(
        _sk().f1_score(p.gold, p.pred, labels=list(p.labels), average="macro", zero_division=0)
    )


@metric("invalid_rate", higher_is_better=False, description="share of off-label answers")
def invalid_rate(p: Predictions) -> float:
    return sum(x == INVALID for x in p.pred) / len(p.pred) if p.pred else 0.0


@metric(
    "tie_rate",
    higher_is_better=False,
    description="share of examples whose top label score tied exactly with another's",
)
def tie_rate(p: Predictions) -> float:
    return sum(p.tie) / len(p.tie) if p.tie else 0.0


def _percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else 0.0


@metric("latency_p50_ms", higher_is_better=False, description="median latency per example (ms)")
def latency_p50_ms(p: Predictions) -> float:
    return _percentile(p.latency_ms, 50)


@metric("latency_p95_ms", higher_is_better=False, description="95th percentile latency (ms)")
def latency_p95_ms(p: Predictions) -> float:
    return _percentile(p.latency_ms, 95)


@metric(
    "latency_overhead",
    higher_is_better=False,
    resamplable=False,
    description="mean latency with the rules / without them (same examples, same run)",
)
def latency_overhead(p: Predictions) -> float:
    if not p.latency_ms or not p.baseline_latency_ms:
        return float("nan")
    base = sum(p.baseline_latency_ms)
    return sum(p.latency_ms) / base if base > 0 else float("nan")


@metric(
    "prompt_tokens",
    higher_is_better=False,
    resamplable=False,
    description="largest prompt (system + user) in tokens",
)
def prompt_tokens(p: Predictions) -> float:
    return float(max(p.prompt_tokens)) if p.prompt_tokens else 0.0


def _per_label(kind: str, p: Predictions, label: str) -> float:
    fn = {"f1": _sk().f1_score, "precision": _sk().precision_score, "recall": _sk().recall_score}[
        kind
    ]
    return float(fn(p.gold, p.pred, labels=[label], average="macro", zero_division=0))


for _kind, _desc in (("f1", "F1"), ("precision", "precision"), ("recall", "recall")):
    metric(
        _kind,
        higher_is_better=True,
        per_label=True,
        description=f"{_desc} of one label, written {_kind}[Label]",
    )(lambda p, label, _k=_kind: _per_label(_k, p, label))


# the built-in label metrics, whose vectorised bootstrap form is in _resampled
_BUILTIN = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    **{k: _PER_LABEL[k].fn for k in ("f1", "precision", "recall")},
}

_PER_LABEL_NAME = re.compile(r"^(?P<kind>[a-z_0-9]+)\[(?P<label>[^\]]+)\]$")


def metric_names() -> list[str]:
    return [*_REGISTRY, *(f"{k}[LABEL]" for k in _PER_LABEL)]


def lookup(name: str, labels: Sequence[str] | None = None) -> tuple[Metric, str | None]:
    """('f1[Contradiction]') -> (f1 metric, 'Contradiction'). KeyError with a reason."""
    if name in _REGISTRY:
        return _REGISTRY[name], None
    match = _PER_LABEL_NAME.match(name)
    if match and match["kind"] in _PER_LABEL:
        label = match["label"]
        if labels is not None and label not in labels:
            raise KeyError(f"label {label!r} is not one of the suite's labels {list(labels)}")
        return _PER_LABEL[match["kind"]], label
    raise KeyError(f"unknown metric {name!r}")


def compute(name: str, p: Predictions) -> float:
    entry, label = lookup(name, p.labels)
    return entry.fn(p, label) if label is not None else entry.fn(p)  # type: ignore[call-arg]


def per_class(p: Predictions) -> dict[str, dict[str, float]]:
    """precision / recall / F1 / support per label."""
    sk = _sk()
    prec, rec, f1, support = sk.precision_recall_fscore_support(
        p.gold, p.pred, labels=list(p.labels), zero_division=0
    )
    return {
        label: {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(p.labels)
    }


def confusion(p: Predictions) -> dict[str, dict[str, int]]:
    """gold -> predicted -> count, with `invalid` as an extra predicted column."""
    cols = [*p.labels, INVALID]
    matrix = _sk().confusion_matrix(p.gold, p.pred, labels=cols)
    return {
        g: {c: int(matrix[i][j]) for j, c in enumerate(cols)}
        for i, g in enumerate(cols)
        if g != INVALID
    }


def worst_confusions(p: Predictions, n: int = 3) -> list[tuple[str, str, int]]:
    pairs = [(g, c, k) for g, row in confusion(p).items() for c, k in row.items() if g != c and k]
    return sorted(pairs, key=lambda t: -t[2])[:n]


def _resample_index(n: int, n_resamples: int, seed: int) -> Any:
    """The (n_resamples, n) matrix of example indices a bootstrap draws, with replacement."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n, n) for _ in range(n_resamples)])


_COUNTABLE = {"accuracy", "macro_f1", "f1", "precision", "recall"}


def _resampled(name: str, p: Predictions, index: Any) -> Any:
    """The metric on every resample at once, or None when it has no vectorised form.

    Calling scikit-learn once per resample costs ~3 ms each, so 1000 resamples took seconds
    per gate; label metrics depend only on per-label counts, which numpy computes for all
    resamples together. tests/test_metrics.py checks this path against the per-resample one.
    """
    import numpy as np

    entry, label = lookup(name, p.labels)
    if entry.name not in _COUNTABLE or entry.fn is not _BUILTIN.get(entry.name):
        return None
    vocab = {v: i for i, v in enumerate(dict.fromkeys([*p.labels, *p.gold, *p.pred]))}
    gold = np.asarray([vocab[g] for g in p.gold])[index]
    pred = np.asarray([vocab[x] for x in p.pred])[index]
    if entry.name == "accuracy":
        return (gold == pred).mean(axis=1)
    wanted = [vocab[label]] if label is not None else [vocab[x] for x in p.labels]
    scores = []
    for code in wanted:
        is_gold, is_pred = gold == code, pred == code
        tp = (is_gold & is_pred).sum(axis=1).astype(float)
        n_gold, n_pred = is_gold.sum(axis=1), is_pred.sum(axis=1)
        kind = "f1" if entry.name == "macro_f1" else entry.name
        denominator = {"f1": n_gold + n_pred, "precision": n_pred, "recall": n_gold}[kind]
        numerator = 2 * tp if kind == "f1" else tp
        # zero_division=0, as in the scikit-learn calls above
        scores.append(
            np.divide(numerator, denominator, out=np.zeros_like(tp), where=denominator > 0)
        )
    return np.mean(scores, axis=0)


def _resample_values(name: str, p: Predictions, index: Any) -> Any:
    import numpy as np

    fast = _resampled(name, p, index)
    if fast is not None:
        return fast
    return np.asarray([compute(name, p.subset(row.tolist())) for row in index])


def bootstrap_interval(
    name: str, p: Predictions, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over examples (resampled with replacement)."""
    import numpy as np

    entry, _ = lookup(name, p.labels)
    n = len(p.gold)
    if n == 0 or not entry.resamplable:
        value = compute(name, p)
        return value, value
    values = _resample_values(name, p, _resample_index(n, n_resamples, seed))
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def paired_bootstrap_delta(
    name: str,
    new: Predictions,
    old: Predictions,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(delta, low, high) of metric(new) - metric(old) over the same examples, resampled in
    pairs so that per-example difficulty cancels out."""
    import numpy as np

    if new.gold != old.gold:
        raise ValueError("paired bootstrap needs the same examples in the same order")
    delta = compute(name, new) - compute(name, old)
    n = len(new.gold)
    if n == 0:
        return delta, delta, delta
    index = _resample_index(n, n_resamples, seed)
    deltas = _resample_values(name, new, index) - _resample_values(name, old, index)
    alpha = (1 - confidence) / 2
    return delta, float(np.quantile(deltas, alpha)), float(np.quantile(deltas, 1 - alpha))
