"""Run records side by side: `pld compare`, `pld run`'s summary, the review's paired deltas with
clusters, and where cluster ids come from (the suite's `cluster_key`, the runner, the records).

Records are synthetic or made by the scripted backend (control flow only, never evidence about
a model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import RECORD_LABELS as LABELS
from helpers import documents, make_project, make_record, worsen
from scipy.stats import binomtest

from pytest_pld import metrics, stats
from pytest_pld.cli import main
from pytest_pld.compare import NOT_COMPARABLE, compare_records
from pytest_pld.errors import PldError, PldErrors
from pytest_pld.example_clusters import record_clusters
from pytest_pld.record import load_record, save_record
from pytest_pld.report.run_summary import summarize, summary_lines
from pytest_pld.review.reviewer import paired_deltas
from pytest_pld.runner import run_suite
from pytest_pld.suite import Suite, load_suite
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]


def saved(tmp_path: Path, name: str, record: object) -> Path:
    return save_record(record, tmp_path / f"{name}.json")  # type: ignore[arg-type]


def compare_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["compare", "--resamples", "200", *args])
    return code, capsys.readouterr().out


# --- pld compare --------------------------------------------------------------------------------


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path, list[str], list[str], list[str]]:
    gold, pred, clusters, _ = documents(20, 4, seed=5)
    new_pred = worsen(gold, pred, 3)
    a = saved(tmp_path, "a", make_record(gold, pred, clusters=clusters))
    b = saved(tmp_path, "b", make_record(gold, new_pred, clusters=clusters, version=2))
    return a, b, gold, pred, new_pred


def test_compare_prints_paired_deltas_intervals_mcnemar_and_flips(
    two_runs: tuple[Path, Path, list[str], list[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, gold, pred, new_pred = two_runs
    code, out = compare_cli(capsys, str(a), str(b))
    assert code == 0
    worse = sum(g == p and g != q for g, p, q in zip(gold, pred, new_pred))
    delta = metrics.compute(
        "accuracy", make_record(gold, new_pred).predictions()
    ) - metrics.compute("accuracy", make_record(gold, pred).predictions())
    assert f"{delta:+.3f}" in out.split("accuracy", 1)[1].splitlines()[0]
    assert "intervals: paired bootstrap over 20 clusters by doc" in out
    p_value = binomtest(worse, worse, 0.5).pvalue
    assert f"McNemar exact test of correctness: {worse} right -> wrong, 0 wrong -> right" in out
    assert f"p {'< 0.001' if p_value < 0.001 else f'= {p_value:.3f}'}" in out
    assert f"flipped right -> wrong ({worse}):" in out


def test_compare_speaks_markdown_and_json(
    two_runs: tuple[Path, Path, list[str], list[str], list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b, *_ = two_runs
    code, md = compare_cli(capsys, str(a), str(b), "--format", "md")
    assert code == 0 and md.startswith("### pld compare")
    assert "| metric | base | head | Δ | 95% interval | |" in md
    code, raw = compare_cli(capsys, str(a), str(b), "--format", "json")
    data = json.loads(raw)
    assert data["comparable"] is True and data["problems"] == []
    assert data["comparison"]["clusters"] == 20 and data["comparison"]["cluster_key"] == "doc"
    assert data["comparison"]["mcnemar"]["better"] == 0
    accuracy = next(m for m in data["comparison"]["metrics"] if m["name"] == "accuracy")
    assert accuracy["low"] <= accuracy["delta"] <= accuracy["high"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(
            {"model": "scripted:other"}, "model: A 'scripted:m', B 'scripted:other'", id="model"
        ),
        pytest.param(
            {"labels": ["pos", "neg"]},
            "labels: A ['pos', 'neg', 'mixed'], B ['pos', 'neg']",
            id="labels",
        ),
        pytest.param({"relabel": True}, "gold labels differ for 1 examples (e0)", id="data"),
    ],
)
@pytest.mark.parametrize("fmt", ["text", "md", "json"])
def test_records_that_cannot_be_paired_are_not_compared_and_the_exit_code_says_so(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, object],
    reason: str,
    fmt: str,
) -> None:
    gold, pred, _, _ = documents(5, 4)
    other = make_record(gold, pred)
    change = dict(change)  # shared by the format cases
    if change.pop("relabel", False):
        other.results[0].gold = LABELS[(LABELS.index(gold[0]) + 1) % 3]
    for key, value in change.items():
        setattr(other, key, value)
    a, b = saved(tmp_path, "a", make_record(gold, pred)), saved(tmp_path, "b", other)
    code, out = compare_cli(capsys, str(a), str(b), "--format", fmt)
    assert code == NOT_COMPARABLE == 1
    if fmt == "json":
        data = json.loads(out)
        assert data["comparable"] is False and data["comparison"] is None
        assert reason in data["problems"]
    else:
        assert "ot comparable: these records cannot be paired example by example" in out
        assert reason in out
        assert "McNemar" not in out and "flipped" not in out.lower()


def test_an_unreadable_record_is_an_error_not_a_comparison(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["compare", str(broken), str(broken)]) == 2
    assert "broken.json" in capsys.readouterr().err


def test_compare_reports_a_difference_in_every_key_at_once(tmp_path: Path) -> None:
    gold, pred, _, _ = documents(3, 2)
    other = make_record(gold, pred)
    other.model, other.split = "scripted:x", "dev"
    comparison = compare_records(make_record(gold, pred), other)
    assert not comparison.comparable and comparison.exit_code == 1
    assert {p.split(":")[0] for p in comparison.problems} == {"split", "model"}


# --- the paired deltas of review, report and compare --------------------------------------------


def test_paired_deltas_resample_the_clusters_the_records_carry_or_the_suite_gives() -> None:
    gold, pred, clusters, ids = documents(15, 4, seed=7)
    new_pred = worsen(gold, pred, 4)
    plain_old, plain_new = make_record(gold, pred), make_record(gold, new_pred, version=2)
    with_ids = make_record(gold, new_pred, clusters=clusters, version=2)
    carried = paired_deltas(LABELS, plain_old, with_ids, 500)
    given = paired_deltas(
        LABELS, plain_old, plain_new, 500, fallback_clusters=dict(zip(ids, clusters))
    )
    neither = paired_deltas(LABELS, plain_old, plain_new, 500)
    assert (carried.clusters, given.clusters, neither.clusters) == (15, 15, None)
    expected = metrics.paired_bootstrap_delta(
        "accuracy",
        plain_new.predictions(),
        plain_old.predictions(),
        n_resamples=500,
        clusters=clusters,
    )
    for compared in (carried, given):
        accuracy = compared.metrics[0]
        assert (accuracy.delta, accuracy.low, accuracy.high) == expected
    assert (neither.metrics[0].low, neither.metrics[0].high) != expected[1:]
    mcnemar = stats.mcnemar(plain_new.predictions(), plain_old.predictions())
    assert carried.mcnemar == neither.mcnemar == mcnemar


# --- pld run's summary --------------------------------------------------------------------------


def test_the_run_summary_has_intervals_label_counts_and_ties() -> None:
    gold, pred, clusters, _ = documents(10, 5)
    record = make_record(gold, pred, clusters=clusters)
    record.metrics = {
        "accuracy": metrics.compute("accuracy", record.predictions()),
        "macro_f1": metrics.compute("macro_f1", record.predictions()),
        "prompt_tokens": 40.0,
    }
    for i, result in enumerate(record.results):
        result.tie = i < 3
    summary = summarize(record, resamples=200)
    lines = {m.name: m for m in summary.metrics}
    flags = [g == p for g, p in zip(gold, pred)]
    wilson = stats.rate_interval(flags, clusters=clusters)
    assert (lines["accuracy"].low, lines["accuracy"].high) == (wilson.low, wilson.high)
    assert lines["macro_f1"].method == "cluster bootstrap"
    assert lines["prompt_tokens"].low is None
    assert summary.labels[:3] == [(x, gold.count(x), pred.count(x)) for x in LABELS]
    assert summary.ties == 3
    text = "\n".join(summary_lines(summary))
    assert "intervals over 10 clusters by doc" in text
    assert f"{wilson.low:.3f}..{wilson.high:.3f}" in text
    assert "ties: 3 of 50 answers (6.0%)" in text
    for result in record.results:
        result.tie = None  # a record written before results carried the flag
    old_text = "\n".join(summary_lines(summarize(record, resamples=50)))
    assert "ties: not recorded" in old_text


# --- where cluster ids come from ----------------------------------------------------------------


def clustered_project(tmp_path: Path, key: str) -> Path:
    suite = make_project(tmp_path)
    rows = [
        {
            "id": f"d{i}",
            "label": "neg" if i % 2 else "pos",
            "text": f"show {i}",
            "topic": f"t{i // 3}",
        }
        for i in range(9)
    ]
    (tmp_path / "data" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite.path.write_text(suite.path.read_text() + f"cluster_key: {key}\n")
    return suite.path


def test_run_records_carry_each_examples_cluster_id(tmp_path: Path) -> None:
    path = clustered_project(tmp_path, "topic")
    suite = load_suite(path, tmp_path)
    with scripted(ScriptedBackend("student", classify=lambda s, u, labels: "pos")):
        record = run_suite(
            suite, split="dev", cache_path=tmp_path / "cache.sqlite", results_dir=tmp_path / "runs"
        )
    assert record.cluster_key == "topic"
    assert record_clusters(record) == tuple(f"t{i // 3}" for i in range(9))
    assert record_clusters(load_record(Path(str(record.path)))) == record_clusters(record)


def test_a_cluster_key_the_examples_lack_fails_before_any_model_call(tmp_path: Path) -> None:
    suite = load_suite(clustered_project(tmp_path, "chapter"), tmp_path)
    missing = "example 'd0' has no 'chapter' value to cluster by"
    with (
        scripted(ScriptedBackend("student", classify=lambda s, u, labels: "pos")) as backend,
        pytest.raises(PldError, match=missing),
    ):
        run_suite(
            suite, split="dev", cache_path=tmp_path / "cache.sqlite", results_dir=tmp_path / "runs"
        )
    assert backend.classify_calls == 0


@pytest.mark.parametrize("key", ["document_id", "group", "id"])
def test_a_cluster_key_may_name_a_loader_field_or_group_or_id(key: str, tmp_path: Path) -> None:
    text = (ROOT / "suites" / "contractnli.yaml").read_text()
    assert "cluster_key: document_id" in text
    suite = load_suite_text(
        text.replace("cluster_key: document_id", f"cluster_key: {key}"), tmp_path
    )
    assert suite.cluster_key == key


def test_a_cluster_key_the_loader_does_not_provide_names_file_line_key_and_fields(
    tmp_path: Path,
) -> None:
    text = (ROOT / "suites" / "contractnli.yaml").read_text()
    line = text.splitlines().index("cluster_key: document_id") + 1
    with pytest.raises(PldErrors) as caught:
        load_suite_text(
            text.replace("cluster_key: document_id", "cluster_key: documentid"), tmp_path
        )
    (error,) = caught.value.errors
    assert error.path == str(tmp_path / "contractnli.yaml")
    assert error.line == line and error.key == "cluster_key"
    assert "the contractnli loader's examples have no field 'documentid'" in error.message
    assert "(did you mean 'document_id'?)" in error.message
    assert error.hint == (
        "available fields: premise, hypothesis, hypothesis_key, document_id, group, id"
    )


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("  regression: {", "  family: bonferroni\n  regression: {", "gates.family"),
        ("confidence: 0.95}", "confidence: 0.95, power: strict}", "gates.regression.power"),
    ],
    ids=["family", "power"],
)
def test_a_family_or_power_setting_outside_its_choices_is_an_error(
    old: str, new: str, key: str, tmp_path: Path
) -> None:
    text = (ROOT / "suites" / "contractnli.yaml").read_text()
    with pytest.raises(PldErrors) as caught:
        load_suite_text(text.replace(old, new), tmp_path)
    (error,) = caught.value.errors
    assert error.key == key and "expected one of" in error.message


def test_family_and_power_settings_reach_the_suite(tmp_path: Path) -> None:
    text = (ROOT / "suites" / "contractnli.yaml").read_text()
    text = text.replace("  regression: {", "  family: none\n  regression: {")
    suite = load_suite_text(
        text.replace("confidence: 0.95}", "confidence: 0.95, power: fail}"), tmp_path
    )
    assert suite.family == "none"
    assert suite.regression is not None and suite.regression.power == "fail"


def load_suite_text(text: str, folder: Path) -> Suite:
    """The shipped contractnli suite with an edit, written elsewhere and loaded against the
    project root (where its data and instructions are)."""
    path = folder / "contractnli.yaml"
    path.write_text(text, encoding="utf-8")
    return load_suite(path, ROOT)
