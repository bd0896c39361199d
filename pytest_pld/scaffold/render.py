"""The text of the files `pld init` writes: the suite and a zero-shot instruction set, each
commented to say what to do next."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..datasets import Example
from ..project import DATA_PREFIX, DATA_ROOT_ENV
from .spec import LOADER_OF, InitSpec


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
    constant: str,
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
    bound = floor_bound(floor)
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
# above {bound:g}, just above the best a constant answer scores on the whole test split
# (always {constant}, the split's most frequent label: {floor:.4f}), so a prompt or model
# that ignores the input fails it (a --limit sample's label mix can differ). Then
# raise the bounds to just under the measured interval, and add a regression gate once a
# baseline is committed (README, "Gates").
gates:
  invalid_rate: "<= 0.01"
  # macro_f1: "> {bound:g}"
  # accuracy: ">= 0.70"
  # prompt_tokens: "<= 2000"
  # regression: {{metric: macro_f1, baseline: baselines/{name}.json, margin: 0.05}}
"""


def floor_bound(floor: float) -> float:
    """The commented-out macro_f1 bound: the smallest 3-decimal number above the best constant
    answer's macro-F1. Strictly above: a floor of exactly 0.35 gives 0.351, since the gate's
    own float arithmetic can put the constant's score a hair over 0.35. `pld init` prints this
    number and the suite file's comment says the same (with the floor to 4 decimals beside it)."""
    return (math.floor(floor * 1000 + 1e-6) + 1) / 1000


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
