"""What a split's examples must satisfy before any model time is spent, checked against the
suite: gold labels the suite lists, no blank labels, unique ids, something for the user
template to show, and every field the template reads.

A loader reads a file and knows its format; only the suite knows the label set and the
template. `check_split` is the one place that checks the two against each other: every reader
of a split goes through it (`Suite.split_data`, hence `pld run`, the pytest gates, teach,
distill, conditions, ablate, review), and `pld validate` runs it on every split it can read,
plus what only the whole suite can tell (`check_suite_data`: a suite label no example carries,
a template that fails on some example).

An example whose gold label is not a suite label is an error: scored against labels it cannot
have, it would quietly lower every metric. A suite may instead declare `unknown_labels: skip`,
and then such examples are left out of the split and counted (`SplitData.skipped`), and every
report says how many.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateSyntaxError, meta, nodes

from ..datasets import Example
from ..errors import PldError, PldErrors, counted, did_you_mean
from ..project import is_data_path, shown

if TYPE_CHECKING:
    from .model import Suite

#: what `unknown_labels:` may say; the first is the default
UNKNOWN_LABELS = ("error", "skip")
SHOWN = 5  # lines or ids listed in one message


@dataclass(frozen=True)
class SplitData:
    """A split's examples as the suite evaluates them, and what was left out."""

    examples: list[Example]
    #: gold label -> examples left out because the suite does not list it (unknown_labels: skip)
    skipped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Findings:
    """Everything `examine` found in one split: errors, and the unknown gold labels."""

    errors: list[PldError]
    unknown: dict[str, list[Example]]  # gold label not in the suite -> its examples


def skipped_text(skipped: Mapping[str, int]) -> str:
    """How a report says what `unknown_labels: skip` left out: '3 examples skipped, gold label
    not a suite label (mixed 2, postive 1)'; '' when nothing was."""
    if not skipped:
        return ""
    return skipped_line(sum(skipped.values()), skipped_labels(skipped))


def skipped_labels(skipped: Mapping[str, int]) -> str:
    """'mixed 2, postive 1'."""
    return ", ".join(f"{label} {n}" for label, n in skipped.items())


def skipped_line(n: int, labels: str) -> str:
    """`skipped_text` from its parts (a report row carries them as two properties)."""
    return f"{counted(n, 'example')} skipped, gold label not a suite label ({labels})"


def skipped_facts(skipped: Mapping[str, int]) -> list[tuple[str, object]]:
    """The JUnit properties of what was skipped (pld.skipped: how many, pld.skipped_labels:
    'mixed 2, postive 1'); none when nothing was."""
    if not skipped:
        return []
    return [("skipped", sum(skipped.values())), ("skipped_labels", skipped_labels(skipped))]


def size_notes(
    skipped: int | None, labels: str, limit: int | None, examples: int | None
) -> list[str]:
    """What a gate summary's run line adds about the sample's size, from a report row's
    properties: examples left out, a limit larger than the split."""
    notes = [skipped_line(skipped, labels) if skipped else "", limit_text(limit, examples or 0)]
    return [note for note in notes if note]


def limit_text(limit: int | None, examples: int) -> str:
    """A sample size asked for that the split cannot give: 'the limit of 40 is more than the
    split's 36 examples: all 36 were evaluated'; '' otherwise."""
    if limit is None or limit <= examples:
        return ""
    return (
        f"the limit of {limit} is more than the split's {counted(examples, 'example')}: all "
        f"{examples} were evaluated"
    )


def check_split(suite: Suite, split: str, examples: Sequence[Example], data: Path) -> SplitData:
    """The split's examples, checked; raises PldErrors listing every problem. `data` is the
    file they came from (named in the messages)."""
    found = examine(suite, split, examples, data)
    if found.errors:
        raise PldErrors(found.errors)
    if not found.unknown:
        return SplitData(list(examples))
    return SplitData(
        [e for e in examples if e.label not in found.unknown],
        {label: len(rows) for label, rows in found.unknown.items()},
    )


def examine(suite: Suite, split: str, examples: Sequence[Example], data: Path) -> Findings:
    """The problems of one split's examples, without raising."""
    errors: list[PldError] = []
    labels = set(suite.labels)
    blank = [e for e in examples if not e.label.strip()]
    if blank:
        errors.append(
            _at(
                f"{counted(len(blank), 'example')} of split {split!r} with an empty gold label",
                blank,
                data,
                hint="every example needs its gold label: fill it in or remove the row",
            )
        )
    errors += _duplicate_ids(split, examples, data)
    errors += _template_problems(suite, split, examples, data)
    unknown: dict[str, list[Example]] = {}
    for e in examples:
        if e.label.strip() and e.label not in labels:
            unknown.setdefault(e.label, []).append(e)
    if suite.unknown_labels == "error":
        errors += [
            _at(
                f"gold label {label!r} is not one of the suite's labels"
                f"{did_you_mean(label, suite.labels)}: "
                f"{counted(len(rows), 'example')} of split {split!r}",
                rows,
                data,
                hint=f"fix the label in the data, add it to labels: in {shown(suite.path, suite.root)} "
                f"({', '.join(suite.labels)}), or set unknown_labels: skip there to leave such "
                "examples out (counted in every report)",
            )
            for label, rows in unknown.items()
        ]
    return Findings(errors, unknown)


def _duplicate_ids(split: str, examples: Sequence[Example], data: Path) -> list[PldError]:
    """Ids must be unique: the cache, run records and comparisons key on them. The table and
    JSON Lines loaders refuse duplicates in a file already; this covers every loader."""
    first: dict[str, Example] = {}
    again: dict[str, list[Example]] = {}
    for e in examples:
        if e.id in first:
            again.setdefault(e.id, [first[e.id]]).append(e)
        else:
            first[e.id] = e
    return [
        _at(
            f"duplicate id {ex_id!r} in split {split!r}",
            rows,
            data,
            hint="give every example its own id: caches and reports key on them",
        )
        for ex_id, rows in again.items()
    ]


def _template_problems(
    suite: Suite, split: str, examples: Sequence[Example], data: Path
) -> list[PldError]:
    """A field the user template reads that examples lack, and examples whose every field the
    template reads is empty (the model would see the template's own words and nothing else)."""
    read = template_fields(suite.user_template)
    if not read or not examples:
        return []
    errors: list[PldError] = []
    for name in sorted(read - {"id"}):
        lacking = [e for e in examples if name not in e.fields]
        if lacking:
            offered = sorted({k for e in examples[:100] for k in e.fields} | {"id"})
            # a field no example has (a typo) is one error however many splits read the file
            which = (
                f"a field the data ({data.name}) does not have"
                if len(lacking) == len(examples)
                else f"which {counted(len(lacking), 'example')} of split {split!r} "
                f"{'does' if len(lacking) == 1 else 'do'} not have ({where_in(lacking, data)})"
            )
            errors.append(
                in_suite(
                    suite,
                    "user_template",
                    f"the user template reads {name!r}, {which}{did_you_mean(name, offered)}",
                    hint=f"fields of the data: {', '.join(offered)}",
                )
            )
    shown_fields = sorted(read - {"id"})
    empty = [
        e
        for e in examples
        if all(_blank(e.fields[n]) for n in shown_fields if n in e.fields)
        and any(n in e.fields for n in shown_fields)
    ]
    if empty:
        errors.append(
            _at(
                f"{counted(len(empty), 'example')} of split {split!r} with nothing to read: "
                f"empty {', '.join(shown_fields)} (what the user template shows)",
                empty,
                data,
                hint="fill in the text or remove the row: the model would be asked about nothing",
            )
        )
    return errors


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@functools.lru_cache(maxsize=64)
def template_fields(source: str) -> frozenset[str]:
    """The variables a user template reads, except those it tests with `is defined` (an
    optional field); empty when the template does not parse (loading the suite reports that)."""
    from ..templating import ENV

    try:
        tree = ENV.parse(source)
    except TemplateSyntaxError:
        return frozenset()
    optional = {
        t.node.name
        for t in tree.find_all(nodes.Test)
        if t.name in ("defined", "undefined") and isinstance(t.node, nodes.Name)
    }
    return frozenset(meta.find_undeclared_variables(tree) - optional - set(ENV.globals))


def example_fields(example: Example) -> dict[str, Any]:
    """What the user template is rendered with: the example's fields and its id."""
    return {**example.fields, "id": example.id}


def render_users(suite: Suite, examples: Sequence[Example], split: str) -> list[str]:
    """The user message of every example; a failure names the example (and its line)."""
    from ..render import render_user_message

    where = str(suite.path)
    out = []
    for e in examples:
        try:
            out.append(render_user_message(suite.user_template, example_fields(e), where=where))
        except PldError as exc:
            try:
                data: Path | None = suite.split_path(split)
            except PldError:
                data = None
            raise PldError(
                f"{exc.message} (example {where_in([e], data)} of split {split!r})",
                path=exc.path,
                line=exc.line,
                key=exc.key,
                hint=exc.hint,
            ) from None
    return out


def check_suite_data(suite: Suite) -> tuple[list[PldError], list[str]]:
    """`pld validate`'s reading of a suite's data: every split it can reach, checked and
    rendered, then the suite labels that no example carries. Returns (errors, notes)."""
    errors: list[PldError] = []
    notes: list[str] = []
    gold: dict[str, set[str]] = {}  # split -> the gold labels its examples carry
    missing = _missing_files(suite, errors)
    for split, spec in suite.splits.items():
        if is_data_path(spec.path) and suite.data_root is None and split != suite.gate_split:
            notes.append(
                f"split {split} not checked: it reads {spec.path} from the data root "
                "(pass --data-root DIR or set PLD_DATA_ROOT)"
            )
            continue
        if spec.path in missing:
            continue
        try:
            examples = suite.read_split(split)
            data = suite.split_path(split)
        except PldError as exc:
            errors += exc.errors if isinstance(exc, PldErrors) else [exc]
            continue
        found = examine(suite, split, examples, data)
        errors += found.errors
        gold[split] = {e.label for e in examples}
        if found.errors:
            continue
        kept = [e for e in examples if e.label not in found.unknown]
        if found.unknown:
            skipped = {label: len(rows) for label, rows in found.unknown.items()}
            notes.append(f"split {split}: {skipped_text(skipped)} (unknown_labels: skip)")
        try:
            render_users(suite, kept, split)
        except PldError as exc:
            errors.append(exc)
    errors += _absent_labels(suite, gold, notes)
    return errors, notes


def _missing_files(suite: Suite, errors: list[PldError]) -> set[str]:
    """The split paths whose file is missing, each reported once with every split that reads
    it (reading each split would say so once per split)."""
    readers: dict[str, list[str]] = {}
    for split, spec in suite.splits.items():
        if not is_data_path(spec.path) or suite.data_root is not None:
            readers.setdefault(spec.path, []).append(split)
    missing = set()
    for path, splits in readers.items():
        try:
            found = suite.split_path(splits[0]).exists()
        except PldError:
            continue  # a path outside the project: loading the suite reported it
        if not found:
            missing.add(path)
            errors.append(
                in_suite(
                    suite,
                    "splits",
                    f"data file {path!r} is missing (split{'s' if len(splits) > 1 else ''} "
                    f"{', '.join(splits)})",
                    hint="check the data root and the path"
                    if is_data_path(path)
                    else "restore it from git or fix the path",
                )
            )
    return missing


def _absent_labels(suite: Suite, gold: Mapping[str, set[str]], notes: list[str]) -> list[PldError]:
    """A suite label no example of any split carries is an error (a typo in `labels:`, or a
    label the data spells differently); one that only some split lacks is a note."""
    if not gold:
        return []
    seen = set().union(*gold.values())
    errors = []
    for label in suite.labels:
        if label not in seen:
            errors.append(
                in_suite(
                    suite,
                    "labels",
                    f"label {label!r} has no example in any split "
                    f"({', '.join(gold)}){did_you_mean(label, seen - set(suite.labels))}",
                    hint=f"gold labels in the data: {', '.join(sorted(seen))}",
                )
            )
            continue
        lacking = [split for split, found in gold.items() if label not in found]
        if lacking:
            notes.append(f"label {label!r} has no example in split {', '.join(lacking)}")
    return errors


def in_suite(suite: Suite, key: str, message: str, *, hint: str) -> PldError:
    """An error about the suite file's top-level `key`, at its line."""
    from ..yamlio import line_of, load_yaml

    try:
        line = line_of(load_yaml(suite.path), key)
    except PldError:
        line = None
    return PldError(message, path=suite.path, line=line, key=key, hint=hint)


def where_in(examples: Sequence[Example], data: Path | None) -> str:
    """'reviews.csv line 7' / 'reviews.csv lines 7, 9' / "ids 'a', 'b'" - the examples' places,
    the first few of them."""
    name = data.name + " " if data is not None else ""
    lines = [e.line for e in examples if e.line is not None]
    if len(lines) == len(examples):
        return (
            f"{name}{'line' if len(lines) == 1 else 'lines'} {_first(map(str, lines), len(lines))}"
        )
    ids = (repr(e.id) for e in examples)
    return f"{name}{'id' if len(examples) == 1 else 'ids'} {_first(ids, len(examples))}"


def _first(items: Iterable[str], n: int) -> str:
    first = [x for _, x in zip(range(SHOWN), items)]
    return ", ".join(first) + (f" and {n - SHOWN} more" if n > SHOWN else "")


def _at(message: str, examples: Sequence[Example], data: Path, *, hint: str) -> PldError:
    """An error about some examples of a data file, at the first one's line."""
    return PldError(
        f"{message} ({where_in(examples, None)})",
        path=data,
        line=examples[0].line,
        hint=hint,
    )
