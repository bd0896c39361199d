"""Example clusters: which examples belong together, so that bootstraps resample them together
(the clustering of teacher rules in `pld distill` is `distill.rule_clusters`).

A suite names `cluster_key:` - a field of its examples (ContractNLI's `document_id`, StereoSet's
`target`, LogiQA's passage `context`), or `group` / `id`. The runner stores each example's
cluster id in the run record, so gates, reports and comparisons on a saved record (a committed
baseline, a merged record) resample clusters without loading the data again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PldError, did_you_mean

if TYPE_CHECKING:
    from .datasets import Example, Loader
    from .record import ExampleResult, RunRecord
    from .suite import Suite

#: What every example has besides its loader's fields.
BUILTIN_KEYS = ("group", "id")
#: Longer values (a LogiQA passage) are stored as a digest: an id, not a copy of the text.
MAX_ID_CHARS = 64


def available_keys(loader: Loader) -> list[str]:
    """The cluster keys a loader's examples provide; empty when the loader declares no fields
    (the generic jsonl loader: its fields are whatever its file holds)."""
    return [*loader.fields, *BUILTIN_KEYS] if loader.fields else []


def check_cluster_key(
    raw: Any, loader: Loader | None, *, path: Path, line: int | None
) -> tuple[str | None, PldError | None]:
    """The suite's `cluster_key` value, or the error that says what is wrong with it."""
    if raw is None:
        return None, None
    if not isinstance(raw, str) or not raw.strip():
        return None, PldError(
            "expected the name of an example field",
            path=path,
            line=line,
            key="cluster_key",
            hint="for example cluster_key: document_id",
        )
    known = available_keys(loader) if loader is not None else []
    if known and raw not in known:
        return None, PldError(
            f"the {loader.name} loader's examples have no field {raw!r}"  # type: ignore[union-attr]
            f"{did_you_mean(raw, known)}",
            path=path,
            line=line,
            key="cluster_key",
            hint=f"available fields: {', '.join(known)}",
        )
    return str(raw), None


def cluster_of(example: Example, key: str, *, where: str | Path | None = None) -> str:
    """The cluster id of one example under `key`."""
    if key == "id":
        value: Any = example.id
    elif key == "group":
        value = example.group
    else:
        value = example.fields.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PldError(
            f"example {example.id!r} has no {key!r} value to cluster by",
            path=where,
            key="cluster_key",
            hint="name a field every example has (for the jsonl loader, group needs the "
            "group_field option)",
        )
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_CHARS:
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return text


def example_clusters(suite: Suite, examples: Sequence[Example]) -> list[str] | None:
    """Each example's cluster id under the suite's `cluster_key` (None: the suite has none)."""
    if not suite.cluster_key:
        return None
    return [cluster_of(e, suite.cluster_key, where=suite.path) for e in examples]


def record_clusters(record: RunRecord) -> tuple[str, ...] | None:
    """The record's cluster id per result, or None when it has none (older records)."""
    return complete(r.cluster for r in record.results)


def paired_clusters(
    pairs: Sequence[tuple[ExampleResult, ExampleResult]],
) -> tuple[str, ...] | None:
    """Cluster ids for (old, new) result pairs: the new run's, else the old one's.

    A committed baseline written before records carried cluster ids still pairs by id with a
    run that has them; the clusters then come from the run.
    """
    return complete(new.cluster or old.cluster for old, new in pairs)


def complete(ids: Iterable[str | None]) -> tuple[str, ...] | None:
    """The ids when every example has one; None when any lacks one (then examples are
    resampled: clustering half of them would be neither one nor the other)."""
    out = tuple(ids)
    return out if out and all(i is not None for i in out) else None  # type: ignore[return-value]


def describe(n_clusters: int | None, key: str | None) -> str:
    """'38 clusters by document_id' / 'examples' for reports."""
    if n_clusters is None:
        return "the examples"
    return f"{n_clusters} clusters" + (f" by {key}" if key else "")


__all__ = [
    "BUILTIN_KEYS",
    "available_keys",
    "check_cluster_key",
    "cluster_of",
    "complete",
    "describe",
    "example_clusters",
    "paired_clusters",
    "record_clusters",
]
