"""Rendering: one sandboxed Jinja environment, StrictUndefined, for system and user prompts.

Instruction and suite files arrive in pull requests, so their templates are untrusted: the
sandbox refuses attribute access to Python internals and StrictUndefined turns a misspelt
variable into an error instead of an empty string in the prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from .errors import PldError
from .instructions import InstructionSet
from .project import resolve_inside

_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)


@functools.lru_cache(maxsize=1)
def default_system_template() -> str:
    return resources.files("pytest_pld").joinpath("templates/system.j2").read_text("utf-8")


@functools.lru_cache(maxsize=256)
def _compile(source: str, where: str) -> Template:
    try:
        return _ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise PldError(
            f"template syntax error: {exc.message}",
            path=where,
            line=exc.lineno,
            hint="see https://jinja.palletsprojects.com/templates/",
        ) from None


def render_string(
    source: str, variables: Mapping[str, Any], *, where: str, key: str | None = None
) -> str:
    """Render `source` in the sandbox; every failure becomes a PldError naming `where`."""
    template = _compile(source, where)
    try:
        return template.render(**variables)
    except SecurityError as exc:
        raise PldError(
            f"template refused by the sandbox: {exc}",
            path=where,
            key=key,
            hint="templates may use the documented variables only",
        ) from None
    except UndefinedError as exc:
        allowed = ", ".join(sorted(variables))
        raise PldError(
            f"undefined template variable: {exc.message}",
            path=where,
            key=key,
            hint=f"available variables: {allowed}",
        ) from None
    except TemplateError as exc:
        raise PldError(f"template error: {exc}", path=where, key=key) from None


def system_variables(iset: InstructionSet, labels: Sequence[str]) -> dict[str, Any]:
    where = str(iset.path or iset.name)
    output = render_string(iset.output, {"labels": list(labels)}, where=where, key="output")
    return {
        "name": iset.name,
        "version": iset.version,
        "preamble": iset.preamble,
        "labels": list(labels),
        "label_definitions": dict(iset.label_definitions),
        "rules": [r.as_dict() for r in iset.rules],
        "examples": [{"input": e.input, "label": e.label} for e in iset.examples],
        "output": output,
    }


def render_system_prompt(iset: InstructionSet, labels: Sequence[str], project_root: Path) -> str:
    """The system prompt for an instruction set: preamble, numbered rules, labels, output."""
    variables = system_variables(iset, labels)
    if iset.template:
        where_file = str(iset.path or iset.name)
        template_path = resolve_inside(project_root, iset.template, path=where_file, key="template")
        try:
            source = template_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PldError(
                f"template file {iset.template!r} not found", path=where_file, key="template"
            ) from None
        where = str(template_path)
    else:
        source, where = default_system_template(), "pytest_pld/templates/system.j2"
    return render_string(source, variables, where=where).strip() + "\n"


def render_user_message(template: str, fields: Mapping[str, Any], *, where: str) -> str:
    """The per-example user message, from the suite's `user_template` and the example's fields."""
    return render_string(template, fields, where=where, key="user_template").strip()
