"""Generic JSON Lines loader, plus the file-reading helpers the other loaders share.

Every record must be a JSON object with an id and a label; all other keys become template
fields. A bad record is an error naming the file and line, never a silently dropped row:
a benchmark that quietly shrinks gives metrics nobody can compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import textio
from ..errors import PldError
from .base import Example, Loader

_MISSING = "restore it from git or fix the split's path in the suite"


def read_text(path: Path, *, what: str) -> str:
    """The data file's text (UTF-8, BOM removed); `what` describes its expected layout."""
    return textio.read_text(path, what="data file", expect=what, missing_hint=_MISSING)


def read_json(path: Path, *, what: str) -> Any:
    return textio.read_json(path, what="data file", expect=what, missing_hint=_MISSING)


def frozen(fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """Examples are frozen dataclasses; their fields should not be mutable behind their back."""
    return MappingProxyType(dict(fields))


def _option_str(options: Mapping[str, Any], name: str, default: str) -> str:
    value = options.get(name, default)
    if not isinstance(value, str):
        raise PldError(
            f"jsonl loader: option {name!r} must be a string, got {value!r}",
            key=f"dataset.options.{name}",
        )
    return value


def _scalar_text(value: Any) -> str | None:
    """Ids and labels may be written as strings or integers; anything else is a mistake."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def load_jsonl(path: Path, options: Mapping[str, Any]) -> list[Example]:
    id_field = _option_str(options, "id_field", "id")
    label_field = _option_str(options, "label_field", "label")
    group_field = _option_str(options, "group_field", "")
    what = f"JSON Lines: one object per line with {id_field!r} and {label_field!r}"
    text = read_text(path, what=what)
    examples: list[Example] = []
    seen: dict[str, int] = {}
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
        for name in (id_field, label_field):
            if name not in record:
                raise PldError(
                    f"record has no {name!r} key",
                    path=path,
                    line=lineno,
                    hint=f"keys present: {', '.join(record) or '(none)'}; set the "
                    "loader's id_field/label_field options if they differ",
                )
        ex_id = _scalar_text(record[id_field])
        label = _scalar_text(record[label_field])
        if ex_id is None:
            raise PldError(
                f"{id_field!r} must be a non-empty string or integer, got {record[id_field]!r}",
                path=path,
                line=lineno,
            )
        if label is None:
            raise PldError(
                f"{label_field!r} must be a non-empty string or integer, got "
                f"{record[label_field]!r}",
                path=path,
                line=lineno,
            )
        if ex_id in seen:
            raise PldError(
                f"duplicate id {ex_id!r} (first on line {seen[ex_id]})",
                path=path,
                line=lineno,
                hint="ids must be unique: caches and reports key on them",
            )
        seen[ex_id] = lineno
        group: str | None = None
        if group_field:
            if group_field not in record:
                raise PldError(
                    f"record has no {group_field!r} key (the group_field option)",
                    path=path,
                    line=lineno,
                )
            group = _scalar_text(record[group_field])
            if group is None:
                raise PldError(
                    f"{group_field!r} must be a non-empty string or integer", path=path, line=lineno
                )
        fields = {k: v for k, v in record.items() if k not in (id_field, label_field)}
        examples.append(Example(id=ex_id, label=label, fields=frozen(fields), group=group))
    if not examples:
        raise PldError("no records found", path=path, hint=f"expected {what}")
    return examples


LOADERS: list[Loader] = [
    Loader(
        name="jsonl",
        load=load_jsonl,
        options={"id_field": "id", "label_field": "label", "group_field": ""},
        # the other keys vary per file, so only the keys every file has are declared
        fields=[],
        description="JSON Lines, one object per line; every key except the id and label "
        "fields becomes a template field. group_field (optional) keeps related "
        "records in one split when a file is carved by fraction.",
    )
]
