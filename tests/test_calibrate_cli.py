"""`pld calibrate` and the calibration checks of `pld validate`.

Control flow (what is printed, written, refused) runs with a scripted student that returns
label scores; it is never evidence about a model. The real packaged student runs in the
integration test at the end: its label scores are fitted, and the numbers the written section
claims are recomputed from the run record of the same examples.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from helpers import REVIEWS_INSTRUCTIONS as INSTRUCTIONS
from helpers import biased_student, run_pld
from helpers import make_reviews_project as make_project

from pytest_pld import metrics
from pytest_pld.calibration import CONTENT_FREE, CONTEXTUAL, PRIOR_SHIFT
from pytest_pld.errors import PldError
from pytest_pld.instructions import load_instruction_set
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]


def test_pld_calibrate_prints_before_after_and_a_diff_and_writes_only_with_write(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_project(tmp_path)
    code, out, err = run_pld(capsys, "calibrate", "toy", "--root", str(tmp_path))
    assert code == 0, err
    assert "# prior-shift, fitted on dev (12 examples) for scripted:student" in out
    assert "macro_f1  0.333 [" in out  # raw: neg for all 12, half of them right
    assert "accuracy  0.500 [" in out and "1.000 [1.000, 1.000]" in out
    assert "+calibration:\n+  method: prior-shift\n+  offsets:\n" in out
    assert "nothing written; add --write to write it" in out
    assert path.read_text(encoding="utf-8") == INSTRUCTIONS
    assert scored_student.classify_calls == 12

    code, out, err = run_pld(capsys, "calibrate", "toy", "--write", "--root", str(tmp_path))
    assert code == 0, err
    assert "model calls: 0 (cache hits: 12)" in out  # the raw scores come from the cache
    assert "wrote instructions/toy.yaml" in out
    text = path.read_text(encoding="utf-8")
    assert text.startswith(INSTRUCTIONS)  # comments and order kept; the section is added
    cal = load_instruction_set(path).calibration
    assert cal is not None and cal.method == PRIOR_SHIFT
    assert cal.offsets["pos"] - cal.offsets["neg"] > 0.5  # pos moved past neg for great reviews
    assert (cal.split, cal.examples, cal.macro_f1_before, cal.macro_f1_after) == (
        "dev",
        12,
        0.3333,
        1.0,
    )
    assert run_pld(capsys, "validate", "--root", str(tmp_path))[0] == 0

    code, out, _ = run_pld(capsys, "calibrate", "toy", "--root", str(tmp_path))
    assert code == 0 and "already holds this calibration; nothing to write" in out


def test_a_limit_larger_than_the_split_and_skipped_examples_get_the_notes_pld_run_gives(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path)
    code, out, err = run_pld(capsys, "calibrate", "toy", "--limit", "100", "--root", str(tmp_path))
    assert code == 0, err
    note = "the limit of 100 is more than the split's 12 examples: all 12 were evaluated"
    assert f"# note: {note}\n" in out
    assert "fitted on dev (12 examples)" in out
    code, out, err = run_pld(capsys, "calibrate", "toy", "--limit", "12", "--root", str(tmp_path))
    assert code == 0, err
    assert "the limit of" not in out  # a limit the split can give is not remarked on
    # examples `unknown_labels: skip` leaves out are counted as `pld run` counts them
    suite = tmp_path / "suites" / "toy.yaml"
    suite.write_text(suite.read_text() + "unknown_labels: skip\n")
    with (tmp_path / "data" / "dev.jsonl").open("a") as dev:
        dev.write(json.dumps({"id": "dev-mixed", "label": "mixed", "text": "so-so"}) + "\n")
    code, out, err = run_pld(capsys, "calibrate", "toy", "--root", str(tmp_path))
    assert code == 0, err
    assert "# note: 1 example skipped, gold label not a suite label (mixed 1)\n" in out


def test_validate_reports_a_stale_calibration_with_the_command_that_refits_it(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_project(tmp_path)
    assert run_pld(capsys, "calibrate", "toy", "--write", "--root", str(tmp_path))[0] == 0
    written = path.read_text(encoding="utf-8")
    path.write_text(written.replace("positive or negative.", "positive or negative, please."))
    code, out, err = run_pld(capsys, "validate", "--root", str(tmp_path))
    assert code == 1 and "1 of 2 files valid" in out
    assert "toy.yaml:" in err and "calibration.fitted.system_prompt_sha256" in err
    assert "the calibration is stale: fitted with another system prompt" in err
    assert "refit with: pld calibrate toy --write" in err

    path.write_text(written)
    suite = tmp_path / "suites" / "toy.yaml"
    suite.write_text(suite.read_text().replace("scripted:student", "scripted:other"))
    code, _, err = run_pld(capsys, "validate", "--root", str(tmp_path))
    assert code == 1
    assert "fitted for student scripted:student, but the student is scripted:other" in err
    # a label the suite does not have
    suite.write_text(suite.read_text().replace("[pos, neg]", "[pos, neg, mixed]"))
    code, _, err = run_pld(capsys, "validate", "--root", str(tmp_path))
    assert code == 1 and "calibration.offsets: no offset for mixed (suite toy has labels" in err


def test_pld_calibrate_refuses_the_gate_split(
    tmp_path: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path)
    code, _, err = run_pld(capsys, "calibrate", "toy", "--split", "test", "--root", str(tmp_path))
    assert code == 2
    assert "refusing to fit a calibration on 'test', the suite's gate split" in err
    assert scored_student.classify_calls == 0


def test_pld_calibrate_refuses_a_student_without_label_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_project(tmp_path)
    with scripted(ScriptedBackend("student", classify=lambda s, u, labels: "neg")):
        code, _, err = run_pld(capsys, "calibrate", "toy", "--root", str(tmp_path))
    assert code == 2
    assert "scripted:student returned no label scores for 12 of 12 examples" in err
    assert "a calibration needs every label's score for every example" in err
    assert path.read_text(encoding="utf-8") == INSTRUCTIONS


def test_contextual_calibration_scores_only_the_content_free_inputs_beyond_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[str] = []

    def scores(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
        seen.append(user)
        return biased_student(system, user, labels)

    path = make_project(tmp_path)
    with scripted(ScriptedBackend("student", scores=scores)):
        argv = ["calibrate", "toy", "--method", CONTEXTUAL, "--write", "--root", str(tmp_path)]
        code, out, err = run_pld(capsys, *argv)
    assert code == 0, err
    assert seen[12:] == [f"Review: {text}".strip() for text in CONTENT_FREE]
    cal = load_instruction_set(path).calibration
    assert cal is not None and cal.method == CONTEXTUAL and cal.inputs == CONTENT_FREE
    # content-free inputs score pos 0 and neg 1.5: the offsets divide by that prior
    assert cal.offsets["pos"] - cal.offsets["neg"] == pytest.approx(1.5, abs=1e-3)
    assert "inputs: [N/A, '', '[MASK]']" in path.read_text(encoding="utf-8")
    assert "in-sample" not in out  # contextual does not fit on the split's labels


# --- with the real packaged student -------------------------------------------------------------


@pytest.mark.integration
def test_pld_calibrate_with_the_real_small_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped StereoSet suite on 8 dev examples with the packaged 0.5B student: its label
    scores are fitted, the section is written, the macro-F1 it claims is what its offsets give
    on the run record of the same examples, and editing the prompt makes it stale."""
    for part in ("suites/stereoset.yaml", "instructions/stereoset.yaml"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, tmp_path / part)
    data = tmp_path / "suites" / "data" / "stereoset"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "suites/data/stereoset/dev_reconstructed.json", data)
    argv = ["calibrate", "stereoset", "--limit", "8", "--write", "--root", str(tmp_path)]
    try:
        code, out, err = run_pld(capsys, *argv)
    except PldError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"the packaged student is not available here: {exc}")
    if code != 0 and "not installed" in err:
        pytest.skip(f"the packaged student is not available here: {err}")
    assert code == 0, err
    assert "model calls: 8 (cache hits: 0)" in out
    path = tmp_path / "instructions" / "stereoset.yaml"
    cal = load_instruction_set(path).calibration
    assert cal is not None and cal.student == "local:qwen2.5-coder-0.5b-instruct"
    assert set(cal.offsets) == {"gender", "profession", "race", "religion"}
    assert cal.examples == 8 and cal.macro_f1_after is not None

    # the run of the same examples (all from the cache) applies the calibration: its recorded
    # answers are the offsets' answers of its recorded raw scores, its raw answers the
    # uncalibrated run's, and they give back the numbers the section claims
    argv = ["run", "stereoset", "--split", "dev", "--limit", "8", "--root", str(tmp_path)]
    code, out, err = run_pld(capsys, *argv)
    assert code == 0, err
    assert "cache hits 8, model calls 0" in out
    assert "  answers: calibrated (prior-shift, fitted on dev (8 examples) for local:" in out
    record = json.loads(Path(out.split("run record: ")[1].strip()).read_text())
    assert record["calibration"]["applied"] is True
    assert record["calibration"]["offsets"] == dict(cal.offsets)
    results = record["results"]
    assert all(set(r["scores"]) == set(cal.offsets) for r in results)
    calibrated = tuple(cal.answer(r["scores"], r["id"]) for r in results)
    assert tuple(r["pred"] for r in results) == calibrated
    code, out, err = run_pld(capsys, *argv, "--no-calibration")
    assert code == 0, err
    plain = json.loads(Path(out.split("run record: ")[1].strip()).read_text())
    assert plain["calibration"]["applied"] is False
    raw = tuple(r["pred"] for r in plain["results"])
    assert tuple(r["raw_pred"] for r in results) == raw
    labels = tuple(record["labels"])
    gold = tuple(r["gold"] for r in results)
    assert round(metrics.macro_f1(metrics.Predictions(labels, gold, raw)), 4) == cal.macro_f1_before
    after = metrics.macro_f1(metrics.Predictions(labels, gold, calibrated))
    assert round(after, 4) == cal.macro_f1_after
    assert run_pld(capsys, "validate", "--root", str(tmp_path))[0] == 0

    # contextual: three content-free inputs more, label-free offsets
    argv = ["calibrate", "stereoset", "--limit", "8", "--method", CONTEXTUAL]
    code, out, err = run_pld(capsys, *argv, "--root", str(tmp_path))
    assert code == 0, err
    assert "model calls: 3 (cache hits: 8)" in out and "+    inputs: [N/A, '', '[MASK]']" in out

    path.write_text(path.read_text().replace("Decide which domain", "Say which domain"))
    code, _, err = run_pld(capsys, "validate", "--root", str(tmp_path))
    assert code == 1 and "refit with: pld calibrate stereoset --write" in err
