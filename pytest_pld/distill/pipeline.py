"""`pld distill` end to end: traces -> embed -> cluster -> synthesise -> generalise -> closed loop
-> wording check -> token budget -> final choice on dev's held-back fold -> proposal.

Split discipline: selection and the loop read train and dev's selection fold; the held-back
fold of dev (`folds`) makes the final choice and gives the reported numbers and the conditions
table; the gate split is never read (only its input texts, by the leakage guard).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..backends import get_backend
from ..errors import PldError
from ..folds import DEFAULT_HOLDOUT, Fold, sample, split_holdout
from ..instructions import Rule, load_instruction_set_text
from ..roles import ModelRoles
from ..suite import Suite
from ..textio import read_text
from .answers import MODES, default_mode
from .bookkeeping import cap_candidates, provenance, report_generality, report_synthesis
from .cluster import check_params, cluster_rules
from .cost import CostLedger, CountingTeacher, PhaseCost
from .embed import embed, resolve_embedder, rule_condition
from .finish import finish
from .generalise import DEFAULT_LIFT, DEFAULT_MAX_DF, Generaliser, Specificity
from .guard import LeakageCheck, refuse_gate_split
from .propose import IdAllocator, Proposal, build_proposal, used_ids
from .refine import ClosedLoop
from .student import Student
from .synthesize import STRATEGIES, synthesize
from .teach import header_for
from .teachers import distill_teacher
from .traces import Trace, check_compatible, read_traces
from .wording import ACTIONS


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
    synthesis: str = "auto"  # teacher | medoid | both; auto: both (teacher: none -> medoid)
    syntheses: int = 2  # teacher syntheses per cluster (each a candidate)
    rounds: int = 2  # revision rounds after the selection round
    limit_dev: int | None = 48  # dev selection-fold examples that score each candidate
    limit_holdout: int | None = 96  # held-back dev examples for the final choice and report
    holdout: float = DEFAULT_HOLDOUT  # share of dev held back (by group)
    limit_train: int | None = 32
    min_gain: float = 0.0
    confidence: float = 0.95
    strict: bool = False  # keep a rule only when its dev gain's interval excludes 0
    mode: str = "auto"
    max_candidates: int = 24
    specific_df: float = DEFAULT_MAX_DF  # generality test: "rare across train"
    specific_lift: float = DEFAULT_LIFT  # generality test: "frequent in the sources"
    wording: str = "drop"  # drop | flag | off: rules whose effect vanishes when reworded
    shots: int = 5  # the k-shot condition of the report
    seed: int = 0
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
        if self.wording not in ACTIONS:
            raise PldError(
                f"unknown --wording {self.wording!r}", hint=f"choose {', '.join(ACTIONS)}"
            )
        if not 0 <= self.holdout < 1:
            raise PldError(f"--holdout must be in [0, 1), got {self.holdout}")
        if not 0 < self.specific_df < 1:
            raise PldError(f"--specific-df must be in (0, 1), got {self.specific_df}")
        if self.specific_lift < 1:
            raise PldError(f"--specific-lift must be at least 1, got {self.specific_lift}")
        if self.shots < 0:
            raise PldError(f"--shots must be 0 or more, got {self.shots}")
        for name in ("limit_dev", "limit_holdout", "limit_train", "max_candidates", "syntheses"):
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
    select, held, train = dev_folds(suite, settings)
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
    strategy = "both" if settings.synthesis == "auto" else settings.synthesis
    if no_teacher:
        strategy = "medoid"
    header = header_for(base, suite)
    from ..cache import ResponseCache

    spec = Specificity.for_suite(
        suite, base, max_df=settings.specific_df, lift=settings.specific_lift
    )
    if not spec.n_docs:
        notes.append("no train split to measure document frequencies: the generality test is off")
    # words in rules for most labels are the teacher's phrasing (4 labels: 3; 3 or 2 labels: 2)
    spec.allow_phrasing(
        ((t.rule, t.gold) for t in usable), labels=max(2, len(suite.labels) // 2 + 1)
    )
    cache = ResponseCache(state_dir / "cache.sqlite", mode=settings.cache_mode)
    make_teacher = roles["teacher"].make_backend if roles is not None else get_backend
    teacher = None if no_teacher else CountingTeacher(make_teacher(teacher_name), ledger, cache)
    generaliser = Generaliser(spec, teacher, mode=mode, header=header)
    student_model = settings.student or suite.student
    student = Student(
        suite,
        student_model,
        ledger,
        cache_path=state_dir / "cache.sqlite",
        cache_mode=settings.cache_mode,
        progress=settings.progress,
        factory=roles["student"].factory(student_model) if roles is not None else None,
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
                syntheses=settings.syntheses,
                is_general=lambda text, ids: not spec.words(text, ids),
            )
        if teacher is not None:
            report_synthesis(candidates, len(clustering.clusters), notes, log)
        candidates = cap_candidates(candidates, settings.max_candidates, notes, log)
        with ledger.phase("generalise"):
            vetted = [v for c in candidates if (v := generaliser.vet(c)) is not None]
        report_generality(generaliser, len(candidates), notes, log)
        log(
            f"{len(vetted)} candidate rules; scoring them with {student.model} on "
            f"{len(select)} dev examples (selection fold; {len(held)} held back)"
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
            leak=LeakageCheck.for_suite(suite),
            select=select,
            train=train,
            vet=generaliser.vet,
            min_gain=settings.min_gain,
            confidence=settings.confidence,
            strict=settings.strict,
            log=log,
        )
        result = loop.run(vetted, settings.rounds)
        done = finish(
            suite,
            base,
            result.rules,
            list(result.accepted),
            student,
            ledger,
            select=select,
            held=held,
            train=train,
            teacher=teacher,
            mode=mode,
            header=header,
            wording=settings.wording,
            min_gain=settings.min_gain,
            strict=settings.strict,
            confidence=settings.confidence,
            shots=settings.shots,
            seed=settings.seed,
            log=log,
        )
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
    for rule in done.rules:
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
                provenance=provenance(decision, info, old_by_id.get(rule.id)),
            )
        )
    if result.stop_reason:
        notes.append(result.stop_reason)
    notes.extend(done.notes)
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
            "folds": {
                "selection": len(select),
                "held_back": len(held),
                "train": len(train),
                "reported_on": done.fold.name,
            },
        }
    )
    proposal = build_proposal(
        suite.name,
        path,
        base,
        base_text,
        rules,
        before=done.before.brief(),
        after=done.after.brief(),
        delta_interval=(round(done.interval[1], 4), round(done.interval[2], 4)),
        confidence=settings.confidence,
        rounds=[asdict(r) for r in result.rounds],
        decisions=[d.to_json() for d in result.decisions],
        cost=ledger.to_json(),
        settings=run_settings,
        notes=notes,
        cost_table=ledger.table(),
        round_lines=[r.line() for r in result.rounds],
        reported_on=done.fold.name,
        dropped=[d.to_json() for d in generaliser.dropped],
        dropped_lines=[d.line() for d in generaliser.dropped],
        wording=[w.to_json() for w in done.wording],
        wording_lines=[w.line() for w in done.wording],
        budget=None if done.budget is None else done.budget.to_json(),
        pruned_lines=[] if done.budget is None else [p.line() for p in done.budget.pruned],
        conditions=done.conditions,
    )
    proposal.save(state_dir / "proposals", root=suite.root)
    return proposal


def dev_folds(suite: Suite, settings: DistillSettings) -> tuple[Fold, Fold, Fold]:
    """(dev selection fold, dev held-back fold, train sample), each sampled to its limit."""
    rest, held = split_holdout(suite.load_examples("dev"), settings.holdout)
    train: list = []
    if settings.rounds and "train" in suite.splits:
        train = suite.load_examples("train", limit=settings.limit_train)
    key = suite.cluster_key or None
    return (
        Fold("dev/selection", "dev", tuple(sample(rest, settings.limit_dev)), key),
        Fold("dev/held-back", "dev", tuple(sample(held, settings.limit_holdout)), key),
        Fold("train", "train", tuple(train), key),
    )
