"""`pld init`: a new suite and a zero-shot instruction set from a labelled CSV, TSV, JSON Lines
or Parquet file.

Two steps, so that bad input never leaves a file behind:

1. `plan_init` reads the data exactly as the suite will (the same loader, options and split
   carving), checks it and composes the files' text. Every problem - an empty file, a missing
   column, a label with a single example, duplicate ids, undecodable bytes, an unusable split
   value, data outside the project with no data root - is a PldError naming the file, line or
   column. Nothing is written.
2. `write_init` creates the files (each atomically, none over an existing file), checks what
   it wrote with `validate_file`, writes the rendered-prompt snapshot, and removes everything
   again if any step fails.

Where the data stays: a file inside the project is referenced by its project-relative path; a
file under the data root (`--data-root`, $PLD_DATA_ROOT) as `data:PATH`, so it is read where it
lives and never copied into the repository; anything else is copied into `suites/data/NAME/`
only when asked (`copy=True`). No absolute path is ever written into a suite.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .datasets import Example, split_fraction
from .errors import PldError, did_you_mean
from .project import DATA_PREFIX, DATA_ROOT_ENV, shown

DEFAULT_STUDENT = "local:qwen2.5-coder-0.5b-instruct"
#: train / dev / test shares of a file carved by a hash of the id
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
LOADER_OF = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
#: split-column values read as the conventional split names (Hugging Face says validation)
SPLIT_ALIASES = {
    "training": "train",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "development": "dev",
    "testing": "test",
}
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Jinja reads these as operators or constants, not as variables
_JINJA_WORDS = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none", "True", "False"}
    | {"None", "loop", "self", "recursive"}
)


@dataclass(frozen=True)
class InitSpec:
    """What the user asked for (flags or answers)."""

    name: str
    data: Path
    text_fields: tuple[str, ...]
    label_field: str
    id_field: str = ""  # "" = ids from a hash of the text fields
    split_column: str = ""  # "" = carve by a hash of the id
    labels: tuple[str, ...] = ()  # the label order; () = sorted
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    fmt: str | None = None  # csv, tsv, jsonl or parquet; None = from the suffix
    student: str = DEFAULT_STUDENT
    copy: bool = False
    data_root: Path | None = None


@dataclass
class Plan:
    """Everything `write_init` writes, and what `pld init` shows before writing."""

    spec: InitSpec
    root: Path
    data_path: Path  # the file read
    data_ref: str  # how the suite names it
    copy_to: Path | None
    labels: tuple[str, ...]
    examples: int
    counts: dict[str, Counter[str]]  # split -> label -> examples
    floor: float  # macro-F1 of always answering the majority label, on the gate split
    majority: str  # the most frequent train label
    suite_text: str
    instructions_text: str
    notes: list[str] = field(default_factory=list)

    @property
    def suite_path(self) -> Path:
        return self.root / "suites" / f"{self.spec.name}.yaml"

    @property
    def instructions_path(self) -> Path:
        return self.root / "instructions" / f"{self.spec.name}.yaml"

    @property
    def snapshot_path(self) -> Path:
        return self.root / "instructions" / f"{self.spec.name}.prompt.txt"

    def targets(self) -> list[Path]:
        extra = [self.copy_to] if self.copy_to else []
        return [self.suite_path, self.instructions_path, self.snapshot_path, *extra]

    def uses_data_root(self) -> bool:
        return self.data_ref.startswith(DATA_PREFIX)


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
    from .datasets import jsonl, table

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


def _load(path: Path, fmt: str, options: Mapping[str, Any]) -> tuple[list[Example], dict[str, int]]:
    from .datasets import jsonl, table

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


# --- the plan ----------------------------------------------------------------------------------


def plan_init(root: Path, spec: InitSpec) -> Plan:
    """Read and check the data and compose the files; writes nothing."""
    data = spec.data.expanduser().resolve()
    fmt = data_format(data, spec.fmt)
    columns = columns_of(data, fmt)
    check_spec(spec, columns, data)
    data_ref, copy_to, notes = place_data(root, spec, data)
    options = loader_options(spec, fmt)
    examples, positions = _load(data, fmt, options)
    unit = "row" if fmt == "parquet" else "line"

    labels = _labels(spec, examples, positions, data, unit)
    splits: Mapping[str, Any]  # name -> column value, or name -> (lo, hi)
    if spec.split_column:
        splits, assign = _splits_by_column(spec, examples, positions, data, unit)
    else:
        ranges = _fraction_splits(spec.fractions)
        splits, assign = ranges, {e.id: _carve(e, ranges) for e in examples}
    counts: dict[str, Counter[str]] = {name: Counter() for name in splits}
    for e in examples:
        counts[assign[e.id]][e.label] += 1
    gate_split = "test"
    for split in ("train", gate_split):
        missing = [label for label in labels if not counts[split][label]]
        if missing:
            notes.append(
                f"no {split} example of {', '.join(map(repr, missing))}"
                + (
                    ": its F1 counts as 0 in macro-F1"
                    if split == gate_split
                    else ": teach and k-shot never see it"
                )
            )
    if "dev" not in splits:
        notes.append("no dev split: pld distill and pld ablate need one")
    majority = majority_label(counts["train"], labels)
    floor = majority_floor(majority, counts[gate_split], labels)
    suite_text = render_suite(
        spec, fmt, data, data_ref, options, splits, labels, floor, majority, examples
    )
    instructions_text = render_instructions(spec, labels, Counter(e.label for e in examples))
    return Plan(
        spec=spec,
        root=root.resolve(),
        data_path=data,
        data_ref=data_ref,
        copy_to=copy_to,
        labels=labels,
        examples=len(examples),
        counts=counts,
        floor=floor,
        majority=majority,
        suite_text=suite_text,
        instructions_text=instructions_text,
        notes=notes,
    )


def _where(unit: str, at: int | None) -> str:
    return f" ({unit} {at})" if at is not None else ""


def _labels(
    spec: InitSpec,
    examples: Sequence[Example],
    positions: Mapping[str, int],
    data: Path,
    unit: str,
) -> tuple[str, ...]:
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


def _fraction_splits(fractions: Sequence[float]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    lo = 0.0
    for name, share in zip(("train", "dev", "test"), fractions):
        if share <= 0:
            continue
        hi = 1.0 if name == "test" else round(lo + share, 6)
        out[name] = (lo, hi)
        lo = hi
    return out


def _carve(example: Example, splits: Mapping[str, tuple[float, float]]) -> str:
    # exactly Suite.load_examples' rule, so the distribution shown is the one the suite sees
    x = split_fraction(example.group or example.id)
    return next(name for name, (lo, hi) in splits.items() if lo <= x < hi)


def _splits_by_column(
    spec: InitSpec,
    examples: Sequence[Example],
    positions: Mapping[str, int],
    data: Path,
    unit: str,
) -> tuple[dict[str, str], dict[str, str]]:
    """(split name -> column value, example id -> split name); values are mapped to the
    conventional names where they are common aliases (validation -> dev)."""
    from .suite import SPLIT_NAME

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


def majority_label(train: Counter[str], labels: Sequence[str]) -> str:
    """The most frequent train label (the first in label order on a tie)."""
    return max(labels, key=lambda label: (train[label], -labels.index(label)))


def majority_floor(majority: str, test: Counter[str], labels: Sequence[str]) -> float:
    """Macro-F1 on the test counts of always answering `majority`: the score of a model that
    learnt nothing about the input."""
    n, hits = sum(test.values()), test[majority]
    if not n:
        return 0.0
    # only the majority label has a non-zero F1: precision hits/n, recall 1
    return (2 * hits / (n + hits)) / len(labels)


# --- the files ---------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML): labels like `yes`, `1` or
    `null` stay strings."""
    return json.dumps(text, ensure_ascii=False)


def _flow(items: Sequence[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def render_suite(
    spec: InitSpec,
    fmt: str,
    data: Path,
    data_ref: str,
    options: Mapping[str, Any],
    splits: Mapping[str, Any],
    labels: Sequence[str],
    floor: float,
    majority: str,
    examples: Sequence[Example],
) -> str:
    name = spec.name
    opts = ", ".join(
        f"{key}: {_flow(value) if isinstance(value, list) else _q(value)}"
        for key, value in options.items()
    )
    if spec.split_column:
        how = (
            f"# Splits: the rows whose {spec.split_column!r} column holds each value "
            "(`value:`); rows\n# with a value no split names are not used."
        )
        split_lines = [
            f"  {split}: {{path: {_q(data_ref)}, value: {_q(value)}}}"
            for split, value in splits.items()
        ]
    else:
        how = (
            "# Splits: one file carved by sha256 of each id (pytest_pld.datasets.split_fraction);"
            "\n# an example goes to the split whose [lo, hi) range holds it, the same on every"
            "\n# machine. Change the ranges here (keep them disjoint); fractions were "
            + ",".join(f"{f:g}" for f in spec.fractions)
            + "."
        )
        split_lines = [
            f"  {split}: {{path: {_q(data_ref)}, fraction: [{lo:g}, {hi:g}]}}"
            for split, (lo, hi) in splits.items()
        ]
    where = (
        f"read from the data root ({DATA_ROOT_ENV} or --data-root), never copied into the project"
        if data_ref.startswith(DATA_PREFIX)
        else "inside the project"
    )
    template = "\n".join(
        f"  {field.replace('_', ' ').capitalize()}: {{{{ {field} }}}}" for field in spec.text_fields
    )
    bound = math.ceil(floor * 1000) / 1000
    id_note = (
        f"the {spec.id_field!r} column"
        if spec.id_field
        else f"a hash of {', '.join(spec.text_fields)} (the file has no id column)"
    )
    return f"""\
# Suite {name}, written by `pld init` from {data.name} ({len(examples)} examples, {fmt}).
# The data is {where}.
# Ids: {id_note}.
name: {name}
description: {_q(f"Classify the {_label_words(spec.label_field)} of the rows of {data.name}.")}
dataset:
  loader: {LOADER_OF[fmt]}
  options: {{{opts}}}
{how}
splits:
{chr(10).join(split_lines)}
labels: {_flow(labels)}
user_template: |-
{template}
instructions: instructions/{name}.yaml
student: {spec.student}
gate_split: test
metrics: [accuracy, macro_f1, invalid_rate]
# Starting gates. Nothing has been measured yet, and a bound should sit just under a
# measured score, so the one active gate checks that answers are labels at all (a served
# model's prose counts as invalid; a local student scores the labels and always gives one).
# The first bound to enable once `pld run {name}` shows the prompt does better: macro_f1
# above {bound:g}, what always answering the most frequent train label ({majority}) scores on
# the test split ({floor:.4f}) - it fails a prompt or model that ignores the input. Then
# raise the bounds to just under the measured interval, and add a regression gate once a
# baseline is committed (README, "Gates").
gates:
  invalid_rate: "<= 0.01"
  # macro_f1: "> {bound:g}"
  # accuracy: ">= 0.70"
  # prompt_tokens: "<= 2000"
  # regression: {{metric: macro_f1, baseline: baselines/{name}.json, margin: 0.05}}
"""


def _label_words(label_field: str) -> str:
    return re.sub(r"[_\-\s]+", " ", label_field).strip() or "label"


def render_instructions(spec: InitSpec, labels: Sequence[str], counts: Counter[str]) -> str:
    fields = list(spec.text_fields)
    given = fields[0] if len(fields) == 1 else ", ".join(fields[:-1]) + f" and {fields[-1]}"
    what = _label_words(spec.label_field)
    definitions = "\n".join(
        f"#   {_q(label)}: {_q(f'When an example is {label}.')}  # {counts[label]} examples"
        for label in labels
    )
    return f"""\
# Instructions for the {spec.name} suite, written by `pld init`: a zero-shot start, no rules yet.
# `pld teach` and `pld distill` propose rules as a reviewable diff.
#
# Say what the task is in the preamble, in the words you would give a new annotator. Then
# describe each label in one sentence below and uncomment the block: the definitions go into
# the prompt under "Labels:". After an edit, update the rendered snapshot and commit both:
#   pld snapshot {spec.name} --update
name: {spec.name}
version: 1
description: {_q(f"{spec.name}: zero-shot start written by pld init.")}
preamble: {_q(f"You are given the {given} of an example. Decide its {what}.")}
# label_definitions:
{definitions}
rules: []
# Rendered with the suite's labels, so the list always matches the label set.
output: 'Answer with exactly one of: {{{{ labels | join(", ") }}}}.'
"""


# --- writing -----------------------------------------------------------------------------------


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
    from .snapshot import render_snapshot
    from .suite import load_suite
    from .validate import validate_file

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
