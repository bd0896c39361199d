"""Split discipline: teach and distill never learn from the split the gates score.

A rule distilled from test examples (or tuned against their labels) would make the gate
measure memory instead of skill. So `teach` and `distill` refuse the gate split outright, and
distill checks every candidate rule for long word spans copied from the gate split's inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
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
            path=suite.path, key="gate_split",
            hint=f"use {' or '.join(repr(s) for s in others) or 'a train or dev split'}")
    if split not in suite.splits:
        raise PldError(f"suite {suite.name!r} has no {split!r} split", path=suite.path,
                       key="splits", hint=f"declared splits: {', '.join(suite.splits)}")


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


class LeakageCheck:
    """Finds rules that copy a span of SPAN_WORDS+ consecutive words from gate-split inputs.

    It is built from the *text* of the gate split's inputs only, never their labels, and it
    only ever removes a rule: it cannot make a rule fit the gate split better, so reading the
    texts for it does not leak the answers into the rules (it keeps them out).
    """

    def __init__(self, texts: Iterable[str], span: int = SPAN_WORDS) -> None:
        self.span = span
        self._grams: set[tuple[str, ...]] = set()
        for text in texts:
            words = _tokens(text)
            for i in range(len(words) - span + 1):
                self._grams.add(tuple(words[i:i + span]))

    @classmethod
    def for_suite(cls, suite: Suite, span: int = SPAN_WORDS) -> LeakageCheck:
        if suite.gate_split not in suite.splits:
            return cls((), span)
        examples = suite.load_examples(suite.gate_split)
        return cls((v for e in examples for v in _strings(e.fields)), span)

    def copied_span(self, rule: str) -> str | None:
        """The first copied span, or None when the rule copies nothing long."""
        words = _tokens(rule)
        for i in range(len(words) - self.span + 1):
            gram = tuple(words[i:i + self.span])
            if gram in self._grams:
                return " ".join(gram)
        return None


def _strings(fields: Mapping[str, Any]) -> Iterable[str]:
    for value in fields.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, str))
