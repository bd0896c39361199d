"""Checking instruction and suite files the way `pld validate` and CI do.

A suite is checked end to end as far as that needs no model: the file, its instruction set,
the rendered system prompt, the set's calibration (its labels must be the suite's, and it must
have been fitted for the suite's student and this rendered prompt, else it is stale), and its
data - every split that can be reached, checked against the suite and rendered
(`suite.data_checks.check_suite_data`). An instruction set's label names are checked against
the suites that use it (`instruction_checks`). Every error is a PldError naming file, line and
key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import PldError, PldErrors, counted

YAML_SUFFIXES = (".yaml", ".yml")


def files_to_check(paths: Sequence[Path], root: Path) -> list[Path]:
    """The YAML files of the given files and folders (default: instructions/ and suites/).

    A path that does not exist is kept, so that checking it reports "file not found"."""
    out: list[Path] = []
    for path in paths or [root / "instructions", root / "suites"]:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in YAML_SUFFIXES))
        else:
            out.append(path)
    return out


def kind_of(path: Path) -> str:
    """'suite' or 'instructions', from the folder, else from the content."""
    parts = {p.name for p in path.parents}
    if "suites" in parts and "instructions" not in parts:
        return "suite"
    if "instructions" in parts:
        return "instructions"
    from .yamlio import load_yaml

    doc = load_yaml(path)
    return "suite" if isinstance(doc, dict) and "dataset" in doc else "instructions"


def validate_file(
    path: Path, root: Path, *, data_root: Path | None = None, notes: list[str] | None = None
) -> str:
    """Check one file; returns what it is ('suite (7 gates, regression)'), raises PldErrors
    with every problem found. A suite's data is read and checked too, every split that can be
    reached (`data_checks.check_suite_data`); what is worth knowing but not wrong goes into
    `notes`. `data_root` is where the suite's `data:PATH` split paths resolve."""
    from .calibration import suite_problems
    from .instruction_checks import check_instruction_set
    from .instructions import load_instruction_set
    from .suite import load_suite
    from .suite.data_checks import check_suite_data

    if not path.exists():
        raise PldError("file not found", path=path)
    if kind_of(path) == "instructions":
        iset = load_instruction_set(path, root=root)
        # label names against the labels of the suites that use the set (it may be shared)
        check_instruction_set(iset, (), root)
        return f"instructions v{iset.version} ({counted(len(iset.rules), 'rule')})"
    suite = load_suite(path, root, data_root=data_root)
    errors: list[PldError] = []
    try:
        iset = suite.load_instructions()
        system = suite.system_prompt(iset)
    except PldError as exc:
        errors += each_error(exc)
    else:
        if iset.calibration is not None:  # where the set meets the suite: labels, student
            errors += suite_problems(
                iset.calibration,
                labels=suite.labels,
                student=suite.student,
                system_prompt=system,
                suite=suite.name,
                backend=_cheap_identity(suite.student),
            )
    found, said = check_suite_data(suite)
    errors += found
    if notes is not None:
        notes += said
    if errors:
        raise PldErrors(errors)
    return (
        f"suite ({counted(len(suite.gates), 'gate')}{', regression' if suite.regression else ''})"
    )


def each_error(exc: PldError) -> list[PldError]:
    """The single errors a PldError stands for (a PldErrors holds several)."""
    return list(exc.errors) if isinstance(exc, PldErrors) else [exc]


def _cheap_identity(student: str) -> dict[str, object] | None:
    """The student's backend identity where it needs no model (a local model's: its weights
    digest and dtype), so that a calibration fitted in another dtype is stale here too; None
    where that would need a model or a server (the runner checks it then)."""
    from .backends import cheap_identity

    try:
        return cheap_identity(student)
    except PldError:  # not installed: the run says so
        return None
