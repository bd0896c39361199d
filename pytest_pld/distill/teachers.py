"""Which teacher `pld teach` and `pld distill` use when none is named.

The default is the packaged Qwen2.5-Coder-1.5B-Instruct where it is installed: on five
ContractNLI train examples it wrote four sound, general rules against one or two for the 0.5B,
whose rules often quote the example ("If Ethiopia is an incredibly starving country, ...").

Where it is not installed, `pld teach` stops with the install command instead of falling back
to the 0.5B: traces are kept and feed every later distillation, a note in a long run's output
is easily missed, and a resumed run would silently mix two teachers in one file. `pld distill`
only proposes (nothing is written without --write, and a candidate rule is kept only if the
student's dev score rises), so there it falls back to the traces' own teacher with a note.
"""

from __future__ import annotations

from ..backends.packaged import (
    DEFAULT_TEACHER_MODEL,
    PACKAGED,
    install_command,
    is_installed,
)
from ..errors import PldError

DEFAULT_TEACHER = f"local:{DEFAULT_TEACHER_MODEL}"


def default_teacher() -> str:
    """The teacher of `pld teach` when none is named, or a PldError saying how to get one."""
    if is_installed(DEFAULT_TEACHER_MODEL):
        return DEFAULT_TEACHER
    raise PldError(
        f"no --teacher given, and the default teacher {DEFAULT_TEACHER} is not installed",
        hint=f"install it: {install_command(DEFAULT_TEACHER_MODEL)} (1.1 GB; about 4 GB of "
        "RAM to run), or name a teacher: --teacher openai:MODEL, or --teacher "
        "local:qwen2.5-coder-0.5b-instruct (smaller; its rules often quote the example)",
    )


def _is_packaged_local(name: str) -> bool:
    provider, _, model = name.partition(":")
    return provider == "local" and model.strip().lower() in PACKAGED


def distill_teacher(chosen: str | None, traces_teacher: str) -> tuple[str, str | None]:
    """(the teacher for synthesis and revision, a note for the output or None).

    A teacher named with --teacher wins. Otherwise traces written by a packaged local model
    are distilled with the default teacher where it is installed; traces from any other
    teacher (a hosted model, a local file) keep their own, which the user chose on purpose.
    """
    if chosen:
        return chosen, None
    if not _is_packaged_local(traces_teacher) or traces_teacher == DEFAULT_TEACHER:
        return traces_teacher, None
    if is_installed(DEFAULT_TEACHER_MODEL):
        return DEFAULT_TEACHER, (
            f"teacher {DEFAULT_TEACHER} (the default where installed; the traces were "
            f"written by {traces_teacher})"
        )
    return traces_teacher, (
        f"teacher {traces_teacher}, the traces' own: the default teacher {DEFAULT_TEACHER} "
        f"is not installed ({install_command(DEFAULT_TEACHER_MODEL)}); a smaller teacher "
        "merges and revises rules less well"
    )
