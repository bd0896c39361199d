"""Rows of named fields (a JSON Lines object, a CSV row, a Parquet row) -> `Example`s.

The JSON Lines, CSV and Parquet loaders read their files differently but share what a row
means: which field is the id, the label, the group and the split, and what counts as a
mistake. Every mistake is an error naming the file and the line (or row), never a silently
dropped row: a benchmark that quietly shrinks gives metrics nobody can compare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PldError, did_you_mean
from .base import Example, content_id

#: the options every record loader accepts, with their defaults
RECORD_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "id_field": "id",
        "label_field": "label",
        "group_field": "",
        "split_field": "",
        "text_fields": (),
    }
)
ROLES = ("id_field", "label_field", "group_field", "split_field")


@dataclass(frozen=True)
class RecordOptions:
    """Which field plays which part. An empty `id_field` derives each id from the text
    fields (`content_id`); empty `text_fields` means every field but the label, group and
    split fields."""

    id_field: str = "id"
    label_field: str = "label"
    group_field: str = ""
    split_field: str = ""
    text_fields: tuple[str, ...] = ()

    def named(self) -> list[tuple[str, str]]:
        """(option, field) for every field an option names that every record must have. The
        split field is not among them: a file one split reads whole (a held-out set from
        elsewhere) need not have it; a split that selects rows by it checks that they do."""
        roles = [r for r in ROLES if r != "split_field" and getattr(self, r)]
        return [(r, getattr(self, r)) for r in roles] + [
            ("text_fields", f) for f in self.text_fields
        ]


def record_options(loader: str, options: Mapping[str, Any]) -> RecordOptions:
    """The record options of a suite's `dataset.options`, type-checked."""
    values: dict[str, Any] = {}
    for role in ROLES:
        value = options.get(role, RECORD_OPTIONS[role])
        if not isinstance(value, str):
            raise PldError(
                f"{loader} loader: option {role!r} must be a string, got {value!r}",
                key=f"dataset.options.{role}",
            )
        values[role] = value.strip()
    if not values["label_field"]:
        raise PldError(
            f"{loader} loader: label_field must name a field", key="dataset.options.label_field"
        )
    text = options.get("text_fields", ())
    if isinstance(text, str):
        text = (text,)
    if not isinstance(text, (list, tuple)) or not all(isinstance(t, str) and t for t in text):
        raise PldError(
            f"{loader} loader: text_fields must be a list of field names, got {text!r}",
            key="dataset.options.text_fields",
        )
    return RecordOptions(**values, text_fields=tuple(text))


def check_columns(
    columns: Sequence[str], opts: RecordOptions, path: Path | str, *, line: int | None
) -> None:
    """A table's header must hold every field the options name (checked once, on the
    header's line, rather than on every row)."""
    for option, name in opts.named():
        if name not in columns:
            raise PldError(
                f"no column {name!r} (the {option} option){did_you_mean(name, columns)}",
                path=path,
                line=line,
                hint=f"columns: {', '.join(repr(c) for c in columns)}",
            )


def scalar_text(value: Any) -> str | None:
    """Ids, labels, groups and splits may be strings or integers; anything else is a mistake."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def to_examples(
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    path: Path,
    opts: RecordOptions,
    *,
    what: str,
    unit: str = "line",
    positions: dict[str, int] | None = None,
) -> list[Example]:
    """Examples from (position, record) pairs; `unit` says whether a position is a line of the
    file (named as the error's line) or a row of a table without lines (named in the text).
    `positions`, when given, receives each example's position by id (for later messages)."""
    examples: list[Example] = []
    seen: dict[str, int] = {}

    def fail(message: str, at: int, hint: str | None = None) -> PldError:
        if unit == "line":
            return PldError(message, path=path, line=at, hint=hint)
        return PldError(f"row {at}: {message}", path=path, hint=hint)

    for at, record in rows:
        for role, name in opts.named():
            if name not in record:
                raise fail(
                    f"record has no {name!r} key",
                    at,
                    hint=f"keys present: {', '.join(record) or '(none)'}; set the loader's "
                    f"{role} option if it differs",
                )
        label = scalar_text(record[opts.label_field])
        if label is None:
            raise fail(
                f"{opts.label_field!r} must be a non-empty string or integer, got "
                f"{record[opts.label_field]!r}",
                at,
                hint="every example needs its gold label",
            )
        text_fields = opts.text_fields or [
            k
            for k in record
            if k not in (opts.label_field, opts.group_field, opts.split_field, opts.id_field)
        ]
        if opts.id_field:
            ex_id = scalar_text(record[opts.id_field])
            if ex_id is None:
                raise fail(
                    f"{opts.id_field!r} must be a non-empty string or integer, got "
                    f"{record[opts.id_field]!r}",
                    at,
                )
        else:
            ex_id = content_id(*(record.get(k) for k in text_fields))
        if ex_id in seen:
            raise fail(
                f"duplicate id {ex_id!r} (first on {unit} {seen[ex_id]})"
                if opts.id_field
                else f"the same text as {unit} {seen[ex_id]} (fields {', '.join(text_fields)})",
                at,
                hint="ids must be unique: caches and reports key on them"
                if opts.id_field
                else "without an id field the id is a hash of the text: remove the duplicate "
                "row, or give the rows an id column (pld init --id, the id_field option)",
            )
        seen[ex_id] = at
        if positions is not None:
            positions[ex_id] = at
        extra: dict[str, str | None] = {}
        for role in ("group_field", "split_field"):
            name = getattr(opts, role)
            if name and name in record:
                extra[role] = scalar_text(record[name])
                if extra[role] is None:
                    raise fail(
                        f"{name!r} (the {role} option) must be a non-empty string or integer, "
                        f"got {record[name]!r}",
                        at,
                    )
        fields = {k: v for k, v in record.items() if k not in (opts.id_field, opts.label_field)}
        examples.append(
            Example(
                id=ex_id,
                label=label,
                fields=MappingProxyType(fields),
                group=extra.get("group_field"),
                split=extra.get("split_field"),
                line=at if unit == "line" else None,
            )
        )
    if not examples:
        raise PldError("no records found", path=path, hint=f"expected {what}")
    return examples
