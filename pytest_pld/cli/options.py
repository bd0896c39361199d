"""Argument types, options and the opening (`open_suite`, `shows_config`) shared by the `pld`
commands, defined once.

The pytest plugin reuses `positive_int` for `--pld-limit`, so a value means the same on both
command lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..project import find_project_root

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..instructions import InstructionSet
    from ..roles import ModelRoles
    from ..shards import Shard
    from ..suite import Suite


def _int_at_least(text: str, low: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1; 0 or a negative number is a usage error, never 'all'."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a seed)."""
    return _int_at_least(text, 0, "an integer >= 0")


def shard_type(text: str) -> Shard:
    """--shard / --pld-shard: I/N with 1 <= I <= N."""
    from ..shards import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def number_in(
    low: float, high: float, *, low_open: bool, high_open: bool, what: str = ""
) -> Callable[[str], float]:
    """An argparse type for a float within (or [) low, high ) (or ])."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    suffix = f" ({what})" if what else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            raise argparse.ArgumentTypeError(
                f"must be in {left}{low:g}, {high:g}{right}{suffix}, got {value:g}"
            )
        return value

    return parse


def add_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="project root (default: the nearest folder above the current one with suites/ "
        "or pyproject.toml)",
    )


def add_data_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="read-only folder where a suite's data:PATH split paths resolve (default: "
        "$PLD_DATA_ROOT; other paths stay inside the project)",
    )


def data_root(args: argparse.Namespace) -> Path | None:
    """--data-root, else $PLD_DATA_ROOT, else None; a folder that does not exist is an error."""
    from ..project import data_root as resolve

    return resolve(getattr(args, "data_root", None), option="--data-root")


def add_suite_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", metavar="SUITE", help="suite name (a file in suites/)")


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, metavar="M", help="provider:model, overriding the suite's student"
    )


def add_limit_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="a deterministic sample of N examples (default: all)",
    )


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "md", "json"),
        default="text",
        help="output format (default: text)",
    )


def add_resamples_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--resamples",
        type=positive_int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the intervals (default: 1000)",
    )


def project_root(args: argparse.Namespace) -> Path:
    return (args.root or find_project_root()).resolve()


def load_suite_by_name(root: Path, name: str, args: argparse.Namespace | None = None) -> Suite:
    """The suite called `name`; with the command's `args`, its --data-root applies."""
    from ..suite import load_suite, resolve_suite_names

    where = data_root(args) if args is not None else None
    return load_suite(resolve_suite_names(root, name)[0], root, data_root=where)


def instructions_option(root: Path, path: Path | None) -> InstructionSet | None:
    """The instruction set an `--instructions FILE` names (inside the project), or None."""
    if path is None:
        return None
    from ..instructions import load_instruction_set
    from ..project import resolve_inside

    return load_instruction_set(resolve_inside(root, str(path), key="--instructions"))


@dataclass(frozen=True)
class StudentCommand:
    """What a command that evaluates one suite with its student starts from (`open_suite`)."""

    root: Path
    suite: Suite
    roles: ModelRoles
    model: str  # the student: --model, else the suite's

    def student_factory(self) -> Callable[[str], Backend]:
        """Makes the student's backend with its role's endpoint and options."""
        return self.roles["student"].factory(self.model)


def open_suite(args: argparse.Namespace) -> StudentCommand | None:
    """The opening of every command that evaluates a suite with its student (run, calibrate,
    conditions, ablate): the project root, the suite (with --data-root), the model roles and
    the student. None after --show-config printed the student's configuration: the command
    then exits 0 without calling a model."""
    root = project_root(args)
    suite = load_suite_by_name(root, args.suite, args)
    roles = roles_from_args(args, root)
    model = args.model or suite.student
    if shows_config(args, roles, {"student": model}):
        return None
    return StudentCommand(root, suite, roles, model)


def shows_config(args: argparse.Namespace, roles: ModelRoles, models: Mapping[str, str]) -> bool:
    """With --show-config, print the resolved endpoint and options of each role's model in
    `models` and say so (True: the command exits 0 there)."""
    if not args.show_config:
        return False
    print("\n".join(roles.lines(models)))
    return True


def add_role_options(parser: argparse.ArgumentParser, roles: tuple[str, ...]) -> None:
    """--ROLE-base-url, --ROLE-api-key, --ROLE-option KEY=VALUE for each role, and
    --show-config. URLs and keys otherwise come from the environment (PLD_ROLE_BASE_URL,
    PLD_ROLE_API_KEY, else OPENAI_BASE_URL / OPENAI_API_KEY)."""
    from ..roles import allowed_options

    group = parser.add_argument_group(
        "model endpoints",
        "Each role's URL and key come from these flags or the environment: "
        "PLD_<ROLE>_BASE_URL and PLD_<ROLE>_API_KEY, else OPENAI_BASE_URL and "
        "OPENAI_API_KEY (that key is sent only to that URL's host). Options also come from "
        "PLD_<ROLE>_<KEY> and [tool.pld.<role>] in pyproject.toml (never URLs or keys).",
    )
    for role in roles:
        up = role.upper()
        group.add_argument(
            f"--{role}-base-url",
            default=None,
            metavar="URL",
            help=f"the {role}'s OpenAI-compatible endpoint (default: $PLD_{up}_BASE_URL, "
            "else $OPENAI_BASE_URL)",
        )
        group.add_argument(
            f"--{role}-api-key",
            default=None,
            metavar="KEY",
            help=f"the {role}'s API key; prefer $PLD_{up}_API_KEY (a flag is visible in the "
            "process list and shell history)",
        )
        group.add_argument(
            f"--{role}-option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"repeatable; keys: {', '.join(allowed_options(role))}",
        )
    group.add_argument(
        "--show-config",
        action="store_true",
        help="print every role's resolved endpoint and options with their sources (keys "
        "masked) and exit",
    )


def roles_from_args(args: argparse.Namespace, root: Path) -> ModelRoles:
    """The roles as this command line, the environment and pyproject.toml resolve them."""
    from ..roles import ROLES, RoleFlags, resolve_roles

    flags = {
        role: RoleFlags(
            base_url=getattr(args, f"{role}_base_url", None),
            api_key=getattr(args, f"{role}_api_key", None),
            options=tuple(getattr(args, f"{role}_option", None) or ()),
        )
        for role in ROLES
    }
    return resolve_roles(root, flags)
