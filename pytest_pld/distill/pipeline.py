"""`pld distill` end to end: traces -> embed -> cluster -> synthesise -> closed loop -> proposal."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import metrics
from ..backends import get_backend
from ..errors import PldError
from ..instructions import Rule, load_instruction_set_text
from ..suite import Suite
from ..textio import read_text
from .answers import MODES, default_mode
from .cluster import check_params, cluster_rules
from .cost import CostLedger, CountingTeacher, PhaseCost
from .embed import embed, resolve_embedder, rule_condition
from .guard import LeakageCheck, refuse_gate_split
from .propose import IdAllocator, Proposal, build_proposal, used_ids
from .refine import ClosedLoop, Decision, LoopResult, Student
from .synthesize import STRATEGIES, Candidate, synthesize
from .teach import header_for
from .teachers import distill_teacher
from .traces import Trace, check_compatible, read_traces


@dataclass
class DistillSettings:
    traces: Path
    teacher: str | None = None  # default: see teachers.distill_teacher; "none": no teacher
    student: str | None = None  # default: the suite's student
    embedder: str = "auto"
    cluster: str = "auto"  # auto | dbscan | hdbscan | kmeans (see cluster.cluster_rules)
    eps: float = 0.4
    min_samples: int = 6
    k: int | None = None
    by_label: bool = True
    synthesis: str = "auto"  # teacher | medoid | both; auto: both for local teachers
    rounds: int = 2  # revision rounds after the selection round
    limit_dev: int | None = 48
    limit_train: int | None = 32
    min_gain: float = 0.0
    confidence: float = 0.95
    strict: bool = False  # keep a rule only when its dev gain's interval excludes 0
    mode: str = "auto"
    max_candidates: int = 12
    cache_mode: str = "use"
    progress: bool | None = None

    def check(self) -> None:
        check_params(self.cluster, eps=self.eps, min_samples=self.min_samples, k=self.k)
        resolve_embedder(self.embedder)
        if self.synthesis not in ("auto", *STRATEGIES):
            raise PldError(
                f"unknown --synthesis {self.synthesis!r}",
                hint=f"choose auto, {', '.join(STRATEGIES)}",
            )
        if self.mode not in ("auto", *MODES):
            raise PldError(f"unknown --mode {self.mode!r}", hint=f"choose auto, {', '.join(MODES)}")
        if self.rounds < 0 or self.rounds > 10:
            raise PldError(f"--rounds must be between 0 and 10, got {self.rounds}")
        for name in ("limit_dev", "limit_train", "max_candidates"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PldError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value}"
                )
        if not 0 <= self.min_gain < 1:
            raise PldError(f"--min-gain must be in [0, 1), got {self.min_gain}")
        if not 0.5 <= self.confidence < 1:
            raise PldError(f"--confidence must be in [0.5, 1), got {self.confidence}")


def load_usable_traces(
    suite: Suite, path: Path, notes: list[str], log: Callable[[str], None]
) -> tuple[list[Trace], PhaseCost]:
    tf = read_traces(path)
    if tf.truncated_line is not None:
        msg = (
            f"{path}:{tf.truncated_line}: truncated last line (an interrupted write) "
            "skipped; `pld teach` re-teaches its example"
        )
        notes.append(msg)
        log(msg)
    if not tf.traces:
        raise PldError(
            "the traces file has no traces",
            path=path,
            hint=f"run: pld teach {suite.name} --teacher MODEL --out {path}",
        )
    check_compatible(tf, suite.name, tuple(suite.labels))
    for trace in tf.traces:
        if trace.split == suite.gate_split:
            raise PldError(
                f"trace {trace.id!r} was taught on the {trace.split!r} split, which "
                "the gates score; distilling from it would leak the test answers",
                path=path,
                line=trace.line,
                hint="re-teach on the train split: pld teach SUITE --split train",
            )
    usable = [t for t in tf.traces if t.ok]
    if any(t.split == "dev" for t in usable):
        notes.append(
            "some traces were taught on the dev split, which also scores the "
            "candidate rules: the dev metrics below are optimistic"
        )
    failed = len(tf.traces) - len(usable)
    cost = PhaseCost(
        teacher_calls=sum(t.attempts for t in tf.traces),
        teacher_failures=failed,
        prompt_tokens=sum(t.prompt_tokens for t in tf.traces),
        completion_tokens=sum(t.completion_tokens for t in tf.traces),
        wall_s=sum(t.latency_s for t in tf.traces),
    )
    if failed:
        notes.append(f"{failed} of {len(tf.traces)} traces are failed teacher calls; skipped")
    if not usable:
        raise PldError(
            f"none of the {len(tf.traces)} traces has a usable rule",
            path=path,
            hint="re-run `pld teach` (it retries failed examples) or try another --teacher",
        )
    return usable, cost


def _provenance(
    decision: Decision, loop: LoopResult, settings: dict[str, Any], old: Rule | None
) -> dict[str, Any]:
    cand = decision.candidate
    prov: dict[str, Any] = {"method": cand.method}
    if cand.method == "revision" and old is not None:
        prov["revises"] = old.provenance.get("method", "manual")
    prov.update(
        {
            "support": cand.support,
            "traces": list(cand.trace_ids),
            "round": cand.round,
            "teacher": settings["teacher"],
        }
    )
    if cand.method not in ("revision", "coverage"):  # coverage: written from train failures
        prov["embedder"] = settings["embedder"]
        prov["cluster"] = settings["cluster_method"]
    if cand.note:
        prov["note"] = cand.note
    lo, hi = decision.interval
    prov["dev_macro_f1"] = (
        f"{decision.before.get('macro_f1', 0):.3f} -> "
        f"{decision.after.get('macro_f1', 0):.3f} (n="
        f"{decision.after.get('n', 0):.0f}; gain interval {lo:+.3f} .. "
        f"{hi:+.3f})"
    )
    prov["teacher_calls"] = cand.teacher_calls
    prov["teacher_tokens"] = cand.tokens
    return prov


def distill(
    suite: Suite,
    settings: DistillSettings,
    *,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> Proposal:
    settings.check()
    refuse_gate_split(suite, "dev", "distill")  # dev scores the candidate rules
    if settings.rounds:
        refuse_gate_split(suite, "train", "distill")  # train shows the teacher failures
    notes: list[str] = []
    ledger = CostLedger()
    usable, teach_cost = load_usable_traces(suite, settings.traces, notes, log)
    ledger.phases["teach"] = teach_cost

    path = suite.instructions_path
    base_text = read_text(
        path,
        what="instruction file",
        missing_hint="create it (pld validate checks it) before distilling",
    )
    base = load_instruction_set_text(base_text, path)

    # within a label, the rules' shared frame ("If ..., then the label is X") only pulls
    # them together: its condition is what tells one rule from another
    texts = [rule_condition(t.rule, t.gold) if settings.by_label else t.rule for t in usable]
    with ledger.phase("embed"):
        emb = embed(texts, settings.embedder)
    draws = len(usable) - len({t.id for t in usable})
    log(
        f"embedded {len(usable)} rules with {emb.name}"
        + (f" ({draws} of them further draws of an example)" if draws else "")
    )
    with ledger.phase("cluster"):
        clustering = cluster_rules(
            emb.vectors,
            [t.gold for t in usable],
            method=settings.cluster,
            eps=settings.eps,
            min_samples=settings.min_samples,
            k=settings.k,
            by_label=settings.by_label,
            avoid=[bool(t.entity_terms) for t in usable],
            sources=[t.id for t in usable],  # support: distinct examples, not draws
        )
    for note in clustering.notes:
        log(note)
    notes.extend(clustering.notes)
    log(
        f"{len(clustering.clusters)} clusters ({clustering.method}), "
        f"{clustering.noise} noise rules dropped"
    )

    traces_teacher = Counter(t.teacher for t in usable).most_common(1)[0][0]
    teacher_name, teacher_note = distill_teacher(settings.teacher, traces_teacher)
    if teacher_note:
        log(teacher_note)
        notes.append(teacher_note)
    no_teacher = teacher_name.strip().lower() == "none"
    mode = settings.mode if settings.mode != "auto" else default_mode(teacher_name)
    strategy = settings.synthesis
    if strategy == "auto":
        # a weak (local) teacher's merged rule competes with the cluster's medoid
        strategy = "both" if mode == "prefill" else "teacher"
    if no_teacher:
        strategy = "medoid"
    header = header_for(base, suite)
    from ..cache import ResponseCache
    from ..runner import default_cache_path

    cache = ResponseCache(default_cache_path(suite.root), mode=settings.cache_mode)
    teacher = None if no_teacher else CountingTeacher(get_backend(teacher_name), ledger, cache)
    student = Student(
        suite,
        settings.student or suite.student,
        ledger,
        cache_mode=settings.cache_mode,
        progress=settings.progress,
    )
    try:
        with ledger.phase("synthesize"):
            candidates = synthesize(
                clustering.clusters,
                usable,
                emb.vectors,
                teacher=teacher,
                mode=mode,
                header=header,
                strategy=strategy,
            )
        if teacher is not None:
            _report_synthesis(candidates, len(clustering.clusters), notes, log)
        leak = LeakageCheck.for_suite(suite)
        for cand in candidates:
            cand.leak = leak.copied_span(cand.text)
        candidates = _cap(candidates, settings.max_candidates, notes, log)
        log(
            f"{len(candidates)} candidate rules; scoring them with {student.model} on "
            f"{settings.limit_dev or 'all'} dev examples"
        )
        ids = IdAllocator(used_ids(base, path))
        loop = ClosedLoop(
            suite,
            base,
            student,
            teacher=teacher,
            mode=mode,
            header=header,
            ids=ids,
            ledger=ledger,
            leak=leak,
            limit_dev=settings.limit_dev,
            limit_train=settings.limit_train,
            min_gain=settings.min_gain,
            confidence=settings.confidence,
            strict=settings.strict,
            log=log,
        )
        result = loop.run(candidates, settings.rounds)
    finally:
        student.close()
        if teacher is not None:
            teacher.close()
        cache.close()

    info = {
        "teacher": "none" if no_teacher else teacher_name,
        "embedder": emb.name,
        "cluster_method": clustering.method,
    }
    old_by_id = {r.id: r for r in base.rules}
    rules = []
    for rule in result.rules:
        decision = result.accepted.get(rule.id)
        if decision is None:
            rules.append(rule)  # untouched: the very same object, so the same YAML lines
            continue
        rules.append(
            Rule(
                id=rule.id,
                text=rule.text,
                label=rule.label,
                tags=rule.tags,
                provenance=_provenance(decision, result, info, old_by_id.get(rule.id)),
            )
        )
    _, lo, hi = metrics.paired_bootstrap_delta(
        "macro_f1", result.final.preds, result.baseline.preds, confidence=settings.confidence
    )
    if result.stop_reason:
        notes.append(result.stop_reason)
    run_settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    run_settings.update(
        {
            "teacher": info["teacher"],
            "mode": mode,
            "synthesis": strategy,
            "embedder": emb.name,
            "student": student.model,
            "clustering": clustering.params
            | {
                "result": clustering.method,
                "clusters": len(clustering.clusters),
                "noise": clustering.noise,
            },
        }
    )
    proposal = build_proposal(
        suite.name,
        path,
        base,
        base_text,
        rules,
        before=result.baseline.brief(),
        after=result.final.brief(),
        delta_interval=(round(lo, 4), round(hi, 4)),
        confidence=settings.confidence,
        rounds=[asdict(r) for r in result.rounds],
        decisions=[d.to_json() for d in result.decisions],
        cost=ledger.to_json(),
        settings=run_settings,
        notes=notes,
        cost_table=ledger.table(),
        round_lines=[r.line() for r in result.rounds],
    )
    proposal.save(suite.root / ".pld" / "proposals")
    return proposal


def _report_synthesis(
    candidates: list[Candidate], clusters: int, notes: list[str], log: Callable[[str], None]
) -> None:
    made = sum(c.method == "synthesis" for c in candidates)
    reasons = Counter(
        c.note.removeprefix("teacher synthesis unusable: ").split(" (")[0]
        for c in candidates
        if c.method in ("medoid", "medoid-fallback") and c.note
    )
    msg = f"teacher synthesis: {made} of {clusters} clusters got a usable merged rule"
    if reasons:
        msg += "; unusable: " + ", ".join(f"{why} x{n}" for why, n in reasons.most_common())
    notes.append(msg)
    log(msg)


def _cap(
    candidates: list[Candidate], limit: int, notes: list[str], log: Callable[[str], None]
) -> list[Candidate]:
    """Each candidate costs a dev-split evaluation; the largest clusters go first."""
    ordered = sorted(candidates, key=lambda c: -c.support)
    if len(ordered) <= limit:
        return ordered
    msg = f"{len(ordered) - limit} smaller candidates not scored (--max-candidates {limit})"
    notes.append(msg)
    log(msg)
    return ordered[:limit]
