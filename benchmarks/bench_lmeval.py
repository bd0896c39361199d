"""lm-evaluation-harness against pytest-pld's local backend, in one run (issue 12's owed ratio).

Same model (the packaged model's converted transformers folder, which both load), same dtype
(the local backend's resolved `auto` dtype unless --dtype is given), same examples, same
~4,900-token rule list as `bench_local.py` (its workload functions are reused), same prompt:
lm_eval runs with --apply_chat_template and the rule list as --system_instruction, and the
script checks that lm_eval's rendered context equals pytest-pld's prompt text.

lm_eval is not a project dependency: it runs in a subprocess with another interpreter
(`--lmeval-python`, e.g. the `tox -e bench` environment's python, which has lm_eval 0.4.13),
through its Python API (`HFLM` + `simple_evaluate`, the code path of the `lm_eval` command),
so that start-up and evaluation are timed apart. pytest-pld runs in this process: backend
construction, the first pass over the examples (the rule prefix built once, then the examples)
and a second pass (prefix cached).

usage: python benchmarks/bench_lmeval.py [--model M] [--examples 4] [--threads 2]
           [--dtype auto] [--lmeval-python PYTHON] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_local  # the shared workload: rules, items, user messages

TASK = "pld_anchor"

# Runs under the lm_eval interpreter. argv: config JSON path. Prints one JSON line.
LMEVAL_DRIVER = r"""
import json, sys, time
cfg = json.load(open(sys.argv[1]))
t0, c0 = time.perf_counter(), time.process_time()
import torch
torch.set_num_threads(cfg["threads"])
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
t1 = time.perf_counter()
lm = HFLM(pretrained=cfg["model_dir"], dtype=cfg["dtype"], device="cpu", batch_size=1)
t2, c2 = time.perf_counter(), time.process_time()
res = simple_evaluate(
    model=lm, tasks=[cfg["task"]], task_manager=TaskManager(include_path=cfg["task_dir"]),
    limit=cfg["limit"], apply_chat_template=True, system_instruction=cfg["system"],
    log_samples=True,
)
t3, c3 = time.perf_counter(), time.process_time()
samples = sorted(res["samples"][cfg["task"]], key=lambda s: s["doc_id"])
preds = [max(range(len(s["filtered_resps"])), key=lambda i: s["filtered_resps"][i][0])
         for s in samples]
print(json.dumps({
    "import_s": t1 - t0, "load_s": t2 - t1, "eval_s": t3 - t2, "eval_cpu_s": c3 - c2,
    "requests": sum(len(s["arguments"]) for s in samples),
    "predictions": preds, "first_context": samples[0]["arguments"][0][0],
    "acc": res["results"][cfg["task"]]["acc,none"],
}))
"""


def write_task(folder: Path, items: list[dict]) -> None:
    """An lm_eval multiple-choice task over the items, prompting like `bench_local.user_message`."""
    data = folder / "items.jsonl"
    rows = [{"text": it["text"], "label": bench_local.LABELS.index(it["label"])} for it in items]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    choices = ", ".join(json.dumps(label) for label in bench_local.LABELS)
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Sentence: {{text}}\\nDomain:"\n'
        f"doc_to_choice: [{choices}]\n"
        'target_delimiter: ""\n'
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n",
        encoding="utf-8",
    )


def run_lmeval(python: str, config: dict, folder: Path) -> dict:
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "driver.py").write_text(LMEVAL_DRIVER, encoding="utf-8")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t = time.perf_counter()
    proc = subprocess.run(
        [python, str(folder / "driver.py"), str(folder / "config.json")],
        env=env,
        capture_output=True,
        text=True,
        check=False,  # its stderr is shown below
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"lm_eval failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--examples", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--dtype", default="auto", help="the local backend's dtype; lm_eval gets the same"
    )
    ap.add_argument("--lmeval-python", default=sys.executable)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from pytest_pld.backends.local import LocalBackend

    torch.set_num_threads(args.threads)
    items, source = bench_local.load_items(args.examples)
    users = [bench_local.user_message(it) for it in items]
    rules = bench_local.rules_prompt()
    result: dict = {
        "model": args.model,
        "examples": len(items),
        "items_source": source,
        **bench_local.machine(args.threads),
    }

    with bench_local.timed() as t_load:
        backend = LocalBackend(args.model, dtype=args.dtype, threads=args.threads)
        backend.load()  # the model loads on first use otherwise
    dtype = str(backend.dtype).removeprefix("torch.")
    passes = []
    for _ in range(2):  # first: the prefix is built once; second: it is cached
        with bench_local.timed() as t:
            got = [c.label for c in backend.classify_many(rules, users, bench_local.LABELS)]
        passes.append(t)
    pld_prompt = backend.prompts.prompt_text(rules, users[0])
    result.update(
        dtype=dtype,
        model_dir=str(backend.folder),
        rules_tokens=backend.count_tokens(rules),
        packing=backend.rows_independent,
        pld={
            "load_s": round(t_load.wall, 2),
            "first_pass_s": round(passes[0].wall, 2),
            "first_pass_cpu_s": round(passes[0].cpu, 2),
            "prefix_build_s": round(backend._prefixes[rules].compute_s, 2),
            "second_pass_s": round(passes[1].wall, 3),
            "second_pass_cpu_s": round(passes[1].cpu, 3),
            "acc": sum(a == it["label"] for a, it in zip(got, items)) / len(items),
        },
    )
    print(json.dumps(result["pld"]), flush=True)
    model_dir = str(backend.folder)
    backend.close()  # free its memory before lm_eval loads the same weights
    del backend
    gc.collect()

    with tempfile.TemporaryDirectory(prefix="pld-bench-lmeval-") as tmp:
        folder = Path(tmp)
        write_task(folder, items)
        config = {
            "model_dir": model_dir,
            "dtype": dtype,
            "threads": args.threads,
            "task": TASK,
            "task_dir": str(folder),
            "limit": len(items),
            "system": rules,
        }
        lm = run_lmeval(args.lmeval_python, config, folder)
    context = lm.pop("first_context")
    lm_labels = [bench_local.LABELS[i] for i in lm.pop("predictions")]
    result["lm_eval"] = {k: round(v, 2) if isinstance(v, float) else v for k, v in lm.items()}
    result["same_prompt_text"] = context == pld_prompt
    result["label_agreement"] = f"{sum(a == b for a, b in zip(got, lm_labels))}/{len(items)}"

    n = len(items)
    pld = result["pld"]
    per_example = {
        "lm_eval (evaluation only)": lm["eval_s"] / n,
        "pytest-pld first pass (prefix build included)": pld["first_pass_s"] / n,
        "pytest-pld prefix cached": pld["second_pass_s"] / n,
    }
    result["s_per_example"] = {k: round(v, 3) for k, v in per_example.items()}
    lm_s = per_example["lm_eval (evaluation only)"]
    result["ratios"] = {
        "lm_eval / pytest-pld first pass": round(
            lm_s / per_example["pytest-pld first pass (prefix build included)"], 1
        ),
        "lm_eval / pytest-pld prefix cached": round(
            lm_s / per_example["pytest-pld prefix cached"], 1
        ),
        "process-level: lm_eval subprocess wall / pytest-pld (load + first pass)": round(
            lm["process_wall_s"] / (pld["load_s"] + pld["first_pass_s"]), 1
        ),
    }
    result["loadavg_end"] = os.getloadavg()
    bench_local.print_report(result, args.json)


if __name__ == "__main__":
    main()
