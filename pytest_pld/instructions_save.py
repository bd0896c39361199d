"""Writing instruction sets: `new` applied to the file's round-trip YAML document, so that
untouched rules keep their comments and formatting and a reviewer's diff shows only what
changed; validated before an atomic write, and refused when the file changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import calibration_section
from .errors import PldError
from .instructions import InstructionSet, Rule, load_instruction_set_text
from .plain import to_plain
from .textio import read_text
from .yamlio import (
    atomic_write_text,
    dump_yaml,
    keep_untouched_lines,
    load_yaml_text,
    strip_wrap_spaces,
)


def _rule_node(rule: Rule) -> CommentedMap:
    node = CommentedMap()
    for key, value in rule.as_dict().items():
        node[key] = value
    return node


def apply_to_document(doc: CommentedMap, new: InstructionSet) -> CommentedMap:
    """Edit a round-trip document in place so that it describes `new`.

    Untouched rules keep their nodes (and so their comments and formatting); changed fields
    of a rule are replaced in place; new rules are appended in `new`'s order.
    """
    doc["version"] = new.version
    for key, value in (
        ("preamble", new.preamble),
        ("output", new.output),
        ("description", new.description or None),
    ):
        if value is None:
            continue
        if doc.get(key) != value:
            doc[key] = value
    rules = doc.get("rules")
    if not isinstance(rules, CommentedSeq):
        rules = CommentedSeq()
        doc["rules"] = rules
    existing = {r.get("id"): r for r in rules if isinstance(r, CommentedMap)}
    wanted_ids = [r.id for r in new.rules]
    # remove rules that are gone, walking backwards so indices stay valid
    for i in range(len(rules) - 1, -1, -1):
        node = rules[i]
        if isinstance(node, Mapping) and node.get("id") not in wanted_ids:
            del rules[i]
    for rule in new.rules:
        node = existing.get(rule.id)
        if node is None:
            rules.append(_rule_node(rule))
            continue
        fresh = rule.as_dict()
        for key in list(node):
            if key not in fresh:
                del node[key]
        for key, value in fresh.items():
            if to_plain(node.get(key)) != value:
                node[key] = value
    calibration_section.write_section(doc, new.calibration)
    return doc


def render_instruction_text(new: InstructionSet, current: str | None, path: Path) -> str:
    """The text `save_instruction_set` would write for `new` over a file holding `current`
    (None: no file yet), without writing: what `pld distill` shows as its diff."""
    doc = load_yaml_text(current, path) if current is not None else CommentedMap()
    if not isinstance(doc, CommentedMap):
        doc = CommentedMap()
    if current is None:
        for key, value in new.as_dict().items():
            doc[key] = value if key != "rules" else CommentedSeq()
    apply_to_document(doc, new)
    if not new.rules and isinstance(doc.get("rules"), CommentedSeq):
        # an emptied list would keep its items' comments and dump as invalid YAML
        doc["rules"] = CommentedSeq()
    text = strip_wrap_spaces(dump_yaml(doc))
    if current is not None:
        # ruamel re-flows multi-line plain scalars it re-emits; keep untouched lines as they were
        text = keep_untouched_lines(current, text)
    return text


def save_instruction_set(
    new: InstructionSet, path: Path, *, expected_text: str | None = None
) -> str:
    """Apply `new` to the file at `path` through ruamel's round trip; write atomically.

    `expected_text` guards against clobbering: when given and the file no longer has that
    content (someone edited it after the proposal was computed), nothing is written.
    Returns the new text.
    """
    current = read_text(path, what="instruction file") if path.exists() else None
    # read_text drops a byte-order mark; a caller's text read another way may still have it
    if expected_text is not None and current != expected_text.removeprefix("\ufeff"):
        raise PldError(
            "the file changed since the proposal was computed; nothing was written",
            path=path,
            hint="re-run the command to compute a fresh proposal",
        )
    text = render_instruction_text(new, current, path)
    # validate before writing: a proposal must never leave an invalid file behind
    load_instruction_set_text(text, path)
    atomic_write_text(path, text)
    return text
