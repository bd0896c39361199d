"""`pld calibrate`: fit a set's label calibration on dev and propose it as a diff."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..calibration import METHODS, PRIOR_SHIFT
from ..project import shown
from .options import (
    add_data_root_option,
    add_limit_option,
    add_model_option,
    add_resamples_option,
    add_role_options,
    add_root_option,
    add_suite_argument,
    instructions_option,
    open_suite,
)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..calibrate import DEFAULT_SPLIT, calibrate_suite
    from ..runner import LazyBackend

    opened = open_suite(args)
    if opened is None:
        return 0
    root, suite, model = opened.root, opened.suite, opened.model
    lazy = LazyBackend(model, opened.student_factory())
    try:
        proposal = calibrate_suite(
            suite,
            split=args.split or DEFAULT_SPLIT,
            method=args.method,
            instructions=instructions_option(root, args.instructions),
            limit=args.limit,
            model=model,
            backend=lazy,
            cache_mode="refresh" if args.refresh_cache else "use",
        )
    finally:
        lazy.close()
    rel = shown(proposal.path, root)
    print(f"# pld calibrate {suite.name}: {args.method} for {rel}")
    for note in proposal.notes:
        print(f"# note: {note}")
    for line in proposal.lines(resamples=args.resamples):
        print(line)
    print(f"model calls: {proposal.model_calls} (cache hits: {proposal.cache_hits})")
    print()
    if not proposal.changed:
        print(f"{rel} already holds this calibration; nothing to write")
        return 0
    print(proposal.diff(rel), end="")
    if not args.write:
        print("nothing written; add --write to write it")
        return 0
    proposal.write()
    print(f"wrote {rel}; check it with: pld validate")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit per-label offsets on the student's label scores; prints a diff",
        description="Evaluate a split (default: dev) with the suite's student through the "
        "response cache, fit per-label offsets on its label scores, and print macro-F1 and "
        "accuracy raw and calibrated with 95% intervals (over the suite's clusters), the "
        "predicted labels against the gold ones, and the diff of the instruction file's "
        "`calibration:` section. Writes only with --write (comments and key order kept). "
        "Methods: prior-shift maximises macro-F1 on the split's labelled examples; "
        "contextual needs no labels: it scores content-free inputs ('N/A', '', '[MASK]') "
        "through the suite's user template and divides each label's probability by theirs. "
        "The suite's gate split is refused: the gates must judge unseen examples.",
    )
    add_suite_argument(p)
    p.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="the split to fit on: any the suite declares but its gate split (default: dev)",
    )
    p.add_argument(
        "--method",
        choices=tuple(METHODS),
        default=PRIOR_SHIFT,
        help=f"how to fit (default: {PRIOR_SHIFT})",
    )
    p.add_argument(
        "--instructions",
        type=Path,
        default=None,
        metavar="FILE",
        help="the instruction file to calibrate (default: the suite's)",
    )
    add_model_option(p)
    add_limit_option(p)
    p.add_argument(
        "--write",
        action="store_true",
        help="write the calibration into the instruction file",
    )
    p.add_argument(
        "--refresh-cache",
        action="store_true",
        help="ask the model again instead of reusing cached answers",
    )
    add_resamples_option(p)
    add_role_options(p, ("student",))
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_calibrate)
