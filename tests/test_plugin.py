"""The pytest plugin end to end, in temporary projects run by pytester.

The student is the scripted backend (a control-flow stand-in, never evidence about a model):
it answers with the hint in the user message when the system prompt has a rule about hints,
and with the first label otherwise, so instruction edits change predictions predictably. Every
call is appended to calls.txt so the tests can count model calls.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# pytester's in-process runs restore sys.modules afterwards, and numpy's C extension cannot be
# imported twice in one process: import what the plugin's runs use once, here, up front.
import numpy  # noqa: F401
import pytest
import sklearn.metrics  # noqa: F401
from helpers import PLUGIN_CONFTEST, PLUGIN_SUITE, Needs, calls, edit, make_plugin_project
from helpers import PLUGIN_EXAMPLES as N

ROOT = Path(__file__).resolve().parents[1]

GATES = ["render", "macro_f1>=0.6", "accuracy>=0.5", "regression[macro_f1]"]


def ids(*names: str) -> list[str]:
    return [f"suites/sentiment.yaml::{n}" for n in names]


@pytest.fixture(autouse=True)
def no_step_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    # a CI job's own summary file must not receive the reports of these test projects
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    return make_plugin_project(pytester)


# --- options ------------------------------------------------------------------------------------


def test_help_lists_every_option_with_its_metavar_and_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "pytest-pld: instruction-set gates:",
            "*--pld-suite=NAME[[],NAME...[]]*",
            "*--pld-model=PROVIDER:MODEL*",
            "*--pld-limit=N*",
            "*--pld-split=SPLIT*",
            "*--pld-data-root=DIR*",
            "*--pld-no-cache*",
            "*--pld-no-calibration*",
            "*--pld-results=DIR*",
            "*--pld-baseline=PATH*",
            "*--pld-update-baseline*",
            "*--pld-report=PATH*",
            "*--pld-shard=I/N*",
            "*--pld-record=PATH*",
            "*--pld-student-base-url=URL*",
            "*--pld-student-api-key=KEY*",
            "*--pld-student-option=KEY=VALUE*",
            "*--pld-power={warn,fail}*",
        ]
    )
    text = result.stdout.str()
    for key in ("pld_suites_dir", "pld_default_model", "pld_results", "pld_power"):
        assert key in text
    # every option states its default
    block = text[text.index("pytest-pld: instruction-set gates:") :]
    block = block[: block.index("\n\n")]
    options = re.findall(r"^  --pld-", block, flags=re.MULTILINE)
    assert len(options) == 17
    assert block.count("Default:") == len(options)


def test_without_pld_suite_nothing_is_collected_and_nothing_heavy_is_imported(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "broken.yaml").write_text("not: [valid")
    pytester.makepyfile(
        test_light="""
import sys

def test_the_plugin_costs_nothing():
    heavy = {"sklearn", "torch", "transformers", "openai", "pytest_pld.items",
             "pytest_pld.runner", "pytest_pld.suite"}
    assert not heavy & set(sys.modules)
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "pytest-pld summary" not in result.stdout.str()


@pytest.mark.parametrize("value", ["0", "-3", "some"])
def test_a_limit_that_is_not_a_positive_integer_is_a_usage_error(
    project: pytest.Pytester, value: str
) -> None:
    result = project.runpytest("--pld-suite=sentiment", f"--pld-limit={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pld-limit: expected a positive integer*"])
    assert calls(project) == 0


def test_an_unknown_suite_is_a_usage_error_with_did_you_mean(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentimnet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--pld-suite=sentimnet: unknown suite 'sentimnet' (did you mean 'sentiment'?)*",
            "*available suites: sentiment, or all*",
        ]
    )


def test_an_unwritable_results_folder_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-results=tox.ini/runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--pld-results: cannot write run records to*",
            "*hint: pass --pld-results DIR with a writable folder*",
        ]
    )
    assert calls(project) == 0


# --- collection ---------------------------------------------------------------------------------


def test_each_gate_is_its_own_item_and_ordinary_tests_are_left_out(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([*ids(*GATES), "4 tests collected*"])
    assert "test_ordinary" not in result.stdout.str()
    assert calls(project) == 0  # collecting evaluates nothing


def test_explicit_paths_run_alongside_the_gates(project: pytest.Pytester) -> None:
    result = project.runpytest("test_ordinary.py", "--pld-suite=all", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_ordinary.py::test_ordinary", *ids(*GATES)])


def test_the_ini_key_names_the_suites_folder(project: pytest.Pytester) -> None:
    (project.path / "suites").rename(project.path / "benchmarks")
    project.makeini("[pytest]\npld_suites_dir = benchmarks\n")
    result = project.runpytest("--pld-suite=sentiment", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["benchmarks/sentiment.yaml::render", "4 tests collected*"])


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        pytest.param(
            'gates:\n  macro_f1: ">= 0.6"\n  f1_macro: ">= 0.6"\n',
            [
                "*sentiment.yaml:11: gates.f1_macro: unknown metric 'f1_macro'*",
                "*hint: metrics: accuracy, macro_f1,*",
            ],
            id="unknown-metric",
        ),
        pytest.param(
            'gates:\n  macro_f1: "at least 0.6"\n',
            [
                "*sentiment.yaml:10: gates.macro_f1: malformed bound 'at least 0.6'*",
                "*hint: write it as '>= 0.6', '> 0.6', '<= 1.15' or '< 6000'*",
            ],
            id="malformed-bound",
        ),
        pytest.param(
            "gates: {}\n",
            ["*sentiment.yaml:9: gates: a suite needs at least one gate*"],
            id="no-gates",
        ),
        pytest.param("gates: [oops\n", ["*sentiment.yaml:*: malformed YAML*"], id="broken-yaml"),
    ],
)
def test_a_broken_suite_is_a_collection_error_never_a_pass(
    project: pytest.Pytester, gates: str, expected: list[str]
) -> None:
    path = project.path / "suites" / "sentiment.yaml"
    path.write_text(PLUGIN_SUITE[: PLUGIN_SUITE.index("gates:")] + gates)
    result = project.runpytest("--pld-suite=sentiment")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting suites/sentiment.yaml*", *expected])
    assert "Traceback" not in result.stdout.str()
    assert calls(project) == 0


def held_out(project: pytest.Pytester, tmp_path: Path) -> Path:
    """The suite gains a `heldout` split read from a data root outside the project."""
    edit(
        project,
        "suites/sentiment.yaml",
        "splits: {test: data/sentiment.jsonl, dev: data/dev.jsonl}",
        "splits: {test: data/sentiment.jsonl, dev: data/dev.jsonl, heldout: data:h/held.jsonl}",
    )
    root = tmp_path / "mounted"
    (root / "h").mkdir(parents=True)
    rows = [{"id": f"h{i}", "text": "t", "hint": "pos", "label": "pos"} for i in range(5)]
    (root / "h" / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_a_heldout_split_under_a_data_root_is_gated_like_any_other(
    project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = held_out(project, tmp_path)
    result = project.runpytest(
        "--pld-suite=sentiment", "--pld-split=heldout", f"--pld-data-root={root}", "-k", "accuracy"
    )
    result.assert_outcomes(passed=1)
    assert calls(project) == 5  # the five held-out rows, nothing else
    monkeypatch.setenv("PLD_DATA_ROOT", str(root))
    result = project.runpytest("--pld-suite=sentiment", "--pld-split=heldout", "-k", "accuracy")
    result.assert_outcomes(passed=1)


def test_split_and_data_root_mistakes_stop_the_run_before_any_model_call(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    root = held_out(project, tmp_path)
    result = project.runpytest("--pld-suite=sentiment", "--pld-split=heldot")
    result.stdout.fnmatch_lines(["*no such split (did you mean 'heldout'?)*"])
    result = project.runpytest("--pld-suite=sentiment", "--pld-split=heldout", "-k", "accuracy")
    result.stdout.fnmatch_lines(
        ["*reads from the data root, and none is set*", "*--pld-data-root*"]
    )
    result = project.runpytest("--pld-suite=sentiment", f"--pld-data-root={root}/missing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--pld-data-root: the data root * does not exist*"])
    assert calls(project) == 0


def test_an_unknown_split_or_provider_is_a_collection_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-split=train")
    result.stdout.fnmatch_lines(
        ["*--pld-split=train: the suite has no such split*", "*its splits: test, dev*"]
    )
    result = project.runpytest("--pld-suite=sentiment", "--pld-model=scriptd:good")
    result.stdout.fnmatch_lines(
        [("*--pld-model 'scriptd:good': unknown provider 'scriptd' (did you mean 'scripted'?)*")]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


# --- outcomes -----------------------------------------------------------------------------------


def test_passing_gates_pass_and_the_summary_table_is_printed(project: pytest.Pytester) -> None:
    project.runpytest("--pld-suite=sentiment", "--pld-update-baseline")
    result = project.runpytest("--pld-suite=sentiment")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*pytest-pld summary*",
            (
                f"suite sentiment: split test, {N} examples, model scripted:good, instructions "
                f"sentiment v1, {N} cache hits, 0 model calls"
            ),
            "*gate*value*interval*bound*result*",
            "*render*20*-*<= 200*pass*",
            "*macro_f1>=0.6*1.000*1.000..1.000*>= 0.6*pass*",
            "*accuracy>=0.5*1.000*>= 0.5*pass*",
            "*regression[[]macro_f1[]]*delta +0.000*drop <= 0.02 (95%)*pass*",
            "*run record: .pld/runs/sentiment-test-*.json",
        ]
    )
    assert calls(project) == N  # the second run was answered by the response cache


def test_a_notice_of_one_off_work_is_shown_when_said_though_pytest_captures_output(
    project: pytest.Pytester,
) -> None:
    # what the local backend says when it first converts a packaged model
    project.makeconftest(
        PLUGIN_CONFTEST
        + """
def pytest_runtest_call(item):
    from pytest_pld.progress import notice

    notice(f"pld: converting a model once (during {item.name})")
"""
    )
    result = project.runpytest("--pld-suite=sentiment", "-k", "render or accuracy")
    result.assert_outcomes(passed=2, deselected=2)  # passing items: pytest shows no capture
    result.stderr.fnmatch_lines(
        [
            "pld: converting a model once (during render)",
            "pld: converting a model once (during accuracy>=0.5)",
        ]
    )


def test_a_bound_above_the_observed_value_fails_with_a_readable_message(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest(
        "--pld-suite=sentiment", "--pld-model=scripted:poor", "-k", "not regression"
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ sentiment: macro_f1>=0.6 _*",
            "sentiment: macro_f1 = 0.333 (95% CI 0.*..0.*), required >= 0.6",
            "  most confused (gold -> predicted): neg -> pos (12)",
            (
                "  improve instructions/sentiment.yaml, or change the bound in "
                "suites/sentiment.yaml:10"
            ),
            f"  run: sentiment/test, {N} examples, model scripted:poor, instructions sentiment v1",
            "  run record: .pld/runs/sentiment-test-*.json",
            (
                "  inspect it: python -m json.tool .pld/runs/sentiment-test-*.json  (or re-run: pld run "
                "sentiment --split test --model scripted:poor)"
            ),
            "*FAILED suites/sentiment.yaml::macro_f1>=0.6 - sentiment: macro_f1 = 0.333*",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "def runtest" not in out
    assert calls(project) == N  # three items, one evaluation


def test_lowering_the_bound_below_the_observed_value_passes(project: pytest.Pytester) -> None:
    edit(project, "suites/sentiment.yaml", 'macro_f1: ">= 0.6"', 'macro_f1: ">= 0.3"')
    result = project.runpytest(
        "--pld-suite=sentiment", "--pld-model=scripted:poor", "-k", "macro_f1 and not regression"
    )
    result.assert_outcomes(passed=1, deselected=3)


def test_k_selects_a_single_gate(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "-k", "accuracy", "-v")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["suites/sentiment.yaml::accuracy>=0.5 PASSED*"])


def test_a_node_id_selects_a_single_gate(project: pytest.Pytester) -> None:
    # -k cannot spell ">=", but the node id as an argument can
    result = project.runpytest(
        "--pld-suite=sentiment", "suites/sentiment.yaml::macro_f1>=0.6", "-v"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["suites/sentiment.yaml::macro_f1>=0.6 PASSED*"])


def test_last_failed_reruns_exactly_the_failed_gates(project: pytest.Pytester) -> None:
    first = project.runpytest("--pld-suite=sentiment", "--pld-model=scripted:poor")
    first.assert_outcomes(passed=2, failed=2)  # macro_f1 and the (missing) baseline
    result = project.runpytest("--pld-suite=sentiment", "--pld-model=scripted:poor", "--lf", "-v")
    result.assert_outcomes(failed=2, deselected=2)
    result.stdout.fnmatch_lines(["*::macro_f1>=0.6 FAILED*", "*::regression[[]macro_f1[]] FAILED*"])


def test_limit_evaluates_a_deterministic_sample(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-limit=5", "-k", "accuracy")
    result.stdout.fnmatch_lines(["suite sentiment: split test, 5 examples*"])
    first = (project.path / "calls.txt").read_text()
    (project.path / "calls.txt").unlink()
    project.runpytest("--pld-suite=sentiment", "--pld-limit=5", "--pld-no-cache", "-k", "accuracy")
    assert (project.path / "calls.txt").read_text() == first


def test_split_option_evaluates_another_split(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-split=dev", "-k", "accuracy")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["suite sentiment: split dev, 6 examples*"])


def test_no_cache_calls_the_model_again(project: pytest.Pytester) -> None:
    project.runpytest("--pld-suite=sentiment", "-k", "accuracy")
    project.runpytest("--pld-suite=sentiment", "-k", "accuracy", "--pld-no-cache")
    assert calls(project) == 2 * N


def test_the_ini_default_model_is_used_unless_an_option_overrides_it(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\npld_default_model = scripted:poor\n")
    result = project.runpytest("--pld-suite=sentiment", "-k", "accuracy")
    result.stdout.fnmatch_lines(["*model scripted:poor*"])
    result = project.runpytest(
        "--pld-suite=sentiment", "-k", "accuracy", "--pld-model=scripted:good"
    )
    result.stdout.fnmatch_lines(["*model scripted:good*"])


def test_a_failed_evaluation_fails_every_gate_after_one_attempt(project: pytest.Pytester) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-model=scripted:broken")
    result.assert_outcomes(passed=1, failed=3)  # render passes: it needs no answers
    result.stdout.fnmatch_lines(["*RuntimeError: backend exploded*"])
    assert calls(project) == 1


def test_every_item_that_ran_is_in_the_summary_with_pytests_outcome_when_the_data_fails(
    project: pytest.Pytester,
) -> None:
    edit(project, "data/sentiment.jsonl", '"label": "neg"}', '"label": "ngative"}')
    result = project.runpytest("--pld-suite=sentiment", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    text = result.stdout.str()
    table = text[text.index("pytest-pld summary") : text.index("short test summary info")]
    assert "suite sentiment: instructions sentiment v1; not evaluated (" in table
    assert "'ngative'" in table  # the error, named once on the run line
    for gate in GATES:  # the render row too, and no "ERROR" where pytest says FAILED
        assert re.search(rf"^  {re.escape(gate)} .*FAIL, not evaluated$", table, re.MULTILINE)
    assert "ERROR" not in table
    assert calls(project) == 0


def test_a_skipped_item_is_in_the_summary_as_skipped(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--pld-suite=sentiment", "--pld-shard=1/2", "-k", "render or accuracy"
    )
    result.assert_outcomes(passed=1, skipped=1, deselected=2)
    result.stdout.fnmatch_lines(["*pytest-pld summary*", "  accuracy>=0.5 * skipped"])


def test_an_undefined_template_variable_fails_the_render_item(project: pytest.Pytester) -> None:
    edit(project, "suites/sentiment.yaml", "{{ text }}", "{{ txt }}")
    result = project.runpytest("--pld-suite=sentiment", "-k", "render")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            (
                "*user_template: the user template reads 'txt', a field the data "
                "(sentiment.jsonl) does not have (did you mean 'text'?)"
            ),
            "*hint: fields of the data: hint, id, text*",
        ]
    )


def test_a_prompt_over_the_token_budget_fails_the_render_item(project: pytest.Pytester) -> None:
    edit(project, "suites/sentiment.yaml", "max_prompt_tokens: 200", "max_prompt_tokens: 8")
    result = project.runpytest("--pld-suite=sentiment", "-k", "render")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            (
                "prompt tokens: 20 (system prompt 15 + user message of example r0) exceed "
                "max_prompt_tokens 8"
            ),
            "  counted with the tokenizer of scripted:good",
            "*see the prompt: pld render sentiment --example 0*",
        ]
    )
    assert calls(project) == 0


# --- reports ------------------------------------------------------------------------------------


def test_junit_xml_carries_the_metric_values_as_properties(project: pytest.Pytester) -> None:
    project.runpytest("--pld-suite=sentiment", "--junitxml=junit.xml", "-k", "not regression")
    tree = ET.parse(project.path / "junit.xml")
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in tree.iter("testcase")
    }
    assert set(cases) == {"render", "macro_f1>=0.6", "accuracy>=0.5"}
    props = cases["macro_f1>=0.6"]
    assert props["macro_f1"] == "1.0"
    assert props["pld.value"] == "1.0" and props["pld.bound"] == ">= 0.6"
    assert props["pld.ci_low"] == "1.0" and props["pld.model"] == "scripted:good"
    assert props["pld.examples"] == str(N) and props["pld.record"].endswith(".json")
    assert cases["render"]["rendered_prompt_tokens"] == "20.0"


def test_the_markdown_report_goes_to_a_file_and_the_github_step_summary(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = project.path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = project.runpytest(
        "--pld-suite=sentiment",
        "--pld-report=out/report.md",
        "--pld-model=scripted:poor",
        "-k",
        "not regression",
    )
    result.stdout.fnmatch_lines(["markdown report: */out/report.md", f"markdown report: {summary}"])
    report = (project.path / "out" / "report.md").read_text()
    assert "### pytest-pld: `sentiment` failed" in report
    assert "| `macro_f1>=0.6` | 0.333 |" in report and "| FAIL |" in report
    assert "| pos | 0.500 | 1.000 | 0.667 | 12 |" in report  # per-class scores
    assert "| neg | 0.000 | 0.000 | 0.000 | 12 |" in report
    assert summary.read_text() == "earlier step\n" + report


# --- xdist --------------------------------------------------------------------------------------


def test_xdist_workers_evaluate_the_suite_once(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--pld-suite=sentiment", "-n", "2", "--pld-no-cache", "--pld-update-baseline", "-v"
    )
    result.assert_outcomes(passed=4)
    workers = {
        line.split()[0]
        for line in result.stdout.lines
        if "PASSED suites/sentiment.yaml::" in line and "render" not in line
    }
    assert workers == {"[gw0]", "[gw1]"}  # both workers needed the run
    assert calls(project) == N
    result.stdout.fnmatch_lines(
        ["*pytest-pld summary*", f"*{N} examples*", "*baseline written: baselines/sentiment.json*"]
    )


# --- baselines ----------------------------------------------------------------------------------


def test_a_missing_baseline_fails_with_the_command_that_creates_it(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-limit=10", "-k", "regression")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "regression[[]macro_f1[]]: the baseline baselines/sentiment.json does not exist",
            "  create it with: pytest --pld-suite=sentiment --pld-limit=10 --pld-update-baseline",
        ]
    )


def test_update_baseline_then_a_harmless_edit_passes_and_a_planted_regression_fails(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-update-baseline")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "*regression[[]macro_f1[]]*baseline updated*written*",
            "*baseline written: baselines/sentiment.json (commit it)",
        ]
    )
    baseline = json.loads((project.path / "baselines" / "sentiment.json").read_text())
    assert len(baseline["results"]) == N

    # harmless: the rule is reworded and the version bumped; the predictions do not change
    edit(
        project,
        "instructions/sentiment.yaml",
        "Trust the hint.",
        "Follow the hint given after the review.",
    )
    edit(project, "instructions/sentiment.yaml", "version: 1", "version: 2")
    result = project.runpytest("--pld-suite=sentiment", "-k", "regression")
    result.assert_outcomes(passed=1, deselected=3)

    # planted regression: the rule about hints is gone
    edit(
        project,
        "instructions/sentiment.yaml",
        "Follow the hint given after the review.",
        "Read the review carefully.",
    )
    result = project.runpytest("--pld-suite=sentiment", "-k", "regression")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            (
                "regression[[]macro_f1[]]: macro_f1 1.000 (baseline) -> 0.333, delta -0.667; with 95% "
                "confidence the drop is at least 0.*, more than the margin 0.02"
            ),
            (
                f"  {N} examples paired by id: 12 went from right to wrong (r0, r2, r4, ... 9 more), "
                "0 from wrong to right"
            ),
            "  instructions: baseline v1 (*), this run v2 (*)",
            "  baseline: baselines/sentiment.json",
        ]
    )


def test_a_baseline_of_another_sample_is_not_comparable(project: pytest.Pytester) -> None:
    project.runpytest("--pld-suite=sentiment", "--pld-limit=10", "--pld-update-baseline")
    result = project.runpytest("--pld-suite=sentiment", "-k", "regression")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*the baseline baselines/sentiment.json is not comparable with this run",
            "  limit: baseline 10, this run None",
            f"  example ids differ: 0 only in the baseline, {N - 10} only in this run *",
            "  re-create it with: pytest --pld-suite=sentiment --pld-update-baseline",
        ]
    )


def test_an_underpowered_pass_shows_its_detectable_drop_in_the_table_and_junit(
    project: pytest.Pytester,
) -> None:
    project.runpytest("--pld-suite=sentiment", "--pld-update-baseline")
    result = project.runpytest("--pld-suite=sentiment", "--junitxml=junit.xml", "-k", "regression")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            (
                "*regression[[]macro_f1[]]  delta +0.000  +0.000..+0.000  drop <= 0.02 (95%), "
                "detectable 0.*  pass, underpowered"
            ),
            (
                "  regression[[]macro_f1[]]: underpowered: the detectable drop 0.* (95% confidence, 80% "
                "power) exceeds the margin 0.02; about * examples would bring it to the margin "
                "(power: warn, a warning, not a failure)"
            ),
            (
                "  regression[[]macro_f1[]]: McNemar exact test of correctness: 0 right -> wrong, "
                "0 wrong -> right, p = 1.000*"
            ),
        ]
    )
    (case,) = ET.parse(project.path / "junit.xml").iter("testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["pld.underpowered"] == "True" and props["pld.power_policy"] == "warn"
    assert float(props["pld.detectable"]) > float(props["pld.margin"]) == 0.02
    assert int(props["pld.needed_examples"]) > N


@pytest.mark.parametrize(
    ("options", "ini", "suite_power", "outcome"),
    [
        (["--pld-power=fail"], "", None, "failed"),
        ([], "pld_power = fail", None, "failed"),
        ([], "", "fail", "failed"),
        ([], "pld_power = fail", "warn", "passed"),
        (["--pld-power=warn"], "", "fail", "passed"),
    ],
    ids=["option", "ini", "suite", "suite-over-ini", "option-over-suite"],
)
def test_the_power_policy_comes_from_the_option_the_suite_or_the_ini_key(
    project: pytest.Pytester,
    options: list[str],
    ini: str,
    suite_power: str | None,
    outcome: str,
) -> None:
    project.runpytest("--pld-suite=sentiment", "--pld-update-baseline")
    project.makeini(f"[pytest]\n{ini}\n")
    if suite_power:
        edit(
            project,
            "suites/sentiment.yaml",
            "margin: 0.02}",
            f"margin: 0.02, power: {suite_power}}}",
        )
    result = project.runpytest("--pld-suite=sentiment", "-k", "regression", *options)
    result.assert_outcomes(**{outcome: 1}, deselected=3)
    if outcome == "failed":
        result.stdout.fnmatch_lines(["*no drop beyond the margin seen, but underpowered*"])


def test_an_ini_power_that_is_neither_warn_nor_fail_is_a_usage_error(
    project: pytest.Pytester,
) -> None:
    project.makeini("[pytest]\npld_power = strict\n")
    result = project.runpytest("--pld-suite=sentiment")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini key pld_power = 'strict': expected warn or fail*"])


def test_the_baseline_option_points_the_gate_elsewhere(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "--pld-suite=sentiment",
        "--pld-baseline=other/base.json",
        "--pld-update-baseline",
        "-k",
        "regression",
    )
    result.assert_outcomes(passed=1, deselected=3)
    assert (project.path / "other" / "base.json").exists()
    assert not (project.path / "baselines").exists()


def test_update_baseline_without_a_regression_gate_is_an_error(project: pytest.Pytester) -> None:
    edit(
        project,
        "suites/sentiment.yaml",
        "  regression: {metric: macro_f1, baseline: baselines/sentiment.json, margin: 0.02}\n",
        "",
    )
    result = project.runpytest("--pld-suite=sentiment", "--pld-update-baseline")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*--pld-update-baseline: this suite has no regression gate*",
            "*hint: add gates.regression:*or pass --pld-baseline PATH",
        ]
    )


# --- the real model -----------------------------------------------------------------------------


@pytest.mark.integration
def test_the_shipped_stereoset_suite_gates_the_default_local_model(
    tmp_path: Path, needs: Needs
) -> None:
    """`pytest --pld-suite=stereoset --pld-limit=8` in this repository, with the real
    default local model: the summary is printed and each verdict matches its numbers.
    --pld-no-cache keeps the test from writing its answers into the checkout's
    .pld/cache.sqlite (the model is really asked: the record counts 0 hits)."""
    needs.model("qwen2.5-coder-0.5b-instruct")
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pld-suite=stereoset",
            "--pld-limit=8",
            "--pld-no-cache",
            f"--pld-results={tmp_path / 'runs'}",
            f"--junitxml={junit}",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            "-k",
            "not regression",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 1), out  # 1: a gate failed on its numbers, not an error
    assert "pytest-pld summary" in out and "8 examples" in out, out
    assert "model local:" in out, out
    # what the student computed with, and why (dtype, threads, packing); the dtype is
    # the one pyproject.toml's [tool.pld.student] gives, so the shipped calibration fits it
    setup = next(line for line in out.splitlines() if line.startswith("student local:"))
    assert ": float32 (given)," in setup, setup
    assert " thread" in setup and " per pass (rows " in setup, setup
    (record_path,) = (tmp_path / "runs").glob("stereoset-test-*.json")
    record = json.loads(record_path.read_text())
    labels = set(record["labels"]) | {"invalid"}
    assert len(record["results"]) == 8
    assert all(r["pred"] in labels for r in record["results"])
    assert record["cache_hits"] == 0, record["cache_hits"]
    from pytest_pld.suite import parse_bound

    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        failed = case.find("failure") is not None or case.find("error") is not None
        assert "pld.error" not in props, props
        if case.get("name") == "render" or "pld.value" not in props:
            continue
        bound = parse_bound(props["pld.metric"], props["pld.bound"], path=Path("x"), line=None)
        assert bound.holds(float(props["pld.value"])) is not failed, props
