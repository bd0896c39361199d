"""The `local:` backend on every shipped suite: what packing buys, and how close it gets to the
CPU's matrix peak (not a test; numbers go to BENCHMARKS.md).

Per suite (its test split's first N examples, its own instructions and student, the dtype
`auto` picks), in one process, A and B interleaved over rounds (ABAB...) so that a noisy
neighbour hurts both alike; medians and the spread (min-max) are reported:

  packed   classify_many as `pld run` calls it (examples packed up to `pack_tokens` tokens per
           forward pass, padded to the row floor)
  alone    the same, one example per forward pass (pack_tokens=1)

The scores of every round of both are compared bit for bit. The system prompt's prefix is
built before the first round and not timed.

Achieved GFLOPS count the useful floating-point work of the timed passes (padding rows
excluded): 2 x rows x the decoder's linear weights, the attention of each example's tokens
over the prefix and (causally) over its own tokens (QK^T and AV), and the output layer for
the scored rows. Peak: the best rate of a 2048^3 float32 matrix product on the same thread
count, measured between the rounds (so it also sees the neighbours' load).

Every result names the CPU and the flags that decide the dtype (native bf16 or not) and
packing (the row check), from the backend's own setup line.

usage: python benchmarks/bench_suites.py [--suites a,b] [--examples stereoset=48,...]
           [--rounds 3] [--threads N] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local  # cpu_model, machine, timed, print_report

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"stereoset": 48, "stereoset-intrasentence": 32, "logiqa": 12, "contractnli": 8}


def matmul_peak(threads: int, size: int = 2048, repeats: int = 3) -> tuple[float, float]:
    """GFLOPS of the fastest of `repeats` float32 size^3 matrix products on `threads` threads:
    per wall second, and per second of this process's CPU time (which a neighbour's load
    disturbs less)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=gen)
        b = torch.randn(size, size, generator=gen)
        torch.mm(a, b)  # warm-up
        wall, cpu = float("inf"), float("inf")
        for _ in range(repeats):
            with bench_local.timed() as t:
                torch.mm(a, b)
            wall, cpu = min(wall, t.wall), min(cpu, t.cpu)
    finally:
        torch.set_num_threads(saved)
    flop = 2 * size**3
    return flop / wall / 1e9, flop / cpu / 1e9


def useful_flops(backend: Any, system: str, users: list[str], labels: list[str]) -> float:
    """The floating-point operations the examples need (see the module docstring)."""
    import torch

    model = backend.model
    config = model.config
    linear = sum(
        m.weight.numel() for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear)
    )
    heads, layers = config.num_attention_heads, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    vocab, hidden = backend.head.weight.shape
    label_ids = backend.prompts.label_ids(labels)
    branch_rows = sum(len(ids) - 1 for ids in label_ids)
    prefix = backend._prefix(system)
    total = 0.0
    for index, user in enumerate(users):
        item = backend._item(prefix, index, user, max(len(ids) for ids in label_ids))
        suffix = prefix.suffix(item)
        n = len(suffix.ids) + branch_rows
        attention = 2 * 2 * heads * head_dim * (n * suffix.start + n * (n + 1) / 2) * layers
        total += 2 * n * linear + attention + 2 * (1 + branch_rows) * vocab * hidden
    return total


def bench_suite(backend: Any, name: str, count: int, rounds: int, threads: int) -> dict:
    from pytest_pld.runner import prepare
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / f"{name}.yaml", ROOT)
    prepared = prepare(suite, split="test", limit=count)
    system, users, labels = prepared.system_prompt, prepared.users, list(suite.labels)
    list(backend.classify_many(system, users[:1], labels))  # the prefix, untimed
    flops = useful_flops(backend, system, users, labels)
    default_pack = backend.pack_tokens
    modes = {"packed": default_pack, "alone": 1}
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    passes: dict[str, int] = {}
    peaks: list[tuple[float, float]] = []
    scores: dict[str, list[Any]] = {}
    same_bits = True
    for r in range(rounds):
        peaks.append(matmul_peak(threads))
        for mode, pack in modes.items():
            backend.pack_tokens = pack
            before = backend.stats["forwards"]
            with bench_local.timed() as t:
                got = [c.scores for c in backend.classify_many(system, users, labels)]
            passes[mode] = int(backend.stats["forwards"] - before)
            wall[mode].append(t.wall / len(users) * 1000)
            cpu[mode].append(t.cpu / len(users) * 1000)
            same_bits &= scores.setdefault("first", got) == got
            print(
                f"{name} round {r} {mode}: {wall[mode][-1]:.0f} ms/example wall, "
                f"{cpu[mode][-1]:.0f} ms CPU, {passes[mode]} passes, "
                f"peak {peaks[-1][0]:.1f} GFLOPS, "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    backend.pack_tokens = default_pack
    med = {m: statistics.median(v) for m, v in wall.items()}
    med_cpu = {m: statistics.median(v) for m, v in cpu.items()}
    per_example = flops / len(users)
    peak = statistics.median(p for p, _ in peaks)
    peak_cpu = max(p for _, p in peaks)
    achieved = per_example / (med["packed"] / 1000) / 1e9
    achieved_cpu = per_example / (med_cpu["packed"] / 1000) / 1e9
    return {
        "examples": len(users),
        "passes": passes,
        "ms_per_example_median": {m: round(v, 1) for m, v in med.items()},
        "ms_per_example_rounds": {m: [round(x, 1) for x in v] for m, v in wall.items()},
        "cpu_ms_per_example_median": {m: round(v, 1) for m, v in med_cpu.items()},
        "cpu_ms_per_example_rounds": {m: [round(x, 1) for x in v] for m, v in cpu.items()},
        "ratio_alone_over_packed": round(med["alone"] / med["packed"], 2),
        "ratio_alone_over_packed_cpu": round(med_cpu["alone"] / med_cpu["packed"], 2),
        "same_bits_packed_and_alone_every_round": same_bits,
        "useful_gflop_per_example": round(per_example / 1e9, 2),
        "achieved_gflops_packed": round(achieved, 1),
        "achieved_gflops_alone": round(per_example / (med["alone"] / 1000) / 1e9, 1),
        "matmul_peak_gflops_median": round(peak, 1),
        "matmul_peak_gflops_rounds": [round(p, 1) for p, _ in peaks],
        "share_of_peak_packed": round(achieved / peak, 3),
        # per CPU second: the work done while this process had the cores, against the best
        # CPU-second rate of the reference product
        "achieved_gflops_per_cpu_s_packed": round(achieved_cpu, 1),
        "matmul_peak_gflops_per_cpu_s_best": round(peak_cpu, 1),
        "share_of_peak_per_cpu_s_packed": round(achieved_cpu / peak_cpu, 3),
    }


def bench_threads(backend: Any, name: str, count: int, rounds: int, counts: list[int]) -> dict:
    """The same packed run on each thread count in `counts`, interleaved (ABAB...): what the
    thread rule is for, on a shared machine. Scores compared bit for bit."""
    import torch

    from pytest_pld.runner import prepare
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / f"{name}.yaml", ROOT)
    prepared = prepare(suite, split="test", limit=count)
    system, users, labels = prepared.system_prompt, prepared.users, list(suite.labels)
    list(backend.classify_many(system, users[:1], labels))  # the prefix, untimed
    saved = torch.get_num_threads()
    wall: dict[int, list[float]] = {n: [] for n in counts}
    first: list[Any] | None = None
    same_bits = True
    try:
        for r in range(rounds):
            for n in counts:
                torch.set_num_threads(n)
                with bench_local.timed() as t:
                    got = [c.scores for c in backend.classify_many(system, users, labels)]
                first = first or got
                same_bits &= got == first
                wall[n].append(t.wall / len(users) * 1000)
                print(
                    f"{name} round {r} {n} threads: {wall[n][-1]:.0f} ms/example wall, "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        torch.set_num_threads(saved)
    return {
        "suite": name,
        "examples": len(users),
        "ms_per_example_median": {n: round(statistics.median(v), 1) for n, v in wall.items()},
        "ms_per_example_rounds": {n: [round(x, 1) for x in v] for n, v in wall.items()},
        "same_bits": same_bits,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--suites", default=",".join(EXAMPLES))
    ap.add_argument("--examples", default="", help="per suite, e.g. stereoset=48,logiqa=12")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="default: the backend's choice")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--compare-threads",
        default="",
        help="e.g. 1,2: also time the first suite packed on each of these thread counts, "
        "interleaved (the backend is then checked on the largest)",
    )
    args = ap.parse_args()
    counts = dict(EXAMPLES)
    for part in filter(None, args.examples.split(",")):
        key, _, value = part.partition("=")
        counts[key] = int(value)

    from pytest_pld.backends.local import LocalBackend
    from pytest_pld.backends.local.threads import CpuWatch, choose_threads

    compare = [int(n) for n in filter(None, args.compare_threads.split(","))]
    watch = CpuWatch()  # over the model load, as the backend's own thread rule measures
    # checked on 1 thread and on the largest count compared, so it may run on any of them
    backend = LocalBackend(args.model, threads=max(compare) if compare else args.threads)
    threads = backend.threads.count
    result: dict = {
        "model": args.model,
        **bench_local.machine(threads),
        "setup": backend.setup,
        "row_check_s": round(backend.row_check.seconds, 2),
    }
    print(f"{result['cpu']}: {backend.setup}", flush=True)
    if compare:
        rule = choose_threads(None, watch)
        result["thread_rule_at_start"] = f"{rule.count} ({rule.why})"
        first = args.suites.split(",")[0]
        result["threads_compared"] = bench_threads(
            backend, first, counts[first], args.rounds, compare
        )
        result["loadavg_end"] = os.getloadavg()
        bench_local.print_report(result, args.json)
        return
    result["suites"] = {}
    for name in args.suites.split(","):
        result["suites"][name] = bench_suite(backend, name, counts[name], args.rounds, threads)
    result["loadavg_end"] = os.getloadavg()
    bench_local.print_report(result, args.json)
    print(
        "\n| suite | examples | packed ms/ex wall (min-max) | alone ms/ex wall (min-max) "
        "| alone/packed wall | packed CPU ms/ex (min-max) | alone CPU ms/ex (min-max) "
        "| alone/packed CPU | same bits |\n|---|--:|--:|--:|--:|--:|--:|--:|---|"
    )
    for name, s in result["suites"].items():
        cells = [name, str(s["examples"])]
        for kind in ("ms_per_example", "cpu_ms_per_example"):
            for mode in ("packed", "alone"):
                v = s[f"{kind}_rounds"][mode]
                cells.append(f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})")
            suffix = "" if kind == "ms_per_example" else "_cpu"
            cells.append(f"{s[f'ratio_alone_over_packed{suffix}']}x")
        cells.append(str(s["same_bits_packed_and_alone_every_round"]))
        print("| " + " | ".join(cells) + " |")
    print(
        "\n| suite | GFLOP/ex | GFLOPS packed (wall) | peak (wall, median) | share "
        "| GFLOPS per CPU s | peak per CPU s (best) | share |\n|---|--:|--:|--:|--:|--:|--:|--:|"
    )
    for name, s in result["suites"].items():
        print(
            f"| {name} | {s['useful_gflop_per_example']} | {s['achieved_gflops_packed']} "
            f"| {s['matmul_peak_gflops_median']} | {s['share_of_peak_packed']:.0%} "
            f"| {s['achieved_gflops_per_cpu_s_packed']} | {s['matmul_peak_gflops_per_cpu_s_best']} "
            f"| {s['share_of_peak_per_cpu_s_packed']:.0%} |"
        )


if __name__ == "__main__":
    main()
