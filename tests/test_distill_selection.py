"""`pld distill` selection with a scripted teacher and student (control flow, never evidence that
a model follows or writes rules): the generality test and its generalisation request, the
wording check, the token budget, per-cluster choice among candidates and the dev folds."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import great_or_dull, make_review_project

from pytest_pld.backends.base import Message
from pytest_pld.cli import main
from pytest_pld.distill.budget import fit_budget
from pytest_pld.distill.generalise import Specificity
from pytest_pld.distill.pipeline import distill
from pytest_pld.distill.settings import DistillSettings
from pytest_pld.distill.student import Student
from pytest_pld.distill.wording import content_words, reworded, vanishes
from pytest_pld.folds import split_holdout
from pytest_pld.instructions import Rule, load_instruction_set_text
from pytest_pld.suite import Suite
from pytest_pld.testing import ScriptedBackend, scripted

SPECIFIC = "If the review praises Zorblax, then the label is pos."
GENERAL = "If the review praises the show, then the label is pos."
DULL = "If the review calls the show dull, then the label is neg."


def make_zorblax_project(root: Path, *, budget: int | None = None) -> Suite:
    """60 train examples (two of them about Zorblax: 2 of 60 documents), 45 dev, 4 test, and
    traces whose pos rules all name Zorblax."""

    def text(split: str, i: int) -> str:
        about = " about Zorblax" if split == "train" and i in (1, 3) else ""
        return great_or_dull(split, i) + about

    traces = [(1, SPECIFIC), (3, SPECIFIC), (0, DULL), (2, DULL), (4, DULL)]
    extra = f"max_prompt_tokens: {budget}\n" if budget else ""
    return make_review_project(
        root, {"train": 60, "dev": 45, "test": 4}, traces, text=text, suite_extra=extra
    )


def rules_of(system: str) -> str:
    return system.split("Rules:")[1].split("Examples:")[0] if "Rules:" in system else ""


PRAISE = ("praises", "lauds")


def praise_student(system: str, user: str, labels: Sequence[str]) -> str:
    """pos for a great review when a rule talks of praise, in any words; neg otherwise."""
    rules = rules_of(system)
    return "pos" if "great" in user and any(w in rules for w in PRAISE) else "neg"


def teacher_answering(
    generalised: str = GENERAL, paraphrase: str = "If a review lauds what it saw, then pos."
) -> Callable[[Sequence[Message]], str]:
    def answer(messages: Sequence[Message]) -> str:
        system = messages[0].content
        if "generalise" in system:
            return json.dumps({"rule": generalised})
        if "reword" in system:
            return json.dumps({"rule": paraphrase})
        return json.dumps({"rule": "If the review is long, then the label is pos."})

    return answer


def settings(suite: Suite, **kw: Any) -> DistillSettings:
    base: dict[str, Any] = {
        "traces": suite.root / "traces" / "toy.jsonl",
        "teacher": "scripted:t",
        "embedder": "tfidf",
        "min_samples": 2,
        "synthesis": "medoid",
        "rounds": 0,
        "limit_dev": None,
        "limit_holdout": None,
        "shots": 0,
    }
    base.update(kw)
    return DistillSettings(**base)


def run(suite: Suite, student: Any = praise_student, generate: Any = None, **kw: Any) -> Any:
    backend = ScriptedBackend("t", classify=student, generate=generate or teacher_answering())
    with scripted(backend):
        proposal = distill(
            suite, settings(suite, **kw), log=lambda s: None, state_dir=suite.root / ".pld"
        )
        return proposal, backend


# --- the generality test ------------------------------------------------------------------------


def test_task_vocabulary_passes_and_a_word_of_a_few_source_examples_does_not() -> None:
    docs = [
        f"The Receiving Party keeps Confidential Information of contract {i}." for i in range(40)
    ]
    docs[7] += " Zorblaxia."
    spec = Specificity(
        docs,
        {"a": docs[7], "b": docs[8]},
        ["Labels: Entailment, Contradiction", "A hypothesis about the contract"],
    )
    assert (
        spec.words("If the Receiving Party shares Confidential Information, then X.", ["a"]) == []
    )
    assert (
        spec.words("If the hypothesis contradicts the contract, then Contradiction.", ["a"]) == []
    )
    (word,) = spec.words("If the contract names Zorblaxian courts, then Entailment.", ["a", "b"])
    assert (word.word, word.in_sources, word.sources) == ("Zorblaxian", 1, 2)
    assert word.df == pytest.approx(1 / 40)
    assert "1 of 2 source examples, 2.5% of train documents" in word.describe()
    # a word in no source example is not the sources' word, however rare
    assert spec.words("If the contract names Zorblaxia, then X.", ["b"]) == []


def test_words_the_teacher_uses_for_several_labels_are_its_phrasing_not_example_words() -> None:
    docs = [f"The chef cooked dinner number {i}." for i in range(40)]
    docs[3] += " It mentions a butcher."
    spec = Specificity(docs, {"a": docs[3]}, [])
    rule = "If the sentence mentions a butcher, then the label is profession."
    assert [w.word for w in spec.words(rule, ["a"])] == ["mentions", "butcher"]
    traces = [
        ("If it mentions a woman, then the label is gender.", "gender"),
        ("If it mentions a chef, then the label is profession.", "profession"),
        ("If it names a butcher, then the label is profession.", "profession"),
    ]
    assert spec.allow_phrasing(traces, labels=3) == 0  # 'mentions': 2 labels, too few
    assert [w.word for w in spec.words(rule, ["a"])] == ["mentions", "butcher"]
    assert spec.allow_phrasing(traces, labels=2) > 0
    # 'mentions' phrases rules of two labels; 'butcher' stays a profession example's word
    assert [w.word for w in spec.words(rule, ["a"])] == ["butcher"]


def test_a_specific_rule_is_generalised_by_the_teacher_before_it_is_scored(tmp_path: Path) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, backend = run(suite)
    asks = [c[-1].content for c in backend.generate_calls if "generalise" in c[0].content]
    assert len(asks) == 1
    assert "'Zorblax' (in 2 of 2 source examples, 3.3% of train documents)" in asks[0]
    added = [r for r in proposal.new.rules if r.label == "pos"]
    assert [r.text for r in added] == [GENERAL]
    assert "generalised from" in added[0].provenance["note"]
    assert all("Zorblax" not in r.text for r in proposal.new.rules)
    assert not proposal.dropped


@pytest.mark.parametrize(
    "teacher, reason",
    [
        ("If the review praises Zorblax again, then pos.", "still names specific words"),
        ("", "generalisation failed"),
    ],
    ids=["still-specific", "unusable"],
)
def test_a_rule_that_cannot_be_generalised_is_dropped_and_listed_with_its_words(
    tmp_path: Path, teacher: str, reason: str
) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, _ = run(suite, generate=teacher_answering(generalised=teacher))
    assert all("Zorblax" not in r.text for r in proposal.new.rules)
    (dropped,) = proposal.dropped
    assert dropped["text"] == SPECIFIC and reason in dropped["reason"]
    assert dropped["words"] == [
        {"word": "Zorblax", "in_sources": 2, "sources": 2, "train_df": pytest.approx(2 / 60, 1e-3)}
    ]
    assert any(
        "Zorblax" in line and "3.3% of train documents" in line for line in proposal.dropped_lines
    )


def test_without_a_teacher_a_specific_rule_is_dropped(tmp_path: Path) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, backend = run(suite, teacher="none")
    assert backend.generate_calls == []
    assert [d["reason"] for d in proposal.dropped] == [
        "names words of its source examples (no teacher to generalise)"
    ]


# --- per-cluster choice -------------------------------------------------------------------------


def test_selection_keeps_the_candidate_of_a_cluster_with_the_best_dev_gain(tmp_path: Path) -> None:
    """The teacher's merged rule comes first and helps; the generalised medoid helps more."""
    suite = make_zorblax_project(tmp_path)

    def student(system: str, user: str, labels: Sequence[str]) -> str:
        rules = rules_of(system)
        if "great" in user and "praises" in rules:
            return "pos"
        # the merged rule gets every third great review
        return "pos" if "great" in user and "enthusiastic" in rules and " 1" in user else "neg"

    def teacher(messages: Sequence[Message]) -> str:
        if "correct label is pos:" in messages[-1].content:
            return json.dumps({"rule": "If the review is enthusiastic, then the label is pos."})
        return teacher_answering()(messages)

    proposal, _ = run(suite, student=student, generate=teacher, synthesis="both")
    pos = [d for d in proposal.decisions if d["label"] == "pos"]
    assert pos[0]["method"] == "synthesis" and pos[0]["delta"] > 0  # it would have helped
    kept = [d for d in pos if d["accepted"]]
    assert [(d["method"], d["text"]) for d in kept] == [("medoid", GENERAL)]
    assert "another candidate of its cluster did better" in pos[0]["reason"]


# --- the wording check --------------------------------------------------------------------------


def wording_student(system: str, user: str, labels: Sequence[str]) -> str:
    """Follows the rule only as worded: 'praises the show' works, other words do not."""
    return "pos" if "great" in user and "praises the show" in rules_of(system) else "neg"


@pytest.mark.parametrize(
    "action, outcome, kept",
    [("drop", "dropped", False), ("flag", "flagged", True)],
    ids=["drop", "flag"],
)
def test_a_rule_whose_effect_vanishes_when_reworded_is_dropped_or_flagged(
    tmp_path: Path, action: str, outcome: str, kept: bool
) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, _ = run(suite, student=wording_student, wording=action)
    (check,) = proposal.wording
    assert check["text"] == GENERAL and check["paraphrase"]
    assert check["vanished"] and check["outcome"] == outcome
    assert check["effect"][0] > 0 and check["reworded_effect"][0] <= 0
    assert (GENERAL in [r.text for r in proposal.new.rules]) is kept


def test_a_rule_that_keeps_its_effect_when_reworded_stays(tmp_path: Path) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, _ = run(suite)  # the praise student follows any rule that talks of praise
    (check,) = proposal.wording
    assert not check["vanished"] and check["outcome"] == "kept"
    assert GENERAL in [r.text for r in proposal.new.rules]


def test_a_paraphrase_that_repeats_the_rule_is_asked_again_as_sampled_draws(
    tmp_path: Path,
) -> None:
    """Greedy decoding hands the rule back unchanged, then with quotes and an added word (what
    the 0.5B did); the check asks again with sampling and scores the first paraphrase that
    drops one of the rule's own words."""
    suite = make_zorblax_project(tmp_path)
    reworded = "If a review lauds what it saw, then pos."
    answers = [GENERAL, "If the given review 'praises' the show, then pos.", reworded]
    asked: list[int] = []

    def teacher(messages: Sequence[Message]) -> str:
        if "reword" in messages[0].content:
            asked.append(1)
            return json.dumps({"rule": answers[len(asked) - 1]})
        return teacher_answering()(messages)

    proposal, backend = run(suite, generate=teacher)
    (check,) = proposal.wording
    assert check["paraphrase"] == reworded and check["outcome"] == "kept"
    rewording = [
        p
        for m, p in zip(backend.generate_calls, backend.generate_params, strict=True)
        if "reword" in m[0].content
    ]
    assert [p.temperature for p in rewording] == [None, 0.8, 0.8]
    assert rewording[1].seed != rewording[2].seed
    # the re-asks name the rule's own words ('praises'), not the task's ('review') or stop words
    asks = [
        m[-1].content
        for m, _ in zip(backend.generate_calls, backend.generate_params, strict=True)
        if "reword" in m[0].content
    ]
    assert "Do not use the words" not in asks[0]
    assert all("Do not use the words 'praises':" in a for a in asks[1:])


CONTRACT_RULE = (
    "If a contract explicitly prohibits an action described in a hypothesis: Contradiction."
)


@pytest.mark.parametrize(
    "rule, header, label, expected",
    [
        (
            CONTRACT_RULE,
            "Task: Decide whether the contract entails the hypothesis.\nLabels: Entailment.",
            "Contradiction",
            ["explicitly", "prohibits", "action"],
        ),
        (
            "If the sentence names a Country's people, then race.",
            "Task: Which stereotype does the sentence hold?",
            "race",
            ["names", "country", "people"],
        ),
    ],
    ids=["task-words-kept", "label-and-case"],
)
def test_the_words_a_paraphrase_must_avoid_are_the_rules_own(
    rule: str, header: str, label: str, expected: list[str]
) -> None:
    assert content_words(rule, header, label) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "If a contract explicitly forbids an action described in a hypothesis: Contradiction.",
            True,
        ),
        (
            "If the given contract 'explicitly prohibits' an action in a hypothesis: Contradiction.",
            False,
        ),
        ("If an action is explicitly prohibits by a contract, then Contradiction.", False),
    ],
    ids=["a-word-replaced", "quotes-and-a-word-added", "reordered"],
)
def test_a_paraphrase_must_drop_one_of_the_rules_own_words(text: str, expected: bool) -> None:
    rule = Rule(id="R1", text=CONTRACT_RULE, label="Contradiction")
    assert reworded(text, rule, "Task: Does the contract entail the hypothesis?") is expected


def test_a_rule_whose_paraphrase_always_repeats_it_is_kept_unchecked(tmp_path: Path) -> None:
    suite = make_zorblax_project(tmp_path)
    proposal, _ = run(suite, generate=teacher_answering(paraphrase=GENERAL))
    (check,) = proposal.wording
    assert check["outcome"] == "unchecked"
    assert "repeats the rule's words in 3 draws" in check["note"]
    assert GENERAL in [r.text for r in proposal.new.rules]


@pytest.mark.parametrize(
    "effect, reworded, expected",
    [
        ((0.2, 0.05, 0.3), (0.1, -0.02, 0.2), True),  # the interval no longer excludes 0
        ((0.1, -0.05, 0.2), (0.0, -0.1, 0.1), True),  # the point gain is gone
        ((0.1, -0.05, 0.2), (0.08, -0.06, 0.2), False),  # smaller, still there
        ((0.0, -0.05, 0.05), (-0.02, -0.1, 0.05), False),  # nothing to lose
    ],
    ids=["interval-lost", "gain-lost", "gain-kept", "no-effect"],
)
def test_the_vanishing_rule(
    effect: tuple[float, float, float], reworded: tuple[float, float, float], expected: bool
) -> None:
    assert vanishes(effect, reworded) is expected


# --- the token budget ---------------------------------------------------------------------------


def additive_scorer(values: dict[str, float]) -> Callable[[Sequence[Rule]], Any]:
    return lambda rules: SimpleNamespace(macro_f1=sum(values[r.id] for r in rules))


def words(iset: Any) -> int:
    return 10 + sum(len(r.text.split()) for r in iset.rules)


RULES = [
    Rule("R1", "one two three four five six seven eight nine ten", "pos"),  # 10 tokens
    Rule("R2", "one two three four five", "pos"),  # 5
    Rule("R3", "one two three four five", "neg"),  # 5
    Rule("R4", "one two three four five six seven eight nine ten", "neg"),  # 10
]


def base_set() -> Any:
    text = "name: b\nversion: 1\npreamble: p\nrules: []\noutput: o\n"
    return load_instruction_set_text(text, "b.yaml")


def test_rules_are_pruned_by_utility_per_token_until_the_prompt_fits() -> None:
    # utility per token: R1 0.02, R2 0.01, R3 0.01, R4 0.005; prompt 10 + 30 + 5 user = 45
    values = {"R1": 0.2, "R2": 0.05, "R3": 0.05, "R4": 0.05}
    result = fit_budget(RULES, base_set(), additive_scorer(values), words, budget=32, user_tokens=5)
    # R4 first (lowest per token); then R2 and R3 tie: the later one goes; then it fits
    assert [p.rule_id for p in result.pruned] == ["R4", "R3"]
    assert [r.id for r in result.rules] == ["R1", "R2"] and result.fits
    assert result.pruned[0].tokens == 10 and result.pruned[0].utility == pytest.approx(0.05)
    assert result.prompt_tokens == 30 and result.pruned[-1].prompt_tokens_after == 30


def test_a_harmful_rule_goes_first_and_nothing_is_pruned_once_it_fits() -> None:
    values = {"R1": 0.2, "R2": -0.05, "R3": 0.05, "R4": 0.3}
    result = fit_budget(RULES, base_set(), additive_scorer(values), words, budget=40, user_tokens=5)
    assert [p.rule_id for p in result.pruned] == ["R2"] and result.fits


def test_when_even_no_rules_do_not_fit_pruning_stops_and_says_so() -> None:
    values = dict.fromkeys(("R1", "R2", "R3", "R4"), 0.1)
    result = fit_budget(RULES, base_set(), additive_scorer(values), words, budget=8, user_tokens=5)
    assert result.rules == [] and len(result.pruned) == 4 and not result.fits
    assert "over max_prompt_tokens 8 even without rules" in result.notes[0]


def test_distill_prunes_to_the_suites_budget_and_the_proposal_shows_it(tmp_path: Path) -> None:
    def student(system: str, user: str, labels: Sequence[str]) -> str:
        """Wrong on everything without rules; each rule fixes its own label."""
        rules = rules_of(system)
        if "great" in user:
            return "pos" if "praises" in rules else "neg"
        return "neg" if "dull" in rules else "pos"

    # scripted tokens are words: both rules make a prompt of 45 (with the longest user
    # message, 5), the pos rule alone 32; both rules are worth the same, the neg one is longer
    suite = make_zorblax_project(tmp_path, budget=33)
    proposal, _ = run(suite, student=student, wording="off")
    assert proposal.budget["fits"] and proposal.budget["prompt_tokens"] == 32
    (pruned,) = proposal.budget["pruned"]
    assert (pruned["rule_id"], pruned["text"], pruned["tokens"]) == ("R001", DULL, 13)
    assert pruned["utility"] > 0  # it did help; the budget had no room for it
    assert [r.text for r in proposal.new.rules] == [GENERAL]
    assert proposal.pruned_lines[0].startswith("R001: utility +0.")


# --- dev folds ----------------------------------------------------------------------------------


def test_selection_never_scores_the_held_back_fold_and_the_report_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = make_zorblax_project(tmp_path)
    scored: list[tuple[str | None, str, frozenset[str]]] = []
    real = Student.score

    def spy(self: Student, iset: Any, fold: Any) -> Any:
        scored.append((self.ledger.current, fold.name, frozenset(e.id for e in fold.examples)))
        return real(self, iset, fold)

    monkeypatch.setattr(Student, "score", spy)
    proposal, _ = run(suite, rounds=1)
    rest, held = split_holdout(suite.load_examples("dev"), 1 / 3)
    held_ids = {e.id for e in held}
    by_phase: dict[str | None, set[str]] = {}
    for phase, name, ids in scored:
        by_phase.setdefault(phase, set()).add(name)
        assert not (ids & held_ids) or name == "dev/held-back"
    assert by_phase["select"] == {"dev/selection"} and by_phase["revise"] <= {
        "dev/selection",
        "train",
    }
    assert by_phase["held-back"] == {"dev/held-back"}
    assert proposal.reported_on == "dev/held-back" and proposal.after["n"] == len(held)
    assert proposal.settings["folds"]["selection"] == len(rest)


def test_the_cli_prints_dropped_rules_wording_and_conditions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = make_zorblax_project(tmp_path)
    answer = teacher_answering(generalised="If the review praises Zorblax a lot, then pos.")
    argv = ["distill", "toy", "--traces", str(suite.root / "traces" / "toy.jsonl")]
    argv += ["--teacher", "scripted:t", "--embedder", "tfidf", "--min-samples", "2"]
    argv += ["--synthesis", "medoid", "--rounds", "0", "--shots", "0", "--root", str(tmp_path)]
    with scripted(ScriptedBackend("t", classify=praise_student, generate=answer)):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "# dropped: rules that name words of their source examples" in out
    assert "'Zorblax' (in 2 of 2 source examples, 3.3% of train documents)" in out
    assert "# dev/held-back (n=" in out and "# conditions" in out
    assert "zero-shot + calibration" in out and "returns no per-label scores" in out
