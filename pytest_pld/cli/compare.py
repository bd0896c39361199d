"""`pld compare`: two run records paired by example id."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_resamples_option


def cmd_compare(args: argparse.Namespace) -> int:
    from ..compare import compare_records
    from ..record import load_record
    from ..report.comparison import render

    a, b = load_record(args.record_a), load_record(args.record_b)
    comparison = compare_records(a, b, resamples=args.resamples)
    sys.stdout.write(render(comparison, args.format))
    return comparison.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="two run records paired by example id: deltas, intervals, McNemar, flips",
        description="Pair two run records of the same suite, split, sample, model, labels and "
        "data by example id and print each metric's delta B - A with its 95% paired bootstrap "
        "interval (resampling clusters when the records carry cluster ids), the exact McNemar "
        "test of correctness and the examples that flipped. Records that differ in any of "
        "those are not compared: the report says how they differ.",
        epilog="exit status: 0 compared; 1 not comparable (other model, labels, split, sample "
        "or data; the report lists the differences); 2 a record cannot be read or an option "
        "is wrong.",
    )
    p.add_argument("record_a", type=Path, metavar="RECORD_A", help="the reference (base) record")
    p.add_argument(
        "record_b", type=Path, metavar="RECORD_B", help="the record compared with it (head)"
    )
    p.add_argument(
        "--format",
        choices=("text", "md", "json"),
        default="text",
        help="text for the terminal, md for a PR comment, json for scripts (default: text)",
    )
    add_resamples_option(p)
    p.set_defaults(func=cmd_compare)
