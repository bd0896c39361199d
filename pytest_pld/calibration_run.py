"""Applying an instruction set's calibration in a run: the runner checks it is fresh before
any model call (`require_fresh`), then adds the offsets to every result's label scores before
the answer is taken (`calibrate_results`), keeping the student's own answer beside the
calibrated one. A stale calibration, or results without every label's score, is an error:
raw answers are never labelled calibrated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .calibration import Calibration, Scored, refit_command, require_scores, suite_problems
from .errors import PldError, PldErrors

#: How to see the raw student instead, for the hint of a refused calibration.
SWITCH_OFF = "--no-calibration (pytest: --pld-no-calibration)"


def require_fresh(
    cal: Calibration,
    *,
    labels: Sequence[str],
    student: str,
    system_prompt: str,
    suite: str,
    backend: Mapping[str, object] | None,
) -> None:
    """PldErrors when the calibration cannot be applied to this suite's run (`suite_problems`),
    each with the hint that switching calibration off shows the raw student."""
    problems = suite_problems(
        cal,
        labels=labels,
        student=student,
        system_prompt=system_prompt,
        suite=suite,
        backend=backend,
    )
    if problems:
        refit = refit_command(suite)
        hint = f"refit and commit it ({refit}), or see the raw student with {SWITCH_OFF}"
        raise PldErrors(
            [PldError(p.message, path=p.path, line=p.line, key=p.key, hint=hint) for p in problems]
        )


class Answered(Scored, Protocol):
    """A result whose answer calibration replaces (`record.ExampleResult` has it)."""

    pred: str
    raw_pred: str | None
    tie: bool | None


def calibrate_results(
    cal: Calibration, results: Sequence[Answered], labels: Sequence[str], *, student: str
) -> None:
    """Calibrate the results in place: the student's own answer moves to `raw_pred`, `pred`
    becomes the calibrated answer and `tie` says whether the calibrated scores tied. A PldError
    (before anything changes) when any result lacks a label's score."""
    require_scores(results, labels, student=student)
    for r in results:
        r.raw_pred = r.pred
        r.pred, r.tie = cal.decide(r.scores or {}, r.id)
