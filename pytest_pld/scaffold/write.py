"""`write_init`: create a plan's files, each atomically and none over an existing file, check
them, and remove everything again if any step fails."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..atomic import new_file_beside
from ..errors import PldError
from ..project import shown
from .plan import Plan


def refuse_existing(plan: Plan) -> None:
    existing = [p for p in plan.targets() if p.exists()]
    if existing:
        raise PldError(
            f"{', '.join(shown(p, plan.root) for p in existing)} already exist"
            + ("s" if len(existing) == 1 else ""),
            hint="pld init never overwrites: choose another NAME, or remove the files first",
        )


def write_init(plan: Plan) -> list[Path]:
    """Create the plan's files; on any failure remove every file and folder it created."""
    from ..snapshot import render_snapshot
    from ..suite import load_suite
    from ..validate import validate_file

    refuse_existing(plan)
    created: list[Path] = []
    with _undo_on_error(created):
        if plan.copy_to is not None:
            _create(plan.copy_to, plan.data_path.read_bytes(), created)
        _create(plan.instructions_path, plan.instructions_text.encode("utf-8"), created)
        _create(plan.suite_path, plan.suite_text.encode("utf-8"), created)
        try:
            for path in (plan.instructions_path, plan.suite_path):
                validate_file(path, plan.root, data_root=plan.spec.data_root)
            suite = load_suite(plan.suite_path, plan.root, data_root=plan.spec.data_root)
        except PldError as exc:
            raise PldError(
                f"pld init: the files it wrote did not validate, and were removed:\n{exc}",
                hint="this is a bug in pld init; please report it with the command you ran",
            ) from None
        _create(plan.snapshot_path, render_snapshot(suite).encode("utf-8"), created)
    return [p for p in created if p.is_file()]


@contextlib.contextmanager
def _undo_on_error(created: list[Path]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for path in reversed(created):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()  # only the folders it made, and only when empty
            else:
                path.unlink(missing_ok=True)
        raise


def _create(path: Path, data: bytes, created: list[Path]) -> None:
    """Write `path` atomically and only if it does not exist: the content goes to a temporary
    file first, then a hard link gives it its name (which fails if the name is taken)."""
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    created.extend(reversed(missing))
    fd, tmp = new_file_beside(path)  # the mode a plain open gives, not mkstemp's 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise PldError(f"{path} appeared while pld init ran; not overwritten") from None
        except OSError:  # a file system without hard links: check, then rename
            if path.exists():
                raise PldError(f"{path} appeared while pld init ran; not overwritten") from None
            shutil.move(tmp, path)
        created.append(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
