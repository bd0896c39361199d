"""The conditions table (`pytest_pld.conditions`) as text, Markdown or JSON."""

from __future__ import annotations

import json

from ..conditions import Condition, ConditionsTable
from ..example_clusters import describe


def _delta(c: Condition) -> str:
    if c.vs_pld is None:
        return "-"
    d, lo, hi = c.vs_pld
    return f"{d:+.3f} ({lo:+.3f} .. {hi:+.3f})"


def _ties(c: Condition) -> str:
    return "-" if c.tie_rate is None else f"{c.tie_rate:.1%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _header(t: ConditionsTable) -> list[str]:
    resampled = describe(t.clusters, t.cluster_key)
    return [
        (
            f"conditions for {t.instructions} on {t.suite}, evaluated on {t.fold} "
            f"({t.n} examples), student {t.model}"
        ),
        (
            f"PLD - condition: macro-F1 difference on the same examples, paired bootstrap "
            f"{t.confidence:.0%} interval (resampling {resampled})"
        ),
    ]


def _prior_line(t: ConditionsTable) -> str:
    if t.prior is None:
        return ""
    shown = ", ".join(f"{label} {t.prior.offsets[label]:+.3f}" for label in t.labels)
    return (
        f"prior-shift offsets (added to the zero-shot label scores; fitted on {t.fit}, never on "
        f"the evaluated split; macro-F1 there {t.prior.fit_before:.3f} -> "
        f"{t.prior.fit_after:.3f}): {shown}"
    )


def format_text(t: ConditionsTable) -> str:
    rows = [("condition", "macro-F1", "accuracy", "PLD - condition", "ties", "predicted labels")]
    for c in t.conditions:
        if not c.applies:
            rows.append((c.name, "n/a", "n/a", "-", "-", c.note))
            continue
        rows.append(
            (
                c.name,
                f"{c.macro_f1:.3f}",
                f"{c.accuracy:.3f}",
                _delta(c),
                _ties(c),
                _counts(c.predicted),
            )
        )
    rows.append(("gold", "", "", "", "", _counts(t.gold)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = _header(t) + [""]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, 5)]
        out.append("  ".join([*cells, row[5]]).rstrip())
    prior = _prior_line(t)
    out += [""] + ([prior] if prior else [])
    out += [f"note: {c.name}: {c.note}" for c in t.conditions if c.applies and c.note]
    out += [f"note: {n}" for n in t.notes]
    return "\n".join(out).rstrip() + "\n"


def format_markdown(t: ConditionsTable) -> str:
    head = _header(t)
    out = [
        f"### {head[0]}",
        "",
        f"{head[1]}.",
        "",
        "| condition | macro-F1 | accuracy | PLD - condition | ties | predicted labels |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for c in t.conditions:
        if not c.applies:
            out.append(f"| {c.name} | n/a | n/a | - | - | {c.note} |")
            continue
        out.append(
            f"| {c.name} | {c.macro_f1:.3f} | {c.accuracy:.3f} | {_delta(c)} | {_ties(c)} | "
            f"{_counts(c.predicted)} |"
        )
    out.append(f"| gold | | | | | {_counts(t.gold)} |")
    prior = _prior_line(t)
    out += [""] + ([prior[0].upper() + prior[1:] + "."] if prior else [])
    out += [f"> {n}" for n in t.notes]
    return "\n".join(out).rstrip() + "\n"


def format_json(t: ConditionsTable) -> str:
    return json.dumps({"schema": 1, **t.to_json()}, indent=1, ensure_ascii=False) + "\n"


FORMATS = {"text": format_text, "md": format_markdown, "json": format_json}
