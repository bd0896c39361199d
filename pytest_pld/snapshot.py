"""Rendered-prompt snapshots: the system prompt each suite sends, committed next to its
instruction set (`instructions/NAME.prompt.txt` unless the suite sets `snapshot:`).

A change to a template, to the default template shipped with pytest-pld or to a rule alters
what the model sees; with the snapshot committed, that change shows up in the pull request's
diff as plain text, and the snapshot gate fails until the author updates it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PldError
from .review_diff import unified
from .textio import read_text

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from .suite import Suite

MAX_DIFF_LINES = 40


def update_command(suite: Suite) -> str:
    return f"pld snapshot {suite.name} --update"


def render_snapshot(suite: Suite) -> str:
    """The text a snapshot holds: exactly the rendered system prompt."""
    from .render import render_system_prompt

    return render_system_prompt(suite.load_instructions(), suite.labels, suite.root)


def _relative(suite: Suite, path: Path) -> str:
    try:
        return path.relative_to(suite.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_snapshot(path: Path) -> str | None:
    """The committed snapshot, or None when there is none; undecodable text is a PldError."""
    if not path.exists():
        return None
    text = read_text(
        path,
        what="snapshot",
        decode_hint="it is generated: delete it and re-create it with `pld snapshot --update`",
    )
    # a checkout with core.autocrlf turns \n into \r\n; that is not a prompt change
    return text.replace("\r\n", "\n")


def snapshot_enabled(suite: Suite) -> bool:
    """Whether the suite has a snapshot gate: it names a `snapshot:` path, or the default
    snapshot file is committed. Projects that never ran `pld snapshot --update` get no extra
    item (and no failure) until they opt in; deleting a snapshot shows in the PR's diff."""
    return suite.snapshot is not None or suite.snapshot_path().is_file()


def check_snapshot(suite: Suite) -> tuple[bool, str]:
    """(ok, message) for a gate item: does the rendered system prompt equal the snapshot?

    A failure message names the snapshot file, shows the start of the diff and gives the
    command that updates the snapshot.
    """
    path = suite.snapshot_path()
    rel = _relative(suite, path)
    try:
        rendered = render_snapshot(suite)
    except PldError as exc:
        return False, (
            f"the system prompt does not render, so it cannot be compared with {rel}:\n{exc}"
        )
    stored = read_snapshot(path)
    if stored is None:
        return False, (
            f"no snapshot of the rendered system prompt at {rel}\n"
            f"create it and commit it: {update_command(suite)}"
        )
    if stored == rendered:
        return True, f"rendered system prompt matches {rel}"
    diff = unified(
        stored, rendered, old_name=f"{rel} (snapshot)", new_name="rendered now", context=1
    ).splitlines()
    if len(diff) > MAX_DIFF_LINES:
        diff = [*diff[:MAX_DIFF_LINES], f"... {len(diff) - MAX_DIFF_LINES} more lines"]
    return False, (
        f"the rendered system prompt differs from its snapshot {rel}:\n" + "\n".join(diff) + "\n"
        f"if the change is intended, update the snapshot and commit it: "
        f"{update_command(suite)}"
    )


def update_snapshot(suite: Suite) -> bool:
    """Write the snapshot; True when its content changed."""
    rendered = render_snapshot(suite)
    path = suite.snapshot_path()
    if read_snapshot(path) == rendered:
        return False
    from .yamlio import atomic_write_text

    atomic_write_text(path, rendered)
    return True


def _check_shared_paths(suites: Sequence[Suite]) -> None:
    """Two suites sharing an instruction set share its default snapshot path; that only works
    when they render the same prompt (same labels)."""
    by_path: dict[Path, Suite] = {}
    for suite in suites:
        path = suite.snapshot_path()
        other = by_path.setdefault(path, suite)
        if other is not suite and render_snapshot(other) != render_snapshot(suite):
            raise PldError(
                f"suites {other.name!r} and {suite.name!r} render different prompts "
                f"into the same snapshot {_relative(suite, path)}",
                path=suite.path,
                key="snapshot",
                hint="give one of them its own path with `snapshot: "
                f"instructions/{suite.name}.prompt.txt`",
            )


# --- the command -------------------------------------------------------------------------------


def cmd_snapshot(args: argparse.Namespace) -> int:
    from .cli import project_root
    from .suite import find_suites, load_suite, resolve_suite_names

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
    _check_shared_paths(suites)
    failed = 0
    for suite in suites:
        rel = _relative(suite, suite.snapshot_path())
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
    from .cli import add_root_option

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
