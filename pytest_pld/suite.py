"""Suites: a benchmark as configuration - dataset, splits, labels, prompt, student, gates."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ruamel.yaml.comments import CommentedMap

from . import metrics
from .clusters import check_cluster_key
from .datasets import Example, Loader, registry, split_fraction
from .errors import PldError, PldErrors, did_you_mean
from .instructions import InstructionSet, load_instruction_set
from .plain import freeze
from .project import check_data_spec, is_data_path, resolve_data, resolve_inside
from .templating import check_template_field
from .verdicts import POWER_POLICIES
from .yamlio import line_of, load_yaml

#: the conventional split names: teach reads train, distill scores rules on dev, the gates
#: default to test. A suite may declare any other names besides (a held-out set, last month's
#: traffic) and evaluate them with --split / --pld-split.
SPLITS = ("train", "dev", "test")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SPLIT_KEYS = ("path", "fraction", "value")
SPLIT_FORMS = (
    "a path, or {path, fraction: [lo, hi]} (rows whose id hashes into [lo, hi)), or "
    "{path, value: V} (rows whose split_field holds V)"
)
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
}
REGRESSION_KEYS = {"metric", "baseline", "margin", "confidence", "power"}
#: `gates.family`: how the per-class gates' one-sided tests are corrected as one family
FAMILY_CORRECTIONS = ("holm", "none")
_BOUND = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
BOUND_FORMS = "'>= 0.6', '> 0.6', '<= 1.15' or '< 6000'"


@dataclass(frozen=True)
class Bound:
    metric: str
    op: str
    value: float
    line: int | None = None

    @property
    def label(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, observed: float) -> bool:
        if math.isnan(observed):  # NaN never passes a gate
            return False
        return {
            ">=": observed >= self.value,
            ">": observed > self.value,
            "<=": observed <= self.value,
            "<": observed < self.value,
        }[self.op]


@dataclass(frozen=True)
class RegressionGate:
    metric: str
    baseline: str  # project-relative path of the committed run record
    margin: float = 0.02
    confidence: float = 0.95
    line: int | None = None
    power: str | None = None  # warn | fail; None: not set in the suite

    @property
    def label(self) -> str:
        return f"regression[{self.metric}]"


@dataclass(frozen=True)
class SplitSpec:
    path: str  # project-relative, or data:PATH under the data root
    fraction: tuple[float, float] = (0.0, 1.0)
    value: str | None = None  # the rows whose split field holds this value


@dataclass(frozen=True)
class Suite:
    path: Path
    root: Path
    name: str
    loader: Loader
    loader_options: Mapping[str, Any]
    splits: Mapping[str, SplitSpec]
    labels: tuple[str, ...]
    user_template: str
    instructions: str
    student: str
    gates: tuple[Bound, ...] = ()
    regression: RegressionGate | None = None
    gate_split: str = "test"
    max_prompt_tokens: int | None = None
    metrics: tuple[str, ...] = ("accuracy", "macro_f1")
    description: str = ""
    snapshot: str | None = None
    cluster_key: str | None = None
    family: str = "holm"  # correction of the per-class gates' tests: holm | none
    data_root: Path | None = None  # where data:PATH split paths resolve

    @property
    def instructions_path(self) -> Path:
        return resolve_inside(self.root, self.instructions, path=self.path, key="instructions")

    def load_instructions(self) -> InstructionSet:
        return load_instruction_set(self.instructions_path, root=self.root)

    def snapshot_path(self) -> Path:
        rel = self.snapshot or str(Path(self.instructions).with_suffix(".prompt.txt"))
        return resolve_inside(self.root, rel, path=self.path, key="snapshot")

    def split_path(self, split: str) -> Path:
        spec = self._spec(split)
        return resolve_data(
            self.root, self.data_root, spec.path, path=self.path, key=f"splits.{split}"
        )

    def _spec(self, split: str) -> SplitSpec:
        if split not in self.splits:
            raise PldError(
                f"suite has no {split!r} split{did_you_mean(split, self.splits)}",
                path=self.path,
                key="splits",
                hint=f"declared splits: {', '.join(self.splits)}",
            )
        return self.splits[split]

    def load_examples(self, split: str, *, limit: int | None = None) -> list[Example]:
        """The examples of a split; with `limit`, a deterministic sample of that many."""
        spec = self._spec(split)
        data_path = self.split_path(split)
        if not data_path.exists():
            raise PldError(
                f"data file {spec.path!r} for split {split!r} is missing"
                + (f" (looked in {data_path})" if is_data_path(spec.path) else ""),
                path=self.path,
                key=f"splits.{split}",
                hint="check the data root and the path"
                if is_data_path(spec.path)
                else "restore it from git or fix the path",
            )
        examples = _cached_load(self.loader, data_path, self.loader_options)
        if spec.value is not None:
            unmarked = [e for e in examples if e.split is None]
            if unmarked:
                raise PldError(
                    f"split {split!r} takes the rows whose split field holds {spec.value!r}, "
                    f"and {len(unmarked)} rows of {spec.path} have no split field (first: id "
                    f"{unmarked[0].id!r})",
                    path=self.path,
                    key=f"splits.{split}",
                    hint=f"give every row of {data_path} a "
                    f"{self.loader_options.get('split_field')!r} value",
                )
            examples = [e for e in examples if e.split == spec.value]
        lo, hi = spec.fraction
        if (lo, hi) != (0.0, 1.0):
            examples = [e for e in examples if lo <= split_fraction(e.group or e.id) < hi]
        if limit is not None and limit < len(examples):
            # sample by a stable hash of the id, then restore file order so runs are readable
            chosen = sorted(examples, key=lambda e: split_fraction("sample:" + e.id))[:limit]
            keep = {e.id for e in chosen}
            examples = [e for e in examples if e.id in keep]
        return examples


_LOAD_CACHE: dict[tuple[str, Path, float, tuple[tuple[str, Any], ...]], list[Example]] = {}


def _cached_load(loader: Loader, path: Path, options: Mapping[str, Any]) -> list[Example]:
    key = (loader.name, path, path.stat().st_mtime, tuple(sorted(options.items())))
    if key not in _LOAD_CACHE:
        _LOAD_CACHE[key] = loader.load(path, options)
    return _LOAD_CACHE[key]


def parse_bound(metric: str, raw: Any, *, path: Path, line: int | None) -> Bound:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raise PldError(
            f"bound {raw!r} has no comparison",
            path=path,
            line=line,
            key=f"gates.{metric}",
            hint=f"write it as {BOUND_FORMS}",
        )
    match = _BOUND.match(str(raw)) if isinstance(raw, str) else None
    if not match:
        raise PldError(
            f"malformed bound {raw!r}",
            path=path,
            line=line,
            key=f"gates.{metric}",
            hint=f"write it as {BOUND_FORMS}",
        )
    return Bound(metric, match[1], float(match[2]), line)


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
    errors: list[PldError] = []

    def err(
        msg: str,
        node: Any = None,
        key: Any = None,
        name: str | None = None,
        hint: str | None = None,
    ) -> None:
        errors.append(PldError(msg, path=path, line=line_of(node, key), key=name, hint=hint))

    if not isinstance(doc, CommentedMap):
        raise PldError(
            "a suite must be a YAML mapping at the top level",
            path=path,
            line=1,
            hint=f"allowed keys: {', '.join(TOP_KEYS)}",
        )
    for key in doc:
        if key not in TOP_KEYS:
            err(
                f"unknown key{did_you_mean(str(key), TOP_KEYS)}",
                doc,
                key,
                str(key),
                hint=f"allowed keys: {', '.join(TOP_KEYS)}",
            )
    for key in ("name", "dataset", "splits", "labels", "user_template", "instructions", "student"):
        if key not in doc:
            err("required key is missing", doc, None, key, hint=TOP_KEYS[key])

    def text(key: str) -> str:
        value = doc.get(key)
        if value is None:
            return ""
        if not isinstance(value, str) or not value.strip():
            err("expected a non-empty string", doc, key, key)
            return ""
        return str(value)

    name, user_template = text("name"), text("user_template")
    instructions, student = text("instructions"), text("student")
    description = text("description") if "description" in doc else ""
    snapshot = text("snapshot") or None if "snapshot" in doc else None
    if name and name != path.stem:
        err(
            f"name {name!r} differs from the file name {path.stem!r}",
            doc,
            "name",
            "name",
            hint="--pld-suite selects suites by file name; keep them equal",
        )
    if student and ":" not in student:
        err(
            f"student {student!r} must read provider:model",
            doc,
            "student",
            "student",
            hint="for example local:qwen2.5-coder-0.5b-instruct",
        )

    labels: tuple[str, ...] = ()
    raw_labels = doc.get("labels")
    if raw_labels is not None:
        if (
            not isinstance(raw_labels, list)
            or len(raw_labels) < 2
            or not all(isinstance(x, str) and x.strip() for x in raw_labels)
        ):
            err("expected a list of at least two non-empty strings", doc, "labels", "labels")
        elif len(set(raw_labels)) != len(raw_labels):
            err("labels must be distinct", doc, "labels", "labels")
        else:
            labels = tuple(str(x) for x in raw_labels)

    loaders = registry()
    loader: Loader | None = None
    loader_options: dict[str, Any] = {}
    dataset = doc.get("dataset")
    if dataset is not None:
        if not isinstance(dataset, Mapping):
            err("expected {loader: NAME, options: {...}}", doc, "dataset", "dataset")
        else:
            for key in dataset:
                if key not in ("loader", "options"):
                    err(
                        f"unknown key{did_you_mean(str(key), ['loader', 'options'])}",
                        dataset,
                        key,
                        f"dataset.{key}",
                        hint="allowed keys: loader, options",
                    )
            lname = dataset.get("loader")
            if lname not in loaders:
                err(
                    f"unknown loader {lname!r}{did_you_mean(str(lname), loaders)}",
                    dataset,
                    "loader",
                    "dataset.loader",
                    hint=f"loaders: {', '.join(loaders)}",
                )
            else:
                loader = loaders[lname]
                options = dataset.get("options") or {}
                if not isinstance(options, Mapping):
                    err("expected a mapping", dataset, "options", "dataset.options")
                    options = {}
                for key, value in options.items():
                    if key not in loader.options:
                        err(
                            f"unknown option{did_you_mean(str(key), loader.options)}",
                            options,
                            key,
                            f"dataset.options.{key}",
                            hint=f"the {lname} loader accepts: "
                            f"{', '.join(loader.options) or '(no options)'}",
                        )
                    else:
                        loader_options[str(key)] = freeze(value)
                loader_options = {**loader.options, **loader_options}

    if user_template:
        # the loader's declared fields plus the id (example_fields); the generic jsonl loader
        # declares none, and its files are checked when `pld validate` renders an example
        fields = ({*loader.fields, "id"} if loader.fields else None) if loader else None
        problem = check_template_field(doc, "user_template", path, variables=fields)
        if problem:
            errors.append(problem)

    splits: dict[str, SplitSpec] = {}
    raw_splits = doc.get("splits")
    if raw_splits is not None:
        if not isinstance(raw_splits, Mapping):
            err("expected a mapping split -> path", doc, "splits", "splits")
        else:
            split_field = str(loader_options.get("split_field") or "")
            for split, spec in raw_splits.items():
                where = f"splits.{split}"
                if not isinstance(split, str) or not SPLIT_NAME.match(split):
                    err(
                        f"split name {split!r} is not allowed",
                        raw_splits,
                        split,
                        where,
                        hint="letters, digits, '_', '-' and '.', starting with a letter or "
                        f"digit (quote one YAML reads as a number); the conventional names are "
                        f"{', '.join(SPLITS)}",
                    )
                    continue
                parsed = _parse_split(spec, raw_splits, split, where, split_field, err)
                if parsed is None:
                    continue
                splits[split] = parsed
                try:
                    if is_data_path(parsed.path):
                        check_data_spec(
                            parsed.path, path=path, line=line_of(raw_splits, split), key=where
                        )
                    if not is_data_path(parsed.path) or data_root is not None:
                        resolve_data(
                            root,
                            data_root,
                            parsed.path,
                            path=path,
                            line=line_of(raw_splits, split),
                            key=where,
                        )
                except PldError as exc:
                    errors.append(exc)
            _check_disjoint(splits, raw_splits, path, errors)

    gate_split = str(doc.get("gate_split", "test"))
    if splits and gate_split not in splits:
        err(
            f"gate split {gate_split!r} is not declared",
            doc,
            "gate_split" if "gate_split" in doc else "splits",
            "gate_split",
        )

    max_tokens = doc.get("max_prompt_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        err("expected a positive integer", doc, "max_prompt_tokens", "max_prompt_tokens")
        max_tokens = None

    reported: list[str] = []
    for i, mname in enumerate(doc.get("metrics") or []):
        try:
            metrics.lookup(str(mname), labels or None)
            reported.append(str(mname))
        except KeyError as exc:
            err(
                f"{exc.args[0]}",
                doc["metrics"],
                i,
                "metrics",
                hint=f"metrics: {', '.join(metrics.metric_names())}",
            )

    cluster_key, problem = check_cluster_key(
        doc.get("cluster_key"), loader, path=path, line=line_of(doc, "cluster_key")
    )
    if problem:
        errors.append(problem)

    bounds: list[Bound] = []
    regression: RegressionGate | None = None
    family = "holm"
    gates = doc.get("gates")
    if gates is None or (isinstance(gates, Mapping) and not gates):
        err(
            "a suite needs at least one gate",
            doc,
            "gates" if "gates" in doc else None,
            "gates",
            hint="for example gates: {macro_f1: '>= 0.5'}",
        )
    elif not isinstance(gates, Mapping):
        err("expected a mapping metric -> bound", doc, "gates", "gates")
    else:
        for mname, raw in gates.items():
            line = line_of(gates, mname)
            if mname == "regression":
                regression = _parse_regression(raw, path, line, labels, errors)
                continue
            if mname == "family":
                family = _parse_choice(raw, FAMILY_CORRECTIONS, path, line, "gates.family", errors)
                continue
            try:
                metrics.lookup(str(mname), labels or None)
            except KeyError as exc:
                errors.append(
                    PldError(
                        f"{exc.args[0]}",
                        path=path,
                        line=line,
                        key=f"gates.{mname}",
                        hint=f"metrics: {', '.join(metrics.metric_names())}, regression, family",
                    )
                )
                continue
            try:
                bounds.append(parse_bound(str(mname), raw, path=path, line=line))
            except PldError as exc:
                errors.append(exc)

    if errors:
        raise PldErrors(errors)
    assert loader is not None
    return Suite(
        path=path,
        root=root,
        name=name,
        loader=loader,
        loader_options=MappingProxyType(loader_options),
        splits=MappingProxyType(splits),
        labels=labels,
        user_template=user_template,
        instructions=instructions,
        student=student,
        gates=tuple(bounds),
        regression=regression,
        gate_split=gate_split,
        max_prompt_tokens=max_tokens,
        metrics=tuple(reported) or ("accuracy", "macro_f1"),
        description=description,
        snapshot=snapshot,
        cluster_key=cluster_key,
        family=family,
        data_root=data_root,
    )


def _parse_split(
    spec: Any,
    node: Any,
    split: str,
    where: str,
    split_field: str,
    err: Callable[..., None],
) -> SplitSpec | None:
    """One entry of `splits:`; reports a malformed one through `err` and returns None."""
    if isinstance(spec, str):
        return SplitSpec(spec)
    if not isinstance(spec, Mapping) or "path" not in spec or not set(spec) <= set(SPLIT_KEYS):
        err(f"expected {SPLIT_FORMS}", node, split, where)
        return None
    frac = spec.get("fraction", [0.0, 1.0])
    if (
        not isinstance(frac, list)
        or len(frac) != 2
        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in frac)
        or not 0 <= frac[0] < frac[1] <= 1
    ):
        err(
            "fraction must be [lo, hi] with 0 <= lo < hi <= 1",
            spec,
            "fraction",
            f"{where}.fraction",
        )
        return None
    value = spec.get("value")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            err("value must be a non-empty string", spec, "value", f"{where}.value")
            return None
        if not split_field:
            err(
                "value selects rows by their split column, and the loader has no split_field",
                spec,
                "value",
                f"{where}.value",
                hint="set dataset.options.split_field to the column that names each row's split",
            )
            return None
    return SplitSpec(
        str(spec["path"]),
        (float(frac[0]), float(frac[1])),
        None if value is None else str(value).strip(),
    )


def _check_disjoint(
    splits: Mapping[str, SplitSpec], node: Any, path: Path, errors: list[PldError]
) -> None:
    """Two splits that read the same file must take non-overlapping fractions of it."""
    names = list(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            sa, sb = splits[a], splits[b]
            if sa.path != sb.path or sa.value != sb.value:
                continue
            if sa.fraction[0] < sb.fraction[1] and sb.fraction[0] < sa.fraction[1]:
                errors.append(
                    PldError(
                        f"splits {a!r} and {b!r} overlap (same file, fractions {list(sa.fraction)} "
                        f"and {list(sb.fraction)})",
                        path=path,
                        line=line_of(node, b),
                        key=f"splits.{b}",
                        hint="give them disjoint [lo, hi) fractions",
                    )
                )


def _parse_regression(
    raw: Any, path: Path, line: int | None, labels: Sequence[str], errors: list[PldError]
) -> RegressionGate | None:
    if not isinstance(raw, Mapping):
        errors.append(
            PldError(
                "expected {metric, baseline, margin, confidence, power}",
                path=path,
                line=line,
                key="gates.regression",
            )
        )
        return None
    bad = False
    for key in raw:
        if key not in REGRESSION_KEYS:
            errors.append(
                PldError(
                    f"unknown key{did_you_mean(str(key), REGRESSION_KEYS)}",
                    path=path,
                    line=line_of(raw, key),
                    key=f"gates.regression.{key}",
                    hint=f"allowed: {', '.join(sorted(REGRESSION_KEYS))}",
                )
            )
            bad = True
    mname, baseline = raw.get("metric", "macro_f1"), raw.get("baseline")
    try:
        entry, _ = metrics.lookup(str(mname), labels or None)
        if not entry.resamplable:
            raise KeyError(f"metric {mname!r} cannot be compared by paired bootstrap")
    except KeyError as exc:
        errors.append(
            PldError(
                f"{exc.args[0]}",
                path=path,
                line=line_of(raw, "metric"),
                key="gates.regression.metric",
            )
        )
        bad = True
    if not isinstance(baseline, str) or not baseline.strip():
        errors.append(
            PldError(
                "baseline must be a project-relative path",
                path=path,
                line=line_of(raw, "baseline") or line,
                key="gates.regression.baseline",
            )
        )
        bad = True
    power = raw.get("power")
    if power is not None:
        power = _parse_choice(
            power, POWER_POLICIES, path, line_of(raw, "power"), "gates.regression.power", errors
        )
        bad = bad or power is None
    margin, confidence = raw.get("margin", 0.02), raw.get("confidence", 0.95)
    if not isinstance(margin, (int, float)) or not 0 <= margin < 1:
        errors.append(
            PldError(
                "margin must be a number in [0, 1)",
                path=path,
                line=line_of(raw, "margin"),
                key="gates.regression.margin",
            )
        )
        bad = True
    if not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        errors.append(
            PldError(
                "confidence must be a number in [0.5, 1)",
                path=path,
                line=line_of(raw, "confidence"),
                key="gates.regression.confidence",
            )
        )
        bad = True
    if bad:
        return None
    return RegressionGate(
        str(mname), str(baseline), float(margin), float(confidence), line, power=power
    )


def _parse_choice(
    raw: Any, choices: Sequence[str], path: Path, line: int | None, key: str, errors: list[PldError]
) -> Any:
    """`raw` when it is one of `choices`; otherwise an error is recorded and None returned."""
    if isinstance(raw, str) and raw in choices:
        return raw
    errors.append(
        PldError(
            f"expected one of {', '.join(choices)}, got {raw!r}",
            path=path,
            line=line,
            key=key,
        )
    )
    return None


def example_fields(example: Example) -> dict[str, Any]:
    return {**example.fields, "id": example.id}


__all__ = [
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
