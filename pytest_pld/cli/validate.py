"""`pld validate`: check instruction and suite files, printing every error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import PldError
from ..project import shown
from ..validate import each_error, files_to_check, validate_file
from .options import add_data_root_option, add_root_option, data_root, project_root


def cmd_validate(args: argparse.Namespace) -> int:
    root = project_root(args)
    if not args.paths and not any((root / d).is_dir() for d in ("instructions", "suites")):
        # "instructions: file not found" for both folders would not say what to do
        error = PldError(
            "no pld project here: no instructions/ or suites/ folder to validate",
            path=root,
            hint="start one with `pld init NAME --data FILE --text COLUMN --label COLUMN` "
            "(it writes suites/NAME.yaml and instructions/NAME.yaml), or point at a project "
            "with --root DIR",
        )
        print(f"error {error.format()}", file=sys.stderr)
        return 1
    paths = files_to_check(args.paths, root)
    where = data_root(args)
    checked = {p.resolve(): p for p in paths}
    printed: set[str] = set()
    invalid: set[Path] = set()
    for path in paths:
        notes: list[str] = []
        elsewhere: set[Path] = set()
        try:
            kind = validate_file(path, root, data_root=where, notes=notes)
        except PldError as exc:
            for error in each_error(exc):
                # an error in another checked file (a suite's instruction set) is that file's:
                # printed once, and counted against it, not against every suite that uses it
                owner = checked.get(Path(error.path).resolve()) if error.path else None
                invalid.add(owner or path)
                if owner is not None and owner != path:
                    elsewhere.add(owner)
                text = error.format()
                if text not in printed:
                    printed.add(text)
                    print(f"error {text}", file=sys.stderr)
            others = ", ".join(shown(p, root) for p in sorted(elsewhere))
            kind = f"its own content is valid; see the errors of {others}"
        if path not in invalid:
            print(f"ok    {shown(path, root)}  {kind}")
        for note in notes:
            print(f"      note: {note}")
    valid = sum(p not in invalid for p in paths)
    print(f"{valid} of {len(paths)} files valid")
    return 1 if invalid else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check instruction and suite files",
        description="Check every instruction and suite file (default: instructions/ and "
        "suites/): YAML, keys and types, templates, paths, label names against the suites' "
        "labels, the calibration of each suite's instruction set (its labels must be the "
        "suite's; fitted for another student or another rendered prompt, it is stale, and the "
        "error names the command that refits it), and each suite's data - every split it can "
        "reach, read, checked against the suite (gold labels it does not list, blank labels or "
        "texts, duplicate ids, template fields the data lacks, suite labels no example carries) "
        "and rendered - before any model time. Prints each error once; exit 1 on any.",
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
