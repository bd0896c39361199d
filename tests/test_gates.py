"""Gates: bounds parse with file/line errors, thresholds pass and fail with readable messages,
and the regression gate passes a harmless change but fails a planted regression."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_pld.errors import PldError
from pytest_pld.gates import (
    GateResult,
    differences,
    evaluate_bound,
    evaluate_regression,
    write_baseline,
)
from pytest_pld.labels import INVALID
from pytest_pld.record import ExampleResult, RunRecord, load_record
from pytest_pld.suite import Bound, RegressionGate, load_suite, parse_bound

LABELS = ["pos", "neg", "mixed"]


def record(
    gold: Sequence[str],
    pred: Sequence[str],
    *,
    ids: Sequence[str] | None = None,
    limit: int | None = None,
    model: str = "scripted:m",
    split: str = "test",
    version: int = 1,
    tokens: int = 50,
) -> RunRecord:
    ids = list(ids) if ids is not None else [f"e{i}" for i in range(len(gold))]
    results = [
        ExampleResult(id=i, gold=g, pred=p, latency_ms=10.0, prompt_tokens=tokens, raw=p)
        for i, g, p in zip(ids, gold, pred)
    ]
    rec = RunRecord(
        suite="s",
        split=split,
        limit=limit,
        model=model,
        backend={"provider": "scripted"},
        instructions={"name": "s", "version": version, "hash": f"h{version}"},
        labels=list(LABELS),
        system_prompt_sha256="x",
        results=results,
        path="/runs/s.json",
    )
    return rec


def noisy(n: int, right: float, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    gold = [rng.choice(LABELS) for _ in range(n)]
    pred = [g if rng.random() < right else LABELS[(LABELS.index(g) + 1) % 3] for g in gold]
    return gold, pred


# --- bound parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "op", "value"),
    [
        (">= 0.6", ">=", 0.6),
        ("<=1.15", "<=", 1.15),
        ("< 6000", "<", 6000.0),
        ("> .5", ">", 0.5),
        (">= 1e-2", ">=", 0.01),
    ],
    ids=["ge", "le-no-space", "lt-integer", "gt-leading-dot", "exponent"],
)
def test_a_bound_parses_into_operator_and_value(raw: str, op: str, value: float) -> None:
    bound = parse_bound("macro_f1", raw, path=Path("s.yaml"), line=3)
    assert (bound.op, bound.value, bound.line) == (op, value, 3)


SUITE = """\
name: s
dataset: {{loader: jsonl}}
splits: {{test: data/s.jsonl}}
labels: [pos, neg, mixed]
user_template: "{{{{ text }}}}"
instructions: instructions/s.yaml
student: scripted:m
{gates}
"""


@pytest.mark.parametrize(
    ("gates", "line", "expected"),
    [
        pytest.param(
            "gates:\n  macro_f1: '>= lots'",
            9,
            ["malformed bound '>= lots'", "gates.macro_f1", "'>= 0.6'"],
            id="malformed-bound",
        ),
        pytest.param(
            "gates:\n  accuracy: 0.6",
            9,
            ["has no comparison", "gates.accuracy"],
            id="number-without-comparison",
        ),
        pytest.param(
            "gates:\n  accuracy: '>= 0.5'\n  f1_macro: '>= 0.6'",
            10,
            ["unknown metric 'f1_macro'", "macro_f1", "regression"],
            id="unknown-metric",
        ),
        pytest.param("gates:\n  f1[Neutral]: '>= 0.4'", 9, ["label 'Neutral'"], id="unknown-label"),
        pytest.param(
            "gates:\n  regression: {metric: macro_f1, baseline: b.json, margin: 2}",
            9,
            ["margin must be a number in [0, 1)"],
            id="regression-margin",
        ),
        pytest.param("gates: {}", 8, ["a suite needs at least one gate"], id="no-gates"),
    ],
)
def test_a_bad_gate_names_file_line_and_allowed_forms(
    tmp_path: Path, gates: str, line: int, expected: list[str]
) -> None:
    path = tmp_path / "suites" / "s.yaml"
    path.parent.mkdir()
    path.write_text(SUITE.format(gates=gates))
    with pytest.raises(PldError) as info:
        load_suite(path, tmp_path)
    text = str(info.value)
    assert f"{path}:{line}:" in text
    for part in expected:
        assert part in text


# --- thresholds ---------------------------------------------------------------------------------


def test_a_bound_below_the_observed_value_passes() -> None:
    gold, pred = noisy(80, 0.8)
    result = evaluate_bound(Bound("accuracy", ">=", 0.5), record(gold, pred))
    assert result.passed
    assert result.interval is not None
    assert result.interval[0] <= result.observed <= result.interval[1]
    assert result.message.startswith("accuracy = ")


def test_a_bound_above_the_observed_value_fails_with_value_interval_bound_and_confusions() -> None:
    gold, pred = noisy(80, 0.5)
    result = evaluate_bound(Bound("macro_f1", ">=", 0.9), record(gold, pred))
    assert not result.passed
    text = result.text()
    assert "macro_f1 = 0." in text and "95% CI" in text and "required >= 0.9" in text
    assert "most confused (gold -> predicted)" in text


def test_an_upper_bound_on_prompt_tokens_has_no_interval() -> None:
    result = evaluate_bound(Bound("prompt_tokens", "<=", 40), record(["pos"], ["pos"]))
    assert not result.passed
    assert result.interval is None
    assert "prompt_tokens = 50, required <= 40" in result.message


def test_an_undefined_metric_never_passes() -> None:
    # latency_overhead needs a rule-free run, which this record does not have
    result = evaluate_bound(Bound("latency_overhead", "<=", 100.0), record(["pos"], ["pos"]))
    assert not result.passed
    assert "undefined" in result.message


def test_an_invalid_rate_failure_quotes_the_off_label_answers() -> None:
    rec = record(["pos", "neg"], [INVALID, "neg"])
    rec.results[0].raw = "I'm sorry, I cannot"
    result = evaluate_bound(Bound("invalid_rate", "<=", 0.01), rec)
    assert not result.passed
    assert "I'm sorry" in result.text()


# --- regression ---------------------------------------------------------------------------------

GATE = RegressionGate("macro_f1", "baselines/s.json", margin=0.02, confidence=0.95)


def baseline(tmp_path: Path, rec: RunRecord) -> Path:
    return write_baseline(rec, tmp_path / "baselines" / "s.json")


def check(rec: RunRecord, path: Path) -> GateResult:
    return evaluate_regression(
        GATE, rec, path, create_command="pytest --pld-suite=s --pld-update-baseline"
    )


def test_a_harmless_change_with_the_same_predictions_passes(tmp_path: Path) -> None:
    gold, pred = noisy(100, 0.7)
    path = baseline(tmp_path, record(gold, pred, version=1))
    result = check(record(gold, pred, version=2), path)
    assert result.passed
    assert result.observed == 0.0


def test_noise_of_a_few_flipped_examples_does_not_block(tmp_path: Path) -> None:
    gold, pred = noisy(100, 0.7)
    path = baseline(tmp_path, record(gold, pred))
    changed = list(pred)
    right = [i for i, (g, p) in enumerate(zip(gold, pred)) if g == p]
    changed[right[0]] = LABELS[(LABELS.index(gold[right[0]]) + 1) % 3]  # one example worse
    result = check(record(gold, changed), path)
    assert result.observed < 0
    assert result.passed


def test_a_planted_regression_fails_with_the_drop_and_the_flipped_examples(tmp_path: Path) -> None:
    gold, pred = noisy(100, 0.8)
    path = baseline(tmp_path, record(gold, pred))
    worse = [
        p if i % 3 else LABELS[(LABELS.index(g) + 1) % 3]
        for i, (g, p) in enumerate(zip(gold, pred))
    ]
    result = check(record(gold, worse, version=2), path)
    assert not result.passed
    text = result.text()
    assert "(baseline) ->" in text and "the drop is at least" in text
    assert "more than the margin 0.02" in text
    assert "went from right to wrong" in text
    assert "baseline v1" in text and "this run v2" in text


def test_examples_are_paired_by_id_not_by_position(tmp_path: Path) -> None:
    gold, pred = noisy(40, 0.7)
    ids = [f"e{i}" for i in range(40)]
    path = baseline(tmp_path, record(gold, pred, ids=ids))
    result = check(record(gold[::-1], pred[::-1], ids=ids[::-1]), path)
    assert result.passed and result.observed == 0.0


def test_a_missing_baseline_fails_with_the_command_that_creates_it(tmp_path: Path) -> None:
    result = check(record(["pos"], ["pos"]), tmp_path / "baselines" / "s.json")
    assert not result.passed
    assert "does not exist" in result.text()
    assert "pytest --pld-suite=s --pld-update-baseline" in result.text()


def test_an_unreadable_baseline_fails_instead_of_passing(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    result = check(record(["pos"], ["pos"]), path)
    assert not result.passed
    assert "cannot be read" in result.text()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param({"limit": 50}, "limit: baseline 50, this run None", id="other-sample"),
        pytest.param(
            {"model": "scripted:other"}, "model: baseline 'scripted:other'", id="other-model"
        ),
        pytest.param({"split": "dev"}, "split: baseline 'dev', this run 'test'", id="other-split"),
        pytest.param(
            {"ids": ["e0", "e1", "x2"]}, "1 only in the baseline (x2)", id="other-examples"
        ),
        pytest.param(
            {"gold": ["pos", "neg", "pos"]},
            "gold labels differ for 1 examples (e2)",
            id="relabelled-data",
        ),
    ],
)
def test_an_incomparable_baseline_is_reported_not_used(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    gold = ["pos", "neg", "mixed"]
    old_gold = change.pop("gold", gold)
    old = record(old_gold, old_gold, **change)  # type: ignore[arg-type]
    path = baseline(tmp_path, old)
    result = check(record(gold, gold), path)
    assert not result.passed
    text = result.text()
    assert "is not comparable with this run" in text
    assert expected in text
    assert "re-create it with: pytest --pld-suite=s --pld-update-baseline" in text


def test_comparable_records_have_no_differences() -> None:
    assert differences(record(["pos"], ["neg"]), record(["pos"], ["pos"], version=3)) == []


def test_writing_a_baseline_keeps_the_run_record_path_and_round_trips(tmp_path: Path) -> None:
    rec = record(["pos", "neg"], ["pos", "pos"])
    path = write_baseline(rec, tmp_path / "b" / "s.json")
    assert rec.path == "/runs/s.json"
    loaded = load_record(path)
    assert [r.pred for r in loaded.results] == ["pos", "pos"]
    assert json.loads(path.read_text())["schema"] == 1
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_the_regression_interval_brackets_the_observed_delta(tmp_path: Path) -> None:
    gold, pred = noisy(100, 0.7)
    path = baseline(tmp_path, record(gold, pred))
    _, worse = noisy(100, 0.6, seed=1)
    result = check(record(gold, worse), path)
    low, high = result.interval
    assert low <= result.observed <= high
    assert not math.isnan(result.observed)
