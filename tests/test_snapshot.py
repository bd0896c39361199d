"""Rendered-prompt snapshots: missing, matching, mismatching and updated."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DEMO_CONFTEST

from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.snapshot import check_snapshot, update_snapshot
from pytest_pld.suite import Suite, load_suite

SUITE = """\
name: {name}
dataset: {{loader: jsonl}}
splits: {{test: data/test.jsonl}}
labels: {labels}
user_template: "{{{{ text }}}}"
instructions: instructions/demo.yaml
student: scripted:demo
gates:
  accuracy: ">= 0.5"
"""

INSTRUCTIONS = """\
name: demo
version: 1
preamble: Decide yes or no.
rules:
  - id: R1
    text: Say yes for apple.
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


def make_snapshot_project(root: Path, *, suites: dict[str, str] | None = None) -> Path:
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    (root / "data").mkdir()
    (root / "data" / "test.jsonl").write_text('{"id": "1", "text": "a", "label": "yes"}\n')
    for name, labels in (suites or {"demo": '[yes, "no"]'}).items():
        (root / "suites" / f"{name}.yaml").write_text(SUITE.format(name=name, labels=labels))
    (root / "instructions" / "demo.yaml").write_text(INSTRUCTIONS)
    return root


def suite_at(root: Path, name: str = "demo") -> Suite:
    return load_suite(root / "suites" / f"{name}.yaml", root)


def test_a_missing_snapshot_fails_and_names_the_command_that_creates_it(tmp_path: Path) -> None:
    ok, message = check_snapshot(suite_at(make_snapshot_project(tmp_path)))
    assert not ok
    assert "instructions/demo.prompt.txt" in message
    assert "pld snapshot demo --update" in message


def test_an_updated_snapshot_holds_exactly_the_rendered_system_prompt(tmp_path: Path) -> None:
    suite = suite_at(make_snapshot_project(tmp_path))
    assert update_snapshot(suite) is True
    text = (tmp_path / "instructions" / "demo.prompt.txt").read_text()
    assert text == (
        "Decide yes or no.\n\nRules:\n1. Say yes for apple.\n\nAnswer with one word: yes, no.\n"
    )
    assert check_snapshot(suite) == (
        True,
        ("rendered system prompt matches instructions/demo.prompt.txt"),
    )
    assert update_snapshot(suite) is False  # nothing to write the second time


def test_a_rule_change_fails_the_check_with_a_diff_and_the_update_command(tmp_path: Path) -> None:
    suite = suite_at(make_snapshot_project(tmp_path))
    update_snapshot(suite)
    path = tmp_path / "instructions" / "demo.yaml"
    path.write_text(INSTRUCTIONS.replace("Say yes for apple.", "Say yes for pear."))
    ok, message = check_snapshot(suite)
    assert not ok
    assert "differs from its snapshot instructions/demo.prompt.txt" in message
    assert "-1. Say yes for apple.\n+1. Say yes for pear." in message
    assert message.rstrip().endswith("pld snapshot demo --update")


def test_a_template_change_alone_fails_the_check(tmp_path: Path) -> None:
    root = make_snapshot_project(tmp_path)
    rules = "{% for r in rules %}{{ r.text }}\n{% endfor %}"
    (root / "prompt.j2").write_text("{{ preamble }}\n" + rules + "{{ output }}")
    path = root / "instructions" / "demo.yaml"
    path.write_text(INSTRUCTIONS + "template: prompt.j2\n")
    suite = suite_at(root)
    update_snapshot(suite)
    (root / "prompt.j2").write_text("{{ preamble }}\nBe brief.\n" + rules + "{{ output }}")
    ok, message = check_snapshot(suite)
    assert not ok and "+Be brief." in message


def test_windows_line_endings_in_a_checked_out_snapshot_are_not_a_difference(
    tmp_path: Path,
) -> None:
    suite = suite_at(make_snapshot_project(tmp_path))
    update_snapshot(suite)
    path = tmp_path / "instructions" / "demo.prompt.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert check_snapshot(suite)[0]


def test_the_suite_can_name_its_own_snapshot_path(tmp_path: Path) -> None:
    root = make_snapshot_project(tmp_path)
    suite_file = root / "suites" / "demo.yaml"
    suite_file.write_text(suite_file.read_text() + "snapshot: snapshots/demo.txt\n")
    suite = suite_at(root)
    update_snapshot(suite)
    assert (root / "snapshots" / "demo.txt").is_file()
    assert check_snapshot(suite)[0]


def test_a_prompt_that_does_not_render_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    root = make_snapshot_project(tmp_path)
    (root / "instructions" / "demo.yaml").write_text(INSTRUCTIONS.replace("{{ labels", "{{ labelz"))
    ok, message = check_snapshot(suite_at(root))
    assert not ok and "does not render" in message and "labelz" in message


# --- the command -------------------------------------------------------------------------------


def test_the_command_checks_updates_and_checks_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_snapshot_project(tmp_path)
    assert main(["snapshot", "--root", str(root)]) == 1
    assert "pld snapshot demo --update" in capsys.readouterr().out
    assert main(["snapshot", "demo", "--update", "--root", str(root)]) == 0
    assert "wrote  demo  instructions/demo.prompt.txt" in capsys.readouterr().out
    assert main(["snapshot", "--check", "--root", str(root)]) == 0
    assert "ok     demo" in capsys.readouterr().out


def test_an_unknown_suite_name_gets_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_snapshot_project(tmp_path)
    assert main(["snapshot", "dmeo", "--root", str(root)]) == 2
    assert "did you mean 'demo'" in capsys.readouterr().err


def test_suites_sharing_a_snapshot_path_must_render_the_same_prompt(tmp_path: Path) -> None:
    root = make_snapshot_project(tmp_path, suites={"demo": '[yes, "no"]', "other": "[a, b]"})
    with pytest.raises(PldError, match="render different prompts into the same snapshot"):
        from pytest_pld.snapshot import check_shared_paths

        check_shared_paths([suite_at(root), suite_at(root, "other")])


def test_update_and_check_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["snapshot", "--update", "--check", "--root", str(tmp_path)])


def test_the_snapshot_gate_is_enabled_by_a_committed_snapshot_or_an_explicit_path(
    tmp_path: Path,
) -> None:
    from pytest_pld.snapshot import snapshot_enabled

    root = make_snapshot_project(tmp_path)
    assert not snapshot_enabled(suite_at(root))
    update_snapshot(suite_at(root))
    assert snapshot_enabled(suite_at(root))
    suite_file = root / "suites" / "demo.yaml"
    suite_file.write_text(suite_file.read_text() + "snapshot: elsewhere.txt\n")
    assert snapshot_enabled(suite_at(root))  # named but missing: the gate fails, not skips
    assert not check_snapshot(suite_at(root))[0]


# --- the gate item -----------------------------------------------------------------------------


def test_the_snapshot_gate_item_passes_then_fails_naming_the_update_command(
    pytester: pytest.Pytester,
) -> None:
    root = make_snapshot_project(pytester.path)
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(DEMO_CONFTEST)
    assert main(["snapshot", "demo", "--update", "--root", str(root)]) == 0
    result = pytester.runpytest("--pld-suite=demo", "-k", "snapshot", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=2)
    (root / "instructions" / "demo.yaml").write_text(
        INSTRUCTIONS.replace("Say yes for apple.", "Say yes for pear.")
    )
    result = pytester.runpytest("--pld-suite=demo", "-k", "snapshot", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(
        [
            "*demo: the rendered system prompt differs from its snapshot*",
            "*+1. Say yes for pear.*",
            "*pld snapshot demo --update",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_a_suite_without_a_snapshot_gets_no_snapshot_item(pytester: pytest.Pytester) -> None:
    make_snapshot_project(pytester.path)
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(DEMO_CONFTEST)
    result = pytester.runpytest("--pld-suite=demo", "--collect-only", "-q")
    assert "snapshot" not in result.stdout.str()
    result.stdout.fnmatch_lines(["suites/demo.yaml::render"])
