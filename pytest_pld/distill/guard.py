"""Split discipline: teach and distill never learn from the split the gates score.

A rule distilled from test examples (or tuned against their labels) would make the gate
measure memory instead of skill. So `teach` and `distill` refuse the gate split outright, and
distill checks every candidate rule for long word spans copied from the gate split's inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..errors import PldError
from ..suite import Suite

SPAN_WORDS = 8


def refuse_gate_split(suite: Suite, split: str, command: str) -> None:
    """PldError when `split` is the suite's gate split or is not declared."""
    if split == suite.gate_split:
        others = [s for s in suite.splits if s != suite.gate_split]
        raise PldError(
            f"`pld {command}` never reads the {split!r} split: the gates of suite "
            f"{suite.name!r} score it, and rules learnt from it would inflate them",
            path=suite.path,
            key="gate_split",
            hint=f"use {' or '.join(repr(s) for s in others) or 'a train or dev split'}",
        )
    if split not in suite.splits:
        raise PldError(
            f"suite {suite.name!r} has no {split!r} split",
            path=suite.path,
            key="splits",
            hint=f"declared splits: {', '.join(suite.splits)}",
        )


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class LeakageCheck:
    """Finds rules that copy a span of SPAN_WORDS+ consecutive words found only in the gate
    split's inputs.

    It is built from the *text* of the inputs only, never their labels, and it only ever
    removes a rule: it cannot make a rule fit the gate split better, so reading the texts for
    it does not leak the answers into the rules (it keeps them out). Spans that also occur in
    another split's inputs are allowed: the teacher saw them there (ContractNLI asks the same
    17 hypotheses of every contract, and NDAs share boilerplate), so a rule quoting them has
    learnt from the train split, not copied the test split.
    """

    def __init__(
        self, texts: Iterable[str], span: int = SPAN_WORDS, shared: Iterable[str] = ()
    ) -> None:
        self.span = span
        self._grams = set(_grams(texts, span)) - set(_grams(shared, span))

    @classmethod
    def for_suite(cls, suite: Suite, span: int = SPAN_WORDS) -> LeakageCheck:
        if suite.gate_split not in suite.splits:
            return cls((), span)

        def inputs(split: str) -> Iterator[str]:
            return (v for e in suite.load_examples(split) for v in input_strings(e.fields))

        others = [s for s in suite.splits if s != suite.gate_split]
        return cls(
            inputs(suite.gate_split),
            span,
            shared=(text for split in others for text in inputs(split)),
        )

    def copied_span(self, rule: str) -> str | None:
        """The first copied span, or None when the rule copies nothing long."""
        words = _tokens(rule)
        for i in range(len(words) - self.span + 1):
            gram = tuple(words[i : i + self.span])
            if gram in self._grams:
                return " ".join(gram)
        return None


def _grams(texts: Iterable[str], span: int) -> Iterator[tuple[str, ...]]:
    for text in texts:
        words = _tokens(text)
        for i in range(len(words) - span + 1):
            yield tuple(words[i : i + span])


def input_strings(fields: Mapping[str, Any]) -> Iterable[str]:
    """The text of an example's input fields (strings, and strings in lists)."""
    for value in fields.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, str))
