"""`pld review`: what changed in the instruction sets between two git revisions, rule by rule,
and what it did to the metrics.

For every instruction set that differs between the base and the head revision the review
gives the rule-level diff (by stable id, with provenance), the rendered system prompt's diff
and size, and - for each suite that uses the set - the metric deltas with paired bootstrap
intervals and the examples that flipped. Suites (data, labels, user template, student) are
read from the working tree for both sides, so the two runs differ only in the instruction set
and its template: the deltas measure the instruction change and nothing else.

Run records are reused when `.pld/runs` holds one for exactly that rendered prompt, split,
sample and model; otherwise the runner computes one, and the response cache makes the side
that did not change (usually the base) free.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PldError, PldErrors
from ..record import calibration_entry, sides_answers
from ..runner import BackendPool, LazyBackend, size_counter
from .diff import diff_sets, unified
from .git import WORKTREE, GitRepo, Revision
from .results import (
    Flip,
    MetricDelta,
    PairedDeltas,
    Review,
    ReviewOptions,
    SetReport,
    SuiteReport,
)

if TYPE_CHECKING:  # `pld --help` imports the review command: keep that cheap
    from ..instructions import InstructionSet
    from ..record import RunRecord
    from ..suite import Suite

INSTRUCTION_SUFFIXES = (".yaml", ".yml")
SIDES = ("base", "head")


# --- one instruction set at one revision -------------------------------------------------------


@dataclass
class Side:
    rev: Revision
    text: str | None  # None: the file does not exist at this revision
    iset: InstructionSet | None = None
    error: str | None = None
    template_text: str | None = None  # source of the set's custom template, when it has one


def load_side(repo: GitRepo, rev: Revision, path: str) -> Side:
    from ..instructions import load_instruction_set_text

    try:
        side = Side(rev, repo.read(rev, path))
    except PldError as exc:  # not UTF-8 there: reported as invalid at that side
        return Side(rev, f"<unreadable: {exc.message}>", error=exc.format())
    if side.text is None:
        return side
    try:
        side.iset = load_instruction_set_text(side.text, f"{path}@{rev.short}")
    except PldError as exc:
        errors = exc.errors if isinstance(exc, PldErrors) else [exc]
        side.error = "\n".join(e.format() for e in errors)
        return side
    if side.iset.template:
        try:
            side.template_text = repo.read(rev, side.iset.template)
        except PldError as exc:
            side.error = exc.format()
    return side


def candidate_paths(
    repo: GitRepo, revs: Sequence[Revision], suite_paths: Iterable[str]
) -> list[str]:
    """Instruction files under instructions/ at either revision, plus those suites name."""
    found = {
        p
        for rev in revs
        for p in repo.list_files(rev, "instructions")
        if p.endswith(INSTRUCTION_SUFFIXES)
    }
    return sorted(found | set(suite_paths))


def run_set_for(side: Side, path: str, root: Path) -> InstructionSet:
    """The set as the runner needs it: an absolute path under the root, and a template file
    the renderer can read.

    A custom template at a committed revision is written under .pld/review/<sha>/ (inside the
    root, where the sandboxed renderer may read); the rendered prompt is the same text, so the
    response cache and the run records match what that revision would produce.
    """
    assert side.iset is not None
    iset = dataclasses.replace(side.iset, path=root / path)
    if iset.template and not side.rev.is_worktree:
        if side.template_text is None:
            raise PldError(
                f"template {iset.template!r} does not exist at {side.rev.short}",
                path=f"{path}@{side.rev.short}",
                key="template",
            )
        rel = Path(".pld", "review", str(side.rev.sha), iset.template).as_posix()
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(side.template_text, encoding="utf-8")
        iset = dataclasses.replace(iset, template=rel)
    return iset


# --- metrics -----------------------------------------------------------------------------------


def find_record(
    suite: Suite,
    split: str,
    limit: int | None,
    model: str,
    system_sha: str,
    *,
    need_without_rules: bool,
    calibration: Mapping[str, object] | None = None,
) -> RunRecord | None:
    """The newest run record in .pld/runs for exactly this prompt, split, sample, model and
    calibration (as the record keeps it), whose examples are still the suite's (a data change
    makes old records stale)."""
    from ..record import load_record
    from ..runner import default_results_dir

    folder = default_results_dir(suite.root)
    if not folder.is_dir():
        return None
    wanted = [(e.id, e.label) for e in suite.load_examples(split, limit=limit)]
    for path in sorted(folder.glob(f"{suite.name}-{split}-*.json"), reverse=True):
        try:
            record = load_record(path)
        except PldError:
            continue  # an unreadable record is just not reused
        if (
            record.system_prompt_sha256 == system_sha
            and record.model == model
            and record.limit == limit
            and record.labels == list(suite.labels)
            and record.calibration == calibration
            and (record.without_rules is not None or not need_without_rules)
            and [(r.id, r.gold) for r in record.results] == wanted
        ):
            return record
    return None


def paired_deltas(
    labels: Sequence[str],
    base: RunRecord,
    head: RunRecord,
    resamples: int,
    *,
    fallback_clusters: Mapping[str, str] | None = None,
) -> PairedDeltas:
    """Metric deltas head - base over the examples both records share, paired by id, with
    the exact McNemar test and the flipped examples.

    Intervals resample clusters when every pair has a cluster id: the head's, else the
    base's, else `fallback_clusters` (id -> cluster, from the suite's data, for records
    written before records carried them); otherwise examples.

    When either side's answers are calibrated, accuracy and macro-F1 of the raw students
    (each side's own answers before calibration) come too, so that a reader can tell what the
    instructions did from what the calibration did.
    """
    from .. import metrics, stats
    from ..example_clusters import complete
    from ..gates import pairs as paired_results
    from ..record import calibration_contrast

    pairs = paired_results(head, base)
    fallback = fallback_clusters or {}
    clusters = complete(h.cluster or b.cluster or fallback.get(h.id) for b, h in pairs)
    gold = tuple(h.gold for _, h in pairs)
    p_old = metrics.Predictions(tuple(labels), gold, tuple(b.pred for b, _ in pairs))
    p_new = metrics.Predictions(tuple(labels), gold, tuple(h.pred for _, h in pairs))
    rows = []
    for name in ["accuracy", "macro_f1", *(f"f1[{label}]" for label in labels), "invalid_rate"]:
        delta, low, high = metrics.paired_bootstrap_delta(
            name, p_new, p_old, n_resamples=resamples, clusters=clusters
        )
        rows.append(
            MetricDelta(
                name, metrics.compute(name, p_old), metrics.compute(name, p_new), delta, low, high
            )
        )
    for name in ("latency_overhead", "prompt_tokens"):
        b, h = (metrics.compute(name, rec.predictions()) for rec in (base, head))
        if not (math.isnan(b) or math.isnan(h)):  # a record without the no-rules run: NaN
            rows.append(MetricDelta(name, b, h, h - b))
    r2w = [
        Flip(h.id, h.gold, b.pred, h.pred)
        for b, h in pairs
        if b.pred == b.gold and h.pred != h.gold
    ]
    w2r = [
        Flip(h.id, h.gold, b.pred, h.pred)
        for b, h in pairs
        if b.pred != b.gold and h.pred == h.gold
    ]
    raw_rows = []
    if base.calibrated or head.calibrated:
        raw_old = dataclasses.replace(p_old, pred=tuple(b.raw_pred or b.pred for b, _ in pairs))
        raw_new = dataclasses.replace(p_new, pred=tuple(h.raw_pred or h.pred for _, h in pairs))
        for name in ("accuracy", "macro_f1"):
            delta, low, high = metrics.paired_bootstrap_delta(
                name, raw_new, raw_old, n_resamples=resamples, clusters=clusters
            )
            raw_rows.append(
                MetricDelta(
                    name,
                    metrics.compute(name, raw_old),
                    metrics.compute(name, raw_new),
                    delta,
                    low,
                    high,
                )
            )
    key = head.cluster_key or base.cluster_key
    return PairedDeltas(
        rows,
        r2w,
        w2r,
        len(pairs),
        stats.mcnemar(p_new, p_old) if pairs else None,
        len(set(clusters)) if clusters else None,
        key if clusters else None,
        raw_rows,
        _with_raw_rows(calibration_contrast(base, head)),
    )


def _with_raw_rows(note: str | None) -> str | None:
    return None if note is None else f"{note}; the raw rows compare the two raw students"


# --- the review --------------------------------------------------------------------------------


def _norm(path: str) -> str:
    # git speaks POSIX paths on every platform; suites may write ./instructions/x.yaml
    return posixpath.normpath(path.replace("\\", "/"))


class Reviewer:
    def __init__(
        self,
        root: Path,
        base: Revision,
        head: Revision,
        options: ReviewOptions,
        repo: GitRepo,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.root, self.base, self.head, self.options, self.repo = root, base, head, options, repo
        self.models = BackendPool(self._student)
        self.notes: list[str] = []
        self.log = log
        self.suites = self._load_suites()

    def _student(self, name: str) -> LazyBackend:
        role = self.options.student
        return LazyBackend(name, role.factory(name) if role else None)

    def _load_suites(self) -> list[Suite]:
        from ..suite import find_suites, load_suite, resolve_suite_names

        if self.options.suites:
            paths = [
                p for name in self.options.suites for p in resolve_suite_names(self.root, name)
            ]
        else:
            paths = list(find_suites(self.root).values())
        suites = []
        for path in paths:
            try:
                suites.append(load_suite(path, self.root, data_root=self.options.data_root))
            except PldError as exc:
                self.notes.append(
                    f"suite {path.stem} is invalid in the working tree, so its "
                    f"metrics are not compared:\n{exc}"
                )
        return suites

    def users_of(self, path: str) -> list[Suite]:
        return [s for s in self.suites if _norm(s.instructions) == _norm(path)]

    def review(self) -> Review:
        try:
            suite_paths = [_norm(s.instructions) for s in self.suites]
            paths = candidate_paths(self.repo, (self.base, self.head), suite_paths)
            sets, unchanged = [], 0
            for path in paths:
                if self.options.suites and not self.users_of(path):
                    continue
                report = self.review_path(path)
                if report is None:
                    unchanged += 1
                else:
                    sets.append(report)
            return Review(self.base, self.head, sets, unchanged, self.notes)
        finally:
            self.models.close()

    def review_path(self, path: str) -> SetReport | None:
        base = load_side(self.repo, self.base, path)
        head = load_side(self.repo, self.head, path)
        if base.text is None and head.text is None:
            return None  # a suite names a file that exists at neither side
        if base.text == head.text and base.template_text == head.template_text:
            return None
        errors = {name: side.error for name, side in zip(SIDES, (base, head)) if side.error}
        if errors:
            # report what is wrong where, and carry on with the other sets
            return SetReport(path, "invalid", errors=errors)
        if base.iset is None or head.iset is None:
            status = "added" if base.iset is None else "removed"
            empty = (head.iset or base.iset).with_rules([])  # type: ignore[union-attr]
            old, new = (empty, head.iset) if base.iset is None else (base.iset, empty)
            assert old is not None and new is not None
            return SetReport(
                path,
                status,
                diff=diff_sets(old, new),
                note=f"the instruction set was {status}; there is no other side "
                "to compare metrics with",
            )
        if (
            base.iset.content_hash() == head.iset.content_hash()
            and base.template_text == head.template_text
        ):
            return SetReport(
                path,
                "no semantic change",
                diff=diff_sets(base.iset, head.iset),
                note="only comments or formatting changed (equal content hash): "
                "no rule change, the model sees the same prompt",
            )
        report = SetReport(path, "changed", diff=diff_sets(base.iset, head.iset))
        users = self.users_of(path)
        if not users:
            report.note = "no suite uses this instruction set, so there are no metrics"
        report.suites = [self.review_suite_or_error(suite, path, base, head) for suite in users]
        return report

    def review_suite_or_error(self, suite: Suite, path: str, base: Side, head: Side) -> SuiteReport:
        try:
            return self.review_suite(suite, path, base, head)
        except PldError as exc:
            # a suite that cannot be evaluated (model missing, data gone) is reported, and the
            # rest of the review still gets written
            split = self.options.split or suite.gate_split
            return SuiteReport(
                suite.name,
                split,
                self.options.limit,
                self.options.model or suite.student,
                status="error",
                note=f"could not be evaluated: {exc}",
            )

    def review_suite(self, suite: Suite, path: str, base: Side, head: Side) -> SuiteReport:
        from ..record import sha256_text

        opts = self.options
        split, model = opts.split or suite.gate_split, opts.model or suite.student
        report = SuiteReport(suite.name, split, opts.limit, model, status="compared")
        prompts: list[str] = []
        run_sets: list[InstructionSet] = []
        for name, side in zip(SIDES, (base, head)):
            try:
                run_set = run_set_for(side, path, self.root)
                prompts.append(suite.system_prompt(run_set))
                run_sets.append(run_set)
            except PldError as exc:
                report.status, report.note = "error", f"{name} does not render: {exc}"
                return report
        count, report.size_unit = size_counter(
            self.models.get(model), tokens=opts.tokens, notes=self.notes
        )
        report.prompt_size = (count(prompts[0]), count(prompts[1]))
        report.prompt_diff = unified(
            prompts[0],
            prompts[1],
            old_name=f"{path}@{base.rev.short}",
            new_name=f"{path}@{head.rev.short}",
        )
        apply, why_raw = self._calibrations(suite, model, run_sets, prompts)
        wanted = [calibration_entry(run_set.calibration, applied=apply) for run_set in run_sets]
        if prompts[0] == prompts[1] and wanted[0] == wanted[1]:
            # same system prompt, user messages, model and calibration: the same answers
            report.status = "prompt unchanged"
            report.note = "the rendered system prompt is identical, so predictions are too"
            return report
        if why_raw:
            report.note = why_raw
        records = []
        for name, run_set, prompt, calibration in zip(SIDES, run_sets, prompts, wanted):
            record = find_record(
                suite,
                split,
                opts.limit,
                model,
                sha256_text(prompt),
                need_without_rules=opts.run,
                calibration=calibration,
            )
            if record is None and opts.run:
                self.log(f"evaluating {suite.name}/{split} with the {name} instructions")
                record = self._run(suite, split, model, run_set, apply_calibration=apply)
                report.model_calls += record.cache_misses
            if record is None:
                report.status = "no records"
                report.note = (
                    f"no run record for the {name} side; run without --no-run to compute it"
                )
                return report
            records.append(record)
            report.records[name] = record.path
        from ..example_clusters import example_clusters

        examples = suite.load_examples(split, limit=opts.limit)
        ids = example_clusters(suite, examples)
        compared = paired_deltas(
            suite.labels,
            records[0],
            records[1],
            opts.resamples,
            fallback_clusters=dict(zip((e.id for e in examples), ids)) if ids else None,
        )
        report.metrics, report.examples = compared.metrics, compared.examples
        report.right_to_wrong, report.wrong_to_right = (
            compared.right_to_wrong,
            compared.wrong_to_right,
        )
        report.mcnemar, report.clusters = compared.mcnemar, compared.clusters
        report.cluster_key = compared.cluster_key or (suite.cluster_key if ids else None)
        report.raw_metrics = compared.raw_metrics
        report.calibration_note = compared.calibration_note
        report.calibration = sides_answers(records[0], records[1])
        return report

    def _calibrations(
        self, suite: Suite, model: str, run_sets: Sequence[InstructionSet], prompts: Sequence[str]
    ) -> tuple[bool, str | None]:
        """Whether each side runs with its own calibration: yes, unless a side's cannot be
        applied (stale: fitted for another prompt, student or backend), and then neither side
        does, so that the deltas compare like with like; the reason, for the report."""
        from ..calibration import suite_problems

        problems = []
        for name, run_set, prompt in zip(SIDES, run_sets, prompts):
            if run_set.calibration is None:
                continue
            found = suite_problems(
                run_set.calibration,
                labels=suite.labels,
                student=model,
                system_prompt=prompt,
                suite=suite.name,
                backend=self.models.get(model).identity(),
            )
            problems += [f"{name}: {p.message}" for p in found]
        if not problems:
            return True, None
        return False, (
            "; ".join(problems) + ". Both sides are compared raw (without calibration); the "
            "gates fail until the calibration is refitted and committed"
        )

    def _run(
        self,
        suite: Suite,
        split: str,
        model: str,
        run_set: InstructionSet,
        *,
        apply_calibration: bool = True,
    ) -> RunRecord:
        from ..runner import run_suite

        return run_suite(
            suite,
            split=split,
            limit=self.options.limit,
            model=model,
            instructions=run_set,
            measure_without_rules=True,
            backend=self.models.get(model),
            progress=None,
            write_record=True,
            apply_calibration=apply_calibration,
        )


def resolve_revisions(
    repo: GitRepo,
    base: str | None,
    head: str | None,
) -> tuple[Revision, Revision, list[str]]:
    notes: list[str] = []
    head_rev = WORKTREE if head is None else repo.resolve(head, role="head")
    if base is not None:
        base_rev = repo.resolve(base, role="base")
    else:
        base_rev, note = repo.default_base()
        if note:
            notes.append(note)
    return base_rev, head_rev, notes


def review(
    root: Path,
    *,
    base: str | None = None,
    head: str | None = None,
    options: ReviewOptions | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Review:
    """Compare the instruction sets of two revisions (head None: the working tree); `log`
    hears about model runs as they start."""
    repo = GitRepo(root)
    base_rev, head_rev, notes = resolve_revisions(repo, base, head)
    result = Reviewer(root, base_rev, head_rev, options or ReviewOptions(), repo, log).review()
    result.notes[:0] = notes
    return result
