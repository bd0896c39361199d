"""Where the project is, and keeping file access inside it."""

from __future__ import annotations

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


def shown(path: str | Path | None, root: Path) -> str:
    """`path` relative to the project root where it lies inside it (shorter in messages),
    else as given; '' for no path."""
    if not path:
        return ""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
