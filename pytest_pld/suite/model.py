"""The suite's data: a benchmark as configuration - dataset, splits, labels, prompt, student,
gates - as frozen dataclasses that only `load_suite` (pytest_pld.suite.load) makes."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import Example, Loader, split_fraction
from ..errors import PldError, did_you_mean
from ..instructions import InstructionSet, load_instruction_set
from ..project import is_data_path, resolve_data, resolve_inside
from .data_checks import SplitData, check_split


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str
    value: float
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, observed: float) -> bool:
        if math.isnan(observed):  # NaN never passes a gate
            return False
        return {
            ">=": observed >= self.value,
            ">": observed > self.value,
            "<=": observed <= self.value,
            "<": observed < self.value,
        }[self.op]


@dataclass(frozen=True)
class RegressionGate:
    metric: str
    baseline: str  # project-relative path of the committed run record
    margin: float = 0.02
    confidence: float = 0.95
    line: int | None = None
    power: str | None = None  # warn | fail; None: not set in the suite

    @property
    def label(self) -> str:
        return f"regression[{self.metric}]"


@dataclass(frozen=True)
class SplitSpec:
    path: str  # project-relative, or data:PATH under the data root
    fraction: tuple[float, float] = (0.0, 1.0)
    value: str | None = None  # the rows whose split field holds this value


@dataclass(frozen=True)
class Suite:
    path: Path
    root: Path
    name: str
    loader: Loader
    loader_options: Mapping[str, Any]
    splits: Mapping[str, SplitSpec]
    labels: tuple[str, ...]
    user_template: str
    instructions: str
    student: str
    gates: tuple[Bound, ...] = ()
    regression: RegressionGate | None = None
    gate_split: str = "test"
    max_prompt_tokens: int | None = None
    metrics: tuple[str, ...] = ("accuracy", "macro_f1")
    description: str = ""
    snapshot: str | None = None
    cluster_key: str | None = None
    family: str = "holm"  # correction of the per-class gates' tests: holm | none
    data_root: Path | None = None  # where data:PATH split paths resolve
    #: an example whose gold label is not in `labels`: error | skip (left out and counted)
    unknown_labels: str = "error"

    @property
    def instructions_path(self) -> Path:
        return resolve_inside(self.root, self.instructions, path=self.path, key="instructions")

    def load_instructions(self) -> InstructionSet:
        return load_instruction_set(self.instructions_path, root=self.root)

    def system_prompt(self, instructions: InstructionSet | None = None) -> str:
        """The rendered system prompt of `instructions` (default: the suite's own set) with
        this suite's labels, its template files resolved inside the project."""
        from ..render import render_system_prompt

        iset = self.load_instructions() if instructions is None else instructions
        return render_system_prompt(iset, self.labels, self.root)

    def snapshot_path(self) -> Path:
        rel = self.snapshot or str(Path(self.instructions).with_suffix(".prompt.txt"))
        return resolve_inside(self.root, rel, path=self.path, key="snapshot")

    def split_path(self, split: str) -> Path:
        spec = self._spec(split)
        return resolve_data(
            self.root, self.data_root, spec.path, path=self.path, key=f"splits.{split}"
        )

    def _spec(self, split: str) -> SplitSpec:
        if split not in self.splits:
            raise PldError(
                f"suite has no {split!r} split{did_you_mean(split, self.splits)}",
                path=self.path,
                key="splits",
                hint=f"declared splits: {', '.join(self.splits)}",
            )
        return self.splits[split]

    def load_examples(self, split: str, *, limit: int | None = None) -> list[Example]:
        """The examples of a split, checked against the suite (`data_checks`); with `limit`, a
        deterministic sample of that many."""
        examples = self.split_data(split).examples
        if limit is not None and limit < len(examples):
            # sample by a stable hash of the id, then restore file order so runs are readable
            chosen = sorted(examples, key=lambda e: split_fraction("sample:" + e.id))[:limit]
            keep = {e.id for e in chosen}
            examples = [e for e in examples if e.id in keep]
        return examples

    def split_data(self, split: str) -> SplitData:
        """The split's examples as the suite evaluates them, and those `unknown_labels: skip`
        left out; raises PldErrors when the data does not fit the suite."""
        return check_split(self, split, self.read_split(split), self.split_path(split))

    def read_split(self, split: str) -> list[Example]:
        """Every example of a split as its file holds them, not yet checked against the suite."""
        spec = self._spec(split)
        data_path = self.split_path(split)
        if not data_path.exists():
            raise PldError(
                f"data file {spec.path!r} for split {split!r} is missing"
                + (f" (looked in {data_path})" if is_data_path(spec.path) else ""),
                path=self.path,
                key=f"splits.{split}",
                hint="check the data root and the path"
                if is_data_path(spec.path)
                else "restore it from git or fix the path",
            )
        examples = _cached_load(self.loader, data_path, self.loader_options)
        if spec.value is not None:
            unmarked = [e for e in examples if e.split is None]
            if unmarked:
                raise PldError(
                    f"split {split!r} takes the rows whose split field holds {spec.value!r}, "
                    f"and {len(unmarked)} rows of {spec.path} have no split field (first: id "
                    f"{unmarked[0].id!r})",
                    path=self.path,
                    key=f"splits.{split}",
                    hint=f"give every row of {data_path} a "
                    f"{self.loader_options.get('split_field')!r} value",
                )
            examples = [e for e in examples if e.split == spec.value]
        lo, hi = spec.fraction
        if (lo, hi) != (0.0, 1.0):
            examples = [e for e in examples if lo <= split_fraction(e.group or e.id) < hi]
        return examples


#: the files read last (by loader, path, modification time and options), so that the splits,
#: folds and samples of one file are parsed once; a few entries only, because a file such as
#: ContractNLI's train.json holds tens of megabytes of examples
_LoadKey = tuple[str, Path, float, tuple[tuple[str, Any], ...]]
_LOAD_CACHE: OrderedDict[_LoadKey, tuple[Example, ...]] = OrderedDict()
LOAD_CACHE_SIZE = 8


def _cached_load(loader: Loader, path: Path, options: Mapping[str, Any]) -> list[Example]:
    """The file's examples, parsed once while it is unchanged; a new list on every call, so a
    caller that filters or reorders it never changes what the next caller gets."""
    key = (loader.name, path, path.stat().st_mtime, tuple(sorted(options.items())))
    if key in _LOAD_CACHE:
        _LOAD_CACHE.move_to_end(key)
    else:
        _LOAD_CACHE[key] = tuple(loader.load(path, options))
        while len(_LOAD_CACHE) > LOAD_CACHE_SIZE:
            _LOAD_CACHE.popitem(last=False)  # the least recently used file
    return list(_LOAD_CACHE[key])
