"""Calibration as code (`pytest_pld.calibration`, `calibration_section`): fits, applying offsets,
exact ties, staleness, the `calibration:` section's errors and its round trip.

Scores here are synthetic, with known answers; a real model's scores are in
test_calibrate_cli.py and test_openai_scores.py.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pytest_pld.calibrate import content_free_messages
from pytest_pld.calibration import (
    CONTENT_FREE,
    CONTEXTUAL,
    PRIOR_SHIFT,
    Calibration,
    calibrated_answers,
    fit_contextual,
    fit_prior_shift,
    fitted,
    ids_digest,
    require_scores,
    sha256_text,
    suite_problems,
)
from pytest_pld.errors import PldError, PldErrors
from pytest_pld.instructions import load_instruction_set, load_instruction_set_text
from pytest_pld.instructions_save import render_instruction_text, save_instruction_set
from pytest_pld.labels import top_label
from pytest_pld.prior_shift import fit_results
from pytest_pld.render import render_system_prompt

LABELS = ("gender", "profession", "race", "religion")
STUDENT = "local:qwen2.5-coder-0.5b-instruct"


@dataclass
class Result:
    """What calibration reads of a runner result."""

    id: str
    gold: str
    pred: str
    scores: Mapping[str, float] | None
    cluster: str | None = None


def biased_results(n: int = 120, seed: int = 0) -> list[Result]:
    """Scores that name the gold label by a margin, plus a large bias towards gender: the raw
    answers are mostly gender, and offsets can undo the bias."""
    rng = np.random.default_rng(seed)
    bias = np.array([2.5, 0.0, 0.3, -0.5])
    out = []
    for i in range(n):
        gold = int(rng.integers(0, len(LABELS)))
        row = 1.5 * np.eye(len(LABELS))[gold] + rng.uniform(-0.5, 0.5, len(LABELS)) + bias
        scores = {label: float(row[k]) for k, label in enumerate(LABELS)}
        out.append(
            Result(f"ex{i}", LABELS[gold], top_label(scores, f"ex{i}")[0], scores, f"c{i // 3}")
        )
    return out


def calibration(offsets: Mapping[str, float], **changes: object) -> Calibration:
    cal = Calibration(PRIOR_SHIFT, offsets, STUDENT, "a" * 64, "dev", 10, "b" * 64)
    return dataclasses.replace(cal, **changes)  # type: ignore[arg-type]


# --- fits ---------------------------------------------------------------------------------------


def test_the_prior_shift_fit_is_the_prior_shift_controls_rounded_and_undoes_the_bias() -> None:
    results = biased_results()
    offsets = fit_prior_shift(results, LABELS, student=STUDENT)
    shift = fit_results(results, LABELS)
    assert offsets == {k: round(v, 4) for k, v in shift.offsets.items()}
    cal = fitted(
        PRIOR_SHIFT,
        offsets,
        results,
        LABELS,
        student=STUDENT,
        system_prompt_sha256="a" * 64,
        split="dev",
    )
    assert cal.macro_f1_before is not None and cal.macro_f1_after is not None
    assert cal.macro_f1_before < 0.6
    assert cal.macro_f1_after > 0.9
    assert cal.gain_interval is not None and 0 < cal.gain_interval[0] <= cal.gain_interval[1]
    assert (cal.examples, cal.split, cal.student) == (len(results), "dev", STUDENT)
    assert cal.ids_sha256 == ids_digest([r.id for r in reversed(results)])  # order-free


def test_the_contextual_fit_divides_by_the_mean_content_free_probability() -> None:
    # two content-free inputs; label probabilities (renormalised) 0.7/0.1/0.1/0.1 and
    # 0.5/0.3/0.1/0.1 -> mean 0.6/0.2/0.1/0.1; the offsets are -log of those
    rows = [
        {label: math.log(p) - 3.0 for label, p in zip(LABELS, (0.7, 0.1, 0.1, 0.1))},
        {label: math.log(p) + 1.0 for label, p in zip(LABELS, (0.5, 0.3, 0.1, 0.1))},
    ]
    offsets = fit_contextual(rows, LABELS)
    expected = {label: round(-math.log(p), 4) for label, p in zip(LABELS, (0.6, 0.2, 0.1, 0.1))}
    assert offsets == pytest.approx(expected, abs=1e-4)
    # the label order does not matter
    assert fit_contextual(rows, tuple(reversed(LABELS))) == offsets


def test_content_free_inputs_fill_every_field_of_the_user_template() -> None:
    template = "Target: {{ target }}\nSentence: {{ sentence | upper }}"
    assert content_free_messages(template, where="suite.yaml") == [
        "Target: N/A\nSentence: N/A",
        "Target: \nSentence:",
        "Target: [MASK]\nSentence: [MASK]",
    ]
    assert len(CONTENT_FREE) == 3


# --- apply and answer ---------------------------------------------------------------------------


def test_apply_adds_each_labels_offset_and_answer_takes_the_best() -> None:
    cal = calibration({"gender": -2.0, "profession": 0.5, "race": 0.0, "religion": 1.0})
    scores = {"gender": -0.1, "profession": -2.0, "race": -1.8, "religion": -3.0}
    assert cal.apply(scores) == pytest.approx(
        {"gender": -2.1, "profession": -1.5, "race": -1.8, "religion": -2.0}
    )
    assert top_label(scores, "x")[0] == "gender"
    assert cal.answer(scores, "x") == "profession"


def test_an_exact_tie_goes_by_the_example_id_whatever_the_label_order() -> None:
    scores = {"gender": -1.0, "profession": -2.0, "race": -3.0, "religion": -4.0}
    offsets = {"gender": 0.0, "profession": 1.0, "race": 2.0, "religion": 3.0}  # all tie at -1
    answers = set()
    for example in ("a", "b", "c", "d", "e", "f"):
        forward = calibration(offsets).answer(scores, example)
        backward = calibration(dict(reversed(offsets.items()))).answer(
            dict(reversed(scores.items())), example
        )
        assert forward == backward == top_label(dict.fromkeys(LABELS, -1.0), example)[0]
        answers.add(forward)
    assert len(answers) > 1  # ties spread over the labels, not all to the first one


def test_zero_offsets_give_back_the_students_own_answers() -> None:
    results = biased_results(60)
    cal = calibration(dict.fromkeys(LABELS, 0.0))
    assert calibrated_answers(cal, results, LABELS, student=STUDENT) == [r.pred for r in results]


def test_a_missing_or_unknown_score_is_an_error_never_a_guess() -> None:
    cal = calibration(dict.fromkeys(LABELS, 0.0))
    with pytest.raises(PldError, match="no score for religion"):
        cal.apply({"gender": 0.0, "profession": 0.0, "race": 0.0})
    with pytest.raises(PldError, match="no offset for: other"):
        cal.apply({**dict.fromkeys(LABELS, 0.0), "other": 1.0})


def test_results_without_scores_are_refused_with_counts() -> None:
    results = biased_results(6)
    results[1].scores = None
    results[4].scores = {"gender": 0.0}
    with pytest.raises(PldError) as caught:
        calibrated_answers(calibration(dict.fromkeys(LABELS, 0.0)), results, LABELS, student="m")
    message = str(caught.value)
    assert "no label scores for 1 and scores for only some labels for 1 of 6" in message
    assert "first: ex1" in message and "top_logprobs" in message
    require_scores(biased_results(6), LABELS, student="m")  # complete: no error


# --- staleness ----------------------------------------------------------------------------------


def test_staleness_names_what_changed_and_the_command_that_refits() -> None:
    prompt = "You classify stereotypes."
    cal = calibration(dict.fromkeys(LABELS, 0.0), system_prompt_sha256=sha256_text(prompt))
    assert cal.is_stale(STUDENT, prompt, suite="stereoset") is None
    other = cal.is_stale("local:smollm2-135m-instruct", prompt, suite="stereoset")
    assert other is not None
    assert f"fitted for student {STUDENT}" in other and "smollm2-135m-instruct" in other
    assert "pld calibrate stereoset --write" in other
    edited = cal.is_stale(STUDENT, prompt + " Be careful.", suite="stereoset")
    assert edited is not None and "another system prompt" in edited
    assert "pld calibrate stereoset --write" in edited


def test_suite_problems_name_wrong_labels_and_staleness_at_the_sections_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(SET + section({"gender": 0.0, "race": 1.0}), encoding="utf-8")
    cal = load_instruction_set(path).calibration
    assert cal is not None
    found = suite_problems(
        cal, labels=LABELS, student=STUDENT, system_prompt="another prompt", suite="stereoset"
    )
    assert [e.key for e in found] == [
        "calibration.offsets",
        "calibration.fitted.system_prompt_sha256",
    ]
    assert "no offset for profession, religion" in found[0].message
    assert found[0].line == 9 and found[1].line == 14 and found[0].path == str(path)


# --- the YAML section ---------------------------------------------------------------------------

SET = textwrap.dedent("""\
    # StereoSet, zero-shot
    name: demo
    version: 2
    preamble: You classify stereotypes by domain.
    output: 'Answer with one word: {{ labels | join(", ") }}.'
    """)


def section(offsets: Mapping[str, float], *, method: str = PRIOR_SHIFT, extra: str = "") -> str:
    lines = ["calibration:", "  # fitted on dev", f"  method: {method}", "  offsets:"]
    lines += [f"    {label}: {value}" for label, value in offsets.items()]
    lines += [
        "  fitted:",
        f"    student: {STUDENT}",
        f"    system_prompt_sha256: {'c' * 64}",
        "    split: dev",
        "    examples: 310",
        f"    ids_sha256: {'d' * 64}",
        "    macro_f1_before: 0.329",
        "    macro_f1_after: 0.728",
        "    macro_f1_gain_interval: [0.27, 0.5]",
    ]
    return "\n".join(lines) + "\n" + extra


def errors_of(text: str) -> list[PldError]:
    with pytest.raises(PldErrors) as caught:
        load_instruction_set_text(text, "set.yaml")
    return caught.value.errors


def test_a_valid_section_loads_into_the_set() -> None:
    iset = load_instruction_set_text(SET + section(dict.fromkeys(LABELS, 0.5)), "set.yaml")
    cal = iset.calibration
    assert cal is not None
    assert (cal.method, dict(cal.offsets), cal.examples) == (
        PRIOR_SHIFT,
        dict.fromkeys(LABELS, 0.5),
        310,
    )
    assert (cal.macro_f1_before, cal.macro_f1_after, cal.gain_interval) == (
        0.329,
        0.728,
        (0.27, 0.5),
    )


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (SET + "calibration: 3\n", 6, "calibration", "expected a mapping"),
        (
            SET + section({"gender": 0.0}).replace("  method: prior-shift", "  methd: prior-shift"),
            8,
            "calibration.methd",
            "unknown key (did you mean 'method'?)",
        ),
        (
            SET + section({"gender": 0.0}, method="platt"),
            8,
            "calibration.method",
            "unknown method 'platt'",
        ),
        (
            SET + section({"gender": "high"}),
            10,
            "calibration.offsets.gender",
            "expected a finite number",
        ),
        (
            SET + section({"gender": ".inf"}),
            10,
            "calibration.offsets.gender",
            "expected a finite number",
        ),
        (
            SET + section({"gender": 0.0}).replace("c" * 64, "not-a-digest"),
            13,
            "calibration.fitted.system_prompt_sha256",
            "64 lowercase hex digits",
        ),
        (
            SET + section({"gender": 0.0}).replace("    examples: 310\n", ""),
            12,
            "calibration.fitted.examples",
            "required key is missing",
        ),
        (
            SET + section({"gender": 0.0}).replace(f"student: {STUDENT}", "student: qwen"),
            12,
            "calibration.fitted.student",
            "expected provider:model",
        ),
        (
            SET + section({"gender": 0.0}, extra="    inputs: [N/A]\n"),
            20,
            "calibration.fitted.inputs",
            "only a contextual calibration has inputs",
        ),
        (
            SET + section({"gender": 0.0}, method=CONTEXTUAL),
            12,
            "calibration.fitted.inputs",
            "required key is missing (method contextual)",
        ),
        (
            SET + section({"gender": 0.0}).replace("[0.27, 0.5]", "[0.5, 0.27]"),
            19,
            "calibration.fitted.macro_f1_gain_interval",
            "low <= high",
        ),
    ],
)
def test_section_errors_name_file_line_and_key(
    text: str, line: int, key: str, message: str
) -> None:
    errors = {e.key: e for e in errors_of(text)}
    assert all(e.path == "set.yaml" for e in errors.values())
    assert key in errors, [e.format() for e in errors.values()]
    assert errors[key].line == line
    assert message in errors[key].message
    # a misspelt key is reported, and the key it was meant to be is missing
    assert set(errors) == ({key, "calibration.method"} if "methd" in key else {key})


def fitted_calibration(offsets: Mapping[str, float]) -> Calibration:
    return Calibration(
        PRIOR_SHIFT,
        offsets,
        STUDENT,
        "c" * 64,
        "dev",
        310,
        "d" * 64,
        macro_f1_before=0.329,
        macro_f1_after=0.7278,
        gain_interval=(0.2707, 0.505),
    )


def test_writing_a_calibration_keeps_comments_and_refitting_edits_it_in_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(SET, encoding="utf-8")
    base = load_instruction_set(path)
    first = dataclasses.replace(base, calibration=fitted_calibration(dict.fromkeys(LABELS, 0.0)))
    save_instruction_set(first, path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(SET)  # everything before the section is untouched, comments included
    assert '  offsets:\n    "gender": 0.0\n' in text
    assert "    macro_f1_gain_interval: [0.2707, 0.505]\n" in text
    assert load_instruction_set(path) == first
    # a comment inside the section survives a refit; only the changed offset line changes
    path.write_text(text.replace("  offsets:\n", "  # by pld calibrate\n  offsets:\n"), "utf-8")
    commented = path.read_text(encoding="utf-8")
    offsets = {**dict.fromkeys(LABELS, 0.0), "race": 1.25}
    refit = dataclasses.replace(base, calibration=fitted_calibration(offsets))
    new_text = render_instruction_text(refit, commented, path)
    changed = [(a, b) for a, b in zip(commented.splitlines(), new_text.splitlines()) if a != b]
    assert changed == [('    "race": 0.0', '    "race": 1.25')]
    # removing the calibration removes the section and nothing else
    assert render_instruction_text(base, new_text, path) == render_instruction_text(base, SET, path)


def test_written_offsets_quote_their_labels_so_a_yaml_1_1_reader_reads_the_same_strings(
    tmp_path: Path,
) -> None:
    from ruamel.yaml import YAML

    def read_as_yaml_1_1(text: str) -> dict[object, float]:
        """The offsets as PyYAML and other YAML 1.1 readers see them: `No` is False there."""
        reader = YAML(typ="safe", pure=True)
        return dict(reader.load("%YAML 1.1\n---\n" + text)["calibration"]["offsets"])

    labels = ("No", "Yes", "on", "1")
    path = tmp_path / "set.yaml"
    path.write_text(SET, encoding="utf-8")
    base = load_instruction_set(path)
    offsets = {"No": -0.7661, "Yes": 0.0, "on": 0.5, "1": 1.5}
    save_instruction_set(dataclasses.replace(base, calibration=fitted_calibration(offsets)), path)
    text = path.read_text(encoding="utf-8")
    assert read_as_yaml_1_1(text) == offsets
    loaded = load_instruction_set(path).calibration
    assert loaded is not None and loaded.offsets == offsets
    # a file an earlier version wrote unquoted is quoted on refit, its comment kept in place
    old = text.replace('"No": -0.7661', "No: -0.7661  # refit on dev").replace('"Yes"', "Yes")
    assert read_as_yaml_1_1(old) != offsets
    refit = render_instruction_text(
        dataclasses.replace(base, calibration=fitted_calibration({**offsets, "Yes": 0.25})),
        old,
        path,
    )
    assert read_as_yaml_1_1(refit) == {**offsets, "Yes": 0.25}
    assert [line.split("#")[0].strip() for line in refit.splitlines() if "# refit" in line] == [
        '"No": -0.7661'
    ]
    assert list(read_as_yaml_1_1(refit)) == list(labels)  # the keys keep their order


def test_the_calibration_is_in_the_content_hash_but_not_in_the_prompt(tmp_path: Path) -> None:
    base = load_instruction_set_text(SET, "set.yaml")
    with_cal = dataclasses.replace(base, calibration=fitted_calibration(dict.fromkeys(LABELS, 0.0)))
    moved = dataclasses.replace(
        base, calibration=fitted_calibration({**dict.fromkeys(LABELS, 0.0), "race": 1.0})
    )
    assert len({base.content_hash(), with_cal.content_hash(), moved.content_hash()}) == 3
    prompts = {render_system_prompt(s, LABELS, tmp_path) for s in (base, with_cal, moved)}
    assert len(prompts) == 1  # the cached raw scores stay valid across calibrations
