"""A suite's `gates:` section: metric bounds ('>= 0.6'), an optional regression gate against a
committed baseline, and how the per-class gates' tests are corrected as one family."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import metrics
from ..errors import PldError, did_you_mean
from ..problems import Problems
from ..verdicts import POWER_POLICIES
from ..yamlio import line_of
from .model import Bound, RegressionGate

REGRESSION_KEYS = {"metric", "baseline", "margin", "confidence", "power"}
#: `gates.family`: how the per-class gates' one-sided tests are corrected as one family
FAMILY_CORRECTIONS = ("holm", "none")
_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
BOUND_FORMS = "'>= 0.6', '> 0.6', '<= 1.15' or '< 6000'"


def parse_bound(metric: str, raw: Any, *, path: Path, line: int | None) -> Bound:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raise PldError(
            f"bound {raw!r} has no comparison",
            path=path,
            line=line,
            key=f"gates.{metric}",
            hint=f"write it as {BOUND_FORMS}",
        )
    match = _BOUND.match(str(raw)) if isinstance(raw, str) else None
    if not match:
        raise PldError(
            f"malformed bound {raw!r}",
            path=path,
            line=line,
            key=f"gates.{metric}",
            hint=f"write it as {BOUND_FORMS}",
        )
    return Bound(metric, match[1], float(match[2]), line)


def parse_gates(
    doc: Mapping[str, Any], labels: Sequence[str], problems: Problems
) -> tuple[list[Bound], RegressionGate | None, str]:
    """(the metric bounds, the regression gate or None, the family correction)."""
    path, errors = problems.path, problems.errors
    bounds: list[Bound] = []
    regression: RegressionGate | None = None
    family = "holm"
    gates = doc.get("gates")
    if gates is None or (isinstance(gates, Mapping) and not gates):
        problems.add(
            "a suite needs at least one gate",
            doc,
            "gates" if "gates" in doc else None,
            "gates",
            hint="for example gates: {macro_f1: '>= 0.5'}",
        )
        return bounds, regression, family
    if not isinstance(gates, Mapping):
        problems.add("expected a mapping metric -> bound", doc, "gates", "gates")
        return bounds, regression, family
    for mname, raw in gates.items():
        line = line_of(gates, mname)
        if mname == "regression":
            regression = _parse_regression(raw, path, line, labels, errors)
            continue
        if mname == "family":
            family = _parse_choice(raw, FAMILY_CORRECTIONS, path, line, "gates.family", errors)
            continue
        try:
            metrics.lookup(str(mname), labels or None)
        except KeyError as exc:
            errors.append(
                PldError(
                    f"{exc.args[0]}",
                    path=path,
                    line=line,
                    key=f"gates.{mname}",
                    hint=f"metrics: {', '.join(metrics.metric_names())}, regression, family",
                )
            )
            continue
        try:
            bounds.append(parse_bound(str(mname), raw, path=path, line=line))
        except PldError as exc:
            errors.append(exc)
    return bounds, regression, family


def _parse_regression(
    raw: Any, path: Path, line: int | None, labels: Sequence[str], errors: list[PldError]
) -> RegressionGate | None:
    if not isinstance(raw, Mapping):
        errors.append(
            PldError(
                "expected {metric, baseline, margin, confidence, power}",
                path=path,
                line=line,
                key="gates.regression",
            )
        )
        return None
    bad = False
    for key in raw:
        if key not in REGRESSION_KEYS:
            errors.append(
                PldError(
                    f"unknown key{did_you_mean(str(key), REGRESSION_KEYS)}",
                    path=path,
                    line=line_of(raw, key),
                    key=f"gates.regression.{key}",
                    hint=f"allowed: {', '.join(sorted(REGRESSION_KEYS))}",
                )
            )
            bad = True
    mname, baseline = raw.get("metric", "macro_f1"), raw.get("baseline")
    try:
        entry, _ = metrics.lookup(str(mname), labels or None)
        if not entry.resamplable:
            raise KeyError(f"metric {mname!r} cannot be compared by paired bootstrap")
    except KeyError as exc:
        errors.append(
            PldError(
                f"{exc.args[0]}",
                path=path,
                line=line_of(raw, "metric"),
                key="gates.regression.metric",
            )
        )
        bad = True
    if not isinstance(baseline, str) or not baseline.strip():
        errors.append(
            PldError(
                "baseline must be a project-relative path",
                path=path,
                line=line_of(raw, "baseline") or line,
                key="gates.regression.baseline",
            )
        )
        bad = True
    power = raw.get("power")
    if power is not None:
        power = _parse_choice(
            power, POWER_POLICIES, path, line_of(raw, "power"), "gates.regression.power", errors
        )
        bad = bad or power is None
    margin, confidence = raw.get("margin", 0.02), raw.get("confidence", 0.95)
    if not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        errors.append(
            PldError(
                "margin must be a number in [0, 1)",
                path=path,
                line=line_of(raw, "margin"),
                key="gates.regression.margin",
            )
        )
        bad = True
    if not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        errors.append(
            PldError(
                "confidence must be a number in [0.5, 1)",
                path=path,
                line=line_of(raw, "confidence"),
                key="gates.regression.confidence",
            )
        )
        bad = True
    if bad:
        return None
    return RegressionGate(
        str(mname), str(baseline), float(margin), float(confidence), line, power=power
    )


def _parse_choice(
    raw: Any, choices: Sequence[str], path: Path, line: int | None, key: str, errors: list[PldError]
) -> Any:
    """`raw` when it is one of `choices`; otherwise an error is recorded and None returned."""
    if isinstance(raw, str) and raw in choices:
        return raw
    errors.append(
        PldError(
            f"expected one of {', '.join(choices)}, got {raw!r}",
            path=path,
            line=line,
            key=key,
        )
    )
    return None
