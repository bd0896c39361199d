"""Safe YAML loading with line numbers, round-trip saving, and atomic file writes."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import PldError


def _round_trip_yaml() -> YAML:
    # typ="rt" keeps comments, key order and line numbers; it only constructs plain
    # mappings, sequences and scalars (no arbitrary Python objects), so it is safe for
    # files that arrive in pull requests.
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_yaml(path: Path) -> Any:
    """Load a YAML file as ruamel round-trip objects; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PldError("file not found", path=path) from None
    except OSError as exc:
        raise PldError(f"cannot read file: {exc.strerror}", path=path) from None
    return load_yaml_text(text, path)


def load_yaml_text(text: str, path: Path | str) -> Any:
    try:
        return _round_trip_yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PldError(f"malformed YAML: {problem}", path=path, line=line,
                       hint="fix the syntax; `pld validate` re-checks every file") from None
    except YAMLError as exc:
        raise PldError(f"malformed YAML: {exc}", path=path) from None


def dump_yaml(data: Any) -> str:
    buf = io.StringIO()
    _round_trip_yaml().dump(data, buf)
    return buf.getvalue()


def line_of(node: Any, key: str | int | None = None) -> int | None:
    """1-based line of `key` inside a ruamel mapping/sequence (or of the node itself)."""
    try:
        if isinstance(node, CommentedMap) and key is not None and key in node:
            return int(node.lc.key(key)[0]) + 1
        if isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            return int(node.lc.item(key)[0]) + 1
        if isinstance(node, (CommentedMap, CommentedSeq)):
            return int(node.lc.line) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    return None


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
