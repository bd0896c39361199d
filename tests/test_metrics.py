"""Metrics: every registered metric against scikit-learn and against numbers worked out by
hand; the bootstrap intervals behave like intervals."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from helpers import PREDICTION_LABELS as LABELS
from helpers import random_preds
from sklearn import metrics as skm

from pytest_pld import metrics
from pytest_pld.labels import INVALID
from pytest_pld.metrics import Predictions


def preds(
    gold: str,
    pred: str,
    *,
    latency_ms: tuple[float, ...] = (),
    prompt_tokens: tuple[int, ...] = (),
    baseline_latency_ms: tuple[float, ...] = (),
) -> Predictions:
    """'aab', 'abx' -> Predictions; x in `pred` stands for an invalid answer."""
    return Predictions(
        labels=LABELS,
        gold=tuple(gold),
        pred=tuple(INVALID if p == "x" else p for p in pred),
        latency_ms=latency_ms,
        prompt_tokens=prompt_tokens,
        baseline_latency_ms=baseline_latency_ms,
    )


# --- hand-computed cases ------------------------------------------------------------------------

HAND = [
    # gold, pred, metric, expected
    pytest.param("aabb", "abbb", "accuracy", 0.75, id="accuracy-three-of-four"),
    # a: P 1, R 1/2, F 2/3; b: P 2/3, R 1, F 4/5; c: no gold, no pred -> 0
    pytest.param(
        "aabb",
        "abbb",
        "macro_f1",
        (2 / 3 + 4 / 5 + 0) / 3,
        id="macro_f1-counts-an-absent-label-as-zero",
    ),
    pytest.param("abc", "abc", "macro_f1", 1.0, id="macro_f1-perfect"),
    pytest.param("abc", "xxx", "macro_f1", 0.0, id="macro_f1-all-invalid"),
    pytest.param("abc", "xbc", "accuracy", 2 / 3, id="accuracy-invalid-is-wrong"),
    pytest.param("abcc", "xbxc", "invalid_rate", 0.5, id="invalid_rate-two-of-four"),
    pytest.param("abc", "abc", "invalid_rate", 0.0, id="invalid_rate-none"),
    pytest.param("aabb", "abbb", "precision[b]", 2 / 3, id="precision-of-one-label"),
    pytest.param("aabb", "abbb", "recall[a]", 0.5, id="recall-of-one-label"),
    pytest.param("aabb", "abbb", "f1[a]", 2 / 3, id="f1-of-one-label"),
    pytest.param("aabb", "abbb", "f1[c]", 0.0, id="f1-of-an-unused-label-is-zero"),
    pytest.param("ab", "xx", "precision[a]", 0.0, id="precision-without-predictions-is-zero"),
]


@pytest.mark.parametrize(("gold", "pred", "name", "expected"), HAND)
def test_metric_matches_the_hand_computed_value(
    gold: str, pred: str, name: str, expected: float
) -> None:
    assert metrics.compute(name, preds(gold, pred)) == pytest.approx(expected)


def test_latency_percentiles_match_hand_computed_values() -> None:
    p = preds("abca", "abca", latency_ms=(10.0, 20.0, 30.0, 40.0))
    assert metrics.compute("latency_p50_ms", p) == pytest.approx(25.0)
    # linear interpolation: rank 0.95 * 3 = 2.85 -> 30 + 0.85 * 10
    assert metrics.compute("latency_p95_ms", p) == pytest.approx(38.5)


def test_latency_overhead_is_the_ratio_of_summed_latencies() -> None:
    p = preds("ab", "ab", latency_ms=(30.0, 30.0), baseline_latency_ms=(20.0, 20.0))
    assert metrics.compute("latency_overhead", p) == pytest.approx(1.5)


def test_latency_overhead_is_undefined_without_a_rule_free_run() -> None:
    assert math.isnan(metrics.compute("latency_overhead", preds("ab", "ab", latency_ms=(1.0, 2.0))))


def test_prompt_tokens_is_the_largest_prompt() -> None:
    assert (
        metrics.compute("prompt_tokens", preds("abc", "abc", prompt_tokens=(120, 480, 300)))
        == 480.0
    )


def test_metrics_of_an_empty_run_are_zero_not_an_exception() -> None:
    empty = Predictions(LABELS, (), ())
    for name in ("accuracy", "macro_f1", "invalid_rate", "prompt_tokens"):
        assert metrics.compute(name, empty) == 0.0


# --- against scikit-learn -----------------------------------------------------------------------

SEEDS = [pytest.param(seed, id=f"seed{seed}") for seed in (1, 2, 3)]


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_macro_f1_match_scikit_learn(seed: int) -> None:
    p = random_preds(seed)
    assert metrics.compute("accuracy", p) == pytest.approx(skm.accuracy_score(p.gold, p.pred))
    assert metrics.compute("macro_f1", p) == pytest.approx(
        skm.f1_score(p.gold, p.pred, labels=list(LABELS), average="macro", zero_division=0)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("label", LABELS)
def test_per_label_scores_match_scikit_learn(seed: int, label: str) -> None:
    p = random_preds(seed)
    prec, rec, f1, _ = skm.precision_recall_fscore_support(
        p.gold, p.pred, labels=[label], zero_division=0
    )
    assert metrics.compute(f"precision[{label}]", p) == pytest.approx(prec[0])
    assert metrics.compute(f"recall[{label}]", p) == pytest.approx(rec[0])
    assert metrics.compute(f"f1[{label}]", p) == pytest.approx(f1[0])
    assert metrics.per_class(p)[label]["f1"] == pytest.approx(f1[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_latency_percentiles_match_numpy(seed: int) -> None:
    rng = random.Random(seed)
    lat = tuple(rng.uniform(5, 500) for _ in range(40))
    p = Predictions(LABELS, ("a",) * 40, ("a",) * 40, latency_ms=lat)
    assert metrics.compute("latency_p50_ms", p) == pytest.approx(np.percentile(lat, 50))
    assert metrics.compute("latency_p95_ms", p) == pytest.approx(np.percentile(lat, 95))


def test_confusion_matrix_matches_scikit_learn_with_an_invalid_column() -> None:
    p = random_preds(7)
    cols = [*LABELS, INVALID]
    expected = skm.confusion_matrix(p.gold, p.pred, labels=cols)
    table = metrics.confusion(p)
    assert list(table) == list(LABELS)
    for i, gold in enumerate(LABELS):
        assert [table[gold][c] for c in cols] == expected[i].tolist()


def test_worst_confusions_are_the_largest_off_diagonal_cells_first() -> None:
    p = preds("aaaabbc", "bbbxaac")
    assert metrics.worst_confusions(p, 2) == [("a", "b", 3), ("b", "a", 2)]


# --- the registry -------------------------------------------------------------------------------

DIRECTIONS = [
    ("accuracy", True),
    ("macro_f1", True),
    ("invalid_rate", False),
    ("latency_p50_ms", False),
    ("latency_p95_ms", False),
    ("latency_overhead", False),
    ("prompt_tokens", False),
    ("f1[a]", True),
    ("precision[a]", True),
    ("recall[a]", True),
]


@pytest.mark.parametrize(("name", "higher_is_better"), DIRECTIONS, ids=[d[0] for d in DIRECTIONS])
def test_every_metric_is_registered_with_its_direction(name: str, higher_is_better: bool) -> None:
    entry, _ = metrics.lookup(name, LABELS)
    assert entry.higher_is_better is higher_is_better


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param("f1_macro", "unknown metric", id="unknown-name"),
        pytest.param("f1[z]", "not one of the suite's labels", id="unknown-label"),
        pytest.param("bleu[a]", "unknown metric", id="unknown-per-label-kind"),
    ],
)
def test_lookup_rejects_unknown_names_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(KeyError, match=reason):
        metrics.lookup(name, LABELS)


# --- bootstrap ----------------------------------------------------------------------------------


def sample(n: int, right: float, seed: int = 0) -> Predictions:
    """n examples of which a share `right` are predicted correctly, shuffled."""
    rng = random.Random(seed)
    gold = [LABELS[i % 3] for i in range(n)]
    k = round(n * right)
    pred = [g if i < k else LABELS[(LABELS.index(g) + 1) % 3] for i, g in enumerate(gold)]
    order = list(range(n))
    rng.shuffle(order)
    return Predictions(LABELS, tuple(gold[i] for i in order), tuple(pred[i] for i in order))


@pytest.mark.parametrize("name", ["accuracy", "macro_f1", "f1[a]", "recall[b]"])
def test_bootstrap_interval_contains_the_point_estimate(name: str) -> None:
    p = sample(60, 0.7)
    low, high = metrics.bootstrap_interval(name, p)
    assert low <= metrics.compute(name, p) <= high
    assert low < high


@pytest.mark.parametrize("name", ["accuracy", "macro_f1"])
def test_bootstrap_interval_narrows_as_examples_grow(name: str) -> None:
    small, large = sample(30, 0.7), sample(600, 0.7)
    width = [
        hi - lo
        for lo, hi in (
            metrics.bootstrap_interval(name, small),
            metrics.bootstrap_interval(name, large),
        )
    ]
    assert width[1] < width[0] / 2  # ~1/sqrt(20) in theory


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    p = sample(40, 0.6)
    assert metrics.bootstrap_interval("macro_f1", p) == metrics.bootstrap_interval("macro_f1", p)


def test_a_metric_that_cannot_be_resampled_has_a_degenerate_interval() -> None:
    p = preds("abc", "abc", prompt_tokens=(5, 9, 7))
    assert metrics.bootstrap_interval("prompt_tokens", p) == (9.0, 9.0)


@pytest.mark.parametrize("name", ["accuracy", "macro_f1", "f1[b]", "precision[c]", "recall[a]"])
def test_the_vectorised_bootstrap_equals_scikit_learn_on_every_resample(name: str) -> None:
    p = random_preds(11)
    index = metrics._resample_index(len(p.gold), 200, seed=3)
    fast = metrics._resampled(name, p, index)
    slow = [metrics.compute(name, p.subset(row.tolist())) for row in index]
    assert fast is not None
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_paired_delta_is_positive_when_the_new_run_is_better() -> None:
    old, new = sample(200, 0.5), sample(200, 0.5)
    # same examples, the new run fixes 60 of the mistakes
    fixed = list(new.pred)
    wrong = [i for i, (g, q) in enumerate(zip(new.gold, new.pred)) if g != q][:60]
    for i in wrong:
        fixed[i] = new.gold[i]
    better = Predictions(LABELS, new.gold, tuple(fixed))
    delta, low, high = metrics.paired_bootstrap_delta("accuracy", better, old)
    assert delta == pytest.approx(0.3)
    assert 0 < low <= delta <= high


def test_paired_delta_is_negative_when_the_new_run_is_worse() -> None:
    good = sample(200, 0.9)
    bad = Predictions(
        LABELS,
        good.gold,
        tuple(
            q if i % 4 else LABELS[(LABELS.index(g) + 1) % 3]
            for i, (g, q) in enumerate(zip(good.gold, good.pred))
        ),
    )
    delta, _low, high = metrics.paired_bootstrap_delta("macro_f1", bad, good)
    assert delta < 0 and high < 0


def test_paired_delta_of_identical_runs_is_exactly_zero() -> None:
    p = random_preds(5)
    assert metrics.paired_bootstrap_delta("macro_f1", p, p) == (0.0, 0.0, 0.0)


def test_paired_delta_refuses_runs_over_different_examples() -> None:
    with pytest.raises(ValueError, match="same examples"):
        metrics.paired_bootstrap_delta("accuracy", preds("ab", "ab"), preds("ba", "ab"))
