"""`pld teach` and `pld distill`: phases 1-3 of PLD, as thin commands over `pytest_pld.distill`
(their options: `distill_options`; the proposal as printed: `report.proposal`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..distill.teachers import DEFAULT_TEACHER, default_teacher
from ..errors import PldError
from ..project import shown
from .distill_options import add_distill_options, add_teach_options
from .options import load_suite_by_name, project_root, roles_from_args, shows_config

if TYPE_CHECKING:
    from ..suite import Suite


def cmd_teach(args: argparse.Namespace) -> int:
    from ..distill.draws import DEFAULT_SEED, DEFAULT_TEMPERATURE
    from ..distill.teach import teach

    root = project_root(args)
    suite = load_suite_by_name(root, args.suite, args)
    out = args.out or root / "traces" / f"{suite.name}.jsonl"
    roles = roles_from_args(args, root)
    if shows_config(args, roles, {"teacher": args.teacher or DEFAULT_TEACHER}):
        return 0
    teacher = args.teacher or default_teacher()  # a missing default teacher: a quick error
    if args.batch:
        if args.samples > 1 or args.per_label is not None:
            raise PldError(
                "--batch teaches one greedy draw per example of a --limit sample",
                hint="run without --batch for --samples or --per-label",
            )
        from ..distill.batch import teach_with_batch_api

        summary = teach_with_batch_api(
            suite,
            teacher=teacher,
            role=roles["teacher"],
            out=out,
            split=args.split,
            limit=args.limit,
            mode=args.mode,
            retry_failed=not args.skip_failed,
            poll_s=args.batch_poll,
            log=lambda s: print(s, file=sys.stderr, flush=True),
        )
    else:
        backend = roles["teacher"].make_backend(teacher)
        try:
            summary = teach(
                suite,
                teacher=backend,
                out=out,
                split=args.split,
                limit=args.limit,
                per_label=args.per_label,
                samples=args.samples,
                temperature=DEFAULT_TEMPERATURE if args.temperature is None else args.temperature,
                seed=DEFAULT_SEED if args.seed is None else args.seed,
                mode=args.mode,
                retry_failed=not args.skip_failed,
                progress=None,
            )
        finally:
            backend.close()
    for line in summary.lines():
        print(line)
    print(f"traces: {shown(out, root)}")
    if summary.interrupted:
        return 130
    if summary.stopped:
        return 1
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from ..distill.pipeline import distill
    from ..distill.settings import DistillSettings

    root = project_root(args)
    suite = load_suite_by_name(root, args.suite, args)
    roles = roles_from_args(args, root)
    models = {  # as --show-config shows them; the pipeline resolves the ones it uses
        "teacher": args.teacher or "(the traces' teacher)",
        "student": args.student or suite.student,
        "embedder": args.embedder,
    }
    if shows_config(args, roles, models):
        return 0
    if args.apply:
        return _apply(args.apply, suite, root)
    if args.traces is None:
        raise PldError(
            "--traces FILE is required",
            hint=f"pld distill {suite.name} --traces traces/{suite.name}.jsonl",
        )
    settings = DistillSettings(
        traces=args.traces,
        teacher=args.teacher,
        student=args.student,
        embedder=args.embedder,
        # asking for k clusters asks for k-means
        cluster="kmeans" if args.k is not None and args.cluster == "auto" else args.cluster,
        eps=args.eps,
        min_samples=args.min_samples,
        k=args.k,
        by_label=not args.global_clusters,
        synthesis=args.synthesis,
        syntheses=args.syntheses,
        rounds=args.rounds,
        limit_dev=args.limit_dev,
        limit_holdout=args.limit_holdout,
        holdout=args.holdout,
        limit_train=args.limit_train,
        min_gain=args.min_gain,
        strict=args.strict,
        select_on=args.select_on,
        mode=args.mode,
        max_candidates=args.max_candidates,
        specific_df=args.specific_df,
        specific_lift=args.specific_lift,
        wording=args.wording,
        shots=args.shots,
        seed=args.seed,
        cache_mode="refresh" if args.refresh_cache else "use",
    )
    proposal = distill(suite, settings, roles=roles)
    from ..report.proposal import proposal_text

    rel = shown(proposal.path, root)
    print(proposal_text(proposal, suite.name, root), end="")
    if not args.write:
        if proposal.changed:
            print(
                f"nothing written; apply with --write, or: pld distill {suite.name} --apply "
                f"{shown(proposal.saved_to, root) if proposal.saved_to else 'PROPOSAL'}"
            )
        return 0
    if not proposal.changed:
        print("nothing to write")
        return 0
    proposal.write()
    print(f"wrote {rel} (version {proposal.new.version}); check it with: pld validate")
    return 0


def _apply(file: Path, suite: Suite, root: Path) -> int:
    """Apply a saved proposal, refusing when the file no longer holds its base text."""
    from ..distill.propose import apply_saved_proposal

    new, layout_differs = apply_saved_proposal(file, suite.instructions_path, root=root)
    if layout_differs:
        print("note: the written text differs in layout from the saved proposal", file=sys.stderr)
    target = shown(suite.instructions_path, root)
    print(f"wrote {target} (version {new.version}); check it with: pld validate")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "teach",
        help="phase 1: one rule per training example (K with --samples K) -> traces (JSON lines)",
        description="Ask a teacher model, for each example of a split (given the input and the "
        "gold label), for one general rule - or, with --samples K, for K rules: draw 0 is the "
        "greedy answer, draws 1..K-1 are sampled at --temperature with seeds derived from "
        "--seed, the example and the draw. Appends JSON lines to --out; re-running skips the "
        "(example, draw) pairs already taught, so an interrupted run resumes and a repeated "
        "run asks for the same draws.",
    )
    add_teach_options(p)
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser(
        "distill",
        help="phases 2-3: cluster traces into rules, keep those that help; prints a diff",
        description="Embed and cluster the traces' rules, synthesise one rule per cluster, keep "
        "a rule only if the student's dev-split macro-F1 improves (on its answers calibrated "
        "with offsets refitted for each candidate set, where it returns label scores: "
        "--select-on), let the teacher revise rules that cause train-split failures, and "
        "print the proposed instruction file, with the calibration refitted for it, as a "
        "unified diff. Writes only with --write.",
    )
    add_distill_options(p)
    p.set_defaults(func=cmd_distill)
