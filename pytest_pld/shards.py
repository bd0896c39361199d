"""Sharded evaluation: several jobs evaluate parts of one run; `pld merge` makes the whole.

A shard `I/N` holds the examples whose stable hash (sha256 of the id, not Python's `hash`) falls
in bucket I of N, chosen after `--pld-limit` sampling, so every machine agrees on the split
and the N parts of one run cover its sample exactly once. A shard's run record is partial:
it keeps every answer with its position in the whole sample and says which run it belongs to
(suite, split, sample, model and backend identity, instructions and prompt hashes), but holds
no metrics. Metrics and their intervals exist only for the merged whole, where the examples are
back in the order one unsharded run has them, so bootstrap intervals (which depend on order
through their seeded resampling) and gate verdicts equal the unsharded run's.

This module only selects and describes shards (the runner uses it); joining the parts into the
whole, which needs the runner's records, is `pytest_pld.shard_merge`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .record import RunRecord
    from .runner import PreparedSuite


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, example_id: str) -> bool:
        return bucket(example_id, self.count) == self.index


def bucket(example_id: str, count: int) -> int:
    """The shard (1..count) an example belongs to."""
    digest = hashlib.sha256(f"shard:{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def parse_shard(text: str) -> Shard:
    """'2/4' -> Shard(2, 4); ValueError with what is allowed otherwise."""
    index, sep, count = text.strip().partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise ValueError(f"expected I/N with 1 <= I <= N (e.g. 1/4), got {text!r}")
    return Shard(i, n)


def ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def select(prepared: PreparedSuite, shard: Shard) -> tuple[PreparedSuite, list[int], str]:
    """The shard's part of a prepared sample, the positions of its examples in the whole, and
    the digest of the whole sample's ids (what the parts of one run share)."""
    whole = [e.id for e in prepared.examples]
    positions = [i for i, example_id in enumerate(whole) if shard.holds(example_id)]
    part = dataclasses.replace(
        prepared,
        examples=[prepared.examples[i] for i in positions],
        users=[prepared.users[i] for i in positions],
    )
    return part, positions, ids_digest(whole)


def shard_info(
    record: RunRecord,
    shard: Shard,
    *,
    positions: list[int],
    total: int,
    sample: str,
    metric_names: list[str],
) -> dict[str, Any]:
    """What a partial record says about itself: which part of which run."""
    run = {
        "suite": record.suite,
        "split": record.split,
        "limit": record.limit,
        "model": record.model,
        "backend": record.backend,
        "instructions_hash": record.instructions.get("hash"),
        "system_prompt_sha256": record.system_prompt_sha256,
        "labels": record.labels,
        "without_rules": record.without_rules is not None,
        "examples": total,
        "sample_sha256": sample,
        "shards": shard.count,
        "metrics": metric_names,
    }
    if record.calibration is not None:  # calibrated and raw parts are not one run
        run["calibration_applied"] = record.calibration["applied"]
    blob = json.dumps(run, sort_keys=True, ensure_ascii=False)
    return {
        "index": shard.index,
        "count": shard.count,
        "run_id": hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16],
        "run": run,
        "positions": positions,
    }


def describe(record: RunRecord) -> str:
    """'shard 1/2 of run 3fa2... (stereoset/test, 40 examples, model ...)'."""
    s = record.shard or {}
    run = s.get("run", {})
    return (
        f"shard {s.get('index')}/{s.get('count')} of run {s.get('run_id')} ({record.suite}/"
        f"{record.split}, {len(record.results)} of {run.get('examples')} examples, model "
        f"{record.model})"
    )
