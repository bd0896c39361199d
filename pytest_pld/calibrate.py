"""What `pld calibrate SUITE` does: evaluate a split with the raw student through the runner (so
scores already in the response cache cost no model call), fit a calibration, measure it against
the raw answers on the same examples, and propose the instruction file with the new
`calibration:` section as a diff, written only on request.

It never fits on the suite's gate split: the gates must judge examples the calibration has not
seen.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import metrics
from .calibration import (
    CONFIDENCE,
    CONTENT_FREE,
    CONTEXTUAL,
    METHODS,
    PRIOR_SHIFT,
    Calibration,
    calibrated_answers,
    fit_contextual,
    fit_prior_shift,
    fitted,
    require_scores,
    scoring_digest,
)
from .errors import PldError
from .example_clusters import complete, describe
from .labels import INVALID

if TYPE_CHECKING:
    from .instructions import InstructionSet
    from .record import ExampleResult
    from .runner import LazyBackend
    from .suite import Suite

DEFAULT_SPLIT = "dev"


@dataclass
class CalibrationProposal:
    suite: str
    path: Path  # the instruction file
    base_text: str
    text: str  # the file with the new section
    new: InstructionSet
    calibration: Calibration
    labels: tuple[str, ...]
    gold: tuple[str, ...]
    raw: tuple[str, ...]  # the student's own answers
    calibrated: tuple[str, ...]
    clusters: tuple[str, ...] | None
    cluster_key: str | None
    cache_hits: int = 0
    model_calls: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.text != self.base_text

    def diff(self, rel: str) -> str:
        from .review.diff import unified

        text = unified(
            self.base_text, self.text, old_name=f"a/{rel}", new_name=f"b/{rel}", context=3
        )
        return text + "\n" if text else ""

    def write(self) -> str:
        """Write the file atomically (ruamel round trip: comments and key order kept); refuses
        when it changed since it was read."""
        from .instructions_save import save_instruction_set

        return save_instruction_set(self.new, self.path, expected_text=self.base_text)

    def lines(self, *, resamples: int = 1000) -> list[str]:
        """Offsets, macro-F1 and accuracy raw and calibrated with intervals, and the predicted
        labels against the gold ones."""
        from .stats import metric_interval

        cal = self.calibration
        out = [f"# {cal.describe()}", "offsets (added to each label's log-probability):"]
        width = max(len(label) for label in self.labels)
        out += [f"  {label:<{width}}  {cal.offsets[label]:+.4f}" for label in self.labels]
        raw = metrics.Predictions(self.labels, self.gold, self.raw)
        new = dataclasses.replace(raw, pred=self.calibrated)
        rows = [["", "raw", "calibrated", "calibrated - raw"]]
        for name in ("macro_f1", "accuracy"):
            cells = [name]
            for p in (raw, new):
                got = metric_interval(
                    name, p, clusters=self.clusters, confidence=CONFIDENCE, n_resamples=resamples
                )
                cells.append(f"{metrics.compute(name, p):.3f} [{got.low:.3f}, {got.high:.3f}]")
            delta, low, high = metrics.paired_bootstrap_delta(
                name, new, raw, n_resamples=resamples, confidence=CONFIDENCE, clusters=self.clusters
            )
            cells.append(f"{delta:+.3f} [{low:+.3f}, {high:+.3f}]")
            rows.append(cells)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
        n_clusters = len(set(self.clusters)) if self.clusters else None
        out.append(
            f"  {CONFIDENCE:.0%} intervals over {describe(n_clusters, self.cluster_key)} "
            "(the difference paired)"
        )
        if cal.method == PRIOR_SHIFT:
            out.append(
                "  prior-shift is fitted on these examples: the calibrated numbers are "
                "in-sample, so optimistic; the gate split tells how it holds"
            )
        gold, before, after = Counter(self.gold), Counter(self.raw), Counter(self.calibrated)
        out.append("labels: gold, raw, calibrated")
        shown = [*self.labels, *([INVALID] if before[INVALID] or after[INVALID] else [])]
        width = max(len(label) for label in shown)
        for label in shown:
            out.append(
                f"  {label:<{width}}  {gold.get(label, 0):>5}  {before.get(label, 0):>5}  "
                f"{after.get(label, 0):>5}"
            )
        return out


def calibrate_suite(
    suite: Suite,
    *,
    split: str | None = None,
    method: str = PRIOR_SHIFT,
    instructions: InstructionSet | None = None,
    limit: int | None = None,
    model: str | None = None,
    backend: LazyBackend | None = None,
    cache_mode: str = "use",
    cache_path: Path | None = None,
    progress: bool | None = None,
) -> CalibrationProposal:
    """Fit `method` on `split` (default dev) for the suite's student (or `model`) and propose the
    instruction file with the calibration. `backend` is the student (created from `model` when
    not given; the caller closes one it passes)."""
    from .instructions_save import render_instruction_text
    from .runner import LazyBackend, run_suite
    from .suite.data_checks import limit_text, skipped_text
    from .textio import read_text

    split = split or DEFAULT_SPLIT
    if method not in METHODS:
        raise PldError(
            f"unknown calibration method {method!r}", hint=f"methods: {', '.join(METHODS)}"
        )
    if split == suite.gate_split:
        raise PldError(
            f"refusing to fit a calibration on {split!r}, the suite's gate split",
            path=suite.path,
            key="gate_split",
            hint="the gates must judge examples the calibration never saw; fit on dev (the "
            "default) or another split the suite declares, with --split",
        )
    iset = instructions or suite.load_instructions()
    if iset.path is None:
        raise PldError("the instruction set has no file to write the calibration to")
    model = model or suite.student
    lazy = backend or LazyBackend(model)
    raw_set = dataclasses.replace(iset, calibration=None)  # fitted on the raw scores
    try:
        record = run_suite(
            suite,
            split=split,
            limit=limit,
            model=model,
            instructions=raw_set,
            backend=lazy,
            cache_mode=cache_mode,
            cache_path=cache_path,
            progress=progress,
            write_record=False,
        )
        labels = tuple(suite.labels)
        require_scores(record.results, labels, student=model)
        hits, calls = record.cache_hits, record.cache_misses
        inputs: tuple[str, ...] = ()
        if method == PRIOR_SHIFT:
            offsets = fit_prior_shift(record.results, labels, student=model)
        else:
            inputs = CONTENT_FREE
            scored, cf_hits = _score_content_free(
                suite, raw_set, inputs, lazy, cache_mode, cache_path
            )
            require_scores(scored, labels, student=model)
            hits, calls = hits + cf_hits, calls + len(scored) - cf_hits
            offsets = fit_contextual([r.scores or {} for r in scored], labels)
    finally:
        if backend is None:
            lazy.close()
    cal = fitted(
        method,
        offsets,
        record.results,
        labels,
        student=model,
        system_prompt_sha256=record.system_prompt_sha256,
        split=split,
        inputs=inputs,
        backend_sha256=scoring_digest(record.backend),
    )
    new = dataclasses.replace(iset, calibration=cal)
    base_text = read_text(iset.path, what="instruction file")
    proposal = CalibrationProposal(
        suite=suite.name,
        path=iset.path,
        base_text=base_text,
        text=render_instruction_text(new, base_text, iset.path),
        new=new,
        calibration=cal,
        labels=labels,
        gold=tuple(r.gold for r in record.results),
        raw=tuple(r.pred for r in record.results),
        calibrated=tuple(calibrated_answers(cal, record.results, labels, student=model)),
        clusters=complete(r.cluster for r in record.results),
        cluster_key=suite.cluster_key,
        cache_hits=hits,
        model_calls=calls,
    )
    # what `pld run` says of the same sample: examples left out, a limit the split cannot give
    proposal.notes += [
        note
        for note in (skipped_text(record.skipped), limit_text(record.limit, len(record.results)))
        if note
    ]
    if model != suite.student:
        proposal.notes.append(
            f"fitted for {model}, not the suite's student {suite.student}: for the suite's "
            "student the calibration is stale (pld validate says so)"
        )
    if iset.calibration is not None and iset.calibration.method != method:
        proposal.notes.append(f"replaces the {iset.calibration.method} calibration")
    return proposal


def content_free_messages(
    user_template: str, *, where: str, inputs: Sequence[str] = CONTENT_FREE
) -> list[str]:
    """The user messages of the content-free inputs: each written into every field the
    template names."""
    from jinja2 import meta

    from .render import render_user_message
    from .templating import ENV

    names = meta.find_undeclared_variables(ENV.parse(user_template)) - set(ENV.globals)
    return [
        render_user_message(user_template, dict.fromkeys(names, text), where=where)
        for text in inputs
    ]


def _score_content_free(
    suite: Suite,
    iset: InstructionSet,
    inputs: tuple[str, ...],
    lazy: LazyBackend,
    cache_mode: str,
    cache_path: Path | None,
) -> tuple[list[ExampleResult], int]:
    """The student's label scores for the content-free inputs, through the response cache."""
    from .cache import ResponseCache
    from .datasets import Example
    from .render import render_system_prompt
    from .runner import classify_cached, default_cache_path

    users = content_free_messages(suite.user_template, where=str(suite.path), inputs=inputs)
    examples = [Example(id=f"content-free:{text}", label="") for text in inputs]
    system = render_system_prompt(iset, suite.labels, suite.root)
    cache = ResponseCache(cache_path or default_cache_path(suite.root), mode=cache_mode)
    try:
        return classify_cached(lazy, cache, system, examples, users, suite.labels)
    finally:
        cache.close()


__all__ = ["CONTEXTUAL", "DEFAULT_SPLIT", "CalibrationProposal", "calibrate_suite"]
