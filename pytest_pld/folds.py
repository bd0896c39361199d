"""Folds of a split: the part of dev that selection never sees.

Distill scores candidate rules on dev, so its dev numbers are optimistic: the rules were chosen
for them. A fold of dev is therefore held back: selection and the closed loop score on the rest
(the selection fold), and only the final choice and the reported numbers use the held-back fold.

Membership is decided by a salted sha256 of the example's group (its cluster, its contract) or,
without one, of its id: related examples stay on one side, the split does not depend on the
order of the file, on the other examples or on `--limit`, and it is the same on every machine.
The salt makes it independent of the hash that carved the split itself out of a file
(`split_fraction(group)` without a salt), which would otherwise put a whole fraction range of
one split into one fold.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from .datasets import Example, split_fraction

HOLDOUT_SALT = "pld-holdout:"
DEFAULT_HOLDOUT = 1 / 3


def unit_of(example: Example) -> str:
    """What is kept together: the example's group where it has one, else the example."""
    return example.group or example.id


def is_held_back(example: Example, fraction: float) -> bool:
    return split_fraction(HOLDOUT_SALT + unit_of(example)) < fraction


def split_holdout(
    examples: Sequence[Example], fraction: float
) -> tuple[list[Example], list[Example]]:
    """(selection fold, held-back fold), each in file order; disjoint by group."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the held-back fraction must be in [0, 1), got {fraction}")
    held = [e for e in examples if is_held_back(e, fraction)]
    rest = [e for e in examples if not is_held_back(e, fraction)]
    return rest, held


def sample(examples: Sequence[Example], limit: int | None) -> list[Example]:
    """A deterministic sample of `limit` examples in file order, chosen as `Suite.load_examples`
    chooses one (by a hash of the id), so a fold's sample does not depend on the other fold."""
    if limit is None or limit >= len(examples):
        return list(examples)
    chosen = sorted(examples, key=lambda e: split_fraction("sample:" + e.id))[:limit]
    keep = {e.id for e in chosen}
    return [e for e in examples if e.id in keep]


@dataclass(frozen=True)
class Fold:
    """A named list of examples of one split, scored as a unit (and memoised by name)."""

    name: str  # e.g. "dev/selection", "dev/held-back", "train"
    split: str
    examples: tuple[Example, ...]
    #: the suite's `cluster_key`: what a paired bootstrap resamples, as `pld run` and the gates
    #: do (StereoSet's 583 test examples are 79 targets). None: each example's group.
    cluster_key: str | None = None

    @functools.cached_property  # read by every paired comparison of every candidate rule
    def clusters(self) -> list[str] | None:
        """Cluster ids for a paired bootstrap: by the suite's cluster_key where it has one,
        else by group; None when neither applies (examples are then resampled)."""
        if self.cluster_key:
            from .example_clusters import cluster_of

            return [cluster_of(e, self.cluster_key) for e in self.examples]
        if not any(e.group for e in self.examples):
            return None
        return [unit_of(e) for e in self.examples]

    @property
    def n_clusters(self) -> int:
        return len(set(self.clusters or [e.id for e in self.examples]))

    def __len__(self) -> int:
        return len(self.examples)
