"""Runs of an instruction set with a calibration: the runner applies it (or refuses a stale one,
or results without scores), records raw and calibrated answers, and every report says so.

The student is the scripted backend with label scores (control flow only, never evidence about
a model): great reviews score pos 1.0 and neg 1.5, so the raw student says neg for every
review, and the fitted offsets move pos past neg for the great ones. The real packaged student
is in test_calibrate_cli.py and test_plugin_calibration.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import biased_student, make_reviews_project, run_pld

from pytest_pld.calibrate import calibrate_suite
from pytest_pld.calibration import Calibration, scoring_digest
from pytest_pld.calibration_run import calibrate_results
from pytest_pld.compare import compare_records
from pytest_pld.errors import PldError, PldErrors
from pytest_pld.instructions import Rule, WorkedExample, load_instruction_set
from pytest_pld.record import RunRecord, load_record, save_record
from pytest_pld.report.comparison import render
from pytest_pld.report.gate_summary import gate_properties, markdown, row_from_report
from pytest_pld.report.html_page import build_html
from pytest_pld.runner import run_suite
from pytest_pld.shard_merge import check_gated_record, merge_records
from pytest_pld.shards import Shard
from pytest_pld.suite import Suite, load_suite
from pytest_pld.testing import ScriptedBackend, scripted

RULE = "rules:\n  - id: R1\n    text: Read the whole review.\n"


def calibrated_project(root: Path) -> tuple[Suite, Path]:
    """The reviews project with a prior-shift calibration fitted on dev and written."""
    path = make_reviews_project(root)
    suite = load_suite(root / "suites" / "toy.yaml", root)
    calibrate_suite(suite).write()
    return suite, path


# --- the runner ---------------------------------------------------------------------------------


def test_the_runner_calibrates_every_answer_and_keeps_the_raw_one(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, path = calibrated_project(tmp_path)
    cal = load_instruction_set(path).calibration
    assert cal is not None
    record = run_suite(suite, write_record=False)
    assert record.calibrated
    assert record.calibration == {"applied": True, **_section(cal)}
    for r in record.results:
        assert r.raw_pred == "neg"  # the raw student
        assert r.scores is not None and r.pred == cal.answer(r.scores, r.id)
    assert [r.pred for r in record.results] == [r.gold for r in record.results]
    assert record.metrics["macro_f1"] == 1.0  # metrics and gates read the calibrated answers
    raw = record.raw_predictions()
    assert set(raw.pred) == {"neg"} and raw.gold == record.predictions().gold


def _section(cal: Calibration) -> dict[str, Any]:
    from pytest_pld.calibration_section import to_yaml

    return to_yaml(cal)


def test_calibrated_answers_do_not_depend_on_the_label_order(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    """Offsets that make every great review an exact tie: the tie goes by the example id and
    the label (`labels.top_label`), the same whichever order the scores and offsets list the
    labels in."""
    suite, path = calibrated_project(tmp_path)
    cal = load_instruction_set(path).calibration
    assert cal is not None
    tie = dataclasses.replace(cal, offsets={"pos": 0.5, "neg": 0.0})  # great: 1.5 against 1.5
    iset = dataclasses.replace(load_instruction_set(path), calibration=tie)
    forward = run_suite(suite, instructions=iset, write_record=False)
    ties = [r for r in forward.results if r.tie]
    assert len(ties) == 6 and {r.pred for r in ties} == {"pos", "neg"}  # spread, not first

    backward = [
        dataclasses.replace(
            r, pred="neg", raw_pred=None, scores=dict(reversed(list((r.scores or {}).items())))
        )
        for r in forward.results
    ]
    flipped = dataclasses.replace(tie, offsets={"neg": 0.0, "pos": 0.5})
    calibrate_results(flipped, backward, ("neg", "pos"), student="scripted:student")
    assert [r.pred for r in backward] == [r.pred for r in forward.results]
    assert [r.tie for r in backward] == [r.tie for r in forward.results]


def test_a_stale_calibration_is_an_error_before_any_model_call(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, path = calibrated_project(tmp_path)
    calls = scored_student.classify_calls
    path.write_text(path.read_text().replace("rules: []\n", RULE), encoding="utf-8")
    with pytest.raises(PldErrors) as err:
        run_suite(suite, write_record=False)
    text = str(err.value)
    assert "the calibration is stale: fitted with another system prompt" in text
    assert "pld calibrate toy --write" in text
    assert "--no-calibration" in text  # how to see the raw student meanwhile
    assert err.value.errors[0].key == "calibration.fitted.system_prompt_sha256"
    assert scored_student.classify_calls == calls

    # switched off, the same set runs: raw answers, and the record says calibration was off
    record = run_suite(suite, write_record=False, apply_calibration=False)
    assert not record.calibrated and record.calibration is not None
    assert record.calibration["applied"] is False
    assert {r.pred for r in record.results} == {"neg"}
    assert all(r.raw_pred is None for r in record.results)


def test_another_student_or_another_scoring_backend_makes_it_stale(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, path = calibrated_project(tmp_path)
    with pytest.raises(PldError, match="fitted for student scripted:student, but the student"):
        run_suite(suite, model="scripted:other", write_record=False)

    class Float32(ScriptedBackend):
        """The same student computing its scores in another dtype."""

        def identity(self) -> Mapping[str, Any]:
            return {**super().identity(), "dtype": "float32"}

    with scripted(Float32("student", scores=biased_student)), pytest.raises(PldError) as err:
        run_suite(suite, write_record=False)
    assert "scores from another configuration of scripted:student" in str(err.value)
    assert "the student now runs in float32" in str(err.value)

    # a section written before the backend digest existed is read, and not checked for it
    text = path.read_text()
    digest = scoring_digest({"provider": "scripted", "model": "student"})
    assert f"    backend_sha256: {digest}\n" in text
    path.write_text(text.replace(f"    backend_sha256: {digest}\n", ""), encoding="utf-8")
    with scripted(Float32("student", scores=biased_student)):
        assert run_suite(suite, write_record=False).calibrated


def test_a_student_without_label_scores_is_refused_never_labelled_calibrated(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, _ = calibrated_project(tmp_path)

    def words(system: str, user: str, labels: Sequence[str]) -> str:
        return "pos" if "great" in user else "neg"

    wordy = ScriptedBackend("student", classify=words)
    with scripted(wordy), pytest.raises(PldError, match="no label scores for 12 of 12 examples"):
        run_suite(suite, write_record=False, cache_mode="off")


def test_variants_that_render_another_prompt_drop_the_calibration(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    _, path = calibrated_project(tmp_path)
    iset = load_instruction_set(path)
    assert iset.calibration is not None
    assert iset.without_rules().calibration is None  # zero-shot: its own prompt
    assert iset.with_rules([Rule("R1", "Read it all.")]).calibration is None
    assert iset.with_rules(iset.rules, version=9).calibration == iset.calibration  # same prompt
    assert iset.with_examples([WorkedExample("a great show", "pos")]).calibration is None
    assert iset.with_examples(iset.examples).calibration == iset.calibration


# --- the run record -----------------------------------------------------------------------------


def test_the_record_keeps_raw_and_calibrated_answers_and_older_records_load(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, _ = calibrated_project(tmp_path)
    record = run_suite(suite, results_dir=tmp_path / "runs")
    data = json.loads(Path(str(record.path)).read_text())
    assert data["schema"] == 1 and data["calibration"]["applied"] is True
    assert data["calibration"]["method"] == "prior-shift"
    assert data["results"][1]["pred"] == "pos" and data["results"][1]["raw_pred"] == "neg"
    again = load_record(Path(str(record.path)))
    assert again.calibrated and again.results == record.results

    raw = run_suite(suite, results_dir=tmp_path / "runs", apply_calibration=False)
    data = json.loads(Path(str(raw.path)).read_text())
    assert "raw_pred" not in data["results"][0]  # only a calibrated answer has a raw one
    assert data["calibration"]["applied"] is False

    # a record written before calibration existed: no fields, read as uncalibrated
    for row in data["results"]:
        row.pop("raw_pred", None)
    del data["calibration"]
    old = RunRecord.from_json(data)
    assert old.calibration is None and not old.calibrated
    assert old.raw_predictions() == old.predictions()


def test_shards_of_a_calibrated_run_merge_into_the_calibrated_whole(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, _ = calibrated_project(tmp_path)
    whole = run_suite(suite, write_record=False)
    parts = [run_suite(suite, shard=Shard(i, 2), results_dir=tmp_path / "parts") for i in (1, 2)]
    merged = merge_records(parts)
    assert merged.calibration == whole.calibration
    assert [(r.pred, r.raw_pred) for r in merged.results] == [
        (r.pred, r.raw_pred) for r in whole.results
    ]
    raw_part = run_suite(
        suite, shard=Shard(2, 2), results_dir=tmp_path / "parts", apply_calibration=False
    )
    with pytest.raises(PldError, match="parts of different runs .*calibration_applied"):
        merge_records([parts[0], raw_part])

    # --pld-record: a merged record is gated only as the run it is (calibrated or not)
    path = save_record(merged, tmp_path / "merged.json")
    args = {"split": "test", "limit": None, "model": "scripted:student"}
    assert check_gated_record(path, suite, **args).calibrated  # type: ignore[arg-type]
    with pytest.raises(PldError, match="calibration: record 'prior-shift applied"):
        check_gated_record(path, suite, apply_calibration=False, **args)  # type: ignore[arg-type]


# --- every report -------------------------------------------------------------------------------


def test_pld_run_says_how_answers_were_calibrated_and_shows_raw_beside(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    calibrated_project(tmp_path)
    code, out, err = run_pld(capsys, "run", "toy", "--root", str(tmp_path))
    assert code == 0, err
    assert (
        "  answers: calibrated (prior-shift, fitted on dev (12 examples) for scripted:student; "
        "raw macro-F1 0.333 -> calibrated 1.000)\n" in out
    )
    assert "  labels: gold, raw, calibrated\n    pos          6      0      6\n" in out
    assert "    neg          6     12      6\n" in out

    code, out, err = run_pld(capsys, "run", "toy", "--no-calibration", "--root", str(tmp_path))
    assert code == 0, err
    assert "  answers: raw: calibration switched off for this run (the set's prior-shift" in out
    assert "  labels: gold, predicted\n    pos          6      0\n" in out
    assert "cache hits 12, model calls 0" in out  # the raw scores were cached


def test_pld_run_output_is_unchanged_for_a_set_without_calibration(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_reviews_project(tmp_path)
    code, out, _ = run_pld(capsys, "run", "toy", "--root", str(tmp_path))
    assert code == 0
    assert "answers:" not in out and "calibrat" not in out
    assert "  labels: gold, predicted\n" in out


class Report:
    """What pytest hands the summary: an item's outcome and its user properties."""

    def __init__(self, props: list[tuple[str, object]]) -> None:
        self.user_properties = props
        self.outcome = "passed"


def test_junit_properties_the_gate_table_and_markdown_name_the_calibration(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    from pytest_pld.gates import evaluate_bound
    from pytest_pld.report.gate_summary import terminal_lines
    from pytest_pld.suite import Bound

    suite, _ = calibrated_project(tmp_path)
    record = run_suite(suite, results_dir=tmp_path / "runs")
    result = evaluate_bound(Bound("accuracy", ">=", 0.5), record)
    props = dict(gate_properties("toy", result, record))
    assert str(props["pld.calibration"]).startswith("calibrated (prior-shift, fitted on dev")
    assert props["pld.raw_macro_f1"] == pytest.approx(1 / 3)
    assert props["pld.raw_accuracy"] == 0.5
    rows = [row_from_report(Report(list(props.items())))]
    assert rows[0] is not None
    table = terminal_lines([rows[0]], tmp_path)
    assert table[1].startswith("  answers: calibrated (prior-shift, fitted on dev (12 examples)")
    md = markdown([rows[0]], tmp_path)
    assert "Answers: calibrated (prior-shift" in md
    assert "Per-class scores (calibrated answers):" in md
    assert "| macro_f1 | 0.333 | 1.000 |" in md
    assert "| pos | 6 | 0 | 6 |" in md and "| neg | 6 | 12 | 6 |" in md

    plain = run_suite(suite, results_dir=tmp_path / "runs", apply_calibration=False)
    props = dict(gate_properties("toy", evaluate_bound(Bound("accuracy", ">=", 0.5), plain), plain))
    assert str(props["pld.calibration"]).startswith("raw: calibration switched off")
    assert "pld.raw_macro_f1" not in props


def test_no_calibration_property_or_line_for_a_set_without_one(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    from pytest_pld.gates import evaluate_bound
    from pytest_pld.suite import Bound

    make_reviews_project(tmp_path)
    suite = load_suite(tmp_path / "suites" / "toy.yaml", tmp_path)
    record = run_suite(suite, results_dir=tmp_path / "runs")
    props = gate_properties("toy", evaluate_bound(Bound("accuracy", ">=", 0.5), record), record)
    assert not [k for k, _ in props if "calibration" in k or "raw_" in k]
    row = row_from_report(Report(props))
    assert row is not None and "nswers" not in markdown([row], tmp_path)


def test_the_html_page_says_calibrated_and_draws_raw_beside(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, _ = calibrated_project(tmp_path)
    record = run_suite(suite, write_record=False)
    page = build_html(record, resamples=50).html
    assert "answers: <code>calibrated (prior-shift, fitted on dev (12 examples)" in page
    assert "the raw student&#x27;s macro_f1 is 0.333 and its accuracy 0.500" in page
    assert "predicted raw" in page and "predicted calibrated" in page
    assert "These are the raw scores, before the calibration&#x27;s offsets." in page
    plain = run_suite(suite, write_record=False, apply_calibration=False)
    page = build_html(plain, resamples=50).html
    assert "raw: calibration switched off" in page and "predicted raw" not in page


def test_pld_compare_flags_a_calibrated_record_against_a_raw_one(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    suite, _ = calibrated_project(tmp_path)
    raw = run_suite(suite, write_record=False, apply_calibration=False)
    calibrated = run_suite(suite, write_record=False)
    comparison = compare_records(raw, calibrated, resamples=50)
    assert comparison.comparable  # a calibration is part of an instruction change
    text = render(comparison, "text")
    assert "answers raw (calibration switched off)" in text
    assert "answers calibrated (prior-shift, fitted on dev (12 examples)" in text
    assert "note: base's answers are raw (calibration switched off), head's are calibrated" in text
    assert "raw students (each side's answers before calibration):" in text
    report = comparison.report
    assert report is not None
    raw_rows = {m.name: m for m in report.raw_metrics}
    assert raw_rows["accuracy"].delta == 0.0  # the same raw student on both sides
    assert {m.name: m for m in report.metrics}["accuracy"].delta == 0.5
    md = render(comparison, "md")
    assert "Raw students (each side's answers before calibration):" in md
    data = json.loads(render(comparison, "json"))
    assert data["comparison"]["calibration"]["head"].startswith("calibrated (prior-shift")

    # two uncalibrated records: nothing about calibration
    plain = compare_records(raw, raw, resamples=50)
    assert "calibrat" not in render(plain, "text").replace("calibration switched off", "")


def test_a_distill_proposal_with_other_rules_drops_the_calibration_and_says_so(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    from pytest_pld.distill.propose import build_proposal
    from pytest_pld.report.proposal import proposal_text

    _, path = calibrated_project(tmp_path)
    base, base_text = load_instruction_set(path), path.read_text()
    numbers = {"before": {"macro_f1": 0.3, "accuracy": 0.5}, "after": {"macro_f1": 0.3, "n": 4}}
    numbers["after"]["accuracy"] = 0.5
    new_rules = [Rule("R1", "Read the whole review.")]
    proposal = build_proposal("toy", path, base, base_text, new_rules, **numbers)
    assert proposal.new.calibration is None and "calibration:" not in proposal.text
    assert "calibration" in proposal.changes.summary()
    text = proposal_text(proposal, "toy", tmp_path)
    assert (
        "# note: the calibration (prior-shift, fitted on dev (12 examples) for scripted:student) "
        "was fitted for the current rules, so the proposal drops it; after writing, refit it: "
        "pld calibrate toy --write\n" in text
    )
    same = build_proposal("toy", path, base, base_text, base.rules, **numbers)
    assert same.new.calibration == base.calibration and same.text == base_text
    assert "drops it" not in proposal_text(same, "toy", tmp_path)


def test_the_regression_gate_says_when_the_baseline_was_not_calibrated(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    from pytest_pld.gates import evaluate_regression
    from pytest_pld.suite import RegressionGate

    suite, _ = calibrated_project(tmp_path)
    baseline = run_suite(suite, results_dir=tmp_path / "runs", apply_calibration=False)
    path = save_record(baseline, tmp_path / "baseline.json")
    record = run_suite(suite, results_dir=tmp_path / "runs")
    gate = RegressionGate("macro_f1", "baseline.json", margin=0.02)
    result = evaluate_regression(gate, record, path, create_command="x", n_resamples=100)
    assert result.passed  # calibrated 1.000 against raw 0.333: no drop
    assert (
        "the baseline's answers are raw (calibration switched off), this run's are calibrated "
        "(prior-shift, fitted on dev (12 examples) for scripted:student): the deltas include "
        "the calibration's effect besides any instruction change"
    ) in result.details
    same = evaluate_regression(gate, record, record_path(record), create_command="x")
    assert not [d for d in same.details if "calibrat" in d]


def record_path(record: RunRecord) -> Path:
    return Path(str(record.path))


def test_the_backend_digest_is_validated_and_round_trips(
    tmp_path: Path, scored_student: ScriptedBackend
) -> None:
    _, path = calibrated_project(tmp_path)
    cal = load_instruction_set(path).calibration
    assert cal is not None
    assert cal.backend_sha256 == scoring_digest({"provider": "scripted", "model": "student"})
    # where the server runs, how long it may answer, its seed: not the scores' identity
    assert scoring_digest({"model": "m", "base_url": "http://a", "seed": 1}) == scoring_digest(
        {"model": "m", "base_url": "http://b", "seed": 2}
    )
    assert scoring_digest({"model": "m", "dtype": "float32"}) != scoring_digest(
        {"model": "m", "dtype": "bfloat16"}
    )
    path.write_text(
        path.read_text().replace(f"backend_sha256: {cal.backend_sha256}", "backend_sha256: abc")
    )
    with pytest.raises(PldErrors) as err:
        load_instruction_set(path)
    (problem,) = err.value.errors
    assert problem.key == "calibration.fitted.backend_sha256"
    assert "expected 64 lowercase hex digits" in problem.message


def test_review_words_for_a_calibration_change() -> None:
    from pytest_pld.review.diff import calibration_notes

    fitted = {"student": "s:a", "system_prompt_sha256": "1", "split": "dev", "examples": 10}
    old = {"method": "prior-shift", "offsets": {"pos": 0.0, "neg": 1.0}, "fitted": fitted}
    assert calibration_notes(None, old) == (
        "added: prior-shift, fitted on dev (10 examples) for s:a",
    )
    assert calibration_notes(old, None) == ("removed: the answers become the raw student's",)
    new = {
        "method": "contextual",
        "offsets": {"pos": 0.5, "neg": 1.0},
        "fitted": {**fitted, "student": "s:b", "examples": 8, "inputs": ["N/A"]},
    }
    assert calibration_notes(old, new) == (
        "method prior-shift -> contextual",
        "offsets pos +0.0000 -> +0.5000",
        "refitted for another student (s:a -> s:b)",
        "refitted on another number of examples (10 -> 8)",
        "refitted on other content-free inputs",
    )
