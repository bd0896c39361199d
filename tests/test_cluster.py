"""Clustering micro-rules at scale: HDBSCAN beside DBSCAN and k-means, the `auto` choice and the
notes that say what each label used and why, support counted in examples (not draws), and the
embedding text (a rule's condition, each distinct text embedded once)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pytest_pld.distill import embed as embed_module
from pytest_pld.distill.embed import embed, rule_condition
from pytest_pld.distill.rule_clusters import cluster_rules


def blobs(sizes: list[int], dims: int = 384, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    """Well-separated groups of unit vectors (one random centre each), in `dims` dimensions:
    above cluster.PCA_DIMS, so HDBSCAN runs on the PCA projection as it does on real rules."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        centre = rng.normal(size=dims)
        noise = rng.normal(scale=spread * np.linalg.norm(centre) / np.sqrt(dims), size=(size, dims))
        rows.append(centre + noise)
    v = np.vstack(rows)
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))


def test_auto_moves_from_chaining_dbscan_to_hdbscan_and_says_why() -> None:
    vectors = blobs([300, 200, 100])
    # eps 1.5 joins the groups: DBSCAN's chaining failure, as on thousands of real rules
    result = cluster_rules(vectors, ["pos"] * 600, method="auto", eps=1.5, min_samples=6)
    assert result.method == "auto: hdbscan"
    assert sorted(len(c.members) for c in result.clusters) == [100, 200, 300]
    (note,) = result.notes
    assert "DBSCAN (eps 1.5, min_samples 6): 1 cluster (sizes 600), 0 noise" in note
    assert "one cluster holds 600 of 600 rules (no other cluster: chaining)" in note
    assert "HDBSCAN (min_cluster_size 6): 3 clusters (sizes 300, 200, 100)" in note
    assert note.endswith("Used HDBSCAN.")
    assert {c.method for c in result.clusters} == {"hdbscan"}


def test_auto_keeps_a_healthy_dbscan_result_even_where_one_cluster_holds_most_rules() -> None:
    # 40 of 70 in one cluster is over half, but beside a cluster of 30 it is a real split
    vectors = blobs([40, 30])
    result = cluster_rules(vectors, ["pos"] * 70, eps=0.4, min_samples=6)
    assert result.method == "auto: dbscan"
    assert sorted(len(c.members) for c in result.clusters) == [30, 40]
    assert "HDBSCAN" not in result.notes[0]


def test_one_giant_cluster_beside_crumbs_is_chaining() -> None:
    vectors = blobs([60, 8, 7], seed=3)
    result = cluster_rules(vectors, ["pos"] * 75, method="dbscan", eps=0.4, min_samples=6)
    assert "one cluster holds 60 of 75 rules (the next largest 8: chaining)" in result.notes[0]
    assert result.method == "dbscan+kmeans-fallback"


def test_auto_ends_with_kmeans_when_dbscan_and_hdbscan_find_only_noise() -> None:
    # fewer rules than min_samples: neither density method can form a cluster
    vectors = blobs([5, 4], dims=8)
    result = cluster_rules(vectors, ["pos"] * 9, method="auto", min_samples=12)
    assert result.method == "auto: kmeans"
    (note,) = result.notes
    assert "every rule is noise (9 of 9)" in note and note.count("every rule is noise") == 2
    assert "Used k-means (the methods before were degenerate)." in note
    assert sorted(len(c.members) for c in result.clusters) == [4, 5]


def test_hdbscan_alone_falls_back_to_kmeans_when_degenerate() -> None:
    vectors = blobs([5, 4], dims=8)
    result = cluster_rules(vectors, ["pos"] * 9, method="hdbscan", min_samples=12)
    assert result.method == "hdbscan+kmeans-fallback"
    assert result.notes[0].startswith("clustering label 'pos' (9 rules): HDBSCAN (")


def test_each_label_notes_its_own_method() -> None:
    vectors = np.vstack([blobs([300, 300], seed=1), blobs([20, 20], seed=2)])
    labels = ["race"] * 600 + ["religion"] * 40
    result = cluster_rules(vectors, labels, method="auto", eps=0.4, min_samples=6)
    race, religion = result.notes
    assert race.startswith("clustering label 'race' (600 rules)")
    assert religion.startswith("clustering label 'religion' (40 rules)")
    assert {c.label for c in result.clusters} == {"race", "religion"}


def test_support_counts_distinct_examples_so_draws_of_one_example_count_once() -> None:
    vectors = blobs([12, 12])
    sources = [f"ex{i // 3}" for i in range(24)]  # three draws per example
    result = cluster_rules(vectors, ["pos"] * 24, method="kmeans", k=2, sources=sources)
    assert sorted((len(c.members), c.support) for c in result.clusters) == [(12, 4), (12, 4)]


@pytest.mark.parametrize(
    "rule, label, condition",
    [
        ("If the party was wild, then the label is race.", "race", "the party was wild"),
        (
            "if a clause limits use, then, the label is 'Entailment'",
            "Entailment",
            "a clause limits use",
        ),
        ("If the text is rude (label: neg).", "neg", "the text is rude"),
        ("If it rains, then race.", "race", "it rains"),
        ("Mentions of money, then the label is pos.", "pos", "Mentions of money"),
        # a rule in another shape, or with less than two words left, stays whole
        ("Always race.", "race", "Always race."),
        ("If x, then the label is race.", "race", "If x, then the label is race."),
    ],
    ids=[
        "then-label",
        "quoted-label",
        "label-in-brackets",
        "then-bare",
        "no-if",
        "other",
        "too-short",
    ],
)
def test_a_rule_is_embedded_by_its_condition(rule: str, label: str, condition: str) -> None:
    assert rule_condition(rule, label) == condition


def test_a_model_embeds_each_distinct_text_once_and_every_rule_gets_its_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[list[str]] = []

    def fake_minilm(texts: Any) -> np.ndarray:  # control flow only: rows follow the text
        asked.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    monkeypatch.setattr(embed_module, "_minilm", fake_minilm)
    monkeypatch.setattr(embed_module, "minilm_available", lambda: True)
    texts = ["aa", "b", "aa", "cccc", "b"]
    out = embed(texts, "local:minilm")
    assert asked == [["aa", "b", "cccc"]]
    assert out.vectors.dtype == np.float32 and out.vectors.shape == (5, 2)
    np.testing.assert_allclose(out.vectors[0], out.vectors[2])
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, rtol=1e-6)


def test_auto_embeds_many_rules_with_tfidf_and_few_with_minilm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over AUTO_MINILM_MAX distinct rules MiniLM alone would exceed phase 2's time budget;
    a repeated rule counts once; an explicit embedder is never overridden."""
    monkeypatch.setattr(embed_module, "minilm_available", lambda: True)
    limit = embed_module.AUTO_MINILM_MAX
    resolve = embed_module.resolve_embedder
    assert resolve("auto", distinct=limit) == "local:minilm"
    assert resolve("auto", distinct=limit + 1) == "tfidf"
    assert resolve("local:minilm", distinct=10 * limit) == "local:minilm"
    monkeypatch.setattr(embed_module, "AUTO_MINILM_MAX", 3)
    monkeypatch.setattr(embed_module, "_minilm", lambda texts: np.ones((len(texts), 2)))
    rules = ["rain falls", "rain falls", "sun shines", "wind blows"]
    assert embed(rules, "auto").name == "local:minilm"  # 3 distinct
    many = embed([*rules, "snow melts"], "auto")
    assert many.name == "tfidf" and many.note.startswith("auto: 4 distinct rules, more than 3")
    assert embed(rules, "auto").note == "" and embed(rules * 2, "tfidf").note == ""
    assert embed(["a b", "c d"], "tfidf").vectors.shape[0] == 2  # one-letter words only


def test_tfidf_over_many_rules_is_reduced_to_a_few_semantic_dimensions() -> None:
    """Wide TF-IDF (an n-gram per column) made k-means take 125 s on 7,000 rules; past
    TFIDF_DIMS columns and rows it is reduced by truncated SVD, rows still unit length."""
    words = [f"w{i}" for i in range(400)]
    texts = [f"{words[i]} {words[(i * 7) % 400]} {words[(i * 13) % 400]}" for i in range(400)]
    out = embed(texts, "tfidf")
    assert out.vectors.shape == (400, embed_module.TFIDF_DIMS)
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, rtol=1e-5)
    few = embed(["a cat sat", "a dog ran", "the cat ran"], "tfidf")
    assert few.vectors.shape[0] == 3 and few.vectors.shape[1] < embed_module.TFIDF_DIMS
