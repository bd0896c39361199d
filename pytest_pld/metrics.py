"""Metrics: one pure function per metric, registered by name with its direction.

A metric takes a `Predictions` bundle and returns a float. Per-label metrics are spelt
`f1[Label]`, `precision[Label]`, `recall[Label]`. scikit-learn does the arithmetic where it
has the metric; it is imported lazily so that importing the plugin stays cheap.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
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
    # whether the top score tied exactly with another label's (scored backends)
    tie: tuple[bool | None, ...] = ()  # None: not recorded

    def subset(self, index: Sequence[int]) -> Predictions:
        pick = lambda xs: tuple(xs[i] for i in index) if xs else ()
        return Predictions(
            self.labels,
            pick(self.gold),
            pick(self.pred),
            pick(self.latency_ms),
            pick(self.prompt_tokens),
            pick(self.baseline_latency_ms),
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
    known = [t for t in p.tie if t is not None]
    return sum(known) / len(known) if known else 0.0


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


# the built-in label metrics, whose vectorised bootstrap form is in _counted
_BUILTIN = {
    "accuracy": accuracy,
    "invalid_rate": invalid_rate,
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


# --- bootstrap ----------------------------------------------------------------------------------

#: One cluster id per example, e.g. ContractNLI's document id: examples that share a cluster are
#: not independent, so a bootstrap given cluster ids draws whole clusters.
ClusterIds = Sequence[Hashable]


@dataclass(frozen=True)
class Resamples:
    """The draws of one bootstrap: how often each cluster is drawn in each resample.

    Without cluster ids every example is its own cluster. A drawn cluster brings all of its
    examples, so clustered resamples differ in size, as they should: the spread between
    resamples then carries the between-cluster variation that resampling examples hides.
    Counts (rather than index matrices) let the label metrics of every resample come out of one
    matrix product over per-cluster sums, which is what keeps 1000 resamples cheap.
    """

    counts: Any  # (n_resamples, n_clusters) draws of each cluster per resample (float32)
    cluster_of: Any | None  # (n_examples,) cluster 0..G-1 of each example; None: no clusters

    @property
    def n_resamples(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_clusters(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_examples(self) -> int:
        return self.n_clusters if self.cluster_of is None else int(self.cluster_of.shape[0])

    @property
    def clusters_drawn(self) -> int | None:
        """The number of clusters each resample draws; None when examples are drawn."""
        return None if self.cluster_of is None else self.n_clusters

    def totals(self, flags: Any) -> Any:
        """Column sums of an (n_examples, k) array of 0/1 flags over every resample, as an
        (n_resamples, k) float64 array. In float32, which is exact for whole numbers below
        2^24 (16.7 million examples) and halves the cost of the product."""
        import numpy as np

        values = np.asarray(flags, dtype=np.float32)
        if self.cluster_of is not None:
            values = np.column_stack(
                [
                    np.bincount(self.cluster_of, weights=column, minlength=self.n_clusters)
                    for column in values.T
                ]
            ).astype(np.float32)
        return (self.counts @ values).astype(float)

    def example_counts(self) -> Any:
        """(n_resamples, n_examples): how often each example is in each resample."""
        return self.counts if self.cluster_of is None else self.counts[:, self.cluster_of]


def cluster_codes(clusters: ClusterIds, n: int) -> Any:
    """Cluster ids -> ints 0..G-1 in order of first appearance (any hashable ids)."""
    import numpy as np

    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} examples: give one per example")
    code = {c: i for i, c in enumerate(dict.fromkeys(clusters))}
    return np.fromiter(map(code.__getitem__, clusters), dtype=np.intp, count=n)


def _count_rows(index: Any, n_values: int) -> Any:
    """(rows, k) draws of values 0..n_values-1 -> (rows, n_values) counts, by one bincount."""
    import numpy as np

    rows = index.shape[0]
    flat = (np.arange(rows)[:, None] * n_values + index).ravel()
    # float32, because the counts only ever enter matrix products with 0/1 flags (`totals`)
    counts = np.bincount(flat, minlength=rows * n_values).reshape(rows, n_values)
    return counts.astype(np.float32)


def draw_resamples(
    n: int, *, clusters: ClusterIds | None = None, n_resamples: int = 1000, seed: int = 0
) -> Resamples:
    """The bootstrap draws for n examples: clusters (or examples) with replacement, as many as
    there are. Deterministic for a seed; without clusters the draws are the ones this module
    always made, so unclustered intervals did not change when clusters arrived.

    Cached (a few entries): every metric and gate of one run draws the same resamples (same
    examples, same seed), and drawing is most of the cost of a bootstrap. The arrays are
    read-only for that reason.
    """
    ids = None if clusters is None else tuple(clusters)
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} cluster ids for {n} examples: give one per example")
    return _draw(n, ids, n_resamples, seed)


@functools.lru_cache(maxsize=4)
def _draw(n: int, clusters: tuple[Hashable, ...] | None, n_resamples: int, seed: int) -> Resamples:
    import numpy as np

    codes = None if clusters is None else cluster_codes(clusters, n)
    n_clusters = n if codes is None else int(codes.max()) + 1 if n else 0
    draws = np.random.default_rng(seed).integers(0, n_clusters, (n_resamples, n_clusters))
    resamples = Resamples(_count_rows(draws, n_clusters), codes)
    for array in (resamples.counts, resamples.cluster_of):
        if array is not None:
            array.flags.writeable = False
    return resamples


def _resample_index(n: int, n_resamples: int, seed: int) -> Any:
    """The (n_resamples, n) matrix of example indices a bootstrap draws, with replacement."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, n, (n_resamples, n))


_COUNTABLE = {"accuracy", "invalid_rate", "macro_f1", "f1", "precision", "recall"}


def _counted(name: str, p: Predictions, resamples: Resamples) -> Any:
    """The metric on every resample at once, or None when it has no vectorised form.

    Calling scikit-learn once per resample costs ~3 ms each, so 1000 resamples took seconds
    per gate; these metrics depend only on per-label counts (true positives, gold and predicted
    totals), which one matrix product gives for all resamples together.
    tests/test_metrics.py and tests/test_stats.py check this path against scikit-learn.
    """
    import numpy as np

    entry, label = lookup(name, p.labels)
    if entry.name not in _COUNTABLE or entry.fn is not _BUILTIN.get(entry.name):
        return None
    vocab = {v: i for i, v in enumerate(dict.fromkeys([*p.labels, *p.gold, *p.pred]))}
    gold = np.fromiter(map(vocab.__getitem__, p.gold), dtype=np.intp, count=len(p.gold))
    pred = np.fromiter(map(vocab.__getitem__, p.pred), dtype=np.intp, count=len(p.pred))
    ones = np.ones(len(gold))
    if entry.name in ("accuracy", "invalid_rate"):
        hit = gold == pred if entry.name == "accuracy" else pred == vocab.get(INVALID, -1)
        hits, sizes = resamples.totals(np.stack([hit, ones], axis=1)).T
        return hits / sizes
    wanted = np.asarray([vocab[label]] if label is not None else [vocab[x] for x in p.labels])
    is_gold, is_pred = gold[:, None] == wanted, pred[:, None] == wanted
    counts = resamples.totals(np.concatenate([is_gold & is_pred, is_gold, is_pred], axis=1))
    tp, n_gold, n_pred = np.split(counts, 3, axis=1)
    kind = "f1" if entry.name == "macro_f1" else entry.name
    denominator = {"f1": n_gold + n_pred, "precision": n_pred, "recall": n_gold}[kind]
    numerator = 2 * tp if kind == "f1" else tp
    # zero_division=0, as in the scikit-learn calls above
    scores = np.divide(numerator, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return scores.mean(axis=1)


def _resampled(name: str, p: Predictions, index: Any) -> Any:
    """`_counted` for resamples given as an index matrix (as `_resample_index` draws them)."""
    return _counted(name, p, Resamples(_count_rows(index, len(p.gold)), None))


def resampled_values(name: str, p: Predictions, resamples: Resamples) -> Any:
    """The metric on every resample: an (n_resamples,) array."""
    import numpy as np

    fast = _counted(name, p, resamples)
    if fast is not None:
        return fast
    every = np.arange(len(p.gold))
    counts = resamples.example_counts().astype(int)
    return np.asarray([compute(name, p.subset(np.repeat(every, row).tolist())) for row in counts])


@functools.lru_cache(maxsize=256)
def expanded_level(level: float, n_clusters: int | None) -> float:
    """The quantile level to read a bootstrap bound at when whole clusters were resampled.

    Hesterberg's expanded percentile interval (The American Statistician 69(4), 2015): the
    level c becomes Phi(sqrt(G/(G-1)) * t_{G-1}(c)) for G clusters. A bootstrap over G
    clusters sees (G-1)/G of the variance between them and normal tails where Student's t
    belongs. In simulation with 32 clusters, like a StereoSet test split, 95% intervals
    covered 93.6% of runs and a gate raised 6.6% false alarms at its margin without the
    expansion (2000 runs), 94.3% and 5.4% with it (4000 runs; benchmarks/
    bench_stats_simulation.py); from ~80 clusters on the change is negligible. None (examples
    resampled): the level is unchanged, so intervals without clusters are the ones this module
    always gave.
    """
    if n_clusters is None:
        return level
    if n_clusters < 2:  # one cluster: nothing to learn about the spread; the widest bounds
        return 1.0 if level > 0.5 else 0.0
    from scipy.stats import t

    expansion = math.sqrt(n_clusters / (n_clusters - 1))
    return NormalDist().cdf(expansion * float(t.ppf(level, n_clusters - 1)))


def _two_sided(values: Any, confidence: float, n_clusters: int | None) -> tuple[float, float]:
    import numpy as np

    alpha = (1 - confidence) / 2
    low, high = expanded_level(alpha, n_clusters), expanded_level(1 - alpha, n_clusters)
    return float(np.quantile(values, low)), float(np.quantile(values, high))


def bootstrap_interval(
    name: str,
    p: Predictions,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: ClusterIds | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric, resampling examples with replacement, or
    whole clusters when `clusters` gives each example's cluster id (then read at the expanded
    levels of `expanded_level`)."""
    entry, _ = lookup(name, p.labels)
    n = len(p.gold)
    if n == 0 or not entry.resamplable:
        value = compute(name, p)
        return value, value
    resamples = draw_resamples(n, clusters=clusters, n_resamples=n_resamples, seed=seed)
    values = resampled_values(name, p, resamples)
    return _two_sided(values, confidence, resamples.clusters_drawn)


def point_value(name: str, p: Predictions) -> float:
    """`compute(name, p)`, by the vectorised path when the metric has one (no scikit-learn call,
    which costs milliseconds per call); equal to it, see tests/test_stats.py."""
    import numpy as np

    if len(p.gold) and lookup(name, p.labels)[0].name in _COUNTABLE:
        every_once = Resamples(np.ones((1, len(p.gold))), None)
        fast = _counted(name, p, every_once)
        if fast is not None:
            return float(fast[0])
    return compute(name, p)


def paired_bootstrap_deltas(
    name: str, new: Predictions, old: Predictions, resamples: Resamples
) -> tuple[float, Any]:
    """metric(new) - metric(old), and the same difference on every paired resample.

    Both runs are resampled with the same draws (the same examples, or the same clusters), so
    per-example difficulty cancels out of the difference.
    """
    if new.gold != old.gold:
        raise ValueError("paired bootstrap needs the same examples in the same order")
    delta = point_value(name, new) - point_value(name, old)
    return delta, resampled_values(name, new, resamples) - resampled_values(name, old, resamples)


def paired_bootstrap_delta(
    name: str,
    new: Predictions,
    old: Predictions,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    clusters: ClusterIds | None = None,
) -> tuple[float, float, float]:
    """(delta, low, high) of metric(new) - metric(old) over the same examples, resampled in
    pairs (by example, or by cluster when `clusters` is given, read at the expanded levels of
    `expanded_level`) so that per-example difficulty cancels out."""
    n = len(new.gold)
    if n == 0:
        if new.gold != old.gold:
            raise ValueError("paired bootstrap needs the same examples in the same order")
        delta = compute(name, new) - compute(name, old)
        return delta, delta, delta
    resamples = draw_resamples(n, clusters=clusters, n_resamples=n_resamples, seed=seed)
    delta, deltas = paired_bootstrap_deltas(name, new, old, resamples)
    return (delta, *_two_sided(deltas, confidence, resamples.clusters_drawn))
