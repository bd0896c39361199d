"""Argument types and options shared by the `pld` commands, defined once.

The pytest plugin reuses `positive_int` for `--pld-limit`, so a value means the same on both
command lines.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..project import find_project_root

if TYPE_CHECKING:
    from ..suite import Suite


def positive_int(text: str) -> int:
    """An integer >= 1; 0 or a negative number is a usage error, never 'all'."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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
