"""The gates' results: JUnit XML properties, the terminal summary table and the Markdown report.

Every gate item attaches its numbers to its test report as `user_properties`. The summary is
built from those reports, not from in-process state, because under pytest-xdist the items run
in workers and only their reports reach the process that prints the summary.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..numfmt import fmt
from ..project import shown
from ..suite.data_checks import size_notes, skipped_facts
from ..verdicts import facts_of, result_word
from .markdown_tables import md_cell, record_tables
from .notes import drop_seen, intervals_note, verdict_notes

P = "pld."  # prefix of our property names, so they never clash with a project's own


@dataclass(frozen=True)
class Row:
    """One line of the summary: a gate and its outcome, plus what run it came from."""

    suite: str
    gate: str
    outcome: str  # pytest's: passed | failed | skipped
    metric: str = ""
    value: float | None = None
    low: float | None = None
    high: float | None = None
    bound: str = ""
    model: str = ""
    split: str = ""
    instructions: str = ""
    examples: int | None = None
    cache_hits: int | None = None
    model_calls: int | None = None
    ties: int | None = None  # answers that were exact top-score ties (None: not recorded)
    limit: int | None = None  # the sample size asked for (--pld-limit)
    skipped: int | None = None  # examples unknown_labels: skip left out of the split
    skipped_labels: str = ""  # ... by label: "mixed 2, postive 1"
    #: the answers' calibration (`CalibrationSummary.text`; "": the set has none)
    calibration: str = ""
    raw_macro_f1: float | None = None  # the raw student's, beside calibrated answers
    raw_accuracy: float | None = None
    record: str = ""
    error: str = ""
    baseline_written: str = ""
    # how the interval was made, and over what
    interval_method: str = ""
    clusters: int | None = None
    cluster_key: str = ""
    # a regression gate's power and McNemar test (verdicts.power_text, mcnemar_text)
    detectable: float | None = None
    margin: float | None = None
    confidence: float | None = None
    power: float | None = None
    underpowered: bool = False
    needed_examples: int | None = None
    needed_clusters: int | None = None
    power_policy: str = ""
    p_value: float | None = None
    mcnemar_worse: int | None = None
    mcnemar_better: int | None = None
    mcnemar_p: float | None = None
    # a per-class gate's test within its family (verdicts.family_text)
    family_p: float | None = None
    family_adjusted_p: float | None = None
    family_size: int | None = None
    family_correction: str = ""
    alpha: float | None = None


def _run_properties(record: Any) -> list[tuple[str, object]]:
    iset = record.instructions
    ties = record.tie_count()
    return [
        (P + "model", record.model),
        (P + "split", record.split),
        (P + "instructions", f"{iset.get('name')} v{iset.get('version')}"),
        (P + "examples", len(record.results)),
        (P + "cache_hits", record.cache_hits),
        (P + "model_calls", record.cache_misses),
        *([(P + "ties", ties)] if ties is not None else []),
        *([(P + "limit", record.limit)] if record.limit is not None else []),
        *((P + key, value) for key, value in skipped_facts(record.skipped)),
        *_calibration_properties(record),
        (P + "record", record.path or ""),
    ]


def _calibration_properties(record: Any) -> list[tuple[str, object]]:
    """pld.calibration (how the answers were calibrated, or that it was switched off) and the
    raw student's macro-F1 and accuracy beside calibrated ones; nothing without a calibration."""
    from .calibration_notes import summarize_calibration

    found = summarize_calibration(record)
    if found is None:
        return []
    props: list[tuple[str, object]] = [(P + "calibration", found.text())]
    if found.applied:
        props += [
            (P + "raw_macro_f1", found.raw_macro_f1),
            (P + "raw_accuracy", found.raw_accuracy),
        ]
    return props


def calibration_item_properties(suite: str, gate: str, fit: str) -> list[tuple[str, object]]:
    """The ::calibration item's row: the calibration checked for freshness."""
    return [
        (P + "suite", suite),
        (P + "gate", gate),
        (P + "metric", "calibration"),
        (P + "bound", "fresh for this student and prompt"),
        (P + "fit", fit),
    ]


def gate_properties(suite: str, result: Any, record: Any) -> list[tuple[str, object]]:
    """Properties of a checked gate; the metric also appears under its own name, which is
    what a JUnit dashboard plots."""
    props: list[tuple[str, object]] = [
        (P + "suite", suite),
        (P + "gate", result.gate),
        (P + "metric", result.metric),
        (P + "value", result.observed),
        (P + "bound", result.bound),
    ]
    if result.interval is not None:
        props += [(P + "ci_low", result.interval[0]), (P + "ci_high", result.interval[1])]
    props += [(P + k, v) for k, v in facts_of(_verdict_facts(result))]
    if not result.gate.startswith("regression["):
        props.append((result.metric, result.observed))
    return props + _run_properties(record)


def _verdict_facts(result: Any) -> dict[str, object]:
    """What a gate's statistics add to its properties (names as in `Row`)."""
    facts: dict[str, object] = {
        "interval_method": result.interval_method or None,
        "clusters": result.n_clusters,
        "cluster_key": result.cluster_key,
    }
    test = result.regression
    if test is not None:
        found = test.detectable
        facts |= {
            "detectable": found.drop,
            "margin": test.margin,
            "confidence": test.confidence,
            "power": found.power,
            "underpowered": test.underpowered,
            "needed_examples": found.needed_examples,
            "needed_clusters": found.needed_clusters,
            "power_policy": result.power_policy,
            "p_value": test.p_value,
            "mcnemar_worse": test.mcnemar.worse,
            "mcnemar_better": test.mcnemar.better,
            "mcnemar_p": test.mcnemar.p_value,
        }
    member = result.family
    if member is not None:
        facts |= {
            "family_p": member.p_value,
            "family_adjusted_p": member.adjusted_p,
            "family_size": member.size,
            "family_correction": member.correction,
            "alpha": member.alpha,
        }
    return facts


def render_properties(
    suite: str, gate: str, tokens: float | None, bound: str, examples: int, iset: Any
) -> list[tuple[str, object]]:
    props: list[tuple[str, object]] = [
        (P + "suite", suite),
        (P + "gate", gate),
        (P + "metric", "rendered_prompt_tokens"),
        (P + "bound", bound),
        (P + "examples", examples),
        (P + "instructions", f"{iset.name} v{iset.version}"),
    ]
    if tokens is not None:
        props += [(P + "value", tokens), ("rendered_prompt_tokens", tokens)]
    return props


def snapshot_properties(suite: str, gate: str, snapshot: str) -> list[tuple[str, object]]:
    """The snapshot gate's row: no number, the committed file it compares with."""
    return [(P + "suite", suite), (P + "gate", gate), (P + "bound", f"= {snapshot}")]


def error_properties(
    suite: str, gate: str, error: str, instructions: str = ""
) -> list[tuple[str, object]]:
    """The row of an item that stopped without its numbers: the error's first line ("": it
    was skipped), and the instruction set ("name vN") when it loaded."""
    props: list[tuple[str, object]] = [(P + "suite", suite), (P + "gate", gate)]
    if error:
        props.append((P + "error", error.splitlines()[0]))
    if instructions:
        props.append((P + "instructions", instructions))
    return props


def baseline_properties(suite: str, gate: str, record: Any, path: str) -> list[tuple[str, object]]:
    return [
        (P + "suite", suite),
        (P + "gate", gate),
        (P + "bound", "baseline updated"),
        (P + "baseline_written", path),
        *_run_properties(record),
    ]


#: Where a property's name is not its `Row` field's (every other field: "pld." + its name).
_PROPERTY_OF = {"low": "ci_low", "high": "ci_high"}


def row_from_report(report: Any) -> Row | None:
    """A summary row from a test report (one of ours, in any process), else None: each field
    of `Row` but the outcome read from its property, as the field's type says."""
    props: Mapping[str, Any] = dict(report.user_properties)
    if P + "suite" not in props:
        return None
    values: dict[str, Any] = {
        spec.name: _read_property(str(spec.type), props, P + _PROPERTY_OF.get(spec.name, spec.name))
        for spec in dataclasses.fields(Row)
        if spec.name != "outcome"
    }
    return Row(outcome=report.outcome, **values)


def _read_property(kind: str, props: Mapping[str, Any], key: str) -> Any:
    """One property as a `Row` field of type `kind`; a missing one is "", False or None."""
    if kind == "str":
        return str(props.get(key, ""))
    if kind == "bool":
        return bool(props.get(key, False))
    value = props.get(key)
    if kind == "int | None":
        return None if value is None else int(value)
    if kind == "float | None":
        return None if value is None else float(value)
    raise TypeError(f"no property is read as a Row field of type {kind!r}")


# --- formatting ---------------------------------------------------------------------------------


def _cells(row: Row) -> list[str]:
    signed = row.gate.startswith("regression[")
    interval = (
        f"{fmt(row.low, row.metric, signed)}..{fmt(row.high, row.metric, signed)}"
        if row.low is not None and row.high is not None
        else "-"
    )
    # pytest's outcome, in the table's words
    if row.outcome == "skipped":
        result = "skipped"
    elif row.error:
        result = "FAIL, not evaluated"
    elif row.baseline_written:
        result = "written"
    else:
        result = result_word(row.outcome == "passed", row.underpowered, drop_seen(row))
    value = fmt(row.value, row.metric, signed)
    if signed and row.value is not None and not math.isnan(row.value):
        value = f"delta {value}"
    bound = row.bound or "-"
    if row.detectable is not None:  # the detectable drop next to the margin
        bound += f", detectable {row.detectable:.3f}"
    return [row.gate, value, interval, bound, result]


HEADER = ["gate", "value", "interval", "bound", "result"]


def group(rows: Iterable[Row]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(row.suite, []).append(row)
    return out


def _run_of(rows: Sequence[Row]) -> Row | None:
    return next((r for r in rows if r.model), None)


def run_line(rows: Sequence[Row]) -> str:
    run = _run_of(rows)
    if run is None:
        instructions = next((r.instructions for r in rows if r.instructions), "-")
        error = next((r.error for r in rows if r.error), "")
        return f"instructions {instructions}; not evaluated" + (f" ({error})" if error else "")
    calls = f"{run.cache_hits} cache hits, {run.model_calls} model calls"
    ties = ""
    if run.ties is not None and run.examples:
        ties = f", {run.ties} ties ({run.ties / run.examples:.1%})"
    return (
        f"split {run.split}, {run.examples} examples{ties}, model {run.model}, "
        f"instructions {run.instructions}, {calls}"
        + "".join(
            f"; {note}"
            for note in size_notes(run.skipped, run.skipped_labels, run.limit, run.examples)
        )
    )


def answers_line(rows: Sequence[Row]) -> str | None:
    """'answers: calibrated (prior-shift, fitted on ...; raw macro-F1 0.329 -> calibrated
    0.728)' for a run of a set with a calibration (None without one)."""
    run = _run_of(rows)
    return f"answers: {run.calibration}" if run and run.calibration else None


def terminal_lines(rows: Sequence[Row], root: Path) -> list[str]:
    lines: list[str] = []
    for suite, suite_rows in group(rows).items():
        lines.append(f"suite {suite}: {run_line(suite_rows)}")
        answers = answers_line(suite_rows)
        if answers:
            lines.append(f"  {answers}")
        table = [HEADER, *(_cells(r) for r in suite_rows)]
        widths = [max(len(cells[i]) for cells in table) for i in range(len(HEADER))]
        for cells in table:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
        run = _run_of(suite_rows)
        if run and run.record:
            lines.append(f"  run record: {shown(run.record, root)}")
        note = intervals_note(suite_rows)
        if note:
            lines.append(f"  {note}")
        lines += [f"  {line}" for line in verdict_notes(suite_rows)]
        for row in suite_rows:
            if row.baseline_written:
                lines.append(f"  baseline written: {row.baseline_written} (commit it)")
    return lines


def markdown(rows: Sequence[Row], root: Path) -> str:
    """The same tables for a PR comment or $GITHUB_STEP_SUMMARY, plus per-class scores and the
    confusion matrix."""
    parts: list[str] = []
    for suite, suite_rows in group(rows).items():
        failed = any(r.outcome == "failed" for r in suite_rows)
        parts.append(f"### pytest-pld: `{suite}` {'failed' if failed else 'passed'}\n")
        parts.append(run_line(suite_rows) + "\n")
        answers = answers_line(suite_rows)
        if answers:
            parts.append(md_cell(answers[0].upper() + answers[1:]) + "\n")
        parts.append("| " + " | ".join(HEADER) + " |")
        parts.append("|" + "---|" * len(HEADER))
        for row in suite_rows:
            cells = [c.replace("|", "\\|") for c in _cells(row)]
            cells[0] = f"`{cells[0]}`"
            parts.append("| " + " | ".join(cells) + " |")
        run = _run_of(suite_rows)
        parts.append("")
        note = intervals_note(suite_rows)
        if note:
            parts.append(note[0].upper() + note[1:] + ".\n")
        notes = verdict_notes(suite_rows)
        if notes:
            parts += [
                f"- {md_cell(n.strip())}" if not n.startswith("  ") else f"  - {md_cell(n.strip())}"
                for n in notes
            ]
            parts.append("")
        if run and run.record:
            parts.extend(record_tables(run.record))
            parts.append(f"Run record: `{shown(run.record, root)}`")
        for row in suite_rows:
            if row.baseline_written:
                parts.append(f"\nBaseline written: `{row.baseline_written}` (commit it)")
        parts.append("")
    return "\n".join(parts) + "\n"


def write_markdown(text: str, path: Path | None) -> list[str]:
    """Write the report to `path` and append it to $GITHUB_STEP_SUMMARY; returns the places
    written, for the terminal."""
    from ..yamlio import atomic_write_text

    written: list[str] = []
    if path is not None:
        atomic_write_text(path, text)
        written.append(str(path))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
        written.append(summary)
    return written
