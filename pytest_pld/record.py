"""The run record: what one evaluation wrote (`ExampleResult`, `RunRecord`), its schema
version, and loading and saving it as JSON.

Gates, reports, reviews and shard merges read records without running anything, so they import
this module, never the runner that writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import metrics
from .errors import PldError
from .metrics import Predictions
from .textio import read_json_object
from .yamlio import atomic_write_text

RECORD_SCHEMA = 1


@dataclass
class ExampleResult:
    id: str
    gold: str
    pred: str
    latency_ms: float
    prompt_tokens: int
    scores: dict[str, float] | None = None
    raw: str = ""
    truncated: bool = False
    cached: bool = False
    cluster: str | None = None  # the example's id under the suite's cluster_key
    #: the top score tied exactly with another label's (None: a record from before ties
    #: were recorded)
    tie: bool | None = None


@dataclass
class RunRecord:
    """Everything a gate, a report or a review needs about one evaluation."""

    suite: str
    split: str
    limit: int | None
    model: str
    backend: dict[str, Any]
    instructions: dict[str, Any]
    labels: list[str]
    system_prompt_sha256: str
    results: list[ExampleResult]
    without_rules: list[ExampleResult] | None = None
    created_at: str = ""
    duration_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    cluster_key: str | None = None  # what `ExampleResult.cluster` holds (None: no clusters)
    # a shard's partial record: which part of which run (shards.shard_info); no metrics
    shard: dict[str, Any] | None = None
    #: examples of the split left out because their gold label is not a suite label
    #: (`unknown_labels: skip`), by that label; empty when none were
    skipped: dict[str, int] = field(default_factory=dict)
    path: str | None = None

    def predictions(self) -> Predictions:
        base = [r.latency_ms for r in self.without_rules] if self.without_rules else []
        return metrics.Predictions(
            labels=tuple(self.labels),
            gold=tuple(r.gold for r in self.results),
            pred=tuple(r.pred for r in self.results),
            latency_ms=tuple(r.latency_ms for r in self.results),
            prompt_tokens=tuple(r.prompt_tokens for r in self.results),
            baseline_latency_ms=tuple(base),
            tie=tuple(r.tie for r in self.results),
        )

    def tie_count(self) -> int | None:
        """Answers that were exact top-score ties; None for a record written before results
        had the flag (unknown, not 0)."""
        known = [r.tie for r in self.results if r.tie is not None]
        return sum(known) if known else None

    def comparable_key(self) -> dict[str, Any]:
        """What must match for two records to be compared example by example."""
        return {
            "suite": self.suite,
            "split": self.split,
            "limit": self.limit,
            "model": self.model,
            "labels": self.labels,
        }

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path", None)
        return {"schema": RECORD_SCHEMA, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | None = None) -> RunRecord:
        if data.get("schema") != RECORD_SCHEMA:
            raise PldError(
                f"unsupported run record schema {data.get('schema')!r}",
                path=path,
                hint=f"this version reads schema {RECORD_SCHEMA}; re-create it",
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["results"] = [ExampleResult(**r) for r in data["results"]]
        if data.get("without_rules") is not None:
            kwargs["without_rules"] = [ExampleResult(**r) for r in data["without_rules"]]
        kwargs["path"] = path
        return cls(**kwargs)


def load_record(path: Path) -> RunRecord:
    hint = "re-create it (for a baseline: pytest --pld-update-baseline)"
    data = read_json_object(path, what="run record", hint=hint)
    try:
        return RunRecord.from_json(data, str(path))
    except (KeyError, TypeError) as exc:
        raise PldError(f"run record has the wrong shape ({exc})", path=path, hint=hint) from None


def save_record(record: RunRecord, path: Path, *, repoint: bool = True) -> Path:
    """Write the record atomically; `repoint` makes `record.path` name the new file (a
    baseline copy keeps pointing at the run's own record)."""
    atomic_write_text(path, json.dumps(record.to_json(), indent=1, ensure_ascii=False) + "\n")
    if repoint:
        record.path = str(path)
    return path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def compute_metrics(record: RunRecord, names: Sequence[str]) -> dict[str, float]:
    """The named metrics of a whole run (never of a shard: see shards.py)."""
    preds = record.predictions()
    return {n: metrics.compute(n, preds) for n in dict.fromkeys(names)}
