"""Gate verdicts a reviewer can trust: clusters from run records, Wilson intervals for rates on
few examples, the regression gate's detectable drop, power policy and McNemar test, and the Holm
family of per-class gates - through the gates, the summary table, JUnit and Markdown.

The records are synthetic (known predictions), so every number can be checked against `stats`
called directly; nothing here is evidence about a model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import documents, make_record, worsen
from scipy.stats import binomtest

from pytest_pld import metrics, stats
from pytest_pld.example_clusters import record_clusters
from pytest_pld.gates import (
    GateResult,
    evaluate_bound,
    evaluate_regression,
    family_of,
    paired,
    write_baseline,
)
from pytest_pld.record import RunRecord, load_record
from pytest_pld.report.gate_summary import (
    Row,
    gate_properties,
    markdown,
    row_from_report,
    terminal_lines,
)
from pytest_pld.suite import Bound, RegressionGate
from pytest_pld.verdicts import resolve_power

ROOT = Path(__file__).resolve().parents[1]
GATE = RegressionGate("accuracy", "baselines/s.json", margin=0.05, confidence=0.95)


def regression(new: RunRecord, old: RunRecord, tmp_path: Path, **kwargs: object) -> GateResult:
    path = write_baseline(old, tmp_path / "baselines" / "s.json")
    return evaluate_regression(
        kwargs.pop("gate", GATE),  # type: ignore[arg-type]
        new,
        path,
        create_command="pytest --pld-suite=s --pld-update-baseline",
        **kwargs,  # type: ignore[arg-type]
    )


# --- clusters on records ------------------------------------------------------------------------


def test_a_committed_baseline_without_cluster_ids_still_loads() -> None:
    # ContractNLI's baseline as committed before records carried cluster ids (stop 17)
    record = load_record(ROOT / "tests" / "data" / "baseline-before-cluster-ids.json")
    assert len(record.results) == 50
    assert record_clusters(record) is None and record.cluster_key is None


def test_a_baseline_without_cluster_ids_takes_the_clusters_of_the_run(tmp_path: Path) -> None:
    gold, pred, clusters, ids = documents(30, 4)
    old = make_record(gold, pred, ids=ids)  # written before records carried cluster ids
    path = write_baseline(old, tmp_path / "baselines" / "s.json")
    data = json.loads(path.read_text())
    for result in data["results"]:
        del result["cluster"]
    path.write_text(json.dumps(data))
    new_pred = worsen(gold, pred, 9)
    # the run lists its examples in another order: pairing is by id
    order = list(range(len(gold)))[::-1]
    new = make_record(
        [gold[i] for i in order],
        [new_pred[i] for i in order],
        clusters=[clusters[i] for i in order],
        ids=[ids[i] for i in order],
        version=2,
    )
    result = evaluate_regression(GATE, new, path, create_command="-")
    assert result.n_clusters == 30 and result.cluster_key == "doc"
    assert result.interval_method == "paired cluster bootstrap"
    new_preds, old_preds = paired(new, load_record(path))
    by_clusters = stats.regression_test(
        "accuracy",
        new_preds,
        old_preds,
        margin=0.05,
        clusters=[clusters[i] for i in order],
    )
    by_examples = stats.regression_test("accuracy", new_preds, old_preds, margin=0.05)
    assert result.regression is not None
    assert result.regression.upper == by_clusters.upper != by_examples.upper
    assert result.interval is not None and result.interval[1] == pytest.approx(by_clusters.upper)
    assert "paired bootstrap over 30 clusters by doc" in result.text()


# --- the regression gate: detectable drop, power, McNemar ----------------------------------------


def test_a_pass_on_few_examples_says_it_is_underpowered_and_what_would_be_needed(
    tmp_path: Path,
) -> None:
    gold, pred, _, _ = documents(10, 5)
    result = regression(make_record(gold, pred, version=2), make_record(gold, pred), tmp_path)
    assert result.passed and result.underpowered
    test = result.regression
    assert test is not None and test.detectable.drop > GATE.margin
    needed = test.detectable.needed_examples
    assert needed is not None and needed > 50
    assert f"about {needed} examples would bring it to the margin" in result.message
    assert "(power: warn, a warning, not a failure)" in result.message


def test_a_large_run_sees_drops_of_its_margin(tmp_path: Path) -> None:
    gold, pred, _, _ = documents(400, 5)
    result = regression(make_record(gold, pred, version=2), make_record(gold, pred), tmp_path)
    assert result.passed and not result.underpowered
    assert result.regression is not None and result.regression.detectable.drop <= GATE.margin
    assert any("is within the margin 0.05" in line for line in result.details)


@pytest.mark.parametrize(
    ("power", "passes"), [("warn", True), ("fail", False)], ids=["warn-passes", "fail-fails"]
)
def test_the_power_policy_decides_whether_an_underpowered_pass_fails(
    tmp_path: Path, power: str, passes: bool
) -> None:
    gold, pred, _, _ = documents(10, 5)
    result = regression(make_record(gold, pred), make_record(gold, pred), tmp_path, power=power)
    assert result.underpowered
    assert result.passed is passes
    if not passes:
        assert "no drop beyond the margin seen, but underpowered" in result.message
        assert "(power: fail, so the gate fails)" in result.message


def test_a_drop_beyond_the_margin_fails_and_is_not_blamed_on_power(tmp_path: Path) -> None:
    gold, pred, _, _ = documents(12, 5, seed=3)
    new = make_record(gold, worsen(gold, pred, 2), version=2)
    result = regression(new, make_record(gold, pred), tmp_path, power="fail")
    assert result.regression is not None and result.regression.failed
    assert not result.passed
    assert "the drop is at least" in result.message
    row = row_from_report(report_of(result, new, "failed"))
    assert row is not None and row.underpowered  # the fact is kept for JUnit ...
    cells = terminal_lines([row], tmp_path)
    assert "FAIL, underpowered" not in "\n".join(cells)  # ... but the verdict is the drop
    assert any("this drop was large enough to be seen" in line for line in cells)


def test_the_regression_gate_reports_the_exact_mcnemar_test(tmp_path: Path) -> None:
    gold, pred, _, _ = documents(20, 5, seed=1)
    new_pred = worsen(gold, pred, 4)
    first_wrong = next(i for i, (g, p) in enumerate(zip(gold, pred)) if g != p)
    new_pred[first_wrong] = gold[first_wrong]  # and one wrong answer made right
    result = regression(make_record(gold, new_pred), make_record(gold, pred), tmp_path)
    test = result.regression
    assert test is not None and test.mcnemar.better == 1 and test.mcnemar.worse > 5
    expected = binomtest(test.mcnemar.worse, test.mcnemar.discordant, 0.5).pvalue
    assert test.mcnemar.p_value == pytest.approx(expected)
    assert any(
        line.startswith(f"McNemar exact test of correctness: {test.mcnemar.worse} right -> wrong")
        for line in result.details
    )


@pytest.mark.parametrize(
    ("option", "suite", "ini", "expected"),
    [
        (None, None, None, "warn"),
        (None, None, "fail", "fail"),
        (None, "warn", "fail", "warn"),
        ("fail", "warn", None, "fail"),
        ("warn", "fail", "fail", "warn"),
    ],
    ids=["default", "ini", "suite-over-ini", "option-over-suite", "option-over-all"],
)
def test_the_most_specific_power_setting_wins(
    option: str | None, suite: str | None, ini: str | None, expected: str
) -> None:
    assert resolve_power(option, suite, ini) == expected


# --- intervals of thresholds ---------------------------------------------------------------------


def test_a_rate_on_few_examples_gets_a_wilson_interval(tmp_path: Path) -> None:
    gold, pred, clusters, _ = documents(10, 5)
    for record, method in (
        (make_record(gold, pred), "wilson"),
        (make_record(gold, pred, clusters=clusters), "wilson, design effect"),
    ):
        result = evaluate_bound(Bound("accuracy", ">=", 0.3), record)
        expected = stats.rate_interval(
            [g == p for g, p in zip(gold, pred)], clusters=record_clusters(record)
        )
        assert result.interval == (expected.low, expected.high)
        assert result.interval_method == method


def test_many_examples_and_other_metrics_get_the_cluster_bootstrap() -> None:
    gold, pred, clusters, _ = documents(80, 4)
    record = make_record(gold, pred, clusters=clusters)
    preds = record.predictions()
    for name in ("accuracy", "macro_f1"):
        result = evaluate_bound(Bound(name, ">=", 0.1), record)
        assert result.interval_method == "cluster bootstrap"
        assert result.interval == metrics.bootstrap_interval(name, preds, clusters=clusters)
        assert result.n_clusters == 80


# --- families of per-class gates -----------------------------------------------------------------

FAMILY = (
    Bound("f1[pos]", ">=", 0.9),
    Bound("f1[neg]", ">=", 0.55),
    Bound("f1[mixed]", ">=", 0.2),
    Bound("macro_f1", ">=", 0.2),  # not per-class: not in the family
)


def test_per_class_gates_form_one_family_with_holm_adjusted_p_values() -> None:
    gold, pred, clusters, _ = documents(25, 4, seed=2)
    record = make_record(gold, pred, clusters=clusters)
    family = family_of(FAMILY, record, "holm")
    assert set(family) == {"f1[pos]>=0.9", "f1[neg]>=0.55", "f1[mixed]>=0.2"}
    raw = {
        b.label: stats.bound_test(
            b.metric, record.predictions(), op=">=", bound=b.value, clusters=clusters
        ).p_violated
        for b in FAMILY[:3]
    }
    holm = stats.holm(raw, alpha=0.05)
    for label, member in family.items():
        assert member.size == 3 and member.alpha == 0.05
        assert member.p_value == raw[label]
        assert member.adjusted_p == holm[label].adjusted_p >= member.p_value


def test_without_a_correction_the_family_reports_raw_p_values() -> None:
    gold, pred, clusters, _ = documents(25, 4, seed=2)
    family = family_of(FAMILY, make_record(gold, pred, clusters=clusters), "none")
    assert all(m.adjusted_p == m.p_value and m.correction == "none" for m in family.values())


def test_a_family_test_never_changes_a_gates_verdict() -> None:
    gold, pred, clusters, _ = documents(25, 4, seed=2)
    record = make_record(gold, pred, clusters=clusters)
    observed = {b.label: metrics.compute(b.metric, record.predictions()) for b in FAMILY}
    # one bound far above its observed value, one just above it, one below it
    bounds = (
        Bound("f1[pos]", ">=", round(observed["f1[pos]>=0.9"] + 0.4, 3)),
        Bound("f1[neg]", ">=", round(observed["f1[neg]>=0.55"] + 0.01, 3)),
        Bound("f1[mixed]", ">=", round(observed["f1[mixed]>=0.2"] - 0.2, 3)),
    )
    family = family_of(bounds, record, "holm")
    far, near, met = (evaluate_bound(b, record, family=family[b.label]) for b in bounds)
    assert (far.passed, near.passed, met.passed) == (False, False, True)
    assert family[bounds[0].label].violated_adjusted
    assert "the shortfall is evidence, not noise" in far.text()
    assert not family[bounds[1].label].violated_adjusted
    assert "within the noise of this sample and family" in near.text()
    assert "the gate fails on the observed value" in near.text()


# --- the summary table, JUnit properties and Markdown --------------------------------------------


def report_of(result: GateResult, record: RunRecord, outcome: str) -> SimpleNamespace:
    """What a worker's test report carries: the gate's properties."""
    return SimpleNamespace(user_properties=gate_properties("s", result, record), outcome=outcome)


def test_every_summary_field_is_read_from_its_property_and_a_missing_one_is_empty() -> None:
    """What a worker's report carries reaches the summary row field by field, named as the
    property writers name them (the interval as ci_low and ci_high)."""
    names = {"low": "ci_low", "high": "ci_high"}
    values: dict[str, object] = {}
    props: list[tuple[str, object]] = []
    for number, spec in enumerate(dataclasses.fields(Row)):
        if spec.name == "outcome":
            continue
        sent, read = {
            "str": (f"text {number}", f"text {number}"),
            "bool": (1, True),
            "int | None": (f"{number}", number),  # converted as the field type says
            "float | None": (f"{number}.5", number + 0.5),
        }[str(spec.type)]
        props.append(("pld." + names.get(spec.name, spec.name), sent))
        values[spec.name] = read
    full = row_from_report(SimpleNamespace(user_properties=props, outcome="failed"))
    assert full == Row(outcome="failed", **values)
    bare = row_from_report(SimpleNamespace(user_properties=[("pld.suite", "s")], outcome="x"))
    assert bare == Row(suite="s", gate="", outcome="x")
    assert row_from_report(SimpleNamespace(user_properties=[("other", 1)], outcome="x")) is None


def test_the_summary_shows_the_detectable_drop_next_to_the_margin(tmp_path: Path) -> None:
    gold, pred, clusters, _ = documents(10, 5)
    new = make_record(gold, pred, clusters=clusters, version=2)
    result = regression(new, make_record(gold, pred), tmp_path)
    props = dict(gate_properties("s", result, new))
    test = result.regression
    assert test is not None
    assert props["pld.detectable"] == test.detectable.drop
    assert props["pld.underpowered"] is True
    assert props["pld.needed_examples"] == test.detectable.needed_examples
    assert props["pld.needed_clusters"] == test.detectable.needed_clusters
    assert props["pld.mcnemar_p"] == 1.0 and props["pld.power_policy"] == "warn"
    row = row_from_report(report_of(result, new, "passed"))
    assert row is not None
    table = "\n".join(terminal_lines([row], tmp_path))
    drop = f"{test.detectable.drop:.3f}"
    assert f"drop <= 0.05 (95%), detectable {drop}  pass, underpowered" in table
    assert f"regression[accuracy]: underpowered: the detectable drop {drop}" in table
    assert f"({test.detectable.needed_clusters} clusters) would bring it" in table
    assert "regression[accuracy]: McNemar exact test of correctness: 0 right -> wrong" in table
    assert "a paired bootstrap over 10 clusters by doc" in table
    text = markdown([row], tmp_path)
    assert f"| drop <= 0.05 (95%), detectable {drop} | pass, underpowered |" in text
    assert f"- regression[accuracy]: underpowered: the detectable drop {drop}" in text


def test_the_summary_shows_raw_and_adjusted_family_verdicts(tmp_path: Path) -> None:
    gold, pred, clusters, _ = documents(25, 4, seed=2)
    record = make_record(gold, pred, clusters=clusters)
    family = family_of(FAMILY, record, "holm")
    rows = []
    for bound in FAMILY:
        result = evaluate_bound(bound, record, family=family.get(bound.label))
        row = row_from_report(report_of(result, record, "passed" if result.passed else "failed"))
        assert row is not None
        rows.append(row)
    table = "\n".join(terminal_lines(rows, tmp_path))
    assert "per-class gates, one family of 3: Holm-corrected one-sided tests" in table
    for label, member in family.items():
        raw = "significant" if member.violated else "not significant"
        adjusted = "significant" if member.violated_adjusted else "not significant"
        assert f"{label}: one-sided p = {member.p_value:.3f} ({raw}), Holm-adjusted" in table
        assert f"p = {member.adjusted_p:.3f} ({adjusted})" in table
    assert "macro_f1>=0.2: one-sided" not in table


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        ([True] * 5 + [False] * 45, "50 examples, 5 ties (10.0%), model"),
        ([False] * 50, "50 examples, 0 ties (0.0%), model"),
        ([None] * 50, "50 examples, model"),
    ],
    ids=["some ties", "no ties", "not recorded"],
)
def test_the_gate_table_and_markdown_give_the_tie_rate_where_results_record_ties(
    tmp_path: Path, flags: list[bool | None], shown: str
) -> None:
    gold, pred, clusters, _ = documents(10, 5)
    record = make_record(gold, pred, clusters=clusters)
    for result, tie in zip(record.results, flags):
        result.tie = tie
    gate = evaluate_bound(Bound("accuracy", ">=", 0.1), record)
    row = row_from_report(report_of(gate, record, "passed"))
    assert row is not None
    assert shown in "\n".join(terminal_lines([row], tmp_path))
    assert shown in markdown([row], tmp_path)
