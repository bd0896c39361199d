"""Rule-level diffs of two instruction sets, computed with deepdiff on the loaded objects.

Diffing the loaded objects rather than the YAML lines is the point: a moved comment, a
re-wrapped folded string or re-quoted key is not a change, and a rule whose text changed is
reported by its stable id, with its provenance, however its lines moved.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..instructions import InstructionSet

#: Top-level fields compared besides the rules ("version" is reported on its own). The
#: calibration is not rendered, but it changes answers: a change of it is a semantic change.
SET_FIELDS = (
    "preamble",
    "output",
    "label_definitions",
    "examples",
    "description",
    "template",
    "calibration",
)
#: What a changed key of the calibration section's `fitted:` means for a reviewer.
REFITTED = {
    "student": "refitted for another student",
    "system_prompt_sha256": "refitted for another rendered prompt",
    "backend_sha256": "refitted with scores computed another way (weights, dtype)",
    "split": "refitted on another split",
    "examples": "refitted on another number of examples",
    "ids_sha256": "refitted on other examples",
    "inputs": "refitted on other content-free inputs",
}


@dataclass(frozen=True)
class RuleChange:
    kind: str  # added | removed | reworded | changed
    id: str
    old: Mapping[str, Any] | None  # Rule.as_dict() at the base
    new: Mapping[str, Any] | None  # Rule.as_dict() at the head
    fields: tuple[str, ...] = ()  # rule keys that changed (text, label, tags, provenance)

    @property
    def provenance(self) -> Mapping[str, Any]:
        rule = self.new if self.new is not None else self.old
        return (rule or {}).get("provenance", {})

    def field_notes(self, arrow: str = "→") -> list[str]:
        """What changed in each field, for a reviewer: 'text reworded',
        'label Entailment → NotMentioned', 'tags', 'provenance'."""
        old, new = self.old or {}, self.new or {}
        notes = []
        for key in self.fields:
            if key == "text":
                notes.append("text reworded")
            elif key == "label":
                notes.append(
                    f"label {old.get('label') or '(none)'} {arrow} {new.get('label') or '(none)'}"
                )
            else:
                notes.append(key)
        return notes

    def describe(self, arrow: str = "→") -> str:
        """'added', 'removed', or the fields that changed ('text reworded, provenance')."""
        if self.kind in ("added", "removed"):
            return self.kind
        return ", ".join(self.field_notes(arrow)) or self.kind


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any
    #: what changed, in words, where the values alone are hard to read (the calibration's
    #: offsets and provenance)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetDiff:
    old_version: int
    new_version: int
    rules: tuple[RuleChange, ...]
    fields: tuple[FieldChange, ...]
    reordered: bool  # the same rules in another order (the prompt numbers them)

    @property
    def has_changes(self) -> bool:
        return bool(self.rules or self.fields or self.reordered)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for change in self.rules:
            out[change.kind] = out.get(change.kind, 0) + 1
        return out

    def summary(self) -> str:
        """'1 added, 1 reworded; preamble changed; rules reordered' (or 'no rule changes')."""
        counts = self.counts()
        parts = [
            f"{counts[k]} {k}" for k in ("added", "removed", "reworded", "changed") if k in counts
        ]
        text = ", ".join(parts) or "no rule changes"
        if self.fields:
            text += "; " + ", ".join(f.field for f in self.fields) + " changed"
        if self.reordered:
            text += "; rules reordered"
        return text


def diff_sets(old: InstructionSet, new: InstructionSet) -> SetDiff:
    return SetDiff(
        old_version=old.version,
        new_version=new.version,
        rules=tuple(_rule_changes(old, new)),
        fields=tuple(_field_changes(old, new)),
        reordered=_reordered(old, new),
    )


def _rule_changes(old: InstructionSet, new: InstructionSet) -> list[RuleChange]:
    before = {r.id: r.as_dict() for r in old.rules}
    after = {r.id: r.as_dict() for r in new.rules}
    changes: list[RuleChange] = []
    for rule in new.rules:  # head order: how the reviewer reads the new file
        if rule.id not in before:
            changes.append(RuleChange("added", rule.id, None, after[rule.id]))
            continue
        keys = _changed_keys(before[rule.id], after[rule.id])
        if keys:
            kind = "reworded" if "text" in keys else "changed"
            changes.append(RuleChange(kind, rule.id, before[rule.id], after[rule.id], keys))
    changes.extend(
        RuleChange("removed", r.id, before[r.id], None) for r in old.rules if r.id not in after
    )
    return changes


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[str, ...]:
    """The rule keys whose values differ, from deepdiff's tree view: each change's path is a
    list [key, ...], so a trace added deep inside provenance still names `provenance`."""
    from deepdiff import DeepDiff  # imported here: `pld --help` should not pay for it

    keys: set[str] = set()
    for levels in DeepDiff(dict(before), dict(after), view="tree").values():
        for level in levels:
            path = level.path(output_format="list")
            if path:
                keys.add(str(path[0]))
            else:  # deepdiff reports a whole-object replacement with an empty path
                keys.update(k for k in {*before, *after} if before.get(k) != after.get(k))
    return tuple(sorted(keys))


def _field_changes(old: InstructionSet, new: InstructionSet) -> list[FieldChange]:
    from deepdiff import DeepDiff

    a, b = old.as_dict(), new.as_dict()
    return [
        FieldChange(
            key,
            a.get(key),
            b.get(key),
            calibration_notes(a.get(key), b.get(key)) if key == "calibration" else (),
        )
        for key in SET_FIELDS
        if DeepDiff(a.get(key), b.get(key))
    ]


def calibration_notes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """A calibration change in words, from deepdiff on the two sections: added or removed,
    the method, each offset that moved, what it was refitted for, the fit's macro-F1."""
    from deepdiff import DeepDiff

    from ..calibration import describe_section

    if old is None or new is None:
        if new is not None:
            return (f"added: {describe_section(new)}",)
        return ("removed: the answers become the raw student's",)
    notes: list[str] = []
    changed: set[tuple[str, ...]] = set()
    for levels in DeepDiff(dict(old), dict(new), view="tree").values():
        for level in levels:
            path = tuple(str(p) for p in level.path(output_format="list"))
            changed.add(path[:2])
    if ("method",) in {p[:1] for p in changed}:
        notes.append(f"method {old.get('method')} -> {new.get('method')}")
    before, after = old.get("offsets") or {}, new.get("offsets") or {}
    moved = [
        f"{label} {_offset(before.get(label))} -> {_offset(after.get(label))}"
        for label in dict.fromkeys([*before, *after])
        if before.get(label) != after.get(label)
    ]
    if moved:
        notes.append("offsets " + ", ".join(moved))
    fitted_old, fitted_new = old.get("fitted") or {}, new.get("fitted") or {}
    for key, words in REFITTED.items():
        if ("fitted", key) in changed:
            if key in ("student", "split", "examples"):
                words += f" ({fitted_old.get(key, '-')} -> {fitted_new.get(key, '-')})"
            notes.append(words)
    if ("fitted", "macro_f1_after") in changed or ("fitted", "macro_f1_before") in changed:
        before, after = (
            f"{f.get('macro_f1_before', '-')} -> {f.get('macro_f1_after', '-')}"
            for f in (fitted_old, fitted_new)
        )
        notes.append(f"the fit's macro-F1 raw -> calibrated: {before} before, {after} now")
    return tuple(notes)


def _offset(value: Any) -> str:
    return "-" if value is None else f"{float(value):+.4f}"


def _reordered(old: InstructionSet, new: InstructionSet) -> bool:
    common = {r.id for r in old.rules} & {r.id for r in new.rules}
    return [r.id for r in old.rules if r.id in common] != [
        r.id for r in new.rules if r.id in common
    ]


def unified(old: str, new: str, *, old_name: str, new_name: str, context: int = 2) -> str:
    """A unified diff of two texts ('' when equal)."""
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        fromfile=old_name,
        tofile=new_name,
        lineterm="",
        n=context,
    )
    return "\n".join(lines)


def format_provenance(provenance: Mapping[str, Any], *, max_items: int = 3) -> str:
    """'method cluster, support 31, traces t-1, t-2 (+5 more)': one line for a table cell."""
    parts = []
    for key, value in provenance.items():
        if isinstance(value, Sequence) and not isinstance(value, str):
            items = [str(v) for v in value]
            shown = ", ".join(items[:max_items])
            if len(items) > max_items:
                shown += f" (+{len(items) - max_items} more)"
            parts.append(f"{key} {shown}")
        elif isinstance(value, Mapping):
            parts.append(f"{key} {{{format_provenance(value, max_items=max_items)}}}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)
