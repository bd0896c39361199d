"""`pld compare`'s result (`pytest_pld.compare.Comparison`) as text, Markdown or JSON, the
paired part in the review's own format."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .markdown_tables import md_cell
from .review import suite_markdown, suite_text

if TYPE_CHECKING:
    from ..compare import Comparison


NOT_COMPARABLE_TEXT = "not comparable: these records cannot be paired example by example"


def render(comparison: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(comparison), indent=1, ensure_ascii=False) + "\n"
    if fmt == "md":
        return markdown(comparison)
    return text(comparison)


def to_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "schema": 1,
        "comparable": comparison.comparable,
        "a": asdict(comparison.a),
        "b": asdict(comparison.b),
        "problems": list(comparison.problems),
        "comparison": asdict(comparison.report) if comparison.report else None,
    }


def text(comparison: Comparison) -> str:
    out = [
        "pld compare (deltas are B - A; base = A, head = B)",
        f"  A {comparison.a.line()}",
        f"  B {comparison.b.line()}",
    ]
    if not comparison.comparable:
        out.append(NOT_COMPARABLE_TEXT + ":")
        out += [f"  {problem}" for problem in comparison.problems]
    if comparison.report is not None:
        out += suite_text(comparison.report)
    return "\n".join(out) + "\n"


def markdown(comparison: Comparison) -> str:
    out = [
        "### pld compare",
        "",
        "Deltas are B - A (base = A, head = B).",
        "",
        f"- **A** {md_cell(comparison.a.line())}",
        f"- **B** {md_cell(comparison.b.line())}",
        "",
    ]
    if not comparison.comparable:
        out += [f"**{NOT_COMPARABLE_TEXT[0].upper()}{NOT_COMPARABLE_TEXT[1:]}:**", ""]
        out += [f"- {md_cell(problem)}" for problem in comparison.problems]
    if comparison.report is not None:
        out += suite_markdown(comparison.report)
    return "\n".join(out).rstrip() + "\n"


__all__ = ["NOT_COMPARABLE_TEXT", "markdown", "render", "text", "to_json"]
