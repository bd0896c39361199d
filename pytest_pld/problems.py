"""The problems found in one file (a suite, an instruction set), collected so that its loader
reports them all at once instead of stopping at the first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import PldError, did_you_mean
from .yamlio import line_of


@dataclass
class Problems:
    path: Path  # the file every problem is reported against
    errors: list[PldError] = field(default_factory=list)

    def add(
        self,
        msg: str,
        node: Any = None,
        key: Any = None,
        name: str | None = None,
        hint: str | None = None,
    ) -> None:
        """A problem at `node[key]` (its line), reported under the dotted key `name`."""
        self.errors.append(
            PldError(msg, path=self.path, line=line_of(node, key), key=name, hint=hint)
        )

    def append(self, error: PldError) -> None:
        self.errors.append(error)

    def check_top_keys(
        self, doc: Mapping[Any, Any], allowed: Mapping[str, str], required: Sequence[str]
    ) -> None:
        """Unknown top-level keys (with did-you-mean) and missing required ones; `allowed`
        maps each key to what it holds, the hint for a missing one."""
        for key in doc:
            if key not in allowed:
                self.add(
                    f"unknown key{did_you_mean(str(key), allowed)}",
                    doc,
                    key,
                    str(key),
                    hint=f"allowed keys: {', '.join(allowed)}",
                )
        for key in required:
            if key not in doc:
                self.add("required key is missing", doc, None, key, hint=allowed[key])
