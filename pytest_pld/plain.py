"""Converting between the containers values arrive in and the ones they are kept or written in.

YAML arrives as ruamel's round-trip containers (CommentedMap, str subclasses that remember
their quoting), config objects keep it frozen (MappingProxyType, tuples), and caches, records
and proposals write it as JSON. One pair of functions does every such conversion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any


def to_plain(value: Any) -> Any:
    """JSON-ready plain data: mappings become dicts with string keys, lists and tuples lists,
    sets sorted lists, dataclasses dicts of their fields, paths strings, and str subclasses
    (ruamel's quoted scalars) plain str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return str(value)
    return value


def freeze(value: Any) -> Any:
    """An immutable copy: mappings become read-only mappings with string keys, lists and
    tuples tuples, str subclasses plain str."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, str):
        return str(value)
    return value
