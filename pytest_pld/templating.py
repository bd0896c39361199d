"""The one sandboxed Jinja environment, and template checks that name file, line and key.

Instruction and suite files arrive in pull requests, so their templates are untrusted: the
sandbox refuses attribute access to Python internals and StrictUndefined turns a misspelt
variable into an error instead of an empty string in the prompt. Templates are also compiled
when the file that holds or names them is loaded, so that `pld validate` reports a syntax
error at its line before anything is rendered. Rendering itself lives in `render`.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from .errors import PldError
from .project import resolve_inside
from .textio import read_text
from .yamlio import line_in_value, line_of

ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
JINJA_HINT = "see https://jinja.palletsprojects.com/templates/"
_TOO_DEEP = "template nests too deeply to compile"
_SIMPLIFY = "split the expression into smaller ones (`{% set %}` helps)"


@functools.lru_cache(maxsize=256)
def compile_template(source: str, where: str, key: str | None = None) -> Template:
    """The compiled template; a syntax error names `where` and the template's line."""
    try:
        return ENV.from_string(source)
    except TemplateSyntaxError as exc:
        raise PldError(
            f"template syntax error: {exc.message}",
            path=where,
            line=exc.lineno,
            key=key,
            hint=JINJA_HINT,
        ) from None
    except RecursionError:
        raise PldError(_TOO_DEEP, path=where, key=key, hint=_SIMPLIFY) from None


def check_template_field(
    doc: Any, key: str, path: Path, *, variables: Collection[str] | None = None
) -> PldError | None:
    """The first problem of the Jinja string `doc[key]` of a loaded YAML file, or None: a
    syntax error, or (given the `variables` it will be rendered with) an undefined variable.
    The error names the file's line, not the template's, where the YAML style allows it."""
    source = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(source, str):
        return None
    try:
        tree = ENV.parse(source)
        ENV.compile(tree)  # unknown filters and tests are found when compiling, not parsing
    except TemplateSyntaxError as exc:
        line, inner = _file_line(doc, key, exc.lineno or 1)
        return PldError(
            f"template syntax error{inner}: {exc.message}",
            path=path,
            line=line,
            key=key,
            hint=JINJA_HINT,
        )
    except RecursionError:
        return PldError(_TOO_DEEP, path=path, line=line_of(doc, key), key=key, hint=_SIMPLIFY)
    if variables is None:
        return None
    unknown = meta.find_undeclared_variables(tree) - set(variables) - set(ENV.globals)
    if not unknown:
        return None
    first = min(
        (n for n in tree.find_all(nodes.Name) if n.name in unknown),
        key=lambda n: n.lineno,
    )
    line, inner = _file_line(doc, key, first.lineno)
    return PldError(
        f"undefined template variable {first.name!r}{inner}",
        path=path,
        line=line,
        key=key,
        hint=f"available variables: {', '.join(sorted(variables))}",
    )


def _file_line(doc: Any, key: str, template_line: int) -> tuple[int | None, str]:
    """(the file's line for a line of the template in `doc[key]`, a note when that line is
    only where the template starts)."""
    line, exact = line_in_value(doc, key, template_line)
    return line, "" if exact else f" (line {template_line} of the template)"


def load_template_file(
    root: Path, relative: str, *, named_by: Path | str, line: int | None = None
) -> tuple[Path, Template]:
    """The project-relative template file that `named_by` names under `template:`, compiled.

    A path outside the project or a missing file is an error at `named_by`'s `template:` key;
    unreadable text or a syntax error is an error in the template file itself."""
    path = resolve_inside(root, relative, path=named_by, line=line, key="template")
    if not path.exists():
        raise PldError(
            f"template file {relative!r} not found",
            path=named_by,
            line=line,
            key="template",
            hint="the path is relative to the project root; fix it or add the file",
        )
    source = read_text(path, what="template file")
    return path, compile_template(source, str(path))
