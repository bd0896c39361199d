"""The `pld` command, run as a user runs it: a subprocess in the project folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pld(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_pld.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_every_core_command() -> None:
    out = pld("--help")
    assert out.returncode == 0
    for command in ("validate", "render", "suites", "run"):
        assert command in out.stdout


def test_validate_accepts_the_shipped_files() -> None:
    out = pld("validate")
    assert out.returncode == 0, out.stderr
    assert "8 of 8 files valid" in out.stdout


def test_validate_outside_a_project_says_to_start_one_with_pld_init(tmp_path: Path) -> None:
    out = pld("validate", cwd=tmp_path)
    assert out.returncode == 1
    assert f"error {tmp_path}: no pld project here: no instructions/ or suites/ folder" in (
        out.stderr
    )
    assert "hint: start one with `pld init NAME --data FILE" in out.stderr
    assert "file not found" not in out.stderr
    (tmp_path / "suites").mkdir()  # one of the two folders: the other is missing, and said so
    out = pld("validate", cwd=tmp_path)
    assert out.returncode == 1
    assert f"{tmp_path / 'instructions'}: file not found" in out.stderr


def test_validate_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "instructions"
    bad.mkdir()
    (bad / "a.yaml").write_text("name: a\nversion: 1\npreamble: p\noutput: o\ncolour: red\n")
    (bad / "b.yaml").write_text("name: b\nrules: [\n")
    (bad / "c.yaml").write_text("name: c\nversion: 1\npreamble: p\noutput: o\n")
    out = pld("validate", str(bad), "--root", str(tmp_path))
    assert out.returncode == 1
    assert f"{bad / 'a.yaml'}:5: colour: unknown key" in out.stderr
    assert "b.yaml" in out.stderr and "malformed YAML" in out.stderr
    assert "1 of 3 files valid" in out.stdout
    assert "Traceback" not in out.stderr


def test_validate_reports_a_broken_suite_with_file_line_and_key(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "instructions", tmp_path / "instructions")
    (tmp_path / "suites").mkdir()
    text = (ROOT / "suites" / "logiqa.yaml").read_text()
    broken = re.sub(r'(?m)^  accuracy: ".*"$', '  accuracy: "at least 0.2"', text)
    assert broken != text
    (tmp_path / "suites" / "logiqa.yaml").write_text(broken)
    out = pld("validate", "suites", "--root", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 1
    assert "gates.accuracy: malformed bound" in out.stderr
    assert "logiqa.yaml:" in out.stderr


def test_suites_lists_three_benchmarks_with_counts() -> None:
    out = pld("suites")
    assert out.returncode == 0, out.stderr
    assert "test   1411 examples: Entailment 660, Contradiction 148, NotMentioned 603" in out.stdout
    assert "test    583 examples: gender 78, profession 223, race 260, religion 22" in out.stdout
    assert "test    451 examples: A 92, B 108, C 120, D 131" in out.stdout


def test_render_prints_the_system_prompt_and_a_user_message() -> None:
    out = pld("render", "contractnli", "--example", "0", "--no-tokens")
    assert out.returncode == 0, out.stderr
    assert "=== system prompt" in out.stdout and "=== user message" in out.stdout
    assert "Hypothesis: All Confidential Information shall be expressly identified" in out.stdout


def test_an_unknown_suite_gets_did_you_mean_and_the_list() -> None:
    out = pld("render", "contractnl", "--no-tokens")
    assert out.returncode == 2
    assert "did you mean 'contractnli'" in out.stderr
    assert "available suites:" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_example_index_past_the_split_is_a_clear_error() -> None:
    out = pld("render", "logiqa", "--example", "99999", "--no-tokens")
    assert out.returncode == 2 and "--example must be below" in out.stderr


@pytest.mark.parametrize("limit", ["0", "-3", "many"])
def test_run_rejects_a_limit_that_is_not_positive(limit: str) -> None:
    out = pld("run", "logiqa", "--limit", limit)
    assert out.returncode == 2 and "positive integer" in out.stderr


@pytest.mark.integration
def test_render_counts_tokens_and_the_retrieved_premise_stays_short() -> None:
    out = pld("render", "contractnli", "--example", "0")
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "=== user message" in line)
    tokens = int(header.split("(")[1].split()[0])
    assert 0 < tokens < 1000
    assert "within the budget of 6000" in out.stdout


def test_shots_come_from_the_train_split_and_are_seeded() -> None:
    from pytest_pld.shots import with_shots
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    iset = suite.load_instructions()
    first = with_shots(suite, iset, 5, seed=0)
    again = with_shots(suite, iset, 5, seed=0)
    other = with_shots(suite, iset, 5, seed=1)
    assert len(first.examples) == 5 and first.examples == again.examples != other.examples
    train_labels = {e.label for e in suite.load_examples("train")}
    test_inputs = {e.fields["sentence"] for e in suite.load_examples("test")}
    assert all(e.label in train_labels for e in first.examples)
    assert not any(s in e.input for e in first.examples for s in test_inputs)
    assert first.rules == iset.rules and first.content_hash() != iset.content_hash()


def test_run_refuses_an_instruction_file_outside_the_project(tmp_path: Path) -> None:
    outside = tmp_path / "evil.yaml"
    outside.write_text("name: x\nversion: 1\npreamble: p\noutput: o\n")
    out = pld("run", "logiqa", "--instructions", str(outside))
    assert out.returncode == 2 and "absolute path" in out.stderr
