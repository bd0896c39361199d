"""`pld snapshot`: check or update the committed rendered system prompts."""

from __future__ import annotations

import argparse
import sys

from ..errors import PldError
from ..project import shown
from .options import add_root_option, project_root


def cmd_snapshot(args: argparse.Namespace) -> int:
    from ..snapshot import check_shared_paths, check_snapshot, update_snapshot
    from ..suite import find_suites, load_suite, resolve_suite_names

    root = project_root(args)
    names = [n for spec in args.suites for n in spec.split(",") if n.strip()]
    paths = (
        [p for n in names for p in resolve_suite_names(root, n)]
        if names
        else list(find_suites(root).values())
    )
    if not paths:
        raise PldError(f"no suites found in {root / 'suites'}", hint="add suites/NAME.yaml files")
    suites = [load_suite(p, root) for p in paths]
    check_shared_paths(suites)
    failed = 0
    for suite in suites:
        rel = shown(suite.snapshot_path(), root)
        if args.update:
            changed = update_snapshot(suite)
            print(f"{'wrote' if changed else 'unchanged'}  {suite.name}  {rel}")
            continue
        ok, message = check_snapshot(suite)
        if ok:
            print(f"ok     {suite.name}  {rel}")
        else:
            failed += 1
            print(f"FAILED {suite.name}: {message}")
    if failed:
        print(f"{failed} of {len(suites)} snapshots out of date", file=sys.stderr)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snapshot",
        help="check or update the committed rendered system prompts",
        description="Each suite's rendered system prompt is committed next to its instruction "
        "set (instructions/NAME.prompt.txt, or the suite's `snapshot:` path), so a "
        "change to a rule, a template or pytest-pld's default template shows in the "
        "pull request. Without --update, compare and exit 1 on any difference.",
    )
    p.add_argument(
        "suites", nargs="*", metavar="SUITE", help="suite names (default: every suite in suites/)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--update", action="store_true", help="write the snapshots from the current rendering"
    )
    mode.add_argument(
        "--check", action="store_true", help="compare only and exit 1 on a difference (the default)"
    )
    add_root_option(p)
    p.set_defaults(func=cmd_snapshot)
