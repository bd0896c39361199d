"""`pld validate`: check instruction and suite files, printing every error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PldError, PldErrors
from ..project import shown
from ..validate import files_to_check, validate_file
from .options import add_data_root_option, add_root_option, data_root, project_root


def cmd_validate(args: argparse.Namespace) -> int:
    root = project_root(args)
    paths = files_to_check(args.paths, root)
    where = data_root(args)
    failures = 0
    for path in paths:
        try:
            kind = validate_file(path, root, data_root=where)
        except PldError as exc:
            failures += 1
            for error in exc.errors if isinstance(exc, PldErrors) else [exc]:
                print(f"error {error.format()}", file=sys.stderr)
            continue
        print(f"ok    {shown(path, root)}  {kind}")
    print(f"{len(paths) - failures} of {len(paths)} files valid")
    return 1 if failures else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check instruction and suite files",
        description="Check every instruction and suite file (default: instructions/ and "
        "suites/): YAML, keys and types, templates, paths, the first example of each "
        "suite's gate split, and the calibration of each suite's instruction set (its labels "
        "must be the suite's; fitted for another student or another rendered prompt, it is "
        "stale, and the error names the command that refits it). Prints all errors; exit 1 "
        "on any.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders to check (default: instructions/ and suites/)",
    )
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_validate)
