"""Rendered-prompt snapshots: the system prompt each suite sends, committed next to its
instruction set (`instructions/NAME.prompt.txt` unless the suite sets `snapshot:`).

A change to a template, to the default template shipped with pytest-pld or to a rule alters
what the model sees; with the snapshot committed, that change shows up in the pull request's
diff as plain text, and the snapshot gate fails until the author updates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PldError
from .project import shown
from .review.diff import unified
from .textio import read_text

if TYPE_CHECKING:  # the CLI imports this module to build its parser: keep that cheap
    from .suite import Suite

MAX_DIFF_LINES = 40


def update_command(suite: Suite) -> str:
    return f"pld snapshot {suite.name} --update"


def render_snapshot(suite: Suite) -> str:
    """The text a snapshot holds: exactly the rendered system prompt."""
    return suite.system_prompt()


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
    rel = shown(path, suite.root)
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


def check_shared_paths(suites: Sequence[Suite]) -> None:
    """Two suites sharing an instruction set share its default snapshot path; that only works
    when they render the same prompt (same labels)."""
    by_path: dict[Path, Suite] = {}
    for suite in suites:
        path = suite.snapshot_path()
        other = by_path.setdefault(path, suite)
        if other is not suite and render_snapshot(other) != render_snapshot(suite):
            raise PldError(
                f"suites {other.name!r} and {suite.name!r} render different prompts "
                f"into the same snapshot {shown(path, suite.root)}",
                path=suite.path,
                key="snapshot",
                hint="give one of them its own path with `snapshot: "
                f"instructions/{suite.name}.prompt.txt`",
            )
