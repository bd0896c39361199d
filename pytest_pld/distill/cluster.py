"""Phase 2a: cluster micro-rules (DBSCAN on cosine distance as in the paper, k-means fallback).

Rules are clustered within each gold label by default, so a minority label always gets its own
clusters instead of being outvoted inside a majority cluster. With small embedding models DBSCAN
tends to chain everything into one cluster, or to call everything noise on a few dozen rules;
both are detected, reported, and answered with k-means (k by silhouette) instead of silence.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PldError

METHODS = ("dbscan", "kmeans")
MAX_K = 12


@dataclass(frozen=True)
class Cluster:
    label: str  # the label its rules argue for (the majority gold label of its members)
    members: tuple[int, ...]  # indices into the rules that were clustered
    medoid: int  # index of the most central member (an entity-free one where possible)
    method: str  # dbscan | kmeans

    @property
    def support(self) -> int:
        return len(self.members)


@dataclass
class Clustering:
    clusters: list[Cluster]
    noise: int = 0
    method: str = "dbscan"
    notes: list[str] = field(default_factory=list)  # degenerate results and what was done
    params: dict[str, Any] = field(default_factory=dict)


def check_params(method: str, *, eps: float, min_samples: int, k: int | None) -> None:
    """Out-of-range parameters are errors before any work is done."""
    if method not in METHODS:
        raise PldError(
            f"unknown clustering method {method!r}", hint=f"methods: {', '.join(METHODS)}"
        )
    if not (isinstance(eps, (int, float)) and 0 < eps <= 2):
        raise PldError(
            f"--eps must be in (0, 2] (a cosine distance), got {eps}",
            hint="the paper uses 0.4; smaller makes tighter clusters",
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise PldError(
            f"--min-samples must be an integer >= 1, got {min_samples}",
            hint="the paper uses 6; use fewer for a few dozen traces",
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise PldError(f"--k must be an integer >= 1, got {k}")


def cluster_rules(
    vectors: Any,
    labels: Sequence[str],
    *,
    method: str = "dbscan",
    eps: float = 0.4,
    min_samples: int = 6,
    k: int | None = None,
    by_label: bool = True,
    avoid: Sequence[bool] | None = None,
) -> Clustering:
    """Cluster L2-normalised rule vectors. `avoid[i]` marks rules a medoid should not be
    (those naming an example's entities) unless a cluster has nothing else."""
    import numpy as np

    check_params(method, eps=eps, min_samples=min_samples, k=k)
    n = len(labels)
    if n == 0:
        raise PldError("no rules to cluster", hint="teach first: pld teach SUITE --teacher M")
    if k is not None and not by_label and k > n:
        raise PldError(f"--k {k} is more than the {n} rules there are to cluster")
    vectors = np.asarray(vectors, dtype=float)
    avoid = list(avoid) if avoid is not None else [False] * n
    result = Clustering(
        [],
        method=method,
        params={
            "method": method,
            "eps": eps,
            "min_samples": min_samples,
            "k": k,
            "by_label": by_label,
        },
    )
    groups: dict[str, list[int]] = {}
    if by_label:
        for i, label in enumerate(labels):
            groups.setdefault(label, []).append(i)
    else:
        groups["*"] = list(range(n))
    fell_back = False
    for group, index in groups.items():
        where = f"label {group!r}" if by_label else "all rules"
        sub = vectors[index]
        if method == "kmeans":
            assign = _kmeans(sub, k, result.notes, where)
            kind = "kmeans"
        else:
            assign = _dbscan(sub, eps, min_samples)
            problem = _degenerate(assign, min_samples, by_label)
            kind = "dbscan"
            if problem:
                fell_back = True
                assign = _kmeans(sub, k, result.notes, where)
                kind = "kmeans"
                result.notes.append(
                    f"DBSCAN (eps {eps}, min_samples {min_samples}) on {where} "
                    f"({len(index)} rules): {problem}; fell back to k-means "
                    f"({len(set(assign))} clusters). {_suggest(problem)}"
                )
        result.noise += int(sum(a < 0 for a in assign))
        for cid in sorted(set(assign) - {-1}):
            members = [index[j] for j, a in enumerate(assign) if a == cid]
            majority = Counter(labels[m] for m in members).most_common(1)[0][0]
            result.clusters.append(
                Cluster(
                    label=majority,
                    members=tuple(members),
                    medoid=_medoid(vectors, members, avoid),
                    method=kind,
                )
            )
    if fell_back:
        result.method = "dbscan+kmeans-fallback"
    result.clusters.sort(key=lambda c: (-c.support, c.label, c.members))
    return result


def _dbscan(vectors: Any, eps: float, min_samples: int) -> list[int]:
    from sklearn.cluster import DBSCAN

    return [
        int(a)
        for a in DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(vectors)
    ]


def _degenerate(assign: Sequence[int], min_samples: int, by_label: bool) -> str:
    n = len(assign)
    clusters = Counter(a for a in assign if a >= 0)
    noise = n - sum(clusters.values())
    if not clusters:
        return f"every rule is noise ({n} of {n})"
    if noise > n / 2:
        return f"mostly noise ({noise} of {n})"
    biggest = max(clusters.values())
    # one cluster per label is fine when clustering within labels; one cluster holding a
    # large mixed set is the chaining failure of small embedding models
    chained = len(clusters) == 1 and (not by_label or n >= 3 * min_samples)
    if chained and biggest >= 0.9 * n and n >= 2 * min_samples:
        return f"one cluster holds {biggest} of {n} rules (chaining)"
    return ""


def _suggest(problem: str) -> str:
    if "noise" in problem:
        return "To keep DBSCAN, try a larger --eps or a smaller --min-samples."
    return "To keep DBSCAN, try a smaller --eps."


def _kmeans(vectors: Any, k: int | None, notes: list[str], where: str) -> list[int]:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    distinct = len(np.unique(np.round(vectors, 6), axis=0))
    if n < 3 or distinct < 2:
        return [0] * n
    if k is not None:
        if k > distinct:
            notes.append(f"--k {k} on {where}: only {distinct} distinct rules, using k={distinct}")
        k = min(k, distinct)
        if k == 1:
            return [0] * n
        candidates = [k]
    else:
        top = min(distinct, n - 1, MAX_K, max(2, round(math.sqrt(n)) + 1))
        candidates = list(range(2, top + 1))
    best: tuple[float, list[int]] | None = None
    with warnings.catch_warnings():
        # identical rules make k-means find fewer distinct clusters than asked: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        for kk in candidates:
            assign = KMeans(n_clusters=kk, n_init=10, random_state=0).fit_predict(vectors)
            if len(set(assign)) < 2:
                continue
            score = float(silhouette_score(vectors, assign, metric="cosine"))
            if best is None or score > best[0]:
                best = (score, [int(a) for a in assign])
    if best is None:
        return [0] * n
    if k is None and best[0] < 0.02:
        notes.append(
            f"k-means on {where}: no structure (best silhouette {best[0]:.3f}); kept one cluster"
        )
        return [0] * n
    return best[1]


def _medoid(vectors: Any, members: Sequence[int], avoid: Sequence[bool]) -> int:
    import numpy as np

    pool = [m for m in members if not avoid[m]] or list(members)
    sub = vectors[list(members)]
    cand = vectors[pool]
    # the candidate closest (in total cosine distance) to every member of the cluster
    distances = (1.0 - cand @ sub.T).sum(axis=1)
    return int(pool[int(np.argmin(distances))])
