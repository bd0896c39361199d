"""The conditions table (`pytest_pld.conditions`) as text, Markdown or JSON, with the ship rule
it decides (`pytest_pld.ship_rule`)."""

from __future__ import annotations

import json

from ..conditions import SCHEMA, Condition, ConditionsTable, Delta
from ..example_clusters import describe
from ..ship_rule import PLD, PLD_CALIBRATED

COLUMNS = (
    "condition",
    "macro-F1",
    "accuracy",
    f"{PLD} - condition",
    f"{PLD_CALIBRATED} - condition",
    "ties",
    "predicted labels",
)


def _delta(d: Delta | None) -> str:
    if d is None:
        return "-"
    value, lo, hi = d
    return f"{value:+.3f} ({lo:+.3f} .. {hi:+.3f})"


def _ties(c: Condition) -> str:
    return "-" if c.tie_rate is None else f"{c.tie_rate:.1%}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items())


def _cells(c: Condition) -> tuple[str, ...]:
    if not c.applies:
        return (c.name, "n/a", "n/a", "-", "-", "-", c.note)
    return (
        c.name,
        f"{c.macro_f1:.3f}",
        f"{c.accuracy:.3f}",
        _delta(c.vs_pld),
        _delta(c.vs_calibrated_pld),
        _ties(c),
        _counts(c.predicted),
    )


def _header(t: ConditionsTable) -> list[str]:
    resampled = describe(t.clusters, t.cluster_key)
    return [
        (
            f"conditions for {t.instructions} on {t.suite}, evaluated on {t.fold} "
            f"({t.n} examples), student {t.model}"
        ),
        (
            f"{PLD} - condition and {PLD_CALIBRATED} - condition: macro-F1 differences on the "
            f"same examples, paired bootstrap {t.confidence:.0%} intervals (resampling "
            f"{resampled})"
        ),
    ]


def _calibration_lines(t: ConditionsTable) -> list[str]:
    out = []
    for name, cal in t.calibrations.items():
        shown = ", ".join(f"{label} {cal.offsets[label]:+.3f}" for label in t.labels)
        out.append(
            f"{name}: offsets added to the prompt's label scores, fitted on {cal.fit} (never on "
            f"the evaluated examples; macro-F1 there {cal.fit_before:.3f} -> "
            f"{cal.fit_after:.3f}): {shown}"
        )
    return out


def format_text(t: ConditionsTable) -> str:
    rows = [COLUMNS, *(_cells(c) for c in t.conditions), ("gold", "", "", "", "", "", "")]
    rows[-1] = (*rows[-1][:-1], _counts(t.gold))
    last = len(COLUMNS) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(last)]
    out = _header(t) + [""]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in range(1, last)]
        out.append("  ".join([*cells, row[last]]).rstrip())
    out += [""] + _calibration_lines(t)
    out += t.ship.lines() if t.ship is not None else []
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
        "| " + " | ".join(COLUMNS) + " |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    out += ["| " + " | ".join(_cells(c)) + " |" for c in t.conditions]
    out.append(f"| gold | | | | | | {_counts(t.gold)} |")
    out += [""] + [f"{line}." for line in _calibration_lines(t)]
    if t.ship is not None:
        first, *rest = t.ship.lines()
        out += ["", f"**{first[0].upper()}{first[1:]}**", ""]
        out += [f"- {line.strip()}" for line in rest]
    out += [f"> {n}" for n in t.notes]
    return "\n".join(out).rstrip() + "\n"


def format_json(t: ConditionsTable) -> str:
    return json.dumps({"schema": SCHEMA, **t.to_json()}, indent=1, ensure_ascii=False) + "\n"


FORMATS = {"text": format_text, "md": format_markdown, "json": format_json}
