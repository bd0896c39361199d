"""Controls (`pytest_pld.conditions`, `pld conditions`), the prior-shift fit, dev folds and the
ship rule.

The prior-shift fit is checked on synthetic scores whose best offsets are known; the table's
structure and the ship rule with a scripted student that returns label scores (control flow,
never evidence about a model); the real packaged student runs in one integration test.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import Needs

from pytest_pld.calibration import fit_prior_shift
from pytest_pld.cli import main
from pytest_pld.conditions import (
    PLD,
    PLD_CALIBRATED,
    ZERO_SHOT,
    ZERO_SHOT_CALIBRATED,
    SuiteEvaluator,
    compare_conditions,
)
from pytest_pld.conditions import folds_for as conditions_folds
from pytest_pld.datasets import Example
from pytest_pld.folds import sample, split_holdout
from pytest_pld.labels import top_label
from pytest_pld.prior_shift import fit_offsets, macro_f1, predict, shifted_labels
from pytest_pld.report.conditions import format_json, format_markdown, format_text
from pytest_pld.suite import Suite, load_suite
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]
#: the rows of a table without a k-shot condition, in order
ALL_ROWS = [ZERO_SHOT, ZERO_SHOT_CALIBRATED, PLD, PLD_CALIBRATED]

# --- the prior-shift fit ------------------------------------------------------------------------


def biased_scores(n: int, bias: Sequence[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that pick the gold label by a margin of at least 1 once `bias` is taken away."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, len(bias), n)
    scores = 2 * np.eye(len(bias))[gold] + rng.uniform(-0.5, 0.5, (n, len(bias))) + bias
    return scores, gold


def test_the_fit_finds_offsets_that_undo_a_known_label_bias() -> None:
    scores, gold = biased_scores(300, [3.0, 0.0, 0.0])
    labels = ["a", "b", "c"]
    ids = [str(i) for i in range(len(gold))]
    fit = fit_offsets(scores, gold, labels, ids, list(scores.argmax(axis=1)))
    assert fit.fit_before < 0.3  # the bias: nearly every answer is "a"
    assert fit.fit_after == 1.0  # the known optimum: every answer right
    # what matters is a's offset relative to the others: the bias of 3, give or take the
    # margin of 1 that separates gold from the rest
    shift = fit.offsets["a"] - max(fit.offsets["b"], fit.offsets["c"])
    assert -4.0 < shift < -2.0


def test_with_two_labels_the_offset_lands_in_the_interval_that_is_optimal() -> None:
    # label b wins iff x - 1 + offset_b > 0; gold is b iff x > 0.5: offsets in (0.4, 0.6)
    # (between the closest xs on either side of 0.5) give every answer right
    x = np.asarray([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    scores = np.stack([np.zeros_like(x), x - 1], axis=1)
    gold = (x > 0.5).astype(int)
    fit = fit_offsets(scores, gold, ["a", "b"], list("abcdefgh"), [0] * 8)
    assert fit.fit_after == 1.0
    assert 0.4 < fit.offsets["b"] - fit.offsets["a"] < 0.6


def test_the_fit_does_not_depend_on_the_order_of_the_labels() -> None:
    scores, gold = biased_scores(120, [0.0, 1.5, 0.0], seed=3)
    ids = [str(i) for i in range(len(gold))]
    labels = ["x", "y", "z"]
    first = fit_offsets(scores, gold, labels, ids, list(scores.argmax(axis=1)))
    order = [2, 0, 1]
    moved = fit_offsets(
        scores[:, order],
        np.asarray([order.index(g) for g in gold]),
        [labels[i] for i in order],
        ids,
        [order.index(int(a)) for a in scores.argmax(axis=1)],
    )
    assert moved.offsets == first.offsets and moved.fit_after == first.fit_after


def test_zero_offsets_keep_every_answer_of_the_model_even_on_exact_ties() -> None:
    scores = np.asarray([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [3.0, 0.0, 0.0]])
    answers = [1, 2, 0]  # the model broke its ties its own way
    out = predict(scores, np.zeros(3), ["a", "b", "c"], ["e1", "e2", "e3"], answers)
    assert list(out) == answers


def test_a_tie_the_model_did_not_answer_goes_the_same_way_whatever_the_label_order() -> None:
    rows = [{"a": 0.0, "b": 1.0, "c": 1.0}]  # a tie of b and c once a is shifted away
    one = shifted_labels(rows, ["a"], ["e1"], ["a", "b", "c"], {"a": -5.0})
    other = shifted_labels(rows, ["a"], ["e1"], ["c", "b", "a"], {"a": -5.0})
    assert one == other and one[0] in ("b", "c")


def test_macro_f1_of_the_fit_matches_the_metrics_module() -> None:
    from pytest_pld import metrics

    rng = np.random.default_rng(1)
    gold, pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    labels = ("a", "b", "c")
    p = metrics.Predictions(labels, tuple(labels[g] for g in gold), tuple(labels[q] for q in pred))
    assert macro_f1(gold, pred, 3) == pytest.approx(metrics.compute("macro_f1", p))


# --- dev folds ----------------------------------------------------------------------------------


def examples(n: int, groups: int | None = None) -> list[Example]:
    return [
        Example(
            f"e{i}", "pos", {"text": str(i)}, group=None if groups is None else f"g{i % groups}"
        )
        for i in range(n)
    ]


def test_the_held_back_fold_is_disjoint_and_keeps_groups_together() -> None:
    data = examples(300, groups=40)
    rest, held = split_holdout(data, 1 / 3)
    assert {e.id for e in rest}.isdisjoint({e.id for e in held})
    assert len(rest) + len(held) == 300
    assert {e.group for e in rest}.isdisjoint({e.group for e in held})
    assert 0.15 < len(held) / 300 < 0.5


def test_fold_membership_depends_on_the_example_alone() -> None:
    data = examples(200)
    _, held = split_holdout(data, 1 / 3)
    # another list: reordered, without some examples, with new ones
    other = list(reversed(data[:120])) + examples(260)[200:]
    _, again = split_holdout(other, 1 / 3)
    held_ids, first_ids = {e.id for e in held}, {e.id for e in data}
    assert {e.id for e in again if e.id in first_ids} == held_ids & {e.id for e in other}
    # a sample of a fold: a subset of it, the same every time
    ten = sample(held, 10)
    assert len(ten) == 10 and {e.id for e in ten} <= held_ids and ten == sample(held, 10)


@pytest.mark.parametrize("fraction", [-0.1, 1.0], ids=["negative", "everything"])
def test_an_impossible_held_back_share_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="held-back fraction"):
        split_holdout(examples(3), fraction)


# --- the conditions table -----------------------------------------------------------------------


def rules_of(system: str) -> str:
    return system.split("Rules:")[1].split("Examples:")[0] if "Rules:" in system else ""


def prior_student(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Biased to neg: pos only wins when a rule about 'great' meets a great review - or when
    pos is shifted up by at least 0.5, which a prior shift can do alone."""
    pos = float("great" in user) + float("great" in rules_of(system))
    return {"pos": pos, "neg": 1.5}


def evaluator(suite: Suite, **options: Any) -> SuiteEvaluator:
    """A SuiteEvaluator whose response cache is explicitly under the test's project."""
    return SuiteEvaluator(suite, cache_path=suite.root / ".pld" / "cache.sqlite", **options)


def make_grouped_project(root: Path, n: int = 12) -> Suite:
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    (root / "data").mkdir()
    for split in ("train", "dev", "test"):
        rows = [
            {
                "id": f"{split}{i}",
                "label": "pos" if i % 2 else "neg",
                "text": text,
                "doc": f"d{i // 2}",
                "topic": f"t{i // 4}",
            }
            for i in range(n)
            for text in [f"{split} {i}: a {'great' if i % 2 else 'dull'} show"]
        ]
        (root / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
    (root / "suites" / "toy.yaml").write_text(
        textwrap.dedent("""\
        name: toy
        dataset: {loader: jsonl, options: {group_field: doc}}
        splits: {train: data/train.jsonl, dev: data/dev.jsonl, test: data/test.jsonl}
        labels: [pos, neg]
        user_template: "{{ text }}"
        instructions: instructions/toy.yaml
        student: scripted:student
        gates: {accuracy: ">= 0.5"}
        """),
        encoding="utf-8",
    )
    (root / "instructions" / "toy.yaml").write_text(
        textwrap.dedent("""\
        name: toy
        version: 3
        preamble: Decide whether a review is positive or negative.
        rules:
          - id: R001
            text: If the review calls something great, then the label is pos.
            label: pos
        output: 'Answer with one word: {{ labels | join(", ") }}.'
        """),
        encoding="utf-8",
    )
    return load_suite(root / "suites" / "toy.yaml", root)


@pytest.fixture
def scored() -> Iterator[ScriptedBackend]:
    with scripted(ScriptedBackend("student", scores=prior_student)) as backend:
        yield backend


def test_intervals_resample_the_suites_clusters_as_pld_run_does(
    tmp_path: Path, scored: ScriptedBackend
) -> None:
    """A suite's cluster_key (here 3 topics over 12 examples in 6 groups) is what the paired
    intervals resample, as in `pld run` and the gates; the table says so."""
    suite = make_grouped_project(tmp_path)
    path = tmp_path / "suites" / "toy.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "cluster_key: topic\n", encoding="utf-8")
    suite = load_suite(path, tmp_path)
    evaluated, fit = conditions_folds(suite, "test")
    table = compare_conditions(
        suite, suite.load_instructions(), evaluator(suite), evaluated, fit, shots=0
    )
    assert (table.clusters, table.cluster_key) == (3, "topic")
    assert "resampling 3 clusters by topic" in format_text(table)
    assert format_json(table).count('"cluster_key": "topic"') == 1


def test_the_table_compares_pld_with_each_control_on_the_same_examples(
    tmp_path: Path, scored: ScriptedBackend
) -> None:
    suite = make_grouped_project(tmp_path)
    evaluated, fit = conditions_folds(suite, "test")
    evaluate = evaluator(suite)
    table = compare_conditions(suite, suite.load_instructions(), evaluate, evaluated, fit, shots=2)
    assert [c.name for c in table.conditions] == [ALL_ROWS[0], ALL_ROWS[1], "2-shot", *ALL_ROWS[2:]]
    assert table.fold == "test" and table.n == 12 and table.clusters == 6
    assert table.gold == {"pos": 6, "neg": 6}
    for c in table.conditions:
        assert sum(c.predicted.values()) == 12 and c.tie_rate == 0.0
    zero, prior, pld = (table.condition(n) for n in (ZERO_SHOT, ZERO_SHOT_CALIBRATED, PLD))
    assert zero.predicted == {"pos": 0, "neg": 12} and pld.accuracy == 1.0
    assert pld.vs_pld is None and zero.vs_pld is not None and zero.vs_pld[0] > 0.6
    # the rule does no more than a shift of the prior: calibrated zero-shot matches it
    assert prior.accuracy == 1.0 and prior.vs_pld == (0.0, 0.0, 0.0)
    offsets = table.calibrations[ZERO_SHOT_CALIBRATED].offsets
    assert offsets["pos"] - offsets["neg"] > 0.5
    assert table.calibrations[ZERO_SHOT_CALIBRATED].fit == "dev, 12 examples"
    # model calls: zero-shot, 2-shot and PLD on test, zero-shot and PLD on dev; nothing else
    assert evaluate.model_calls == 5 * 12


def test_each_conditions_progress_bar_says_what_its_prompt_holds(
    tmp_path: Path, scored: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a long run the bars follow each other: each names its fold and prompt, so a user
    can tell the zero-shot pass from the k-shot, dev-fit and PLD passes."""
    suite = make_grouped_project(tmp_path)
    evaluated, fit = conditions_folds(suite, "test")
    evaluate = evaluator(suite, progress=True)
    compare_conditions(suite, suite.load_instructions(), evaluate, evaluated, fit, shots=2)
    drawn = capsys.readouterr().err
    for desc in ("toy/test, 0 rules:", "toy/test, 0 rules, 2 examples:", "toy/dev, 0 rules:"):
        assert desc in drawn
    assert f"toy/test, {len(suite.load_instructions().rules)} rule" in drawn


def test_the_offsets_are_fitted_on_the_selection_fold_when_dev_is_evaluated(
    tmp_path: Path, scored: ScriptedBackend
) -> None:
    suite = make_grouped_project(tmp_path, n=40)
    evaluated, fit = conditions_folds(suite, "dev")
    assert fit is not None and (evaluated.name, fit.name) == ("dev/held-back", "dev/selection")
    assert {e.id for e in evaluated.examples}.isdisjoint({e.id for e in fit.examples})
    table = compare_conditions(
        suite, suite.load_instructions(), evaluator(suite), evaluated, fit, shots=0
    )
    assert [c.name for c in table.conditions] == ALL_ROWS
    for name in (ZERO_SHOT_CALIBRATED, PLD_CALIBRATED):
        assert table.calibrations[name].fit.startswith("dev/selection")


def test_without_label_scores_the_calibrated_rows_and_the_ship_rule_do_not_apply(
    tmp_path: Path,
) -> None:
    suite = make_grouped_project(tmp_path)
    with scripted(ScriptedBackend("student", classify=lambda s, u, labels: "neg")):
        evaluated, fit = conditions_folds(suite, "test", limit=4)
        table = compare_conditions(
            suite, suite.load_instructions(), evaluator(suite), evaluated, fit, shots=0
        )
    for name in (ZERO_SHOT_CALIBRATED, PLD_CALIBRATED):
        row = table.condition(name)
        assert not row.applies and "no per-label scores" in row.note
    assert table.calibrations == {} and table.condition(PLD).vs_calibrated_pld is None
    assert table.condition(ZERO_SHOT).tie_rate is None  # nothing says whether it was a tie
    assert "n/a" in format_text(table) and "does not apply" in format_markdown(table)
    assert table.ship is not None and table.ship.ships is None
    assert "ship rule: cannot be applied: does not apply: scripted:student returns no" in (
        format_text(table)
    )


@pytest.mark.parametrize("fmt", ["text", "md", "json"])
def test_pld_conditions_prints_the_table_in_each_format(
    tmp_path: Path, scored: ScriptedBackend, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    make_grouped_project(tmp_path)
    argv = ["conditions", "toy", "--shots", "2", "--format", fmt, "--root", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        data = json.loads(out)
        assert data["schema"] == 2
        names = [c["name"] for c in data["conditions"]]
        assert names == [ALL_ROWS[0], ALL_ROWS[1], "2-shot", *ALL_ROWS[2:]]
        calibrations = data["calibrations"]
        assert data["evaluated"] == "test" and set(calibrations) == set(ALL_ROWS[1::2])
        assert calibrations[ZERO_SHOT_CALIBRATED]["fit"] == "dev, 12 examples"
        # schema 1's key, for readers of older tables: the zero-shot offsets
        assert data["prior_shift"] == calibrations[ZERO_SHOT_CALIBRATED]
        assert data["conditions"][0]["pld_minus_this"][0] > 0
        assert data["conditions"][0]["calibrated_pld_minus_this"][0] > 0
        assert data["ship_rule"]["ships"] == ZERO_SHOT_CALIBRATED
    else:
        for name in (*ALL_ROWS, "2-shot", "gold"):
            assert name in out
        assert "fitted on dev, 12 examples (never on the evaluated examples" in out
        assert "ships: zero-shot + calibration" in out


def test_pld_conditions_writes_the_json_record_beside_the_printed_table(
    tmp_path: Path, scored: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_grouped_project(tmp_path)
    argv = ["conditions", "toy", "--shots", "2", "--root", str(tmp_path)]
    assert main([*argv, "--format", "json"]) == 0
    printed = capsys.readouterr().out
    record = tmp_path / "out" / "conditions.json"
    record.parent.mkdir()
    assert main([*argv, "--format", "md", "--json", str(record)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("### conditions for") and f"wrote {record}" in out.err
    assert json.loads(record.read_text()) == json.loads(printed)


# --- the ship rule ------------------------------------------------------------------------------


def number(user: str) -> int:
    return int(user.split()[1].rstrip(":"))


def real_rule_student(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Biased to neg, and without rules it notices only half of the great reviews (i % 4 ==
    1); the rule makes it notice every one, which no offset can do."""
    noticed = "great" in user and (number(user) % 4 == 1 or "great" in rules_of(system))
    return {"pos": -2.0 + float(noticed), "neg": 0.0}


def unbiased_student(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Right on every review without rules or offsets: nothing is left to ship."""
    return {"pos": float("great" in user), "neg": 0.5}


@pytest.mark.parametrize(
    "student, ships",
    [
        (real_rule_student, PLD_CALIBRATED),
        (prior_student, ZERO_SHOT_CALIBRATED),
        (unbiased_student, ZERO_SHOT),
    ],
    ids=["rules-add-to-calibration", "rules-only-shift-the-prior", "nothing-to-add"],
)
def test_the_ship_rule_ships_what_beats_the_cheaper_condition_with_an_interval_above_0(
    tmp_path: Path, student: Any, ships: str
) -> None:
    suite = make_grouped_project(tmp_path, n=40)  # 20 documents of one pos and one neg review
    with scripted(ScriptedBackend("student", scores=student)):
        evaluated, fit = conditions_folds(suite, "test")
        table = compare_conditions(
            suite, suite.load_instructions(), evaluator(suite), evaluated, fit, shots=0
        )
    ship = table.ship
    assert ship is not None and ship.ships == ships
    zero, zero_cal, pld_cal = (
        table.condition(n) for n in (ZERO_SHOT, ZERO_SHOT_CALIBRATED, PLD_CALIBRATED)
    )
    assert ship.calibration is not None and ship.rules is not None
    assert ship.calibration[0] == pytest.approx(zero_cal.macro_f1 - zero.macro_f1)
    assert ship.rules[0] == pytest.approx(pld_cal.macro_f1 - zero_cal.macro_f1)
    assert zero_cal.vs_calibrated_pld == ship.rules  # the same paired comparison
    text = format_text(table)
    assert f"  ships: {ships}" in text
    if ships == PLD_CALIBRATED:
        # calibration alone finds the half of the great reviews the student notices; the rule
        # finds the rest, which no offset can
        assert (zero.macro_f1, pld_cal.accuracy) == (pytest.approx(1 / 3), 1.0)
        assert ship.calibration[1] > 0 and ship.rules[1] > 0
        assert "check the generality flags of the pld distill proposal" in text
        assert "rules on top: PLD + calibration - zero-shot + calibration = +0.267" in text
    else:
        assert ship.rules[1] <= 0 and "they do not" in text
        assert "generality flags" not in text
    assert json.loads(format_json(table))["ship_rule"]["ships"] == ships


def test_pld_conditions_refuses_a_split_the_suite_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_grouped_project(tmp_path)
    assert main(["conditions", "toy", "--split", "heldout", "--root", str(tmp_path)]) == 2
    assert "has no 'heldout' split" in capsys.readouterr().err


# --- with the real packaged student -------------------------------------------------------------


@pytest.mark.integration
def test_pld_conditions_with_the_real_small_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], needs: Needs
) -> None:
    """The shipped StereoSet suite with a distilled set (the 1.5B teacher's proposal; the
    shipped set is zero-shot, whose PLD condition would repeat zero-shot's calls) on 6 test
    examples, the offsets fitted on 6 dev examples: the local backend returns label scores, so
    every condition applies, and the calibrated rows are the raw rows' own scores plus offsets:
    the only model calls beyond the raw rows are the two prompts' dev answers they are fitted
    on."""
    for part, source in (
        ("suites/stereoset.yaml", "suites/stereoset.yaml"),
        ("instructions/stereoset.yaml", "reproduction/stereoset/pld-1.5b.yaml"),
    ):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, tmp_path / part)
    data = tmp_path / "suites" / "data" / "stereoset"
    data.mkdir(parents=True)
    shutil.copy(ROOT / "suites/data/stereoset/dev_reconstructed.json", data)
    argv = ["conditions", "stereoset", "--limit", "6", "--limit-fit", "6", "--shots", "2"]
    argv += ["--format", "json", "--root", str(tmp_path)]
    needs.model("qwen2.5-coder-0.5b-instruct")
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    table = json.loads(out.out)
    names = [ZERO_SHOT, ZERO_SHOT_CALIBRATED, "2-shot", PLD, PLD_CALIBRATED]
    assert [c["name"] for c in table["conditions"]] == names
    assert all(c["applies"] for c in table["conditions"])
    assert table["n"] == 6
    for name in (ZERO_SHOT_CALIBRATED, PLD_CALIBRATED):
        fit = table["calibrations"][name]
        assert fit["fit_n"] == 6 and fit["fit_macro_f1_after"] >= fit["fit_macro_f1_before"]
    for c in table["conditions"]:
        assert sum(c["predicted"].values()) == 6 and 0 <= c["tie_rate"] <= 1
        if c["name"] != PLD:
            delta, low, high = c["pld_minus_this"]
            assert -1 <= low <= delta <= high <= 1
    assert table["ship_rule"]["ships"] in (ZERO_SHOT, ZERO_SHOT_CALIBRATED, PLD_CALIBRATED)
    # zero-shot, 2-shot and PLD on 6 test examples; zero-shot and PLD on 6 dev examples
    assert "model calls: 30 (cache hits: 0)" in out.err
    assert main([*argv[:-4], "--root", str(tmp_path)]) == 0
    assert "model calls: 0 (cache hits: 30)" in capsys.readouterr().err
    # the calibrated row is PLD's raw test scores plus the offsets fitted on PLD's dev answers
    suite = load_suite(tmp_path / "suites" / "stereoset.yaml", tmp_path)
    evaluated, fit_fold = conditions_folds(suite, "test", limit=6, limit_fit=6)
    evaluate = SuiteEvaluator(suite)
    try:
        iset = suite.load_instructions()
        again = compare_conditions(suite, iset, evaluate, evaluated, fit_fold, shots=0)
        raw = evaluate(iset, evaluated)
        dev = evaluate(iset, fit_fold)
    finally:
        evaluate.close()
    assert evaluate.model_calls == 0  # every answer above came from the cache
    offsets = fit_prior_shift(dev, suite.labels, student=suite.student)
    assert dict(again.calibrations[PLD_CALIBRATED].offsets) == offsets
    assert offsets == table["calibrations"][PLD_CALIBRATED]["offsets"]
    assert again.condition(PLD_CALIBRATED).preds == tuple(
        top_label({label: r.scores[label] + offsets[label] for label in suite.labels}, r.id)[0]
        for r in raw
        if r.scores is not None
    )
    assert again.condition(PLD).preds == tuple(r.pred for r in raw)
