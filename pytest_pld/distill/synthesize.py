"""Phase 2b: several candidate rules per cluster; the closed loop keeps the one that helps most.

Per cluster: the teacher's merged rule, a second synthesis from another view of the cluster
(`_views`), the medoid micro-rule, and the most central member rule that passes the
generality test (`generalise`). A weak teacher's merged rule may be empty or rambling; the
medoid then still represents the cluster (with `strategy="teacher"`: method
`medoid-fallback`, with the reason), so a cluster never disappears because the teacher had a
bad moment. Whether a rule names words of its examples is decided later, by the generality
test, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .answers import Teacher, ask_for_rule, normalise_rule, rule_key
from .prompts import RULE_SCHEMA, synthesis_messages
from .rule_clusters import Cluster
from .traces import Trace

STRATEGIES = ("teacher", "medoid", "both")
MAX_RULES_SHOWN = 12
MIN_RULES_SHOWN = 3
MAX_EDGE_CASES = 4
MAX_TRACE_IDS = 5


@dataclass
class Candidate:
    """A rule the closed loop may add (or, with `replaces`, put in place of an existing one)."""

    text: str
    label: str | None
    # synthesis | synthesis-2 | medoid | central | medoid-fallback | revision | coverage
    method: str
    support: int = 0
    trace_ids: tuple[str, ...] = ()
    source_ids: tuple[str, ...] = ()  # the examples it was learnt from (generality test)
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


def _views(majority: Sequence[Trace], count: int) -> list[list[str]]:
    """The micro-rules shown to the teacher for each of its `count` syntheses: the most
    typical ones first; a second synthesis sees the next most typical ones where the cluster
    has enough, else the same ones from the least typical up, so that it is a different
    request (a deterministic teacher would otherwise answer the same)."""
    rules = [t.rule for t in majority]
    views = [rules[:MAX_RULES_SHOWN]]
    for i in range(1, count):
        chunk = rules[i * MAX_RULES_SHOWN : (i + 1) * MAX_RULES_SHOWN]
        if len(chunk) >= MIN_RULES_SHOWN:
            views.append(chunk)
        elif len(views[0]) >= 2 and list(reversed(views[0])) not in views:
            views.append(list(reversed(views[0])))
    return views


def synthesize(
    clusters: Sequence[Cluster],
    traces: Sequence[Trace],
    vectors: Any,
    *,
    teacher: Teacher | None,
    mode: str,
    header: str,
    strategy: str = "both",
    syntheses: int = 2,
    is_general: Callable[[str, Sequence[str]], bool] | None = None,
) -> list[Candidate]:
    """Several candidates per cluster, in cluster order (largest first); within a cluster the
    same text only once. `strategy`: teacher (its syntheses; the medoid only when none is
    usable), medoid (the medoid and the most central general member), both (all of them).
    `is_general(rule, source_ids)`: the generality test, for picking the central member."""
    out: list[Candidate] = []
    for number, cluster in enumerate(clusters, start=1):
        ordered = _ordered_members(cluster, vectors)
        members = [traces[i] for i in ordered]
        calls, tokens = _cost_of(members)
        medoid = traces[cluster.medoid]
        base = Candidate(
            text=normalise_rule(medoid.rule, cluster.label),
            label=cluster.label,
            method="medoid",
            support=cluster.support,
            trace_ids=tuple(t.ref for t in members[:MAX_TRACE_IDS]),  # id, or id#draw
            source_ids=tuple(source_id(t) for t in members),
            cluster=number,
            teacher_calls=calls,
            tokens=tokens,
        )
        found: list[Candidate] = []
        reasons: list[str] = []
        spent_calls, spent_tokens = calls, tokens
        if strategy != "medoid" and teacher is not None:
            majority = [t for t in members if t.gold == cluster.label]
            edges = [(t.gold, t.rule) for t in members if t.gold != cluster.label][:MAX_EDGE_CASES]
            for i, shown in enumerate(_views(majority, max(1, syntheses))):
                answer = ask_for_rule(
                    teacher,
                    synthesis_messages(header, cluster.label, shown, edges, mode=mode),
                    mode=mode,
                    label=cluster.label,
                    schema=RULE_SCHEMA,
                )
                spent_calls += answer.attempts
                spent_tokens += answer.prompt_tokens + answer.completion_tokens
                if not answer.ok:
                    reasons.append(answer.error)
                    continue
                found.append(
                    replace(
                        base,
                        text=answer.rule,
                        method="synthesis" if i == 0 else f"synthesis-{i + 1}",
                        teacher_calls=calls + answer.attempts,
                        tokens=tokens + answer.prompt_tokens + answer.completion_tokens,
                    )
                )
        reason = f"teacher synthesis unusable: {'; '.join(reasons)}" if reasons else ""
        if strategy == "teacher" and not found:
            found.append(
                replace(
                    base,
                    method="medoid-fallback",
                    note=reasons[0] if reasons else "",
                    teacher_calls=spent_calls,
                    tokens=spent_tokens,
                )
            )
        elif strategy != "teacher":
            found.append(replace(base, note=reason))
            central = _central_general(members, cluster.label, base, is_general)
            if central is not None:
                found.append(central)
        out.extend(_dedupe(found))
    return out


def source_id(trace: Trace) -> str:
    """The example a trace was taught on (its id: one trace per example and draw)."""
    return trace.id


def _central_general(
    members: Sequence[Trace],
    label: str | None,
    base: Candidate,
    is_general: Callable[[str, Sequence[str]], bool] | None,
) -> Candidate | None:
    """The most central member rule of the cluster's label that passes the generality test,
    when it is not the medoid's rule itself."""
    if is_general is None:
        return None
    for trace in members:
        if trace.gold != label:
            continue
        text = normalise_rule(trace.rule, label)
        if text and is_general(text, base.source_ids):
            if rule_key(text) == rule_key(base.text):
                return None  # the medoid is already the most central general rule
            return replace(base, text=text, method="central", trace_ids=(trace.id,))
    return None


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for cand in candidates:
        key = rule_key(cand.text)
        if key and key not in seen:
            seen.add(key)
            out.append(cand)
    return out
