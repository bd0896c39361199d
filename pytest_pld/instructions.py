"""Instruction sets: versioned YAML rule lists, loaded into frozen objects and validated section
by section (top-level keys, texts, version, label definitions, worked examples, rules); saving
them round-trip is `instructions_save`."""

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
from .yamlio import line_of, load_yaml, load_yaml_text

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
class WorkedExample:
    """A worked example the system prompt shows before the rules (`examples:`); a dataset's
    example to classify is `datasets.Example`."""

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
    examples: tuple[WorkedExample, ...] = ()
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

    # The variants below render another prompt, for which this set's calibration was not
    # fitted (it would be stale, and the runner refuses a stale one): they drop it. A variant
    # that renders the same prompt keeps it.

    def without_rules(self) -> InstructionSet:
        """The zero-shot variant: same preamble and output, no rules, no examples and no
        calibration (the zero-shot prompt needs its own, fitted for it)."""
        return dataclasses.replace(self, rules=(), examples=(), calibration=None)

    def with_rules(self, rules: Sequence[Rule], *, version: int | None = None) -> InstructionSet:
        """These rules instead; the calibration is dropped unless the rules are the same."""
        rules = tuple(rules)
        return dataclasses.replace(
            self,
            rules=rules,
            version=self.version if version is None else version,
            calibration=self.calibration if rules == self.rules else None,
        )

    def with_examples(self, examples: Sequence[WorkedExample]) -> InstructionSet:
        """These worked examples instead; the calibration is dropped unless they are the same."""
        examples = tuple(examples)
        return dataclasses.replace(
            self,
            examples=examples,
            calibration=self.calibration if examples == self.examples else None,
        )


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
    """Validate a loaded instruction document section by section (top-level keys, texts,
    version, label definitions, worked examples, rules), like `suite.load_suite` does for
    suites; raises PldErrors listing every problem found, each with its line and key."""
    if not isinstance(doc, CommentedMap):
        raise PldError(
            "an instruction set must be a YAML mapping at the top level",
            path=path,
            line=1,
            hint=f"allowed keys: {', '.join(TOP_KEYS)}",
        )
    problems = Problems(path)
    # the sections in the order their problems are listed
    problems.check_top_keys(doc, TOP_KEYS, REQUIRED)
    texts = _parse_texts(doc, problems)
    version = _parse_version(doc, problems)
    label_definitions = _parse_label_definitions(doc, problems)
    examples = _parse_examples(doc, problems)
    rules = _parse_rules(doc, problems)
    calibration = calibration_section.from_yaml(doc, problems)
    if problems.errors:
        raise PldErrors(problems.errors)
    return InstructionSet(
        path=path,
        name=texts.name,
        version=version,
        preamble=texts.preamble,
        output=texts.output,
        rules=tuple(rules),
        description=texts.description,
        label_definitions=MappingProxyType(label_definitions),
        template=texts.template,
        examples=tuple(examples),
        calibration=calibration,
    )


@dataclass(frozen=True)
class _Texts:
    """The set's free-text keys ("" where absent or malformed; template None)."""

    name: str
    preamble: str
    output: str
    description: str
    template: str | None


def _parse_texts(doc: CommentedMap, problems: Problems) -> _Texts:
    def string(key: str, *, required: bool) -> str:
        if key not in doc or doc[key] is None:
            return ""
        value = doc[key]
        if not isinstance(value, str):
            problems.add(f"expected a string, got {type(value).__name__}", doc, key, key)
            return ""
        if required and not value.strip():
            problems.add("must not be empty", doc, key, key)
        return str(value)

    name = string("name", required=True)
    preamble = string("preamble", required=True)
    output = string("output", required=True)
    if output:  # rendered with the suite's labels; a broken template must fail here, not later
        problem = check_template_field(doc, "output", problems.path, variables=OUTPUT_VARIABLES)
        if problem:
            problems.append(problem)
    description = string("description", required=False)
    template = string("template", required=False) or None
    return _Texts(name, preamble, output, description, template)


def _parse_version(doc: CommentedMap, problems: Problems) -> int:
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        if "version" in doc:
            problems.add(f"expected an integer >= 1, got {version!r}", doc, "version", "version")
        return 1
    return int(version)


def _parse_label_definitions(doc: CommentedMap, problems: Problems) -> dict[str, str]:
    label_definitions: dict[str, str] = {}
    defs = doc.get("label_definitions")
    if defs is None:
        return label_definitions
    if not isinstance(defs, Mapping):
        problems.add(
            "expected a mapping label -> definition",
            doc,
            "label_definitions",
            "label_definitions",
        )
        return label_definitions
    for label, text in defs.items():
        if not isinstance(text, str) or not text.strip():
            problems.add("expected a non-empty string", defs, label, f"label_definitions.{label}")
        else:
            label_definitions[str(label)] = str(text)
    return label_definitions


def _parse_examples(doc: CommentedMap, problems: Problems) -> list[WorkedExample]:
    examples: list[WorkedExample] = []
    raw_examples = doc.get("examples")
    if raw_examples is None:
        return examples
    if not isinstance(raw_examples, Sequence) or isinstance(raw_examples, str):
        problems.add("expected a list of {input, label}", doc, "examples", "examples")
        return examples
    for i, ex in enumerate(raw_examples):
        where = f"examples[{i}]"
        if not isinstance(ex, Mapping) or set(ex) != {"input", "label"}:
            problems.add(
                "expected a mapping with exactly the keys input and label",
                raw_examples,
                i,
                where,
            )
            continue
        if not all(isinstance(ex[k], str) and ex[k].strip() for k in ("input", "label")):
            problems.add("input and label must be non-empty strings", raw_examples, i, where)
            continue
        examples.append(WorkedExample(str(ex["input"]), str(ex["label"])))
    return examples


def _parse_rules(doc: CommentedMap, problems: Problems) -> list[Rule]:
    raw_rules = doc.get("rules")
    if raw_rules is None:
        raw_rules = []
    if not isinstance(raw_rules, CommentedSeq) and not isinstance(raw_rules, list):
        problems.add("expected a list of rules", doc, "rules", "rules")
        raw_rules = []
    rules: list[Rule] = []
    seen: dict[str, int | None] = {}  # rule id -> the line that defined it first
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, Mapping):
            problems.add("expected a mapping with id and text", raw_rules, i, f"rules[{i}]")
            continue
        rule = _parse_rule(raw, f"rules[{i}]", seen, problems)
        if rule is not None:
            rules.append(rule)
    return rules


def _parse_rule(
    raw: Mapping[str, Any], where: str, seen: dict[str, int | None], problems: Problems
) -> Rule | None:
    """One rule, or None when its id or text is unusable (every problem is reported)."""
    err = problems.add
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
    if not (rid and text):
        return None
    return Rule(
        id=rid,
        text=str(text).strip(),
        label=str(label) if label is not None else None,
        tags=tuple(str(t) for t in tags),
        provenance=freeze(prov),
    )
