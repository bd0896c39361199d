"""Safe YAML loading with line numbers, round-trip saving, JSON files the tools write (run
records, ablations) read back with file and line in every error, and atomic file writes."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from .atomic import atomic_write_bytes
from .errors import PldError
from .plain import to_plain
from .textio import read_text


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
    return load_yaml_text(read_text(path, what="YAML file"), path)


def load_yaml_text(text: str, path: Path | str) -> Any:
    try:
        data = _round_trip_yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PldError(
            f"malformed YAML: {problem}",
            path=path,
            line=line,
            hint="fix the syntax; `pld validate` re-checks every file",
        ) from None
    except ReaderError as exc:  # a control character; ruamel gives its offset, not its line
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise PldError(
            f"malformed YAML: control character #x{code:04x} is not allowed in YAML",
            path=path,
            line=text.count("\n", 0, exc.position) + 1,
            hint="remove it (an editor may show it as a box or not at all)",
        ) from None
    except YAMLError as exc:
        raise PldError(f"malformed YAML: {exc}", path=path) from None
    except RecursionError:
        raise PldError(
            "malformed YAML: nested too deeply to read",
            path=path,
            hint="flatten the nested lists or mappings",
        ) from None
    _check_loaded(data, path)
    return data


# Aliases (*name) share one node, but everything downstream copies plain data: a few lines of
# nested aliases ("billion laughs") would expand to billions of values. No file this project
# reads comes near this many.
MAX_YAML_VALUES = 200_000


def _check_loaded(data: Any, path: Path | str) -> None:
    """Refuse what loads but breaks later: alias expansion past MAX_YAML_VALUES, and strings
    with lone surrogates (a YAML escape such as "\\ud800"), which cannot be written as UTF-8."""
    stack: list[tuple[Any, Any, Any]] = [(data, None, None)]
    seen = 0
    while stack:
        node, parent, key = stack.pop()
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise PldError(
                f"the document expands to more than {MAX_YAML_VALUES:,} values",
                path=path,
                hint="YAML aliases (*name) that repeat other aliases multiply; write the "
                "values out instead",
            )
        if isinstance(node, dict):
            stack.extend((v, node, k) for k, v in node.items())
            stack.extend((k, node, k) for k in node if isinstance(k, str))
        elif isinstance(node, list):
            stack.extend((v, node, i) for i, v in enumerate(node))
        elif isinstance(node, str) and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PldError(
                    f"a string contains the lone surrogate {node[exc.start]!r}, which is not a "
                    "character",
                    path=path,
                    line=line_of(parent, key),
                    hint="write the character itself, or a \\U escape of its code point",
                ) from None


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


def line_in_value(node: Any, key: str, inner: int) -> tuple[int | None, bool]:
    """(1-based file line where line `inner` of the string `node[key]` starts, True), or
    (the line where the string starts, False) when that is all that is known.

    The lines of a literal block (`|`) are the file's lines. Plain, quoted and folded (`>`)
    scalars are joined when loaded, so for them only the line where the text starts is known.
    """
    try:
        start = int(node.lc.value(key)[0]) + 1  # the line of the value, or of `|` and `>`
    except (AttributeError, KeyError, IndexError, TypeError):
        return line_of(node, key), False
    value = node.get(key)
    if isinstance(value, LiteralScalarString):
        return start + inner, True
    if isinstance(value, FoldedScalarString):
        return start + 1, inner == 1
    return start, inner == 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 via a temporary file in the same folder and rename, so readers never see
    half a file; the file gets the mode a plain open would give it (or keeps its own)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _line_starts(doc: CommentedMap) -> list[tuple[Any, int]] | None:
    try:
        return [(key, int(doc.lc.key(key)[0])) for key in doc]
    except (AttributeError, KeyError, TypeError):
        return None


def _segments(lines: list[str], doc: CommentedMap) -> tuple[list[str], dict[Any, list[str]]] | None:
    """(lines before the first key, top-level key -> its lines up to the next key)."""
    starts = _line_starts(doc)
    if not starts or [s for _, s in starts] != sorted(s for _, s in starts):
        return None
    bounds = [s for _, s in starts] + [len(lines)]
    return lines[: bounds[0]], {
        key: lines[bounds[i] : bounds[i + 1]] for i, (key, _) in enumerate(starts)
    }


def _split_trailing(lines: list[str]) -> tuple[list[str], list[str]]:
    """(content lines, the comment and blank lines that end them)."""
    i = len(lines)
    while i > 0 and (not lines[i - 1].strip() or lines[i - 1].lstrip().startswith("#")):
        i -= 1
    return lines[:i], lines[i:]


def _list_parts(
    lines: list[str],
    starts: list[int],
) -> tuple[list[str], list[tuple[list[str], list[str]]], list[str]]:
    """A list-valued key's lines as (key line, [(leading comments, item lines)], tail).

    ruamel attaches a comment to the node *before* it; for a reviewer a comment above a rule
    belongs to that rule, and the comments after the last rule to the list's end."""
    if not starts:
        return lines[:1], [], lines[1:]
    head, lead = _split_trailing(lines[: starts[0]])
    items = []
    for a, b in zip(starts, [*starts[1:], len(lines)]):
        body, trailing = _split_trailing(lines[a:b])
        items.append((lead, body))
        lead = trailing
    return head, items, lead


def _merge_items(
    old_lines: list[str],
    old_seq: Any,
    new_lines: list[str],
    new_seq: Any,
    old_key_line: int,
    new_key_line: int,
) -> list[str] | None:
    """A list of mappings with `id`s: unchanged items keep their original lines, and every
    comment comes from the original text (new items have none of their own)."""
    if not (isinstance(old_seq, CommentedSeq) and isinstance(new_seq, CommentedSeq)):
        return None
    if not all(isinstance(x, CommentedMap) and "id" in x for x in [*old_seq, *new_seq]):
        return None
    try:
        old_at = [int(old_seq.lc.item(i)[0]) - old_key_line for i in range(len(old_seq))]
        new_at = [int(new_seq.lc.item(i)[0]) - new_key_line for i in range(len(new_seq))]
    except (AttributeError, KeyError, TypeError):
        return None
    old_head, old_items, old_tail = _list_parts(old_lines, old_at)
    new_head, new_items, _ = _list_parts(new_lines, new_at)
    if not new_items:  # every item removed: an empty flow list, the list's end comments kept
        key_line = old_lines[0].rstrip("\r\n")
        return [key_line + " []\n", *old_tail] if key_line.endswith(":") else None
    by_id = {str(node["id"]): (node, part) for node, part in zip(old_seq, old_items)}
    out = list(old_head if old_items else new_head)
    for node, (_, body) in zip(new_seq, new_items):
        old = by_id.get(str(node["id"]))
        if old is None:
            out.extend(body)
        elif to_plain(old[0]) == to_plain(node):
            out.extend(old[1][0] + old[1][1])
        else:
            out.extend(old[1][0] + body)
    out.extend(old_tail)
    return out


def keep_untouched_lines(old_text: str, new_text: str) -> str:
    """`new_text` (a round-trip dump of an edited `old_text`) with every top-level key, and
    every `id`-keyed list item, whose value did not change restored to its original lines.

    ruamel keeps comments but re-flows multi-line plain scalars on dump, so without this an
    untouched field could show up in the diff of a one-rule change. The result is checked to
    load to the same data as `new_text`; when in doubt the plain dump is returned.
    """
    try:
        old_doc, new_doc = load_yaml_text(old_text, "<old>"), load_yaml_text(new_text, "<new>")
    except PldError:
        return new_text
    if not isinstance(old_doc, CommentedMap) or not isinstance(new_doc, CommentedMap):
        return new_text
    old_lines, new_lines = old_text.splitlines(keepends=True), new_text.splitlines(keepends=True)
    old_parts, new_parts = _segments(old_lines, old_doc), _segments(new_lines, new_doc)
    if old_parts is None or new_parts is None:
        return new_text
    want = to_plain(new_doc)
    for item_level in (True, False):
        out = list(old_parts[0])
        for key, lines in new_parts[1].items():
            if key in old_doc and to_plain(old_doc[key]) == to_plain(new_doc[key]):
                out.extend(old_parts[1][key])
                continue
            merged = None
            if item_level and key in old_doc:
                merged = _merge_items(
                    old_parts[1][key],
                    old_doc[key],
                    lines,
                    new_doc[key],
                    int(old_doc.lc.key(key)[0]),
                    int(new_doc.lc.key(key)[0]),
                )
            out.extend(merged if merged is not None else lines)
        text = "".join(out)
        if text and not text.endswith("\n"):
            text += "\n"
        try:
            if to_plain(load_yaml_text(text, "<merged>")) == want:
                return text
        except PldError:
            pass
    return new_text


def strip_wrap_spaces(text: str) -> str:
    """`text` without the trailing spaces ruamel leaves where it wraps a long plain scalar
    (`... a manager or a ` + newline), when removing them loads to the same data (in a block
    literal they would be content, and then they stay)."""
    stripped = "\n".join(line.rstrip(" ") for line in text.split("\n"))
    if stripped == text:
        return text
    try:
        same = to_plain(load_yaml_text(stripped, "<stripped>")) == to_plain(
            load_yaml_text(text, "<dumped>")
        )
    except PldError:
        return text
    return stripped if same else text
