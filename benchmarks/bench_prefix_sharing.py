"""How much work sharing example prefixes beyond the system prompt could save, per shipped suite
(not a test; the measurement behind BENCHMARKS.md's "Prefix sharing" section).

Examples of one suite often start alike: ContractNLI's premises are spans of one contract for
several hypotheses, LogiQA's questions share passages, intrasentence items share a context.
The local backend computes each example's tokens after the system prompt's cached prefix; a
token-level prefix cache would compute a prefix shared with an earlier example once. Here,
with the backend's own tokenization (`ChatPrompts`: the tokens after the head and the user
turn's opening), the test split's examples are sorted so that shared prefixes run together,
and each example's longest prefix already seen is counted, at token granularity and in whole
chunks (16 tokens: shared chunks at fixed positions). The saving is given as a share of the
computed tokens (label branches included) and of the useful FLOPs (the linear layers per
token, the attention over the system prefix and causally over the example, the output layer
for the scored rows; the same count as `bench_suites.py`), with the speed-up it caps.

Only the tokenizer is loaded (no weights, no torch forward pass).

usage: python benchmarks/bench_prefix_sharing.py [--model M] [--chunk 16] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local  # cpu_model, print_report

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("contractnli", "logiqa", "stereoset", "stereoset-intrasentence")


def flop_model(folder: Path) -> dict[str, int]:
    """The model's sizes that the FLOP count needs, from its config.json."""
    c = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim") or hidden // heads
    kv = c.get("num_key_value_heads", heads)
    per_layer = (
        2 * hidden * heads * head_dim
        + 2 * hidden * kv * head_dim
        + 3 * hidden * c["intermediate_size"]
    )
    return {
        "linear": per_layer * c["num_hidden_layers"],
        "attention": 4 * heads * head_dim * c["num_hidden_layers"],  # per query-key pair
        "head": 2 * hidden * c["vocab_size"],  # per scored row
    }


def tokens_flops(sizes: dict[str, int], start: int, first: int, n: int) -> float:
    """FLOPs of computing tokens first..n-1 of an example after `start` prefix tokens."""
    rows = n - first
    pairs = rows * start + (n * (n + 1) - first * (first + 1)) / 2
    return 2 * rows * sizes["linear"] + sizes["attention"] * pairs


def measure(suite_name: str, prompts: Any, sizes: dict[str, int], chunk: int) -> dict:
    from pytest_pld.runner import prepare
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / f"{suite_name}.yaml", ROOT)
    prepared = prepare(suite, split="test")
    head = prompts.head(prepared.system_prompt)
    start = len(head.ids)
    label_ids = prompts.label_ids(list(suite.labels))
    branches = sum(len(ids) - 1 for ids in label_ids)
    tails = [tuple(prompts.tail_ids(head, u) or ()) for u in prepared.users]
    out: dict = {"examples": len(tails), "system_prefix_tokens": start}
    total_tokens = sum(len(t) + branches for t in tails)
    total_flops = sum(
        tokens_flops(sizes, start, 0, len(t) + branches) + (1 + branches) * sizes["head"]
        for t in tails
    )
    out["computed_tokens"] = total_tokens
    out["useful_gflop"] = round(total_flops / 1e9, 1)
    for step in (1, chunk):
        seen: set[tuple[int, ...]] = set()
        saved_tokens, saved_flops = 0, 0.0
        for tail in sorted(tails):  # examples sharing a prefix run together
            shared = 0
            for k in range(step, len(tail), step):  # never the last token: it is scored
                if tail[:k] not in seen:
                    break
                shared = k
            seen.update(tail[:k] for k in range(step, len(tail), step))
            saved_tokens += shared
            saved_flops += tokens_flops(sizes, start, 0, shared)
        key = "token" if step == 1 else f"chunk{step}"
        out[f"saved_token_share_{key}"] = round(saved_tokens / total_tokens, 3)
        out[f"saved_flop_share_{key}"] = round(saved_flops / total_flops, 3)
        out[f"speedup_cap_{key}"] = round(total_flops / (total_flops - saved_flops), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from pytest_pld.backends.local.prompts import ChatPrompts
    from pytest_pld.backends.packaged import ensure_converted

    folder = ensure_converted(args.model)
    prompts = ChatPrompts(AutoTokenizer.from_pretrained(str(folder)))
    sizes = flop_model(folder)
    result: dict = {"model": args.model, "cpu": bench_local.cpu_model(), "chunk": args.chunk}
    result["suites"] = {name: measure(name, prompts, sizes, args.chunk) for name in SUITES}
    bench_local.print_report(result, args.json)
    c = args.chunk
    print(
        f"\n| suite | examples | computed tokens | shared tokens | shared in {c}-token chunks "
        f"| FLOPs saved ({c}-token chunks) | speed-up cap |\n|---|--:|--:|--:|--:|--:|--:|"
    )
    for name, s in result["suites"].items():
        print(
            f"| {name} | {s['examples']} | {s['computed_tokens']:,} "
            f"| {s['saved_token_share_token']:.1%} | {s['saved_token_share_chunk' + str(c)]:.1%} "
            f"| {s['saved_flop_share_chunk' + str(c)]:.1%} | {s['speedup_cap_chunk' + str(c)]}x |"
        )


if __name__ == "__main__":
    main()
