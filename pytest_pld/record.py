"""The run record: what one evaluation wrote (`ExampleResult`, `RunRecord`), its schema
version, and loading and saving it as JSON.

Gates, reports, reviews and shard merges read records without running anything, so they import
this module, never the runner that writes them.

A run of an instruction set with a calibration keeps both answers: `pred` is the calibrated
one (what metrics and gates use) and `raw_pred` the student's own; the record's `calibration`
says which calibration it was and whether it was applied. Records written before either field
existed load as uncalibrated, so the schema stays 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics
from .errors import PldError
from .labels import top_label
from .metrics import Predictions
from .textio import read_json_object
from .yamlio import atomic_write_text

if TYPE_CHECKING:
    from .calibration import Calibration

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
    #: were recorded); in a calibrated run, of the calibrated scores
    tie: bool | None = None
    #: the student's own answer when `pred` is the calibrated one (None: `pred` is the
    #: student's own; not written to the record then)
    raw_pred: str | None = None


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
    #: the instruction set's calibration (`calibration_section.to_yaml`) with `applied`
    #: (false: switched off for this run); None: the set has none, or an older record
    calibration: dict[str, Any] | None = None
    path: str | None = None

    @property
    def calibrated(self) -> bool:
        """`pred` holds calibrated answers (and `raw_pred` the student's own)."""
        return bool(self.calibration and self.calibration.get("applied"))

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

    def raw_predictions(self) -> Predictions:
        """`predictions()` with the student's own answers (and their ties, from the raw
        scores): the same as `predictions()` for a run without an applied calibration."""
        preds = self.predictions()
        if not self.calibrated:
            return preds
        return dataclasses.replace(
            preds,
            pred=tuple(r.pred if r.raw_pred is None else r.raw_pred for r in self.results),
            tie=tuple(top_label(r.scores, r.id)[1] if r.scores else r.tie for r in self.results),
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
        for rows in (data["results"], data["without_rules"] or []):
            for row in rows:  # only a calibrated answer has a raw one beside it
                if row["raw_pred"] is None:
                    del row["raw_pred"]
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


def calibration_entry(cal: Calibration | None, *, applied: bool) -> dict[str, Any] | None:
    """What a run of a set with calibration `cal` keeps as its record's `calibration`: the
    section as plain data and whether it was applied (None: the set has none)."""
    from .calibration_section import to_yaml

    return None if cal is None else {"applied": applied, **to_yaml(cal)}


def answers_kind(record: RunRecord) -> str:
    """'calibrated (prior-shift, fitted on dev (310 examples) for ...)', 'raw (calibration
    switched off)' or 'raw (no calibration)': what a record's `pred` holds."""
    from .calibration import describe_section

    if record.calibrated:
        return f"calibrated ({describe_section(record.calibration or {})})"
    return "raw (calibration switched off)" if record.calibration else "raw (no calibration)"


def sides_answers(base: RunRecord, head: RunRecord) -> dict[str, str]:
    """{"base": answers_kind, "head": ...} when either record's set has a calibration (a
    review or comparison then says what each side's answers are), else {}."""
    if base.calibration is None and head.calibration is None:
        return {}
    return {"base": answers_kind(base), "head": answers_kind(head)}


def calibration_contrast(
    old: RunRecord, new: RunRecord, names: tuple[str, str] = ("base", "head")
) -> str | None:
    """Why the answers of two records differ in kind, for a comparison of them: one calibrated
    and the other raw, or both calibrated differently. None when neither is calibrated, or
    both alike."""
    state = answers_kind  # what each side's `pred` holds

    def fit(record: RunRecord) -> dict[str, Any]:
        return {k: v for k, v in (record.calibration or {}).items() if k != "applied"}

    a, b = names
    if old.calibrated != new.calibrated:
        return (
            f"{a}'s answers are {state(old)}, {b}'s are {state(new)}: the deltas include the "
            "calibration's effect besides any instruction change"
        )
    if old.calibrated and fit(old) != fit(new):
        return (
            f"{a} and {b} are calibrated differently ({a}: {state(old)}; {b}: {state(new)}; "
            "offsets or provenance differ): the deltas include the change of calibration"
        )
    return None
