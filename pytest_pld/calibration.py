"""Calibration as code: per-label offsets on the student's label scores, fitted once, versioned
in the instruction set's `calibration:` section and checked for staleness like a lockfile entry.

A small student's label scores carry a prior of their own (the 0.5B student answers "gender"
for most StereoSet sentences). Adding one constant per label to the scores (log-probabilities)
before the answer is taken moves that prior and nothing else. The rendered system prompt does
not change, so the cached raw scores stay valid across calibrations: refitting costs no model
call for examples already scored.

Fitting methods:

- `prior-shift` (supervised, bias-only): the offsets that maximise macro-F1 on labelled
  examples of a split that is not gated (dev), by `prior_shift.fit_on`'s exact search.
- `contextual` (label-free; Zhao et al. 2021, "Calibrate Before Use"): the student scores a
  few content-free inputs ("N/A", "", "[MASK]") written into every field of the suite's user
  template; their label probabilities (renormalised over the labels) are averaged into the
  student's prior p, and the offsets are -log p, which divides each probability by the prior's.

A per-class affine fit (a scale and an offset per label, class-balanced cross-entropy) was
measured against prior-shift on StereoSet dev with the 0.5B student (fitted on the selection
fold, scored on the held-back fold, and in 5-fold cross-validation by target) and did worse in
both, so it is not offered.

Freshness: the section records the student, the sha256 of the rendered system prompt it was
fitted with and (since part B) the sha256 of the student backend's scoring identity (weights,
dtype, scoring method: `scoring_digest`). Fitted for another student, for another prompt (a rule
edited, a definition reworded) or with scores computed another way (the same model in float32
instead of bfloat16), it is stale, and `is_stale` says what changed and which command refits
it. A section written before the backend digest existed is read as before and not checked for
it.

Applying it in a run is `calibration_run`.

The instruction file holds a calibration in its `calibration:` section (`calibration_section`
reads and writes it). It is part of the set's `content_hash`: it changes answers, so run records
and review must not take two sets that differ only in it for one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from .errors import PldError
from .labels import top_label

PRIOR_SHIFT, CONTEXTUAL = "prior-shift", "contextual"
METHODS = {
    PRIOR_SHIFT: "offsets fitted to maximise macro-F1 on labelled examples",
    CONTEXTUAL: "offsets from content-free inputs, no labels needed",
}
#: Zhao et al.'s content-free inputs, each written into every field of the user template.
CONTENT_FREE = ("N/A", "", "[MASK]")
#: Decimals kept of an offset: the file stays legible, and the metrics are measured with the
#: rounded offsets, so what the file claims is what it does.
DIGITS = 4
CONFIDENCE = 0.95


class Scored(Protocol):
    """What calibration reads of a result (`runner.ExampleResult` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def gold(self) -> str: ...
    @property
    def pred(self) -> str: ...
    @property
    def scores(self) -> Mapping[str, float] | None: ...
    @property
    def cluster(self) -> str | None: ...


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the sorted ids, one a line: which examples, whatever their order."""
    return sha256_text("\n".join(sorted(ids)))


def refit_command(suite: str | None) -> str:
    return f"pld calibrate {suite or 'SUITE'} --write"


#: Backend identity keys that never change a label score: where the server runs, how long an
#: answer may be, how many alternatives a server lists (which labels get a score, not its
#: value), the sampling seed. Everything else (weights, dtype, scoring method, revision, ...)
#: is part of the scoring identity.
NOT_SCORING = frozenset({"base_url", "max_tokens", "top_logprobs", "seed"})


def scoring_digest(identity: Mapping[str, object]) -> str:
    """sha256 of the backend identity's keys that change label scores: the same model run in
    float32 or bfloat16, or with other weights, gives another digest; another server URL does
    not."""
    kept = {k: v for k, v in identity.items() if k not in NOT_SCORING}
    return sha256_text(json.dumps(kept, sort_keys=True, ensure_ascii=False, default=str))


def describe_fit(method: str, split: str, examples: int, student: str, inputs: int = 0) -> str:
    """'prior-shift, fitted on dev (310 examples) for local:qwen...' (a contextual fit names
    its content-free inputs): for a `Calibration` and for a run record's copy of one."""
    source = f"{inputs} content-free inputs, measured on {split}" if method == CONTEXTUAL else split
    return f"{method}, fitted on {source} ({examples} examples) for {student}"


def describe_section(section: Mapping[str, Any]) -> str:
    """`describe_fit` of a calibration as plain data (`calibration_section.to_yaml`, which a
    run record keeps)."""
    fitted = section.get("fitted") or {}
    return describe_fit(
        str(section.get("method")),
        str(fitted.get("split")),
        int(fitted.get("examples") or 0),
        str(fitted.get("student")),
        len(fitted.get("inputs") or ()),
    )


@dataclass(frozen=True)
class Calibration:
    method: str
    offsets: Mapping[str, float]  # label -> added to its score; every label of the suite
    student: str
    system_prompt_sha256: str
    split: str
    examples: int
    ids_sha256: str
    macro_f1_before: float | None = None
    macro_f1_after: float | None = None
    gain_interval: tuple[float, float] | None = None
    inputs: tuple[str, ...] = ()  # contextual: the content-free inputs
    #: `scoring_digest` of the backend the scores came from (None: a section written before
    #: it was recorded, not checked)
    backend_sha256: str | None = None
    #: the file and lines the section was read from, for errors found where it meets a suite
    path: Path | None = field(default=None, compare=False, repr=False)
    lines: Mapping[str, int | None] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "offsets", MappingProxyType(dict(self.offsets)))

    def apply(self, scores: Mapping[str, float]) -> dict[str, float]:
        """The calibrated scores. Every label must be scored, and no other: a missing score
        cannot be calibrated, and guessing one would label a guess as calibrated."""
        wrong = _mismatch(
            self.offsets, scores, "no score for", "scores for labels it has no offset for:"
        )
        if wrong:
            raise PldError(
                f"cannot calibrate these scores: {wrong}",
                path=self.path,
                line=self.lines.get("offsets"),
                key="calibration.offsets",
                hint="the offsets must name exactly the labels scored; refit with: "
                f"{refit_command(None)}",
            )
        return {label: float(scores[label]) + offset for label, offset in self.offsets.items()}

    def answer(self, scores: Mapping[str, float], example_id: str) -> str:
        """The calibrated answer. An exact tie goes as `labels.top_label` sends it (by a hash
        of the example id and the label), so the answer does not depend on the label order."""
        return self.decide(scores, example_id)[0]

    def decide(self, scores: Mapping[str, float], example_id: str) -> tuple[str, bool]:
        """The calibrated answer and whether the calibrated scores tied exactly (`answer`)."""
        return top_label(self.apply(scores), example_id)

    def is_stale(
        self,
        student: str,
        system_prompt: str,
        *,
        suite: str | None = None,
        backend: Mapping[str, object] | None = None,
        name_refit: bool = True,
    ) -> str | None:
        """Why these offsets no longer fit (None: they do): fitted for another student, with
        another rendered system prompt, or (given the `backend` identity, and when the section
        records one) with scores computed another way. The reason names the refit command,
        unless `name_refit` is false (a caller that says it once after all its problems)."""
        refit = f"; refit with: {refit_command(suite)}" if name_refit else ""
        if student != self.student:
            return (
                f"the calibration is stale: fitted for student {self.student}, but the "
                f"student is {student}{refit}"
            )
        now = sha256_text(system_prompt)
        if now != self.system_prompt_sha256:
            return (
                "the calibration is stale: fitted with another system prompt (sha256 "
                f"{self.system_prompt_sha256[:12]}..., now {now[:12]}...: the rules, preamble, "
                f"label definitions, examples or template changed since){refit}"
            )
        if backend is not None and self.backend_sha256 is not None:
            digest = scoring_digest(backend)
            if digest != self.backend_sha256:
                dtype = (
                    f"; the student now runs in {backend['dtype']}" if "dtype" in backend else ""
                )
                return (
                    f"the calibration is stale: fitted with scores from another configuration of "
                    f"{student} (scoring identity sha256 {self.backend_sha256[:12]}..., now "
                    f"{digest[:12]}...: its weights, dtype or scoring method differ{dtype})"
                    f"{refit}"
                )
        return None

    def label_problem(self, labels: Sequence[str]) -> str | None:
        """What is wrong with the offsets' labels for a suite with `labels` (None: nothing)."""
        return _mismatch(
            labels, self.offsets, "no offset for", "offsets for labels the suite does not have:"
        )

    def describe(self) -> str:
        """One line: 'prior-shift, fitted on dev (310 examples) for local:qwen...'."""
        return describe_fit(self.method, self.split, self.examples, self.student, len(self.inputs))


def _mismatch(
    wanted: Iterable[str], got: Iterable[str], missing_text: str, unknown_text: str
) -> str | None:
    """'no score for a, b; ...' for what `got` lacks of `wanted` and has beyond it; None when
    the two hold the same labels."""
    wanted, got = list(wanted), list(got)
    parts = []
    missing = [label for label in wanted if label not in got]
    unknown = [label for label in got if label not in wanted]
    if missing:
        parts.append(f"{missing_text} {', '.join(missing)}")
    if unknown:
        parts.append(f"{unknown_text} {', '.join(unknown)}")
    return "; ".join(parts) or None


# --- label scores -------------------------------------------------------------------------------


def missing_scores(results: Sequence[Scored], labels: Sequence[str]) -> list[Scored]:
    """The results that do not score every label."""
    return [r for r in results if not r.scores or any(label not in r.scores for label in labels)]


def require_scores(results: Sequence[Scored], labels: Sequence[str], *, student: str) -> None:
    """A PldError unless every result scores every label: calibration never falls back to raw
    answers while saying they are calibrated."""
    lacking = missing_scores(results, labels)
    if not lacking:
        return
    none = sum(1 for r in lacking if not r.scores)
    partial = len(lacking) - none
    what = []
    if none:
        what.append(f"no label scores for {none}")
    if partial:
        what.append(f"scores for only some labels for {partial}")
    raise PldError(
        f"{student} returned {' and '.join(what)} of {len(results)} examples (first: "
        f"{lacking[0].id}); a calibration needs every label's score for every example",
        hint="a local: student scores every label; behind a server, scores come from the "
        "first answer token's top_logprobs (vLLM, llama.cpp's server and OpenAI return them, "
        "`transformers serve` does not), and only for labels whose first tokens differ and "
        "are among the top N",
    )


def calibrated_answers(
    cal: Calibration, results: Sequence[Scored], labels: Sequence[str], *, student: str
) -> list[str]:
    """The calibrated answer of every result; a PldError when any lacks a label score."""
    require_scores(results, labels, student=student)
    return [cal.answer(r.scores or {}, r.id) for r in results]


# --- fitting ------------------------------------------------------------------------------------


def _rounded(offsets: Mapping[str, float]) -> dict[str, float]:
    return {label: round(float(value), DIGITS) + 0.0 for label, value in offsets.items()}


def fit_prior_shift(
    results: Sequence[Scored], labels: Sequence[str], *, student: str
) -> dict[str, float]:
    """Offsets that maximise macro-F1 on these labelled results (`prior_shift.fit_on`)."""
    from .prior_shift import fit_results

    require_scores(results, labels, student=student)
    shift = fit_results(results, labels)
    return _rounded(shift.offsets)


def fit_contextual(
    score_rows: Sequence[Mapping[str, float]], labels: Sequence[str]
) -> dict[str, float]:
    """-log of the mean label probability over content-free inputs (renormalised over the
    labels), computed in log space so that no probability underflows to 0."""
    if not score_rows:
        raise PldError("contextual calibration needs at least one content-free input")

    def logsumexp(values: Sequence[float]) -> float:
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    per_label: dict[str, list[float]] = {label: [] for label in labels}
    for row in score_rows:
        norm = logsumexp([row[label] for label in labels])
        for label in labels:
            per_label[label].append(row[label] - norm)
    n = len(score_rows)
    return _rounded({label: -(logsumexp(logs) - math.log(n)) for label, logs in per_label.items()})


def fitted(
    method: str,
    offsets: Mapping[str, float],
    results: Sequence[Scored],
    labels: Sequence[str],
    *,
    student: str,
    system_prompt_sha256: str,
    split: str,
    inputs: Sequence[str] = (),
    backend_sha256: str | None = None,
    resamples: int = 1000,
) -> Calibration:
    """The calibration of `offsets`, with its provenance and its macro-F1 on `results` before
    and after (measured with the offsets as written, and the paired interval of the gain)."""
    from . import metrics
    from .example_clusters import complete

    cal = Calibration(
        method=method,
        offsets=MappingProxyType(dict(offsets)),
        student=student,
        system_prompt_sha256=system_prompt_sha256,
        split=split,
        examples=len(results),
        ids_sha256=ids_digest([r.id for r in results]),
        inputs=tuple(inputs),
        backend_sha256=backend_sha256,
    )
    gold = tuple(r.gold for r in results)
    before = metrics.Predictions(tuple(labels), gold, tuple(r.pred for r in results))
    after = dataclasses.replace(
        before, pred=tuple(calibrated_answers(cal, results, labels, student=student))
    )
    _, low, high = metrics.paired_bootstrap_delta(
        "macro_f1",
        after,
        before,
        n_resamples=resamples,
        confidence=CONFIDENCE,
        clusters=complete(r.cluster for r in results),
    )
    return dataclasses.replace(
        cal,
        macro_f1_before=round(metrics.compute("macro_f1", before), DIGITS),
        macro_f1_after=round(metrics.compute("macro_f1", after), DIGITS),
        gain_interval=(round(low, DIGITS), round(high, DIGITS)),
    )


# --- where a set meets a suite ------------------------------------------------------------------


def suite_problems(
    cal: Calibration,
    *,
    labels: Sequence[str],
    student: str,
    system_prompt: str,
    suite: str,
    backend: Mapping[str, object] | None = None,
    name_refit: bool = True,
) -> list[PldError]:
    """What is wrong with a set's calibration for one suite that uses it: labels that do not
    match the suite's, or staleness (another student, another rendered prompt, and given the
    student's `backend` identity, scores computed another way). Each names the refit command
    unless `name_refit` is false: the caller then says it once, after all of them."""
    out = []
    wrong = cal.label_problem(labels)
    if wrong:
        out.append(
            PldError(
                f"{wrong} (suite {suite} has labels {', '.join(labels)})",
                path=cal.path,
                line=cal.lines.get("offsets"),
                key="calibration.offsets",
                hint=f"refit with: {refit_command(suite)}" if name_refit else None,
            )
        )
    stale = cal.is_stale(
        student, system_prompt, suite=suite, backend=backend, name_refit=name_refit
    )
    if stale:
        key = (
            "student"
            if student != cal.student
            else "system_prompt_sha256"
            if sha256_text(system_prompt) != cal.system_prompt_sha256
            else "backend_sha256"
        )
        out.append(
            PldError(
                stale,
                path=cal.path,
                line=cal.lines.get(key),
                key=f"calibration.fitted.{key}",
            )
        )
    return out
