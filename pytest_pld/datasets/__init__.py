"""Dataset loaders: each turns a data file into a list of `Example`s for one split.

A loader is registered by name and declares the options it accepts, so suite validation can
reject an unknown option with the file, line and allowed names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Example:
    """One labelled item. `fields` feed the user-message template; `group` keeps related
    items (the 17 hypotheses of one contract, the 3 sentences of one StereoSet cluster) in
    the same split when a file is carved into splits."""

    id: str
    label: str
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    group: str | None = None


LoadFn = Callable[[Path, Mapping[str, Any]], list[Example]]


@dataclass(frozen=True)
class Loader:
    name: str
    load: LoadFn
    options: Mapping[str, Any]  # allowed option -> default
    fields: Sequence[str]  # the fields every example carries (for template validation)
    description: str = ""


def split_fraction(key: str) -> float:
    """A stable number in [0, 1) for an id: carving a file into splits by it is deterministic
    across machines and Python versions (unlike hash())."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def registry() -> dict[str, Loader]:
    from . import contractnli, jsonl, logiqa, stereoset  # local imports keep start-up light

    loaders = [*contractnli.LOADERS, *stereoset.LOADERS, *logiqa.LOADERS, *jsonl.LOADERS]
    return {loader.name: loader for loader in loaders}
