"""Cluster-aware resampling, detectable drops, Holm, Wilson and McNemar against hand-computed
numbers, scipy and brute force. Their behaviour on data with a known truth is in
tests/test_stats_simulation.py."""

from __future__ import annotations

import itertools
import math
import random
import time

import numpy as np
import pytest
from helpers import PREDICTION_LABELS as LABELS
from helpers import random_preds
from scipy.stats import binomtest

from pytest_pld import metrics, stats
from pytest_pld.labels import INVALID
from pytest_pld.metrics import Predictions

Z95, Z80 = 1.6448536269514722, 0.8416212335729143  # one-sided 95% and 80% normal quantiles


def clusters_of(n: int, size: int) -> list[str]:
    """Cluster ids for n examples in consecutive clusters of `size` (the last may be smaller)."""
    return [f"doc{i // size}" for i in range(n)]


def alike_within_clusters(n_clusters: int, size: int, seed: int = 0) -> Predictions:
    """Every cluster entirely right or entirely wrong: the extreme of clustered correctness."""
    rng = random.Random(seed)
    gold, pred = [], []
    for _ in range(n_clusters):
        right = rng.random() < 0.7
        for _ in range(size):
            g = rng.choice(LABELS)
            gold.append(g)
            pred.append(g if right else LABELS[(LABELS.index(g) + 1) % 3])
    return Predictions(LABELS, tuple(gold), tuple(pred))


# --- cluster resampling -------------------------------------------------------------------------


def test_a_clustered_resample_draws_whole_clusters() -> None:
    cluster_ids = clusters_of(50, 7)  # 8 clusters, the last of one example
    resamples = metrics.draw_resamples(50, clusters=cluster_ids, n_resamples=200, seed=1)
    assert resamples.n_clusters == 8
    assert (resamples.counts.sum(axis=1) == 8).all()  # as many clusters as there are
    counts = resamples.example_counts()
    for start in range(0, 50, 7):
        block = counts[:, start : start + 7]
        assert (block == block[:, :1]).all()  # a cluster's examples come together


def test_resampling_one_example_per_cluster_draws_what_resampling_examples_draws() -> None:
    p = random_preds(3, n=80)
    singletons = [f"id{i}" for i in range(80)]
    by_cluster = metrics.draw_resamples(80, clusters=singletons)
    np.testing.assert_array_equal(by_cluster.counts, metrics.draw_resamples(80).counts)
    # the bounds are read further out, for 80 clusters: a little wider, never narrower
    low, high = metrics.bootstrap_interval("macro_f1", p, clusters=singletons)
    naive_low, naive_high = metrics.bootstrap_interval("macro_f1", p)
    assert low <= naive_low < naive_high <= high
    assert (high - low) < 1.05 * (naive_high - naive_low)


@pytest.mark.parametrize(
    ("level", "n_clusters", "expected"),
    [
        # sqrt(32/31) * t_31(0.975) = 1.01600 * 2.039513 = 2.072147 -> Phi = 0.980873
        pytest.param(0.975, 32, 0.980873, id="32-clusters-upper"),
        pytest.param(0.025, 32, 1 - 0.980873, id="32-clusters-lower"),
        pytest.param(0.95, None, 0.95, id="examples-unchanged"),
        pytest.param(0.95, 1, 1.0, id="one-cluster-widest"),
    ],
)
def test_expanded_levels_match_hand_computed_values(
    level: float, n_clusters: int | None, expected: float
) -> None:
    assert metrics.expanded_level(level, n_clusters) == pytest.approx(expected, abs=2e-6)


def test_expanded_levels_approach_the_plain_level_as_clusters_grow() -> None:
    gaps = [metrics.expanded_level(0.95, g) - 0.95 for g in (10, 30, 100, 1000)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 5e-4


def test_unclustered_draws_are_the_index_draws_made_before_clusters_existed() -> None:
    index = metrics._resample_index(30, 50, seed=4)
    counts = metrics.draw_resamples(30, n_resamples=50, seed=4).counts
    for row, expected in zip(index, counts):
        assert np.bincount(row, minlength=30).tolist() == expected.astype(int).tolist()


def test_cluster_ids_may_be_any_hashable_and_are_numbered_by_first_appearance() -> None:
    codes = metrics.cluster_codes(["x", 7, "x", (1, 2), 7], 5)
    assert codes.tolist() == [0, 1, 0, 2, 1]


def test_cluster_ids_must_be_one_per_example() -> None:
    with pytest.raises(ValueError, match="3 cluster ids for 4 examples"):
        metrics.bootstrap_interval("accuracy", random_preds(1, n=4), clusters=["a", "b", "c"])


def test_the_clustered_bootstrap_is_deterministic_for_a_seed() -> None:
    p, ids = random_preds(2, n=90), clusters_of(90, 9)
    first = metrics.bootstrap_interval("macro_f1", p, clusters=ids, seed=5)
    assert metrics.bootstrap_interval("macro_f1", p, clusters=ids, seed=5) == first
    assert metrics.bootstrap_interval("macro_f1", p, clusters=ids, seed=6) != first


@pytest.mark.parametrize(
    "name",
    ["accuracy", "macro_f1", "invalid_rate", "f1[b]", "precision[c]", "recall[a]"],
)
def test_the_vectorised_metric_equals_scikit_learn_on_every_clustered_resample(name: str) -> None:
    p = random_preds(11, n=70)
    resamples = metrics.draw_resamples(70, clusters=clusters_of(70, 6), n_resamples=40, seed=2)
    fast = metrics.resampled_values(name, p, resamples)
    every = np.arange(70)
    slow = [
        metrics.compute(name, p.subset(np.repeat(every, row.astype(int)).tolist()))
        for row in resamples.example_counts()
    ]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_a_metric_without_a_vectorised_form_is_computed_on_each_clustered_resample() -> None:
    latency = tuple(float(i) for i in range(12))
    p = Predictions(LABELS, ("a",) * 12, ("a",) * 12, latency_ms=latency)
    resamples = metrics.draw_resamples(12, clusters=clusters_of(12, 4), n_resamples=20, seed=0)
    values = metrics.resampled_values("latency_p50_ms", p, resamples)
    for value, row in zip(values, resamples.example_counts()):
        assert value == pytest.approx(np.percentile(np.repeat(latency, row.astype(int)), 50))


@pytest.mark.parametrize("name", ["accuracy", "macro_f1", "invalid_rate", "f1[a]", "recall[c]"])
def test_the_point_value_equals_compute(name: str) -> None:
    for seed in (1, 2, 3):
        p = random_preds(seed)
        assert metrics.point_value(name, p) == pytest.approx(metrics.compute(name, p), abs=1e-12)


def test_clusters_of_alike_examples_widen_the_interval_about_sqrt_size_times() -> None:
    p = alike_within_clusters(60, 16)
    naive = metrics.bootstrap_interval("accuracy", p)
    clustered = metrics.bootstrap_interval("accuracy", p, clusters=clusters_of(len(p.gold), 16))
    ratio = (clustered[1] - clustered[0]) / (naive[1] - naive[0])
    assert 3.0 < ratio < 5.0  # sqrt(16) = 4: each cluster is worth one example


def test_the_paired_clustered_bootstrap_draws_the_same_clusters_for_both_runs() -> None:
    old, ids = random_preds(4, n=60), clusters_of(60, 5)
    assert metrics.paired_bootstrap_delta("macro_f1", old, old, clusters=ids) == (0.0, 0.0, 0.0)
    new = random_preds(5, n=60)
    new = Predictions(LABELS, old.gold, new.pred)
    resamples = metrics.draw_resamples(60, clusters=ids, n_resamples=300, seed=0)
    delta, deltas = metrics.paired_bootstrap_deltas("accuracy", new, old, resamples)
    expected = metrics.resampled_values("accuracy", new, resamples) - metrics.resampled_values(
        "accuracy", old, resamples
    )
    np.testing.assert_array_equal(deltas, expected)
    assert delta == pytest.approx(
        metrics.compute("accuracy", new) - metrics.compute("accuracy", old)
    )
    low, high = metrics.paired_bootstrap_delta("accuracy", new, old, clusters=ids)[1:]
    assert low <= delta <= high


def test_1000_resamples_of_1411_examples_take_well_under_a_second() -> None:
    rng = random.Random(0)
    gold = tuple(rng.choice(LABELS) for _ in range(1411))
    new = Predictions(LABELS, gold, tuple(g if rng.random() < 0.7 else "a" for g in gold))
    old = Predictions(LABELS, gold, tuple(g if rng.random() < 0.7 else "b" for g in gold))
    ids = clusters_of(1411, 17)
    metrics.bootstrap_interval("accuracy", new)  # imports and first-call costs
    for name, clusters in itertools.product(("accuracy", "macro_f1"), (None, ids)):
        started = time.process_time()
        metrics.paired_bootstrap_delta(name, new, old, clusters=clusters, n_resamples=1000)
        spent = time.process_time() - started
        assert spent < 0.5, f"{name}, clusters={clusters is not None}: {spent:.2f} s CPU"


# --- McNemar ------------------------------------------------------------------------------------


def test_exact_mcnemar_matches_a_hand_computed_case() -> None:
    # 1 pair got worse, 6 got better: P(X <= 1 | Bin(7, 1/2)) = (1 + 7) / 128, two-sided twice
    new = [False] + [True] * 6 + [True] * 5 + [False] * 3  # 5 right and 3 wrong in both runs
    old = [True] + [False] * 6 + [True] * 5 + [False] * 3
    test = stats.mcnemar_exact(new, old)
    assert (test.worse, test.better, test.discordant) == (1, 6, 7)
    assert test.p_value == pytest.approx(16 / 128)


@pytest.mark.parametrize(
    ("worse", "better", "expected"),
    [
        pytest.param(0, 0, 1.0, id="no-discordant-pairs"),
        pytest.param(4, 4, 1.0, id="balanced"),
        pytest.param(5, 0, 2 / 32, id="five-one-way"),
    ],
)
def test_exact_mcnemar_edge_cases(worse: int, better: int, expected: float) -> None:
    new = [False] * worse + [True] * better
    old = [True] * worse + [False] * better
    assert stats.mcnemar_exact(new, old).p_value == pytest.approx(expected)


def test_exact_mcnemar_equals_scipy_binomtest_for_every_split_of_up_to_40_pairs() -> None:
    for discordant in range(1, 41):
        for worse in range(discordant + 1):
            better = discordant - worse
            test = stats.mcnemar_exact(
                [False] * worse + [True] * better, [True] * worse + [False] * better
            )
            expected = binomtest(worse, discordant, 0.5).pvalue
            assert test.p_value == pytest.approx(expected, rel=1e-12), (worse, better)


def test_mcnemar_pairs_two_runs_by_position_and_counts_invalid_answers_as_wrong() -> None:
    old = Predictions(LABELS, tuple("abca"), ("a", "b", "c", "b"))
    new = Predictions(LABELS, tuple("abca"), ("a", INVALID, "c", "a"))
    test = stats.mcnemar(new, old)
    assert (test.worse, test.better) == (1, 1)
    with pytest.raises(ValueError, match="same examples"):
        stats.mcnemar(new, Predictions(LABELS, tuple("bbca"), old.pred))


# --- Wilson and the design effect ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n"), [(0, 10), (3, 10), (10, 10), (41, 50), (120, 290), (1, 1)]
)
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_wilson_interval_equals_scipy(successes: int, n: int, confidence: float) -> None:
    expected = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = stats.wilson_interval(successes, n, confidence=confidence)
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_interval_of_no_successes_matches_the_hand_computed_upper_end() -> None:
    z2 = 1.959963984540054**2
    assert stats.wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))


def test_the_design_effect_of_clusters_that_agree_within_makes_each_cluster_one_example() -> None:
    # G clusters of m identical flags: robust variance p(1-p)/(G-1), so n_eff = G - 1
    flags = [k % 3 == 0 for k in range(40) for _ in range(8)]
    ids = [k for k in range(40) for _ in range(8)]
    assert stats.design_effect(flags, ids) == pytest.approx(320 / 39)
    assert stats.rate_interval(flags, clusters=ids).n_effective == pytest.approx(39)


def test_independent_flags_have_no_design_effect_to_speak_of() -> None:
    rng = random.Random(2)
    flags = [rng.random() < 0.7 for _ in range(400)]
    ids = [k // 4 for k in range(400)]
    assert stats.design_effect(flags, ids) < 1.4


def test_a_rate_of_zero_in_clusters_counts_each_cluster_as_one_example() -> None:
    interval = stats.rate_interval([False] * 34, clusters=clusters_of(34, 17))
    assert interval.n_effective == 2
    assert interval.high == pytest.approx(stats.wilson_interval(0, 2)[1])


@pytest.mark.parametrize(
    ("n", "clustered", "method"),
    [
        pytest.param(120, False, "wilson", id="small-unclustered"),
        pytest.param(120, True, "wilson, design effect", id="small-clustered"),
        pytest.param(300, False, "bootstrap", id="large-unclustered"),
        pytest.param(300, True, "cluster bootstrap", id="large-clustered"),
    ],
)
def test_metric_interval_uses_wilson_for_rates_below_300_examples(
    n: int, clustered: bool, method: str
) -> None:
    p = random_preds(6, n=n)
    ids = clusters_of(n, 6) if clustered else None
    interval = stats.metric_interval("accuracy", p, clusters=ids)
    assert interval.method == method
    assert interval.low <= metrics.compute("accuracy", p) <= interval.high
    # macro-F1 is not a rate: always the bootstrap
    assert "bootstrap" in stats.metric_interval("macro_f1", p, clusters=ids).method


def test_rate_flags_refuse_a_metric_that_is_not_a_rate() -> None:
    with pytest.raises(KeyError, match="not a rate metric"):
        stats.rate_flags("macro_f1", random_preds(1))


# --- p-values and Holm --------------------------------------------------------------------------


def test_bootstrap_p_values_count_the_resamples_on_the_other_side_of_the_bound() -> None:
    values = np.arange(-10, 10) / 100  # 20 values, 5 of them >= 0.05
    assert stats.bootstrap_p_value(values, 0.05, alternative="below") == pytest.approx(6 / 21)
    assert stats.bootstrap_p_value(values, -0.08, alternative="above") == pytest.approx(4 / 21)
    with pytest.raises(ValueError, match="alternative"):
        stats.bootstrap_p_value(values, 0.0, alternative="sideways")  # type: ignore[arg-type]


def test_holm_matches_a_hand_computed_family() -> None:
    # sorted: a .01 * 3 = .03; c .03 * 2 = .06; b .04 * 1 = .04 -> kept monotone at .06
    verdicts = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03}, alpha=0.05)
    assert list(verdicts) == ["a", "b", "c"]
    assert [v.adjusted_p for v in verdicts.values()] == pytest.approx([0.03, 0.06, 0.06])
    assert [v.rejected for v in verdicts.values()] == [True, True, True]
    assert [v.rejected_adjusted for v in verdicts.values()] == [True, False, False]


def closed_bonferroni(p_values: dict[str, float], alpha: float) -> dict[str, bool]:
    """Holm by its definition: reject H_i when every intersection containing i is rejected by
    Bonferroni (min p over the subset <= alpha / its size)."""
    names = list(p_values)
    out = {}
    for name in names:
        others = [x for x in names if x != name]
        out[name] = all(
            min(p_values[x] for x in (name, *subset)) <= alpha / (len(subset) + 1)
            for size in range(len(others) + 1)
            for subset in itertools.combinations(others, size)
        )
    return out


@pytest.mark.parametrize("seed", range(5), ids=lambda s: f"seed{s}")
def test_holm_equals_closed_testing_with_bonferroni(seed: int) -> None:
    rng = random.Random(seed)
    p_values = {f"f1[{k}]": rng.choice([rng.random() * 0.1, rng.random()]) for k in range(6)}
    verdicts = stats.holm(p_values, alpha=0.05)
    assert {k: v.rejected_adjusted for k, v in verdicts.items()} == closed_bonferroni(
        p_values, 0.05
    )
    assert all(v.p_value <= v.adjusted_p <= 1 for v in verdicts.values())


def test_bound_test_gives_evidence_for_the_side_the_metric_is_on() -> None:
    p = random_preds(8, n=200, invalid=0.0)  # accuracy about 0.73
    low = stats.bound_test("accuracy", p, op=">=", bound=0.6)
    assert low.p_violated > 0.5 and low.p_met < 0.01
    high = stats.bound_test("accuracy", p, op=">=", bound=0.9)
    assert high.p_violated < 0.01 and high.p_met > 0.5
    assert stats.bound_test("accuracy", p, op="<=", bound=0.9).p_met < 0.01


# --- the regression test and its detectable drop ------------------------------------------------


def test_the_minimum_detectable_drop_is_the_z_sum_times_the_standard_error() -> None:
    drop = stats.minimum_detectable_drop(0.02, confidence=0.95, power=0.8, n_counted=100_000)
    assert drop == pytest.approx((Z95 + Z80) * 0.02)


def test_identical_runs_of_50_examples_still_cannot_see_a_drop_of_005() -> None:
    """A cached run against its own baseline has a bootstrap SE of 0; the floor says what 50
    examples could show: k^2 / (50 + k^2) with k = z_.95 + z_.8."""
    p = random_preds(9, n=50, invalid=0.0)
    test = stats.regression_test("accuracy", p, p, margin=0.05)
    k2 = (Z95 + Z80) ** 2
    assert test.detectable.standard_error == 0.0
    assert test.detectable.drop == pytest.approx(k2 / (50 + k2))
    assert test.underpowered and not test.failed
    assert test.detectable.needed_examples == math.ceil(k2 * 0.95 / 0.05)  # 118


def test_examples_needed_scale_with_the_square_of_the_standard_error() -> None:
    # k * 0.04 / 0.05 = 1.989 -> 50 * 1.989^2 = 197.8 examples
    needed = stats.units_needed(0.04, margin=0.05, confidence=0.95, n_units=50, n_counted=50)
    assert needed == math.ceil(50 * ((Z95 + Z80) * 0.04 / 0.05) ** 2)
    assert stats.units_needed(0.04, margin=0.0, confidence=0.95, n_units=50) is None


def test_with_clusters_the_clusters_needed_are_the_fewest_that_reach_the_margin() -> None:
    deltas = np.random.default_rng(0).normal(0, 0.03, 1000)
    drop = stats.detectable_drop(
        deltas, margin=0.05, confidence=0.95, n_examples=340, n_clusters=20
    )
    assert drop.underpowered
    needed, se = drop.needed_clusters, drop.standard_error
    assert needed is not None and drop.needed_examples == math.ceil(needed * 17)

    def mde_at(clusters: int) -> float:  # the SE shrinks as 1/sqrt(clusters)
        k = stats.multiplier(0.95, n_clusters=clusters)
        return k * se * math.sqrt(20 / clusters)

    assert mde_at(needed) <= 0.05 < mde_at(needed - 1)


def test_clusters_raise_the_multiplier_above_the_normal_one() -> None:
    assert stats.multiplier(0.95) == pytest.approx(Z95 + Z80)
    few, many = stats.multiplier(0.95, n_clusters=20), stats.multiplier(0.95, n_clusters=2000)
    assert few > many > Z95 + Z80 and many == pytest.approx(Z95 + Z80, abs=2e-3)
    assert stats.minimum_detectable_drop(0.01, confidence=0.95, n_clusters=1) == math.inf


def test_a_per_label_metric_counts_only_the_label_support_for_the_floor() -> None:
    p = Predictions(LABELS, tuple("aaaaaaaaaa" + "b" * 40), tuple("aaaaaaaaaa" + "b" * 40))
    assert stats.counted_examples("f1[a]", p) == 10
    assert stats.counted_examples("macro_f1", p) == 50
    per_label = stats.regression_test("f1[a]", p, p, margin=0.05)
    overall = stats.regression_test("accuracy", p, p, margin=0.05)
    assert per_label.detectable.drop > overall.detectable.drop


@pytest.mark.parametrize("clustered", [False, True], ids=["examples", "clusters"])
def test_the_regression_test_upper_bound_is_the_one_the_gate_computes(clustered: bool) -> None:
    old = random_preds(12, n=120)
    new = Predictions(LABELS, old.gold, random_preds(13, n=120).pred)
    ids = clusters_of(120, 4) if clustered else None
    test = stats.regression_test("macro_f1", new, old, margin=0.02, clusters=ids)
    delta, _low, high = metrics.paired_bootstrap_delta(
        "macro_f1", new, old, confidence=0.9, clusters=ids
    )
    assert (test.delta, test.upper) == pytest.approx((delta, high))
    assert test.failed == (high < -0.02)
    assert test.mcnemar == stats.mcnemar(new, old)


@pytest.mark.parametrize("clustered", [False, True], ids=["examples", "clusters"])
@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
def test_the_p_value_and_the_gate_verdict_agree_but_at_the_boundary(
    seed: int, clustered: bool
) -> None:
    rng = random.Random(seed)
    old = random_preds(20 + seed, n=150, invalid=0.0)
    # the new run breaks a random share of the baseline's right answers
    broken = rng.uniform(0.0, 0.15)
    pred = tuple(
        LABELS[(LABELS.index(g) + 1) % 3] if q == g and rng.random() < broken else q
        for g, q in zip(old.gold, old.pred)
    )
    new = Predictions(LABELS, old.gold, pred)
    ids = clusters_of(150, 3) if clustered else None
    test = stats.regression_test("accuracy", new, old, margin=0.02, clusters=ids)
    one_resample = 1 / 1001
    if test.p_value <= 0.05:
        assert test.failed
    if test.failed:
        assert test.p_value <= 0.05 + 2 * one_resample


def test_the_regression_test_on_clusters_reports_clusters() -> None:
    p = alike_within_clusters(30, 10)
    right = next(k for k in range(30) if p.gold[10 * k] == p.pred[10 * k])
    pred = list(p.pred)
    pred[10 * right : 10 * right + 10] = [INVALID] * 10  # one right cluster goes wrong
    worse = Predictions(LABELS, p.gold, tuple(pred))
    ids = clusters_of(300, 10)
    clustered = stats.regression_test("accuracy", worse, p, margin=0.0, clusters=ids)
    naive = stats.regression_test("accuracy", worse, p, margin=0.0)
    assert clustered.clustered and clustered.detectable.n_clusters == 30
    assert naive.detectable.n_clusters is None
    # the drop sits in one cluster: clusters make the comparison noisier, as they should
    assert clustered.detectable.standard_error > naive.detectable.standard_error
