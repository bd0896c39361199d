"""`pld review` on temporary git repositories: rule-level diffs, metric deltas, bad input.

The student here is the scripted backend (control flow only): it answers "yes" when the
example's keyword appears in the system prompt, so adding, removing or rewording a rule that
names a keyword changes predictions in a way the tests can predict.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import commit, git, isolate_git

from pytest_pld.cli import main
from pytest_pld.instructions import InstructionSet, Rule
from pytest_pld.review.diff import diff_sets, format_provenance
from pytest_pld.testing import ScriptedBackend

WORDS = ("apple", "pear", "plum", "fig", "kiwi", "lime")

SUITE = """\
name: {name}
dataset: {{loader: jsonl}}
splits: {{test: data/test.jsonl, dev: data/dev.jsonl}}
labels: [yes, "no"]
user_template: "{{{{ text }}}}"
instructions: instructions/{iset}.yaml
student: scripted:demo
gates:
  accuracy: ">= 0.5"
"""

BASE_SET = """\
name: demo
version: 1
preamble: Decide yes or no.
rules:
  - id: R1
    text: Say yes for apple.
    provenance: {method: cluster, support: 7, traces: [t-1, t-2, t-3, t-4]}
  - id: R2
    text: Say yes for pear.
    provenance: {method: cluster, support: 3}
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""

# R1 reworded (now also names plum), R2 removed, R3 added
HEAD_SET = """\
name: demo
version: 2
preamble: Decide yes or no.
rules:
  - id: R1
    text: Say yes for apple and plum.
    provenance: {method: cluster, support: 7, traces: [t-1, t-2, t-3, t-4]}
  - id: R3
    text: Say yes for fig.
    label: "yes"
    provenance: {method: refine, round: 2}
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_git(monkeypatch)


def write(repo: Path, rel: str, text: str) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def make_repo(repo: Path, *, branch: str = "main", suites: Sequence[str] = ("demo",)) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", branch)
    write(repo, ".gitignore", ".pld/\n")
    for split, n in (("test", 12), ("dev", 8)):
        lines = [
            json.dumps(
                {
                    "id": f"{split[0]}{i}",
                    "text": f"a {WORDS[i % 6]} {i}",
                    "label": "yes" if i % 2 == 0 else "no",
                }
            )
            for i in range(n)
        ]
        write(repo, f"data/{split}.jsonl", "\n".join(lines) + "\n")
    for name in suites:
        write(repo, f"suites/{name}.yaml", SUITE.format(name=name, iset=name))
        write(repo, f"instructions/{name}.yaml", BASE_SET.replace("name: demo", f"name: {name}"))
    commit(repo, "base")
    return repo


def pld(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, str, str]:
    code = main(["review", "--root", str(repo), "--resamples", "100", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- the rule-level diff -----------------------------------------------------------------------


def test_a_commit_that_rewords_one_rule_and_relabels_another_names_the_field_per_rule(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    labelled = BASE_SET.replace(
        "    text: Say yes for pear.\n", '    text: Say yes for pear.\n    label: "yes"\n'
    )
    write(repo, "instructions/demo.yaml", labelled)
    base = commit(repo, "label R2")
    changed = labelled.replace("Say yes for apple.", "Say yes for a green apple.").replace(
        'label: "yes"', 'label: "no"'
    )
    write(repo, "instructions/demo.yaml", changed)
    head = commit(repo, "reword R1, relabel R2")
    code, out, _ = pld(capsys, repo, "--no-run", "--base", base, "--head", head)
    assert code == 0
    assert "~ R1  text reworded  [" in out
    assert "~ R2  label yes -> no  [" in out
    code, md, _ = pld(capsys, repo, "--no-run", "--base", base, "--head", head, "--format", "md")
    assert "| ~ | `R1` | text reworded |" in md and "| ~ | `R2` | label yes → no |" in md
    code, raw, _ = pld(capsys, repo, "--no-run", "--base", base, "--head", head, "--format", "json")
    rules = {r["id"]: r["fields"] for r in json.loads(raw)["sets"][0]["diff"]["rules"]}
    assert rules == {"R1": ["text"], "R2": ["label"]}


def test_review_lists_added_removed_and_reworded_rules_by_id_with_provenance(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--no-run")
    assert code == 0
    assert "instructions/demo.yaml: v1 -> v2 · 1 added, 1 removed, 1 reworded" in out
    assert "~ R1  text reworded  [method cluster, support 7, traces t-1, t-2, t-3 (+1 more)]" in out
    assert "- Say yes for apple.\n      + Say yes for apple and plum." in out
    assert "+ R3  added  [method refine, round 2]" in out
    assert "- R2  removed  [method cluster, support 3]" in out
    # the rendered prompt's diff, and its size before and after
    assert "-2. Say yes for pear.\n      +1. Say yes for apple and plum." in out
    assert re.search(r"system prompt \d+ -> \d+ tokens", out)
    assert student.classify_calls == 0  # --no-run never calls a model


def test_review_reports_metric_deltas_with_intervals_and_flipped_examples(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--format", "json")
    assert code == 0
    report = json.loads(out)
    (suite,) = report["sets"][0]["suites"]
    assert suite["status"] == "compared" and suite["examples"] == 12
    rows = {m["name"]: m for m in suite["metrics"]}
    assert set(rows) >= {
        "accuracy",
        "macro_f1",
        "f1[yes]",
        "f1[no]",
        "latency_overhead",
        "prompt_tokens",
    }
    # test ids t0..t11 use apple, pear, plum, fig, kiwi, lime in turn; even ids are "yes".
    # base says yes to apple/pear (t0,t1,t6,t7), head to apple/plum/fig (t0,t2,t3,t6,t8,t9)
    assert rows["accuracy"]["base"] == pytest.approx(6 / 12)
    assert rows["accuracy"]["head"] == pytest.approx(8 / 12)
    assert rows["accuracy"]["low"] <= rows["accuracy"]["delta"] <= rows["accuracy"]["high"]
    assert {f["id"] for f in suite["right_to_wrong"]} == {"t3", "t9"}
    assert {f["id"] for f in suite["wrong_to_right"]} == {"t1", "t2", "t7", "t8"}
    # base with rules, head with rules, and the shared no-rules run (latency overhead)
    assert suite["model_calls"] == student.classify_calls == 36


def test_review_reports_the_exact_mcnemar_test_beside_the_bootstrap_in_every_format(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    from scipy.stats import binomtest

    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, raw, _ = pld(capsys, repo, "--format", "json")
    assert code == 0
    (suite,) = json.loads(raw)["sets"][0]["suites"]
    # the same flips as above: t3, t9 right -> wrong; t1, t2, t7, t8 wrong -> right
    expected = binomtest(2, 6, 0.5).pvalue
    assert suite["mcnemar"] == {"worse": 2, "better": 4, "p_value": pytest.approx(expected)}
    assert suite["clusters"] is None  # the suite names no cluster_key
    line = (
        f"McNemar exact test of correctness: 2 right -> wrong, 4 wrong -> right, p = {expected:.3f}"
    )
    _, out, _ = pld(capsys, repo, "--no-run")
    assert f"    {line}" in out and "    intervals: paired bootstrap over the examples" in out
    _, md, _ = pld(capsys, repo, "--no-run", "--format", "md")
    assert line in md and "Intervals: paired bootstrap over the examples." in md


def test_the_markdown_report_fits_a_pr_comment_with_details_folded(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--format", "md")
    assert code == 0
    assert out.startswith("### pld review")
    assert "| ~ | `R1` | text reworded |" in out and "| - | `R2` | removed |" in out
    assert "| accuracy | 0.500 | 0.667 | +0.167 |" in out
    assert "Flipped: 2 right → wrong, 4 wrong → right." in out
    for summary in ("Rule texts", "Flipped examples", "Rendered system prompt diff"):
        assert f"<details><summary>{summary}</summary>" in out
    assert out.count("<details>") == out.count("</details>")
    assert len(out) < 65_536


def test_run_records_are_reused_so_a_second_review_calls_no_model(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    pld(capsys, repo)
    calls = student.classify_calls
    code, out, _ = pld(capsys, repo, "--no-run", "--format", "json")
    assert code == 0 and student.classify_calls == calls
    suite = json.loads(out)["sets"][0]["suites"][0]
    assert suite["status"] == "compared" and suite["model_calls"] == 0
    assert all(path.startswith(str(repo / ".pld" / "runs")) for path in suite["records"].values())


def test_without_records_no_run_says_how_to_get_metrics(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--no-run")
    assert code == 0
    assert "no run record for the base side; run without --no-run to compute it" in out


def test_a_comment_only_change_reports_no_semantic_change_and_no_metrics(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(
        repo,
        "instructions/demo.yaml",
        "# reviewed by the legal team\n"
        + BASE_SET.replace("  - id: R2\n", "  # keep: pears are common\n  - id: R2\n"),
    )
    code, out, _ = pld(capsys, repo, "--format", "json")
    assert code == 0
    (report,) = json.loads(out)["sets"]
    assert report["status"] == "no semantic change"
    assert report["diff"]["rules"] == [] and report["suites"] == []
    assert student.classify_calls == 0
    code, md, _ = pld(capsys, repo, "--format", "md")
    assert "no semantic change" in md and "| metric |" not in md


def test_no_changes_says_so_and_exits_0(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    code, out, _ = pld(capsys, repo)
    assert code == 0
    assert "no instruction changes (1 instruction sets compared)" in out


def test_committed_revisions_can_be_compared_in_both_directions(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    head = commit(repo, "head")
    write(repo, "instructions/demo.yaml", BASE_SET)  # the working tree must not matter
    code, out, _ = pld(capsys, repo, "--base", head, "--head", base, "--no-run")
    assert code == 0
    assert "v2 -> v1 · 1 added, 1 removed, 1 reworded" in out
    assert "+ R2  added" in out and "- R3  removed" in out


def test_the_default_base_is_the_merge_base_with_the_default_branch(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    fork = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    commit(repo, "feature work")
    git(repo, "checkout", "-q", "main")
    write(repo, "instructions/demo.yaml", BASE_SET.replace("Decide", "Please decide"))
    commit(repo, "unrelated change on main")
    git(repo, "checkout", "-q", "feature")
    code, out, _ = pld(capsys, repo, "--no-run")
    assert code == 0
    assert f"{fork[:7]} (merge base of HEAD and main) -> working tree" in out
    assert "preamble changed" not in out  # main's later change is not part of this branch


def test_without_a_default_branch_the_base_is_head_1_with_a_note(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", branch="trunk")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    commit(repo, "head")
    code, out, _ = pld(capsys, repo, "--no-run")
    assert code == 0
    assert "(HEAD~1) -> working tree" in out
    assert "no default branch (origin/HEAD, main or master) was found" in out
    assert "1 added, 1 removed, 1 reworded" in out


def test_a_custom_template_changed_at_one_revision_shows_in_the_prompt_diff(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(
        repo,
        "templates/system.j2",
        "{{ preamble }}\n{% for r in rules %}* {{ r.text }}\n{% endfor %}{{ output }}",
    )
    write(repo, "instructions/demo.yaml", BASE_SET + "template: templates/system.j2\n")
    commit(repo, "custom template")
    write(
        repo,
        "templates/system.j2",
        "{{ preamble }}\n{% for r in rules %}- {{ r.text }}\n{% endfor %}{{ output }}",
    )
    code, out, _ = pld(capsys, repo, "--format", "json")
    assert code == 0
    (report,) = json.loads(out)["sets"]
    assert report["status"] == "changed" and report["diff"]["rules"] == []
    (suite,) = report["suites"]
    assert "-* Say yes for apple." in suite["prompt_diff"]
    assert "+- Say yes for apple." in suite["prompt_diff"]
    assert suite["status"] == "compared"  # both sides ran, each with its own template


# --- bad input ---------------------------------------------------------------------------------


def test_a_revision_that_does_not_exist_is_a_clear_error(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    code, out, err = pld(capsys, repo, "--base", "no-such-branch")
    assert code == 2 and out == ""
    assert "base revision 'no-such-branch' not found" in err
    assert "git branch -a" in err


def test_a_file_invalid_at_one_revision_is_reported_and_the_others_are_reviewed(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", suites=("demo", "other"))
    write(
        repo,
        "instructions/demo.yaml",
        BASE_SET.replace("    text: Say yes for pear.\n", "    txt: Say yes for pear.\n"),
    )
    write(repo, "instructions/other.yaml", HEAD_SET.replace("name: demo", "name: other"))
    code, out, _ = pld(capsys, repo, "--no-run")
    assert code == 0
    assert "instructions/demo.yaml: invalid at head" in out
    assert "not valid at the head revision:" in out
    assert "rules[1].txt: unknown key (did you mean 'text'?)" in out
    assert "instructions/other.yaml: v1 -> v2 · 1 added, 1 removed, 1 reworded" in out


def test_a_file_that_cannot_be_parsed_at_the_base_is_reported_for_the_base(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", "name: [unclosed\n")
    commit(repo, "broken")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--base", "HEAD", "--no-run")
    assert code == 0
    assert "invalid at base" in out and "malformed YAML" in out


def test_a_shallow_clone_without_the_base_explains_how_to_fetch_it(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    origin = make_repo(tmp_path / "origin")
    base = git(origin, "rev-parse", "HEAD")
    write(origin, "instructions/demo.yaml", HEAD_SET)
    commit(origin, "head")
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(clone)],
        check=True,
        capture_output=True,
    )
    code, _, err = pld(capsys, clone, "--base", base)
    assert code == 2
    assert "not found" in err
    assert "git fetch --unshallow" in err and "fetch-depth: 0" in err


def test_an_unknown_suite_gets_did_you_mean(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    code, _, err = pld(capsys, repo, "--suite", "dmeo")
    assert code == 2 and "did you mean 'demo'" in err


def test_outside_a_git_repository_review_says_so(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "suites").mkdir()
    code, _, err = pld(capsys, tmp_path)
    assert code == 2 and "not inside a git repository" in err


def test_a_suite_that_cannot_be_evaluated_is_reported_and_the_review_goes_on(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "instructions/demo.yaml", HEAD_SET)
    code, out, _ = pld(capsys, repo, "--model", "nosuch:model", "--format", "json")
    assert code == 0
    (report,) = json.loads(out)["sets"]
    assert report["diff"]["rules"]  # the rule diff is still there
    (suite,) = report["suites"]
    assert suite["status"] == "error" and "unknown provider 'nosuch'" in suite["note"]


# --- the diff itself ---------------------------------------------------------------------------


def _set(*rules: Rule, **fields: object) -> InstructionSet:
    values: dict[str, object] = {
        "path": None,
        "name": "s",
        "version": 1,
        "preamble": "P.",
        "output": "O.",
        "rules": rules,
    }
    values.update(fields)
    return InstructionSet(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new", "summary"),
    [
        (
            (Rule("A", "a"), Rule("B", "b")),
            (Rule("B", "b"), Rule("A", "a")),
            "no rule changes; rules reordered",
        ),
        ((Rule("A", "a"),), (Rule("A", "a", label="yes"),), "1 changed"),
        (
            (Rule("A", "a", provenance={"traces": ("t1",)}),),
            (Rule("A", "a2", provenance={"traces": ("t1", "t2")}),),
            "1 reworded",
        ),
        ((Rule("A", "a"),), (Rule("A", "a"), Rule("B", "b")), "1 added"),
        ((), (Rule("A", "a"), Rule("B", "b")), "2 added"),
        ((Rule("A", "a"),), (), "1 removed"),
    ],
    ids=[
        "reordered",
        "label-changed",
        "reworded-with-provenance",
        "added",
        "first-rules",
        "last-rule-removed",
    ],
)
def test_the_rule_diff_names_each_kind_of_change(
    old: tuple[Rule, ...], new: tuple[Rule, ...], summary: str
) -> None:
    assert diff_sets(_set(*old), _set(*new)).summary() == summary


def test_a_reworded_rule_lists_every_field_that_changed() -> None:
    diff = diff_sets(_set(Rule("A", "a", tags=("x",))), _set(Rule("A", "b", tags=("y",))))
    (change,) = diff.rules
    assert change.kind == "reworded" and change.fields == ("tags", "text")


def test_set_level_fields_are_diffed_apart_from_rules() -> None:
    diff = diff_sets(_set(), _set(preamble="Q.", version=2))
    assert [f.field for f in diff.fields] == ["preamble"]
    assert diff.summary() == "no rule changes; preamble changed"


def test_markdown_keeps_html_in_rule_text_as_text(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    write(
        repo,
        "instructions/demo.yaml",
        HEAD_SET.replace("Say yes for fig.", "Say yes for </details> fig | kiwi."),
    )
    _code, md, _ = pld(capsys, repo, "--no-run", "--format", "md")
    assert "> Say yes for &lt;/details&gt; fig | kiwi." in md
    # inside code fences (the prompt diff) text is literal; outside them tags must balance
    prose = re.sub(r"```.*?```", "", md, flags=re.DOTALL)
    assert prose.count("<details>") == prose.count("</details>") == 2


def test_provenance_is_one_line_with_long_lists_shortened() -> None:
    text = format_provenance({"method": "cluster", "traces": ["a", "b", "c", "d", "e"]})
    assert text == "method cluster, traces a, b, c (+2 more)"


def test_an_instruction_file_that_is_not_utf8_at_one_side_is_reported_invalid_not_a_traceback(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "instructions" / "demo.yaml").write_bytes(
        BASE_SET.replace("Say yes for apple.", "Say yes for caf\u00e9.").encode("latin-1")
    )
    code, out, err = pld(capsys, repo, "--no-run")
    assert code == 0 and "Traceback" not in out + err
    assert "instructions/demo.yaml: invalid at head" in out
    assert "not UTF-8 text: byte 0xe9" in out
