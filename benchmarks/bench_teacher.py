"""Benchmark the packaged 1.5B teacher's generation: llama.cpp against transformers, per
`pld teach` trace (not a test; numbers go to BENCHMARKS.md and the README's teacher paragraph).

The workload is `pld teach stereoset` itself (the library function, greedy draw 0; prefill
mode, the local teachers' default, or `--mode json`, whose answers add reasoning and run longer)
on the first N StereoSet train examples through llama.cpp and the first M of the same examples
through transformers (float32 on a CPU without native bfloat16), in one process. The two engines
take turns example by example while both have examples left, so a noisy neighbour hurts both
alike; llama.cpp then teaches the rest. A trace's time is its `latency_s` (the teacher calls of
that example, a repair call included); the first trace of each engine also pays for loading
the model (llama.cpp maps the GGUF in about a second; transformers loads the converted folder),
reported apart as `load_s`. `--also-llama-threads K` adds llama.cpp at K threads on the same
examples, in the same turns (on a CPU other jobs share, fewer threads than cores can be faster:
llama.cpp's threads wait for each other at every layer).

usage: python benchmarks/bench_teacher.py [--model M] [--llama 8] [--transformers 2]
           [--mode prefill|json] [--threads 2] [--also-llama-threads K] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local  # the CPU's name and the machine's state, as the other benchmarks give them

ROOT = Path(__file__).resolve().parents[1]


def summary(latencies: list[float]) -> dict:
    return {
        "traces": len(latencies),
        "median_s": round(statistics.median(latencies), 1),
        "min_s": round(min(latencies), 1),
        "max_s": round(max(latencies), 1),
        "each_s": [round(x, 1) for x in latencies],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--llama", type=int, default=8, help="examples taught through llama.cpp")
    ap.add_argument("--transformers", type=int, default=2, help="... and through transformers")
    ap.add_argument("--mode", choices=("prefill", "json"), default="prefill")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--also-llama-threads", type=int, default=None, metavar="K")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from pytest_pld.backends.local.backend import LocalBackend
    from pytest_pld.backends.local.llamacpp import installed_version
    from pytest_pld.distill.teach import teach
    from pytest_pld.distill.traces import read_traces
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    result: dict = {
        "model": args.model,
        "suite": f"stereoset/train, {args.mode} mode, greedy",
        **bench_local.machine(args.threads),
        "llama_cpp_python": installed_version(),
    }
    # label: (engine, threads, examples); torch's thread count is process-wide and the last
    # backend created sets it, so the transformers one comes last
    plan = {"llama.cpp": ("llama.cpp", args.threads, args.llama)}
    if args.also_llama_threads:
        k = args.also_llama_threads
        plan[f"llama.cpp, {k} thread{'s' if k != 1 else ''}"] = ("llama.cpp", k, args.llama)
    plan["transformers"] = ("transformers", args.threads, args.transformers)
    engines = {label: n for label, (_, _, n) in plan.items() if n}
    backends = {
        label: LocalBackend(args.model, threads=threads, generation=engine)
        for label, (engine, threads, n) in sorted(plan.items(), key=lambda kv: kv[1][1])
        if n
    }
    result["dtype"] = str(next(iter(backends.values())).dtype).removeprefix("torch.")
    with tempfile.TemporaryDirectory(prefix="pld-bench-teacher-") as tmp:
        outs = {name: Path(tmp) / f"{name}.jsonl" for name in backends}
        walls: dict[str, list[float]] = {name: [] for name in backends}
        for i in range(1, max(engines.values()) + 1):
            for name, backend in backends.items():
                if i > engines[name]:
                    continue
                t0 = time.perf_counter()
                teach(suite, teacher=backend, out=outs[name], limit=i, mode=args.mode,
                      progress=False, log=lambda s: None)  # fmt: skip
                walls[name].append(time.perf_counter() - t0)
                print(f"{name} trace {i}: {walls[name][-1]:.1f} s wall", flush=True)
        for name, backend in backends.items():
            traces = read_traces(outs[name]).traces
            latencies = [t.latency_s for t in traces]
            result[name] = {
                **summary(latencies),
                "load_s": round(walls[name][0] - latencies[0], 1),
                "ok": sum(t.ok for t in traces),
                "completion_tokens": [t.completion_tokens for t in traces],
                "rules": [t.rule for t in traces],
            }
            backend.close()
    if "transformers" in backends:
        for label in [b for b in backends if b != "transformers"]:
            paired = zip(result["transformers"]["each_s"], result[label]["each_s"])
            result[f"transformers_over_{label}"] = [round(t / x, 1) for t, x in paired]
    result["loadavg_end"] = os.getloadavg()
    bench_local.print_report(result, args.json)


if __name__ == "__main__":
    main()
