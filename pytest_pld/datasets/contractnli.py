"""ContractNLI (Koreeda & Manning, 2021): one example per (contract, hypothesis) pair.

A whole NDA runs to 10k+ tokens, beyond a small student's budget, so the default premise is
retrieved: the contract's own sentence spans ranked by TF-IDF cosine similarity to the
hypothesis, the top k kept and put back in document order. The ranking sees only the
contract text and the hypothesis - never the annotated evidence spans - so the premise is
something a deployed system could build, and scores are not inflated by gold evidence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PldError
from .base import Example, Loader
from .jsonl import frozen, read_json

LABELS = ("Entailment", "Contradiction", "NotMentioned")
PREMISES = ("retrieved", "full")
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"premise": "retrieved", "top_k": 8, "max_span_chars": 320}
)
FIELDS = ("premise", "hypothesis", "hypothesis_key", "document_id")
WHAT = (
    'the ContractNLI JSON layout: {"documents": [{"id", "text", "spans", '
    '"annotation_sets": [{"annotations": {...}}]}], "labels": {key: {"hypothesis"}}}'
)

_SPACE = re.compile(r"\s+")


def _options(options: Mapping[str, Any]) -> tuple[str, int, int]:
    premise = options.get("premise", DEFAULTS["premise"])
    if premise not in PREMISES:
        raise PldError(
            f"contractnli loader: premise must be one of {', '.join(PREMISES)}, got {premise!r}",
            key="dataset.options.premise",
        )
    ints = []
    for name in ("top_k", "max_span_chars"):
        value = options.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PldError(
                f"contractnli loader: {name} must be a positive integer, got {value!r}",
                key=f"dataset.options.{name}",
            )
        ints.append(value)
    return str(premise), ints[0], ints[1]


def _clean(text: str) -> str:
    # PDF-extracted contracts break lines mid-sentence; collapsing whitespace keeps the
    # premise short and reads the same to the model
    return _SPACE.sub(" ", text).strip()


def _clip(text: str, limit: int) -> str:
    """Cut an over-long span at a word boundary: a few spans (tables, run-on clauses) are
    over 1,000 characters and would otherwise crowd the others out of the token budget."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + " ..."


def retrieve(spans: Sequence[str], hypotheses: Sequence[str], top_k: int) -> list[list[int]]:
    """For each hypothesis, the indices (ascending, i.e. document order) of the top_k spans
    by TF-IDF cosine similarity. One vectoriser is fitted per document on its spans, and all
    of the document's hypotheses are scored in one matrix product."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    # whitespace-only spans exist in PDF extractions; they must never take a slot
    candidates = [i for i, s in enumerate(spans) if s]
    if len(candidates) <= top_k:
        return [candidates for _ in hypotheses]
    # sublinear tf: a clause repeating "Confidential Information" five times is not five
    # times as relevant; English stop words carry no signal about which clause matters
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english")
    try:
        span_matrix = vectorizer.fit_transform([spans[i] for i in candidates])
    except ValueError:
        # every span is stop words or punctuation: nothing to rank by, keep the first spans
        return [candidates[:top_k] for _ in hypotheses]
    scores = (vectorizer.transform(hypotheses) @ span_matrix.T).toarray()  # rows L2-normed
    picked = []
    for row in scores:
        # stable sort on -score: ties (often zero scores) go to the earlier span
        order = np.argsort(-row, kind="stable")[:top_k]
        picked.append(sorted(candidates[int(i)] for i in order))
    return picked


def load_contractnli(path: Path, options: Mapping[str, Any]) -> list[Example]:
    premise_mode, top_k, max_span_chars = _options(options)
    data = read_json(path, what=WHAT)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("documents"), list)
        or not isinstance(data.get("labels"), dict)
    ):
        raise PldError(
            "expected a JSON object with a 'documents' list and a 'labels' mapping",
            path=path,
            hint=f"expected {WHAT}",
        )
    hypotheses: dict[str, str] = {}
    for key, spec in data["labels"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("hypothesis"), str):
            raise PldError(f"labels[{key!r}] has no 'hypothesis' string", path=path, key=key)
        hypotheses[str(key)] = _clean(spec["hypothesis"])
    # the annotation keys are not in numeric order in the file; iterate in nda-1, nda-2 ...
    keys = sorted(hypotheses, key=lambda k: (len(k), k))
    hyp_texts = [hypotheses[k] for k in keys]

    examples: list[Example] = []
    seen_docs: set[str] = set()
    for index, doc in enumerate(data["documents"]):
        where = f"documents[{index}]"
        if not isinstance(doc, dict) or "id" not in doc or not isinstance(doc.get("text"), str):
            raise PldError(
                f"{where}: expected an object with 'id' and 'text'",
                path=path,
                hint=f"expected {WHAT}",
            )
        doc_id = str(doc["id"])
        where = f"{where} (id {doc_id})"
        if doc_id in seen_docs:
            raise PldError(f"{where}: duplicate document id", path=path)
        seen_docs.add(doc_id)
        text: str = doc["text"]
        try:
            annotations = doc["annotation_sets"][0]["annotations"]
            if not isinstance(annotations, dict):  # a string would be indexed by character
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise PldError(
                f"{where}: no annotation_sets[0].annotations mapping",
                path=path,
                hint=f"expected {WHAT}",
            ) from None
        missing = [k for k in keys if k not in annotations]
        if missing:
            raise PldError(
                f"{where}: no annotation for {', '.join(missing)}",
                path=path,
                hint="every document must label every hypothesis in 'labels'",
            )

        # one premise per hypothesis, built from the contract text alone
        if premise_mode == "retrieved":
            spans = _span_texts(doc, text, where, path)
            clipped = [_clip(s, max_span_chars) for s in spans]
            picks = retrieve(spans, hyp_texts, top_k)
            premises = ["\n".join(clipped[i] for i in picked) for picked in picks]
        else:
            premises = [_clean(text)] * len(keys)
        if not all(premises):
            raise PldError(f"{where}: the contract text is empty", path=path)

        for k_index, key in enumerate(keys):
            choice = annotations[key].get("choice") if isinstance(annotations[key], dict) else None
            if choice not in LABELS:
                raise PldError(
                    f"{where}: annotation {key!r} has choice {choice!r}",
                    path=path,
                    hint=f"expected one of {', '.join(LABELS)}",
                )
            # only the choice is read from the annotation; its evidence "spans" never are
            examples.append(
                Example(
                    id=f"contractnli-{doc_id}-{key}",
                    label=choice,
                    fields=frozen(
                        {
                            "premise": premises[k_index],
                            "hypothesis": hyp_texts[k_index],
                            "hypothesis_key": key,
                            "document_id": doc_id,
                        }
                    ),
                    group=doc_id,
                )
            )
    if not examples:
        raise PldError("no documents found", path=path, hint=f"expected {WHAT}")
    return examples


def _span_texts(doc: Mapping[str, Any], text: str, where: str, path: Path) -> list[str]:
    spans = doc.get("spans")
    if not isinstance(spans, list) or not spans:
        raise PldError(
            f"{where}: expected a non-empty 'spans' list of [start, end) offsets", path=path
        )
    out = []
    for i, span in enumerate(spans):
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            or not 0 <= span[0] <= span[1] <= len(text)
        ):
            raise PldError(
                f"{where}: spans[{i}] = {span!r} is not a [start, end) offset pair "
                f"inside the text ({len(text)} characters)",
                path=path,
            )
        out.append(_clean(text[span[0] : span[1]]))
    return out


LOADERS: list[Loader] = [
    Loader(
        # ContractNLI JSON (dev.json/test.json/train.json): one example per (document, hypothesis);
        # premise 'retrieved' keeps the top_k spans by TF-IDF similarity to the hypothesis (each cut
        # to max_span_chars), in document order; 'full' is the whole contract.
        name="contractnli",
        load=load_contractnli,
        options=DEFAULTS,
        fields=FIELDS,
    )
]
