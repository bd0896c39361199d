"""`pld merge`: join the partial run records of a sharded evaluation into the whole run."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from .options import add_root_option, project_root


def cmd_merge(args: argparse.Namespace) -> int:
    from ..record import load_record, save_record
    from ..runner import default_results_dir
    from ..shard_merge import merge_records

    parts = [load_record(path) for path in args.records]
    whole = merge_records(parts)
    out = args.out
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        folder = default_results_dir(project_root(args))
        out = folder / f"{whole.suite}-{whole.split}-merged-{stamp}.json"
    save_record(whole, out)
    m = whole.metrics
    print(
        f"{whole.suite}/{whole.split}: {len(whole.results)} examples from {len(parts)} shards, "
        f"model {whole.model}, instructions v{whole.instructions.get('version')}"
    )
    for name in ("accuracy", "macro_f1", "invalid_rate"):
        if name in m:
            print(f"  {name:<12} {m[name]:.3f}")
    print(f"run record: {out}")
    print(
        f"gate on it: pytest --pld-suite={whole.suite} --pld-record={out}"
        + (f" --pld-limit={whole.limit}" if whole.limit else "")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge",
        help="join the partial run records of N shards into the whole run record",
        description="Check that the records are the N parts of one sharded run (same suite, "
        "split, sample, model and instructions; every shard once) and write the whole run's "
        "record with its metrics. Gate on it with pytest --pld-suite=SUITE "
        "--pld-record=FILE.",
    )
    p.add_argument("records", nargs="+", type=Path, metavar="RECORD", help="partial run records")
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="where to write the whole record (default: .pld/runs/SUITE-SPLIT-merged-*.json)",
    )
    add_root_option(p)
    p.set_defaults(func=cmd_merge)
