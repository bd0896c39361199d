"""`pld init`'s reading of the data: the file's format and columns, the checks of what was
asked, the label set, the splits (a split column or fractions of a hash of the id) and the
best constant answer's macro-F1 - all as the suite will later read the same file."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..datasets import Example, split_fraction
from ..errors import PldError, did_you_mean
from ..project import DATA_PREFIX, DATA_ROOT_ENV
from .spec import FORMATS, LOADER_OF, SPLIT_ALIASES, SUITE_NAME, InitSpec

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Jinja reads these as operators or constants, not as variables
_JINJA_WORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False"}
    | {"None", "loop", "self", "recursive"}
)


# --- reading the file --------------------------------------------------------------------------


def data_format(path: Path, given: str | None = None) -> str:
    """csv, tsv, jsonl or parquet: `given`, else from the file's suffix."""
    if given:
        if given not in LOADER_OF:
            raise PldError(
                f"unknown format {given!r}{did_you_mean(given, LOADER_OF)}",
                hint=f"formats: {', '.join(LOADER_OF)}",
            )
        return given
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PldError(
            f"cannot tell the format from the suffix {path.suffix or '(none)'!r}",
            path=path,
            hint=f"name it {', '.join(sorted(FORMATS))}, or pass --format {'/'.join(LOADER_OF)}",
        )
    return fmt


def columns_of(path: Path, fmt: str) -> list[str]:
    """The field names a file offers (a table's header, every key of a JSON Lines file)."""
    from ..datasets import jsonl, table

    if fmt == "jsonl":
        return jsonl.jsonl_keys(path)
    if fmt == "parquet":
        return table.read_parquet(path)[0]
    delimiter = "\t" if fmt == "tsv" else ","
    return table.read_csv(path, delimiter, what=f"a {fmt.upper()} file with a header row")[0]


def loader_options(spec: InitSpec, fmt: str) -> dict[str, Any]:
    """The suite's `dataset.options`, in the order they are written."""
    options: dict[str, Any] = {}
    if fmt == "tsv":
        options["delimiter"] = "\t"
    options["id_field"] = spec.id_field
    options["label_field"] = spec.label_field
    options["text_fields"] = list(spec.text_fields)
    if spec.split_column:
        options["split_field"] = spec.split_column
    return options


def read_examples(
    path: Path, fmt: str, options: Mapping[str, Any]
) -> tuple[list[Example], dict[str, int]]:
    """(the examples, example id -> its line or row) through the loader the suite will use."""
    from ..datasets import jsonl, table

    positions: dict[str, int] = {}
    load: Callable[..., list[Example]] = {
        "csv": table.load_csv,
        "jsonl": jsonl.load_jsonl,
        "parquet": table.load_parquet,
    }[LOADER_OF[fmt]]
    return load(path, options, positions), positions


# --- checking what was asked -------------------------------------------------------------------


def check_spec(spec: InitSpec, columns: Sequence[str], path: Path) -> None:
    """The named fields exist, play one part each, and the text fields can be template
    variables; the name and the fractions are usable."""
    if not SUITE_NAME.match(spec.name) or spec.name == "all":
        raise PldError(
            f"suite name {spec.name!r} is not allowed",
            hint="letters, digits, '_', '-' and '.', starting with a letter or digit; not 'all'",
        )
    line = 1 if LOADER_OF[data_format(path, spec.fmt)] == "csv" else None
    if not spec.text_fields:
        raise PldError("name at least one text field", hint=f"columns: {', '.join(columns)}")
    named = [
        ("--text", f) for f in spec.text_fields
    ] + [  # the order of the messages follows the command line
        ("--label", spec.label_field),
        ("--id", spec.id_field),
        ("--split-column", spec.split_column),
    ]
    for flag, name in named:
        if name and name not in columns:
            raise PldError(
                f"{flag} {name}: no such column{did_you_mean(name, columns)}",
                path=path,
                line=line,
                hint=f"columns: {', '.join(repr(c) for c in columns)}",
            )
    roles = [spec.label_field, *(f for f in (spec.id_field, spec.split_column) if f)]
    for text in spec.text_fields:
        if text in roles:
            raise PldError(
                f"--text {text}: the column is also the label, id or split column",
                hint="the text fields are what the model reads; the label is what it answers",
            )
        if not _IDENTIFIER.match(text) or text in _JINJA_WORDS:
            raise PldError(
                f"--text {text!r}: the column's name cannot be a template variable",
                path=path,
                line=line,
                hint="rename the column to letters, digits and '_' (e.g. "
                f"{re.sub(r'[^A-Za-z0-9_]+', '_', text).strip('_') or 'text'!r})",
            )
    if len(set(roles)) != len(roles):
        raise PldError("the label, id and split columns must be different columns")
    if len(set(spec.text_fields)) != len(spec.text_fields):
        raise PldError("a text field is named twice")
    if not spec.split_column:
        train, _, test = spec.fractions
        if (
            min(spec.fractions) < 0
            or train <= 0
            or test <= 0
            or abs(sum(spec.fractions) - 1) > 1e-6
        ):
            raise PldError(
                f"fractions {','.join(f'{f:g}' for f in spec.fractions)} do not split the data",
                hint="three shares train,dev,test that add up to 1, train and test above 0 "
                "(dev may be 0), e.g. 0.6,0.2,0.2",
            )


def place_data(root: Path, spec: InitSpec, data: Path) -> tuple[str, Path | None, list[str]]:
    """(how the suite names the file, where to copy it or None, notes)."""
    root = root.resolve()
    notes: list[str] = []
    if data == root or root in data.parents:
        if spec.copy:
            notes.append("the file is inside the project already: referenced, not copied")
        return data.relative_to(root).as_posix(), None, notes
    if spec.copy:
        target = root / "suites" / "data" / spec.name / data.name
        return target.relative_to(root).as_posix(), target, notes
    if spec.data_root is not None and spec.data_root in data.parents:
        return DATA_PREFIX + data.relative_to(spec.data_root).as_posix(), None, notes
    raise PldError(
        "the data file is outside the project"
        + (f" and outside the data root {spec.data_root}" if spec.data_root else ""),
        path=data,
        hint=f"read it where it lives: pass --data-root DIR (or set {DATA_ROOT_ENV}) with a "
        "folder that holds it, and the suite names it data:PATH; or pass --copy to copy it "
        f"into suites/data/{spec.name}/",
    )


# --- labels and splits ------------------------------------------------------------------------


def _where(unit: str, at: int | None) -> str:
    return f" ({unit} {at})" if at is not None else ""


def label_set(
    spec: InitSpec,
    examples: Sequence[Example],
    positions: Mapping[str, int],
    data: Path,
    unit: str,
) -> tuple[str, ...]:
    """The suite's labels, in the order given or naturally sorted; a label with one example,
    a single label, or labels --labels does not match are errors."""
    counts = Counter(e.label for e in examples)
    for label in counts:
        if "\n" in label or "\r" in label:
            raise PldError(
                f"label {label!r} spans lines{_where(unit, _first(examples, positions, label))}",
                path=data,
                hint="a label is one line of text the model answers with",
            )
    # A label seen once cannot be both taught (train) and tested: it is almost always a typo
    # or a stray row, and where it is real, one example cannot measure it. Refusing says so
    # now instead of as a zero F1 or an unlearnable rule later.
    single = sorted(label for label, n in counts.items() if n == 1)
    if single:
        first = [f"{label!r}{_where(unit, _first(examples, positions, label))}" for label in single]
        hint = (
            f"is {spec.label_field!r} the label column? most values occur once"
            if len(single) > len(counts) / 2
            else "fix the label if it is a typo, remove the row, or add examples: a label needs "
            "at least two examples to be in both the train and the test split"
        )
        raise PldError(
            f"{len(single)} label{'s' if len(single) > 1 else ''} with a single example: "
            + ", ".join(first[:5])
            + (f" and {len(first) - 5} more" if len(first) > 5 else ""),
            path=data,
            key=spec.label_field,
            hint=hint,
        )
    if len(counts) < 2:
        raise PldError(
            f"column {spec.label_field!r} holds one label ({', '.join(counts)}): a classifier "
            "needs at least two",
            path=data,
            key=spec.label_field,
        )
    if not spec.labels:
        return tuple(sorted(counts, key=_natural))
    unknown = [label for label in counts if label not in spec.labels]
    if unknown:
        raise PldError(
            f"the data has labels --labels does not list: {', '.join(map(repr, unknown))}"
            + _where(unit, _first(examples, positions, unknown[0])),
            path=data,
            hint="list every label once, in the order you want them shown",
        )
    absent = [label for label in spec.labels if label not in counts]
    if absent or len(set(spec.labels)) != len(spec.labels):
        raise PldError(
            f"--labels: {', '.join(map(repr, absent))} has no example"
            if absent
            else "--labels names a label twice",
            hint=f"labels in the data: {', '.join(sorted(counts, key=_natural))}",
        )
    return spec.labels


def _first(examples: Sequence[Example], positions: Mapping[str, int], label: str) -> int | None:
    return next((positions.get(e.id) for e in examples if e.label == label), None)


def _natural(text: str) -> tuple[Any, ...]:
    """'2' before '10': numbered labels sort as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def fraction_splits(fractions: Sequence[float]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    lo = 0.0
    for name, share in zip(("train", "dev", "test"), fractions):
        if share <= 0:
            continue
        hi = 1.0 if name == "test" else round(lo + share, 6)
        out[name] = (lo, hi)
        lo = hi
    return out


def carve(example: Example, splits: Mapping[str, tuple[float, float]]) -> str:
    # exactly Suite.load_examples' rule, so the distribution shown is the one the suite sees
    x = split_fraction(example.group or example.id)
    return next(name for name, (lo, hi) in splits.items() if lo <= x < hi)


def splits_by_column(
    spec: InitSpec,
    examples: Sequence[Example],
    positions: Mapping[str, int],
    data: Path,
    unit: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """(split name -> column value, example id -> split name); values are mapped to the
    conventional names where they are common aliases (validation -> dev)."""
    from ..suite import SPLIT_NAME

    by_value: dict[str, str] = {}
    for e in examples:
        value = str(e.split)
        if value in by_value:
            continue
        name = SPLIT_ALIASES.get(value.lower(), value)
        if not SPLIT_NAME.match(name):
            raise PldError(
                f"split column {spec.split_column!r} holds {value!r}, which cannot name a split"
                + _where(unit, positions.get(e.id)),
                path=data,
                key=spec.split_column,
                hint="split names use letters, digits, '_', '-' and '.'; the gates use test, "
                "pld teach train and pld distill dev (validation, valid and val read as dev)",
            )
        clash = next((v for v, n in by_value.items() if n == name), None)
        if clash is not None:
            raise PldError(
                f"split column {spec.split_column!r} holds both {clash!r} and {value!r}, which "
                f"both name the {name} split" + _where(unit, positions.get(e.id)),
                path=data,
                key=spec.split_column,
                hint="use one value per split",
            )
        by_value[value] = name
    names = set(by_value.values())
    for needed, why in (("test", "the gates evaluate it"), ("train", "pld teach reads it")):
        if needed not in names:
            raise PldError(
                f"split column {spec.split_column!r} has no {needed} rows ({why})",
                path=data,
                key=spec.split_column,
                hint=f"values found: {', '.join(map(repr, by_value))}; name one of them "
                f"{needed}, or leave out --split-column to carve the file by a hash of the id",
            )
    order = {"train": 0, "dev": 1, "test": 2}
    ordered = sorted(by_value.items(), key=lambda kv: (order.get(kv[1], 3), kv[1]))
    splits = {name: value for value, name in ordered}
    return splits, {e.id: by_value[str(e.split)] for e in examples}


def constant_floor(gate: Counter[str], labels: Sequence[str]) -> tuple[str, float]:
    """(the constant answer that scores best on the gate split's counts, its macro-F1): what a
    model that ignores its input can reach, so a quality bound must lie above it.

    Always answering `c` gives only `c` a non-zero F1 (precision hits/n, recall 1), so its
    macro-F1 is 2*hits/(n+hits)/len(labels), which grows with hits: the best constant is the
    gate split's most frequent label (the first in label order on a tie). The train split's
    majority can differ and score less, so it is not the floor."""
    n = sum(gate.values())

    def macro_f1(constant: str) -> float:
        hits = gate[constant]
        return 2 * hits / (n + hits) / len(labels) if n else 0.0

    best = max(labels, key=lambda label: (macro_f1(label), -labels.index(label)))
    return best, macro_f1(best)
