"""The README's sample outputs stay true: every `$ pld validate`, `$ pld run` and `$ pytest
--pld-suite` sample in README.md is compared with what the command prints on a small project
made by `pld init` - by its header and field names, not its numbers.

The student is the scripted backend (control flow only), scoring the labels as the local
backend does, so that its answers record ties like the README's real runs.
"""

from __future__ import annotations

import re
from pathlib import Path

# pytester's in-process runs restore sys.modules afterwards, and numpy's C extension cannot be
# imported twice in one process: import what the plugin's runs use once, here, up front.
import numpy  # noqa: F401
import pytest
import sklearn.metrics  # noqa: F401
from helpers import DEMO_CONFTEST, gate_project, init_rev

from pytest_pld.cli import main
from pytest_pld.testing import ScriptedBackend, scripted

README = Path(__file__).resolve().parents[1] / "README.md"
SUMMARY = "pytest-pld summary"


def first_label_scores(system: str, user: str, labels: list[str]) -> dict[str, float]:
    return {label: -float(i) for i, label in enumerate(labels)}


SCORING_CONFTEST = DEMO_CONFTEST.replace(
    'ScriptedBackend("demo")',
    'ScriptedBackend("demo", scores=lambda s, u, labels: {x: -float(i) for i, x in '
    "enumerate(labels)})",
)


def samples(command: str) -> list[list[str]]:
    """The output under each `$ COMMAND ...` line of the README's fenced blocks (up to the
    next `$ ` line or the end of the block)."""
    found: list[list[str]] = []
    current: list[str] | None = None
    in_block = False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = not in_block
            current = None
        elif in_block and line.startswith("$ "):
            current = [] if line[2:].startswith(command) else None
            if current is not None:
                found.append(current)
        elif current is not None:
            current.append(line)
    return found


def summary_of(lines: list[str]) -> list[str]:
    """A pytest run's pytest-pld summary: the lines after its separator, up to the next one."""
    start = next(i for i, line in enumerate(lines) if SUMMARY in line) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("="))
    return lines[start:end]


def shape(lines: list[str]) -> list[str]:
    """The lines with what differs between projects and runs masked: the suite's name, the
    model, paths, numbers and the per-label rows of `pld run`'s label table."""
    named = (r"^suite ([\w.-]+):", r"^([\w.-]+)/[\w.-]+: \d+ examples", r"instructions/([\w.-]+)\.")
    name = next(m[1] for pattern in named for line in lines if (m := re.search(pattern, line)))
    out: list[str] = []
    in_labels = False
    for line in lines:
        if line.strip().startswith("ties:"):
            in_labels = False
        if in_labels:
            continue  # one row per label of the project
        in_labels = line.strip() == "labels: gold, predicted"
        line = re.sub(r"model [^\s,]+", "model MODEL", line)
        line = re.sub(r"(run record|inspect it): \S+", r"\1: PATH", line)
        line = re.sub(rf"\b{re.escape(name)}\b", "SUITE", line)
        line = re.sub(r"\d+(\.\d+)?", "N", line)
        out.append(" ".join(line.split()))
    return out


def gate_runs() -> list[list[str]]:
    """The samples of gate runs (not of --collect-only)."""
    return [s for s in samples("pytest --pld-suite") if any(SUMMARY in line for line in s)]


def test_the_readme_has_the_samples_this_test_checks() -> None:
    assert len(samples("pld validate")) >= 1
    assert len(samples("pld run ")) >= 1
    assert len(gate_runs()) >= 1


def test_pld_validate_and_pld_run_print_what_the_readme_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = init_rev(tmp_path, capsys)
    assert main(["validate", "--root", str(root)]) == 0
    printed = capsys.readouterr().out.splitlines()
    for sample in samples("pld validate"):
        assert shape(sample) == shape(printed)
    with scripted(ScriptedBackend("demo", scores=first_label_scores)):
        argv = ["run", "rev", "--limit", "5", "--model", "scripted:demo", "--root", str(root)]
        assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("rev/test: 5 examples, model scripted:demo")
    for sample in samples("pld run "):
        assert shape(sample) == shape(printed)


def test_the_gate_summary_is_what_the_readme_shows(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    gate_project(pytester, init_rev(tmp_path, capsys)[0], SCORING_CONFTEST)
    result = pytester.runpytest(
        "--pld-suite=rev", "--pld-limit=5", "--pld-model=scripted:demo", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=3)
    printed = summary_of(result.stdout.lines)
    assert printed[0].startswith("suite rev: split test, 5 examples, 0 ties (0.0%)")
    for sample in gate_runs():
        assert shape(summary_of(sample)) == shape(printed)


def test_the_two_token_counts_are_explained_under_the_table() -> None:
    """The render check counts text before any model call, prompt_tokens what the model was
    given: with both rows the summary says which is which (StereoSet's demo: 168 and 181)."""
    from pytest_pld.report.gate_summary import Row
    from pytest_pld.report.notes import verdict_notes

    render = Row("s", "render", "passed", metric="rendered_prompt_tokens", value=168.0)
    gate = Row("s", "prompt_tokens<=1500", "passed", metric="prompt_tokens", value=181.0)
    (note,) = verdict_notes([render, gate])
    assert note.startswith("tokens: render counts the system prompt and the longest user message")
    assert "(168), before any model call" in note and "markers included (181)" in note
    assert verdict_notes([render]) == []
