"""`pld suites`, `pld render` and `pld run`: look at suites and evaluate them."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from ..errors import PldError
from .options import (
    add_data_root_option,
    add_limit_option,
    add_model_option,
    add_resamples_option,
    add_role_options,
    add_root_option,
    add_suite_argument,
    data_root,
    instructions_option,
    load_suite_by_name,
    open_suite,
    positive_int,
    project_root,
    shard_type,
)


def cmd_suites(args: argparse.Namespace) -> int:
    from ..suite import find_suites, load_suite
    from ..suite.data_checks import skipped_text

    root = project_root(args)
    where = data_root(args)
    found = find_suites(root)
    if not found:
        print(f"no suites in {root / 'suites'}")
        return 1
    status = 0
    for name, path in found.items():
        try:
            suite = load_suite(path, root, data_root=where)
        except PldError as exc:
            print(f"{name}: invalid\n{exc}", file=sys.stderr)
            status = 1
            continue
        print(
            f"{name}  ({suite.loader.name}; labels: {', '.join(suite.labels)}; "
            f"student {suite.student}; gates on {suite.gate_split})"
        )
        width = max(5, *(len(split) for split in suite.splits))
        for split in suite.splits:
            try:
                data = suite.split_data(split)
            except PldError as exc:  # one unreadable split (no data root set) hides no other
                print(f"  {split:<{width}}     ? examples: {exc}", file=sys.stderr)
                status = 1
                continue
            counts = Counter(e.label for e in data.examples)
            dist = ", ".join(f"{label} {counts.get(label, 0)}" for label in suite.labels)
            skipped = skipped_text(data.skipped)
            print(
                f"  {split:<{width}} {len(data.examples):>5} examples: {dist}"
                + (f"; {skipped}" if skipped else "")
            )
    return status


def cmd_render(args: argparse.Namespace) -> int:
    from ..runner import LazyBackend, prepare, size_counter

    root = project_root(args)
    suite = load_suite_by_name(root, args.suite, args)
    split = args.split or suite.gate_split
    examples = suite.load_examples(split)
    if args.example >= len(examples):
        raise PldError(
            f"split {split!r} has {len(examples)} examples; --example must be below that"
        )
    prepared = prepare(suite, split=split, examples=[examples[args.example]])
    example = prepared.examples[0]
    model = args.model or suite.student
    count, unit = size_counter(LazyBackend(model), tokens=not args.no_tokens)
    sys_n, user_n = count(prepared.system_prompt), count(prepared.users[0])
    unit = unit if unit == "chars" else f"{unit}, {model}"
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


def cmd_run(args: argparse.Namespace) -> int:
    from ..runner import LazyBackend, run_suite

    opened = open_suite(args)
    if opened is None:
        return 0
    root, suite, model = opened.root, opened.suite, opened.model
    mode = "off" if args.no_cache else "refresh" if args.refresh_cache else "use"
    iset = instructions_option(root, args.instructions)
    if args.shots:
        from ..shots import with_shots

        iset = with_shots(suite, iset or suite.load_instructions(), args.shots, args.seed)
    lazy = LazyBackend(model, opened.student_factory())
    try:
        record = run_suite(
            suite,
            split=args.split,
            limit=args.limit,
            model=model,
            cache_mode=mode,
            measure_without_rules=args.without_rules,
            results_dir=args.results,
            progress=None,
            instructions=iset,
            backend=lazy,
            shard=args.shard,
            apply_calibration=not args.no_calibration,
        )
    finally:
        lazy.close()
    setup = lazy.setup()
    if setup:  # printed first: it says how fast (and with what) the student ran
        print(f"student {model}: {setup}")
    if record.shard is not None:
        from ..shards import describe

        print(describe(record))
        print(
            f"  cache hits {record.cache_hits}, model calls {record.cache_misses}, "
            f"{record.duration_s:.1f} s; metrics are computed on the whole run: pld merge "
            "the records of every shard"
        )
        print(f"partial run record: {record.path}")
        return 0
    from ..report.run_summary import summarize, summary_lines

    m = record.metrics
    print(
        f"{suite.name}/{record.split}: {len(record.results)} examples, model {record.model}, "
        f"instructions v{record.instructions['version']} ({record.instructions['rules']} rules)"
    )
    for line in summary_lines(summarize(record, resamples=args.resamples)):
        print(line)
    if "latency_overhead" in m:
        print(f"  latency overhead (rules / none)  {m['latency_overhead']:.2f}x")
    print(
        f"  cache hits {record.cache_hits}, model calls {record.cache_misses}, "
        f"{record.duration_s:.1f} s"
    )
    print(f"run record: {record.path}")
    return 0


def _split_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split",
        default=None,
        metavar="S",
        help="a split the suite declares (default: the suite's gate split)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("suites", help="list suites with split sizes and label distributions")
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_suites)

    p = sub.add_parser(
        "render",
        help="print a suite's system prompt and one user message",
        description="Print the rendered system prompt and one user message with "
        "their token counts in the student's tokenizer.",
    )
    add_suite_argument(p)
    p.add_argument(
        "--example",
        type=int,
        default=0,
        metavar="N",
        help="index of the example in the split (default: 0)",
    )
    _split_option(p)
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
    add_data_root_option(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "run",
        help="evaluate a suite split: metrics with intervals, predicted against gold labels",
        description="Evaluate a suite with its student (or --model) through the response "
        "cache in .pld/, write a run record, and print each metric with its 95% interval "
        "(resampling the suite's clusters; Wilson for the accuracy, invalid and tie rates under 300 "
        "examples), the predicted-label distribution against the gold one and the tie rate. "
        "A set with a calibration: section gets calibrated answers (and the raw student's "
        "beside them) unless --no-calibration.",
    )
    add_suite_argument(p)
    add_model_option(p)
    add_limit_option(p)
    _split_option(p)
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    cache.add_argument(
        "--refresh-cache",
        action="store_true",
        help="ignore cached answers but store the new ones",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="show the raw student: do not apply the instruction set's calibration: section "
        "(the record says it was switched off)",
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
        help="evaluate this instruction file (inside the project) instead of the suite's, "
        "e.g. a saved distill proposal",
    )
    p.add_argument(
        "--shots",
        type=positive_int,
        default=None,
        metavar="K",
        help="k-shot baseline: add K random train examples to the prompt",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed for --shots (default: 0)")
    p.add_argument(
        "--shard",
        type=shard_type,
        default=None,
        metavar="I/N",
        help="evaluate only shard I of N (a stable 1/N of the sample, by example id) into a "
        "partial run record; `pld merge` joins the N parts and computes the metrics",
    )
    add_role_options(p, ("student",))
    add_resamples_option(p)
    add_root_option(p)
    add_data_root_option(p)
    p.set_defaults(func=cmd_run)
