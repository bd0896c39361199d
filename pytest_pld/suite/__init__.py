"""Suites: a benchmark as configuration - dataset, splits, labels, prompt, student, gates.

Import from here; the modules behind it:
- `model`: the frozen dataclasses (Suite, SplitSpec, Bound, RegressionGate) and reading a
  split's examples;
- `load`: finding suite files and `load_suite`, which validates a file section by section;
- `splits` and `gate_specs`: the `splits:` and `gates:` sections, the two with rules of their own;
- `pytest_pld.problems` (shared with instruction sets): the collector that lets `load_suite`
  report every problem at once.
"""

from __future__ import annotations

from .data_checks import example_fields
from .gate_specs import BOUND_FORMS, FAMILY_CORRECTIONS, REGRESSION_KEYS, parse_bound
from .load import TOP_KEYS, find_suites, load_suite, resolve_suite_names
from .model import Bound, RegressionGate, SplitSpec, Suite
from .splits import SPLIT_FORMS, SPLIT_KEYS, SPLIT_NAME, SPLITS

__all__ = [
    "BOUND_FORMS",
    "FAMILY_CORRECTIONS",
    "REGRESSION_KEYS",
    "SPLITS",
    "SPLIT_FORMS",
    "SPLIT_KEYS",
    "SPLIT_NAME",
    "TOP_KEYS",
    "Bound",
    "RegressionGate",
    "SplitSpec",
    "Suite",
    "example_fields",
    "find_suites",
    "load_suite",
    "parse_bound",
    "resolve_suite_names",
]
