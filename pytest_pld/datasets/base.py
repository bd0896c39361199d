"""What every loader shares: the `Example` it produces, the `Loader` record it registers,
and the stable hash that carves files into splits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Example:
    """One labelled item. `fields` feed the user-message template; `group` keeps related
    items (the 17 hypotheses of one contract, the 3 sentences of one StereoSet cluster) in
    the same split when a file is carved into splits; `split` is the value of the file's
    split column, for files that say which split each row belongs to; `line` is where the
    example starts in its file (None for formats without lines), so that a problem with the
    data can be named at its line. It is not part of the example's identity."""

    id: str
    label: str
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    group: str | None = None
    split: str | None = None
    line: int | None = field(default=None, compare=False)


LoadFn = Callable[[Path, Mapping[str, Any]], list[Example]]


@dataclass(frozen=True)
class Loader:
    name: str
    load: LoadFn
    options: Mapping[str, Any]  # allowed option -> default
    fields: Sequence[str]  # the fields every example carries (for template validation)


def split_fraction(key: str) -> float:
    """A stable number in [0, 1) for an id: carving a file into splits by it is deterministic
    across machines and Python versions (unlike hash())."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def content_id(*parts: Any) -> str:
    """A stable id for data that has none (32 hex digits, like StereoSet's own ids): a hash of
    the content, so the same item keeps its id - and its split - however the file is ordered."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]
