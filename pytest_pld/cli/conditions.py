"""`pld conditions`: zero-shot, k-shot and PLD, raw and calibrated, on the same examples of a
split, and the ship rule they decide."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..folds import DEFAULT_HOLDOUT
from ..yamlio import atomic_write_text
from .options import (
    add_data_root_option,
    add_format_option,
    add_limit_option,
    add_model_option,
    add_resamples_option,
    add_role_options,
    add_root_option,
    add_suite_argument,
    instructions_option,
    number_in,
    open_suite,
    positive_int,
)

_fraction = number_in(0, 1, low_open=True, high_open=True)


def _shots(text: str) -> int:
    """0 (no k-shot condition) or a positive number of examples."""
    return 0 if text.strip() == "0" else positive_int(text)


def cmd_conditions(args: argparse.Namespace) -> int:
    from ..conditions import SuiteEvaluator, compare_conditions, folds_for
    from ..report.conditions import FORMATS

    opened = open_suite(args)
    if opened is None:
        return 0
    root, suite, model = opened.root, opened.suite, opened.model
    iset = instructions_option(root, args.instructions) or suite.load_instructions()
    split = args.split or suite.gate_split
    evaluated, fit = folds_for(
        suite, split, limit=args.limit, limit_fit=args.limit_fit, holdout=args.holdout
    )
    evaluate = SuiteEvaluator(
        suite,
        model,
        "refresh" if args.refresh_cache else "use",
        factory=opened.student_factory(),
    )
    try:
        table = compare_conditions(
            suite,
            iset,
            evaluate,
            evaluated,
            fit,
            shots=args.shots,
            seed=args.seed,
            resamples=args.resamples,
            model=evaluate.model,
        )
    finally:
        evaluate.close()
    sys.stdout.write(FORMATS[args.format](table))
    if args.json is not None:  # the record beside a readable table, without a second run
        atomic_write_text(args.json, FORMATS["json"](table))
        print(f"wrote {args.json}", file=sys.stderr)
    print(
        f"model calls: {evaluate.model_calls} (cache hits: {evaluate.cache_hits})", file=sys.stderr
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conditions",
        help="compare zero-shot, k-shot and the rules, raw and calibrated, on one split; the "
        "ship rule",
        description="Evaluate, on the same examples of a split: the instruction set without "
        "rules (zero-shot), zero-shot + calibration (its label scores plus per-label offsets "
        "fitted on dev to maximise macro-F1: does a plain shift of the label prior do as well "
        "as the rules?), with K train examples (k-shot), the set itself (PLD) and PLD + "
        "calibration (offsets fitted for its own prompt), with paired bootstrap intervals of "
        "PLD minus each and PLD + calibration minus each. The offsets are fitted on dev, never "
        "on the evaluated split (for --split dev: on dev's selection fold, evaluating its "
        "held-back fold, the folds pld distill uses). The table ends with the ship rule: a "
        "calibration ships where zero-shot + calibration beats zero-shot with a paired "
        "interval above 0; rules ship on top only where PLD + calibration beats zero-shot + "
        "calibration with a paired 95% interval above 0 and no rule names example-specific "
        "words (the pld distill proposal's generality flags).",
    )
    add_suite_argument(p)
    p.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="the split to evaluate (default: the suite's gate split)",
    )
    p.add_argument(
        "--instructions",
        type=Path,
        default=None,
        metavar="FILE",
        help="the instruction set to evaluate (default: the suite's)",
    )
    p.add_argument(
        "--shots",
        type=_shots,
        default=5,
        metavar="K",
        help="train examples for the k-shot condition; 0 leaves it out (default: 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the k-shot draw (default: 0)")
    add_model_option(p)
    add_limit_option(p)
    p.add_argument(
        "--limit-fit",
        type=positive_int,
        default=None,
        metavar="N",
        help="dev examples the calibrated rows' offsets are fitted on (default: all)",
    )
    p.add_argument(
        "--holdout",
        type=_fraction,
        default=DEFAULT_HOLDOUT,
        metavar="F",
        help="for --split dev: the share of dev held back from distill's selection "
        f"(default: {DEFAULT_HOLDOUT:.3g}, as pld distill)",
    )
    add_resamples_option(p)
    add_format_option(p)
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the table as JSON to FILE (written atomically), whatever --format prints",
    )
    p.add_argument(
        "--refresh-cache",
        action="store_true",
        help="ask the model again instead of reusing cached answers",
    )
    add_role_options(p, ("student",))
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_conditions)
