"""The `calibration:` section of an instruction file: read (validated with file, line and key,
unknown keys rejected) into a `calibration.Calibration`, and written back into a round-trip
document in place, so that comments inside the section and its key order survive a refit.

The section, as `pld calibrate SUITE --write` writes it:

    calibration:
      method: prior-shift
      offsets:                  # added to each label's log-probability
        "gender": 0.0           # labels quoted, as `pld init` writes them
        "race": 2.4
      fitted:
        student: local:qwen2.5-coder-0.5b-instruct
        system_prompt_sha256: <64 hex digits>
        backend_sha256: <64 hex digits>   # the student's scoring identity (weights, dtype)
        split: dev              # the labelled examples: fitted on (prior-shift), or only
        examples: 310           # measured on (contextual, which fits on `inputs`)
        ids_sha256: <64 hex digits, of their sorted ids one a line>
        macro_f1_before: 0.334  # on those examples: in-sample for prior-shift
        macro_f1_after: 0.645
        macro_f1_gain_interval: [0.25, 0.36]  # paired 95% bootstrap of after - before
        inputs: ['N/A', '', '[MASK]']         # contextual only

Whether the offsets name the labels of the suites that use the set is checked where a suite
meets its set (`calibration.suite_problems`, from `pld validate`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from .calibration import CONTEXTUAL, METHODS, Calibration, refit_command
from .errors import did_you_mean
from .plain import to_plain
from .yamlio import line_of

if TYPE_CHECKING:
    from .problems import Problems

SECTION_KEYS = {
    "method": f"one of {', '.join(METHODS)}",
    "offsets": "a mapping label -> number, added to that label's log-probability",
    "fitted": "where the offsets come from (student, system_prompt_sha256, split, ...)",
}
FITTED_KEYS = {
    "student": "the student the offsets were fitted for (provider:model)",
    "system_prompt_sha256": "sha256 of the rendered system prompt they were fitted with",
    "backend_sha256": "sha256 of the student backend's scoring identity (weights, dtype, "
    "scoring method); optional: a section without it is not checked for it",
    "split": "the split of the labelled examples",
    "examples": "how many labelled examples",
    "ids_sha256": "sha256 of their sorted ids, one a line",
    "macro_f1_before": "their macro-F1 with the raw scores",
    "macro_f1_after": "their macro-F1 with the offsets",
    "macro_f1_gain_interval": "[low, high]: paired 95% bootstrap interval of after - before",
    "inputs": "contextual only: the content-free inputs the offsets come from",
}
FITTED_REQUIRED = ("student", "system_prompt_sha256", "split", "examples", "ids_sha256")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def to_yaml(cal: Calibration) -> dict[str, Any]:
    """The section as plain data, in the order the file shows it."""
    info: dict[str, Any] = {
        "student": cal.student,
        "system_prompt_sha256": cal.system_prompt_sha256,
        **({"backend_sha256": cal.backend_sha256} if cal.backend_sha256 else {}),
        "split": cal.split,
        "examples": cal.examples,
        "ids_sha256": cal.ids_sha256,
    }
    if cal.macro_f1_before is not None:
        info["macro_f1_before"] = cal.macro_f1_before
    if cal.macro_f1_after is not None:
        info["macro_f1_after"] = cal.macro_f1_after
    if cal.gain_interval is not None:
        info["macro_f1_gain_interval"] = list(cal.gain_interval)
    if cal.inputs:
        info["inputs"] = list(cal.inputs)
    return {"method": cal.method, "offsets": dict(cal.offsets), "fitted": info}


def write_section(doc: CommentedMap, cal: Calibration | None) -> None:
    """Make the round-trip document's `calibration:` say `cal` (None: remove it), editing the
    existing nodes in place so that comments inside the section and its key order survive."""
    if cal is None:
        doc.pop("calibration", None)
        return
    node = doc.get("calibration")
    if not isinstance(node, CommentedMap):
        node = CommentedMap()
        doc["calibration"] = node
    _update(node, to_yaml(cal))
    _quote_keys(node["offsets"])


def _quote_keys(node: CommentedMap) -> None:
    """Double-quote the labels that key the offsets, as `pld init` quotes labels: a YAML 1.1
    reader (PyYAML) reads a plain `No:` or `yes:` as a boolean and `1:` as a number, so only a
    quoted label reads back as the same string everywhere. A plain key (a new label, or one
    an earlier version wrote) is re-keyed in place, keeping its position and its comment."""
    for position, key in enumerate(list(node)):
        if not isinstance(key, str) or isinstance(
            key, (DoubleQuotedScalarString, SingleQuotedScalarString)
        ):
            continue  # quoted already (ruamel keeps a loaded key's quotes)
        quoted = DoubleQuotedScalarString(key)
        comment = node.ca.items.pop(key, None)
        node.insert(position, quoted, node.pop(key))
        if comment is not None:
            node.ca.items[quoted] = comment


def _update(node: CommentedMap, plain: Mapping[str, Any]) -> None:
    for key in [k for k in node if k not in plain]:
        del node[key]
    for key, value in plain.items():
        old = node.get(key)
        if isinstance(value, Mapping) and isinstance(old, CommentedMap):
            _update(old, value)
        elif key not in node or to_plain(old) != value:
            node[key] = _node(value)


def _node(value: Any) -> Any:
    if isinstance(value, Mapping):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _node(v)
        return out
    if isinstance(value, list):  # short lists (an interval, the inputs) on one line
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()
        return seq
    return value


def from_yaml(doc: Mapping[str, Any], problems: Problems) -> Calibration | None:
    """The `calibration:` section of a loaded instruction file, or None when it has none;
    every problem goes to `problems` (file, line and key)."""
    node = doc.get("calibration")
    if node is None:
        return None
    err = problems.add
    if not isinstance(node, Mapping):
        err(
            "expected a mapping with method, offsets and fitted",
            doc,
            "calibration",
            "calibration",
            hint=f"write it with: {refit_command(None)}",
        )
        return None
    _unknown_keys(node, SECTION_KEYS, "calibration", problems)
    for key, what in SECTION_KEYS.items():
        if key not in node:
            err("required key is missing", node, None, f"calibration.{key}", hint=what)
    method = node.get("method")
    if "method" in node and method not in METHODS:
        err(
            f"unknown method {method!r}{did_you_mean(str(method), METHODS)}",
            node,
            "method",
            "calibration.method",
            hint=f"methods: {', '.join(METHODS)}",
        )
    offsets = _offsets(node, problems)
    info = node.get("fitted")
    values: dict[str, Any] = {}
    if "fitted" in node:
        if isinstance(info, Mapping):
            values = _fitted(info, method, problems)
        else:
            err(
                "expected a mapping",
                node,
                "fitted",
                "calibration.fitted",
                hint=SECTION_KEYS["fitted"],
            )
    if problems.errors or offsets is None or not values:
        return None
    return Calibration(
        method=str(method),
        offsets=MappingProxyType(offsets),
        path=problems.path,
        lines=MappingProxyType(
            {
                "calibration": line_of(doc, "calibration"),
                "offsets": line_of(node, "offsets"),
                "student": line_of(info, "student"),
                "system_prompt_sha256": line_of(info, "system_prompt_sha256"),
                "backend_sha256": line_of(info, "backend_sha256"),
            }
        ),
        **values,
    )


def _unknown_keys(
    node: Mapping[str, Any], allowed: Mapping[str, str], where: str, problems: Problems
) -> None:
    for key in node:
        if key not in allowed:
            problems.add(
                f"unknown key{did_you_mean(str(key), allowed)}",
                node,
                key,
                f"{where}.{key}",
                hint=f"allowed keys: {', '.join(allowed)}",
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _offsets(node: Mapping[str, Any], problems: Problems) -> dict[str, float] | None:
    raw = node.get("offsets")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw:
        problems.add(
            "expected a non-empty mapping label -> number",
            node,
            "offsets",
            "calibration.offsets",
            hint=SECTION_KEYS["offsets"],
        )
        return None
    out: dict[str, float] = {}
    for label, value in raw.items():
        if not _number(value):
            problems.add(
                f"expected a finite number, got {value!r}",
                raw,
                label,
                f"calibration.offsets.{label}",
            )
        else:
            out[str(label)] = float(value)
    return out


def _fitted(info: Mapping[str, Any], method: Any, problems: Problems) -> dict[str, Any]:
    """The provenance fields as Calibration keyword arguments ({} when any is wrong)."""
    before = len(problems.errors)
    _unknown_keys(info, FITTED_KEYS, "calibration.fitted", problems)

    def bad(key: str, msg: str) -> None:
        problems.add(msg, info, key, f"calibration.fitted.{key}", hint=FITTED_KEYS[key])

    for key in FITTED_REQUIRED:
        if key not in info:
            problems.add(
                "required key is missing",
                info,
                None,
                f"calibration.fitted.{key}",
                hint=FITTED_KEYS[key],
            )
    student = info.get("student")
    if "student" in info and (not isinstance(student, str) or ":" not in student):
        bad("student", f"expected provider:model, got {student!r}")
    for key in ("system_prompt_sha256", "ids_sha256", "backend_sha256"):
        if key in info and not (isinstance(info[key], str) and _SHA256.match(info[key])):
            bad(key, "expected 64 lowercase hex digits (a sha256)")
    split = info.get("split")
    if "split" in info and not (isinstance(split, str) and split.strip()):
        bad("split", "expected a split name")
    examples = info.get("examples")
    if "examples" in info and not (
        isinstance(examples, int) and not isinstance(examples, bool) and examples >= 1
    ):
        bad("examples", f"expected an integer >= 1, got {examples!r}")
    for key in ("macro_f1_before", "macro_f1_after"):
        if key in info and not (_number(info[key]) and 0 <= info[key] <= 1):
            bad(key, f"expected a number in [0, 1], got {info[key]!r}")
    interval = info.get("macro_f1_gain_interval")
    if interval is not None and not (
        isinstance(interval, Sequence)
        and not isinstance(interval, str)
        and len(interval) == 2
        and all(_number(x) for x in interval)
        and interval[0] <= interval[1]
    ):
        bad("macro_f1_gain_interval", f"expected [low, high] with low <= high, got {interval!r}")
    inputs = info.get("inputs")
    if method == CONTEXTUAL and inputs is None:
        problems.add(
            "required key is missing (method contextual)",
            info,
            None,
            "calibration.fitted.inputs",
            hint=FITTED_KEYS["inputs"],
        )
    elif inputs is not None and method != CONTEXTUAL:
        bad("inputs", f"only a contextual calibration has inputs (method is {method!r})")
    elif inputs is not None and not (
        isinstance(inputs, Sequence)
        and not isinstance(inputs, str)
        and inputs
        and all(isinstance(x, str) for x in inputs)
    ):
        bad("inputs", "expected a non-empty list of strings")
    if len(problems.errors) > before:
        return {}
    return {
        "student": str(student),
        "system_prompt_sha256": str(info["system_prompt_sha256"]),
        "backend_sha256": str(info["backend_sha256"]) if "backend_sha256" in info else None,
        "split": str(split),
        "examples": int(examples),  # type: ignore[arg-type]
        "ids_sha256": str(info["ids_sha256"]),
        "macro_f1_before": _optional_float(info.get("macro_f1_before")),
        "macro_f1_after": _optional_float(info.get("macro_f1_after")),
        "gain_interval": None if interval is None else (float(interval[0]), float(interval[1])),
        "inputs": tuple(str(x) for x in inputs or ()),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
