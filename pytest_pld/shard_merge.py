"""Joining the shards of one run into the whole run record (`pld merge`), and checking a run
record given to `--pld-record` against the run a session would gate.

Apart from `pytest_pld.shards` because both need the runner's records, and the runner in turn
uses `shards` to select a shard's examples.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PldError
from .record import RunRecord, calibration_entry, compute_metrics, load_record, sha256_text
from .shards import describe, ids_digest

if TYPE_CHECKING:
    from .suite import Suite


def merge_records(parts: Sequence[RunRecord]) -> RunRecord:
    """The whole run from its shards; overlaps, gaps and parts of other runs are errors that
    name the files."""
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
        skipped=first.skipped,  # every shard read the same split
        calibration=first.calibration,  # the same in every part: it is in the run id
    )
    whole.metrics = compute_metrics(whole, list(ref["run"]["metrics"]))
    return whole


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def check_gated_record(
    path: Path,
    suite: Suite,
    *,
    split: str,
    limit: int | None,
    model: str,
    apply_calibration: bool = True,
) -> RunRecord:
    """The run record `--pld-record` names, checked against what this session would have
    evaluated: the gates then judge exactly that run, without calling a model. That includes
    the calibration: the set's, applied unless switched off (`apply_calibration`)."""
    record = load_record(path)
    if record.shard:
        raise PldError(
            f"this is {describe(record)}: the gates need the whole run",
            path=path,
            hint="merge every shard first: pld merge PART... -o merged.json, then "
            "--pld-record=merged.json",
        )
    iset = suite.load_instructions()
    prompt = sha256_text(suite.system_prompt(iset))
    calibration = calibration_entry(iset.calibration, applied=apply_calibration)
    expected = {
        "suite": (record.suite, suite.name),
        "split": (record.split, split),
        "--pld-limit": (record.limit, limit),
        "model": (record.model, model),
        "labels": (record.labels, list(suite.labels)),
        "rendered system prompt (sha256)": (record.system_prompt_sha256, prompt),
        "calibration": (_calibration_text(record.calibration), _calibration_text(calibration)),
    }
    differ = [f"{k}: record {a!r}, this run {b!r}" for k, (a, b) in expected.items() if a != b]
    if differ:
        raise PldError(
            "the run record is not of the run this session gates: " + "; ".join(differ),
            path=path,
            hint="gate with the options the shards ran with (the same --pld-limit, "
            "--pld-split, --pld-model, --pld-no-calibration) on the same instructions, or "
            "re-run the shards",
        )
    return record


def _calibration_text(calibration: dict[str, Any] | None) -> str:
    """'none', or 'prior-shift applied (sha256 3fa2...)': short enough for an error line,
    and different whenever the offsets or their provenance are."""
    if calibration is None:
        return "none"
    body = {k: v for k, v in calibration.items() if k != "applied"}
    state = "applied" if calibration.get("applied") else "switched off"
    digest = sha256_text(json.dumps(body, sort_keys=True))[:12]
    return f"{calibration.get('method')} {state} (sha256 {digest}...)"
