"""The float32 label head's cost on the PLD workload (issue 12: at most 2% of per-example time).

Same process, same model and workload as `bench_local.py` (the ~4,900-token rule list, the
StereoSet items, the backend's default dtype). Two measurements:

  end to end   `classify_many` over the items with the float32 head (`OutputHead.log_probs`)
               and with the plain output-layer path it replaced (the model-dtype logits of
               the whole vocabulary, log-softmax, the labels' entries), interleaved over
               rounds, medians; the prefix is built before the first round.
  in isolation the two head functions alone on the hidden states and targets the backend
               really passed them, repeated, medians; divided by the per-example time above,
               this is the head's share without the forward pass's noise.

usage: python benchmarks/bench_head.py [--model M] [--examples 24] [--rounds 3]
           [--repeats 200] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local  # the shared workload: rules, items, user messages


def plain_log_probs(
    head: Any, hidden: Any, targets: list[list[int]], width: int | None = None
) -> list[list[float]]:
    """The output layer as the model runs it, then log-softmax: the path before the float32 head."""
    import torch

    with torch.inference_mode():
        logits = torch.nn.functional.linear(hidden, head.weight, head.bias).float()
        logp = torch.log_softmax(logits, dim=-1)
        return [[float(logp[i, t]) for t in row] for i, row in enumerate(targets)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--examples", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from pytest_pld.backends.local import LocalBackend, scoring

    torch.set_num_threads(args.threads)
    backend = LocalBackend(args.model, threads=args.threads)
    backend.load()
    items, source = bench_local.load_items(args.examples)
    users = [bench_local.user_message(it) for it in items]
    rules = bench_local.rules_prompt()
    float32_head = scoring.OutputHead.log_probs
    calls: list[tuple[Any, list[list[int]]]] = []

    def recording(
        self: Any, hidden: Any, targets: list[list[int]], width: int | None = None
    ) -> list[list[float]]:
        calls.append((hidden.clone(), [list(t) for t in targets]))
        return float32_head(self, hidden, targets, width)

    scoring.OutputHead.log_probs = recording  # type: ignore[method-assign]
    first = [c.label for c in backend.classify_many(rules, users, bench_local.LABELS)]
    result: dict = {
        "model": args.model,
        "dtype": str(backend.dtype),
        "packing": backend.rows_independent,
        "items": len(items),
        "items_source": source,
        **bench_local.machine(args.threads),
        "head_calls_per_pass": len(calls),
        "rows_per_call": statistics.median(len(t) for _, t in calls),
    }

    variants = {"float32 head": float32_head, "plain output layer": plain_log_probs}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    labels: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name, fn in variants.items():
            scoring.OutputHead.log_probs = fn  # type: ignore[method-assign]
            with bench_local.timed() as t:
                got = [c.label for c in backend.classify_many(rules, users, bench_local.LABELS)]
            wall[name].append(t.wall / len(users) * 1000)
            labels[name] = got
            print(f"round {r} {name}: {wall[name][-1]:.1f} ms/example", flush=True)
    scoring.OutputHead.log_probs = float32_head  # type: ignore[method-assign]
    per_example = {k: statistics.median(v) for k, v in wall.items()}

    isolated: dict[str, float] = {}
    for name, fn in variants.items():
        samples = []
        for _ in range(args.repeats):
            hidden, targets = calls[len(samples) % len(calls)]
            t0 = time.perf_counter()
            fn(backend.head, hidden, targets)
            samples.append(time.perf_counter() - t0)
        # per example: the calls of one pass, spread over its examples
        isolated[name] = statistics.median(samples) * 1000 * len(calls) / len(users)
    extra = isolated["float32 head"] - isolated["plain output layer"]
    result.update(
        ms_per_example_end_to_end={k: round(v, 1) for k, v in per_example.items()},
        ms_per_example_all_rounds={k: [round(x, 1) for x in v] for k, v in wall.items()},
        end_to_end_ratio_float32_vs_plain=round(
            per_example["float32 head"] / per_example["plain output layer"], 3
        ),
        head_ms_per_example_isolated={k: round(v, 2) for k, v in isolated.items()},
        float32_head_share_of_example=round(
            isolated["float32 head"] / per_example["float32 head"], 4
        ),
        float32_head_extra_share_of_example=round(extra / per_example["float32 head"], 4),
        same_labels=labels["float32 head"] == labels["plain output layer"] == first,
        loadavg_end=os.getloadavg(),
    )
    bench_local.print_report(result, args.json)


if __name__ == "__main__":
    main()
