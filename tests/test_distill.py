"""`pld distill` (phases 2-3) control flow with a scripted teacher and student: clustering and
its degenerate cases, selection, revision, ids, the diff, --write and its refusals, bad input.
The scripted student reads the rules in its system prompt; it is a stand-in for control flow,
never evidence that a model follows rules."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import good_json, make_project

from pytest_pld.backends.base import Message
from pytest_pld.cli import main
from pytest_pld.distill.guard import LeakageCheck
from pytest_pld.distill.pipeline import distill
from pytest_pld.distill.propose import IdAllocator, Proposal
from pytest_pld.distill.rule_clusters import cluster_rules
from pytest_pld.distill.settings import DistillSettings
from pytest_pld.distill.teach import teach
from pytest_pld.errors import PldError
from pytest_pld.instructions import load_instruction_set, load_instruction_set_text
from pytest_pld.suite import Suite
from pytest_pld.testing import ScriptedBackend, scripted

TEST_SENTENCE = "the one test sentence that nobody may ever copy into a rule"


def student(system: str, user: str, labels: Sequence[str]) -> str:
    """Follows two kinds of rule: 'great' ones (pos when the text says great) and the
    over-broad 'mentions a show' one (pos for every show)."""
    rules = system.split("Rules:")[1] if "Rules:" in system else ""
    if "great" in rules and "great" in user:
        return "pos"
    if "mentions a show" in rules and "show" in user:
        return "pos"
    return "neg"


def teacher_fn(messages: Sequence[Message]) -> str:
    prompt = messages[-1].content
    if "Correct label: " in prompt:
        return good_json(messages)
    if "Merge them" in prompt:
        label = prompt.split("correct label is ")[1].split(":")[0]
        cue = "is enthusiastic, calling it great" if label == "pos" else "finds it dull"
        return json.dumps({"rule": f"If the review {cue}, then the label is {label}."})
    return json.dumps({"rule": "If the review calls it great, then the label is pos."})


@pytest.fixture
def backend() -> Iterator[ScriptedBackend]:
    with scripted(ScriptedBackend("t", generate=teacher_fn, classify=student)) as backend:
        yield backend


@pytest.fixture
def taught(tmp_path: Path, backend: ScriptedBackend) -> Suite:
    suite = make_project(tmp_path)
    teach(suite, teacher="scripted:t", out=traces_of(suite))
    return suite


def traces_of(suite: Suite) -> Path:
    return suite.root / "traces" / "toy.jsonl"


def settings(suite: Suite, **kw: object) -> DistillSettings:
    base: dict[str, object] = {"traces": traces_of(suite), "embedder": "tfidf", "min_samples": 2}
    base.update(kw)
    return DistillSettings(**base)  # type: ignore[arg-type]


def run_distill(suite: Suite, distill_settings: DistillSettings) -> Proposal:
    """distill() without its progress log, its cache and proposal explicitly under the test's
    project (a library default that writes under a project is never left to chance)."""
    return distill(suite, distill_settings, log=lambda _: None, state_dir=suite.root / ".pld")


def run_cli(suite: Suite, *extra: str) -> int:
    return main(
        [
            "distill",
            "toy",
            "--traces",
            str(traces_of(suite)),
            "--embedder",
            "tfidf",
            "--min-samples",
            "2",
            "--root",
            str(suite.root),
            *extra,
        ]
    )


# --- the proposal -------------------------------------------------------------------------------


def test_distill_prints_a_diff_with_an_added_rule_and_writes_nothing(
    taught: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    path = taught.instructions_path
    before = path.read_bytes()
    assert run_cli(taught) == 0
    out = capsys.readouterr().out
    assert "+  - id: R002" in out and "-version: 1" in out and "+version: 2" in out
    assert "added     R002 [pos]: If the review is enthusiastic" in out
    assert "method: synthesis" in out and "support: 3" in out
    # the held-back fold: the current and the proposed set (raw only: no label scores)
    assert re.search(r"^  current, raw +0\.333 +0\.500 ", out, re.MULTILINE)
    assert re.search(r"^  proposed, raw +1\.000 +1\.000 ", out, re.MULTILINE)
    assert "# cost" in out and "synthesize" in out and "select" in out
    assert path.read_bytes() == before  # nothing written without --write
    saved = sorted((taught.root / ".pld" / "proposals").iterdir())
    assert [p.suffix for p in saved] == [".json", ".yaml"]
    data = json.loads(saved[0].read_text(encoding="utf-8"))
    assert data["base_text"] == before.decode() and data["new_version"] == 2
    # 5 traces + 2 merges (a second view of a cluster whose rules are all the same is the
    # same request, so it is not made) + 1 paraphrase for the wording check
    assert data["cost"]["total"]["teacher_calls"] == 8
    assert {d["accepted"] for d in data["decisions"]} == {True, False}


def test_write_keeps_comments_and_untouched_lines_byte_identical(
    taught: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    path = taught.instructions_path
    old = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert run_cli(taught, "--write") == 0
    new = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # every old line but the version survives byte for byte, in order
    kept = [line for line in old if not line.startswith("version:")]
    it = iter(new)
    assert all(any(line == other for other in it) for line in kept)
    assert "version: 2\n" in new
    assert (
        "  pos: the reviewer liked it, a long definition that wraps onto a second line "
        "because\n" in new
    )  # a wrapped plain scalar is not re-flowed
    iset = load_instruction_set(path)
    assert [r.id for r in iset.rules] == ["R001", "R002"]
    assert iset.rules[1].provenance["method"] == "synthesis"
    capsys.readouterr()
    assert main(["validate", str(path), "--root", str(taught.root)]) == 0


def test_write_refuses_a_file_that_changed_since_the_proposal(taught: Suite) -> None:
    proposal = run_distill(taught, settings(taught))
    path = taught.instructions_path
    edited = path.read_text(encoding="utf-8") + "# a reviewer's edit\n"
    path.write_text(edited, encoding="utf-8")
    with pytest.raises(PldError, match="changed since the proposal was computed"):
        proposal.write()
    assert path.read_text(encoding="utf-8") == edited  # not clobbered
    assert proposal.saved_to is not None and proposal.saved_to.exists()  # not lost either


def test_a_saved_proposal_can_be_applied_later_unless_the_file_changed(
    taught: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    proposal = run_distill(taught, settings(taught))
    assert proposal.saved_to is not None
    assert (
        main(["distill", "toy", "--apply", str(proposal.saved_to), "--root", str(taught.root)]) == 0
    )
    assert taught.instructions_path.read_text(encoding="utf-8") == proposal.text
    capsys.readouterr()
    assert (
        main(["distill", "toy", "--apply", str(proposal.saved_to), "--root", str(taught.root)]) == 2
    )
    assert "changed since the proposal" in capsys.readouterr().err


def test_a_saved_proposal_names_its_file_in_the_project_so_it_applies_in_another_checkout(
    taught: Suite, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proposal = run_distill(taught, settings(taught))
    assert proposal.saved_to is not None
    record = json.loads(proposal.saved_to.read_text(encoding="utf-8"))
    relative = taught.instructions_path.relative_to(taught.root).as_posix()
    assert record["path"] == relative
    original = taught.instructions_path.read_text(encoding="utf-8")
    clone = tmp_path_factory.mktemp("another-checkout") / "project"
    shutil.copytree(taught.root, clone)
    saved = clone / proposal.saved_to.relative_to(taught.root)
    assert main(["distill", "toy", "--apply", str(saved), "--root", str(clone)]) == 0
    assert (clone / relative).read_text(encoding="utf-8") == proposal.text
    assert taught.instructions_path.read_text(encoding="utf-8") == original  # not the first one


def test_a_rerun_reuses_cached_answers_and_proposes_the_same_text(
    taught: Suite, backend: ScriptedBackend
) -> None:
    first = run_distill(taught, settings(taught))
    calls = len(backend.generate_calls)
    second = run_distill(taught, settings(taught))
    assert second.text == first.text
    assert len(backend.generate_calls) == calls  # the teacher was not asked again
    total = second.cost["total"]
    assert total["teacher_cached"] == 3 and total["student_calls"] == 0  # merges, paraphrase


def test_the_closed_loop_revises_a_conflicting_rule_and_it_keeps_its_id(
    taught: Suite, backend: ScriptedBackend
) -> None:
    path = taught.instructions_path
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "text: A review that calls something dull is neg.\n    label: neg",
            "text: If the review mentions a show, then the label is pos.\n    label: pos",
        ),
        encoding="utf-8",
    )
    proposal = run_distill(taught, settings(taught))
    assert [(c.kind, c.id) for c in proposal.changes.rules] == [("reworded", "R001")]
    rule = proposal.new.rules[0]
    assert rule.id == "R001" and rule.text == (
        "If the review calls it great, then the label is pos."
    )
    assert rule.provenance["method"] == "revision" and rule.provenance["round"] == 2
    kinds = [r["kind"] for r in proposal.rounds]
    assert kinds[:3] == ["baseline", "selection", "revision"]
    assert proposal.before["macro_f1"] < proposal.after["macro_f1"] == 1.0
    # the teacher saw the failures and the successes of the rule
    revision = next(c for c in backend.generate_calls if "student model follows" in c[-1].content)[
        -1
    ].content
    assert "got these wrong" in revision and "the student answered: neg" in revision
    assert "mentions a show" in revision


def test_the_loop_writes_a_rule_for_a_missed_label_that_no_rule_covers(
    taught: Suite, backend: ScriptedBackend
) -> None:
    def useless_merges(messages: Sequence[Message]) -> str:
        if any("Merge them" in m.content for m in messages):  # selection keeps none of these
            return json.dumps({"rule": "If the review is long, then the label is pos."})
        return teacher_fn(messages)

    backend._generate = useless_merges
    proposal = run_distill(taught, settings(taught, synthesis="teacher"))
    assert not any(d["accepted"] for d in proposal.decisions if d["method"] == "synthesis")
    (new,) = [r for r in proposal.new.rules if r.provenance.get("method") == "coverage"]
    assert (new.label, new.text) == ("pos", "If the review calls it great, then the label is pos.")
    assert new.provenance["round"] == 2 and "no rule for pos" in new.provenance["note"]
    assert proposal.before["macro_f1"] < proposal.after["macro_f1"]
    # the teacher saw the student's misses of pos and some of its right answers
    ask = next(
        c[-1].content
        for c in backend.generate_calls
        if "has no rule for the label pos" in c[-1].content
    )
    assert "the student answered: neg" in ask and "(the student got it right)" in ask


def test_no_gain_means_no_change_and_nothing_to_write(
    taught: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    with scripted(ScriptedBackend("t", generate=teacher_fn, classify=lambda s, u, labels: "neg")):
        assert run_cli(taught, "--write") == 0
    out = capsys.readouterr().out
    assert "no change proposed" in out and "nothing to write" in out


# --- generality and leakage ---------------------------------------------------------------------


def test_a_rule_copying_a_gate_split_span_is_dropped(taught: Suite) -> None:
    check = LeakageCheck.for_suite(taught)
    assert check.copied_span(f"If {TEST_SENTENCE}, then pos.") is not None
    assert check.copied_span("If the one test sentence appears, then pos.") is None


def test_a_span_the_train_split_shares_with_the_gate_split_is_not_a_leak() -> None:
    # ContractNLI asks the same hypotheses of every contract: quoting one learns from train
    hypothesis = "receiving party may share some confidential information with its employees"
    check = LeakageCheck(
        [f"Hypothesis: {hypothesis}", TEST_SENTENCE], shared=[f"Hypothesis: {hypothesis}"]
    )
    assert check.copied_span(f"If {hypothesis}, then Entailment.") is None
    assert check.copied_span(f"If {TEST_SENTENCE}, then pos.") is not None


def test_a_leaking_candidate_is_never_scored_or_proposed(
    taught: Suite, backend: ScriptedBackend
) -> None:
    def leaky(messages: Sequence[Message]) -> str:
        if any("Merge them" in m.content for m in messages):
            return json.dumps({"rule": f"If {TEST_SENTENCE} or it is great, then pos."})
        return teacher_fn(messages)

    backend._generate = leaky
    proposal = run_distill(taught, settings(taught, synthesis="teacher"))
    dropped = [d for d in proposal.decisions if "gate-split" in d["reason"]]
    assert dropped and all(not d["accepted"] for d in dropped)
    assert all(TEST_SENTENCE not in r.text for r in proposal.new.rules)


def test_garbage_synthesis_falls_back_to_the_medoid_rule(
    taught: Suite, backend: ScriptedBackend
) -> None:
    def garbage(messages: Sequence[Message]) -> str:
        if any("Merge them" in m.content for m in messages):  # the repair request too
            return '{"rule": "!!! ??? ..."}'
        return teacher_fn(messages)

    backend._generate = garbage
    proposal = run_distill(taught, settings(taught, synthesis="teacher", rounds=0))
    added = [r for r in proposal.new.rules if r.id != "R001"]
    assert added and added[0].provenance["method"] == "medoid-fallback"
    assert added[0].text.startswith("If the text praises something as great")
    assert "too short" in added[0].provenance["note"] or "not words" in added[0].provenance["note"]


# --- clustering ---------------------------------------------------------------------------------


def _two_groups(n: int = 8) -> np.ndarray:
    a = np.tile([1.0, 0.05, 0.0], (n, 1)) + np.linspace(0, 0.01, n)[:, None]
    b = np.tile([0.0, 0.05, 1.0], (n, 1)) + np.linspace(0, 0.01, n)[:, None]
    v = np.vstack([a, b])
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))


def test_dbscan_chaining_everything_into_one_cluster_falls_back_to_kmeans() -> None:
    vectors = _two_groups()
    result = cluster_rules(
        vectors, ["pos"] * 16, method="dbscan", eps=2.0, min_samples=3, by_label=False
    )
    assert result.method == "dbscan+kmeans-fallback"
    assert any("one cluster holds 16 of 16" in n and "k-means" in n for n in result.notes)
    assert any("smaller --eps" in n for n in result.notes)
    assert sorted(c.support for c in result.clusters) == [8, 8]


def test_dbscan_calling_everything_noise_falls_back_and_suggests_parameters() -> None:
    rng = np.random.default_rng(0)
    vectors = _two_groups() + rng.normal(0, 0.1, (16, 3))
    result = cluster_rules(
        vectors, ["pos"] * 16, method="dbscan", eps=0.0001, min_samples=6, by_label=False
    )
    assert any("noise" in n and "larger --eps" in n for n in result.notes)
    assert result.clusters and result.noise == 0


def test_a_healthy_dbscan_result_is_kept_and_noise_is_counted() -> None:
    vectors = np.vstack([_two_groups(), [[0.0, 1.0, 0.0]]])
    result = cluster_rules(vectors, ["pos"] * 17, eps=0.1, min_samples=3, by_label=False)
    assert result.method == "auto: dbscan"
    assert len(result.clusters) == 2 and result.noise == 1
    (note,) = result.notes
    assert "DBSCAN (eps 0.1, min_samples 3): 2 clusters (sizes 8, 8), 1 noise" in note
    assert note.endswith("Used DBSCAN.")


def test_clusters_are_formed_within_labels_so_a_minority_label_keeps_its_rule() -> None:
    vectors = _two_groups()
    labels = ["pos"] * 14 + ["neg"] * 2
    result = cluster_rules(vectors, labels, method="kmeans", by_label=True)
    assert "neg" in {c.label for c in result.clusters}


def test_the_medoid_avoids_rules_that_name_example_entities() -> None:
    vectors = _two_groups(4)[:4]
    result = cluster_rules(
        vectors, ["pos"] * 4, method="kmeans", k=1, avoid=[True, True, False, True]
    )
    assert result.clusters[0].medoid == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": 0.0}, "--eps must be in (0, 2]"),
        ({"eps": 2.5}, "--eps must be in (0, 2]"),
        ({"min_samples": 0}, "--min-samples must be an integer >= 1"),
        ({"method": "kmeans", "k": 0}, "--k must be an integer >= 1"),
        ({"method": "optics"}, "unknown clustering method"),
    ],
    ids=["eps-zero", "eps-above-two", "min-samples-zero", "k-zero", "unknown-method"],
)
def test_clustering_parameters_out_of_range_are_clear_errors(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PldError) as info:
        cluster_rules(np.eye(3), ["a", "b", "c"], **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_the_cli_rejects_an_out_of_range_eps_before_any_work(
    taught: Suite, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(taught, "--eps", "3")
    assert info.value.code == 2 and "must be in (0, 2]" in capsys.readouterr().err


# --- ids ----------------------------------------------------------------------------------------


def test_new_ids_follow_the_files_convention_and_skip_every_used_id() -> None:
    ids = IdAllocator(["R001", "R003", "R004"])
    assert ids.peek() == "R005" and ids.peek() == "R005"
    assert ids.take() == "R005" and ids.take() == "R006"
    assert IdAllocator([]).take() == "R001"
    assert IdAllocator(["rule-07", "rule-12"]).take() == "rule-13"


def test_ids_of_rules_removed_in_git_history_are_not_reused(tmp_path: Path) -> None:
    import subprocess

    from pytest_pld.distill.propose import used_ids

    suite = make_project(tmp_path)
    path = suite.instructions_path
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("R001", "R009"), encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    path.write_text(text, encoding="utf-8")  # R009 removed (renamed back to R001)
    used = used_ids(load_instruction_set(path), path)
    assert {"R001", "R009"} <= used
    assert IdAllocator(used).take() == "R010"


# --- split discipline and bad input -------------------------------------------------------------


def test_distill_refuses_a_suite_that_gates_on_the_dev_split(
    tmp_path: Path, backend: ScriptedBackend
) -> None:
    suite = make_project(tmp_path, gate_split="dev")
    teach(suite, teacher="scripted:t", out=traces_of(suite))
    with pytest.raises(PldError, match="never reads the 'dev' split"):
        run_distill(suite, settings(suite))
    assert backend.classify_calls == 0


def _write_traces(suite: Suite, rows: list[dict[str, object]], tail: str = "") -> None:
    path = traces_of(suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")


def _row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": "t1",
        "suite": "toy",
        "split": "train",
        "gold": "pos",
        "rule": "If great, then pos.",
        "teacher": "scripted:t",
        "status": "ok",
        "labels": ["pos", "neg"],
    }
    row.update(kw)
    return row


@pytest.mark.parametrize(
    "rows, tail, message",
    [
        ([], "", "the traces file has no traces"),
        ([_row(suite="other")], "", "trace of suite 'other', not 'toy'"),
        ([_row(labels=["yes", "no"])], "", "trace written for labels ['yes', 'no']"),
        ([_row(gold="maybe", labels=[])], "", "gold label 'maybe' is not one of"),
        ([_row(split="test")], "", "was taught on the 'test' split"),
        ([_row(status="failed", rule="")], "", "none of the 1 traces has a usable rule"),
        ([_row()], "{oops\n" + json.dumps(_row(id="t2")) + "\n", ":2: malformed trace line"),
    ],
    ids=[
        "empty",
        "other-suite",
        "other-label-set",
        "unknown-gold-label",
        "gate-split-traces",
        "only-failures",
        "malformed-middle-line",
    ],
)
def test_bad_traces_are_clear_errors_naming_file_and_line(
    tmp_path: Path, backend: ScriptedBackend, rows: list[dict[str, object]], tail: str, message: str
) -> None:
    suite = make_project(tmp_path)
    _write_traces(suite, rows, tail)
    with pytest.raises(PldError) as info:
        run_distill(suite, settings(suite))
    assert message in str(info.value) and str(traces_of(suite)) in str(info.value)
    assert backend.classify_calls == 0


def test_a_missing_traces_file_says_how_to_make_one(tmp_path: Path) -> None:
    suite = make_project(tmp_path)
    with pytest.raises(PldError, match="pld teach"):
        run_distill(suite, settings(suite))


def test_a_truncated_last_trace_line_is_reported_and_skipped(taught: Suite) -> None:
    path = traces_of(taught)
    path.write_text(path.read_text(encoding="utf-8") + '{"id": "t9", "sui', encoding="utf-8")
    proposal = run_distill(taught, settings(taught))
    assert any(":6: truncated last line" in n for n in proposal.notes)
    assert path.read_text(encoding="utf-8").endswith('"sui')  # distill never edits traces


def test_a_teacher_that_fails_during_synthesis_leaves_the_medoid(
    taught: Suite, backend: ScriptedBackend
) -> None:
    def broken(messages: Sequence[Message]) -> str:
        raise PldError("request timed out")

    backend._generate = broken
    proposal = run_distill(taught, settings(taught, synthesis="teacher", rounds=0))
    assert all(r.provenance.get("method") in (None, "medoid-fallback") for r in proposal.new.rules)
    assert proposal.cost["phases"]["synthesize"]["teacher_failures"] >= 1


# --- the round trip the proposal is computed with (instructions_save.render_instruction_text)


def _edit(tmp_path: Path, rules_of: object) -> tuple[str, str]:
    from pytest_pld.instructions import Rule
    from pytest_pld.instructions_save import render_instruction_text

    suite = make_project(tmp_path)
    path = suite.instructions_path
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "    label: neg\n",
        "    label: neg\n  - id: R002\n    text: Praise is pos.\n    label: pos\n",
    )
    iset = load_instruction_set(path).with_rules([])
    base = iset.with_rules(
        [
            Rule("R001", "A review that calls something dull is neg.", "neg"),
            Rule("R002", "Praise is pos.", "pos"),
        ]
    )
    new = base.with_rules(rules_of(base.rules), version=2)  # type: ignore[operator]
    return text, render_instruction_text(new, text, path)


def test_a_reworded_rule_keeps_its_comment_and_the_rest_stays_byte_identical(
    tmp_path: Path,
) -> None:
    from pytest_pld.instructions import Rule

    old, new = _edit(tmp_path, lambda rules: [rules[0], Rule("R002", "Warm praise is pos.", "pos")])
    changed = [(a, b) for a, b in zip(old.splitlines(), new.splitlines()) if a != b]
    assert changed == [
        ("version: 1", "version: 2"),
        ("    text: Praise is pos.", "    text: Warm praise is pos."),
    ]
    assert len(old.splitlines()) == len(new.splitlines())


def test_removing_every_rule_leaves_an_empty_list_and_keeps_the_comment_after_it(
    tmp_path: Path,
) -> None:
    _, new = _edit(tmp_path, lambda rules: [])
    assert "rules: []\n# the output instruction\n" in new
    assert "# Sentiment rules. This comment must survive every write.\n" in new
    assert "hand-written rule" not in new  # the removed rule's own comment goes with it


def test_a_long_new_rule_wraps_without_trailing_spaces(tmp_path: Path) -> None:
    from pytest_pld.instructions import Rule
    from pytest_pld.instructions_save import render_instruction_text

    suite = make_project(tmp_path)
    path = suite.instructions_path
    iset = load_instruction_set(path)
    long = (
        "If the target is an occupation or a role someone holds, such as a nurse, a manager "
        "or a chess player, then the label is profession."
    )
    text = render_instruction_text(
        iset.with_rules([*iset.rules, Rule("R002", long, "pos")], version=2),
        path.read_text("utf-8"),
        path,
    )
    assert all(line == line.rstrip() for line in text.splitlines())
    assert load_instruction_set_text(text, path).rules[1].text == long


def test_strict_selection_keeps_only_gains_whose_interval_excludes_zero(taught: Suite) -> None:
    # all 8 dev examples select (no held-back fold): 0.333 -> 1.0 is a clear gain; both keep
    # it, and say how sure it is
    loose = run_distill(taught, settings(taught, rounds=0, holdout=0))
    strict = run_distill(taught, settings(taught, rounds=0, strict=True, holdout=0))
    assert loose.new.rules[-1].text == strict.new.rules[-1].text
    kept = [d for d in strict.decisions if d["accepted"]]
    assert kept and all(d["interval"][0] > 0 for d in kept)
