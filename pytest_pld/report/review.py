"""Formatting a `Review` as Markdown (a pull-request comment), plain text or JSON.

The Markdown keeps the summary - what changed, which metrics moved - visible and folds the long
parts (rule texts, prompt diff, flipped examples) into <details>, because a PR comment that
scrolls for pages does not get read. GitHub caps a comment at 65,536 characters; the caps
below keep a review of a few sets well under that.
"""

from __future__ import annotations

import json
from typing import Any

from ..review.diff import FieldChange, RuleChange, format_provenance
from ..review.results import Flip, MetricDelta, Review, SetReport, SuiteReport

MAX_DIFF_LINES = 150
MAX_FLIPS = 20
MD_LIMIT = 60_000
KIND_MARK = {"added": "+", "removed": "-", "reworded": "~", "changed": "~"}
VERDICT_MARK = {"better": "better", "worse": "**worse**", "unclear": "", "same": ""}


def render(review: Review, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"schema": 1, **review.to_json()}, indent=1, ensure_ascii=False) + "\n"
    if fmt == "md":
        return markdown(review)
    return text(review)


# --- shared helpers -----------------------------------------------------------------------------


def _num(value: float, name: str) -> str:
    if name == "prompt_tokens":
        return f"{value:.0f}"
    return f"{value:.3f}"


def _signed(value: float, name: str) -> str:
    if name == "prompt_tokens":
        return f"{value:+.0f}"
    return f"{value:+.3f}"


def _interval(row: MetricDelta) -> str:
    if row.low is None or row.high is None:
        return ""
    return f"[{row.low:+.3f}, {row.high:+.3f}]"


def _size(report: SuiteReport) -> str:
    before, after = report.prompt_size
    if before is None or after is None:
        return ""
    return f"system prompt {before} → {after} {report.size_unit} ({after - before:+d})"


def _stats_lines(report: SuiteReport) -> list[str]:
    """How the intervals were made, and the exact McNemar test beside them."""
    from ..example_clusters import describe
    from ..verdicts import mcnemar_text

    lines = [f"intervals: paired bootstrap over {describe(report.clusters, report.cluster_key)}"]
    if report.mcnemar is not None:
        m = report.mcnemar
        lines.append(mcnemar_text(m.worse, m.better, m.p_value))
    return lines


def _clip(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"... {len(lines) - limit} more lines (run `pld review` locally)"]


def _title(report: SetReport) -> str:
    diff = report.diff
    if report.status == "invalid":
        return "invalid at " + " and ".join(report.errors)
    if diff is None:
        return report.status
    version = (
        f"v{diff.old_version} → v{diff.new_version}"
        if diff.old_version != diff.new_version
        else f"v{diff.new_version}"
    )
    if report.status == "no semantic change":
        return f"{version} · no semantic change"
    prefix = f"{report.status} · " if report.status in ("added", "removed") else ""
    return f"{prefix}{version} · {diff.summary()}"


def _field_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False, indent=1, default=dict)


# --- Markdown -----------------------------------------------------------------------------------


def _html(value: str) -> str:
    # rule text comes from a pull request: a stray </details> or <img> must stay text
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(value: str) -> str:
    return _html(value).replace("|", "\\|").replace("\n", " ")


def _fence(body: str, lang: str = "") -> str:
    # a body holding ``` would close a 3-backtick fence early
    ticks = "```"
    while ticks in body:
        ticks += "`"
    return f"{ticks}{lang}\n{body}\n{ticks}"


def _quote(value: str) -> str:
    return "\n".join("> " + _html(line) for line in value.strip().splitlines())


def _details(summary: str, body: str) -> list[str]:
    return ["<details><summary>" + summary + "</summary>", "", body, "", "</details>", ""]


def markdown(review: Review) -> str:
    out = [
        "### pld review: instruction changes",
        "",
        f"`{review.base.description}` → `{review.head.description}`",
        "",
    ]
    out += [_quote(note) + "\n" for note in review.notes]
    if not review.sets:
        out.append(f"No instruction changes ({review.unchanged} instruction sets compared).")
        return "\n".join(out).rstrip() + "\n"
    for report in review.sets:
        out += _md_set(report)
    if review.unchanged:
        out.append(f"<sub>{review.unchanged} other instruction sets unchanged.</sub>")
    text = "\n".join(out).rstrip() + "\n"
    if len(text) > MD_LIMIT:
        text = text[:MD_LIMIT] + (
            "\n\n... (truncated: the review is longer than a PR comment "
            "allows; run `pld review` locally)\n"
        )
    return text


def _md_set(report: SetReport) -> list[str]:
    out = [f"#### `{report.path}` · {_title(report)}", ""]
    for side, error in report.errors.items():
        out += [f"**Not valid at the {side} revision:**", "", _fence(error), ""]
    if report.note:
        out += [f"_{report.note}_", ""]
    diff = report.diff
    if diff is not None and diff.rules:
        out += ["| | rule | change | provenance |", "|:-:|---|---|---|"]
        out += [
            f"| {KIND_MARK[c.kind]} | `{c.id}` | {_cell(c.describe())} | "
            f"{_cell(format_provenance(c.provenance)) or '—'} |"
            for c in diff.rules
        ]
        out.append("")
        out += _details("Rule texts", "\n\n".join(_md_rule(c) for c in diff.rules))
    calibration = next((f for f in diff.fields if f.field == "calibration"), None) if diff else None
    if calibration is not None and calibration.notes:  # beside the rules, not folded away
        out += [f"**Calibration:** {_cell('; '.join(calibration.notes))}", ""]
    if diff is not None and diff.fields:
        out += _details(
            ", ".join(f.field for f in diff.fields) + " changed",
            "\n\n".join(_md_field(f) for f in diff.fields),
        )
    for suite in report.suites:
        out += _md_suite(suite)
    return out


def _md_rule(change: RuleChange) -> str:
    head = f"**`{change.id}`** {_html(change.describe())}"
    label = (change.new or change.old or {}).get("label")
    if label:
        head += f" · label {label}"
    if change.kind == "reworded":
        assert change.old is not None and change.new is not None
        body = _fence(f"- {change.old['text']}\n+ {change.new['text']}", "diff")
    else:
        body = _quote(str((change.new or change.old or {}).get("text", "")))
    return f"{head}\n\n{body}"


def _md_field(change: FieldChange) -> str:
    old = "\n".join("- " + line for line in _field_value(change.old).splitlines())
    new = "\n".join("+ " + line for line in _field_value(change.new).splitlines())
    notes = "".join(f"- {_html(note)}\n" for note in change.notes)
    return (
        f"**{change.field}**\n\n"
        + (notes + "\n" if notes else "")
        + _fence(f"{old}\n{new}", "diff")
    )


def _md_suite(report: SuiteReport) -> list[str]:
    facts = [
        report.split,
        f"{report.examples or report.limit or 'all'} examples",
        f"`{report.model}`",
    ]
    out = [
        f"**Suite `{report.suite}`** ({', '.join(facts)})"
        + (f" · {_size(report)}" if _size(report) else "")
        + (f" · {report.model_calls} model calls" if report.model_calls else ""),
        "",
    ]
    if report.note:
        out += [f"_{report.note}_", ""]
    if report.calibration:
        answers = _answers_text(report)
        out += [_cell(answers[0].upper() + answers[1:]), ""]
    if report.metrics:
        out += _md_metric_rows(report.metrics)
        if report.raw_metrics:
            out += ["", "Raw students (each side's answers before calibration):", ""]
            out += _md_metric_rows(report.raw_metrics)
        if report.calibration_note:
            out += ["", f"_{_html(report.calibration_note)}_"]
        out += [
            "",
            (
                f"Flipped: {len(report.right_to_wrong)} right → wrong, "
                f"{len(report.wrong_to_right)} wrong → right."
            ),
            "",
            *(f"{line[0].upper()}{line[1:]}." for line in _stats_lines(report)),
            "",
        ]
        if report.right_to_wrong or report.wrong_to_right:
            out += _details("Flipped examples", _md_flips(report))
    if report.prompt_diff:
        body = "\n".join(_clip(report.prompt_diff.splitlines(), MAX_DIFF_LINES))
        out += _details("Rendered system prompt diff", _fence(body, "diff"))
    return out


def _md_metric_rows(rows: list[MetricDelta]) -> list[str]:
    out = ["| metric | base | head | Δ | 95% interval | |", "|---|--:|--:|--:|--:|---|"]
    return out + [
        f"| {_cell(m.name)} | {_num(m.base, m.name)} | {_num(m.head, m.name)} | "
        f"{_signed(m.delta, m.name)} | {_interval(m)} | {VERDICT_MARK[m.verdict]} |"
        for m in rows
    ]


def _answers_text(report: SuiteReport) -> str:
    """'answers: base calibrated (...); head raw (no calibration)'."""
    sides = "; ".join(f"{side} {kind}" for side, kind in report.calibration.items())
    return f"answers: {sides}"


def _md_flips(report: SuiteReport) -> str:
    rows = ["| example | gold | base | head | |", "|---|---|---|---|---|"]
    for kind, flips in (
        ("right → wrong", report.right_to_wrong),
        ("wrong → right", report.wrong_to_right),
    ):
        rows += [
            f"| `{_cell(f.id)}` | {_cell(f.gold)} | {_cell(f.base)} | {_cell(f.head)} | {kind} |"
            for f in flips[:MAX_FLIPS]
        ]
        if len(flips) > MAX_FLIPS:
            rows.append(f"| ... | | | | {len(flips) - MAX_FLIPS} more {kind} |")
    return "\n".join(rows)


# --- plain text ---------------------------------------------------------------------------------


def _indent(value: str, prefix: str) -> list[str]:
    return [prefix + line for line in value.splitlines()]


def text(review: Review) -> str:
    out = [f"pld review: {review.base.description} -> {review.head.description}"]
    out += [f"note: {note}" for note in review.notes]
    if not review.sets:
        out.append(f"no instruction changes ({review.unchanged} instruction sets compared)")
        return "\n".join(out) + "\n"
    for report in review.sets:
        out += ["", f"{report.path}: {_title(report).replace('→', '->')}"]
        out += _text_set(report)
    if review.unchanged:
        out += ["", f"{review.unchanged} other instruction sets unchanged"]
    return "\n".join(out) + "\n"


def _text_set(report: SetReport) -> list[str]:
    out: list[str] = []
    for side, error in report.errors.items():
        out += [f"  not valid at the {side} revision:", *_indent(error, "    ")]
    if report.note:
        out.append(f"  note: {report.note}")
    diff = report.diff
    for change in diff.rules if diff else ():
        prov = format_provenance(change.provenance)
        out.append(
            f"  {KIND_MARK[change.kind]} {change.id}  {change.describe(arrow='->')}"
            + (f"  [{prov}]" if prov else "")
        )
        if change.kind == "reworded":
            assert change.old is not None and change.new is not None
            out += [f"      - {change.old['text']}", f"      + {change.new['text']}"]
        else:
            out += _indent(str((change.new or change.old or {}).get("text", "")), "      ")
    for fc in diff.fields if diff else ():
        out.append(f"  {fc.field} changed:")
        if fc.notes:  # the words say it; the values (a calibration's) are long
            out += [f"    {note}" for note in fc.notes]
            continue
        out += _indent(_field_value(fc.old), "    - ") + _indent(_field_value(fc.new), "    + ")
    for suite in report.suites:
        out += _text_suite(suite)
    return out


def _text_suite(report: SuiteReport) -> list[str]:
    facts = [report.split, f"{report.examples or report.limit or 'all'} examples", report.model]
    if _size(report):
        facts.append(_size(report).replace("→", "->"))
    if report.model_calls:
        facts.append(f"{report.model_calls} model calls")
    out = [f"  suite {report.suite} ({', '.join(facts)})"]
    if report.note:
        out.append(f"    note: {report.note}")
    if report.calibration:
        out.append(f"    {_answers_text(report)}")
    if report.metrics:
        out += _text_metric_rows(report.metrics)
        if report.raw_metrics:
            out.append("    raw students (each side's answers before calibration):")
            out += _text_metric_rows(report.raw_metrics)
        if report.calibration_note:
            out.append(f"    note: {report.calibration_note}")
        out += [f"    {line}" for line in _stats_lines(report)]
        out += _text_flips("right -> wrong", report.right_to_wrong)
        out += _text_flips("wrong -> right", report.wrong_to_right)
    if report.prompt_diff:
        out.append("    rendered system prompt diff:")
        out += _indent("\n".join(_clip(report.prompt_diff.splitlines(), MAX_DIFF_LINES)), "      ")
    return out


def _text_metric_rows(rows: list[MetricDelta]) -> list[str]:
    out = [f"    {'metric':<24} {'base':>7} {'head':>7} {'delta':>8}  95% interval"]
    return out + [
        f"    {m.name:<24} {_num(m.base, m.name):>7} {_num(m.head, m.name):>7} "
        f"{_signed(m.delta, m.name):>8}  {_interval(m)}"
        + (f"  {m.verdict}" if m.verdict in ("better", "worse") else "")
        for m in rows
    ]


def _text_flips(kind: str, flips: list[Flip]) -> list[str]:
    if not flips:
        return [f"    flipped {kind}: none"]
    shown = ", ".join(f"{f.id} ({f.gold}: {f.base} -> {f.head})" for f in flips[:MAX_FLIPS])
    more = f" and {len(flips) - MAX_FLIPS} more" if len(flips) > MAX_FLIPS else ""
    return [f"    flipped {kind} ({len(flips)}): {shown}{more}"]


def suite_markdown(report: SuiteReport) -> list[str]:
    """One suite's comparison as Markdown lines (`pld compare` prints the same block)."""
    return _md_suite(report)


def suite_text(report: SuiteReport) -> list[str]:
    """One suite's comparison as text lines (`pld compare` prints the same block)."""
    return _text_suite(report)


__all__ = ["markdown", "render", "suite_markdown", "suite_text", "text"]
