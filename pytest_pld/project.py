"""Where the project is, and keeping file access inside it (or, for data files written
`data:PATH`, inside the data root)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .errors import PldError

_MARKERS = ("pyproject.toml", "pytest.ini", "tox.ini", ".git")


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding a suites/ folder or a project marker."""
    here = (start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        if (folder / "suites").is_dir() or any((folder / m).exists() for m in _MARKERS):
            return folder
    return here


def resolve_inside(
    root: Path,
    relative: str,
    *,
    path: Path | str | None = None,
    line: int | None = None,
    key: str | None = None,
) -> Path:
    """Resolve `relative` against the project root and refuse anything that escapes it.

    Suite and instruction files arrive in pull requests; a path such as `../../etc/passwd`
    or an absolute path must not let them read outside the repository.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise PldError("expected a non-empty relative path", path=path, line=line, key=key)
    candidate = Path(relative)
    if candidate.is_absolute():
        raise PldError(
            f"absolute path {relative!r} is not allowed",
            path=path,
            line=line,
            key=key,
            hint="use a path relative to the project root",
        )
    root = root.resolve()
    resolved = (root / candidate).resolve()
    if resolved != root and root not in resolved.parents:
        raise PldError(
            f"path {relative!r} escapes the project root {root}",
            path=path,
            line=line,
            key=key,
            hint="keep instruction templates and data inside the project",
        )
    return resolved


DATA_PREFIX = "data:"
DATA_ROOT_ENV = "PLD_DATA_ROOT"
DATA_ROOT_HINT = (
    f"pass --data-root DIR (pytest: --pld-data-root DIR) or set {DATA_ROOT_ENV}=DIR, the "
    "folder that holds the data"
)


def is_data_path(path: str) -> bool:
    """Whether a suite's data path reads from the data root (`data:relative/path`)."""
    return isinstance(path, str) and path.startswith(DATA_PREFIX)


def data_root(
    given: str | Path | None, environ: Mapping[str, str] | None = None, *, option: str
) -> Path | None:
    """The data root from the command line (`given`, named `option` in messages), else from
    $PLD_DATA_ROOT, else None. It must be an existing folder: a typo would otherwise surface
    later as a missing data file."""
    env = os.environ if environ is None else environ
    source, value = (option, given) if given else (DATA_ROOT_ENV, env.get(DATA_ROOT_ENV) or None)
    if value is None:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise PldError(
            f"{source}: the data root {str(value)!r} {what}",
            hint=f"give the folder that holds the data files (resolved: {root.resolve()})",
        )
    return root.resolve()


def resolve_data(
    root: Path,
    data_root: Path | None,
    spec: str,
    *,
    path: Path | str | None = None,
    line: int | None = None,
    key: str | None = None,
) -> Path:
    """A data file of a suite: `data:relative` under the data root, anything else inside the
    project. Either way a path escaping its root is refused."""
    if not is_data_path(spec):
        return resolve_inside(root, spec, path=path, line=line, key=key)
    relative = spec[len(DATA_PREFIX) :]
    if data_root is None:
        raise PldError(
            f"{spec!r} reads from the data root, and none is set",
            path=path,
            line=line,
            key=key,
            hint=DATA_ROOT_HINT,
        )
    try:
        return resolve_inside(data_root, relative, path=path, line=line, key=key)
    except PldError as exc:
        raise PldError(
            exc.message.replace("the project root", "the data root"),
            path=path,
            line=line,
            key=key,
            hint=f"write data:PATH with PATH relative to the data root {data_root}",
        ) from None


def check_data_spec(
    spec: str, *, path: Path | str | None = None, line: int | None = None, key: str | None = None
) -> None:
    """Check a `data:` path's form without a data root (a suite is loaded before one is known
    to be needed): relative, and not climbing out of whatever root it is resolved against."""
    relative = spec[len(DATA_PREFIX) :]
    parts = Path(relative).parts
    if not relative.strip() or Path(relative).is_absolute() or ".." in parts:
        raise PldError(
            f"data path {spec!r} must be relative to the data root, without '..'",
            path=path,
            line=line,
            key=key,
            hint="write data:folder/file.jsonl",
        )


def shown(path: str | Path | None, root: Path) -> str:
    """`path` relative to the project root where it lies inside it (shorter in messages),
    else as given; '' for no path."""
    if not path:
        return ""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
