"""Bookkeeping of a distill run: which candidates are scored, what the notes say, and the
provenance written with each kept rule."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ..instructions import Rule
from .generalise import Generaliser
from .refine import Decision, by_cluster
from .synthesize import Candidate


def provenance(decision: Decision, settings: dict[str, Any], old: Rule | None) -> dict[str, Any]:
    cand = decision.candidate
    prov: dict[str, Any] = {"method": cand.method}
    if cand.method == "revision" and old is not None:
        prov["revises"] = old.provenance.get("method", "manual")
    prov.update(
        {
            "support": cand.support,
            "traces": list(cand.trace_ids),
            "round": cand.round,
            "teacher": settings["teacher"],
        }
    )
    if cand.method not in ("revision", "coverage"):  # coverage: written from train failures
        prov["embedder"] = settings["embedder"]
        prov["cluster"] = settings["cluster_method"]
    if cand.note:
        prov["note"] = cand.note
    lo, hi = decision.interval
    before, after = decision.before, decision.after
    judged, raw = "", ""
    if "raw_macro_f1" in after:  # judged on calibrated answers; the raw ones beside them
        judged = "calibrated "
        raw = f"raw {before.get('raw_macro_f1', 0):.3f} -> {after['raw_macro_f1']:.3f}; "
    prov["dev_macro_f1"] = (
        f"{judged}{before.get('macro_f1', 0):.3f} -> {after.get('macro_f1', 0):.3f} "
        f"({raw}n={after.get('n', 0):.0f}; gain interval {lo:+.3f} .. {hi:+.3f})"
    )
    prov["teacher_calls"] = cand.teacher_calls
    prov["teacher_tokens"] = cand.tokens
    return prov


def report_synthesis(
    candidates: list[Candidate], clusters: int, notes: list[str], log: Callable[[str], None]
) -> None:
    made = Counter(c.cluster for c in candidates if c.method.startswith("synthesis"))
    reasons = Counter(
        part.split(" (")[0]
        for c in candidates
        if c.method in ("medoid", "medoid-fallback") and c.note
        for part in c.note.removeprefix("teacher synthesis unusable: ").split("; ")
    )
    msg = (
        f"teacher synthesis: {len(made)} of {clusters} clusters got a usable merged rule "
        f"({sum(made.values())} in all); {len(candidates)} candidates"
    )
    if reasons:
        msg += "; unusable: " + ", ".join(f"{why} x{n}" for why, n in reasons.most_common())
    notes.append(msg)
    log(msg)


def report_generality(
    generaliser: Generaliser, candidates: int, notes: list[str], log: Callable[[str], None]
) -> None:
    if not generaliser.generalised and not generaliser.dropped:
        return
    msg = (
        f"generality test: {generaliser.generalised} of {candidates} candidates named words of "
        f"their source examples and were generalised by the teacher; "
        f"{len(generaliser.dropped)} dropped (listed below)"
    )
    notes.append(msg)
    log(msg)


def cap_candidates(
    candidates: list[Candidate], limit: int, notes: list[str], log: Callable[[str], None]
) -> list[Candidate]:
    """Each candidate costs a dev-split evaluation; the largest clusters go first, and a
    cluster's candidates are scored all or none (selection compares them)."""
    kept: list[Candidate] = []
    groups = by_cluster(candidates)
    for group in groups:
        if kept and len(kept) + len(group) > limit:
            break
        kept.extend(group)
    if len(kept) < len(candidates):
        msg = (
            f"{len(candidates) - len(kept)} candidates of the smaller clusters not scored "
            f"(--max-candidates {limit})"
        )
        notes.append(msg)
        log(msg)
    return kept
