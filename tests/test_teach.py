"""`pld teach` (phase 1) control flow, with a scripted teacher: validation, repair, failures,
resume, split discipline. Never evidence that a model writes good rules."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import good_json, make_project

from pytest_pld.backends import packaged
from pytest_pld.backends.base import GENERATE_DEFAULTS, GenerateOptions, Generation, Message
from pytest_pld.cli import main
from pytest_pld.distill.answers import entity_terms, normalise_rule
from pytest_pld.distill.teach import teach
from pytest_pld.distill.traces import read_traces
from pytest_pld.errors import PldError
from pytest_pld.suite import Suite
from pytest_pld.testing import ScriptedBackend, scripted


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return make_project(tmp_path)


@pytest.fixture
def teacher() -> Iterator[ScriptedBackend]:
    with scripted(ScriptedBackend("teacher", generate=good_json)) as backend:
        yield backend


def out_of(suite: Suite) -> Path:
    return suite.root / "traces" / "toy.jsonl"


def test_one_trace_per_example_records_gold_rule_teacher_and_tokens(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    traces = read_traces(out_of(suite)).traces
    assert [t.id for t in traces] == ["t1", "t2", "t3", "t4", "t5"]
    assert all(t.ok and t.split == "train" and t.suite == "toy" for t in traces)
    assert traces[0].gold == "pos" and traces[0].rule.startswith("If the text praises")
    assert traces[0].reasoning == "the wording decides"
    assert traces[0].teacher == "scripted:teacher" and traces[0].mode == "json"
    assert traces[0].prompt_tokens > 0 and traces[0].completion_tokens > 0
    assert traces[0].started_at and traces[0].finished_at
    assert (summary.ok, summary.failed, summary.cost.teacher_calls) == (5, 0, 5)
    # the teacher saw the input and the gold label
    assert "great film" in teacher.generate_calls[0][-1].content
    assert "Correct label: pos" in teacher.generate_calls[0][-1].content


def test_a_malformed_answer_gets_one_repair_request_then_counts(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    answers = iter(["Sure! Here is my reasoning in prose.", None])

    def script(messages: Sequence[Message]) -> str:
        return next(answers) or good_json(messages)

    teacher._generate = script
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=1)
    trace = read_traces(out_of(suite)).traces[0]
    assert trace.ok and trace.attempts == 2
    repair = teacher.generate_calls[1]
    assert repair[-2].role == "assistant" and "prose" in repair[-2].content
    assert "could not be used" in repair[-1].content and "no JSON object" in repair[-1].content
    assert summary.cost.teacher_calls == 2


def test_an_answer_still_malformed_after_the_repair_is_a_counted_failure(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    teacher._generate = lambda messages: '{"reasoning": "x", "rule": ""}'
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=2)
    traces = read_traces(out_of(suite)).traces
    assert [t.status for t in traces] == ["failed", "failed"]
    assert all(t.attempts == 2 and "too short" in t.error for t in traces)
    assert summary.failed == 2 and summary.cost.teacher_calls == 4
    assert any("failed x2" in line for line in summary.lines())


def test_a_teacher_timeout_is_recorded_and_the_run_goes_on(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    def script(messages: Sequence[Message]) -> str:
        if "Zorblax" in messages[-1].content:
            raise PldError("request timed out after 60 s")
        return good_json(messages)

    teacher._generate = script
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    by_id = read_traces(out_of(suite)).by_id()
    assert by_id["t1"].status == "failed" and "timed out" in by_id["t1"].error
    assert all(by_id[i].ok for i in ("t2", "t3", "t4", "t5"))
    assert summary.failed == 1 and summary.ok == 4


def test_repeated_teacher_errors_stop_the_run_and_a_rerun_resumes(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    teacher._generate = lambda messages: (_ for _ in ()).throw(PldError("connection refused"))
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    assert summary.stopped and "5 teacher calls in a row failed" in summary.stopped
    teacher._generate = good_json
    again = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    assert again.taught == 5 and again.ok == 5  # failed examples are retried
    assert all(t.ok for t in read_traces(out_of(suite)).traces)


def test_an_interrupted_run_resumes_where_it_stopped(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    calls = {"n": 0}

    def script(messages: Sequence[Message]) -> str:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return good_json(messages)

    teacher._generate = script
    first = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    assert first.interrupted and first.ok == 2
    assert len(read_traces(out_of(suite)).traces) == 2
    teacher._generate = good_json
    before = len(teacher.generate_calls)
    second = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    assert second.already_done == 2 and second.taught == 3
    assert len(teacher.generate_calls) - before == 3
    assert [t.id for t in read_traces(out_of(suite)).traces] == ["t1", "t2", "t3", "t4", "t5"]


def test_a_resume_with_another_teacher_says_which_examples_that_teacher_skipped(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=2)
    with scripted(ScriptedBackend("other", generate=good_json)):
        summary = teach(suite, teacher="scripted:other", out=out_of(suite))
    assert (summary.already_done, summary.taught) == (2, 3)
    assert summary.done_by_others == {"scripted:teacher": 2}
    assert (
        "  note: 2 of the 2 already there were taught by scripted:teacher, not scripted:other; "
        "to teach them with this teacher, use another --out"
    ) in summary.lines()


def test_a_truncated_last_line_is_reported_removed_and_taught_again(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=2)
    path = out_of(suite)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][:25], encoding="utf-8")  # a write cut short
    tf = read_traces(path)
    assert tf.truncated_line == 2 and len(tf.traces) == 1
    summary = teach(suite, teacher="scripted:teacher", out=path, limit=2)
    assert summary.truncated_line == 2 and summary.taught == 1
    assert any("line 2" in line and "truncated" in line for line in summary.lines())
    assert len(read_traces(path).traces) == 2 and read_traces(path).truncated_line is None


def test_a_malformed_line_in_the_middle_is_an_error_naming_it(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=2)
    path = out_of(suite)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + lines[1], encoding="utf-8")
    with pytest.raises(PldError) as info:
        teach(suite, teacher="scripted:teacher", out=path)
    assert f"{path}:2:" in str(info.value) and "malformed trace line" in str(info.value)


def test_teach_refuses_to_read_the_gate_split(suite: Suite, teacher: ScriptedBackend) -> None:
    with pytest.raises(PldError, match="never reads the 'test' split"):
        teach(suite, teacher="scripted:teacher", out=out_of(suite), split="test")
    assert teacher.generate_calls == [] and not out_of(suite).exists()


def test_traces_of_another_suite_in_the_out_file_are_refused(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    out_of(suite).parent.mkdir(parents=True)
    out_of(suite).write_text(
        json.dumps(
            {
                "id": "a",
                "suite": "other",
                "split": "train",
                "gold": "pos",
                "rule": "x",
                "teacher": "t",
                "status": "ok",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(PldError, match="trace of suite 'other'"):
        teach(suite, teacher="scripted:teacher", out=out_of(suite))


def test_a_rule_naming_the_examples_entities_is_repaired_once_else_flagged(
    suite: Suite, teacher: ScriptedBackend
) -> None:
    def script(messages: Sequence[Message]) -> str:
        repair = messages[-1].content.startswith("That answer")
        if "Zorblax" in messages[1].content:  # named, then fixed by the repair
            rule = (
                "If the text praises a great film, then pos."
                if repair
                else "If the text mentions Zorblax, then it is pos."
            )
        elif "Topic: acting" in messages[1].content:  # named twice
            rule = "If acting is praised, then the label is pos."
        else:
            return good_json(messages)
        return json.dumps({"reasoning": "r", "rule": rule})

    teacher._generate = script
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite))
    by_id = read_traces(out_of(suite)).by_id()
    assert by_id["t1"].rule == "If the text praises a great film, then pos."
    assert by_id["t1"].entity_terms == () and by_id["t1"].attempts == 2
    repairs = [c[-1].content for c in teacher.generate_calls if len(c) > 2]
    assert any("zorblax" in r for r in repairs)
    # the repair named the entity again: kept (a usable rule), flagged for the distiller
    assert by_id["t2"].ok and by_id["t2"].entity_terms == ("acting",)
    assert by_id["t2"].attempts == 2
    assert summary.entity_flagged == 1 and summary.ok == 5


class PrefillTeacher(ScriptedBackend):
    """Records the structure parameters a local teacher gets."""

    def __init__(self, text: str) -> None:
        super().__init__("prefill", generate=lambda messages: text)
        self.kwargs: list[dict[str, Any]] = []

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        self.kwargs.append(
            {
                "stop": options.stop,
                "prefill": options.prefill,
                "schema": options.json_schema,
                "max_tokens": options.max_tokens,
            }
        )
        return super().generate(messages, options)


def test_prefill_mode_starts_the_rule_and_stops_at_a_newline(suite: Suite) -> None:
    backend = PrefillTeacher(" the review praises the work as great\nand more rambling")
    summary = teach(suite, teacher=backend, out=out_of(suite), limit=1, mode="prefill")
    assert backend.kwargs[0]["prefill"] == "Rule: If" and "\n" in backend.kwargs[0]["stop"]
    assert backend.kwargs[0]["schema"] is None and backend.kwargs[0]["max_tokens"] <= 96
    trace = read_traces(out_of(suite)).traces[0]
    assert trace.rule == (
        f"If the review praises the work as great, then the label is {trace.gold}."
    )
    assert trace.mode == "prefill" and summary.ok == 1


def test_json_mode_sends_a_json_schema(suite: Suite) -> None:
    backend = PrefillTeacher(json.dumps({"reasoning": "r", "rule": "If praised, then pos."}))
    teach(suite, teacher=backend, out=out_of(suite), limit=1, mode="json")
    assert backend.kwargs[0]["schema"]["required"] == ["reasoning", "rule"]
    assert backend.kwargs[0]["prefill"] == ""


@pytest.mark.parametrize(
    "raw, label, expected",
    [
        (
            "if the target is a mother, then gender",
            "gender",
            "If the target is a mother, then gender.",
        ),
        ("Rule: If the text is upbeat", "pos", "If the text is upbeat, then the label is pos."),
        ("If upbeat, then happy.", "pos", "If upbeat, then happy (label: pos)."),
    ],
    ids=["capitalised-and-closed", "label-appended", "label-named-when-then-is-elsewhere"],
)
def test_rules_are_normalised_to_one_sentence_naming_their_label(
    raw: str, label: str, expected: str
) -> None:
    assert normalise_rule(raw, label) == expected


def test_entity_terms_are_short_field_values_and_capitalised_names() -> None:
    terms = entity_terms(
        {"target": "chess player", "sentence": "He said Boris was smart."}, allowed=["player"]
    )
    assert "chess player" in terms and "chess" in terms and "boris" in terms
    assert "player" not in terms and "smart" not in terms


def test_the_teach_command_prints_a_summary(
    suite: Suite, teacher: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["teach", "toy", "--teacher", "scripted:teacher", "--limit", "3", "--root", str(suite.root)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "ok 3, failed 0" in out and "teacher calls 3" in out
    assert "traces: traces/toy.jsonl" in out


def test_the_teach_command_refuses_the_test_split_with_exit_2(
    suite: Suite, teacher: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "teach",
            "toy",
            "--teacher",
            "scripted:teacher",
            "--split",
            "test",
            "--root",
            str(suite.root),
        ]
    )
    assert code == 2 and "never reads the 'test' split" in capsys.readouterr().err


def test_teach_without_a_teacher_where_the_1_5b_is_missing_says_how_to_install_it(
    suite: Suite, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = packaged.DEFAULT_TEACHER_MODEL
    absent = replace(packaged.PACKAGED[name], parts=(("pld_no_such_package", "x.bin"),))
    monkeypatch.setitem(packaged.PACKAGED, name, absent)
    code = main(["teach", "toy", "--limit", "1", "--root", str(suite.root)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"the default teacher local:{name} is not installed" in err
    assert f"pld models install {name}" in err
    assert not (suite.root / "traces").exists()  # stopped before writing anything


def test_prefill_mode_flags_an_entity_copying_rule_without_spending_a_repair(suite: Suite) -> None:
    backend = PrefillTeacher(" Zorblax is great, then the label is pos")
    teach(suite, teacher=backend, out=out_of(suite), mode="prefill")
    trace = read_traces(out_of(suite)).by_id()["t1"]
    assert trace.ok and trace.attempts == 1 and trace.entity_terms == ("zorblax",)
