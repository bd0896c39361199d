"""Phase 2b: one candidate rule per cluster, by teacher synthesis or by the cluster's medoid.

A weak teacher's merged rule may be empty, rambling or name an example's entities; then the
cluster is represented by its medoid micro-rule instead (method `medoid-fallback`, with the
reason), so a cluster never disappears because the teacher had a bad moment. With
`strategy="both"` each cluster offers both, and the closed loop keeps whichever helps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .answers import Teacher, ask_for_rule, normalise_rule
from .cluster import Cluster
from .prompts import RULE_SCHEMA, synthesis_messages
from .traces import Trace

STRATEGIES = ("teacher", "medoid", "both")
MAX_RULES_SHOWN = 12
MAX_EDGE_CASES = 4
MAX_TRACE_IDS = 5


@dataclass
class Candidate:
    """A rule the closed loop may add (or, with `replaces`, put in place of an existing one)."""

    text: str
    label: str | None
    method: str  # synthesis | medoid | medoid-fallback | revision | coverage
    support: int = 0
    trace_ids: tuple[str, ...] = ()
    cluster: int | None = None
    round: int = 1
    replaces: str | None = None  # the id of the rule this revises (it keeps that id)
    note: str = ""  # why a synthesis fell back, what a revision fixed
    teacher_calls: int = 0  # teach + synthesis/revision calls behind this rule
    tokens: int = 0
    leak: str | None = None  # a span copied from the gate split's inputs
    extra: dict[str, Any] = field(default_factory=dict)


def _cost_of(traces: Sequence[Trace]) -> tuple[int, int]:
    return (
        sum(t.attempts for t in traces),
        sum(t.prompt_tokens + t.completion_tokens for t in traces),
    )


def _ordered_members(cluster: Cluster, vectors: Any) -> list[int]:
    """Members by closeness to the medoid (the medoid first): the most typical rules are the
    ones shown to the teacher when a cluster is too big to show whole."""
    import numpy as np

    members = list(cluster.members)
    sims = np.asarray(vectors)[members] @ np.asarray(vectors)[cluster.medoid]
    return [members[i] for i in np.argsort(-sims, kind="stable")]


def synthesize(
    clusters: Sequence[Cluster],
    traces: Sequence[Trace],
    vectors: Any,
    *,
    teacher: Teacher | None,
    mode: str,
    header: str,
    strategy: str = "teacher",
) -> list[Candidate]:
    """Candidates in cluster order (largest first), duplicates (same text) merged."""
    out: list[Candidate] = []
    for number, cluster in enumerate(clusters, start=1):
        ordered = _ordered_members(cluster, vectors)
        members = [traces[i] for i in ordered]
        ids = tuple(t.ref for t in members[:MAX_TRACE_IDS])  # id, or id#draw
        calls, tokens = _cost_of(members)
        medoid = traces[cluster.medoid]
        medoid_text = normalise_rule(medoid.rule, cluster.label)
        base = Candidate(
            text=medoid_text,
            label=cluster.label,
            method="medoid",
            support=cluster.support,
            trace_ids=ids,
            cluster=number,
            teacher_calls=calls,
            tokens=tokens,
        )

        if strategy == "medoid" or teacher is None:
            out.append(base)
            continue
        majority = [t for t in members if t.gold == cluster.label]
        edges = [(t.gold, t.rule) for t in members if t.gold != cluster.label][:MAX_EDGE_CASES]
        shown = [t.rule for t in majority[:MAX_RULES_SHOWN]]
        entities = sorted({e for t in members for e in t.entity_terms})
        answer = ask_for_rule(
            teacher,
            synthesis_messages(header, cluster.label, shown, edges, mode=mode),
            mode=mode,
            label=cluster.label,
            entities=entities,
            schema=RULE_SCHEMA,
        )
        spent_calls = calls + answer.attempts
        spent_tokens = tokens + answer.prompt_tokens + answer.completion_tokens
        usable = answer.ok and not answer.entity_terms
        reason = (
            ""
            if usable
            else (
                answer.error
                or f"the merged rule names example words ({', '.join(answer.entity_terms)})"
            )
        )
        if usable:
            out.append(
                replace(
                    base,
                    text=answer.rule,
                    method="synthesis",
                    teacher_calls=spent_calls,
                    tokens=spent_tokens,
                )
            )
        if strategy == "both":
            out.append(
                replace(base, note=f"teacher synthesis unusable: {reason}" if reason else "")
            )
        elif not usable:
            out.append(
                replace(
                    base,
                    method="medoid-fallback",
                    note=reason,
                    teacher_calls=spent_calls,
                    tokens=spent_tokens,
                )
            )
    return _dedupe(out)


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for cand in candidates:
        key = " ".join(cand.text.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(cand)
    return out
