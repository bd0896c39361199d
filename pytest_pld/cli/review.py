"""`pld review`: rule-level diff and metric deltas of instruction changes between revisions."""

from __future__ import annotations

import argparse
import sys

from .options import (
    add_data_root_option,
    add_limit_option,
    add_resamples_option,
    add_role_options,
    add_root_option,
    data_root,
    project_root,
    roles_from_args,
    shows_config,
)


def cmd_review(args: argparse.Namespace) -> int:
    from ..report.review import render
    from ..review.results import ReviewOptions
    from ..review.reviewer import review

    suites = tuple(n.strip() for spec in args.suite or [] for n in spec.split(",") if n.strip())
    root = project_root(args)
    roles = roles_from_args(args, root)
    if shows_config(args, roles, {"student": args.model or "each suite's student"}):
        return 0
    options = ReviewOptions(
        suites=suites,
        split=args.split,
        limit=args.limit,
        model=args.model,
        run=not args.no_run,
        tokens=not args.no_tokens,
        resamples=args.resamples,
        data_root=data_root(args),
        student=roles["student"],
    )
    result = review(
        root,
        base=args.base,
        head=args.head,
        options=options,
        log=lambda message: print(f"pld review: {message} ...", file=sys.stderr),
    )
    sys.stdout.write(render(result, args.format))
    # a review informs; the gates block. Problems found are in the report, not the exit code,
    # so a CI step can always post it.
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "review",
        help="rule-level diff and metric deltas of instruction changes between revisions",
        description="For every instruction set that differs between two git revisions: the "
        "rules added, removed and reworded (with provenance), the rendered system "
        "prompt's diff and size, and for each suite using the set the metric deltas "
        "with paired bootstrap intervals and the examples that flipped. Suites are "
        "read from the working tree, so both sides differ only in their instructions.",
    )
    p.add_argument(
        "--base",
        default=None,
        metavar="REV",
        help="the revision to compare with (default: the merge base of HEAD and the "
        "default branch, origin/HEAD, main or master)",
    )
    p.add_argument(
        "--head",
        default=None,
        metavar="REV",
        help="the revision under review (default: the working tree)",
    )
    p.add_argument(
        "--suite",
        action="append",
        metavar="NAME",
        help="only instruction sets used by this suite (repeatable, or NAME,NAME)",
    )
    p.add_argument(
        "--format",
        choices=("md", "text", "json"),
        default="text",
        help="md for a pull-request comment, text for a terminal, json for tools (default: text)",
    )
    p.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="the split to evaluate (default: each suite's gate split)",
    )
    add_limit_option(p)
    p.add_argument(
        "--model", default=None, metavar="M", help="provider:model, overriding each suite's student"
    )
    p.add_argument(
        "--no-run",
        action="store_true",
        help="only reuse run records in .pld/runs; never call a model",
    )
    p.add_argument(
        "--no-tokens",
        action="store_true",
        help="measure prompts in characters (does not load a tokenizer)",
    )
    add_resamples_option(p)
    add_root_option(p)
    add_data_root_option(p)
    add_role_options(p, ("student",))
    p.set_defaults(func=cmd_review)
