"""Reading text and JSON from files that arrive in pull requests.

Every reader of such a file (instruction sets, suites, templates, data files, run records,
traces, proposals, snapshots) goes through here, so that a file saved in another encoding, a
binary file or JSON nested past Python's recursion limit is a PldError naming the file, the
line and the byte - never a UnicodeDecodeError traceback - and a UTF-8 byte-order mark, which
some Windows editors add, simply works.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

from .errors import PldError

RESAVE_HINT = "re-save the file as UTF-8 (most editors: 'Save with encoding' > UTF-8)"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # also the start of UTF-32 BOMs


def read_text(
    path: Path,
    *,
    what: str,
    expect: str | None = None,
    missing_hint: str | None = None,
    decode_hint: str | None = None,
) -> str:
    """The file's text, decoded as UTF-8 with any byte-order mark removed.

    `what` names the file in messages ("data file", "run record") and `expect` describes its
    layout; the hints say what to do when the file is missing, or is not UTF-8 text (the
    default: re-save it as UTF-8).
    """
    expected = f" (expected {expect})" if expect else ""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PldError(f"{what} not found{expected}", path=path, hint=missing_hint) from None
    except IsADirectoryError:
        raise PldError(f"is a directory, not the {what}", path=path) from None
    except OSError as exc:
        raise PldError(f"cannot read the {what}: {exc.strerror}", path=path) from None
    return decode_text(raw, path, what=what, hint=decode_hint)


def decode_text(raw: bytes, path: Path | str, *, what: str, hint: str | None = None) -> str:
    """`raw` as UTF-8 text; UTF-16, binary content and invalid bytes are PldErrors naming the
    line and byte offset of the first offending byte."""
    if raw.startswith(_UTF16_BOMS):
        raise PldError(
            f"the {what} is UTF-16 or UTF-32 text (it starts with that byte-order mark), not UTF-8",
            path=path,
            line=1,
            hint=hint or RESAVE_HINT,
        )
    # NUL never occurs in text this project reads; it marks a binary file or UTF-16 without
    # a byte-order mark (which would otherwise fail later with a confusing parse error)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column = _position(raw, nul)
        raise PldError(
            f"binary content, not text: a NUL byte at byte offset {nul} (line {line}, column "
            f"{column}); expected the {what} as UTF-8 text",
            path=path,
            line=line,
            hint=hint or f"is it the right file? if it is UTF-16 text, {RESAVE_HINT}",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise PldError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start} "
            f"(line {line}, column {column}): {exc.reason}",
            path=path,
            line=line,
            hint=hint or RESAVE_HINT,
        ) from None
    # a BOM is invisible in editors; left in, it would end up in the first key or record id
    return text.removeprefix("\ufeff")


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """(1-based line, 1-based character column) of byte `offset`."""
    start = raw.rfind(b"\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + 1, len(raw[start:offset].decode("utf-8", "replace")) + 1


def parse_json(
    text: str, path: Path | str, *, what: str, hint: str | None = None, line: int | None = None
) -> Any:
    """`json.loads(text)`; a syntax error names its line (or `line`, for one line of a JSON
    Lines file), and nesting deeper than Python's recursion limit is an error, not a crash."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = line if line is not None else exc.lineno
        raise PldError(
            f"malformed JSON in the {what}: {exc.msg} (column {exc.colno})",
            path=path,
            line=where,
            hint=hint,
        ) from None
    except RecursionError:
        raise PldError(
            f"the {what} nests JSON arrays or objects too deeply to read",
            path=path,
            line=line,
            hint=hint,
        ) from None


def read_json(
    path: Path,
    *,
    what: str,
    expect: str | None = None,
    missing_hint: str | None = None,
    hint: str | None = None,
) -> Any:
    """A whole-file JSON document, read with `read_text` and parsed with `parse_json`; `hint`
    says what to do about malformed JSON (default: the expected layout)."""
    text = read_text(path, what=what, expect=expect, missing_hint=missing_hint)
    if hint is None and expect:
        hint = f"expected {expect}"
    return parse_json(text, path, what=what, hint=hint)


def read_json_object(
    path: Path, *, what: str, missing_hint: str | None = None, hint: str | None = None
) -> dict[str, Any]:
    """A file holding one JSON object (a run record, a saved proposal); `hint` says what to do
    when it is malformed or something else."""
    data = read_json(path, what=what, missing_hint=missing_hint, hint=hint)
    if not isinstance(data, dict):
        raise PldError(
            f"expected a {what} (a JSON object), got {json_type(data)}",
            path=path,
            line=1,
            hint=hint,
        )
    return data


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("expected an object, got an array")."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "null" if value is None else "a number"
