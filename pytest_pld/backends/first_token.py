"""Label scores of a served model, read from the top log-probabilities of its first answer token.

Servers that return log-probabilities for chat completions (`logprobs: true, top_logprobs: N`)
list, for each generated token, the N most likely tokens at that position. Who returns them:
OpenAI (N <= 20), vLLM (N up to its `--max-logprobs`, 20 by default) and llama.cpp's servers
(llama-cpp-python's `python -m llama_cpp.server` too); `transformers serve` (5.x) ignores both
fields with a warning and returns none.

The scores come from the first position whose generated token holds a letter or a digit (a
leading space or a markdown `**` token is passed over: the answer starts after it). The server's
tokenizer is not at hand, so tokens are matched to labels by their text: a token stands for a
label when its letters and digits, case folded, are a non-empty prefix of that label's and of no
other label's (" Race", "race" and "ra" stand for race; "r", a prefix of race and of religion,
stands for neither). A label's score is the log of the summed probability of the tokens that
stand for it. Single-character labels (multiple choice A-D) match case-sensitively and whole, as
`labels.parse_label` reads them.

What goes missing, and what happens then:

- A label that no returned token stands for (its first token is not among the top N) gets no
  score and is left out of the mapping. Its probability is below the smallest one returned, but
  a floor (that minus log 2, say) would be a guess recorded as a measurement.
- Labels whose first tokens collide (the same text starts both, as "Not" of NotMentioned and
  NotEntailed) cannot be told apart by one token: the shared token stands for neither, so they
  go missing.
- A response without log-probabilities (a server that ignores the request) has no scores.

A calibration refuses results that lack a label's score, with a clear error
(`calibration.require_scores`): it never calibrates a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_ALNUM = re.compile(r"[^\W_]+")


def _key(text: str) -> str:
    """Letters and digits, case folded: 'Not_Mentioned' -> 'notmentioned'."""
    return "".join(_ALNUM.findall(text.casefold()))


def _stands_for(token: str, label: str, key: str) -> bool:
    if len(key) == 1:  # A-D: the letter as written, and all of it
        return "".join(_ALNUM.findall(token)) == "".join(_ALNUM.findall(label))
    piece = _key(token)
    return bool(piece) and key.startswith(piece)


def label_scores(top: Iterable[tuple[str, float]], labels: Sequence[str]) -> dict[str, float]:
    """Each label's log-probability from one position's (token, logprob) list; labels that no
    token stands for alone are left out."""
    keys = {label: _key(label) for label in labels}
    found: dict[str, float] = {}
    for token, logprob in top:
        hits = [label for label, key in keys.items() if key and _stands_for(token, label, key)]
        if len(hits) != 1 or not math.isfinite(logprob):
            continue
        label = hits[0]
        old = found.get(label)
        if old is None:
            found[label] = float(logprob)
        else:  # log(exp(old) + exp(logprob)), without leaving log space
            high, low = max(old, logprob), min(old, logprob)
            found[label] = high + math.log1p(math.exp(low - high))
    return {label: found[label] for label in labels if label in found}


def answer_position(content: Sequence[Any]) -> Sequence[tuple[str, float]] | None:
    """The (token, logprob) alternatives at the first generated token that holds a letter or
    digit, from a chat completion's `choices[0].logprobs.content`; None when there is none."""
    for entry in content:
        if _key(str(_field(entry, "token") or "")):
            top = _field(entry, "top_logprobs") or []
            return [
                (str(_field(t, "token")), float(_field(t, "logprob")))
                for t in top
                if isinstance(_field(t, "token"), str)
                and isinstance(_field(t, "logprob"), (int, float))
            ]
    return None


def completion_scores(choice: Any, labels: Sequence[str]) -> dict[str, float] | None:
    """The label scores of one chat-completion choice, or None when it carries no
    log-probabilities or no label got a score."""
    logprobs = _field(choice, "logprobs")
    content = _field(logprobs, "content") if logprobs is not None else None
    if not isinstance(content, Sequence) or isinstance(content, str):
        return None
    top = answer_position(content)
    if not top:
        return None
    return label_scores(top, labels) or None


def _field(obj: Any, name: str) -> Any:
    """An attribute of the SDK's objects, or a key of plain dicts."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
