"""Turn a model's answer into one of the suite's labels: free text through `parse_label` (or
INVALID), scores through `top_label`.

Served models answer in sentences ("The answer is: contradiction."), in markdown
("**Entailment**"), in other spellings ("not mentioned" for `NotMentioned`). The parser tolerates
case, punctuation, separators and surrounding words, but it never guesses: an answer that names
two different labels without saying which one it picks, or names none, is INVALID, and metrics
count it as wrong.

The steps, first decisive one wins:

1. the whole answer is a label (`" contradiction. "`, `"Not_Mentioned"`);
2. explicit answer markers ("answer is X", "label: X", "final answer: X"); if they point at
   different labels the answer is INVALID;
3. the answer starts with a label that ends its sentence or line (`"Entailment. Because ..."`);
4. exactly one label is mentioned anywhere, not counting negated mentions ("not a
   contradiction"); longer labels win over labels they contain ("anti-stereotype" is not also
   "stereotype").

Single-character labels (multiple choice `A`-`D`) are matched case-sensitively in steps 3-4,
because the article "a" is everywhere in English text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["INVALID", "parse_label", "tie_key", "top_label"]

#: The prediction recorded when a model's answer is not one of the labels. Metrics count it
#: as wrong (and report its rate); it is never silently replaced by a guess.
INVALID = "invalid"

# Words and numbers; everything else (punctuation, markdown, underscores, hyphens) separates.
_WORD = re.compile(r"[^\W_]+")
# lowercase->Uppercase boundaries inside a word: NotMentioned -> Not | Mentioned
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# What may follow a leading label for it to count as the answer (step 3).
_LEAD_END = re.compile(r"\s*(?:$|[.!:;)\]\n])")

_MARKERS = ("answer", "label", "prediction", "classification", "verdict", "category", "output")
_FILLER = frozenset(
    {
        "is",
        "be",
        "would",
        "should",
        "will",
        "the",
        "final",
        "therefore",
        "thus",
        "so",
        "my",
        "correct",
        "predicted",
    }
)
_NEGATIONS = frozenset({"not", "no", "never", "t", "nor", "neither", "without"})
_ARTICLES = frozenset({"a", "an", "the"})


@dataclass(frozen=True)
class _Token:
    text: str  # as written
    fold: str  # casefolded
    start: int
    end: int


@dataclass(frozen=True)
class _Label:
    name: str
    words: tuple[str, ...]  # casefolded words
    compact: str  # casefolded words joined: "notmentioned"
    char: str | None  # the character as written, for single-character labels


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    for m in _WORD.finditer(text):
        word, base = m.group(), m.start()
        pos = 0
        for piece in _CAMEL.split(word):
            if piece:
                start = base + word.index(piece, pos)
                pos = start - base + len(piece)
                out.append(_Token(piece, piece.casefold(), start, start + len(piece)))
    return out


def _prepare(labels: Sequence[str]) -> list[_Label]:
    prepared = []
    for name in labels:
        words = tuple(t.fold for t in _tokens(name))
        if words:
            compact = "".join(words)
            char = "".join(t.text for t in _tokens(name)) if len(compact) == 1 else None
            prepared.append(_Label(name, words, compact, char))
    # Longest first, so "anti-stereotype" is tried before "stereotype" at the same position.
    prepared.sort(key=lambda lab: (-len(lab.words), -len(lab.compact)))
    return prepared


def _match_at(
    tokens: Sequence[_Token], i: int, labels: Sequence[_Label], *, case_sensitive_single: bool
) -> tuple[_Label, int] | None:
    """The label whose words start at token i, and how many tokens it spans."""
    for lab in labels:
        if lab.char is not None and case_sensitive_single:
            if tokens[i].text == lab.char:
                return lab, 1
            continue
        n = len(lab.words)
        if tuple(t.fold for t in tokens[i : i + n]) == lab.words:
            return lab, n
        if n > 1 and tokens[i].fold == lab.compact:
            return lab, 1
    return None


def _negated(tokens: Sequence[_Token], i: int) -> bool:
    j = i - 1
    if j >= 0 and tokens[j].fold in _ARTICLES:
        j -= 1
    return j >= 0 and tokens[j].fold in _NEGATIONS


def parse_label(text: str, labels: Sequence[str]) -> str:
    """The label `text` answers with, or INVALID when it names none or is ambiguous."""
    if not isinstance(text, str) or not labels:
        return INVALID
    prepared = _prepare(labels)
    tokens = _tokens(text)
    if not tokens or not prepared:
        return INVALID

    # 1. the whole answer is a label
    folded = tuple(t.fold for t in tokens)
    for lab in prepared:
        if folded == lab.words or (len(folded) == 1 and folded[0] == lab.compact):
            return lab.name

    # 2. explicit answer markers
    marked: list[str] = []
    for i, tok in enumerate(tokens):
        if tok.fold not in _MARKERS:
            continue
        j = i + 1
        while j < len(tokens):
            hit = _match_at(tokens, j, prepared, case_sensitive_single=False)
            if hit is not None:
                marked.append(hit[0].name)
                break
            if tokens[j].fold not in _FILLER:
                break
            j += 1
    if marked:
        return marked[0] if len(set(marked)) == 1 else INVALID

    # 3. a leading label that ends its sentence or line
    hit = _match_at(tokens, 0, prepared, case_sensitive_single=True)
    if hit is not None:
        lab, n = hit
        if _LEAD_END.match(text, tokens[n - 1].end):
            return lab.name

    # 4. exactly one label mentioned, negated mentions aside
    mentioned: set[str] = set()
    i = 0
    while i < len(tokens):
        hit = _match_at(tokens, i, prepared, case_sensitive_single=True)
        if hit is None:
            i += 1
            continue
        lab, n = hit
        if not _negated(tokens, i):
            mentioned.add(lab.name)
        i += n
    if len(mentioned) == 1:
        return mentioned.pop()
    return INVALID


def tie_key(example: str, label: str) -> str:
    """The key that resolves an exact tie: the tied label with the smallest key wins."""
    return hashlib.sha256(f"{example}\0{label}".encode()).hexdigest()


def top_label(scores: Mapping[str, float], example: str) -> tuple[str, bool]:
    """The highest-scoring label, and whether it tied exactly with another.

    An exact tie is never resolved by the order of the label list (that would hand every tie
    to the first label, and make the answer depend on how the suite lists its labels), nor
    alphabetically (which favours some labels everywhere): the tied label with the smallest
    `tie_key` (sha256 of the example and the label's name) wins. That is deterministic,
    independent of the labels' order, and spreads ties over the labels as the examples vary.
    The runner passes the example's id (so a tie goes the same way under any instruction set
    and in `prior_shift`); a backend called directly passes the user message.
    """
    best = max(scores.values())
    tied = [label for label, score in scores.items() if score == best]
    if len(tied) == 1:
        return tied[0], False
    return min(tied, key=lambda label: tie_key(example, label)), True
