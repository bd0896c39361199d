"""`pld distill` selecting on a calibrated student, with a scripted student that returns label
scores (control flow, never evidence that a model follows rules): a rule that only moves the
label prior loses to one that adds what no calibration can, the student is called no more
often than when selecting on raw answers, and the proposal carries a fresh calibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import make_review_project

from pytest_pld.calibration import fit_prior_shift
from pytest_pld.cli import main
from pytest_pld.crossfit import answered, cross_fitted, parts_of
from pytest_pld.distill.pipeline import distill
from pytest_pld.distill.settings import DistillSettings
from pytest_pld.folds import split_holdout
from pytest_pld.instructions import load_instruction_set
from pytest_pld.record import ExampleResult
from pytest_pld.suite import Suite
from pytest_pld.testing import ScriptedBackend, scripted

#: adds what no calibration can: the student then notices every great review
REAL = "If the review praises the show, then the label is pos."
#: only moves the prior: the student answers pos more often, whatever the review says
PRIOR = "If in doubt, then the label is neg."


def make_project(root: Path) -> Suite:
    """A two-label suite with 60 dev reviews (odd ones great and pos) and traces for two
    clusters: PRIOR (4 traces: the larger cluster, tried first) and REAL (3)."""
    traces = [(0, PRIOR), (2, PRIOR), (4, PRIOR), (6, PRIOR), (1, REAL), (3, REAL), (5, REAL)]
    return make_review_project(
        root,
        {"train": 20, "dev": 60, "test": 4},
        traces,
        head="# the toy rules; this comment survives the write\n",
    )


def rules_of(system: str) -> str:
    return system.split("Rules:")[1].split("Examples:")[0] if "Rules:" in system else ""


def student_scores(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Biased to neg. Without rules it notices only half of the great reviews (number % 4 ==
    1); REAL makes it notice every one; PRIOR adds 1.5 to pos everywhere, which is what an
    offset does, so a calibration refitted for the set takes it back out."""
    rules = rules_of(system)
    number = int(user.split()[1].rstrip(":"))
    noticed = "great" in user and (number % 4 == 1 or "praises" in rules)
    return {"pos": -2.0 + float(noticed) + (1.5 if "doubt" in rules else 0.0), "neg": 0.0}


def settings(suite: Suite, **kw: Any) -> DistillSettings:
    base: dict[str, Any] = {
        "traces": suite.root / "traces" / "toy.jsonl",
        "teacher": "none",
        "embedder": "tfidf",
        "min_samples": 2,
        "rounds": 0,
        "limit_dev": None,
        "limit_holdout": None,
        "shots": 0,
    }
    return DistillSettings(**(base | kw))


def run(root: Path, **kw: Any) -> tuple[Any, ScriptedBackend, Suite]:
    suite = make_project(root)
    backend = ScriptedBackend("student", scores=student_scores)
    with scripted(backend):
        proposal = distill(suite, settings(suite, **kw), log=lambda s: None)
    return proposal, backend, suite


def kept(proposal: Any) -> list[str]:
    return [d["text"] for d in proposal.decisions if d["accepted"]]


def test_calibrated_selection_keeps_the_rule_that_adds_beyond_the_prior(tmp_path: Path) -> None:
    proposal, backend, suite = run(tmp_path / "calibrated")
    raw, raw_backend, _ = run(tmp_path / "raw", select_on="raw")
    # selecting on raw answers keeps the prior shift (it lifts raw macro-F1) and then REAL
    assert kept(raw) == [PRIOR, REAL] and raw.settings["judged_on"] == "raw"
    # on calibrated answers PRIOR gains nothing a refitted calibration does not give
    assert kept(proposal) == [REAL] and proposal.settings["judged_on"] == "calibrated"
    prior, real = (next(d for d in proposal.decisions if d["text"] == t) for t in (PRIOR, REAL))
    assert prior["reason"] == "no dev gain" and prior["delta"] == 0.0
    assert prior["after"]["raw_macro_f1"] > prior["before"]["raw_macro_f1"]  # raw, it helped
    assert real["delta"] > 0 and real["after"]["macro_f1"] == 1.0
    assert real["after"]["raw_macro_f1"] == real["before"]["raw_macro_f1"]  # raw, it did not
    assert [r.text for r in proposal.new.rules] == [REAL]
    # the same number of sets on each fold, so no more student calls than raw selection
    rest, held = split_holdout(suite.load_examples("dev"), 1 / 3)
    assert backend.classify_calls == raw_backend.classify_calls == 3 * len(rest) + 2 * len(held)


def test_the_proposal_reports_raw_and_calibrated_and_carries_a_fresh_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = make_project(tmp_path)
    argv = ["distill", "toy", "--traces", str(tmp_path / "traces" / "toy.jsonl")]
    argv += ["--teacher", "none", "--embedder", "tfidf", "--min-samples", "2", "--rounds", "0"]
    argv += ["--limit-dev", "100", "--limit-holdout", "100", "--shots", "0"]
    with scripted(ScriptedBackend("student", scores=student_scores)):
        assert main([*argv, "--root", str(tmp_path), "--write"]) == 0
    out = capsys.readouterr().out
    rest, held = split_holdout(suite.load_examples("dev"), 1 / 3)
    assert f"# dev/held-back (n={len(held)}): raw and calibrated answers " in out
    assert "the final choice read the calibrated ones" in out
    assert "round 1  selection: 1 of 2 candidates kept; calibrated dev macro-F1 1.000" in out
    for row in ("current, raw", "current, calibrated", "proposed, raw", "proposed, calibrated"):
        assert f"  {row} " in out
    assert "  gold " in out and "proposed - current, calibrated: macro-F1 +" in out
    # the diff carries the calibration, and the conditions its calibrated rows and the rule
    assert "+calibration:\n+  method: prior-shift\n" in out
    assert "# calibration (in the diff; refitted for the proposed rules)" in out
    assert f"fitted on dev ({len(rest) + len(held)} examples) for scripted:student" in out
    assert "PLD + calibration" in out and "ship rule:" in out
    written = load_instruction_set(suite.instructions_path)
    cal = written.calibration
    assert [r.text for r in written.rules] == [REAL] and cal is not None
    assert (cal.student, cal.split, cal.examples) == ("scripted:student", "dev", len(rest + held))
    assert cal.is_stale("scripted:student", suite.system_prompt(written)) is None
    text = suite.instructions_path.read_text(encoding="utf-8")
    assert text.startswith("# the toy rules; this comment survives the write\n")
    assert main(["validate", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    # a rule edited without refitting: the calibration is stale, and validate says how to refit
    suite.instructions_path.write_text(text.replace("praises the show", "praises it"))
    assert main(["validate", "--root", str(tmp_path)]) == 1
    assert "pld calibrate toy --write" in capsys.readouterr().err


def test_a_student_without_label_scores_selects_on_raw_answers_and_says_so(
    tmp_path: Path,
) -> None:
    suite = make_project(tmp_path)

    def answer(system: str, user: str, labels: Sequence[str]) -> str:
        scores = student_scores(system, user, labels)
        return max(labels, key=lambda label: scores[label])

    with scripted(ScriptedBackend("student", classify=answer)):
        proposal = distill(suite, settings(suite), log=lambda s: None)
    assert proposal.settings["judged_on"] == "raw" and kept(proposal) == [PRIOR, REAL]
    assert any(
        n.startswith("selected on raw answers: scripted:student returned no score for every")
        for n in proposal.notes
    )
    assert proposal.calibration is None and "calibration:" not in proposal.text
    assert proposal.held_back is not None
    assert list(proposal.held_back.answers) == ["current, raw", "proposed, raw"]
    assert "it returned no label scores" in proposal.held_back.lines()[0]


# --- cross-fitting ------------------------------------------------------------------------------


def test_parts_keep_units_together_and_do_not_depend_on_the_order() -> None:
    units = [f"g{i % 7}" for i in range(40)]
    parts = parts_of(units)
    assert sorted(set(parts)) == [0, 1, 2, 3]
    by_unit = {u: p for u, p in zip(units, parts)}
    assert all(by_unit[u] == p for u, p in zip(units, parts))  # a unit in one part
    again = parts_of(list(reversed(units)))
    assert {u: p for u, p in zip(reversed(units), again)} == by_unit


def test_no_example_is_answered_by_offsets_fitted_on_it() -> None:
    """e0 is the only pos review. Fitted on all eight, the offsets lift pos just enough to get
    it right (in-sample, every answer is); cross-fitted, e0 is answered by offsets fitted on
    reviews that are all neg, which have nothing to gain from lifting pos."""
    results = [
        ExampleResult(
            f"e{i}", "pos" if i == 0 else "neg", "neg", 1.0, 1, scores={"pos": -1.0 - (i > 0)}
        )
        for i in range(8)
    ]
    for r in results:
        assert r.scores is not None
        r.scores["neg"] = 0.0
    labels = ["pos", "neg"]
    in_sample = answered(fit_prior_shift(results, labels, student="scripted:s"), results, labels)
    assert [p for p, _ in in_sample] == [r.gold for r in results]
    out = cross_fitted(results, labels, None, student="scripted:s")
    assert out.pred == ("neg",) * 8 and out.tie == (False,) * 8
    assert len(out.offsets) == 4  # one fit per part, each without the part it answers
