"""Instruction sets: loading, validation errors that name file/line/key, round-trip saving."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_pld.errors import PldError, PldErrors
from pytest_pld.instructions import Rule, load_instruction_set
from pytest_pld.instructions_save import save_instruction_set

GOOD = textwrap.dedent("""\
    # The contract review instructions.
    name: demo
    version: 3   # bumped by every accepted change
    preamble: |
      You review contracts.
    label_definitions:
      Yes: the clause says so
      No: it does not
    rules:
      # the first rule came from a cluster of 31 traces
      - id: R001
        text: A clause that allows sharing with employees entails sharing is allowed.
        label: Yes
        tags: [sharing]
        provenance: {method: cluster, support: 31, traces: [t-1, t-2], round: 1}
      - id: R002
        text: >-
          Silence about a topic means the hypothesis is not mentioned.
    output: 'Answer with exactly one word: {{ labels | join(", ") }}.'
    """)


def write(tmp_path: Path, text: str, name: str = "demo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_into_frozen_typed_objects(tmp_path: Path) -> None:
    iset = load_instruction_set(write(tmp_path, GOOD))
    assert iset.name == "demo" and iset.version == 3
    assert [r.id for r in iset.rules] == ["R001", "R002"]
    assert iset.rules[0].tags == ("sharing",)
    assert iset.rules[0].provenance["support"] == 31
    assert iset.label_definitions["Yes"] == "the clause says so"
    with pytest.raises(AttributeError):
        iset.rules[0].text = "changed"  # type: ignore[misc]


def test_the_content_hash_ignores_comments_and_formatting(tmp_path: Path) -> None:
    a = load_instruction_set(write(tmp_path, GOOD, "a.yaml"))
    b = load_instruction_set(
        write(tmp_path, GOOD.replace("# the first", "# a different"), "b.yaml")
    )
    c = load_instruction_set(write(tmp_path, GOOD.replace("employees", "staff"), "c.yaml"))
    assert a.content_hash() == b.content_hash() != c.content_hash()


ERROR_CASES = [
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\ncolour: red\n",
        5,
        "colour",
        "unknown key",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\nrules:\n"
        "  - id: R1\n    text: a\n  - id: R1\n    text: b\n",
        8,
        "rules[1].id",
        "duplicate rule id",
        id="duplicate-rule-id",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\nrules:\n  - id: R1\n    text: ''\n",
        7,
        "rules[0].text",
        "must not be empty",
        id="empty-rule-text",
    ),
    pytest.param(
        "name: demo\nversion: two\npreamble: p\noutput: o\n",
        2,
        "version",
        "integer",
        id="version-not-an-integer",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\nrules: {a: 1}\n",
        5,
        "rules",
        "list of rules",
        id="rules-not-a-list",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\nrules:\n  - id: R1\n"
        "    text: t\n    lable: Yes\n",
        8,
        "rules[0].lable",
        "did you mean 'label'",
        id="unknown-rule-key-with-suggestion",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: p\noutput: o\nrules:\n  - id: R1\n"
        "    text: t\n    tags: sharing\n",
        8,
        "rules[0].tags",
        "list of strings",
        id="tags-not-a-list",
    ),
    pytest.param(
        "name: demo\nversion: 1\noutput: o\n",
        None,
        "preamble",
        "missing",
        id="missing-required-key",
    ),
    pytest.param(
        "name: demo\nversion: 1\npreamble: [p]\noutput: o\n",
        3,
        "preamble",
        "expected a string",
        id="preamble-wrong-type",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), ERROR_CASES)
def test_every_validation_error_names_file_line_and_key(
    tmp_path: Path, text: str, line: int | None, key: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PldErrors) as info:
        load_instruction_set(path)
    rendered = str(info.value)
    assert str(path) in rendered
    assert f"{key}:" in rendered
    assert message in rendered
    if line is not None:
        assert f"{path}:{line}:" in rendered


def test_all_errors_of_a_file_are_reported_together(tmp_path: Path) -> None:
    text = "name: demo\nversion: 0\npreamble: p\noutput: o\nextra: 1\nrules:\n  - id: R1\n    text: ''\n"
    with pytest.raises(PldErrors) as info:
        load_instruction_set(write(tmp_path, text))
    assert len(info.value.errors) == 3


def test_malformed_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: demo\nrules: [\n  - id: R1\n")
    with pytest.raises(PldError) as info:
        load_instruction_set(path)
    assert "malformed YAML" in str(info.value)
    assert str(path) in str(info.value)
    assert info.value.line is not None


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="file not found"):
        load_instruction_set(tmp_path / "nope.yaml")


def test_yaml_tags_cannot_construct_python_objects(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "name: !!python/object/apply:os.system ['echo pwned']\nversion: 1\n"
        "preamble: p\noutput: o\n",
    )
    with pytest.raises(PldError):
        load_instruction_set(path)


def test_load_modify_save_keeps_untouched_lines_byte_identical(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    iset = load_instruction_set(path)
    reworded = Rule(id="R002", text="Silence about a topic means it is not mentioned.")
    added = Rule(
        id="R003", text="A new rule.", label="No", provenance={"method": "cluster", "support": 7}
    )
    new = iset.with_rules([iset.rules[0], reworded, added], version=4)
    save_instruction_set(new, path, expected_text=GOOD)
    after = path.read_text(encoding="utf-8")
    before_lines, after_lines = GOOD.splitlines(), after.splitlines()
    # everything up to the reworded rule is unchanged, comments included
    cut = before_lines.index("  - id: R002")
    assert after_lines[:2] == before_lines[:2]
    assert after_lines[2] == "version: 4   # bumped by every accepted change"
    assert after_lines[3 : cut + 1] == before_lines[3 : cut + 1]
    reloaded = load_instruction_set(path)
    assert [r.id for r in reloaded.rules] == ["R001", "R002", "R003"]
    assert reloaded.rule("R002").text == reworded.text  # type: ignore[union-attr]
    assert reloaded.rule("R003").provenance["support"] == 7  # type: ignore[union-attr]


def test_saving_the_same_content_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    save_instruction_set(load_instruction_set(path), path)
    assert path.read_text(encoding="utf-8") == GOOD


def test_a_removed_rule_disappears_and_the_rest_survive(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    iset = load_instruction_set(path)
    save_instruction_set(iset.with_rules([iset.rules[1]]), path)
    text = path.read_text(encoding="utf-8")
    assert "R001" not in text and "id: R002" in text and text.startswith("# The contract")


def test_save_refuses_when_the_file_changed_since_the_proposal(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    iset = load_instruction_set(path)
    path.write_text(GOOD + "# a reviewer's edit\n", encoding="utf-8")
    with pytest.raises(PldError, match="changed since"):
        save_instruction_set(iset.with_rules([], version=9), path, expected_text=GOOD)
    assert path.read_text(encoding="utf-8").endswith("# a reviewer's edit\n")
