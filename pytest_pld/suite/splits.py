"""A suite's `splits:` section: each split a file, a hashed fraction of one, or the rows whose
split column holds a value; two splits of one file must not overlap."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import PldError
from ..problems import Problems
from ..project import check_data_spec, is_data_path, resolve_data
from ..yamlio import line_of
from .model import SplitSpec

#: the conventional split names: teach reads train, distill scores rules on dev, the gates
#: default to test. A suite may declare any other names besides (a held-out set, last month's
#: traffic) and evaluate them with --split / --pld-split.
SPLITS = ("train", "dev", "test")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SPLIT_KEYS = ("path", "fraction", "value")
SPLIT_FORMS = (
    "a path, or {path, fraction: [lo, hi]} (rows whose id hashes into [lo, hi)), or "
    "{path, value: V} (rows whose split_field holds V)"
)


def parse_splits(
    doc: Mapping[str, Any],
    loader_options: Mapping[str, Any],
    problems: Problems,
    *,
    root: Path,
    data_root: Path | None,
) -> dict[str, SplitSpec]:
    """The suite's splits; a data file that resolves outside the project (or the data root)
    is a problem here, a missing one only when the split is read."""
    splits: dict[str, SplitSpec] = {}
    raw_splits = doc.get("splits")
    if raw_splits is None:
        return splits
    if not isinstance(raw_splits, Mapping):
        problems.add("expected a mapping split -> path", doc, "splits", "splits")
        return splits
    path = problems.path
    split_field = str(loader_options.get("split_field") or "")
    for split, spec in raw_splits.items():
        where = f"splits.{split}"
        if not isinstance(split, str) or not SPLIT_NAME.match(split):
            problems.add(
                f"split name {split!r} is not allowed",
                raw_splits,
                split,
                where,
                hint="letters, digits, '_', '-' and '.', starting with a letter or "
                f"digit (quote one YAML reads as a number); the conventional names are "
                f"{', '.join(SPLITS)}",
            )
            continue
        parsed = _parse_split(spec, raw_splits, split, where, split_field, problems.add)
        if parsed is None:
            continue
        splits[split] = parsed
        try:
            if is_data_path(parsed.path):
                check_data_spec(parsed.path, path=path, line=line_of(raw_splits, split), key=where)
            if not is_data_path(parsed.path) or data_root is not None:
                resolve_data(
                    root,
                    data_root,
                    parsed.path,
                    path=path,
                    line=line_of(raw_splits, split),
                    key=where,
                )
        except PldError as exc:
            problems.append(exc)
    _check_disjoint(splits, raw_splits, path, problems.errors)
    return splits


def _parse_split(
    spec: Any,
    node: Any,
    split: str,
    where: str,
    split_field: str,
    err: Callable[..., None],
) -> SplitSpec | None:
    """One entry of `splits:`; reports a malformed one through `err` and returns None."""
    if isinstance(spec, str):
        return SplitSpec(spec)
    if not isinstance(spec, Mapping) or "path" not in spec or not set(spec) <= set(SPLIT_KEYS):
        err(f"expected {SPLIT_FORMS}", node, split, where)
        return None
    frac = spec.get("fraction", [0.0, 1.0])
    if (
        not isinstance(frac, list)
        or len(frac) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in frac)
        or not 0 <= frac[0] < frac[1] <= 1
    ):
        err(
            "fraction must be [lo, hi] with 0 <= lo < hi <= 1",
            spec,
            "fraction",
            f"{where}.fraction",
        )
        return None
    value = spec.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            err("value must be a non-empty string", spec, "value", f"{where}.value")
            return None
        if not split_field:
            err(
                "value selects rows by their split column, and the loader has no split_field",
                spec,
                "value",
                f"{where}.value",
                hint="set dataset.options.split_field to the column that names each row's split",
            )
            return None
    return SplitSpec(
        str(spec["path"]),
        (float(frac[0]), float(frac[1])),
        None if value is None else str(value).strip(),
    )


def _check_disjoint(
    splits: Mapping[str, SplitSpec], node: Any, path: Path, errors: list[PldError]
) -> None:
    """Two splits that read the same file must take non-overlapping fractions of it."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sa, sb = splits[a], splits[b]
            if sa.path != sb.path or sa.value != sb.value:
                continue
            if sa.fraction[0] < sb.fraction[1] and sb.fraction[0] < sa.fraction[1]:
                errors.append(
                    PldError(
                        f"splits {a!r} and {b!r} overlap (same file, fractions {list(sa.fraction)} "
                        f"and {list(sb.fraction)})",
                        path=path,
                        line=line_of(node, b),
                        key=f"splits.{b}",
                        hint="give them disjoint [lo, hi) fractions",
                    )
                )
