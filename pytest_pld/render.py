"""Rendering: system and user prompts, through the one sandboxed Jinja environment.

Instruction and suite files arrive in pull requests, so their templates are untrusted: the
sandbox (`templating`) refuses attribute access to Python internals and StrictUndefined turns
a misspelt variable into an error instead of an empty string in the prompt.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateError, UndefinedError
from jinja2.sandbox import SecurityError

from .errors import PldError
from .instructions import InstructionSet
from .templating import compile_template, load_template_file
from .textio import read_text


@functools.lru_cache(maxsize=1)
def default_system_template() -> str:
    return resources.files("pytest_pld").joinpath("templates/system.j2").read_text("utf-8")


def render_string(
    source: str, variables: Mapping[str, Any], *, where: str, key: str | None = None
) -> str:
    """Render `source` in the sandbox; every failure becomes a PldError naming `where`."""
    return render_template(compile_template(source, where, key), variables, where=where, key=key)


def render_template(
    template: Template, variables: Mapping[str, Any], *, where: str, key: str | None = None
) -> str:
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
    except RecursionError:  # a macro that calls itself
        raise PldError(
            "template recursion too deep", path=where, key=key, hint="check recursive macros"
        ) from None


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
    """The system prompt for an instruction set: preamble, numbered rules, labels, output.
    Content that would not reach the prompt (a definition of a label the suites do not have, a
    section a custom template does not show) is an error (`instruction_checks`)."""
    from .instruction_checks import check_instruction_set

    variables = system_variables(iset, labels)
    if iset.template:
        named_by = str(iset.path or iset.name)
        path, template = load_template_file(project_root, iset.template, named_by=named_by)
        source = read_text(path, what="template file")
        check_instruction_set(iset, labels, project_root, source)
        where = str(path)
    else:
        check_instruction_set(iset, labels, project_root)
        where = "pytest_pld/templates/system.j2"
        template = compile_template(default_system_template(), where)
    return render_template(template, variables, where=where).strip() + "\n"


def render_user_message(template: str, fields: Mapping[str, Any], *, where: str) -> str:
    """The per-example user message, from the suite's `user_template` and the example's fields."""
    return render_string(template, fields, where=where, key="user_template").strip()
