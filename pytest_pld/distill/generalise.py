"""Rules that generalise: no rule that names words specific to its source examples is proposed.

A word of a rule is *specific* when it is frequent in the rule's source examples and rare
across the train split:

- its train document frequency (the share of train documents that contain it; a document is an
  example's group - a contract, a StereoSet cluster - or the example where it has none) is at
  most `max_df`, and
- its share among the source examples is at least `lift` times that frequency.

So task vocabulary passes however often a rule uses it: a contract's defined terms
("Confidential Information", "Receiving Party") occur in most contracts, and ContractNLI's 17
hypotheses are asked of every contract. "If Ethiopia is an incredibly starving country, then
the label is race." fails: "ethiopia" occurs in its source examples and in well under 1% of
train clusters. Words of the task's own description (labels, preamble, label definitions, the
output instruction, the user template) are always allowed. Words are compared by a crude stem
(their first 6 letters), so "Ethiopian" counts as "Ethiopia" and "religious" as "religion".

A candidate with specific words is never proposed as it is: the teacher is asked to generalise
it (`prompts.generalise_messages`, told which words and why); a generalisation that is still
specific, or unusable, drops the candidate, and the proposal lists it with the words, their
share of the sources and their document frequency.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..instructions import InstructionSet
from ..suite import Suite
from . import DEFAULT_LIFT, DEFAULT_MAX_DF
from .answers import Teacher, ask_for_rule
from .guard import input_strings
from .prompts import RULE_SCHEMA, generalise_messages
from .synthesize import Candidate

STEM = 6
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_JINJA = re.compile(r"\{[{%#].*?[}%#]\}", re.DOTALL)


def stem(word: str) -> str:
    w = word.lower()
    w = w.removesuffix("'s").removesuffix("s'")
    return w[:STEM]


def _stems(text: str) -> set[str]:
    return {stem(w) for w in WORD.findall(text) if len(w) >= 3}


def common_stems(vocabulary: Iterable[str]) -> set[str]:
    """Stems any rule may use: English stop words and the task's own words (`vocabulary`:
    preamble, labels, templates with their Jinja tags set aside)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {stem(w) for w in ENGLISH_STOP_WORDS} | {
        s for text in vocabulary for s in _stems(_JINJA.sub(" ", text))
    }


@dataclass(frozen=True)
class SpecificWord:
    word: str  # as the rule writes it
    in_sources: int  # source examples that contain it
    sources: int
    df: float  # share of train documents that contain it

    def describe(self) -> str:
        return (
            f"'{self.word}' (in {self.in_sources} of {self.sources} source examples, "
            f"{self.df:.1%} of train documents)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "word": self.word,
            "in_sources": self.in_sources,
            "sources": self.sources,
            "train_df": round(self.df, 5),
        }


class Specificity:
    """The generalisation test, built from the train split's inputs and the task's wording."""

    def __init__(
        self,
        documents: Iterable[str],
        examples: Mapping[str, str],
        vocabulary: Iterable[str],
        *,
        max_df: float = DEFAULT_MAX_DF,
        lift: float = DEFAULT_LIFT,
    ) -> None:
        self.max_df, self.lift = max_df, lift
        self.df: Counter[str] = Counter()
        self.n_docs = 0
        for text in documents:
            self.df.update(_stems(text))
            self.n_docs += 1
        self._examples = {i: _stems(text) for i, text in examples.items()}
        self.allowed = common_stems(vocabulary)

    @classmethod
    def for_suite(
        cls, suite: Suite, base: InstructionSet, *, max_df: float, lift: float
    ) -> Specificity:
        """Documents from the train split; examples of train and dev (traces taught on dev
        are allowed, with a note) so that any source id resolves. Without a train split there
        are no document frequencies and every rule passes (`n_docs` is 0: say so)."""
        has_train = "train" in suite.splits and suite.gate_split != "train"
        train = suite.load_examples("train") if has_train else []
        grouped: dict[str, list[str]] = {}
        for e in train:
            grouped.setdefault(e.group or e.id, []).extend(input_strings(e.fields))
        examples = {e.id: " ".join(input_strings(e.fields)) for e in train}
        if "dev" in suite.splits and suite.gate_split != "dev":
            for e in suite.load_examples("dev"):
                examples.setdefault(e.id, " ".join(input_strings(e.fields)))
        vocabulary = [
            *suite.labels,
            base.preamble,
            base.output,
            suite.user_template,
            *base.label_definitions.values(),
        ]
        return cls(
            (" ".join(parts) for parts in grouped.values()),
            examples,
            vocabulary,
            max_df=max_df,
            lift=lift,
        )

    def allow_phrasing(self, rules: Iterable[tuple[str, str | None]], *, labels: int) -> int:
        """Let pass the words the teacher uses in rules for `labels` or more gold labels (the
        pipeline asks for most of the suite's labels): they are how it phrases a rule
        ("mentions", "contains"), not what it read in an example, which stays with one or two
        labels (a 'butcher' rule is a profession rule; 'terrorist' came with religion and race
        rules). The 1.5B teacher's "If the sentence mentions a job title ..." was dropped for
        'mentions', found in one of its seven StereoSet source sentences. Returns how many
        stems were added."""
        labels_of: dict[str, set[str | None]] = {}
        for text, label in rules:
            for s in _stems(text):
                labels_of.setdefault(s, set()).add(label)
        added = {s for s, seen in labels_of.items() if len(seen) >= labels} - self.allowed
        self.allowed |= added
        return len(added)

    def words(self, rule: str, source_ids: Sequence[str]) -> list[SpecificWord]:
        """The rule's specific words (one per stem, in the order the rule uses them)."""
        sources = [self._examples[i] for i in dict.fromkeys(source_ids) if i in self._examples]
        if not sources or not self.n_docs:
            return []
        out: list[SpecificWord] = []
        seen: set[str] = set()
        for word in WORD.findall(rule):
            s = stem(word)
            if len(word) < 3 or s in seen or s in self.allowed:
                continue
            seen.add(s)
            hits = sum(s in src for src in sources)
            df = self.df[s] / self.n_docs
            if hits and df <= self.max_df and hits / len(sources) >= self.lift * df:
                out.append(SpecificWord(word, hits, len(sources), df))
        return out


@dataclass(frozen=True)
class DroppedRule:
    """A candidate that was not proposed because it names specific words."""

    text: str
    label: str | None
    method: str
    cluster: int | None
    words: tuple[SpecificWord, ...]
    reason: str
    attempt: str = ""  # the teacher's generalisation, when it gave one

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "text": self.text,
            "label": self.label,
            "method": self.method,
            "cluster": self.cluster,
            "words": [w.to_json() for w in self.words],
            "reason": self.reason,
        }
        if self.attempt:
            out["generalisation"] = self.attempt
        return out

    def line(self) -> str:
        words = "; ".join(w.describe() for w in self.words)
        return f"[{self.label}] {self.text}  -- {self.reason}: {words}"


class Generaliser:
    """Passes general candidates through, asks the teacher to generalise specific ones, and
    keeps a list of those it had to drop."""

    def __init__(
        self,
        spec: Specificity,
        teacher: Teacher | None,
        *,
        mode: str,
        header: str,
    ) -> None:
        self.spec, self.teacher, self.mode, self.header = spec, teacher, mode, header
        self.dropped: list[DroppedRule] = []
        self.generalised = 0

    def vet(self, cand: Candidate) -> Candidate | None:
        """The candidate as it may be proposed (itself or its generalisation), or None."""
        words = self.spec.words(cand.text, cand.source_ids)
        if not words:
            return cand
        if self.teacher is None:
            self._drop(cand, words, "names words of its source examples (no teacher to generalise)")
            return None
        answer = ask_for_rule(
            self.teacher,
            generalise_messages(
                self.header, cand.text, cand.label, [w.describe() for w in words], mode=self.mode
            ),
            mode=self.mode,
            label=cand.label,
            entities=[w.word for w in words],
            schema=RULE_SCHEMA,
        )
        calls = cand.teacher_calls + answer.attempts
        tokens = cand.tokens + answer.prompt_tokens + answer.completion_tokens
        if not answer.ok:
            self._drop(cand, words, f"generalisation failed ({answer.error})")
            return None
        still = self.spec.words(answer.rule, cand.source_ids)
        if still:
            self._drop(
                cand, tuple(still), "its generalisation still names specific words", answer.rule
            )
            return None
        self.generalised += 1
        shown = ", ".join(w.describe() for w in words)
        note = f"generalised from {cand.text!r}, which named {shown}"
        return replace(
            cand,
            text=answer.rule,
            note=f"{cand.note}; {note}" if cand.note else note,
            teacher_calls=calls,
            tokens=tokens,
            extra={**cand.extra, "generalised_from": cand.text},
        )

    def _drop(
        self, cand: Candidate, words: Sequence[SpecificWord], reason: str, attempt: str = ""
    ) -> None:
        self.dropped.append(
            DroppedRule(
                cand.text, cand.label, cand.method, cand.cluster, tuple(words), reason, attempt
            )
        )
