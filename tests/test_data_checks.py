"""A user's data never passes silently wrong: `pld validate` reads every split of a suite made
by `pld init` and rejects what does not fit the suite, with its file and line, before any model
time; `unknown_labels: skip` leaves such examples out and every report counts them.

The projects are written by `pld init` from a small CSV, as a new user would start; the student
in the run and gate tests is the scripted backend (control flow only, never evidence about a
model).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

# pytester's in-process runs restore sys.modules afterwards, and numpy's C extension cannot be
# imported twice in one process: import what the plugin's runs use once, here, up front.
import numpy  # noqa: F401
import pytest
import sklearn.metrics  # noqa: F401
from helpers import gate_project, init_rev, write_reviews

from pytest_pld import stats
from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.metrics import Predictions
from pytest_pld.suite import load_suite
from pytest_pld.testing import ScriptedBackend, scripted


def line_of_id(path: Path, ex_id: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.startswith(f"{ex_id},"))


def edit_row(path: Path, ex_id: str, edit: Callable[[list[str]], list[str]]) -> int:
    """Rewrite one row (as cells); returns its line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    at = line_of_id(path, ex_id)
    lines[at - 1] = ",".join(edit(lines[at - 1].split(",")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return at


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    return init_rev(tmp_path, capsys)[0]


def validate(capsys: pytest.CaptureFixture[str], root: Path) -> tuple[int, str, str]:
    code = main(["validate", "--root", str(root)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def set_key(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- what pld validate rejects -------------------------------------------------------------------


def typo_gold_label(root: Path) -> str:
    at = edit_row(root / "reviews.csv", "r3", lambda c: [*c[:-1], "postive"])
    return (
        f"reviews.csv:{at}: gold label 'postive' is not one of the suite's labels "
        "(did you mean 'positive'?): 1 example of split"
    )


def typo_suite_label(root: Path) -> str:
    set_key(root / "suites/rev.yaml", '"negative", "positive"]', '"negative", "positve"]')
    return (
        "rev.yaml:16: labels: label 'positve' has no example in any split (train, dev, test) "
        "(did you mean 'positive'?)"
    )


def typo_definition(root: Path) -> str:
    set_key(
        root / "instructions/rev.yaml",
        '# label_definitions:\n#   "negative": "When an example is negative."  # 18 examples\n'
        '#   "positive"',
        'label_definitions:\n  "negative": "When an example is negative."  # 18 examples\n'
        '  "postive"',
    )
    return (
        "rev.yaml:14: label_definitions.postive: a definition of 'postive', which is not a label "
        "of the suites that use this set (did you mean 'positive'?)"
    )


def empty_label(root: Path) -> str:
    at = edit_row(root / "reviews.csv", "r4", lambda c: [*c[:-1], ""])
    return f"reviews.csv:{at}: 'label' must be a non-empty string or integer, got ''"


def empty_text(root: Path) -> str:
    at = edit_row(root / "reviews.csv", "r5", lambda c: [c[0], "  ", c[2]])
    return f"reviews.csv:{at}: 1 example of split"


def duplicate_id(root: Path) -> str:
    first = line_of_id(root / "reviews.csv", "r5")
    at = edit_row(root / "reviews.csv", "r6", lambda c: ["r5", *c[1:]])
    return f"reviews.csv:{at}: duplicate id 'r5' (first on line {first})"


def missing_field(root: Path) -> str:
    set_key(root / "suites/rev.yaml", "{{ text }}", "{{ txt }}")
    return (
        "rev.yaml:17: user_template: the user template reads 'txt', a field the data "
        "(reviews.csv) does not have (did you mean 'text'?)"
    )


def not_utf8(root: Path) -> str:
    path = root / "reviews.csv"
    at = line_of_id(path, "r8")
    path.write_bytes(path.read_bytes().replace(b"r8,", "r8,caf\u00e9 ".encode("latin-1")))
    return f"reviews.csv:{at}: not UTF-8 text: byte 0xe9"


def missing_file(root: Path) -> str:
    (root / "reviews.csv").unlink()
    return "rev.yaml:12: splits: data file 'reviews.csv' is missing (splits train, dev, test)"


@pytest.mark.parametrize(
    "spoil",
    [
        typo_gold_label,
        typo_suite_label,
        typo_definition,
        empty_label,
        empty_text,
        duplicate_id,
        missing_field,
        not_utf8,
        missing_file,
    ],
)
def test_pld_validate_rejects_bad_data_with_its_file_and_line(
    project: Path, capsys: pytest.CaptureFixture[str], spoil: Callable[[Path], str]
) -> None:
    code, out, _ = validate(capsys, project)
    assert code == 0 and "2 of 2 files valid" in out, out
    expected = spoil(project)
    code, out, err = validate(capsys, project)
    assert code == 1
    assert expected in err, err
    assert "1 of 2 files valid" in out
    # each error once, even where several splits read the same file
    errors = [line for line in err.splitlines() if line.startswith("error ")]
    assert len(errors) == len(set(errors))


def test_a_suite_label_typo_also_names_the_gold_labels_it_leaves_unknown(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo_suite_label(project)
    _, _, err = validate(capsys, project)
    assert "gold label 'positive' is not one of the suite's labels (did you mean 'positve'?)" in err


def test_a_csv_with_a_byte_order_mark_reads_like_one_without(tmp_path: Path) -> None:
    plain, marked = tmp_path / "plain.csv", tmp_path / "marked.csv"
    write_reviews(plain)
    write_reviews(marked, bom=True)
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    from pytest_pld.datasets.table import load_csv

    a, b = load_csv(plain, {}), load_csv(marked, {})
    assert [(e.id, e.label, dict(e.fields)) for e in a] == [
        (e.id, e.label, dict(e.fields)) for e in b
    ]
    assert a[0].id == "r0" and list(a[0].fields) == ["text"]


def test_the_runner_applies_the_same_checks_before_any_model_call(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo_gold_label(project)
    backend = ScriptedBackend("demo")
    with scripted(backend):
        code = main(["run", "rev", "--model", "scripted:demo", "--root", str(project)])
    err = capsys.readouterr().err
    assert code != 0 and "gold label 'postive' is not one of the suite's labels" in err
    assert backend.classify_calls == 0


# --- unknown_labels: skip ------------------------------------------------------------------------


def test_unknown_labels_must_be_error_or_skip(project: Path) -> None:
    suite = project / "suites/rev.yaml"
    suite.write_text(suite.read_text() + "unknown_labels: skp\n")
    with pytest.raises(PldError) as info:
        load_suite(suite, project)
    assert "unknown_labels: expected error or skip, got 'skp' (did you mean 'skip'?)" in str(
        info.value
    )


@pytest.fixture
def skipping(project: Path) -> Path:
    """The project with two examples of the test split outside the labels, and skip set."""
    suite = load_suite(project / "suites/rev.yaml", project)
    test_ids = [e.id for e in suite.load_examples("test")]
    for ex_id, label in zip(test_ids[:2], ("mixed", "postive")):
        edit_row(project / "reviews.csv", ex_id, lambda c, label=label: [*c[:-1], label])
    path = project / "suites/rev.yaml"
    path.write_text(path.read_text() + "unknown_labels: skip\n")
    return project


SKIPPED = "2 examples skipped, gold label not a suite label (mixed 1, postive 1)"


def test_skipped_examples_are_counted_by_validate_suites_and_run(
    skipping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = validate(capsys, skipping)
    assert code == 0 and f"note: split test: {SKIPPED} (unknown_labels: skip)" in out
    assert main(["suites", "--root", str(skipping)]) == 0
    out = capsys.readouterr().out
    suite = load_suite(skipping / "suites/rev.yaml", skipping)
    n = len(suite.load_examples("test"))
    assert re.search(
        rf"^  test +{n} examples: negative \d+, positive \d+; {re.escape(SKIPPED)}$",
        out,
        re.MULTILINE,
    )
    with scripted(ScriptedBackend("demo")):
        code = main(["run", "rev", "--model", "scripted:demo", "--root", str(skipping)])
    out = capsys.readouterr().out
    assert code == 0 and f"  note: {SKIPPED}" in out
    path = Path(out.split("run record: ")[1].strip())
    record = json.loads(path.read_text())
    assert record["skipped"] == {"mixed": 1, "postive": 1}
    assert len(record["results"]) == n
    assert {r["gold"] for r in record["results"]} <= {"negative", "positive"}
    from pytest_pld.record import load_record
    from pytest_pld.report.html_page import build_html

    assert f"skipped: <code>{SKIPPED}</code>" in build_html(load_record(path), resamples=20).html


def test_the_gate_summary_junit_and_markdown_count_skips_and_show_the_snapshot_gate(
    skipping: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    gate_project(pytester, skipping)
    n = len(load_suite(skipping / "suites/rev.yaml", skipping).load_examples("test"))
    result = pytester.runpytest(
        "--pld-suite=rev",
        "--pld-model=scripted:demo",
        "--pld-limit=500",
        "--junitxml=junit.xml",
        "--pld-report=report.md",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=3)
    out = result.stdout.str()
    limit = f"the limit of 500 is more than the split's {n} examples: all {n} were evaluated"
    assert f"; {SKIPPED}; {limit}" in out
    # the snapshot gate has its row, like the render check and the threshold gates
    assert re.search(
        r"^  snapshot +- +- += instructions/rev\.prompt\.txt +pass$", out, re.MULTILINE
    )
    markdown = (pytester.path / "report.md").read_text()
    assert SKIPPED in markdown and "| `snapshot` |" in markdown
    props = {
        p.get("name"): p.get("value")
        for p in ET.parse(pytester.path / "junit.xml").getroot().iter("property")
    }
    assert props["pld.skipped"] == "2" and props["pld.skipped_labels"] == "mixed 1, postive 1"
    assert props["pld.limit"] == "500"


def test_a_failing_snapshot_is_a_row_of_the_summary(
    project: Path, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    gate_project(pytester, project)
    snapshot = pytester.path / "instructions/rev.prompt.txt"
    snapshot.write_text(snapshot.read_text() + "An edit nobody rendered.\n")
    result = pytester.runpytest(
        "--pld-suite=rev", "--pld-model=scripted:demo", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2, failed=1)
    assert re.search(
        r"^  snapshot +- +- += instructions/rev\.prompt\.txt +FAIL$",
        result.stdout.str(),
        re.MULTILINE,
    )


def test_a_limit_within_the_split_adds_no_note(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted(ScriptedBackend("demo")):
        code = main(
            ["run", "rev", "--model", "scripted:demo", "--limit", "3", "--root", str(project)]
        )
    out = capsys.readouterr().out
    assert code == 0 and "rev/test: 3 examples" in out and "note:" not in out


# --- instruction sets: nothing silently ignored --------------------------------------------------


def test_a_shared_set_may_define_a_label_only_another_of_its_suites_has(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two suites share instructions/rev.yaml; a definition of 'mixed', a label of the second
    suite only, is fine for both (the default template shows each suite its own labels)."""
    write_reviews(project / "three.csv")
    edit_row(project / "three.csv", "r0", lambda c: [*c[:-1], "mixed"])
    edit_row(project / "three.csv", "r1", lambda c: [*c[:-1], "mixed"])
    text = (project / "suites/rev.yaml").read_text().replace("name: rev", "name: three")
    text = text.replace('"reviews.csv"', '"three.csv"')
    text = text.replace('["negative", "positive"]', '["negative", "positive", "mixed"]')
    (project / "suites/three.yaml").write_text(text)
    iset = project / "instructions/rev.yaml"
    iset.write_text(iset.read_text() + 'label_definitions: {mixed: "Both."}\n')
    code, out, err = validate(capsys, project)
    assert "label_definitions" not in err
    assert "ok    instructions/rev.yaml" in out
    with scripted(ScriptedBackend("demo")):
        assert main(["run", "rev", "--model", "scripted:demo", "--root", str(project)]) == 0
    capsys.readouterr()
    iset.write_text(iset.read_text().replace("{mixed:", "{mixd:"))
    code, out, err = validate(capsys, project)
    assert code == 1
    message = (
        "label_definitions.mixd: a definition of 'mixd', which is not a label of the suites "
        "that use this set (did you mean 'mixed'?)"
    )
    assert err.count(message) == 1  # printed under the instruction file only
    # the suites are valid files: the error is the instruction set's
    assert "2 of 3 files valid" in out
    assert (
        "ok    suites/rev.yaml  its own content is valid; see the errors of instructions/rev.yaml"
        in out
    )


def test_rule_and_worked_example_labels_must_be_suite_labels(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iset = project / "instructions/rev.yaml"
    text = iset.read_text().replace(
        "rules: []",
        "rules:\n  - {id: R1, text: Praise means positive., label: postive}\n"
        "examples:\n  - {input: 'Text: dull', label: negatve}",
    )
    iset.write_text(text)
    code, _, err = validate(capsys, project)
    assert code == 1
    assert "rules[0].label: label 'postive', which is not a label" in err
    assert "examples[0].label: label 'negatve', which is not a label" in err
    assert "(did you mean 'negative'?)" in err


# --- reports -------------------------------------------------------------------------------------


def test_the_tie_rate_gets_a_wilson_interval_on_few_examples() -> None:
    """No tie in 50 answers: the bootstrap says 0.000..0.000, Wilson 0.000..0.071."""
    n = 50
    preds = Predictions(labels=("a", "b"), gold=("a",) * n, pred=("a",) * n, tie=(False,) * n)
    found = stats.metric_interval("tie_rate", preds)
    assert found.method == "wilson"
    assert found.low == 0.0 and found.high == pytest.approx(0.0713, abs=1e-4)
    # answers that do not record ties (a server's) are not counted as untied
    partial = Predictions(
        labels=("a", "b"), gold=("a",) * n, pred=("a",) * n, tie=(True,) + (None,) * (n - 1)
    )
    assert stats.metric_interval("tie_rate", partial).n_effective == 1


def test_init_prints_the_bound_its_suite_file_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = init_rev(tmp_path, capsys)
    printed = re.search(
        r"always '(\w+)', the test split's most frequent label: macro-F1 (0\.\d{4})\), "
        r"enable the gate macro_f1 > (0\.\d+)",
        out,
    )
    assert printed, out
    constant, floor, bound = printed.groups()
    suite = (root / "suites/rev.yaml").read_text()
    assert f"(always {constant}, the split's most frequent label: {floor})" in suite
    assert f'# macro_f1: "> {bound}"' in suite
    assert f"above {bound}," in suite
