"""Generic JSON Lines loader, plus the file-reading helpers the other loaders share.

Every record must be a JSON object with an id (or text to derive one from) and a label; all
other keys become template fields. What the fields mean is shared with the CSV and Parquet
loaders (`records.py`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import textio
from ..errors import PldError
from .base import Example, Loader
from .records import RECORD_OPTIONS, record_options, to_examples

_MISSING = "restore it from git or fix the split's path in the suite"


def read_text(path: Path, *, what: str) -> str:
    """The data file's text (UTF-8, BOM removed); `what` describes its expected layout."""
    return textio.read_text(path, what="data file", expect=what, missing_hint=_MISSING)


def read_json(path: Path, *, what: str) -> Any:
    return textio.read_json(path, what="data file", expect=what, missing_hint=_MISSING)


def frozen(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Examples are frozen dataclasses; their fields should not be mutable behind their back."""
    return MappingProxyType(dict(fields))


def load_jsonl(
    path: Path, options: Mapping[str, Any], positions: dict[str, int] | None = None
) -> list[Example]:
    opts = record_options("jsonl", options)
    what = f"JSON Lines: one object per line with {opts.label_field!r}" + (
        f" and {opts.id_field!r}" if opts.id_field else ""
    )
    text = read_text(path, what=what)
    return to_examples(json_objects(text, path, what), path, opts, what=what, positions=positions)


def jsonl_keys(path: Path) -> list[str]:
    """Every key of the file's objects, in the order they first appear."""
    what = "JSON Lines: one object per line"
    keys: dict[str, None] = {}
    for _, record in json_objects(read_text(path, what=what), path, what):
        keys.update(dict.fromkeys(record))
    if not keys:
        raise PldError("no records found", path=path, hint=f"expected {what}")
    return list(keys)


def json_objects(text: str, path: Path, what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) for every non-blank line; anything but a JSON object is an error naming
    the line, with `what` (the expected layout) as the hint."""
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) are not records
        record = textio.parse_json(
            line, path, what="data file", hint=f"expected {what}", line=lineno
        )
        if not isinstance(record, dict):
            raise PldError(
                f"expected a JSON object, got {textio.json_type(record)}",
                path=path,
                line=lineno,
                hint=f"expected {what}",
            )
        yield lineno, record


LOADERS: list[Loader] = [
    Loader(
        # JSON Lines, one object per line; every key except the id and label fields becomes a
        # template field. group_field (optional) keeps related records in one split when a file is
        # carved by fraction; split_field (optional) names the field that says each record's split;
        # an empty id_field derives ids from a hash of the text_fields.
        name="jsonl",
        load=load_jsonl,
        options=RECORD_OPTIONS,
        # the other keys vary per file, so only the keys every file has are declared
        fields=[],
    )
]
