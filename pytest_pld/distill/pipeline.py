"""`pld distill` end to end: traces -> embed -> cluster -> synthesise -> generalise -> closed loop
-> wording check -> token budget -> final choice on dev's held-back fold -> proposal.

Split discipline: selection and the loop read train and dev's selection fold; the held-back
fold of dev (`folds`) makes the final choice and gives the reported numbers and the conditions
table; the gate split is never read (only its input texts, by the leakage guard).

Calibrated selection (`--select-on calibrated`, the default where the student returns label
scores): every candidate set is judged with a calibration refitted for it, cross-fitted inside
the selection fold, so that the held-back fold is not spent on hundreds of comparisons and
stays an honest final check (read once, each set's offsets fitted on the whole selection
fold). Why, and how: `student` and `crossfit`.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ..backends import get_backend
from ..folds import Fold, sample, split_holdout
from ..instructions import InstructionSet, Rule, load_instruction_set_text
from ..roles import ModelRoles
from ..suite import Suite
from ..textio import read_text
from .answers import default_mode
from .bookkeeping import cap_candidates, provenance, report_generality, report_synthesis
from .cost import CostLedger, CountingTeacher
from .embed import Embedding, embed, rule_condition
from .finish import Finished, finish
from .generalise import Generaliser, Specificity
from .guard import LeakageCheck, refuse_gate_split
from .propose import IdAllocator, Proposal, build_proposal, used_ids
from .refine import ClosedLoop, Decision, LoopResult
from .rule_clusters import Clustering, cluster_rules
from .settings import DistillSettings
from .student import Student
from .synthesize import Candidate, synthesize
from .teach import header_for
from .teachers import distill_teacher
from .traces import Trace, load_usable_traces


def distill(
    suite: Suite,
    settings: DistillSettings,
    *,
    roles: ModelRoles | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    state_dir: Path | None = None,
) -> Proposal:
    """`roles`: each model's endpoint and options (default: the openai: backend's own
    environment variables, OPENAI_BASE_URL / OPENAI_API_KEY, for every role). `state_dir`
    holds the response cache and the saved proposal (default: the project's .pld folder)."""
    state_dir = state_dir or suite.root / ".pld"
    settings.check()
    refuse_gate_split(suite, "dev", "distill")  # dev scores the candidate rules
    if settings.rounds:
        refuse_gate_split(suite, "train", "distill")  # train shows the teacher failures
    run = DistillRun(suite, settings, dev_folds(suite, settings), CostLedger(), [], log)
    usable, teach_cost = load_usable_traces(suite, settings.traces, run.notes, log)
    run.ledger.phases["teach"] = teach_cost
    base_text = read_text(
        suite.instructions_path,
        what="instruction file",
        missing_hint="create it (pld validate checks it) before distilling",
    )
    base = load_instruction_set_text(base_text, suite.instructions_path)
    emb, clustering = embed_and_cluster(run, usable, roles)
    plan = plan_teaching(run, usable)
    header = header_for(base, suite)
    spec = specificity(run, base, usable)
    from ..cache import ResponseCache

    cache = ResponseCache(state_dir / "cache.sqlite", mode=settings.cache_mode)
    make_teacher = roles["teacher"].make_backend if roles is not None else get_backend
    teacher = (
        None if plan.no_teacher else CountingTeacher(make_teacher(plan.teacher), run.ledger, cache)
    )
    generaliser = Generaliser(spec, teacher, mode=plan.mode, header=header)
    student_model = settings.student or suite.student
    student = Student(
        suite,
        student_model,
        run.ledger,
        cache_path=state_dir / "cache.sqlite",
        cache_mode=settings.cache_mode,
        progress=settings.progress,
        factory=roles["student"].factory(student_model) if roles is not None else None,
        select_on=settings.select_on,
        # the held-back fold answers with offsets fitted on the whole selection fold
        fit_folds={run.folds.held.name: run.folds.select},
    )
    try:
        vetted = candidate_rules(run, usable, emb, clustering, teacher, plan, generaliser)
        log(
            f"{len(vetted)} candidate rules; scoring them with {student.model} on "
            f"{len(run.folds.select)} dev examples (selection fold; "
            f"{len(run.folds.held)} held back)"
        )
        result, done = select_and_finish(run, base, vetted, student, teacher, plan, generaliser)
    finally:
        student.close()
        if teacher is not None:
            teacher.close()
        cache.close()
    made = Made(
        plan,
        emb,
        clustering,
        student.model,
        student.judged_on or settings.select_on,
        student.note,
        result,
        done,
        generaliser,
    )
    proposal = propose(run, base, base_text, made)
    proposal.save(state_dir / "proposals", root=suite.root)
    return proposal


# --- the phases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillRun:
    """What every phase of one run reads or adds to: the suite and settings, the dev and train
    folds, the cost ledger, the notes the proposal will carry and the progress log."""

    suite: Suite
    settings: DistillSettings
    folds: DevFolds
    ledger: CostLedger
    notes: list[str]
    log: Callable[[str], None]


def embed_and_cluster(
    run: DistillRun, usable: Sequence[Trace], roles: ModelRoles | None
) -> tuple[Embedding, Clustering]:
    """Phase 2's first half: the traces' rules embedded and clustered (noise dropped)."""
    settings, log = run.settings, run.log
    # within a label, the rules' shared frame ("If ..., then the label is X") only pulls
    # them together: its condition is what tells one rule from another
    texts = [rule_condition(t.rule, t.gold) if settings.by_label else t.rule for t in usable]
    with run.ledger.phase("embed"):
        emb = embed(
            texts,
            settings.embedder,
            role=roles["embedder"] if roles is not None else None,
        )
    draws = len(usable) - len({t.id for t in usable})
    log(
        f"embedded {len(usable)} rules with {emb.name}"
        + (f" ({draws} of them further draws of an example)" if draws else "")
        + (f"; {emb.note}" if emb.note else "")
    )
    with run.ledger.phase("cluster"):
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
    run.notes.extend(clustering.notes)
    log(
        f"{len(clustering.clusters)} clusters ({clustering.method}), "
        f"{clustering.noise} noise rules dropped"
    )
    return emb, clustering


@dataclass(frozen=True)
class TeachingPlan:
    """Which teacher synthesises and revises, how it answers, and how candidates are made."""

    teacher: str  # provider:model, or "none"
    no_teacher: bool
    mode: str  # json | prefill
    strategy: str  # the synthesis strategy (synthesize.STRATEGIES)


def plan_teaching(run: DistillRun, usable: Sequence[Trace]) -> TeachingPlan:
    settings = run.settings
    traces_teacher = Counter(t.teacher for t in usable).most_common(1)[0][0]
    teacher_name, teacher_note = distill_teacher(settings.teacher, traces_teacher)
    if teacher_note:
        run.log(teacher_note)
        run.notes.append(teacher_note)
    no_teacher = teacher_name.strip().lower() == "none"
    mode = settings.mode if settings.mode != "auto" else default_mode(teacher_name)
    strategy = "both" if settings.synthesis == "auto" else settings.synthesis
    if no_teacher:
        strategy = "medoid"
    return TeachingPlan(teacher_name, no_teacher, mode, strategy)


def specificity(run: DistillRun, base: InstructionSet, usable: Sequence[Trace]) -> Specificity:
    """The generality test's document frequencies over train, the teacher's phrasing allowed."""
    suite, settings = run.suite, run.settings
    spec = Specificity.for_suite(
        suite, base, max_df=settings.specific_df, lift=settings.specific_lift
    )
    if not spec.n_docs:
        run.notes.append(
            "no train split to measure document frequencies: the generality test is off"
        )
    # words in rules for most labels are the teacher's phrasing (4 labels: 3; 3 or 2 labels: 2)
    spec.allow_phrasing(
        ((t.rule, t.gold) for t in usable), labels=max(2, len(suite.labels) // 2 + 1)
    )
    return spec


def candidate_rules(
    run: DistillRun,
    usable: Sequence[Trace],
    emb: Embedding,
    clustering: Clustering,
    teacher: CountingTeacher | None,
    plan: TeachingPlan,
    generaliser: Generaliser,
) -> list[Candidate]:
    """Phase 2's second half: each cluster's candidates synthesised, capped, and vetted by the
    generality test."""
    settings, notes, log = run.settings, run.notes, run.log
    with run.ledger.phase("synthesize"):
        candidates = synthesize(
            clustering.clusters,
            usable,
            emb.vectors,
            teacher=teacher,
            mode=plan.mode,
            header=generaliser.header,
            strategy=plan.strategy,
            syntheses=settings.syntheses,
            is_general=lambda text, ids: not generaliser.spec.words(text, ids),
        )
    if teacher is not None:
        report_synthesis(candidates, len(clustering.clusters), notes, log)
    candidates = cap_candidates(candidates, settings.max_candidates, notes, log)
    with run.ledger.phase("generalise"):
        vetted = [v for c in candidates if (v := generaliser.vet(c)) is not None]
    report_generality(generaliser, len(candidates), notes, log)
    return vetted


def select_and_finish(
    run: DistillRun,
    base: InstructionSet,
    vetted: list[Candidate],
    student: Student,
    teacher: CountingTeacher | None,
    plan: TeachingPlan,
    generaliser: Generaliser,
) -> tuple[LoopResult, Finished]:
    """Phase 3: the closed loop on dev's selection fold, then the wording check, the token
    budget and the final choice on the held-back fold (`finish`)."""
    suite, settings, folds = run.suite, run.settings, run.folds
    loop = ClosedLoop(
        suite,
        base,
        student,
        teacher=teacher,
        mode=plan.mode,
        header=generaliser.header,
        ids=IdAllocator(used_ids(base, suite.instructions_path)),
        ledger=run.ledger,
        leak=LeakageCheck.for_suite(suite),
        select=folds.select,
        train=folds.train,
        vet=generaliser.vet,
        min_gain=settings.min_gain,
        confidence=settings.confidence,
        strict=settings.strict,
        log=run.log,
    )
    result = loop.run(vetted, settings.rounds)
    done = finish(
        suite,
        base,
        result.rules,
        list(result.accepted),
        student,
        run.ledger,
        select=folds.select,
        held=folds.held,
        train=folds.train,
        teacher=teacher,
        mode=plan.mode,
        header=generaliser.header,
        wording=settings.wording,
        min_gain=settings.min_gain,
        strict=settings.strict,
        confidence=settings.confidence,
        shots=settings.shots,
        seed=settings.seed,
        log=run.log,
    )
    return result, done


@dataclass(frozen=True)
class Made:
    """What the phases made, for the proposal."""

    plan: TeachingPlan
    emb: Embedding
    clustering: Clustering
    student: str  # the student model that scored the candidates
    judged_on: str  # what the candidates were judged by: calibrated | raw answers
    judging_note: str  # why raw, when calibrated was asked for
    result: LoopResult
    done: Finished
    generaliser: Generaliser


def propose(run: DistillRun, base: InstructionSet, base_text: str, made: Made) -> Proposal:
    """The proposal: the new rule list as a diff of the instruction file, with its numbers,
    decisions, costs, checks and the settings it was made with."""
    result, done, generaliser = made.result, made.done, made.generaliser
    info = {
        "teacher": "none" if made.plan.no_teacher else made.plan.teacher,
        "embedder": made.emb.name,
        "cluster_method": made.clustering.method,
    }
    if made.judging_note:
        run.notes.append(made.judging_note)
    if result.stop_reason:
        run.notes.append(result.stop_reason)
    run.notes.extend(done.notes)
    return build_proposal(
        run.suite.name,
        run.suite.instructions_path,
        base,
        base_text,
        rules_with_provenance(base, done.rules, result.accepted, info),
        before=done.before.brief(),
        after=done.after.brief(),
        delta_interval=(round(done.interval[1], 4), round(done.interval[2], 4)),
        confidence=run.settings.confidence,
        rounds=[asdict(r) for r in result.rounds],
        decisions=[d.to_json() for d in result.decisions],
        cost=run.ledger.to_json(),
        settings=run_settings(run, info, made),
        notes=run.notes,
        cost_table=run.ledger.table(),
        round_lines=[r.line() for r in result.rounds],
        reported_on=done.fold.name,
        dropped=[d.to_json() for d in generaliser.dropped],
        dropped_lines=[d.line() for d in generaliser.dropped],
        wording=[w.to_json() for w in done.wording],
        wording_lines=[w.line() for w in done.wording],
        budget=None if done.budget is None else done.budget.to_json(),
        pruned_lines=[] if done.budget is None else [p.line() for p in done.budget.pruned],
        conditions=done.conditions,
        held_back=done.held_back,
        calibration=done.calibration,
    )


def rules_with_provenance(
    base: InstructionSet,
    rules: Sequence[Rule],
    accepted: Mapping[str, Decision],
    info: dict[str, Any],
) -> list[Rule]:
    """The final rules; each new or revised one carries the provenance of its decision."""
    old_by_id = {r.id: r for r in base.rules}
    out = []
    for rule in rules:
        decision = accepted.get(rule.id)
        if decision is None:
            out.append(rule)  # untouched: the very same object, so the same YAML lines
            continue
        out.append(
            Rule(
                id=rule.id,
                text=rule.text,
                label=rule.label,
                tags=rule.tags,
                provenance=provenance(decision, info, old_by_id.get(rule.id)),
            )
        )
    return out


def run_settings(run: DistillRun, info: Mapping[str, Any], made: Made) -> dict[str, Any]:
    """What the proposal records of how it was made: the settings, with what "auto" chose."""
    folds, clustering = run.folds, made.clustering
    out = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(run.settings).items()}
    out.update(
        {
            "teacher": info["teacher"],
            "mode": made.plan.mode,
            "synthesis": made.plan.strategy,
            "embedder": info["embedder"],
            "student": made.student,
            "judged_on": made.judged_on,
            "clustering": clustering.params
            | {
                "result": clustering.method,
                "clusters": len(clustering.clusters),
                "noise": clustering.noise,
            },
            "folds": {
                "selection": len(folds.select),
                "held_back": len(folds.held),
                "train": len(folds.train),
                "reported_on": made.done.fold.name,
            },
        }
    )
    return out


class DevFolds(NamedTuple):
    select: Fold  # dev's selection fold: scores every candidate
    held: Fold  # dev's held-back fold: the final choice and the reported numbers
    train: Fold  # the train sample whose failures drive revisions


def dev_folds(suite: Suite, settings: DistillSettings) -> DevFolds:
    """(dev selection fold, dev held-back fold, train sample), each sampled to its limit."""
    rest, held = split_holdout(suite.load_examples("dev"), settings.holdout)
    train: list = []
    if settings.rounds and "train" in suite.splits:
        train = suite.load_examples("train", limit=settings.limit_train)
    key = suite.cluster_key or None
    return DevFolds(
        Fold("dev/selection", "dev", tuple(sample(rest, settings.limit_dev)), key),
        Fold("dev/held-back", "dev", tuple(sample(held, settings.limit_holdout)), key),
        Fold("train", "train", tuple(train), key),
    )
