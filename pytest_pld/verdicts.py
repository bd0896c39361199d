"""What a gate's verdict is worth: the power of a regression gate and the family of per-class gates.

`stats` computes the numbers; this module decides what they mean for a gate and says it in
words that the failure message, the terminal table, JUnit and the Markdown report share. The
texts take plain numbers, because the summary is rebuilt from test-report properties (under
pytest-xdist only those reach the process that prints it).

Semantics (README, "Gates"):

- A regression gate fails when the paired (clustered) bootstrap shows a drop beyond its margin.
  It is *underpowered* when the smallest drop it would catch with 80% power (the minimum
  detectable drop) exceeds the margin: then a pass partly means "could not see". The power
  policy says whether that fails the gate: `warn` (default) or `fail`.
- Threshold gates pass or fail on the observed value, exactly as before. The per-class gates of
  a suite (`f1[L]`, `precision[L]`, `recall[L]`) also form a family: each has a one-sided test
  of "the true value violates the bound", Holm-corrected across the family, reported beside the
  verdict so that a reviewer can tell a shortfall that is evidence from one within the noise of
  several gates run at once. The correction never turns a pass into a failure or back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .metrics import ClusterIds, Predictions
    from .suite import Bound

#: What an underpowered regression gate does when neither the command line nor the suite nor the
#: ini file says: a warning. PR samples are small by design; see the README for nightly runs.
DEFAULT_POWER = "warn"
POWER_POLICIES = ("warn", "fail")


def resolve_power(option: str | None, suite: str | None, ini: str | None) -> str:
    """The power policy of one regression gate: `--pld-power` beats the suite's
    `gates.regression.power`, which beats the ini key `pld_power` (the more specific setting
    wins, and the command line is the most specific: one job, one policy)."""
    for value in (option, suite, ini):
        if value:
            return value
    return DEFAULT_POWER


# --- families of per-class gates ----------------------------------------------------------------


@dataclass(frozen=True)
class FamilyMember:
    """One per-class gate's test within its family."""

    gate: str
    p_value: float  # one-sided: small is evidence that the true value violates the bound
    adjusted_p: float  # Holm-adjusted over the family (= p_value when the correction is none)
    size: int  # gates in the family
    correction: str  # holm | none
    alpha: float

    @property
    def violated(self) -> bool:
        """The raw test's verdict: evidence of a violation, this gate alone."""
        return self.p_value <= self.alpha

    @property
    def violated_adjusted(self) -> bool:
        """The verdict after the family correction."""
        return self.adjusted_p <= self.alpha


def is_per_class(bound: Bound) -> bool:
    return "[" in bound.metric


def family_tests(
    bounds: Sequence[Bound],
    preds: Predictions,
    *,
    correction: str,
    alpha: float,
    clusters: ClusterIds | None = None,
    n_resamples: int = 1000,
) -> dict[str, FamilyMember]:
    """gate label -> its family test, for the per-class bounds among `bounds`.

    Every member is tested on the same resamples (same examples or clusters, same seed), and
    Holm's correction holds under any dependence between them, which per-class scores of one
    run certainly have.
    """
    from . import stats

    members = [b for b in bounds if is_per_class(b)]
    p_values: dict[str, float] = {}
    for bound in members:
        op: Literal[">=", "<="] = ">=" if bound.op in (">=", ">") else "<="
        test = stats.bound_test(
            bound.metric,
            preds,
            op=op,
            bound=bound.value,
            clusters=clusters,
            n_resamples=n_resamples,
        )
        p_values[bound.label] = test.p_violated
    if correction == "holm":
        adjusted = {k: v.adjusted_p for k, v in stats.holm(p_values, alpha=alpha).items()}
    else:
        adjusted = dict(p_values)
    return {
        label: FamilyMember(label, p, adjusted[label], len(members), correction, alpha)
        for label, p in p_values.items()
    }


def fmt_p(p_value: float) -> str:
    return "< 0.001" if p_value < 0.001 else f"= {p_value:.3f}"


def violation_words(bound: Bound) -> str:
    """'f1[A] below 0.5': what the family test of a gate tests for."""
    side = "below" if bound.op in (">=", ">") else "above"
    return f"{bound.metric} {side} {bound.value:g}"


def family_text(
    gate: str,
    p_value: float,
    adjusted_p: float,
    size: int,
    correction: str,
    alpha: float,
    violation: str = "",
) -> str:
    """'f1[A]>=0.5: p = 0.012 (significant), Holm-adjusted over 3 gates p = 0.036
    (significant)': the raw and the adjusted verdict of "the true value violates the bound";
    `violation` says it in words ('a true f1[A] below 0.5')."""

    def verdict(p: float) -> str:
        return "significant" if p <= alpha else "not significant"

    words = f" of a true {violation}" if violation else ""
    text = f"{gate}: one-sided p{words} {fmt_p(p_value)} ({verdict(p_value)})"
    if correction == "holm":
        text += f", Holm-adjusted over {size} gates p {fmt_p(adjusted_p)} ({verdict(adjusted_p)})"
    return text


# --- regression gates: power and McNemar --------------------------------------------------------


def power_text(
    *,
    detectable: float,
    margin: float,
    confidence: float,
    needed_examples: int | None,
    needed_clusters: int | None,
    policy: str,
    drop_seen: bool = False,
    power: float = 0.8,
) -> str:
    """The detectable drop against the margin, and what it would take to reach it.

    `drop_seen`: the gate failed on a drop beyond its margin, which it saw despite its power.
    """
    at = f"({confidence:.0%} confidence, {power:.0%} power)"
    if detectable <= margin:
        return f"detectable drop {detectable:.3f} {at} is within the margin {margin:g}"
    if drop_seen:
        return (
            f"detectable drop {detectable:.3f} {at} exceeds the margin {margin:g}, but this "
            "drop was large enough to be seen"
        )
    text = f"underpowered: the detectable drop {detectable:.3f} {at} exceeds the margin {margin:g}"
    if needed_examples is None:
        text += "; no sample size reaches a margin of 0"
    else:
        text += f"; about {needed_examples} examples" + (
            f" ({needed_clusters} clusters)" if needed_clusters is not None else ""
        )
        text += " would bring it to the margin"
    consequence = "so the gate fails" if policy == "fail" else "a warning, not a failure"
    return f"{text} (power: {policy}, {consequence})"


def mcnemar_text(worse: int, better: int, p_value: float) -> str:
    return (
        f"McNemar exact test of correctness: {worse} right -> wrong, {better} wrong -> right, "
        f"p {fmt_p(p_value)} (two-sided; treats examples as independent)"
    )


def result_word(passed: bool, underpowered: bool, drop_seen: bool = False) -> str:
    """The result cell: 'pass', 'FAIL', with ', underpowered' when the verdict rests on a gate
    that could not have seen a drop of its margin (not when it failed on a drop it saw)."""
    word = "pass" if passed else "FAIL"
    return f"{word}, underpowered" if underpowered and not drop_seen else word


def facts_of(values: Mapping[str, object]) -> list[tuple[str, object]]:
    """Report properties without the values a gate did not have (None)."""
    return [(k, v) for k, v in values.items() if v is not None]


__all__ = [
    "DEFAULT_POWER",
    "POWER_POLICIES",
    "FamilyMember",
    "facts_of",
    "family_tests",
    "family_text",
    "fmt_p",
    "is_per_class",
    "mcnemar_text",
    "power_text",
    "resolve_power",
    "result_word",
    "violation_words",
]
