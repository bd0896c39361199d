"""Checks of an instruction set against what uses it: the label names it mentions against the
labels of the suites that use it, and a custom template against the sections it has.

Loading an instruction set checks its own shape (`instructions`); these checks need a suite's
labels or the template file, and they guard against content that would otherwise be silently
ignored: a definition under a misspelt label never reaches the prompt (the default template
shows definitions by the suite's labels), a rule or worked example with a label the suite does
not have misleads the model and `pld distill`, and a template that never mentions `rules`
drops every rule. `render.render_system_prompt` runs them on every render, `pld validate` on
every instruction file.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from .errors import PldError, PldErrors, did_you_mean
from .instructions import InstructionSet
from .yamlio import line_of, load_yaml

#: the system template's variables that carry an instruction set's content (what
#: `render.system_variables` passes besides name, version and labels)
SECTIONS = ("preamble", "label_definitions", "rules", "examples", "output")


def check_instruction_set(
    iset: InstructionSet, labels: Collection[str], root: Path, template_source: str | None = None
) -> None:
    """Raise PldErrors for label names no using suite has and, given the custom template's
    source, for sections the template does not show. `labels`: the labels it is rendered with
    (empty: those of the suites in the project that use it)."""
    errors = label_name_errors(iset, labels, root)
    if template_source is not None:
        errors += template_section_errors(iset, template_source)
    if errors:
        raise PldErrors(errors)


def label_name_errors(iset: InstructionSet, labels: Collection[str], root: Path) -> list[PldError]:
    """Label names (definition keys, rule and worked-example labels) that neither `labels` nor
    any suite using this set has. An instruction set may be shared by suites with different
    label sets, so a name another user suite has is not an error."""
    unknown = [(place, name) for place, name in _label_names(iset) if name not in labels]
    if not unknown:
        return []
    users = suites_using(iset, root)
    allowed = set(labels).union(*users.values()) if users else set(labels)
    if not allowed:  # no suite uses it: nothing to check the names against
        return []
    doc = _document(iset)
    named_by = ", ".join(users) or "the suite"
    errors = []
    for (section, index, key), name in unknown:
        if name in allowed:
            continue
        node = doc.get(section) if doc is not None else None
        if section == "label_definitions":
            line, where = line_of(node, name), f"label_definitions.{name}"
            what = f"a definition of {name!r}, which"
        else:
            item = node[index] if isinstance(node, list) and index < len(node) else None
            line, where = line_of(item, key), f"{section}[{index}].label"
            what = f"label {name!r}, which"
        errors.append(
            PldError(
                f"{what} is not a label of the suites that use this set"
                f"{did_you_mean(name, allowed)}",
                path=iset.path,
                line=line,
                key=where,
                hint=f"labels of {named_by}: {', '.join(sorted(allowed))}",
            )
        )
    return errors


def _label_names(iset: InstructionSet) -> Iterator[tuple[tuple[str, int, str], str]]:
    """((section, index, key), label name) for every label the set names."""
    for name in iset.label_definitions:
        yield ("label_definitions", 0, name), name
    for i, rule in enumerate(iset.rules):
        if rule.label is not None:
            yield ("rules", i, "label"), rule.label
    for i, example in enumerate(iset.examples):
        yield ("examples", i, "label"), example.label


def suites_using(iset: InstructionSet, root: Path) -> dict[str, tuple[str, ...]]:
    """The project's suites (`suites/*.yaml`) that name this file as their instruction set:
    'suites/NAME.yaml' -> labels. Read as plain YAML, not loaded: a suite with problems of its
    own still says which labels it means (`pld validate` reports its problems on their own)."""
    if iset.path is None:
        return {}
    target = Path(iset.path).resolve()
    out: dict[str, tuple[str, ...]] = {}
    for path in sorted((root / "suites").glob("*.yaml")):
        try:
            doc = load_yaml(path)
        except PldError:
            continue
        named, labels = (
            (doc.get("instructions"), doc.get("labels")) if isinstance(doc, dict) else (None, None)
        )
        if (
            isinstance(named, str)
            and isinstance(labels, list)
            and (root / named).resolve() == target
        ):
            out[f"suites/{path.name}"] = tuple(str(label) for label in labels)
    return out


def template_section_errors(iset: InstructionSet, source: str) -> list[PldError]:
    """A custom template that does not show a section the set has (rules, say) would drop it
    from every prompt without a word."""
    from jinja2 import TemplateSyntaxError, meta

    from .templating import ENV

    try:
        used = meta.find_undeclared_variables(ENV.parse(source))
    except TemplateSyntaxError:
        return []  # loading the template reports it
    content: dict[str, Any] = {
        "preamble": iset.preamble.strip(),
        "label_definitions": iset.label_definitions,
        "rules": iset.rules,
        "examples": iset.examples,
        "output": iset.output.strip(),
    }
    missing = [s for s in SECTIONS if content[s] and s not in used]
    if not missing:
        return []
    doc = _document(iset)
    return [
        PldError(
            f"the template {iset.template} does not use {' and '.join(missing)}, so "
            f"{'it' if len(missing) == 1 else 'they'} would never reach the prompt",
            path=iset.path,
            line=line_of(doc, "template") if doc is not None else None,
            key="template",
            hint=f"show {' and '.join(f'{{{{ {s} }}}}' for s in missing)} in the template "
            f"(variables: {', '.join(SECTIONS)}, labels), or remove what it does not show",
        )
    ]


def _document(iset: InstructionSet) -> Any:
    """The set's YAML document (for line numbers), or None for a set not read from a file."""
    if iset.path is None or not Path(iset.path).is_file():
        return None
    try:
        return load_yaml(Path(iset.path))
    except PldError:
        return None
