"""`plan_init`: read and check the data and compose the files' text; nothing is written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..project import DATA_PREFIX
from .data import (
    carve,
    check_spec,
    columns_of,
    constant_floor,
    data_format,
    fraction_splits,
    label_set,
    loader_options,
    place_data,
    read_examples,
    splits_by_column,
)
from .render import render_instructions, render_suite
from .spec import InitSpec


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
    floor: float  # macro-F1 of always answering `constant`, on the gate split
    constant: str  # the constant answer that scores best there: the gate split's majority
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


def plan_init(root: Path, spec: InitSpec) -> Plan:
    """Read and check the data and compose the files; writes nothing."""
    data = spec.data.expanduser().resolve()
    fmt = data_format(data, spec.fmt)
    columns = columns_of(data, fmt)
    check_spec(spec, columns, data)
    data_ref, copy_to, notes = place_data(root, spec, data)
    options = loader_options(spec, fmt)
    examples, positions = read_examples(data, fmt, options)
    unit = "row" if fmt == "parquet" else "line"

    labels = label_set(spec, examples, positions, data, unit)
    splits: Mapping[str, Any]  # name -> column value, or name -> (lo, hi)
    if spec.split_column:
        splits, assign = splits_by_column(spec, examples, positions, data, unit)
    else:
        ranges = fraction_splits(spec.fractions)
        splits, assign = ranges, {e.id: carve(e, ranges) for e in examples}
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
    constant, floor = constant_floor(counts[gate_split], labels)
    suite_text = render_suite(
        spec, fmt, data, data_ref, options, splits, labels, floor, constant, examples
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
        constant=constant,
        suite_text=suite_text,
        instructions_text=instructions_text,
        notes=notes,
    )
