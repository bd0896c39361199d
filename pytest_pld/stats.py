"""Inference behind gate verdicts: detectable effects, families of tests, small-N rates, McNemar.

`metrics` computes a metric and resamples it (by example, or by cluster when the suite names a
cluster key); this module turns those resamples into statements a reviewer can check:

- `regression_test`: the paired (clustered) bootstrap verdict of a regression gate, with its
  one-sided p-value, the minimum detectable drop at the gate's confidence and 80% power, the
  number of examples that would make that drop reach the margin, and the exact McNemar test.
- `holm`: Holm's step-down correction for a family of one-sided tests (per-class gates).
- `wilson_interval` / `rate_interval`: Wilson score intervals for rates, with a design-effect
  adjusted effective n when examples cluster; `metric_interval` picks Wilson or the bootstrap.
- `mcnemar`: the exact McNemar test on paired correctness (binomial, from scipy).

tests/test_stats_simulation.py checks these against simulated data with a known truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from . import metrics
from .labels import INVALID
from .metrics import ClusterIds, Predictions

#: Below this many examples the rates (accuracy, invalid rate, tie rate) get Wilson intervals:
#: the percentile bootstrap of a proportion under-covers at small n, most of all for rates
#: near 0 or 1 (no tie in 50 answers is 0.000..0.000 by the bootstrap, 0.000..0.071 by Wilson).
WILSON_BELOW = 300
#: The power at which the detectable drop is reported (the usual choice in power analysis).
POWER = 0.8
#: Metrics that are a share of examples, so that a Wilson interval applies.
RATES = ("accuracy", "invalid_rate", "tie_rate")


def _z(probability: float) -> float:
    """The standard normal quantile (stdlib; no need for scipy here)."""
    return NormalDist().inv_cdf(probability)


# --- intervals for rates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "bootstrap", "cluster bootstrap", "wilson" or "wilson, design effect"
    n_effective: float  # examples the interval is worth (n / design effect; n when unclustered)


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (two-sided, at `confidence`).

    `successes` and `n` may be fractional (an effective sample size, see `rate_interval`); for
    whole numbers the result equals scipy's `binomtest(k, n).proportion_ci(method="wilson")`,
    which tests/test_stats.py checks. For n = 0 nothing is known: (0, 1).
    """
    if n <= 0:
        return 0.0, 1.0
    z = _z(0.5 + confidence / 2)
    share = min(max(successes / n, 0.0), 1.0)
    shrink = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / shrink
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / shrink
    return max(0.0, centre - half), min(1.0, centre + half)


def design_effect(flags: Sequence[bool] | Any, clusters: ClusterIds) -> float:
    """How much clustering inflates the variance of a rate: Var(cluster-robust) / Var(binomial).

    The cluster-robust variance of the mean is G/(G-1) * sum_g (sum_{i in g} (y_i - p))^2 / n^2
    (the usual sandwich estimator with the small-sample factor), the binomial one p(1-p)/n.
    The ratio is at least 1: negative within-cluster correlation is not used to claim more
    information than independent examples carry. When it cannot be estimated (a rate of exactly
    0 or 1, or a single cluster) it is the worst case n / G, i.e. every cluster counts as one
    example, because a rate of 0 in 80 documents says less than a rate of 0 in 1,411 independent
    examples when failures, if any, come by document.
    """
    import numpy as np

    y = np.asarray(flags, dtype=float)
    n = len(y)
    codes = metrics.cluster_codes(clusters, n)
    n_clusters = int(codes.max()) + 1 if n else 0
    share = float(y.mean()) if n else 0.0
    if n_clusters < 2 or share in (0.0, 1.0):
        return n / n_clusters if n_clusters else 1.0
    residual_sums = np.bincount(codes, weights=y - share, minlength=n_clusters)
    robust = n_clusters / (n_clusters - 1) * float((residual_sums**2).sum()) / n**2
    return max(1.0, robust / (share * (1 - share) / n))


def rate_interval(
    flags: Sequence[bool] | Any, *, clusters: ClusterIds | None = None, confidence: float = 0.95
) -> Interval:
    """Wilson interval of the share of true flags; with clusters, at an effective n.

    With clusters the rate is treated as a binomial share of n_eff = n / design effect
    examples (Kish's effective sample size; the same adjustment as Korn & Graubard's for
    proportions from complex samples). Assumes the design effect estimated from this sample is
    the true one, which is rough with few clusters; that is why the worst case is used when it
    cannot be estimated (see `design_effect`).
    """
    import numpy as np

    y = np.asarray(flags, dtype=bool)
    n = len(y)
    successes = float(y.sum())
    if clusters is None:
        return Interval(*wilson_interval(successes, n, confidence=confidence), "wilson", float(n))
    n_eff = n / design_effect(y, clusters)
    low, high = wilson_interval(successes / n * n_eff if n else 0.0, n_eff, confidence=confidence)
    return Interval(low, high, "wilson, design effect", n_eff)


def rate_flags(name: str, p: Predictions) -> list[bool]:
    """Per-example flags whose share is the rate metric `name` (accuracy, invalid_rate, or
    tie_rate, whose flags are those of the answers that record ties: see `rate_examples`)."""
    if name == "accuracy":
        return [g == x for g, x in zip(p.gold, p.pred)]
    if name == "invalid_rate":
        return [x == INVALID for x in p.pred]
    if name == "tie_rate":
        return [bool(p.tie[i]) for i in rate_examples(name, p)]
    raise KeyError(f"{name!r} is not a rate metric; rates are {', '.join(RATES)}")


def rate_examples(name: str, p: Predictions) -> list[int]:
    """The examples a rate is a share of: all of them, except for the tie rate, which counts
    only answers that say whether they tied (`metrics.tie_rate`; records from a server, or
    from before ties were recorded, do not)."""
    if name == "tie_rate":
        return [i for i, tie in enumerate(p.tie) if tie is not None]
    return list(range(len(p.gold)))


def metric_interval(
    name: str,
    p: Predictions,
    *,
    clusters: ClusterIds | None = None,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    wilson_below: int = WILSON_BELOW,
) -> Interval:
    """The interval a report shows for a metric: Wilson for a rate on fewer than `wilson_below`
    examples, otherwise the percentile bootstrap (of clusters when `clusters` is given)."""
    n = len(p.gold)
    if name in RATES and n < wilson_below:
        among = rate_examples(name, p)
        if clusters is not None and len(among) < n:
            clusters = [clusters[i] for i in among]
        return rate_interval(rate_flags(name, p), clusters=clusters, confidence=confidence)
    low, high = metrics.bootstrap_interval(
        name, p, n_resamples=n_resamples, confidence=confidence, seed=seed, clusters=clusters
    )
    if clusters is None:
        return Interval(low, high, "bootstrap", float(n))
    return Interval(low, high, "cluster bootstrap", float(n))


# --- McNemar ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    """The exact McNemar test on paired correctness. It treats examples as independent (it does
    not know clusters); it is reported so that numbers can be checked against other tools."""

    worse: int  # right in the baseline, wrong in the new run
    better: int  # wrong in the baseline, right in the new run
    p_value: float  # two-sided exact binomial test of worse vs better; 1.0 without discordance

    @property
    def discordant(self) -> int:
        return self.worse + self.better


def mcnemar_exact(new_correct: Sequence[bool] | Any, old_correct: Sequence[bool] | Any) -> McNemar:
    """Exact McNemar: under "no change" each discordant pair is equally likely to go either way,
    so the count that got worse is Binomial(discordant, 1/2), tested two-sided.

    The p-value is 2 * P(X <= min(worse, better)), capped at 1: for a fair coin this is what
    scipy's `binomtest(worse, discordant, 0.5).pvalue` computes (tests/test_stats.py checks it
    on a grid), read from the binomial CDF because binomtest's generic two-sided search costs
    milliseconds per call.
    """
    import numpy as np

    if len(new_correct) != len(old_correct):
        raise ValueError("McNemar needs paired results: both runs over the same examples")
    new_right, old_right = np.asarray(new_correct, dtype=bool), np.asarray(old_correct, dtype=bool)
    worse = int((old_right & ~new_right).sum())
    better = int((new_right & ~old_right).sum())
    if worse + better == 0:
        return McNemar(0, 0, 1.0)
    from scipy.stats import binom

    tail = float(binom.cdf(min(worse, better), worse + better, 0.5))
    return McNemar(worse, better, min(1.0, 2 * tail))


def mcnemar(new: Predictions, old: Predictions) -> McNemar:
    """`mcnemar_exact` on two runs over the same examples (paired by position)."""
    if new.gold != old.gold:
        raise ValueError("McNemar needs the same examples in the same order")
    return mcnemar_exact(rate_flags("accuracy", new), rate_flags("accuracy", old))


# --- one-sided bootstrap p-values and Holm ------------------------------------------------------


def bootstrap_p_value(
    resampled: Sequence[float] | Any,
    bound: float,
    *,
    alternative: Literal["below", "above"],
    n_clusters: int | None = None,
) -> float:
    """One-sided percentile-bootstrap p-value that the true value lies below (or above) `bound`.

    "below": p = (1 + #{resampled >= bound}) / (R + 1), small when nearly every resample lies
    below the bound. For a regression gate pass the paired deltas and bound = -margin: a small
    p is evidence of a drop beyond the margin. It inverts the percentile interval, so
    p <= 1 - c agrees with "the one-sided c upper bound lies below the bound" except within one
    resample of the boundary, where the +1 (Davison & Hinkley's Monte Carlo p-value) keeps it on
    the conservative side and away from an impossible p of 0. With `n_clusters` (the resamples
    drew G clusters) the p-value inverts the expanded bound of `metrics.expanded_level`:
    p = 1 - F_t,G-1(Phi^-1(1 - p_raw) / sqrt(G/(G-1))).
    """
    import numpy as np

    values = np.asarray(resampled, dtype=float)
    if alternative == "below":
        against = int((values >= bound).sum())
    elif alternative == "above":
        against = int((values <= bound).sum())
    else:
        raise ValueError(f"alternative must be 'below' or 'above', not {alternative!r}")
    raw = (1 + against) / (len(values) + 1)
    if n_clusters is None or raw >= 1.0:
        return raw
    if n_clusters < 2:
        return 1.0
    from scipy.stats import t

    expansion = math.sqrt(n_clusters / (n_clusters - 1))
    return float(t.sf(_z(1 - raw) / expansion, n_clusters - 1))


@dataclass(frozen=True)
class BoundTest:
    """A threshold gate as a one-sided test: p-values for the bound being violated or met."""

    metric: str
    observed: float
    op: str  # ">=" or "<="
    bound: float
    p_violated: float  # small: evidence that the true value violates the bound
    p_met: float  # small: evidence that the true value meets the bound


def bound_test(
    name: str,
    p: Predictions,
    *,
    op: Literal[">=", "<="],
    bound: float,
    clusters: ClusterIds | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> BoundTest:
    """One-sided bootstrap p-values for a gate `name op bound` (e.g. f1[Label] >= 0.5).

    A family of such gates (one per class) can then be corrected with `holm`, using `p_violated`
    when a gate should fail only on evidence of a violation (controls false alarms) or `p_met`
    when it should pass only on evidence that the bound is met (controls false passes).
    """
    if op not in (">=", "<="):
        raise ValueError(f"op must be '>=' or '<=', not {op!r}")
    observed = metrics.point_value(name, p)
    resamples = metrics.draw_resamples(
        len(p.gold), clusters=clusters, n_resamples=n_resamples, seed=seed
    )
    values = metrics.resampled_values(name, p, resamples)
    below: Literal["below", "above"] = "below" if op == ">=" else "above"
    above: Literal["below", "above"] = "above" if op == ">=" else "below"
    drawn = resamples.clusters_drawn
    return BoundTest(
        metric=name,
        observed=observed,
        op=op,
        bound=bound,
        p_violated=bootstrap_p_value(values, bound, alternative=below, n_clusters=drawn),
        p_met=bootstrap_p_value(values, bound, alternative=above, n_clusters=drawn),
    )


@dataclass(frozen=True)
class HolmVerdict:
    name: str
    p_value: float
    adjusted_p: float  # Holm-adjusted: reject the family member when adjusted_p <= alpha
    rejected: bool  # raw verdict, p_value <= alpha
    rejected_adjusted: bool


def holm(p_values: Mapping[str, float], *, alpha: float) -> dict[str, HolmVerdict]:
    """Holm's step-down correction, keeping the family-wise error rate at `alpha`.

    Sorted ascending, the i-th smallest of m p-values is adjusted to
    max_{j <= i} min(1, (m - j + 1) p_(j)); a test is rejected when its adjusted p <= alpha.
    Valid under any dependence between the tests (per-class gates share examples). Neither
    scipy nor scikit-learn has it (statsmodels' `multipletests` does, but is not a dependency).
    Returned in the order given.
    """
    order = sorted(p_values, key=lambda name: p_values[name])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[name]))
        adjusted[name] = running
    return {
        name: HolmVerdict(name, p, adjusted[name], p <= alpha, adjusted[name] <= alpha)
        for name, p in p_values.items()
    }


# --- detectable effect --------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectableDrop:
    """The smallest drop a paired comparison of this size and noise tells from no change."""

    drop: float  # minimum detectable drop at `confidence` (one-sided) and `power`
    margin: float
    confidence: float
    power: float
    standard_error: float  # bootstrap SE of the paired delta
    n_examples: int
    n_clusters: int | None  # None when examples were resampled
    needed_examples: int | None  # for `drop` <= margin; None when the margin is not positive
    needed_clusters: int | None  # the same in clusters (of this run's mean size)

    @property
    def underpowered(self) -> bool:
        return self.drop > self.margin


def multiplier(confidence: float, power: float = POWER, n_clusters: int | None = None) -> float:
    """k in MDE = k * SE: z_c + z_power, or with G resampled clusters
    sqrt(G/(G-1)) * (t_G-1(c) + z_power), matching the expanded bound the gate then reads
    (`metrics.expanded_level`): the gate fails when delta + sqrt(G/(G-1)) t_G-1(c) SE < 0,
    and delta varies with sd sqrt(G/(G-1)) SE, which the bootstrap SE understates."""
    if n_clusters is not None and n_clusters < 2:
        return math.inf
    critical = _z(metrics.expanded_level(confidence, n_clusters))
    expansion = math.sqrt(n_clusters / (n_clusters - 1)) if n_clusters else 1.0
    return critical + expansion * _z(power)


def minimum_detectable_drop(
    standard_error: float,
    *,
    confidence: float,
    power: float = POWER,
    n_counted: int | None = None,
    n_clusters: int | None = None,
) -> float:
    """MDE = k * SE, never below the drop that its own flips could show.

    k = z_c + z_power (see `multiplier` for clusters), z_c the one-sided quantile of the gate's
    confidence, SE the bootstrap standard error of the paired delta (of clusters when the
    resamples drew clusters). A test that calls a drop when the one-sided c upper bound of the
    delta lies below 0 then detects a true drop of MDE with probability `power`; the
    regression gate, which calls a drop only beyond its margin, detects margin + MDE with that
    probability. So MDE <= margin means the gate can see drops of the size it guards against;
    MDE > margin means it passes partly because it cannot see.

    Assumptions: the delta is roughly normal, and its SE is the same under the alternative as
    in this run. Both are slightly optimistic for a run with no change: a real drop adds
    flips, and with them variance, and a run with more flips also gets a wider bound. In
    simulation the gate caught the MDE reported by runs with no change in 74-77% of runs
    rather than 80% (4000 runs each, independent and clustered; benchmarks/
    bench_stats_simulation.py).

    The floor: a drop D of a share of n counted examples needs at least D*n examples to flip,
    whose variance alone is D(1-D)/n, so D >= k * sqrt(D(1-D)/n), i.e. D >= k^2 / (n + k^2).
    Without it two identical runs (a cached run against its own baseline) would report an
    MDE of 0 whatever their size. `n_counted` is the number of examples the metric is a share
    of (all examples for accuracy and macro-F1, the label's gold support for a per-label
    metric); it is exact for accuracy, approximate for F1.
    """
    k = multiplier(confidence, power, n_clusters)
    if math.isinf(k):
        return math.inf
    floor = k * k / (n_counted + k * k) if n_counted else 0.0
    return max(k * standard_error, floor)


def units_needed(
    standard_error: float,
    *,
    margin: float,
    confidence: float,
    power: float = POWER,
    n_units: int,
    n_counted: int | None = None,
    clustered: bool = False,
) -> int | None:
    """Units (examples, or clusters) at which the MDE would equal the margin; None if never.

    The SE shrinks as 1/sqrt(units), where units are the examples or, with clusters, the
    clusters (more clusters of the same mean size: adding examples to the same clusters helps
    less), so k * SE <= margin needs n_units * (k * SE / margin)^2 units; with clusters k
    itself shrinks as clusters are added, so the count is iterated to a fixed point. The floor
    of `minimum_detectable_drop` needs n_counted >= k^2 (1 - margin) / margin, scaled to units
    by n_units / n_counted. A margin of 0 or less is never reached: None. Below n_units when
    the run already has more than it needs.
    """
    if margin <= 0:
        return None
    units = n_units
    for _ in range(20):
        k = multiplier(confidence, power, max(units, 2) if clustered else None)
        by_noise = n_units * (k * standard_error / margin) ** 2
        by_floor = k * k * (1 - margin) / margin * n_units / n_counted if n_counted else 0.0
        needed = max(2 if clustered else 1, math.ceil(max(by_noise, by_floor)))
        if needed == units:
            break
        units = needed
    return units


def detectable_drop(
    deltas: Sequence[float] | Any,
    *,
    margin: float,
    confidence: float,
    power: float = POWER,
    n_examples: int,
    n_clusters: int | None = None,
    n_counted: int | None = None,
) -> DetectableDrop:
    """The `DetectableDrop` from the paired resampled deltas of a regression gate.

    `n_clusters`: the clusters each resample drew (None when examples were drawn).
    `n_counted` defaults to `n_examples` (see `minimum_detectable_drop`). With clusters the
    examples needed are the clusters needed times this run's mean cluster size.
    """
    import numpy as np

    values = np.asarray(deltas, dtype=float)
    se = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    counted = n_examples if n_counted is None else n_counted
    units = n_clusters if n_clusters is not None else n_examples
    needed = units_needed(
        se,
        margin=margin,
        confidence=confidence,
        power=power,
        n_units=units,
        n_counted=counted,
        clustered=n_clusters is not None,
    )
    drop = minimum_detectable_drop(
        se, confidence=confidence, power=power, n_counted=counted, n_clusters=n_clusters
    )
    return DetectableDrop(
        drop=drop,
        margin=margin,
        confidence=confidence,
        power=power,
        standard_error=se,
        n_examples=n_examples,
        n_clusters=n_clusters,
        needed_examples=(
            None if needed is None else math.ceil(needed * n_examples / max(units, 1))
        ),
        needed_clusters=needed if n_clusters is not None else None,
    )


# --- the regression gate ------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionTest:
    """Everything a regression gate reports: the verdict and how much it could have seen."""

    metric: str
    delta: float  # metric(new) - metric(baseline)
    upper: float  # one-sided `confidence` upper bound of the delta
    margin: float
    confidence: float
    p_value: float  # one-sided: small is evidence of a drop beyond the margin
    detectable: DetectableDrop
    mcnemar: McNemar
    clustered: bool

    @property
    def failed(self) -> bool:
        """The gate's verdict: the drop exceeds the margin with the gate's confidence."""
        return self.upper < -self.margin

    @property
    def underpowered(self) -> bool:
        return self.detectable.underpowered


def counted_examples(name: str, p: Predictions) -> int:
    """How many examples a metric is a share of: the gold support for a per-label metric."""
    _, label = metrics.lookup(name, p.labels)
    return len(p.gold) if label is None else sum(1 for g in p.gold if g == label)


def regression_test(
    name: str,
    new: Predictions,
    old: Predictions,
    *,
    margin: float,
    confidence: float = 0.95,
    power: float = POWER,
    clusters: ClusterIds | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> RegressionTest:
    """The regression gate's statistics from one set of paired (clustered) resamples.

    The upper bound is the `confidence` quantile of the resampled deltas (the expanded one when
    clusters are resampled, see `metrics.expanded_level`): the same number
    `metrics.paired_bootstrap_delta` gives as the upper end of a two-sided interval at 2c - 1,
    which is how `gates.evaluate_regression` gets it.
    """
    import numpy as np

    n = len(new.gold)
    if n == 0:
        raise ValueError("a regression test needs examples; both runs are empty")
    resamples = metrics.draw_resamples(n, clusters=clusters, n_resamples=n_resamples, seed=seed)
    delta, deltas = metrics.paired_bootstrap_deltas(name, new, old, resamples)
    drawn = resamples.clusters_drawn
    return RegressionTest(
        metric=name,
        delta=delta,
        upper=float(np.quantile(deltas, metrics.expanded_level(confidence, drawn))),
        margin=margin,
        confidence=confidence,
        p_value=bootstrap_p_value(deltas, -margin, alternative="below", n_clusters=drawn),
        detectable=detectable_drop(
            deltas,
            margin=margin,
            confidence=confidence,
            power=power,
            n_examples=n,
            n_clusters=drawn,
            n_counted=counted_examples(name, new),
        ),
        mcnemar=mcnemar(new, old),
        clustered=clusters is not None,
    )


__all__ = [
    "POWER",
    "RATES",
    "WILSON_BELOW",
    "BoundTest",
    "DetectableDrop",
    "HolmVerdict",
    "Interval",
    "McNemar",
    "RegressionTest",
    "bootstrap_p_value",
    "bound_test",
    "counted_examples",
    "design_effect",
    "detectable_drop",
    "holm",
    "mcnemar",
    "mcnemar_exact",
    "metric_interval",
    "minimum_detectable_drop",
    "multiplier",
    "rate_examples",
    "rate_flags",
    "rate_interval",
    "regression_test",
    "units_needed",
    "wilson_interval",
]
