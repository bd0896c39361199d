"""`pld report`: a run record as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import add_resamples_option


def cmd_report(args: argparse.Namespace) -> int:
    from ..ablate import load_ablation
    from ..record import load_record
    from ..report.html_page import build_html, check_output_path, write_html

    check_output_path(args.html)  # before the bootstrap work, not after it
    record = load_record(args.record)
    other = load_record(args.compare) if args.compare else None
    ablation = load_ablation(args.ablation) if args.ablation else None
    report = build_html(record, compare=other, ablation=ablation, resamples=args.resamples)
    write_html(report, args.html)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    size = len(report.html.encode("utf-8")) / 1024
    print(f"wrote {args.html} ({size:.0f} KB)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a run record as one self-contained HTML page (charts, intervals, flips)",
        description="Write one HTML file - no script, no network, inline SVG charts - with the "
        "record's metrics and bootstrap intervals, gold against predicted labels, the "
        "confusion matrix, per-class precision/recall/F1, per-label score distributions "
        "(local models), the examples that flipped against a compared record, and each "
        "rule's effect from an ablation.",
    )
    p.add_argument("record", type=Path, metavar="RECORD", help="a run record (.pld/runs/*.json)")
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="OTHER",
        help="another run record of the same suite, split, sample, model and labels: deltas "
        "and flipped examples, paired by example id (a record that cannot be paired is "
        "flagged on the page)",
    )
    p.add_argument(
        "--ablation",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-rule effects from `pld ablate SUITE --format json > FILE`",
    )
    p.add_argument("--html", type=Path, required=True, metavar="OUT", help="the HTML file to write")
    add_resamples_option(p)
    p.set_defaults(func=cmd_report)
