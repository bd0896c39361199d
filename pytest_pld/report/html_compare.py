"""The HTML report's sections about more than one record: the examples that flipped against a
compared record, and each rule's effect from an ablation. Both flag inputs that do not describe
the reported record instead of drawing numbers that would mislead."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..numfmt import fmt
from . import charts
from .charts import esc, flag, para, raw_text, section, table

if TYPE_CHECKING:
    from ..ablate import Ablation
    from ..record import RunRecord
    from ..review.results import MetricDelta

MAX_FLIPS = 200  # flipped examples listed per direction; the rest are counted


def compare_section(record: RunRecord, other: RunRecord, resamples: int, notes: list[str]) -> str:
    from ..gates import differences
    from ..review.reviewer import paired_deltas

    oset = other.instructions
    title = "Compared with another record"
    about = para(
        f"compared record: {other.path or '-'} ({oset.get('name')} v{oset.get('version')}, "
        f"model {other.model}, {len(other.results)} examples, created {other.created_at or '-'})",
        cls="meta",
    )
    problems = differences(record, other)
    if problems:
        notes.append(
            f"{other.path or 'the compared record'} is not comparable with "
            f"{record.path or 'the record'}; the page flags it and lists no flipped examples: "
            + "; ".join(problems)
        )
        return section(
            title,
            about,
            flag(
                "Not comparable: these records cannot be paired example by example "
                "(below, 'baseline' is the compared record, 'this run' the reported one)",
                problems,
            ),
            para("No flipped examples or deltas are shown: they would compare different things."),
        )
    from ..example_clusters import describe
    from ..verdicts import mcnemar_text

    compared = paired_deltas(record.labels, other, record, resamples)
    deltas, n = compared.metrics, compared.examples
    calibration = _calibration_parts(other, record, compared.raw_metrics, notes)
    worse, better = compared.right_to_wrong, compared.wrong_to_right
    delta_rows = _delta_rows(deltas)
    raw = {r.id: r.raw for r in record.results}
    flip_rows = [
        [
            f"<code>{esc(f.id)}</code>",
            esc(f.gold),
            esc(f.base),
            esc(f.head),
            raw_text(raw.get(f.id, "")),
            kind,
        ]
        for kind, flips in (("right → wrong", worse), ("wrong → right", better))
        for f in flips[:MAX_FLIPS]
    ]
    left_out = max(0, len(worse) - MAX_FLIPS) + max(0, len(better) - MAX_FLIPS)
    return section(
        title,
        about,
        para(
            f"{n} examples paired by id: {len(worse)} went from right to wrong, {len(better)} "
            f"from wrong to right. Deltas are this record minus the compared one, with "
            f"95% paired bootstrap intervals over "
            f"{describe(compared.clusters, compared.cluster_key)} ({resamples} resamples).",
            cls="",
        ),
        para(mcnemar_text(m.worse, m.better, m.p_value) + ".", cls="")
        if (m := compared.mcnemar)
        else "",
        table(
            ["metric", "compared", "this record", "delta", "interval", "verdict"],
            delta_rows,
            {1, 2, 3, 4},
        ),
        *calibration,
        table(
            ["example", "gold", "compared", "this record", "raw answer (this record)", ""],
            flip_rows,
        )
        if flip_rows
        else para("No example changed between right and wrong."),
        para(f"{left_out} more flipped examples not listed.") if left_out else "",
    )


def _delta_rows(deltas: list[MetricDelta]) -> list[list[str]]:
    return [
        [
            f"<code>{esc(d.name)}</code>",
            esc(fmt(d.base, d.name)),
            esc(fmt(d.head, d.name)),
            esc(fmt(d.delta, d.name, signed=True)),
            "-"
            if d.low is None or d.high is None
            else esc(f"{fmt(d.low, d.name, signed=True)} .. {fmt(d.high, d.name, signed=True)}"),
            esc(d.verdict),
        ]
        for d in deltas
    ]


def _calibration_parts(
    other: RunRecord, record: RunRecord, raw: list[MetricDelta], notes: list[str]
) -> list[str]:
    """A flag when one record's answers are calibrated and the other's raw (or both calibrated
    differently), and the raw students' deltas beside the calibrated ones."""
    from ..record import calibration_contrast

    out = []
    contrast = calibration_contrast(other, record, names=("the compared record", "this record"))
    if contrast:
        notes.append(contrast)
        out.append(flag("Calibration differs between the records", [contrast]))
    if raw:
        out += [
            para("The raw students (each record's answers before calibration):", cls=""),
            table(
                ["metric", "compared", "this record", "delta", "interval", "verdict"],
                _delta_rows(raw),
                {1, 2, 3, 4},
            ),
        ]
    return out


def ablation_section(record: RunRecord, ablation: Ablation, notes: list[str]) -> str:
    from .ablation import effect_text

    iset = record.instructions
    ours = f"{iset.get('name')} v{iset.get('version')}"
    mismatch = []
    if ablation.suite != record.suite:
        mismatch.append(f"suite: the ablation's {ablation.suite!r}, the record's {record.suite!r}")
    if ablation.instructions != ours:
        mismatch.append(
            f"instructions: the ablation's {ablation.instructions}, the record's {ours}"
        )
    if ablation.model != record.model:
        mismatch.append(f"model: the ablation's {ablation.model}, the record's {record.model}")
    if mismatch:
        notes.append("the ablation is not of the reported record's setup: " + "; ".join(mismatch))
    rows = [*ablation.rules, *([ablation.all_rules] if ablation.all_rules else [])]
    effects = [(r.id, e.value, e.low, e.high) for r in rows for e in [r.effects["macro_f1"]]]
    reach = max([0.05, *(abs(v) for _, *vs in effects for v in vs)])
    reach = math.ceil(reach * 20) / 20
    chart = charts.intervals(
        effects,
        title="effect of each rule on macro-F1",
        domain=(-reach, reach),
        reference=0.0,
        value_text=lambda v: f"{v:+.3f}",
    )
    table_rows = []
    for r in rows:
        prune = "yes" if r.prune_candidate and r is not ablation.all_rules else ""
        table_rows.append(
            [f"<code>{esc(r.id)}</code>", str(r.tokens)]
            + [esc(effect_text(r.effects[m])) for m in ("macro_f1", "accuracy")]
            + [prune, esc(r.text)]
        )
    return section(
        "Per-rule effects (ablation)",
        flag("This ablation does not describe the reported record's setup", mismatch)
        if mismatch
        else "",
        para(
            f"Leave-one-rule-out of {ablation.instructions} on {ablation.suite}/{ablation.split}: "
            f"{ablation.examples} examples, model {ablation.model}. Effect = metric with the rule "
            f"minus without it (> 0: the rule helps), 95% paired bootstrap intervals; green: "
            f"helps, red: hurts, blue: unclear.",
            cls="",
        ),
        chart,
        table(
            [
                "rule",
                ablation.size_unit,
                "effect on macro-F1",
                "effect on accuracy",
                "prune?",
                "text",
            ],
            table_rows,
            {1, 2, 3},
        ),
        "".join(para(f"note: {n}") for n in ablation.notes),
    )
