"""Files replaced whole: the content goes to a temporary file beside the target, which is then
renamed over it, so a reader never sees half a file.

The temporary file is created the way a plain `open(path, "w")` creates one - mode 0666 less
the umask (and less what a folder's default ACL takes away) - and not with `tempfile.mkstemp`,
whose 0600 the rename would hand on to the file: a suite, an instruction set, a run record or
an HTML report that the rest of a team, a CI artifact upload or a container running under
another uid could not read. Replacing a file that exists keeps that file's mode, so a
`chmod` someone made is not undone by the next write.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

_ATTEMPTS = 100  # names are 32 random bits: a clash is already rare


def new_file_beside(path: Path) -> tuple[int, Path]:
    """(a write-only descriptor, its path) of a new, empty temporary file named after `path`
    in `path`'s folder (`.NAME.<random>.tmp`), with the mode `path` has if it exists, else the
    mode a plain open would give it. The caller writes, closes and renames it (or removes it)."""
    for _ in range(_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            # O_EXCL: never an existing file (nor a planted link); 0o666: the umask applies
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
            )
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            return fd, tmp
        try:
            os.chmod(tmp, mode)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp
    raise FileExistsError(f"no free temporary name beside {path} after {_ATTEMPTS} tries")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace (or create) `path` with `data` in one rename, creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
