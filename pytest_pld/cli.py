"""The `pld` command: validate, render, list and run suites (more commands register below)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import PldError, PldErrors
from .project import find_project_root

# Modules that add subcommands: each defines register(subparsers). Kept as names so that
# `pld --help` does not import torch or openai.
COMMAND_MODULES = [
    "pytest_pld.cli",
    "pytest_pld.review",
    "pytest_pld.ablate",
    "pytest_pld.snapshot",
    "pytest_pld.distill.cli",
]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_root_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="DIR",
        help="project root (default: the nearest folder above the current one "
        "with suites/ or pyproject.toml)",
    )


def project_root(args: argparse.Namespace) -> Path:
    return (args.root or find_project_root()).resolve()


def load_suite_by_name(root: Path, name: str):
    from .suite import load_suite, resolve_suite_names

    return load_suite(resolve_suite_names(root, name)[0], root)


# --- validate -----------------------------------------------------------------------------------


def _classify_file(path: Path) -> str:
    parts = {p.name for p in path.parents}
    if "suites" in parts and "instructions" not in parts:
        return "suite"
    if "instructions" in parts:
        return "instructions"
    from .yamlio import load_yaml

    doc = load_yaml(path)
    return "suite" if isinstance(doc, dict) and "dataset" in doc else "instructions"


def cmd_validate(args: argparse.Namespace) -> int:
    from .instructions import load_instruction_set
    from .render import render_system_prompt, render_user_message
    from .suite import example_fields, load_suite

    root = project_root(args)
    paths: list[Path] = []
    for raw in args.paths or [root / "instructions", root / "suites"]:
        path = Path(raw)
        if path.is_dir():
            paths.extend(sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")))
        elif path.exists():
            paths.append(path)
        else:
            print(f"{path}: not found", file=sys.stderr)
            paths.append(path)
    failures = 0
    for path in paths:
        try:
            if not path.exists():
                raise PldError("file not found", path=path)
            if _classify_file(path) == "suite":
                suite = load_suite(path, root)
                iset = suite.load_instructions()
                render_system_prompt(iset, suite.labels, root)
                examples = suite.load_examples(suite.gate_split, limit=1)
                for example in examples:
                    render_user_message(
                        suite.user_template, example_fields(example), where=str(path)
                    )
                kind = f"suite ({len(suite.gates)} gates"
                kind += ", regression)" if suite.regression else ")"
            else:
                iset = load_instruction_set(path)
                kind = f"instructions v{iset.version} ({len(iset.rules)} rules)"
            print(f"ok    {_rel(path, root)}  {kind}")
        except PldError as exc:
            failures += 1
            errors = exc.errors if isinstance(exc, PldErrors) else [exc]
            for error in errors:
                print(f"error {error.format()}", file=sys.stderr)
    total = len(paths)
    print(f"{total - failures} of {total} files valid")
    return 1 if failures else 0


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


# --- render -------------------------------------------------------------------------------------


def cmd_render(args: argparse.Namespace) -> int:
    from .runner import prepare

    root = project_root(args)
    suite = load_suite_by_name(root, args.suite)
    split = args.split or suite.gate_split
    examples = suite.load_examples(split)
    if args.example >= len(examples):
        raise PldError(
            f"split {split!r} has {len(examples)} examples; --example must be below that"
        )
    prepared = prepare(suite, split=split, examples=[examples[args.example]])
    example = prepared.examples[0]
    count = _token_counter(args.model or suite.student, args.no_tokens)
    sys_n, user_n = count(prepared.system_prompt), count(prepared.users[0])
    unit = "chars" if args.no_tokens else f"tokens, {args.model or suite.student}"
    print(
        f"# suite {suite.name}, split {split}, example {args.example} (id {example.id}, "
        f"gold {example.label})"
    )
    print(
        f"# instructions {prepared.instructions.name} v{prepared.instructions.version}, "
        f"{len(prepared.instructions.rules)} rules"
    )
    print(f"\n=== system prompt ({sys_n} {unit}) ===\n{prepared.system_prompt.rstrip()}")
    print(f"\n=== user message ({user_n} {unit}) ===\n{prepared.users[0]}")
    if not args.no_tokens and suite.max_prompt_tokens:
        total = sys_n + user_n
        verdict = "within" if total <= suite.max_prompt_tokens else "OVER"
        print(f"\n# {total} prompt tokens, {verdict} the budget of {suite.max_prompt_tokens}")
    return 0


def _token_counter(model: str, disabled: bool):
    if disabled:
        return len
    from .runner import LazyBackend

    return LazyBackend(model).token_counter()


# --- suites -------------------------------------------------------------------------------------


def cmd_suites(args: argparse.Namespace) -> int:
    from .suite import find_suites, load_suite

    root = project_root(args)
    found = find_suites(root)
    if not found:
        print(f"no suites in {root / 'suites'}")
        return 1
    status = 0
    for name, path in found.items():
        try:
            suite = load_suite(path, root)
        except PldError as exc:
            print(f"{name}: invalid\n{exc}", file=sys.stderr)
            status = 1
            continue
        print(
            f"{name}  ({suite.loader.name}; labels: {', '.join(suite.labels)}; "
            f"student {suite.student}; gates on {suite.gate_split})"
        )
        for split in suite.splits:
            examples = suite.load_examples(split)
            counts = Counter(e.label for e in examples)
            dist = ", ".join(f"{label} {counts.get(label, 0)}" for label in suite.labels)
            print(f"  {split:<5} {len(examples):>5} examples: {dist}")
    return status


# --- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_suite

    root = project_root(args)
    suite = load_suite_by_name(root, args.suite)
    mode = "off" if args.no_cache else "refresh" if args.refresh_cache else "use"
    iset = None
    if args.instructions is not None:
        from .instructions import load_instruction_set
        from .project import resolve_inside

        iset = load_instruction_set(
            resolve_inside(root, str(args.instructions), key="--instructions")
        )
    if args.shots:
        iset = with_shots(suite, iset or suite.load_instructions(), args.shots, args.seed)
    record = run_suite(
        suite,
        split=args.split,
        limit=args.limit,
        model=args.model,
        cache_mode=mode,
        measure_without_rules=args.without_rules,
        results_dir=args.results,
        progress=None,
        instructions=iset,
    )
    m = record.metrics
    print(
        f"{suite.name}/{record.split}: {len(record.results)} examples, model {record.model}, "
        f"instructions v{record.instructions['version']} ({record.instructions['rules']} rules)"
    )
    print(f"  accuracy  {m.get('accuracy', float('nan')):.3f}")
    print(f"  macro_f1  {m.get('macro_f1', float('nan')):.3f}")
    print(f"  invalid   {m.get('invalid_rate', 0.0):.3f}")
    if "latency_overhead" in m:
        print(f"  latency overhead (rules / none)  {m['latency_overhead']:.2f}x")
    print(
        f"  cache hits {record.cache_hits}, model calls {record.cache_misses}, "
        f"{record.duration_s:.1f} s"
    )
    print(f"run record: {record.path}")
    return 0


def with_shots(suite, iset, shots: int, seed: int):
    """The k-shot baseline: `shots` random train examples (seeded) shown in the system prompt.

    Drawn from the train split only, so the gate split never leaks into the prompt."""
    import random

    from .instructions import Example as Shot
    from .render import render_user_message
    from .suite import example_fields

    if "train" not in suite.splits or suite.gate_split == "train":
        raise PldError(
            "--shots draws from the train split, which this suite does not have "
            "apart from its gate split",
            path=suite.path,
            key="splits",
        )
    pool = suite.load_examples("train")
    picked = random.Random(seed).sample(pool, min(shots, len(pool)))
    return iset.with_examples(
        [
            Shot(
                render_user_message(suite.user_template, example_fields(e), where=str(suite.path)),
                e.label,
            )
            for e in picked
        ]
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check instruction and suite files",
        description="Check every instruction and suite file (default: "
        "instructions/ and suites/). Prints all errors; exit 1 on any.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders to check (default: instructions/ and suites/)",
    )
    add_root_option(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "render",
        help="print a suite's system prompt and one user message",
        description="Print the rendered system prompt and one user message with "
        "their token counts in the student's tokenizer.",
    )
    p.add_argument("suite", metavar="SUITE", help="suite name (a file in suites/)")
    p.add_argument(
        "--example",
        type=int,
        default=0,
        metavar="N",
        help="index of the example in the split (default: 0)",
    )
    p.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="train, dev or test (default: the suite's gate split)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="count tokens with this model's tokenizer (default: the suite's student)",
    )
    p.add_argument(
        "--no-tokens", action="store_true", help="do not load a tokenizer; print character counts"
    )
    add_root_option(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("suites", help="list suites with split sizes and label distributions")
    add_root_option(p)
    p.set_defaults(func=cmd_suites)

    p = sub.add_parser(
        "run",
        help="evaluate a suite split and print accuracy and macro-F1",
        description="Evaluate a suite with its student (or --model) through the "
        "response cache in .pld/, and write a run record.",
    )
    p.add_argument("suite", metavar="SUITE", help="suite name (a file in suites/)")
    p.add_argument(
        "--model", default=None, metavar="M", help="provider:model, overriding the suite's student"
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="evaluate a deterministic sample of N examples (default: all)",
    )
    p.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="train, dev or test (default: the suite's gate split)",
    )
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    cache.add_argument(
        "--refresh-cache", action="store_true", help="ignore cached answers but store the new ones"
    )
    p.add_argument(
        "--without-rules",
        action="store_true",
        help="also run the same examples with the zero-shot prompt (latency overhead)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder for the run record (default: .pld/runs)",
    )
    p.add_argument(
        "--instructions",
        type=Path,
        default=None,
        metavar="PATH",
        help="evaluate this instruction file (inside the project) instead of the "
        "suite's, e.g. a saved distill proposal",
    )
    p.add_argument(
        "--shots",
        type=positive_int,
        default=None,
        metavar="K",
        help="k-shot baseline: add K random train examples to the prompt",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --shots (default: 0)")
    add_root_option(p)
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pld",
        description="Prompt-Level Distillation as code: instruction sets, suites, "
        "runs, distillation and review.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-pld {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
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
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
