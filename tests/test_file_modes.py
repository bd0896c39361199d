"""Files pld writes whole (suites, instruction sets, snapshots, run records, reports, the model
cache) get the mode a plain `open(path, "w")` gives - 0666 less the umask - and a rewrite
keeps the mode the file had, instead of mkstemp's private 0600."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import init_rev, run_pld

from pytest_pld.atomic import atomic_write_bytes
from pytest_pld.yamlio import atomic_write_text

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=["umask022", "umask027", "umask002"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def plain_open_mode(folder: Path) -> int:
    """The mode `open(..., "w")` gives a new file in `folder` right now."""
    probe = folder / "plain-open-probe"
    with open(probe, "w", encoding="utf-8"):
        pass
    try:
        return mode(probe)
    finally:
        probe.unlink()


def test_a_new_file_gets_the_mode_a_plain_open_gives(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "sub" / "suite.yaml"
    atomic_write_text(path, "name: x\n")
    assert path.read_text(encoding="utf-8") == "name: x\n"
    assert mode(path) == plain_open_mode(tmp_path) == 0o666 & ~umask
    assert sorted(p.name for p in path.parent.iterdir()) == ["suite.yaml"]  # no temporary left


@pytest.mark.parametrize("kept", [0o644, 0o640, 0o600, 0o755])
def test_rewriting_a_file_keeps_its_mode(tmp_path: Path, umask: int, kept: int) -> None:
    path = tmp_path / "instructions.yaml"
    path.write_text("old\n", encoding="utf-8")
    path.chmod(kept)
    atomic_write_bytes(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert mode(path) == kept


def test_a_failed_write_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "record.json"
    path.write_text("{}\n", encoding="utf-8")

    def no_rename(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "{}\n{}")
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    assert path.read_text(encoding="utf-8") == "{}\n"


def test_init_and_snapshot_update_write_files_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], umask: int
) -> None:
    root, _ = init_rev(tmp_path, capsys)
    written = ["suites/rev.yaml", "instructions/rev.yaml", "instructions/rev.prompt.txt"]
    assert {rel: mode(root / rel) for rel in written} == dict.fromkeys(written, 0o666 & ~umask)
    # a chmod someone made survives pld rewriting the file
    snapshot = root / "instructions/rev.prompt.txt"
    snapshot.chmod(0o604)
    instructions = root / "instructions/rev.yaml"
    instructions.write_text(
        instructions.read_text(encoding="utf-8").replace('preamble: "', 'preamble: "Hi. '),
        encoding="utf-8",
    )
    code, out, err = run_pld(capsys, "snapshot", "rev", "--update", "--root", str(root))
    assert code == 0, out + err
    assert "Hi." in snapshot.read_text(encoding="utf-8")
    assert mode(snapshot) == 0o604
