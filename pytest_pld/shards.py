"""Sharded evaluation: several jobs evaluate parts of one run; `pld merge` makes the whole.

A shard `I/N` holds the examples whose stable hash (sha256 of the id, not Python's `hash`) falls
in bucket I of N, chosen after `--pld-limit` sampling, so every machine agrees on the split
and the N parts of one run cover its sample exactly once. A shard's run record is partial:
it keeps every answer with its position in the whole sample and says which run it belongs to
(suite, split, sample, model and backend identity, instructions and prompt hashes), but holds
no metrics. Metrics and their intervals exist only for the merged whole, where the examples are
back in the order one unsharded run has them, so bootstrap intervals (which depend on order
through their seeded resampling) and gate verdicts equal the unsharded run's.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PldError

if TYPE_CHECKING:
    from .runner import PreparedSuite, RunRecord
    from .suite import Suite


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


def merge_records(parts: Sequence[RunRecord]) -> RunRecord:
    """The whole run from its shards; overlaps, gaps and parts of other runs are errors that
    name the files."""
    from .runner import RunRecord, compute_metrics

    if not parts:
        raise PldError("no run records to merge")
    for part in parts:
        if not part.shard:
            raise PldError(
                "not a shard's run record (it has no `shard`); pld merge joins the partial "
                "records written by pytest --pld-shard=I/N or pld run --shard I/N",
                path=part.path,
            )
    first = parts[0]
    ref = first.shard or {}
    for part in parts[1:]:
        info = part.shard or {}
        if info["run_id"] != ref["run_id"]:
            differ = [k for k in ref["run"] if ref["run"].get(k) != info["run"].get(k)]
            shown = "; ".join(
                f"{k}: {_short(ref['run'].get(k))} vs {_short(info['run'].get(k))}" for k in differ
            )
            raise PldError(
                f"{first.path} and {part.path} are parts of different runs ({shown or 'run id'})",
                hint="merge only the shards of one run: the same suite, split, --pld-limit, "
                "model, instructions and number of shards",
            )
    seen: dict[int, list[str]] = {}
    for part in parts:
        seen.setdefault(int((part.shard or {})["index"]), []).append(str(part.path))
    twice = {i: paths for i, paths in seen.items() if len(paths) > 1}
    count = int(ref["count"])
    if twice:
        shown = "; ".join(f"shard {i}/{count} in {', '.join(p)}" for i, p in sorted(twice.items()))
        raise PldError(f"overlapping parts: {shown}", hint="give each shard's record once")
    missing = [i for i in range(1, count + 1) if i not in seen]
    if missing:
        have = ", ".join(f"{i}/{count} ({seen[i][0]})" for i in sorted(seen))
        raise PldError(
            f"missing shards: {', '.join(f'{i}/{count}' for i in missing)} (have {have})",
            hint="every one of the N shard jobs must finish before the merge",
        )
    total = int(ref["run"]["examples"])
    slots: list[Any] = [None] * total
    bare: list[Any] = [None] * total
    for part in parts:
        positions = (part.shard or {})["positions"]
        if len(positions) != len(part.results):
            raise PldError("the shard's positions do not match its results", path=part.path)
        for j, pos in enumerate(positions):
            if not 0 <= pos < total or slots[pos] is not None:
                raise PldError(
                    f"example position {pos} is out of range or in two parts",
                    path=part.path,
                )
            slots[pos] = part.results[j]
            if part.without_rules is not None:
                bare[pos] = part.without_rules[j]
    if any(r is None for r in slots):
        raise PldError(f"the parts cover {sum(r is not None for r in slots)} of {total} examples")
    if ids_digest([r.id for r in slots]) != ref["run"]["sample_sha256"]:
        raise PldError(
            "the merged examples are not the run's sample (its id digest differs)",
            path=first.path,
        )
    whole = RunRecord(
        suite=first.suite,
        split=first.split,
        limit=first.limit,
        model=first.model,
        backend=first.backend,
        instructions=first.instructions,
        labels=first.labels,
        system_prompt_sha256=first.system_prompt_sha256,
        results=slots,
        without_rules=bare if ref["run"]["without_rules"] else None,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(sum(p.duration_s for p in parts), 3),
        cache_hits=sum(p.cache_hits for p in parts),
        cache_misses=sum(p.cache_misses for p in parts),
        cluster_key=first.cluster_key,  # each result keeps its own cluster id
    )
    whole.metrics = compute_metrics(whole, list(ref["run"]["metrics"]))
    return whole


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def check_gated_record(
    path: Path, suite: Suite, *, split: str, limit: int | None, model: str
) -> RunRecord:
    """The run record `--pld-record` names, checked against what this session would have
    evaluated: the gates then judge exactly that run, without calling a model."""
    from .render import render_system_prompt
    from .runner import load_record, sha256_text

    record = load_record(path)
    if record.shard:
        raise PldError(
            f"this is {describe(record)}: the gates need the whole run",
            path=path,
            hint="merge every shard first: pld merge PART... -o merged.json, then "
            "--pld-record=merged.json",
        )
    iset = suite.load_instructions()
    prompt = sha256_text(render_system_prompt(iset, suite.labels, suite.root))
    expected = {
        "suite": (record.suite, suite.name),
        "split": (record.split, split),
        "--pld-limit": (record.limit, limit),
        "model": (record.model, model),
        "labels": (record.labels, list(suite.labels)),
        "rendered system prompt (sha256)": (record.system_prompt_sha256, prompt),
    }
    differ = [f"{k}: record {a!r}, this run {b!r}" for k, (a, b) in expected.items() if a != b]
    if differ:
        raise PldError(
            "the run record is not of the run this session gates: " + "; ".join(differ),
            path=path,
            hint="gate with the options the shards ran with (the same --pld-limit, "
            "--pld-split, --pld-model) on the same instructions, or re-run the shards",
        )
    return record
