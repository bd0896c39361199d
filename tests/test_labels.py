"""Labels from answers: parse_label (a served model's free text -> one label, or INVALID when it
is not clear) and top_label (a scored backend's scores -> one label, ties flagged)."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from pytest_pld.labels import INVALID, parse_label, top_label

NLI = ["Entailment", "Contradiction", "NotMentioned"]
STEREO = ["stereotype", "anti-stereotype", "unrelated"]
CHOICE = ["A", "B", "C", "D"]
SENTIMENT = ["positive", "negative"]


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        pytest.param("Contradiction", NLI, "Contradiction", id="exact"),
        pytest.param("  contradiction.\n", NLI, "Contradiction", id="case-and-punctuation"),
        pytest.param("The answer is: contradiction.", NLI, "Contradiction", id="answer-marker"),
        pytest.param("**Entailment**", NLI, "Entailment", id="markdown-bold"),
        pytest.param("`Entailment`", NLI, "Entailment", id="backticks"),
        pytest.param('"Entailment"', NLI, "Entailment", id="quotes"),
        pytest.param("Not mentioned", NLI, "NotMentioned", id="camel-case-label-spaced-answer"),
        pytest.param("not_mentioned", NLI, "NotMentioned", id="snake-case-answer"),
        pytest.param("NOTMENTIONED", NLI, "NotMentioned", id="run-together-answer"),
        pytest.param(
            "It is not mentioned in the contract.",
            NLI,
            "NotMentioned",
            id="label-inside-a-sentence",
        ),
        pytest.param("Label: Entailment", NLI, "Entailment", id="label-marker"),
        pytest.param("Final answer: NotMentioned", NLI, "NotMentioned", id="final-answer-marker"),
        pytest.param(
            "Entailment. The clause lets the recipient share, so no contradiction.",
            NLI,
            "Entailment",
            id="leading-label-then-explanation",
        ),
        pytest.param(
            "The hypothesis is entailment, I believe", NLI, "Entailment", id="single-mention"
        ),
        pytest.param(
            "Entailment or contradiction, hard to say", NLI, INVALID, id="two-labels-is-ambiguous"
        ),
        pytest.param(
            "The answer is entailment. Final answer: contradiction",
            NLI,
            INVALID,
            id="conflicting-markers-are-ambiguous",
        ),
        pytest.param("This is not a contradiction.", NLI, INVALID, id="negated-only-mention"),
        pytest.param(
            "It is not a contradiction but an entailment.",
            NLI,
            "Entailment",
            id="negated-mention-is-not-a-vote",
        ),
        pytest.param("I'm sorry, I cannot help with that.", NLI, INVALID, id="no-label"),
        pytest.param("", NLI, INVALID, id="empty"),
        pytest.param("...", NLI, INVALID, id="punctuation-only"),
        pytest.param("anti-stereotype", STEREO, "anti-stereotype", id="hyphenated-label"),
        pytest.param(
            "This sentence is an anti-stereotype.",
            STEREO,
            "anti-stereotype",
            id="longer-label-wins-over-contained-label",
        ),
        pytest.param("Antistereotype", STEREO, "anti-stereotype", id="hyphen-dropped"),
        pytest.param("stereotype", STEREO, "stereotype", id="shorter-label-alone"),
        pytest.param("B", CHOICE, "B", id="choice-letter"),
        pytest.param("b)", CHOICE, "B", id="choice-letter-lowercase-alone"),
        pytest.param("B) The lease ends", CHOICE, "B", id="choice-letter-leading"),
        pytest.param("The answer is C.", CHOICE, "C", id="choice-answer-marker"),
        pytest.param("I think a good option is D", CHOICE, "D", id="article-a-is-not-choice-A"),
        pytest.param("Either A or B", CHOICE, INVALID, id="two-choices-ambiguous"),
        pytest.param("Positive.", SENTIMENT, "positive", id="label-case-kept-from-suite"),
        pytest.param(
            "The best day ever is a positive sentiment",
            SENTIMENT,
            "positive",
            id="chatty-small-model-answer",
        ),
        pytest.param("Sentiment: negative!", SENTIMENT, "negative", id="trailing-bang"),
        pytest.param(
            "Nicht erwähnt", ["Erwähnt", "Nicht erwähnt"], "Nicht erwähnt", id="non-ascii-labels"
        ),
        pytest.param("positive", [], INVALID, id="no-labels"),
    ],
)
def test_parse_label_maps_answers_to_labels_or_invalid(
    text: str, labels: list[str], expected: str
) -> None:
    assert parse_label(text, labels) == expected


def test_parse_label_never_returns_anything_but_a_label_or_invalid() -> None:
    answers = [
        "yes",
        "no",
        "Entailment!",
        "contradiction? maybe",
        "N/A",
        "12",
        "\n\n",
        "The answer is",
        "answer: answer: answer",
        "not not entailment",
    ]
    for text in answers:
        assert parse_label(text, NLI) in {*NLI, INVALID}


def test_parse_label_ignores_non_string_answers() -> None:
    assert parse_label(None, NLI) == INVALID  # type: ignore[arg-type]


# -- top_label: the prediction of a scored backend ------------------------------------------


def test_the_highest_score_wins_without_a_tie() -> None:
    assert top_label({"A": -2.5, "B": -0.75, "C": -0.7500001}, "example") == ("B", False)


def test_a_tie_is_flagged_and_resolved_the_same_whatever_the_label_order() -> None:
    scores = {"A": -1.0, "B": -0.5, "C": -0.5, "D": -0.5}
    winners = {
        top_label(dict(order), "the same example")
        for order in itertools.permutations(scores.items())
    }
    assert len(winners) == 1
    label, tie = winners.pop()
    assert tie and label in {"B", "C", "D"}


def test_ties_are_spread_over_the_tied_labels_not_given_to_one() -> None:
    """Neither the first label (the old bias) nor the alphabetically first wins every tie."""
    scores = {"A": -0.5, "B": -0.5, "C": -0.5, "D": -0.5}
    wins = Counter(top_label(scores, f"example {i}")[0] for i in range(400))
    assert set(wins) == set(scores)
    assert min(wins.values()) > 60  # 100 expected each
