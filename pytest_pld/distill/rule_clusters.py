"""Phase 2a: cluster micro-rules - DBSCAN on cosine distance as in the paper, HDBSCAN, k-means,
and `auto`, which tries them in that order and says why it moved on. (Clusters of examples,
which bootstraps resample, are `pytest_pld.example_clusters`.)

Rules are clustered within each gold label by default, so a minority label always gets its own
clusters instead of being outvoted inside a majority cluster. DBSCAN with one fixed eps fails in
two ways on the rules of small embedding models: it chains (one cluster swallows most rules of a
label: on thousands of rules every rule has a neighbour within eps) or it calls most rules
noise. Both are detected. `auto` then tries HDBSCAN, which needs no eps (it keeps the clusters
that persist across densities), and when that is degenerate too, k-means with k chosen by
silhouette, which always partitions. Every group's note says what was tried, with the cluster
sizes and the noise, and what was used - the notes go into the proposal.

HDBSCAN runs on the rules projected to at most `PCA_DIMS` dimensions (PCA) with Euclidean
distance: on L2-normalised rows Euclidean distance orders pairs as cosine distance does, and in
few dimensions its neighbour search is a tree search instead of all pairs (see
benchmarks/bench_cluster.py for the timings).

A cluster's `support` counts distinct examples, not rules: several teacher draws of one example
(`pld teach --samples`) that land in one cluster are one piece of evidence.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import PldError

METHODS = ("auto", "dbscan", "hdbscan", "kmeans")
MAX_K = 12
#: a cluster holding more than this share of a group's rules, and more than CHAIN_RATIO times
#: the next largest, is chaining (one giant and crumbs); two large clusters (say 40 and 30
#: rules) are a real split, not a failure
CHAIN_SHARE = 0.5
CHAIN_RATIO = 3.0
#: more noise than this share of a group's rules is degenerate
NOISE_SHARE = 0.5
#: HDBSCAN's input dimensions (PCA): its tree search is fast in few dimensions
PCA_DIMS = 50
#: silhouette scores use at most this many rules (it is quadratic in the rules)
SILHOUETTE_SAMPLE = 2000
SIZES_SHOWN = 8
#: k-means on more rules than this starts once (see _kmeans)
KMEANS_FULL_INIT = 1000

_NAMES = {"dbscan": "DBSCAN", "hdbscan": "HDBSCAN", "kmeans": "k-means"}


@dataclass(frozen=True)
class Cluster:
    label: str  # the label its rules argue for (the majority gold label of its members)
    members: tuple[int, ...]  # indices into the rules that were clustered
    medoid: int  # index of the most central member (an entity-free one where possible)
    method: str  # dbscan | hdbscan | kmeans
    examples: int = 0  # distinct source examples among the members (0: one per member)

    @property
    def support(self) -> int:
        """Distinct examples behind the cluster (several draws of one example count once)."""
        return self.examples or len(self.members)


@dataclass
class Clustering:
    clusters: list[Cluster]
    noise: int = 0
    method: str = "dbscan"
    notes: list[str] = field(default_factory=list)  # per group: what was tried, what was used
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
    method: str = "auto",
    eps: float = 0.4,
    min_samples: int = 6,
    k: int | None = None,
    by_label: bool = True,
    avoid: Sequence[bool] | None = None,
    sources: Sequence[str] | None = None,
) -> Clustering:
    """Cluster L2-normalised rule vectors.

    method: auto (DBSCAN, then HDBSCAN, then k-means, each when the one before is degenerate),
        dbscan or hdbscan (each falls back to k-means when degenerate), kmeans.
    avoid[i]: rule i should not be a medoid (it names an example's entities) unless a cluster
        has nothing else.
    sources[i]: the example rule i was taught from; a cluster's support counts distinct ones.
    """
    import numpy as np

    check_params(method, eps=eps, min_samples=min_samples, k=k)
    n = len(labels)
    if n == 0:
        raise PldError("no rules to cluster", hint="teach first: pld teach SUITE --teacher M")
    if k is not None and not by_label and k > n:
        raise PldError(f"--k {k} is more than the {n} rules there are to cluster")
    if sources is not None and len(sources) != n:
        raise ValueError(f"{len(sources)} sources for {n} rules")
    vectors = np.asarray(vectors, dtype=np.float32)
    avoid = list(avoid) if avoid is not None else [False] * n
    result = Clustering(
        [],
        method=method,
        params={
            "method": method,
            "eps": eps,
            "min_samples": min_samples,
            "min_cluster_size": max(2, min_samples),
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
    used: list[str] = []
    for group, index in groups.items():
        where = f"label {group!r}" if by_label else "all rules"
        assign, kind, note = _cluster_group(
            vectors[index], method, eps=eps, min_samples=min_samples, k=k, by_label=by_label
        )
        used.append(kind)
        result.notes.append(f"clustering {where} ({len(index)} rules): {note}")
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
                    examples=len({sources[m] for m in members}) if sources is not None else 0,
                )
            )
    result.method = _summary(method, used)
    result.clusters.sort(key=lambda c: (-c.support, -len(c.members), c.label, c.members))
    return result


def _summary(method: str, used: Sequence[str]) -> str:
    """The method as provenance shows it: what was asked for, and what the groups used."""
    distinct = list(dict.fromkeys(used))
    if method == "auto":
        return "auto: " + "+".join(distinct)
    if distinct == [method]:
        return method
    return f"{method}+kmeans-fallback"


def _cluster_group(
    vectors: Any, method: str, *, eps: float, min_samples: int, k: int | None, by_label: bool
) -> tuple[list[int], str, str]:
    """(assignment, method used, a note saying what was tried and why) for one group."""
    steps: list[str] = []
    chain = {
        "auto": ("dbscan", "hdbscan"),
        "dbscan": ("dbscan",),
        "hdbscan": ("hdbscan",),
        "kmeans": (),
    }[method]
    for kind in chain:
        if kind == "dbscan":
            assign = _dbscan(vectors, eps, min_samples)
            shown = f"DBSCAN (eps {eps:g}, min_samples {min_samples})"
        else:
            assign = _hdbscan(vectors, min_samples)
            shown = f"HDBSCAN (min_cluster_size {max(2, min_samples)})"
        problem = _degenerate(assign, min_samples, by_label)
        steps.append(f"{shown}: {_outcome(assign)}" + (f" - {problem}" if problem else ""))
        if not problem:
            return assign, kind, "; ".join(steps) + f". Used {_NAMES[kind]}."
        if kind == "dbscan" and method == "dbscan":
            steps[-1] += f" ({_suggest(problem)})"
    notes: list[str] = []
    assign, chosen = _kmeans(vectors, k, notes)
    steps.append(f"k-means ({chosen}): {_outcome(assign)}")
    why = " (the methods before were degenerate)" if chain else ""
    return assign, "kmeans", "; ".join(steps + notes) + f". Used k-means{why}."


def _outcome(assign: Sequence[int]) -> str:
    sizes = sorted(Counter(a for a in assign if a >= 0).values(), reverse=True)
    noise = sum(a < 0 for a in assign)
    shown = ", ".join(str(s) for s in sizes[:SIZES_SHOWN])
    if len(sizes) > SIZES_SHOWN:
        shown += f", ... (+{len(sizes) - SIZES_SHOWN} more)"
    plural = "" if len(sizes) == 1 else "s"
    return f"{len(sizes)} cluster{plural} (sizes {shown or '-'}), {noise} noise"


def _dbscan(vectors: Any, eps: float, min_samples: int) -> list[int]:
    from sklearn.cluster import DBSCAN

    return [
        int(a)
        for a in DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(vectors)
    ]


def _reduced(vectors: Any) -> Any:
    """At most PCA_DIMS dimensions (fewer rules than that: as they are)."""
    n, d = vectors.shape
    if d <= PCA_DIMS or n <= PCA_DIMS:
        return vectors
    from sklearn.decomposition import PCA

    # randomized SVD: a full one of 3,500 x 384 took 3.1 s on the benchmark machine
    pca = PCA(n_components=PCA_DIMS, svd_solver="randomized", random_state=0)
    return pca.fit_transform(vectors)


def _hdbscan(vectors: Any, min_samples: int) -> list[int]:
    from sklearn.cluster import HDBSCAN

    n = len(vectors)
    size = max(2, min_samples)
    if n < size:  # fewer rules than one cluster needs: all noise
        return [-1] * n
    model = HDBSCAN(min_cluster_size=size, metric="euclidean", copy=True)
    return [int(a) for a in model.fit_predict(_reduced(vectors))]


def _degenerate(assign: Sequence[int], min_samples: int, by_label: bool) -> str:
    n = len(assign)
    clusters = Counter(a for a in assign if a >= 0)
    noise = n - sum(clusters.values())
    if not clusters:
        return f"every rule is noise ({n} of {n})"
    if noise > NOISE_SHARE * n:
        return f"mostly noise ({noise} of {n})"
    biggest, second = ([*sorted(clusters.values(), reverse=True), 0])[:2]
    # a group too small for several clusters may well be one cluster (within one label);
    # otherwise one cluster holding most rules is the chaining failure of small embedders
    room_for_several = n >= 3 * min_samples or (not by_label and n >= 2 * min_samples)
    if room_for_several and biggest > CHAIN_SHARE * n and biggest > CHAIN_RATIO * second:
        share = f"the next largest {second}" if second else "no other cluster"
        return f"one cluster holds {biggest} of {n} rules ({share}: chaining)"
    return ""


def _suggest(problem: str) -> str:
    if "noise" in problem:
        return "to keep DBSCAN, try a larger --eps or a smaller --min-samples"
    return "to keep DBSCAN, try a smaller --eps"


def _kmeans(vectors: Any, k: int | None, notes: list[str]) -> tuple[list[int], str]:
    """(assignment, how k was chosen). Without `k`, k by the best silhouette."""
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    distinct = len(np.unique(np.round(vectors, 6), axis=0))
    if n < 3 or distinct < 2:
        return [0] * n, f"k=1: {distinct} distinct rule{'s' * (distinct != 1)}"
    if k is not None:
        if k > distinct:
            notes.append(f"--k {k}: only {distinct} distinct rules, used k={distinct}")
        k = min(k, distinct)
        if k == 1:
            return [0] * n, "k=1 (--k)"
        candidates = [k]
    else:
        top = min(distinct, n - 1, MAX_K, max(2, round(math.sqrt(n)) + 1))
        candidates = list(range(2, top + 1))
    # several k-means++ starts guard a few dozen rules against a bad one; on thousands they
    # cost 10x for the same partition (10 s per k on 3,500 rules, benchmarks/bench_cluster.py)
    inits = 10 if n <= KMEANS_FULL_INIT else 1
    best: tuple[float, int, list[int]] | None = None
    with warnings.catch_warnings():
        # identical rules make k-means find fewer distinct clusters than asked: expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        for kk in candidates:
            model = KMeans(n_clusters=kk, n_init=inits, random_state=0)
            assign = model.fit_predict(vectors)
            if len(set(assign)) < 2:
                continue
            score = float(
                silhouette_score(
                    vectors,
                    assign,
                    metric="cosine",
                    sample_size=min(n, SILHOUETTE_SAMPLE),
                    random_state=0,
                )
            )
            if best is None or score > best[0]:
                best = (score, kk, [int(a) for a in assign])
    if best is None:
        return [0] * n, "k=1: k-means found no split"
    score, kk, assign = best
    if k is not None:
        return assign, f"k={kk} (--k), silhouette {score:.3f}"
    if score < 0.02:
        return [0] * n, f"k=1: no structure (best silhouette {score:.3f} at k={kk})"
    return assign, f"k={kk} by silhouette {score:.3f} (k 2..{candidates[-1]})"


def _medoid(vectors: Any, members: Sequence[int], avoid: Sequence[bool]) -> int:
    import numpy as np

    pool = [m for m in members if not avoid[m]] or list(members)
    sub = vectors[list(members)]
    cand = vectors[pool]
    # the candidate closest (in total cosine distance) to every member of the cluster
    distances = (1.0 - cand @ sub.T).sum(axis=1)
    return int(pool[int(np.argmin(distances))])
