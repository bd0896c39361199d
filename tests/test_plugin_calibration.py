"""The plugin with a calibrated instruction set: the `::calibration` gate, `--pld-no-calibration`,
and what the summary, the JUnit XML and the Markdown report say about calibrated answers.

The pytester projects use the scripted student with label scores (control flow only); the last
test runs the real packaged 0.5B student on a copy of the shipped StereoSet suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# pytester's in-process runs restore sys.modules afterwards, and numpy's C extension cannot be
# imported twice in one process: import what the plugin's runs use once, here, up front.
import numpy  # noqa: F401
import pytest
import sklearn.metrics  # noqa: F401
from helpers import Needs, biased_student, make_reviews_project

from pytest_pld.calibrate import calibrate_suite
from pytest_pld.suite import load_suite
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]
PLD = [sys.executable, "-m", "pytest_pld.cli"]

CONFTEST = """
from pytest_pld.testing import ScriptedBackend, use_scripted_backend


def scores(system, user, labels):
    return {"pos": float("great" in user), "neg": 1.5}


_undo = []


def pytest_configure(config):
    _undo.append(use_scripted_backend(ScriptedBackend("student", scores=scores)))


def pytest_unconfigure(config):
    while _undo:
        _undo.pop()()
"""

RULE = "rules:\n  - id: R1\n    text: Read the whole review.\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """The reviews project with a macro-F1 gate that only calibrated answers meet, and its
    calibration fitted on dev (in this process, with the same scripted scores)."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONFTEST)
    make_reviews_project(pytester.path)
    suite_file = pytester.path / "suites" / "toy.yaml"
    suite_file.write_text(
        suite_file.read_text().replace(
            'gates: {accuracy: ">= 0.5"}', 'gates: {accuracy: ">= 0.5", macro_f1: ">= 0.9"}'
        )
    )
    with scripted(ScriptedBackend("student", scores=biased_student)):
        calibrate_suite(load_suite(suite_file, pytester.path), cache_mode="off").write()
    return pytester


def test_a_fresh_calibration_passes_its_gate_and_every_report_says_calibrated(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest(
        "--pld-suite=toy", "-v", "--junitxml=junit.xml", "--pld-report=report.md"
    )
    result.assert_outcomes(passed=4)  # render, calibration, accuracy, macro_f1
    result.stdout.fnmatch_lines(
        [
            "*suites/toy.yaml::calibration PASSED*",
            "*suites/toy.yaml::macro_f1>=0.9 PASSED*",
            "suite toy: split test, 12 examples*",
            (
                "  answers: calibrated (prior-shift, fitted on dev (12 examples) for "
                "scripted:student; raw macro-F1 0.333 -> calibrated 1.000)"
            ),
            "*calibration * fresh for this student and prompt*pass*",
        ]
    )
    junit = (project.path / "junit.xml").read_text()
    assert 'name="pld.calibration" value="calibrated (prior-shift, fitted on dev' in junit
    assert 'name="pld.raw_macro_f1" value="0.333' in junit
    assert 'name="pld.raw_accuracy" value="0.5"' in junit
    report = (project.path / "report.md").read_text()
    assert "Answers: calibrated (prior-shift, fitted on dev (12 examples)" in report
    assert "| pos | 6 | 0 | 6 |" in report  # gold, raw, calibrated


def test_editing_one_rule_without_refitting_fails_the_gates_with_the_refit_command(
    project: pytest.Pytester,
) -> None:
    path = project.path / "instructions" / "toy.yaml"
    path.write_text(path.read_text().replace("rules: []\n", RULE))
    result = project.runpytest("--pld-suite=toy", "-v")
    assert result.ret == 1
    result.assert_outcomes(passed=1, failed=3)  # render passes; nothing is evaluated
    result.stdout.fnmatch_lines(["*suites/toy.yaml::calibration FAILED*"])
    out = result.stdout.str()
    assert "toy: the calibration of instructions/toy.yaml cannot be applied" in out
    assert "calibration.fitted.system_prompt_sha256: the calibration is stale: fitted with " in out
    assert "refit it and commit it with the rules: pld calibrate toy --write" in out
    failure = out[out.index("toy: the calibration of") : out.index("_ toy: accuracy")]
    assert failure.count("pld calibrate toy --write") == 1  # the refit command, said once
    # the metric gates fail with the runner's refusal, never on raw answers called calibrated
    assert "FAILED suites/toy.yaml::accuracy>=0.5 - toy: the suite could not be evaluated" in out
    assert out.count("hint: refit and commit it (pld calibrate toy --write), or see the raw") == 2

    # refitted (and the refit committed with the rule), the gates pass again
    with scripted(ScriptedBackend("student", scores=biased_student)):
        suite = load_suite(project.path / "suites" / "toy.yaml", project.path)
        calibrate_suite(suite, cache_mode="off").write()
    project.runpytest("--pld-suite=toy").assert_outcomes(passed=4)


def test_no_calibration_gates_the_raw_student_and_skips_the_calibration_item(
    project: pytest.Pytester,
) -> None:
    path = project.path / "instructions" / "toy.yaml"
    path.write_text(path.read_text().replace("rules: []\n", RULE))  # stale: ignored when off
    result = project.runpytest(
        "--pld-suite=toy", "--pld-no-calibration", "-v", "-rs", "--pld-report=report.md"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)  # raw macro-F1 0.333 < 0.9
    result.stdout.fnmatch_lines(
        [
            (
                "pld: calibration switched off (--pld-no-calibration): the gates judge the raw "
                "student*"
            ),
            "*::calibration SKIPPED (calibration switched off*",
            "  answers: raw: calibration switched off for this run (the set's prior-shift*",
            "SKIPPED *calibration switched off (--pld-no-calibration): the gates judge the raw*",
        ]
    )
    out = result.stdout.str()
    assert "re-run: pld run toy --split test --no-calibration" in out
    assert "Answers: raw: calibration switched off" in (project.path / "report.md").read_text()


def test_a_set_without_calibration_has_no_calibration_item(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(CONFTEST)
    make_reviews_project(pytester.path)
    result = pytester.runpytest("--pld-suite=toy", "--collect-only", "-q")
    assert "calibration" not in result.stdout.str()
    result.stdout.fnmatch_lines(["suites/toy.yaml::render", "suites/toy.yaml::accuracy>=0.5"])


@pytest.mark.integration
def test_the_real_student_gates_fail_on_a_rule_edited_without_refitting(
    pytester: pytest.Pytester, needs: Needs
) -> None:
    """A copy of the shipped StereoSet suite, calibrated for the packaged 0.5B student on 6 dev
    examples: the calibration gate passes on 3 test examples; after one rule is added without
    a refit, the calibration gate and the metric gate fail with the refit command."""
    needs.model("qwen2.5-coder-0.5b-instruct")
    for part in ("suites/stereoset.yaml", "instructions/stereoset.yaml"):
        (pytester.path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / part, pytester.path / part)
    data = pytester.path / "suites" / "data" / "stereoset"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "suites/data/stereoset/dev_reconstructed.json", data)
    pytester.makeini("[pytest]\n")
    # pld calibrate in a subprocess, as the gates below: the pytester fixture restores
    # sys.modules when the test ends, and torch and transformers imported here in-process
    # could not be imported again by a later test of this worker
    fitted = subprocess.run(
        [*PLD, "calibrate", "stereoset", "--limit", "6", "--write", "--root", str(pytester.path)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert fitted.returncode == 0, fitted.stdout + fitted.stderr
    selected = ["--pld-suite=stereoset", "--pld-limit=3", "-v", "-k", "calibration or accuracy"]
    # a subprocess: torch, like numpy, cannot be imported twice into one process
    result = pytester.runpytest_subprocess(*selected)
    result.stdout.fnmatch_lines(
        [
            "*suites/stereoset.yaml::calibration PASSED*",
            (
                "  answers: calibrated (prior-shift, fitted on dev (6 examples) for "
                "local:qwen2.5-coder-0.5b-instruct; raw macro-F1 *"
            ),
        ]
    )

    path = pytester.path / "instructions" / "stereoset.yaml"
    path.write_text(
        path.read_text().replace(
            "rules: []\n", "rules:\n  - id: R1\n    text: A nationality is race.\n"
        )
    )
    result = pytester.runpytest_subprocess(*selected)
    assert result.ret == 1
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "stereoset: the calibration of instructions/stereoset.yaml cannot be applied" in out
    assert "refit it and commit it with the rules: pld calibrate stereoset --write" in out
    assert "stereoset: the suite could not be evaluated" in out
    assert "refit with: pld calibrate stereoset --write" in out
