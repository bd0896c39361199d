"""The lines under a summary table that say what its numbers mean: how each interval was made
(bootstrap of examples or clusters, Wilson), and what qualifies a verdict (a regression gate's
detectable drop and McNemar test, the family test of each per-class gate).

They read `gate_summary.Row`s, which are rebuilt from test-report properties, so they work the same
under pytest-xdist; the wording is shared with the failure messages (`verdicts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..example_clusters import describe
from ..verdicts import family_text, mcnemar_text, power_text

if TYPE_CHECKING:
    from .gate_summary import Row

METHODS = {
    "bootstrap": "bootstrap over the examples",
    "cluster bootstrap": "bootstrap over {clusters}",
    "wilson": "Wilson score (under 300 examples)",
    "wilson, design effect": "Wilson score with the design effect of {clusters} (under 300 "
    "examples)",
}


def intervals_note(rows: Sequence[Row]) -> str | None:
    """What the interval column means, said once under the table."""
    shown = [r for r in rows if r.low is not None and not r.gate.startswith("regression[")]
    parts: dict[str, list[str]] = {}
    for row in shown:
        where = describe(row.clusters, row.cluster_key or None)
        method = METHODS.get(row.interval_method or "bootstrap", row.interval_method)
        parts.setdefault(method.format(clusters=where), []).append(row.metric)
    if len(parts) == 1:
        notes = list(parts)
    else:
        notes = [f"{method} for {', '.join(names)}" for method, names in parts.items()]
    regression = [r for r in rows if r.gate.startswith("regression[") and r.low is not None]
    for row in regression:
        where = describe(row.clusters, row.cluster_key or None)
        notes.append(
            f"for {row.gate}, the one-sided bounds of (this run - baseline) at its confidence, "
            f"a paired bootstrap over {where} (paired by id)"
        )
    return "interval: 95%; " + "; ".join(notes) if notes else None


def drop_seen(row: Row) -> bool:
    """A regression gate that failed on a drop beyond its margin (not on its power)."""
    return row.high is not None and row.margin is not None and row.high < -row.margin


def verdict_notes(rows: Sequence[Row]) -> list[str]:
    """The lines under the table that qualify verdicts: each regression gate's power and
    McNemar test, and the family test of each per-class gate."""
    out: list[str] = []
    for row in rows:
        if row.detectable is None or row.margin is None:
            continue
        out.append(
            f"{row.gate}: "
            + power_text(
                detectable=row.detectable,
                margin=row.margin,
                confidence=row.confidence or 0.95,
                needed_examples=row.needed_examples,
                needed_clusters=row.needed_clusters,
                policy=row.power_policy or "warn",
                drop_seen=drop_seen(row),
                power=row.power or 0.8,
            )
        )
        if row.mcnemar_p is not None:
            out.append(
                f"{row.gate}: "
                + mcnemar_text(row.mcnemar_worse or 0, row.mcnemar_better or 0, row.mcnemar_p)
            )
    members = [r for r in rows if r.family_p is not None]
    if members:
        first = members[0]
        how = "Holm-corrected" if first.family_correction == "holm" else "uncorrected"
        out.append(
            f"per-class gates, one family of {first.family_size}: {how} one-sided tests that "
            f"the true value violates the bound, at alpha {first.alpha or 0.05:g} (the "
            "verdicts above stay on the observed values):"
        )
        out += [
            "  "
            + family_text(
                r.gate,
                r.family_p or 0.0,
                r.family_adjusted_p or 0.0,
                r.family_size or 1,
                r.family_correction,
                r.alpha or 0.05,
            )
            for r in members
        ]
    return out + tokens_note(rows)


def tokens_note(rows: Sequence[Row]) -> list[str]:
    """The render check and the prompt_tokens gate count different things against the same
    budget; where both show a number, say what each counted."""
    counted = {r.metric: r.value for r in rows if r.value is not None}
    text, given = counted.get("rendered_prompt_tokens"), counted.get("prompt_tokens")
    if text is None or given is None:
        return []
    note = (
        f"tokens: render counts the system prompt and the longest user message as text "
        f"({text:.0f}), before any model call; prompt_tokens counts what the model was given, "
        f"its chat template's markers included ({given:.0f})"
    )
    return [note]


__all__ = ["METHODS", "drop_seen", "intervals_note", "tokens_note", "verdict_notes"]
