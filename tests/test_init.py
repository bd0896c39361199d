"""`pld init`: a suite from a labelled file, its bad input, and what it writes (or does not)."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_pld import scaffold
from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.suite import load_suite
from pytest_pld.validate import validate_file

WORDS = {
    "pos": ["good", "great", "fine", "lovely", "nice", "superb"],
    "neg": ["bad", "awful", "poor", "dull", "weak", "grim"],
}


def reviews(n: int = 40) -> list[dict[str, str]]:
    return [
        {
            "id": f"r{i}",
            "text": f"a {WORDS[label][i % 6]} film number {i}",
            "label": label,
            "part": ("train", "validation", "test")[i % 3],
        }
        for i, label in ((i, "pos" if i % 3 else "neg") for i in range(n))
    ]


def csv_text(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    keys = list(rows[0])
    lines = [delimiter.join(keys)] + [delimiter.join(r[k] for k in keys) for r in rows]
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "data" / "reviews.csv").write_text(csv_text(reviews()), encoding="utf-8")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def init(
    capsys: pytest.CaptureFixture[str], root: Path, *argv: str, name: str = "reviews"
) -> tuple[int, str, str]:
    code = main(["init", name, "--root", str(root), *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def init_reviews(
    capsys: pytest.CaptureFixture[str], root: Path, *extra: str
) -> tuple[int, str, str]:
    """`pld init reviews` on the project's CSV, text and label columns named."""
    flags = ["--data", str(root / "data/reviews.csv"), "--text", "text", "--label", "label"]
    return init(capsys, root, *flags, *extra)


def test_init_from_a_csv_writes_a_suite_that_validates_and_prints_the_next_commands(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = init_reviews(capsys, project)
    assert code == 0, err
    for rel in (
        "suites/reviews.yaml",
        "instructions/reviews.yaml",
        "instructions/reviews.prompt.txt",
    ):
        assert f"wrote {rel}" in out
    assert validate_file(project / "suites/reviews.yaml", project) == "suite (1 gate)"
    assert validate_file(project / "instructions/reviews.yaml", project) == (
        "instructions v1 (0 rules)"
    )
    suite = load_suite(project / "suites/reviews.yaml", project)
    assert suite.labels == ("neg", "pos")
    assert suite.splits["train"].path == "data/reviews.csv"  # inside the project: referenced
    # the distribution printed is the one the suite reads
    for split in ("train", "dev", "test"):
        counts = Counter(e.label for e in suite.load_examples(split))
        assert f"{split:>5}" in out
        assert counts["neg"] + counts["pos"] == len(suite.load_examples(split))
    table = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line[:3] in ("neg", "pos", "tot")
    }
    got = [
        [
            str(Counter(e.label for e in suite.load_examples(s))[lab])
            for s in ("train", "dev", "test")
        ]
        for lab in ("neg", "pos")
    ]
    assert [table["neg"][:3], table["pos"][:3]] == got
    assert table["total"][-1] == "40"
    for command in (
        "pld validate",
        "pld render reviews",
        "pld run reviews --limit 20",
        "pld teach reviews --limit 5 --teacher local:qwen2.5-coder-0.5b-instruct",
        "pytest --pld-suite=reviews --pld-limit=20",
    ):
        assert f"\n  {command}\n" in out
    assert "export PLD_DATA_ROOT" not in out
    # the snapshot is what the ::snapshot gate compares with, so it starts out matching
    from pytest_pld.snapshot import check_snapshot

    assert check_snapshot(suite)[0]


def test_in_a_git_repository_init_says_to_ignore_the_pld_folder_until_it_is(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    hint = "echo '.pld/' >> .gitignore"
    written = (
        "suites/reviews.yaml",
        "instructions/reviews.yaml",
        "instructions/reviews.prompt.txt",
    )

    def init_again() -> str:
        for rel in written:
            (project / rel).unlink(missing_ok=True)
        code, out, err = init_reviews(capsys, project)
        assert code == 0, err
        return out

    assert hint not in init_again()  # not a git repository: nothing to commit it to
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    assert hint in init_again()
    (project / ".gitignore").write_text(".pld/\n", encoding="utf-8")
    assert hint not in init_again()


@pytest.mark.parametrize(
    ("floor", "bound"), [(0.3158, 0.316), (0.35, 0.351), (0.35 - 1e-12, 0.351), (0.0, 0.001)]
)
def test_the_suggested_bound_is_the_smallest_three_decimal_number_above_the_floor(
    floor: float, bound: float
) -> None:
    from pytest_pld.scaffold.render import floor_bound

    assert floor_bound(floor) == pytest.approx(bound)
    assert floor_bound(floor) > floor


def _train_neg_test_pos() -> list[dict[str, str]]:
    """Train's majority is neg (6 to 4), test's is pos (5 to 2): always answering train's
    majority scores less on test than always answering pos."""
    parts = {"train": (6, 4), "validation": (2, 2), "test": (2, 5)}
    rows = []
    for part, (neg, pos) in parts.items():
        for label, n in (("neg", neg), ("pos", pos)):
            rows += [
                {"id": f"{part}{label}{i}", "text": f"a {WORDS[label][i]} film", "label": label}
                | {"part": part}
                for i in range(n)
            ]
    return rows


@pytest.mark.parametrize(
    ("rows", "extra", "constant"),
    [
        pytest.param(reviews(), [], None, id="hashed-splits"),
        pytest.param(
            _train_neg_test_pos(), ["--split-column", "part"], "pos", id="train-majority-differs"
        ),
    ],
)
def test_the_gates_start_with_invalid_rate_and_offer_a_floor_no_constant_answer_passes(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    rows: list[dict[str, str]],
    extra: list[str],
    constant: str | None,
) -> None:
    from sklearn.metrics import f1_score

    (project / "data/reviews.csv").write_text(csv_text(rows), encoding="utf-8")
    code, out, err = init_reviews(capsys, project, *extra)
    assert code == 0, err
    suite = load_suite(project / "suites/reviews.yaml", project)
    assert [b.label for b in suite.gates] == ["invalid_rate<=0.01"]
    text = (project / "suites/reviews.yaml").read_text()
    gold = [e.label for e in suite.load_examples("test")]
    constants = {
        label: f1_score(
            gold, [label] * len(gold), labels=["neg", "pos"], average="macro", zero_division=0
        )
        for label in ("neg", "pos")
    }
    best = max(constants, key=lambda label: constants[label])
    assert constant in (None, best)
    bound = float(text.split('# macro_f1: "> ')[1].split('"')[0])
    # every constant answer fails the gate, and the bound is no higher than it must be
    assert all(score < bound for score in constants.values())
    assert bound <= constants[best] + 0.001 + 1e-9
    assert f"always {best}, the split's most frequent label: {constants[best]:.4f}" in text
    assert f"(always {best!r}, the test split's most frequent label" in out
    assert f"enable the gate macro_f1 > {bound:g} " in out


@pytest.mark.parametrize(
    ("suffix", "content", "extra", "loader"),
    [
        pytest.param(".tsv", csv_text(reviews(), "\t"), [], "csv", id="tsv"),
        pytest.param(
            ".jsonl",
            "".join(
                json.dumps({k: v for k, v in r.items() if k != "id"}) + "\n" for r in reviews()
            ),
            [],
            "jsonl",
            id="jsonl-without-ids",
        ),
        pytest.param(".txt", csv_text(reviews()), ["--format", "csv"], "csv", id="format-flag"),
    ],
)
def test_init_reads_tsv_and_json_lines_too(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
    content: str,
    extra: list[str],
    loader: str,
) -> None:
    path = project / "data" / f"other{suffix}"
    path.write_text(content, encoding="utf-8")
    code, out, err = init(
        capsys, project, "--data", str(path), "--text", "text", "--label", "label", *extra
    )
    assert code == 0, err
    suite = load_suite(project / "suites/reviews.yaml", project)
    assert suite.loader.name == loader
    assert sum(len(suite.load_examples(s)) for s in suite.splits) == 40
    if "jsonl" in suffix:
        assert "ids a hash of the text fields" in out
        assert suite.loader_options["id_field"] == ""


def test_a_split_column_names_the_splits_and_validation_reads_as_dev(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = init_reviews(capsys, project, "--split-column", "part")
    assert code == 0, err
    suite = load_suite(project / "suites/reviews.yaml", project)
    assert {s: spec.value for s, spec in suite.splits.items()} == {
        "train": "train",
        "dev": "validation",
        "test": "test",
    }
    assert [len(suite.load_examples(s)) for s in ("train", "dev", "test")] == [14, 13, 13]


def test_data_outside_the_project_is_read_from_the_data_root_or_copied_only_when_asked(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mounted = tmp_path / "mounted" / "sets"
    mounted.mkdir(parents=True)
    data = mounted / "reviews.csv"
    data.write_text(csv_text(reviews()), encoding="utf-8")
    flags = ["--data", str(data), "--text", "text", "--label", "label"]
    before = tree(project)
    code, _, err = init(capsys, project, *flags)
    assert code == 2 and "the data file is outside the project" in err
    assert "--data-root" in err and "--copy" in err
    assert tree(project) == before

    code, out, err = init(capsys, project, *flags, "--data-root", str(tmp_path / "mounted"))
    assert code == 0, err
    suite = load_suite(project / "suites/reviews.yaml", project, data_root=tmp_path / "mounted")
    assert suite.splits["test"].path == "data:sets/reviews.csv"
    assert f"export PLD_DATA_ROOT={tmp_path / 'mounted'}" in out
    assert not (project / "suites" / "data").exists()  # never copied

    code, out, err = init(capsys, project, *flags, "--copy", name="copied")
    assert code == 0, err
    assert (project / "suites/data/copied/reviews.csv").read_bytes() == data.read_bytes()
    suite = load_suite(project / "suites/copied.yaml", project)
    assert suite.splits["test"].path == "suites/data/copied/reviews.csv"
    assert "wrote suites/data/copied/reviews.csv  (a copy of the data)" in out


def test_init_never_overwrites_and_writes_nothing_when_a_file_exists(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "instructions").mkdir()
    (project / "instructions" / "reviews.prompt.txt").write_text("mine")
    before = tree(project)
    code, _, err = init_reviews(capsys, project)
    assert code == 2
    assert "instructions/reviews.prompt.txt already exists" in err and "never overwrites" in err
    assert tree(project) == before


def latin1_line(rows: list[dict[str, str]]) -> bytes:
    return csv_text(rows).encode() + "r99,un café noir,pos,test\n".encode("latin-1")


BAD_INPUT = {
    "empty-file": (b"", [], "reviews.csv: the file is empty: no header row"),
    "no-label-column": (
        csv_text(reviews()).replace(",label,", ",gold,", 1).encode(),
        [],
        "reviews.csv:1: --label label: no such column",
    ),
    "one-example-label": (
        (csv_text(reviews()) + "r99,a film,postive,test\n").encode(),
        [],
        "reviews.csv: label: 1 label with a single example: 'postive' (line 42)",
    ),
    "label-column-of-unique-values": (
        csv_text(reviews()).encode(),
        ["--label", "text", "--text", "part"],
        "is 'text' the label column?",
    ),
    "duplicate-ids": (
        (csv_text(reviews()) + "r3,another film,pos,test\n").encode(),
        [],
        "reviews.csv:42: duplicate id 'r3' (first on line 5)",
    ),
    "mixed-encodings": (
        latin1_line(reviews()),
        [],
        "reviews.csv:42: not UTF-8 text: byte 0xe9",
    ),
    "split-column-value-that-is-no-split-name": (
        csv_text(reviews()).replace(",validation\n", ",held out\n").encode(),
        ["--split-column", "part"],
        "reviews.csv: part: split column 'part' holds 'held out', which cannot name a split (line 3)",
    ),
    "split-column-empty-value": (
        (csv_text(reviews()) + "r99,a film,pos,\n").encode(),
        ["--split-column", "part"],
        "reviews.csv:42: 'part' (the split_field option) must be a non-empty",
    ),
    "split-column-without-test": (
        csv_text(reviews()).replace(",test\n", ",validation\n").encode(),
        ["--split-column", "part"],
        "split column 'part' has no test rows",
    ),
    "split-column-two-values-for-dev": (
        csv_text(reviews()).replace(",test\n", ",dev\n", 1).encode(),
        ["--split-column", "part", "--fractions", "0.6,0.2,0.2"],
        "holds both 'validation' and 'dev', which both name the dev split",
    ),
    "data-root-does-not-exist": (
        csv_text(reviews()).encode(),
        ["--data-root", "/nonexistent/pld-data"],
        "--data-root: the data root '/nonexistent/pld-data' does not exist",
    ),
    "text-column-not-a-template-name": (
        csv_text(reviews()).replace("id,text,", "id,review text,", 1).encode(),
        ["--text", "review text"],
        "--text 'review text': the column's name cannot be a template variable",
    ),
    "fractions-not-adding-up": (
        csv_text(reviews()).encode(),
        ["--fractions", "0.5,0.2,0.2"],
        "fractions 0.5,0.2,0.2 do not split the data",
    ),
    "labels-missing-one": (
        csv_text(reviews()).encode(),
        ["--labels", "pos"],
        "the data has labels --labels does not list: 'neg'",
    ),
    "bad-suite-name": (csv_text(reviews()).encode(), [], "suite name 'all' is not allowed"),
}


@pytest.mark.parametrize(
    ("content", "extra", "message"), list(BAD_INPUT.values()), ids=list(BAD_INPUT)
)
def test_bad_input_is_a_clear_error_and_nothing_is_written(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    extra: list[str],
    message: str,
) -> None:
    (project / "data" / "reviews.csv").write_bytes(content)
    before = tree(project)
    flags = ["--data", str(project / "data/reviews.csv")]
    if "--text" not in extra:
        flags += ["--text", "text"]
    if "--label" not in extra:
        flags += ["--label", "label"]
    name = "all" if "suite name" in message else "reviews"
    code, out, err = init(capsys, project, *flags, *extra, name=name)
    assert code == 2, out
    assert message in err, err
    assert "wrote" not in out
    assert tree(project) == before


def test_missing_flags_without_a_terminal_are_an_error_listing_the_columns(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = init(capsys, project, "--data", str(project / "data/reviews.csv"))
    assert code == 2
    assert "--text and --label not given, and there is no terminal to ask on" in err
    assert "columns: 'id', 'text', 'label', 'part'" in err
    assert "--text text --label label" in err  # the command to run, with the guesses filled in


def test_missing_flags_are_asked_for_on_a_terminal(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["", "2", ""])  # label: the guess; text: column 2; id: the default
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(builtins, "input", answer)
    code, out, err = init(capsys, project, "--data", str(project / "data/reviews.csv"))
    assert code == 0, err
    assert asked == [
        "label column [label]: ",
        "text columns the model reads (names or numbers, comma-separated): ",
        "id column [id]: ",
    ]
    assert "   2. text" in out
    suite = load_suite(project / "suites/reviews.yaml", project)
    assert suite.loader_options["text_fields"] == ("text",)
    assert suite.loader_options["id_field"] == "id"


def test_the_written_files_are_removed_when_they_do_not_validate(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = scaffold.InitSpec(
        name="reviews",
        data=project / "data/reviews.csv",
        text_fields=("text",),
        label_field="label",
        id_field="id",
    )
    plan = scaffold.plan_init(project, spec)
    before = tree(project)
    plan.suite_text = plan.suite_text.replace("gates:", "gates:\n  colour: red")

    with pytest.raises(PldError, match="did not validate, and were removed") as info:
        scaffold.write_init(plan)
    assert "gates.colour" in str(info.value)
    assert tree(project) == before
    assert not (project / "suites").exists() and not (project / "instructions").exists()


def test_labels_keep_the_order_given(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = init_reviews(capsys, project, "--labels", "pos,neg")
    assert code == 0, err
    assert load_suite(project / "suites/reviews.yaml", project).labels == ("pos", "neg")


def test_yaml_lookalike_labels_stay_strings(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, Any]] = reviews()
    for row in rows:
        row["label"] = {"pos": "yes", "neg": "1"}[row["label"]]
    (project / "data" / "reviews.csv").write_text(csv_text(rows))
    code, _, err = init_reviews(capsys, project)
    assert code == 0, err
    assert load_suite(project / "suites/reviews.yaml", project).labels == ("1", "yes")
