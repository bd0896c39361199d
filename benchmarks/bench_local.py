"""Benchmark the `local:` backend on PLD's workload shape (not a test; numbers go to BENCHMARKS.md).

The workload: a long shared rule list (~4,900 tokens with Qwen2.5's tokenizer, built
synthetically like the reference workload: for timing, the token count matters, not the wisdom
of the rules) in front of many short StereoSet bias-domain items (from
suites/data/stereoset/dev_reconstructed.json; synthetic sentences when that file is absent).

Measured in one process, on the same model and examples, interleaved over rounds so that a
noisy neighbour hurts every method alike (medians are reported, wall and CPU time):

  pld_rules        LocalBackend.classify_many with the rules (prefix cached, packed batches)
  pld_norules      the same with the zero-shot system prompt (no rules)
  pld_unpacked     the rules, one example per forward pass (pack_tokens=1)
  copy_rules       a plain loop reusing the rule prefix with copy.deepcopy(cache) per example
  full_rules       a plain loop, one full forward pass per example, rules in the prompt
  full_norules     the same loop without rules

and, in fresh subprocesses with an empty cache folder, the first start (de-quantising the GGUF
and writing the converted copy) against the second start (loading that copy).

usage: python benchmarks/bench_local.py [--model M] [--examples 24] [--full-examples 3]
           [--rounds 2] [--threads 2] [--no-start] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["gender", "profession", "race", "religion"]
CUES = {
    "gender": "mothers, fathers, sisters, brothers, wives, husbands, girls, boys, gentlemen, ladies",
    "profession": "occupations, job titles, trades, roles at work, professional duties, workplaces",
    "race": "nationalities, ethnic groups, countries of origin, regions, skin colour, ancestry",
    "religion": "faiths, scriptures, clergy, places of worship, religious practices, believers",
}
HEAD = (
    "You classify which kind of social bias a sentence expresses. The four domains are gender, "
    "profession, race and religion."
)
ANSWER = "Answer with exactly one word: gender, profession, race or religion."


def cpu_model() -> str:
    """The CPU's name, family/model and widest vector extension (the name alone, "AMD EPYC",
    does not tell Zen 3 from Zen 4)."""
    try:
        info: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    vector = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return (
        f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model "
        f"{info.get('model', '?')}, {vector.upper()})"
    )


def machine(threads: int) -> dict:
    """Where a figure was measured (BENCHMARKS.md names the CPU with every figure): the CPU,
    torch threads and cores, the load average at the start, torch's version."""
    import torch

    return {
        "cpu": cpu_model(),
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
        "torch": torch.__version__,
    }


def rules_prompt() -> str:
    """~4,900 tokens: 17 rules, each repeated 4 times (the reference workload's recipe)."""
    rules = []
    for k in range(17):
        lab = LABELS[k % 4]
        body = (
            f"Rule {k + 1}. When the sentence's target term refers to {CUES[lab]}, the stereotype "
            f"being expressed belongs to the {lab} domain, even if the adjective that fills the "
            "blank seems to describe something else. Judge the domain from who is being "
            "described, not from what is said about them. "
        )
        rules.append(body * 4)
    return (
        HEAD
        + " Apply the rules below in order; the first rule that matches decides.\n\n"
        + "\n\n".join(rules)
        + "\n\n"
        + ANSWER
    )


def zero_shot_prompt() -> str:
    return HEAD + "\n\n" + ANSWER


def load_items(n: int) -> tuple[list[dict], str]:
    path = ROOT / "suites" / "data" / "stereoset" / "dev_reconstructed.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))["data"]["intrasentence"]
        rows = [
            {"text": s["sentence"], "label": r["bias_type"]}
            for r in data
            for s in r["sentences"]
            if s["gold_label"] == "stereotype" and r["bias_type"] in LABELS
        ]
        random.Random(7).shuffle(rows)
        return rows[:n], str(path.relative_to(ROOT))
    rnd = random.Random(7)
    subjects = {
        "gender": ["The mother", "My brother", "The gentleman", "Her husband"],
        "profession": ["The plumber", "The accountant", "The nurse", "The chess player"],
        "race": [
            "The man from Ghana",
            "People from Italy",
            "The Japanese tourist",
            "Her Eritrean neighbour",
        ],
        "religion": ["The Muslim", "The priest", "The Hindu family", "The Bible reader"],
    }
    adjectives = ["lazy", "strict", "kind", "loud", "rich", "emotional", "clever", "dangerous"]
    rows = []
    for i in range(n):
        lab = LABELS[i % 4]
        rows.append(
            {"text": f"{rnd.choice(subjects[lab])} was {rnd.choice(adjectives)}.", "label": lab}
        )
    return rows, "synthetic"


def user_message(item: dict) -> str:
    return f"Sentence: {item['text']}\nDomain:"


@dataclass
class Times:
    wall: float = 0.0
    cpu: float = 0.0


@contextlib.contextmanager
def timed() -> Iterator[Times]:
    t = Times(time.perf_counter(), time.process_time())
    try:
        yield t
    finally:
        t.wall = time.perf_counter() - t.wall
        t.cpu = time.process_time() - t.cpu


def baseline_ratios(result: dict, ratio: Callable[..., float], labels_seen: dict) -> None:
    """pytest-pld against the plain loops (copy per example, full forward), and their labels."""
    result["ratios"].update(
        {
            "rules_vs_plain_loop_without_rules (pld_rules/full_norules; the issue's reference definition)": ratio(
                "pld_rules", "full_norules"
            ),
            "speedup_vs_full_forward (full_rules/pld_rules)": ratio("full_rules", "pld_rules"),
            "speedup_vs_deepcopy_per_example (copy_rules/pld_rules)": ratio(
                "copy_rules", "pld_rules"
            ),
            "speedup_vs_deepcopy_cpu": ratio("copy_rules", "pld_rules", "cpu"),
            "packing_gain (pld_unpacked/pld_rules)": ratio("pld_unpacked", "pld_rules"),
        }
    )
    agree = {
        "pld_vs_copy_loop": sum(
            a == b for a, b in zip(labels_seen["pld_rules"], labels_seen["copy_rules"])
        ),
        "pld_vs_full_forward": sum(
            a == b for a, b in zip(labels_seen["pld_rules"], labels_seen["full_rules"])
        ),
        "compared_copy": len(labels_seen["copy_rules"]),
        "compared_full": len(labels_seen["full_rules"]),
    }
    result["label_agreement"] = agree


def profile_passes(passes: dict[str, Callable[[], object]]) -> dict[str, str]:
    """torch.profiler's ten operators with the most self CPU time, per pass."""
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, fn in passes.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        out[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
        print(f"profile, {name}:\n{out[name]}", flush=True)
    return out


def print_report(result: dict, path: Path | None) -> None:
    """Print the result as JSON and write it to `path` too when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        path.write_text(text + "\n", encoding="utf-8")


def start_times(model: str, threads: int) -> dict:
    """First start (empty cache: de-quantise + write) vs second start, in fresh processes."""
    code = (
        "import time, json, torch; t0 = time.perf_counter(); "
        f"torch.set_num_threads({threads}); "
        "from pytest_pld.backends.local import LocalBackend; t1 = time.perf_counter(); "
        f"b = LocalBackend({model!r}); b.load(); t2 = time.perf_counter(); "
        "print(json.dumps({'import_s': t1 - t0, 'backend_s': t2 - t1, 'convert_s': b.convert_s}))"
    )
    out = {}
    with tempfile.TemporaryDirectory(prefix="pld-bench-cache-") as cache:
        env = dict(os.environ, PLD_CACHE_DIR=cache)
        for name in ("first_start", "second_start"):
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            wall = time.perf_counter() - t
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            out[name] = {
                "process_wall_s": round(wall, 2),
                **{k: round(v, 2) for k, v in info.items()},
            }
    out["ratio_second_vs_first_backend_s"] = round(
        out["second_start"]["backend_s"] / out["first_start"]["backend_s"], 3
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--examples", type=int, default=24)
    ap.add_argument("--full-examples", type=int, default=3)
    ap.add_argument("--copy-examples", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pack-tokens", type=int, default=None)
    ap.add_argument("--no-start", action="store_true", help="skip the first/second start timing")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--pack-sweep",
        default="",
        help="comma-separated pack_tokens values to time (rules and no rules), e.g. 64,256,1024",
    )
    ap.add_argument(
        "--only-pld",
        action="store_true",
        help="time pytest-pld with and without rules only: no copy or full-forward loops (each "
        "needs more forward passes over the whole rule list, minutes on a slow machine)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds, print torch.profiler's top operators of one pass with rules "
        "and one without",
    )
    args = ap.parse_args()

    import torch

    from pytest_pld.backends.local import LocalBackend
    from pytest_pld.backends.local.scoring import model_cache

    torch.set_num_threads(args.threads)
    result: dict = {"model": args.model, **machine(args.threads)}
    if not args.no_start:
        result["start"] = start_times(args.model, args.threads)
        print(json.dumps(result["start"]), flush=True)

    options = {} if args.pack_tokens is None else {"pack_tokens": args.pack_tokens}
    backend = LocalBackend(args.model, threads=args.threads, **options)
    backend.load()
    tok, model = backend.tokenizer, backend.model
    items, source = load_items(args.examples)
    users = [user_message(it) for it in items]
    gold = [it["label"] for it in items]
    rules, zero = rules_prompt(), zero_shot_prompt()
    result.update(
        items=len(items),
        items_source=source,
        rules_tokens=backend.count_tokens(rules),
        pack_tokens=backend.pack_tokens,
        dtype=str(backend.dtype),
        # Packing needs row-independent matrix kernels (checked bitwise at start-up); without
        # them every forward pass holds one example and pld_unpacked equals pld_rules.
        packing=backend.rows_independent,
        prefix_reuse=backend.prefix_reuse,
    )
    label_first = [tok(label, add_special_tokens=False).input_ids[0] for label in LABELS]

    def ids_for(system: str, user: str) -> torch.Tensor:
        return torch.tensor(
            [tok(backend.prompts.prompt_text(system, user), add_special_tokens=False).input_ids]
        )

    def first_token_label(logits: torch.Tensor) -> str:
        return LABELS[int(torch.argmax(logits[label_first]))]

    def full_loop(system: str, n: int) -> list[str]:
        with torch.inference_mode():
            return [
                first_token_label(model(ids_for(system, u), logits_to_keep=1).logits[0, -1])
                for u in users[:n]
            ]

    # The reference "copy per example" loop: the rule prefix's cache deep-copied per example.
    copy_prefix, plen = None, 0
    with torch.inference_mode(), timed() as t_copy_prefix:
        if not args.only_pld:
            a, b = ids_for(rules, "AAAA")[0], ids_for(rules, "BBBB")[0]
            plen = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
            copy_prefix = model_cache(model(a[None, :plen], use_cache=True, logits_to_keep=1))

    def copy_loop(n: int) -> list[str]:
        out = []
        with torch.inference_mode():
            for u in users[:n]:
                ids = ids_for(rules, u)
                o = model(
                    ids[:, plen:],
                    cache=copy.deepcopy(copy_prefix),
                    use_cache=True,
                    logits_to_keep=1,
                )
                out.append(first_token_label(o.logits[0, -1]))
        return out

    def pld(system: str, pack: int | None = None, count: int | None = None) -> list[str]:
        saved = backend.pack_tokens
        if pack is not None:
            backend.pack_tokens = pack
        try:
            return [c.label for c in backend.classify_many(system, users[:count], LABELS)]
        finally:
            backend.pack_tokens = saved

    # Prefix builds (once per system prompt), timed on their own.
    pld(rules)  # builds the rules prefix (timed inside the backend), then classifies
    list(backend.classify_many(zero, users[:1], LABELS))
    prefix_build_s = backend._prefixes[rules].compute_s
    result["prefix"] = {
        "pld_rules_prefix_build_s": round(prefix_build_s, 2),
        "copy_loop_prefix_build_s": None if args.only_pld else round(t_copy_prefix.wall, 2),
        "prefix_tokens": len(backend._prefixes[rules].head.ids),
    }

    n, n_copy, n_full = (
        len(users),
        min(args.copy_examples, len(users)),
        min(args.full_examples, len(users)),
    )
    plan = [
        ("pld_rules", n, lambda: pld(rules)),
        ("pld_norules", n, lambda: pld(zero)),
        ("pld_unpacked", n_copy, lambda: pld(rules, pack=1, count=n_copy)),
        ("copy_rules", n_copy, lambda: copy_loop(n_copy)),
        ("full_norules", n_full, lambda: full_loop(zero, n_full)),
    ]
    if args.only_pld:
        plan = plan[:2]
    times: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": []} for name, _, _ in plan
    }
    labels_seen: dict[str, list[str]] = {}
    for r in range(args.rounds):
        for name, count, fn in plan:
            with timed() as t:
                got = fn()
            times[name]["wall"].append(t.wall / count)
            times[name]["cpu"].append(t.cpu / count)
            labels_seen[name] = got
            print(
                f"round {r} {name}: {t.wall / count * 1000:.1f} ms/example wall, "
                f"{t.cpu / count * 1000:.1f} ms CPU, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    if not args.only_pld:
        # The full forward with ~4,900 tokens per example is slow: one round only.
        with timed() as t:
            labels_seen["full_rules"] = full_loop(rules, n_full)
        times["full_rules"] = {"wall": [t.wall / n_full], "cpu": [t.cpu / n_full]}
        print(f"full_rules: {t.wall / n_full * 1000:.1f} ms/example wall", flush=True)

    med = {
        k: {m: statistics.median(v[m]) * 1000 for m in ("wall", "cpu")} for k, v in times.items()
    }
    result["ms_per_example"] = {k: {m: round(x, 1) for m, x in v.items()} for k, v in med.items()}
    result["ms_per_example_all_rounds_wall"] = {
        k: [round(x * 1000, 1) for x in v["wall"]] for k, v in times.items()
    }

    def ratio(a: str, b: str, m: str = "wall") -> float:
        return round(med[a][m] / med[b][m], 3)

    result["ratios"] = {
        "rules_vs_norules_same_method (pld_rules/pld_norules)": ratio("pld_rules", "pld_norules"),
        "rules_vs_norules_same_method_cpu": ratio("pld_rules", "pld_norules", "cpu"),
        "prefix_build_amortised_over_500_examples_ms": round(prefix_build_s / 500 * 1000, 1),
    }
    result["accuracy_vs_gold"] = {
        "pld_rules": round(sum(a == b for a, b in zip(labels_seen["pld_rules"], gold)) / n, 3),
        "pld_norules": round(sum(a == b for a, b in zip(labels_seen["pld_norules"], gold)) / n, 3),
    }
    if args.profile:
        result["profile"] = profile_passes(
            {"rules": lambda: pld(rules), "norules": lambda: pld(zero)}
        )
    if not args.only_pld:
        baseline_ratios(result, ratio, labels_seen)
    if args.pack_sweep:
        sweep = {}
        for pack in (int(x) for x in args.pack_sweep.split(",")):
            row = {}
            for name, system in (("rules", rules), ("norules", zero)):
                with timed() as t:
                    pld(system, pack=pack)
                row[name] = round(t.wall / n * 1000, 1)
            row["ratio"] = round(row["rules"] / row["norules"], 3)
            sweep[pack] = row
            print(f"pack_tokens {pack}: {row}", flush=True)
        result["pack_sweep_ms_per_example"] = sweep
    result["loadavg_end"] = os.getloadavg()
    print_report(result, args.json)
    print("\n| measure | ms/example (wall) | ms/example (CPU) |\n|---|---|---|")
    for k, v in result["ms_per_example"].items():
        print(f"| {k} | {v['wall']} | {v['cpu']} |")
    print("\n| ratio | value |\n|---|---|")
    for k, v in result["ratios"].items():
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
