"""Proposals: the new instruction set as a reviewable diff; written only when asked.

The proposed text is computed exactly as `save_instruction_set` would write it (ruamel round
trip, untouched lines kept byte for byte), without writing. Every proposal is also saved under
`.pld/proposals/` with its metrics, decisions and costs, so nothing a run paid for is lost even
when it is not applied. `--write` applies it only if the file still holds the text the proposal
was computed from.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..calibration import Calibration
from ..calibration_section import to_yaml as calibration_yaml
from ..conditions import ConditionsTable
from ..errors import PldError
from ..instructions import InstructionSet, Rule, load_instruction_set_text
from ..instructions_save import render_instruction_text, save_instruction_set
from ..plain import to_plain
from ..project import shown
from ..review.diff import SetDiff, diff_sets
from ..textio import read_json_object
from ..yamlio import atomic_write_text
from .held_back import HeldBack

_ID = re.compile(r"^([A-Za-z][A-Za-z_.-]*?)(\d+)$")
_ID_IN_YAML = re.compile(r"^[+\- ]?\s*-?\s*id:\s*['\"]?([A-Za-z][A-Za-z0-9_.-]*)")


class IdAllocator:
    """New rule ids that were never used for this instruction set: not by a current rule, not
    by one named in a provenance, not by a rule in the file's git history. Reusing a retired id
    would make old reviews and reports point at the wrong rule."""

    def __init__(self, used: Iterable[str], *, prefix: str = "R", width: int = 3) -> None:
        self.used = set(used)
        numbered = [m for m in (_ID.match(u) for u in self.used) if m]
        if numbered:
            # follow the file's own convention (the most common prefix, its widest number)
            prefixes: dict[str, int] = {}
            for m in numbered:
                prefixes[m[1]] = prefixes.get(m[1], 0) + 1
            prefix = max(prefixes, key=lambda p: (prefixes[p], p == "R"))
            width = max(len(m[2]) for m in numbered if m[1] == prefix)
        self.prefix, self.width = prefix, width
        self.next = 1 + max((int(m[2]) for m in numbered if m[1] == prefix), default=0)

    def peek(self) -> str:
        n = self.next
        while f"{self.prefix}{n:0{self.width}d}" in self.used:
            n += 1
        return f"{self.prefix}{n:0{self.width}d}"

    def take(self) -> str:
        rid = self.peek()
        self.used.add(rid)
        self.next = int(_ID.match(rid)[2]) + 1  # type: ignore[index]
        return rid


def used_ids(iset: InstructionSet, path: Path | None) -> set[str]:
    ids = {r.id for r in iset.rules}
    for rule in iset.rules:
        for key in ("replaces", "merged", "supersedes"):
            value = rule.provenance.get(key)
            if isinstance(value, str):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(str(v) for v in value)
    if path is not None:
        ids |= _git_history_ids(path)
    return ids


def _git_history_ids(path: Path) -> set[str]:
    """Rule ids that ever appeared in the file's committed history (empty outside git)."""
    try:
        out = subprocess.run(
            ["git", "log", "--all", "-p", "--format=", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if out.returncode != 0:
        return set()
    return {m[1] for line in out.stdout.splitlines() if (m := _ID_IN_YAML.match(line))}


@dataclass
class Proposal:
    suite: str
    path: Path  # the instruction file
    base: InstructionSet
    base_text: str
    new: InstructionSet
    text: str  # the proposed file text
    changes: SetDiff
    before: dict[str, float] = field(default_factory=dict)  # dev metrics, current rules
    after: dict[str, float] = field(default_factory=dict)
    delta_interval: tuple[float, float] = (0.0, 0.0)
    confidence: float = 0.95
    rounds: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    cost_table: str = ""  # the cost ledger, formatted for the terminal
    round_lines: list[str] = field(default_factory=list)
    reported_on: str = ""  # the fold `before`/`after` come from (dev's held-back fold)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # named example words
    dropped_lines: list[str] = field(default_factory=list)
    wording: list[dict[str, Any]] = field(default_factory=list)  # the paraphrase check
    wording_lines: list[str] = field(default_factory=list)
    budget: dict[str, Any] | None = None  # the token budget and what was pruned
    pruned_lines: list[str] = field(default_factory=list)
    conditions: ConditionsTable | None = None  # zero-shot, k-shot, PLD, raw and calibrated
    held_back: HeldBack | None = None  # current and proposed set, raw and calibrated
    calibration: Calibration | None = None  # refitted for the proposed set (in `text`)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    saved_to: Path | None = None

    @property
    def changed(self) -> bool:
        return self.changes.has_changes or self.new.version != self.base.version

    def diff(self, rel: str | None = None) -> str:
        name = rel or self.path.name
        return "".join(
            difflib.unified_diff(
                self.base_text.splitlines(keepends=True),
                self.text.splitlines(keepends=True),
                fromfile=f"a/{name}",
                tofile=f"b/{name}",
            )
        )

    def summary_lines(self) -> list[str]:
        """Rule by rule, with ids (from deepdiff on the loaded sets, not from the text)."""
        if not self.changes.has_changes:
            return ["no rule changes"]
        out = [f"version {self.base.version} -> {self.new.version}: {self.changes.summary()}"]
        for change in self.changes.rules:
            rule = change.new or change.old or {}
            label = f" [{rule.get('label')}]" if rule.get("label") else ""
            out.append(f"  {change.kind:<9} {change.id}{label}: {rule.get('text', '')}")
            if change.kind == "reworded" and change.old:
                out.append(f"            was: {change.old.get('text', '')}")
            prov = (change.new or {}).get("provenance") or {}
            if prov and change.kind != "removed":
                shown = {k: prov[k] for k in ("method", "support", "round", "traces") if k in prov}
                out.append(f"            provenance: {json.dumps(shown, ensure_ascii=False)}")
        return out

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        """`root`: the project; the instruction file is then named relative to it, so that a
        proposal kept in the repository applies in any checkout."""
        return {
            "suite": self.suite,
            "path": str(self.path) if root is None else shown(self.path, root),
            "created_at": self.created_at,
            "base_version": self.base.version,
            "new_version": self.new.version,
            "base_hash": self.base.content_hash(),
            "new_hash": self.new.content_hash(),
            "summary": self.changes.summary(),
            "changes": [
                {"kind": c.kind, "id": c.id, "old": to_plain(c.old), "new": to_plain(c.new)}
                for c in self.changes.rules
            ],
            "reported_on": self.reported_on,
            "dev_before": self.before,
            "dev_after": self.after,
            "delta_macro_f1_interval": list(self.delta_interval),
            "confidence": self.confidence,
            "held_back": None if self.held_back is None else self.held_back.to_json(),
            "calibration": None if self.calibration is None else calibration_yaml(self.calibration),
            "conditions": None if self.conditions is None else self.conditions.to_json(),
            "rounds": self.rounds,
            "decisions": self.decisions,
            "dropped_as_specific": self.dropped,
            "wording_check": self.wording,
            "budget": self.budget,
            "cost": self.cost,
            "settings": self.settings,
            "notes": self.notes,
            "base_text": self.base_text,
            "proposed_text": self.text,
        }

    def save(self, folder: Path, *, root: Path | None = None) -> Path:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        path = folder / f"{self.suite}-v{self.new.version}-{stamp}.json"
        record = self.to_json(root)
        atomic_write_text(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        atomic_write_text(path.with_suffix(".yaml"), self.text)
        self.saved_to = path
        return path

    def write(self) -> str:
        """Apply the proposal; refuses (PldError) when the file changed since it was read."""
        if not self.changed:
            raise PldError("nothing to write: the proposal changes no rule", path=self.path)
        return save_instruction_set(self.new, self.path, expected_text=self.base_text)


@dataclass(frozen=True)
class SavedProposal:
    """What applying a saved proposal needs: the file, the text it was computed from, and
    the text proposed."""

    path: Path
    base_text: str
    proposed_text: str


def read_proposal(file: Path) -> SavedProposal:
    """A proposal saved by `Proposal.save` (what `pld distill --apply FILE` applies)."""
    hint = "proposals are the .json files under .pld/proposals/"
    data = read_json_object(file, what="proposal file", missing_hint=hint, hint=hint)
    bad = [k for k in ("path", "base_text", "proposed_text") if not isinstance(data.get(k), str)]
    if bad:
        raise PldError(
            f"not a proposal file: {', '.join(bad)} missing or not a string", path=file, hint=hint
        )
    return SavedProposal(Path(data["path"]), data["base_text"], data["proposed_text"])


def apply_saved_proposal(
    file: Path, expected: Path, *, root: Path | None = None
) -> tuple[InstructionSet, bool]:
    """Write a saved proposal to the instruction file it is for, which must be `expected`;
    refuses when that file no longer holds the proposal's base text. A relative path in the
    proposal is the project's (`root`). Returns the written set and whether the written text
    differs in layout from the saved proposal (the writer changed since it was computed: the
    caller should say so rather than hide it)."""
    saved = read_proposal(file)
    target = saved.path if root is None or saved.path.is_absolute() else root / saved.path
    if target.resolve() != expected.resolve():
        raise PldError(f"this proposal is for {saved.path}, not {expected}", path=file)
    new = load_instruction_set_text(saved.proposed_text, target)
    text = save_instruction_set(new, target, expected_text=saved.base_text)
    return new, text != saved.proposed_text


def build_proposal(
    suite: str,
    path: Path,
    base: InstructionSet,
    base_text: str,
    rules: Sequence[Rule],
    **extra: Any,
) -> Proposal:
    """The proposal for `rules` over `base`: version bumped when anything changed, and with
    the `calibration` in `extra` (refitted for the new rules) in place of the file's own."""
    same = [r.as_dict() for r in rules] == [r.as_dict() for r in base.rules]
    new = base.with_rules(rules, version=base.version if same else base.version + 1)
    if not same and extra.get("calibration") is not None:
        new = dataclasses.replace(new, calibration=extra["calibration"])
    text = base_text if same else render_instruction_text(new, base_text, path)
    return Proposal(
        suite=suite,
        path=path,
        base=base,
        base_text=base_text,
        new=new,
        text=text,
        changes=diff_sets(base, new),
        **extra,
    )
