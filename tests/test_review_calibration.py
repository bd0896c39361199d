"""`pld review` of instruction sets with a calibration: a calibration change beside the rule
changes, metric deltas with each side's own calibration (and the raw students' beside them), a
stale side compared raw, a comment-only change still "no semantic change".

The student is the scripted backend with label scores (control flow only): it says neg for
every review unless an offset moves pos past neg for the great ones.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import commit, git, isolate_git, make_reviews_project

from pytest_pld.calibrate import calibrate_suite
from pytest_pld.cli import main
from pytest_pld.review.diff import SET_FIELDS
from pytest_pld.suite import load_suite
from pytest_pld.testing import ScriptedBackend

SET = "instructions/toy.yaml"
RULE = "rules:\n  - id: R1\n    text: Read the whole review.\n"


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(monkeypatch)


def refit(repo: Path) -> None:
    calibrate_suite(load_suite(repo / "suites" / "toy.yaml", repo)).write()


@pytest.fixture
def repo(tmp_path: Path, scored_student: ScriptedBackend) -> Path:
    """A git repository whose committed set carries a calibration fitted for its prompt."""
    root = tmp_path / "repo"
    make_reviews_project(root)
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".pld/\n")
    refit(root)
    commit(root, "calibrated")
    return root


def review(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> str:
    code = main(["review", "--root", str(repo), "--resamples", "100", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def edit(repo: Path, old: str, new: str) -> None:
    path = repo / SET
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_the_calibration_is_a_reviewed_field() -> None:
    assert "calibration" in SET_FIELDS


def test_a_rule_edited_without_refitting_is_compared_raw_with_the_stale_side_named(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(repo, "rules: []\n", RULE)
    out = review(capsys, repo)
    assert f"{SET}: v2 · 1 added\n" in out  # the calibration itself did not change
    assert "    note: head: the calibration is stale: fitted with another system prompt" in out
    assert "Both sides are compared raw (without calibration); the gates fail until" in out
    assert (
        "    answers: base raw (calibration switched off); head raw (calibration switched off)"
        in out
    )
    assert "raw students" not in out  # neither side is calibrated: the deltas are raw


def test_a_rule_edited_and_refitted_shows_the_refit_and_calibrated_deltas_with_raw_beside(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(repo, "rules: []\n", RULE)
    refit(repo)
    out = review(capsys, repo)
    assert f"{SET}: v2 · 1 added; calibration changed\n" in out
    assert "  calibration changed:\n    refitted for another rendered prompt\n" in out
    assert "answers: base calibrated (prior-shift, fitted on dev (12 examples)" in out
    assert "head calibrated (prior-shift" in out
    assert "    raw students (each side's answers before calibration):" in out
    rows = re.findall(r"^    accuracy +(\S+) +(\S+) +(\S+)", out, flags=re.MULTILINE)
    assert rows == [("1.000", "1.000", "+0.000"), ("0.500", "0.500", "+0.000")]

    md = review(capsys, repo, "--format", "md")
    assert "**Calibration:** refitted for another rendered prompt" in md
    assert "Raw students (each side's answers before calibration):" in md
    data = json.loads(review(capsys, repo, "--format", "json"))
    (field,) = [f for f in data["sets"][0]["diff"]["fields"] if f["field"] == "calibration"]
    assert field["notes"] == ["refitted for another rendered prompt"]


def test_changed_offsets_alone_are_compared_not_called_an_unchanged_prompt(
    repo: Path, scored_student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (repo / SET).read_text()
    (old,) = re.findall(r'    "pos": (\S+)\n', text)
    edit(repo, f'    "pos": {old}\n', '    "pos": -5.0\n')  # every answer neg again
    out = review(capsys, repo)
    assert f"{SET}: v2 · no rule changes; calibration changed\n" in out
    assert f"    offsets pos {float(old):+.4f} -> -5.0000\n" in out
    assert "prompt unchanged" not in out
    accuracy = re.search(r"^    accuracy +(\S+) +(\S+) +(\S+)", out, flags=re.MULTILINE)
    assert accuracy is not None and accuracy.groups() == ("1.000", "0.500", "-0.500")
    assert "note: base and head are calibrated differently" in out


def test_a_comment_in_the_calibration_section_is_no_semantic_change(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(repo, "  method: prior-shift\n", "  method: prior-shift  # fitted by pld calibrate\n")
    out = review(capsys, repo)
    assert f"{SET}: v2 · no semantic change" in out
