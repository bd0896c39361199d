"""`pld init NAME --data FILE`: start a suite for your own task from a labelled data file."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PldError
from ..project import shown
from .options import add_data_root_option, add_root_option, data_root, project_root

if TYPE_CHECKING:
    from ..scaffold import Plan

#: columns that usually hold the label, offered as the default answer
LABEL_GUESSES = ("label", "labels", "gold", "gold_label", "class", "category", "target", "y")


def _names(values: Sequence[str] | None) -> tuple[str, ...]:
    """--text a --text b, or --text a,b."""
    return tuple(n.strip() for v in values or () for n in v.split(",") if n.strip())


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        train, dev, test = (float(p) for p in text.split(","))
    except ValueError:  # not numbers, or not three of them
        raise argparse.ArgumentTypeError(
            f"expected three numbers train,dev,test such as 0.6,0.2,0.2, got {text!r}"
        ) from None
    return train, dev, test


def _ask_fields(
    args: argparse.Namespace, columns: Sequence[str], ask: Callable[[str], str]
) -> tuple[tuple[str, ...], str, str]:
    """(text fields, label field, id field) from the flags, asking on a terminal for the ones
    missing; without a terminal a missing one is an error saying which flag to pass."""
    text, label = _names(args.text), args.label
    id_field = args.id if args.id is not None else ("id" if "id" in columns else "")
    if text and label:
        return text, label, id_field
    guess = next((c for c in LABEL_GUESSES if c in columns), None)
    if not sys.stdin.isatty():
        others = [c for c in columns if c.strip() and c not in (guess, "id")]
        example = ["--text", ",".join(text or others[:1] or ["TEXT"])]
        example += ["--label", label or guess or "LABEL"]
        missing = " and ".join(f for f, v in (("--text", text), ("--label", label)) if not v)
        raise PldError(
            f"{missing} not given, and there is no terminal to ask on",
            hint=f"columns: {', '.join(map(repr, columns))}; for example: pld init {args.name} "
            f"--data {shlex.quote(str(args.data))} {shlex.join(example)}",
        )
    print(f"columns of {args.data}:")
    for i, column in enumerate(columns, start=1):
        print(f"  {i:>2}. {column}")

    def pick(answer: str) -> list[str]:
        picked = []
        for part in (p.strip() for p in answer.split(",") if p.strip()):
            picked.append(
                columns[int(part) - 1] if part.isdigit() and 0 < int(part) <= len(columns) else part
            )
        return picked

    while not label:
        label = "".join(
            pick(ask(f"label column{f' [{guess}]' if guess else ''}: ")) or [guess or ""]
        )
    while not text:
        text = tuple(
            pick(ask("text columns the model reads (names or numbers, comma-separated): "))
        )
    if args.id is None:
        default = id_field or "none: a hash of the text"
        answer = "".join(pick(ask(f"id column [{default}]: ")))
        id_field = "" if answer.lower() in ("none", "-") else answer or id_field
    return text, label, id_field


def cmd_init(args: argparse.Namespace) -> int:
    from ..scaffold import InitSpec, columns_of, data_format, plan_init, write_init

    root = project_root(args)
    where = data_root(args)
    data = args.data.expanduser().resolve()
    fmt = data_format(data, args.format)
    columns = columns_of(data, fmt)
    text, label, id_field = _ask_fields(args, columns, input)
    spec = InitSpec(
        name=args.name,
        data=data,
        text_fields=text,
        label_field=label,
        id_field=id_field,
        split_column=args.split_column or "",
        labels=_names(args.labels),
        fractions=args.fractions,
        fmt=fmt,
        student=args.student,
        copy=args.copy,
        data_root=where,
    )
    plan = plan_init(root, spec)
    _print_plan(plan)
    written = write_init(plan)
    for path in written:
        what = {
            plan.snapshot_path: "  (the rendered prompt; the ::snapshot gate compares with it)",
            plan.copy_to: "  (a copy of the data)",
        }.get(path, "")
        print(f"wrote {shown(path, root)}{what}")
    _print_next(plan, args)
    return 0


def _print_plan(plan: Plan) -> None:
    spec = plan.spec
    ids = f"column {spec.id_field!r}" if spec.id_field else "a hash of the text fields"
    print(
        f"pld init {spec.name}: {plan.examples} examples from {plan.data_path.name}; text "
        f"{', '.join(spec.text_fields)}; label {spec.label_field}; ids {ids}"
    )
    print(f"data: {plan.data_ref}")
    splits = list(plan.counts)
    width = max(len("label"), len("total"), *(len(label) for label in plan.labels))
    cols = [max(5, len(s)) for s in splits]
    header = "  ".join(f"{s:>{w}}" for s, w in zip(splits, cols))
    print(f"\n{'label':<{width}}  {header}  {'total':>5}")
    for label in plan.labels:
        row = "  ".join(f"{plan.counts[s][label]:>{w}}" for s, w in zip(splits, cols))
        total = sum(plan.counts[s][label] for s in splits)
        print(f"{label:<{width}}  {row}  {total:>5}")
    totals = "  ".join(f"{sum(plan.counts[s].values()):>{w}}" for s, w in zip(splits, cols))
    print(f"{'total':<{width}}  {totals}  {plan.examples:>5}\n")
    for note in plan.notes:
        print(f"note: {note}")


def _print_next(plan: Plan, args: argparse.Namespace) -> None:
    from ..scaffold.render import floor_bound

    name = plan.spec.name
    print(
        "gates: invalid_rate <= 0.01 (answers are labels). Once `pld run` shows the prompt "
        f"beats the best constant answer (always {plan.constant!r}, the test split's most "
        f"frequent label: macro-F1 {plan.floor:.4f}), "
        f"enable the gate macro_f1 > {floor_bound(plan.floor):g} in suites/{name}.yaml, then "
        "raise it to just under the score"
    )
    print("\nnext:")
    if plan.uses_data_root() and args.data_root is not None:
        print(f"  export PLD_DATA_ROOT={shlex.quote(str(plan.spec.data_root))}")
    teacher = plan.spec.student
    for command in (
        "pld validate",
        f"pld render {name}",
        f"pld run {name} --limit 20",
        f"pld teach {name} --limit 5 --teacher {teacher}",
        f"pytest --pld-suite={name} --pld-limit=20",
    ):
        print(f"  {command}")
    files = [plan.suite_path, plan.instructions_path, plan.snapshot_path]
    files += [plan.copy_to] if plan.copy_to else []
    print(
        f"then say what the task is and what each label means in instructions/{name}.yaml,\n"
        f"run `pld snapshot {name} --update`, and commit:\n"
        f"  git add {' '.join(shown(p, plan.root) for p in files)}"
    )
    if _pld_folder_not_ignored(plan.root):
        print(
            "note: .pld/ (the response cache and run records) is not in .gitignore; keep it "
            "out of commits:\n  echo '.pld/' >> .gitignore"
        )


def _pld_folder_not_ignored(root: Path) -> bool:
    """True when `root` is in a git work tree whose ignore rules do not cover `.pld/` (the
    response cache and run records are machine-local; committed, they bloat every clone)."""
    from ..review.git import GitRepo

    try:
        repo = GitRepo(root)
    except PldError:  # not a git work tree, or no git: nothing to commit it to
        return False
    return repo.is_ignored(".pld/") is False


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="start a suite for your own task from a labelled CSV/TSV/JSON Lines/Parquet file",
        description="Read a labelled data file, show its label distribution per split, and "
        "write suites/NAME.yaml, a zero-shot instructions/NAME.yaml and its rendered-prompt "
        "snapshot; then print the commands to run next. The file is split train/dev/test by "
        "a hash of each id (or by a split column). Never overwrites a file. A file inside "
        "the project is referenced where it is; one under the data root as data:PATH; any "
        "other only with --copy (copied into suites/data/NAME/). Missing --text/--label are "
        "asked for on a terminal.",
    )
    p.add_argument("name", metavar="NAME", help="the suite's name (suites/NAME.yaml)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="FILE",
        help="the labelled data: .csv, .tsv, .jsonl or .parquet (Parquet needs pyarrow: pip "
        "install pyarrow)",
    )
    p.add_argument(
        "--text",
        action="append",
        metavar="FIELD",
        help="a field the model reads (repeat, or comma-separate, for several)",
    )
    p.add_argument("--label", metavar="FIELD", help="the field holding the gold label")
    p.add_argument(
        "--id",
        metavar="FIELD",
        help="the field holding a unique id (default: 'id' if present, else a hash of the "
        "text fields)",
    )
    p.add_argument(
        "--split-column",
        metavar="FIELD",
        help="a field naming each row's split (train, dev or test; validation/valid/val read "
        "as dev; other values become splits of their own). Default: carve by a hash of the id",
    )
    p.add_argument(
        "--labels",
        action="append",
        metavar="A,B,C",
        help="the labels in the order to show them (default: sorted); must be exactly the "
        "labels in the data",
    )
    p.add_argument(
        "--fractions",
        type=_fractions,
        default=(0.6, 0.2, 0.2),
        metavar="TRAIN,DEV,TEST",
        help="shares of the hash carving (default: 0.6,0.2,0.2; dev may be 0)",
    )
    p.add_argument(
        "--format",
        choices=("csv", "tsv", "jsonl", "parquet"),
        default=None,
        help="the file's format (default: from its suffix)",
    )
    p.add_argument(
        "--student",
        default="local:qwen2.5-coder-0.5b-instruct",
        metavar="M",
        help="the suite's student model (default: local:qwen2.5-coder-0.5b-instruct)",
    )
    p.add_argument(
        "--copy",
        action="store_true",
        help="copy a file from outside the project into suites/data/NAME/ (default: refuse, "
        "and suggest --data-root)",
    )
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_init)
