"""The k-shot baseline: k labelled train examples shown in the system prompt."""

from __future__ import annotations

import random

from .errors import PldError
from .instructions import InstructionSet, WorkedExample
from .render import render_user_message
from .suite import Suite, example_fields


def with_shots(suite: Suite, iset: InstructionSet, shots: int, seed: int) -> InstructionSet:
    """`iset` with `shots` random train examples (seeded) as its examples.

    Drawn from the train split only, so the gate split never leaks into the prompt."""
    if "train" not in suite.splits or suite.gate_split == "train":
        raise PldError(
            "--shots draws from the train split, which this suite does not have "
            "apart from its gate split",
            path=suite.path,
            key="splits",
        )
    pool = suite.load_examples("train")
    picked = random.Random(seed).sample(pool, min(shots, len(pool)))
    where = str(suite.path)
    return iset.with_examples(
        [
            WorkedExample(
                render_user_message(suite.user_template, example_fields(e), where=where), e.label
            )
            for e in picked
        ]
    )
