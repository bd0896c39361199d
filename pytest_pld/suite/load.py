"""Finding suite files and loading one: `load_suite` validates a suite file section by section
(top-level keys, texts, labels, dataset, template, splits, metrics, gates) and reports every
problem it found at once, each with its file, line and key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ruamel.yaml.comments import CommentedMap

from .. import metrics
from ..datasets import Loader, registry
from ..errors import PldError, PldErrors, did_you_mean
from ..example_clusters import check_cluster_key
from ..plain import freeze
from ..problems import Problems
from ..templating import check_template_field
from ..yamlio import line_of, load_yaml
from .data_checks import UNKNOWN_LABELS
from .gate_specs import parse_gates
from .model import SplitSpec, Suite
from .splits import parse_splits

TOP_KEYS = {
    "name": "the suite's name (used by --pld-suite)",
    "description": "free text",
    "dataset": "{loader: NAME, options: {...}}",
    "splits": "split name (train, dev, test or any other) -> a path, or {path, fraction: "
    "[lo, hi]}, or {path, value: V}; a path data:PATH reads from the data root",
    "labels": "the label set, a list of strings",
    "user_template": "the Jinja template of the per-example user message",
    "instructions": "project-relative path of the instruction set",
    "student": "the default student model, provider:model",
    "gate_split": "the split the gates evaluate (default test)",
    "max_prompt_tokens": "the prompt-token budget the render check enforces",
    "metrics": "metrics to report besides those the gates name",
    "gates": "metric -> bound ('>= 0.6'), optionally regression: {...} and family: holm|none",
    "snapshot": "project-relative path of the rendered system-prompt snapshot",
    "cluster_key": "the example field whose equal values form a cluster (bootstraps resample "
    "clusters), or group / id",
    "unknown_labels": "what an example whose gold label is not in labels does: error (the "
    "default) or skip (left out, and counted in every report)",
}
REQUIRED_KEYS = ("name", "dataset", "splits", "labels", "user_template", "instructions", "student")


def find_suites(root: Path, folder: str | Path = "suites") -> dict[str, Path]:
    """Suite name -> file, for every *.yaml in the suites folder (relative to the root)."""
    where = root / folder
    return {p.stem: p for p in sorted(where.glob("*.yaml"))} if where.is_dir() else {}


def resolve_suite_names(root: Path, spec: str, folder: str | Path = "suites") -> list[Path]:
    """'contractnli,logiqa' or 'all' -> suite files; unknown names get did-you-mean."""
    known = find_suites(root, folder)
    if spec.strip() == "all":
        if not known:
            raise PldError(f"no suites found in {root / folder}", hint="add suites/NAME.yaml files")
        return list(known.values())
    paths = []
    for name in [n.strip() for n in spec.split(",") if n.strip()]:
        if name not in known:
            raise PldError(
                f"unknown suite {name!r}{did_you_mean(name, known)}",
                hint=f"available suites: {', '.join(known) or '(none)'}, or all",
            )
        paths.append(known[name])
    if not paths:
        raise PldError("no suite named", hint=f"available suites: {', '.join(known)}")
    return paths


def load_suite(path: Path, root: Path, *, data_root: Path | None = None) -> Suite:
    """Load and validate a suite file; raises PldErrors listing every problem found.

    `data_root` is where `data:PATH` split paths resolve; without one such a suite still
    loads, and reading such a split says how to set the root."""
    doc = load_yaml(path)
    if not isinstance(doc, CommentedMap):
        raise PldError(
            "a suite must be a YAML mapping at the top level",
            path=path,
            line=1,
            hint=f"allowed keys: {', '.join(TOP_KEYS)}",
        )
    problems = Problems(path)
    # the sections in the order their problems are listed
    problems.check_top_keys(doc, TOP_KEYS, REQUIRED_KEYS)
    texts = _parse_texts(doc, problems)
    labels = _parse_labels(doc, problems)
    loader, loader_options = _parse_dataset(doc, problems)
    _check_user_template(doc, texts.user_template, loader, problems)
    splits = parse_splits(doc, loader_options, problems, root=root, data_root=data_root)
    gate_split = _parse_gate_split(doc, splits, problems)
    max_tokens = _parse_max_prompt_tokens(doc, problems)
    reported = _parse_metrics(doc, labels, problems)
    cluster_key, problem = check_cluster_key(
        doc.get("cluster_key"), loader, path=path, line=line_of(doc, "cluster_key")
    )
    if problem:
        problems.append(problem)
    bounds, regression, family = parse_gates(doc, labels, problems)
    unknown_labels = _parse_unknown_labels(doc, problems)

    if problems.errors:
        raise PldErrors(problems.errors)
    assert loader is not None
    return Suite(
        path=path,
        root=root,
        name=texts.name,
        loader=loader,
        loader_options=MappingProxyType(loader_options),
        splits=MappingProxyType(splits),
        labels=labels,
        user_template=texts.user_template,
        instructions=texts.instructions,
        student=texts.student,
        gates=tuple(bounds),
        regression=regression,
        gate_split=gate_split,
        max_prompt_tokens=max_tokens,
        metrics=tuple(reported) or ("accuracy", "macro_f1"),
        description=texts.description,
        snapshot=texts.snapshot,
        cluster_key=cluster_key,
        family=family,
        data_root=data_root,
        unknown_labels=unknown_labels,
    )


@dataclass(frozen=True)
class _Texts:
    """The suite's free-text keys ("" where absent or malformed)."""

    name: str
    user_template: str
    instructions: str
    student: str
    description: str
    snapshot: str | None


def _parse_texts(doc: CommentedMap, problems: Problems) -> _Texts:
    path = problems.path

    def text(key: str) -> str:
        value = doc.get(key)
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            problems.add("expected a non-empty string", doc, key, key)
            return ""
        return str(value)

    name, user_template = text("name"), text("user_template")
    instructions, student = text("instructions"), text("student")
    description = text("description") if "description" in doc else ""
    snapshot = text("snapshot") or None if "snapshot" in doc else None
    if name and name != path.stem:
        problems.add(
            f"name {name!r} differs from the file name {path.stem!r}",
            doc,
            "name",
            "name",
            hint="--pld-suite selects suites by file name; keep them equal",
        )
    if student and ":" not in student:
        problems.add(
            f"student {student!r} must read provider:model",
            doc,
            "student",
            "student",
            hint="for example local:qwen2.5-coder-0.5b-instruct",
        )
    return _Texts(name, user_template, instructions, student, description, snapshot)


def _parse_labels(doc: CommentedMap, problems: Problems) -> tuple[str, ...]:
    raw_labels = doc.get("labels")
    if raw_labels is None:
        return ()
    if (
        not isinstance(raw_labels, list)
        or len(raw_labels) < 2
        or not all(isinstance(x, str) and x.strip() for x in raw_labels)
    ):
        problems.add("expected a list of at least two non-empty strings", doc, "labels", "labels")
        return ()
    if len(set(raw_labels)) != len(raw_labels):
        problems.add("labels must be distinct", doc, "labels", "labels")
        return ()
    return tuple(str(x) for x in raw_labels)


def _parse_unknown_labels(doc: CommentedMap, problems: Problems) -> str:
    value = doc.get("unknown_labels", UNKNOWN_LABELS[0])
    if value not in UNKNOWN_LABELS:
        problems.add(
            f"expected {' or '.join(UNKNOWN_LABELS)}, got {value!r}"
            f"{did_you_mean(str(value), UNKNOWN_LABELS)}",
            doc,
            "unknown_labels",
            "unknown_labels",
            hint=TOP_KEYS["unknown_labels"],
        )
        return UNKNOWN_LABELS[0]
    return str(value)


def _parse_dataset(doc: CommentedMap, problems: Problems) -> tuple[Loader | None, dict[str, Any]]:
    """(the loader or None, its options with the loader's defaults filled in)."""
    dataset = doc.get("dataset")
    if dataset is None:
        return None, {}
    if not isinstance(dataset, Mapping):
        problems.add("expected {loader: NAME, options: {...}}", doc, "dataset", "dataset")
        return None, {}
    for key in dataset:
        if key not in ("loader", "options"):
            problems.add(
                f"unknown key{did_you_mean(str(key), ['loader', 'options'])}",
                dataset,
                key,
                f"dataset.{key}",
                hint="allowed keys: loader, options",
            )
    loaders = registry()
    lname = dataset.get("loader")
    if lname not in loaders:
        problems.add(
            f"unknown loader {lname!r}{did_you_mean(str(lname), loaders)}",
            dataset,
            "loader",
            "dataset.loader",
            hint=f"loaders: {', '.join(loaders)}",
        )
        return None, {}
    loader = loaders[lname]
    loader_options: dict[str, Any] = {}
    options = dataset.get("options") or {}
    if not isinstance(options, Mapping):
        problems.add("expected a mapping", dataset, "options", "dataset.options")
        options = {}
    for key, value in options.items():
        if key not in loader.options:
            problems.add(
                f"unknown option{did_you_mean(str(key), loader.options)}",
                options,
                key,
                f"dataset.options.{key}",
                hint=f"the {lname} loader accepts: {', '.join(loader.options) or '(no options)'}",
            )
        else:
            loader_options[str(key)] = freeze(value)
    return loader, {**loader.options, **loader_options}


def _check_user_template(
    doc: CommentedMap, user_template: str, loader: Loader | None, problems: Problems
) -> None:
    if not user_template:
        return
    # the loader's declared fields plus the id (example_fields); the generic jsonl loader
    # declares none, and its files are checked when `pld validate` renders an example
    fields = ({*loader.fields, "id"} if loader.fields else None) if loader else None
    problem = check_template_field(doc, "user_template", problems.path, variables=fields)
    if problem:
        problems.append(problem)


def _parse_gate_split(
    doc: CommentedMap, splits: Mapping[str, SplitSpec], problems: Problems
) -> str:
    gate_split = str(doc.get("gate_split", "test"))
    if splits and gate_split not in splits:
        problems.add(
            f"gate split {gate_split!r} is not declared",
            doc,
            "gate_split" if "gate_split" in doc else "splits",
            "gate_split",
        )
    return gate_split


def _parse_max_prompt_tokens(doc: CommentedMap, problems: Problems) -> int | None:
    max_tokens = doc.get("max_prompt_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        problems.add("expected a positive integer", doc, "max_prompt_tokens", "max_prompt_tokens")
        return None
    return max_tokens


def _parse_metrics(doc: CommentedMap, labels: Sequence[str], problems: Problems) -> list[str]:
    """The metrics reported besides those the gates name."""
    reported: list[str] = []
    for i, mname in enumerate(doc.get("metrics") or []):
        try:
            metrics.lookup(str(mname), labels or None)
            reported.append(str(mname))
        except KeyError as exc:
            problems.add(
                f"{exc.args[0]}",
                doc["metrics"],
                i,
                "metrics",
                hint=f"metrics: {', '.join(metrics.metric_names())}",
            )
    return reported
