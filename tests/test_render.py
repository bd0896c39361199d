"""Rendering in the Jinja sandbox: prompts, strict variables, refusals, template paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_pld.errors import PldError
from pytest_pld.instructions import InstructionSet, Rule, WorkedExample
from pytest_pld.render import render_system_prompt, render_user_message

LABELS = ("Entailment", "Contradiction", "NotMentioned")


def make_set(**overrides: object) -> InstructionSet:
    values: dict[str, object] = {
        "path": None,
        "name": "demo",
        "version": 1,
        "preamble": "You review contracts.",
        "output": 'Answer with exactly one word: {{ labels | join(", ") }}.',
        "rules": (Rule("R1", "First rule."), Rule("R2", "Second rule.")),
        "label_definitions": {"Entailment": "the contract says so"},
    }
    values.update(overrides)
    return InstructionSet(**values)  # type: ignore[arg-type]


def test_the_system_prompt_has_preamble_numbered_rules_labels_and_output(tmp_path: Path) -> None:
    text = render_system_prompt(make_set(), LABELS, tmp_path)
    assert text.startswith("You review contracts.")
    assert "1. First rule.\n2. Second rule." in text
    assert "- Entailment: the contract says so" in text
    assert text.rstrip().endswith(
        "Answer with exactly one word: Entailment, Contradiction, NotMentioned."
    )


def test_a_set_without_rules_renders_no_rules_heading(tmp_path: Path) -> None:
    assert "Rules:" not in render_system_prompt(make_set(rules=()), LABELS, tmp_path)


def test_examples_render_with_their_answers(tmp_path: Path) -> None:
    iset = make_set(examples=(WorkedExample("Clause X. Hypothesis Y.", "Entailment"),))
    assert "Clause X. Hypothesis Y.\nAnswer: Entailment" in render_system_prompt(
        iset, LABELS, tmp_path
    )


def test_the_user_message_fills_the_suite_template() -> None:
    text = render_user_message(
        "Contract: {{ premise }}\nHypothesis: {{ hypothesis }}",
        {"premise": "P.", "hypothesis": "H."},
        where="suites/x.yaml",
    )
    assert text == "Contract: P.\nHypothesis: H."


def test_an_undefined_variable_is_an_error_naming_the_file_and_the_variables() -> None:
    with pytest.raises(PldError) as info:
        render_user_message("{{ premis }}", {"premise": "P"}, where="suites/x.yaml")
    message = str(info.value)
    assert "suites/x.yaml" in message and "premis" in message and "premise" in message


def test_a_template_syntax_error_names_the_file_and_line() -> None:
    with pytest.raises(PldError) as info:
        render_user_message("ok\n{% if %}", {}, where="suites/x.yaml")
    assert info.value.line == 2 and "syntax error" in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{{ ''.__class__ }}", id="dunder-class"),
        pytest.param("{{ ''.__class__.__mro__[1].__subclasses__() }}", id="mro-chain"),
        pytest.param("{{ premise.__init__.__globals__ }}", id="globals"),
        pytest.param("{{ cycler.__init__.__globals__.os }}", id="cycler-globals"),
        pytest.param("{{ ''.format.__self__ }}", id="bound-method-self"),
    ],
)
def test_the_sandbox_refuses_python_internals(template: str) -> None:
    with pytest.raises(PldError) as info:
        render_user_message(template, {"premise": "P"}, where="suites/evil.yaml")
    assert "suites/evil.yaml" in str(info.value)


def test_a_custom_template_inside_the_project_is_used(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "short.j2").write_text(
        "{{ preamble }} | {% for r in rules %}[{{ r.id }}] {{ r.text }} {% endfor %}| {{ output }}"
    )
    # the set has no label definitions: a template that does not show them drops nothing
    iset = make_set(template="templates/short.j2", label_definitions={})
    text = render_system_prompt(iset, LABELS, tmp_path)
    assert text.startswith("You review contracts. | [R1] First rule. [R2] Second rule. |")


def test_a_custom_template_that_leaves_out_a_section_the_set_has_is_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "bare.j2").write_text("{{ preamble }}\n{{ output }}")
    with pytest.raises(PldError) as info:
        render_system_prompt(make_set(template="templates/bare.j2"), LABELS, tmp_path)
    message = str(info.value)
    assert message.startswith("template: the template templates/bare.j2 does not use ")
    assert "label_definitions and rules, so they would never reach the prompt" in message


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("../outside.j2", id="parent-folder"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("templates/../../outside.j2", id="sneaky-dotdot"),
    ],
)
def test_a_template_path_that_escapes_the_project_is_refused(tmp_path: Path, template: str) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (tmp_path / "outside.j2").write_text("{{ preamble }}")
    with pytest.raises(PldError, match="escapes the project root|absolute path"):
        render_system_prompt(make_set(template=template), LABELS, root)


def test_a_missing_custom_template_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="not found"):
        render_system_prompt(make_set(template="templates/none.j2"), LABELS, tmp_path)
