"""`pld ablate`: leave-one-rule-out on the dev split."""

from __future__ import annotations

import argparse
import sys

from .options import (
    add_data_root_option,
    add_format_option,
    add_limit_option,
    add_model_option,
    add_resamples_option,
    add_role_options,
    add_root_option,
    add_suite_argument,
    open_suite,
)


def cmd_ablate(args: argparse.Namespace) -> int:
    from ..ablate import ablate
    from ..report.ablation import format_json, format_markdown, format_text

    opened = open_suite(args)
    if opened is None:
        return 0
    mode = "off" if args.no_cache else "use"
    result = ablate(
        opened.suite,
        split=args.split,
        limit=args.limit,
        model=opened.model,
        factory=opened.student_factory(),
        tokens=not args.no_tokens,
        resamples=args.resamples,
        cache_mode=mode,
        progress=lambda m: print(f"pld ablate: {m} ...", file=sys.stderr),
    )
    formatter = {"text": format_text, "md": format_markdown, "json": format_json}[args.format]
    sys.stdout.write(formatter(result))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="leave-one-rule-out: each rule's effect on macro-F1 and accuracy",
        description="Evaluate the suite's instruction set on the dev split with all rules, "
        "without each rule in turn, and without any rule; print each rule's effect "
        "with paired bootstrap intervals, its prompt-size cost, and the rules whose "
        "removal does not hurt (prune candidates). Where the student returns label scores, "
        "the effects are measured on answers calibrated with offsets refitted for each "
        "variant (cross-fitted on the examples), so a rule that only moves the label prior "
        "shows no effect; the raw effects are printed beside them. Cached answers are reused.",
    )
    add_suite_argument(p)
    p.add_argument(
        "--split",
        default="dev",
        metavar="S",
        help="the split to ablate on (default: dev; the gate split is allowed, with a note "
        "that choosing rules by their effect there fits the gate)",
    )
    add_limit_option(p)
    add_model_option(p)
    add_format_option(p)
    p.add_argument(
        "--no-tokens",
        action="store_true",
        help="measure rule cost in characters (does not load a tokenizer)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the response cache"
    )
    add_resamples_option(p)
    add_root_option(p)
    add_data_root_option(p)
    add_role_options(p, ("student",))
    p.set_defaults(func=cmd_ablate)
