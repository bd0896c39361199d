"""Numbers as people read them, in every report and failure message: one function, so a gate's
failure and the summary table never disagree about a digit.

A low-level module (it imports nothing of the package): gates and the core may use it without
importing presentation.
"""

from __future__ import annotations

import math

#: metrics counted in whole tokens
WHOLE = {"prompt_tokens", "rendered_prompt_tokens"}


def fmt(value: float | None, metric: str = "", signed: bool = False) -> str:
    """Numbers as people read them: scores with 3 decimals, tokens whole, ms to 0.1."""
    if value is None or math.isnan(value):
        return "-"
    if metric in WHOLE or abs(value) >= 100:
        return f"{value:.0f}"
    if metric.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
