"""Instruction sets: versioned YAML rule lists, loaded into frozen objects and saved round-trip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import calibration_section
from .calibration import Calibration
from .errors import PldError, PldErrors, did_you_mean
from .plain import freeze, to_plain
from .problems import Problems
from .templating import check_template_field, load_template_file
from .textio import read_text
from .yamlio import (
    atomic_write_text,
    dump_yaml,
    keep_untouched_lines,
    line_of,
    load_yaml,
    load_yaml_text,
    strip_wrap_spaces,
)

RULE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")

TOP_KEYS = {
    "name": "a short name",
    "version": "an integer >= 1, bumped by every accepted change",
    "description": "free text",
    "preamble": "the text that opens the system prompt",
    "rules": "a list of rules",
    "label_definitions": "a mapping label -> definition",
    "output": "the output instruction (a Jinja string; `labels` is defined)",
    "template": "a project-relative path to a custom Jinja system template",
    "examples": "a list of worked examples ({input, label}) shown before the rules",
    "calibration": "per-label offsets on the student's label scores (pld calibrate writes it)",
}
RULE_KEYS = {"id", "text", "label", "tags", "provenance"}
REQUIRED = ("name", "version", "preamble", "output")
OUTPUT_VARIABLES = ("labels",)  # what `output` is rendered with (render.system_variables)


@dataclass(frozen=True)
class Rule:
    id: str
    text: str
    label: str | None = None
    tags: tuple[str, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.label is not None:
            out["label"] = self.label
        if self.tags:
            out["tags"] = list(self.tags)
        if self.provenance:
            out["provenance"] = to_plain(self.provenance)
        return out


@dataclass(frozen=True)
class Example:
    input: str
    label: str


@dataclass(frozen=True)
class InstructionSet:
    path: Path | None
    name: str
    version: int
    preamble: str
    output: str
    rules: tuple[Rule, ...] = ()
    description: str = ""
    label_definitions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    template: str | None = None
    examples: tuple[Example, ...] = ()
    calibration: Calibration | None = None  # not rendered: it acts on the label scores

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def as_dict(self) -> dict[str, Any]:
        """The semantic content (what the model sees and what reviewers diff), as plain data."""
        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            out["description"] = self.description
        out["preamble"] = self.preamble
        if self.label_definitions:
            out["label_definitions"] = dict(self.label_definitions)
        if self.examples:
            out["examples"] = [{"input": e.input, "label": e.label} for e in self.examples]
        out["rules"] = [r.as_dict() for r in self.rules]
        out["output"] = self.output
        if self.template:
            out["template"] = self.template
        if self.calibration is not None:
            out["calibration"] = calibration_section.to_yaml(self.calibration)
        return out

    def content_hash(self) -> str:
        """sha256 of the content, ignoring comments and formatting (stable across round trips).
        The calibration is part of it: two sets that differ only in it give other answers."""
        blob = json.dumps(self.as_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def without_rules(self) -> InstructionSet:
        """The zero-shot variant: same preamble and output, no rules and no examples."""
        return dataclasses.replace(self, rules=(), examples=())

    def with_rules(self, rules: Sequence[Rule], *, version: int | None = None) -> InstructionSet:
        return dataclasses.replace(
            self, rules=tuple(rules), version=self.version if version is None else version
        )

    def with_examples(self, examples: Sequence[Example]) -> InstructionSet:
        return dataclasses.replace(self, examples=tuple(examples))


def load_instruction_set(path: Path, *, root: Path | None = None) -> InstructionSet:
    """Load and validate one instruction file. Raises PldErrors listing every problem found.

    With the project `root`, the `template:` file it names is checked too (inside the
    project, readable, compiles)."""
    doc = load_yaml(path)
    iset = parse_instruction_set(doc, path)
    if root is not None and iset.template:
        load_template_file(root, iset.template, named_by=path, line=line_of(doc, "template"))
    return iset


def load_instruction_set_text(text: str, path: Path | str) -> InstructionSet:
    return parse_instruction_set(load_yaml_text(text, path), Path(str(path)))


def parse_instruction_set(doc: Any, path: Path) -> InstructionSet:
    problems = Problems(path)
    errors, err = problems.errors, problems.add

    if not isinstance(doc, CommentedMap):
        raise PldError(
            "an instruction set must be a YAML mapping at the top level",
            path=path,
            line=1,
            hint=f"allowed keys: {', '.join(TOP_KEYS)}",
        )
    for key in doc:
        if key not in TOP_KEYS:
            err(
                f"unknown key{did_you_mean(str(key), TOP_KEYS)}",
                doc,
                key,
                str(key),
                hint=f"allowed keys: {', '.join(TOP_KEYS)}",
            )
    for key in REQUIRED:
        if key not in doc:
            err("required key is missing", doc, None, key, hint=TOP_KEYS[key])

    def string(key: str, *, required: bool, allow_empty: bool = False) -> str:
        if key not in doc or doc[key] is None:
            return ""
        value = doc[key]
        if not isinstance(value, str):
            err(f"expected a string, got {type(value).__name__}", doc, key, key)
            return ""
        if required and not allow_empty and not value.strip():
            err("must not be empty", doc, key, key)
        return str(value)

    name = string("name", required=True)
    preamble = string("preamble", required=True)
    output = string("output", required=True)
    if output:  # rendered with the suite's labels; a broken template must fail here, not later
        problem = check_template_field(doc, "output", path, variables=OUTPUT_VARIABLES)
        if problem:
            errors.append(problem)
    description = string("description", required=False)
    template = string("template", required=False) or None

    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        if "version" in doc:
            err(f"expected an integer >= 1, got {version!r}", doc, "version", "version")
        version = 1

    label_definitions: dict[str, str] = {}
    defs = doc.get("label_definitions")
    if defs is not None:
        if not isinstance(defs, Mapping):
            err(
                "expected a mapping label -> definition",
                doc,
                "label_definitions",
                "label_definitions",
            )
        else:
            for label, text in defs.items():
                if not isinstance(text, str) or not text.strip():
                    err("expected a non-empty string", defs, label, f"label_definitions.{label}")
                else:
                    label_definitions[str(label)] = str(text)

    examples: list[Example] = []
    raw_examples = doc.get("examples")
    if raw_examples is not None:
        if not isinstance(raw_examples, Sequence) or isinstance(raw_examples, str):
            err("expected a list of {input, label}", doc, "examples", "examples")
        else:
            for i, ex in enumerate(raw_examples):
                where = f"examples[{i}]"
                if not isinstance(ex, Mapping) or set(ex) != {"input", "label"}:
                    err(
                        "expected a mapping with exactly the keys input and label",
                        raw_examples,
                        i,
                        where,
                    )
                    continue
                if not all(isinstance(ex[k], str) and ex[k].strip() for k in ("input", "label")):
                    err("input and label must be non-empty strings", raw_examples, i, where)
                    continue
                examples.append(Example(str(ex["input"]), str(ex["label"])))

    rules: list[Rule] = []
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, CommentedSeq) and not isinstance(raw_rules, list):
        err("expected a list of rules", doc, "rules", "rules")
        raw_rules = []
    seen: dict[str, int | None] = {}
    for i, raw in enumerate(raw_rules):
        where = f"rules[{i}]"
        if not isinstance(raw, Mapping):
            err("expected a mapping with id and text", raw_rules, i, where)
            continue
        for key in raw:
            if key not in RULE_KEYS:
                err(
                    f"unknown key{did_you_mean(str(key), RULE_KEYS)}",
                    raw,
                    key,
                    f"{where}.{key}",
                    hint=f"allowed rule keys: {', '.join(sorted(RULE_KEYS))}",
                )
        rid = raw.get("id")
        if not isinstance(rid, str) or not RULE_ID.match(rid):
            err(f"rule id must match {RULE_ID.pattern}, got {rid!r}", raw, "id", f"{where}.id")
            rid = None
        elif rid in seen:
            err(
                f"duplicate rule id {rid!r} (first defined on line {seen[rid]})",
                raw,
                "id",
                f"{where}.id",
                hint="rule ids are stable references; give the new rule a new id",
            )
        else:
            seen[rid] = line_of(raw, "id")
        text = raw.get("text")
        if not isinstance(text, str):
            err(
                f"expected a string, got {type(text).__name__}",
                raw,
                "text" if "text" in raw else None,
                f"{where}.text",
            )
            text = None
        elif not text.strip():
            err("rule text must not be empty", raw, "text", f"{where}.text")
            text = None
        label = raw.get("label")
        if label is not None and not isinstance(label, str):
            err("expected a string", raw, "label", f"{where}.label")
            label = None
        tags = raw.get("tags", [])
        if not isinstance(tags, (list, CommentedSeq)) or not all(isinstance(t, str) for t in tags):
            err("expected a list of strings", raw, "tags", f"{where}.tags")
            tags = []
        prov = raw.get("provenance", {})
        if not isinstance(prov, Mapping):
            err("expected a mapping", raw, "provenance", f"{where}.provenance")
            prov = {}
        if rid and text:
            rules.append(
                Rule(
                    id=rid,
                    text=str(text).strip(),
                    label=str(label) if label is not None else None,
                    tags=tuple(str(t) for t in tags),
                    provenance=freeze(prov),
                )
            )
    calibration = calibration_section.from_yaml(doc, problems)
    if errors:
        raise PldErrors(errors)
    return InstructionSet(
        path=path,
        name=name,
        version=int(version),
        preamble=preamble,
        output=output,
        rules=tuple(rules),
        description=description,
        label_definitions=MappingProxyType(label_definitions),
        template=template,
        examples=tuple(examples),
        calibration=calibration,
    )


# --- saving -------------------------------------------------------------------------------------


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
