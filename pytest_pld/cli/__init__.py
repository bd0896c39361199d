"""The `pld` command: one thin module per command over the libraries.

Each module in COMMAND_MODULES defines `register(subparsers)` and the `cmd_*` functions that
parse nothing themselves: they call a library function and print its result. Libraries never
parse arguments or print, and never import this package. Modules are named, not imported, here
so that `pld --help` does not import torch or openai.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PldError

COMMAND_MODULES = (
    "init",
    "validate",
    "run",
    "merge",
    "review",
    "compare",
    "ablate",
    "conditions",
    "calibrate",
    "snapshot",
    "distill",
    "report",
    "models",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pld",
        description="Prompt-Level Distillation as code: instruction sets, suites, runs, "
        "distillation and review.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-pld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
