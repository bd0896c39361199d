"""Throughput of the `openai:` backend against a real local server (not a test; numbers go to
BENCHMARKS.md).

The server is `transformers serve` of the converted packaged Qwen2.5-Coder-0.5B folder on
127.0.0.1 (the GGUF cannot be served as it is; `ensure_converted` writes the folder once). The
workload is the shipped StereoSet suite: its rendered system prompt (the distilled rules) and a
fixed sample of test-split user messages, classified through `OpenAIBackend.classify_many` at
each concurrency (requests in flight), in rounds that interleave the concurrencies so that a
noisy neighbour hurts each alike. Reported: examples per second (median over rounds), and the
answers' agreement with concurrency 1 (batching on the server must not change an answer).

usage: python benchmarks/bench_server.py [--examples 24] [--concurrency 1 4 16] [--rounds 2]
           [--dtype float32|bfloat16] [--continuous-batching] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from pytest_pld.backends.packaged import auto_dtype

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import cpu_model  # the benchmarks' one description of the machine

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
MODEL = "qwen2.5-coder-0.5b-instruct"
SERVE = (
    "import sys; from transformers.cli.transformers import main; "
    "sys.argv[0] = 'transformers'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, log: Path, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-c", SERVE, "serve", str(folder), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--device", "cpu", *extra]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return proc, url
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server not ready after 300 s")


def workload(n: int) -> tuple[str, list[str], list[str]]:
    from pytest_pld.runner import prepare
    from pytest_pld.suite import load_suite

    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    prepared = prepare(suite, split="test", limit=n)
    return prepared.system_prompt, prepared.users, list(suite.labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--continuous-batching",
        action="store_true",
        help="start the server with --continuous-batching (paged attention)",
    )
    parser.add_argument(
        "--dtype",
        default=auto_dtype(),
        help="the server's dtype (default: bfloat16 with AVX512-BF16 or AMX, else float32)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from pytest_pld.backends.openai_backend import OpenAIBackend
    from pytest_pld.backends.packaged import ensure_converted

    folder = Path(ensure_converted(MODEL))
    system, users, labels = workload(args.examples)
    extra = ["--dtype", args.dtype]
    if args.continuous_batching:
        extra.append("--continuous-batching")
    log = Path(tempfile.mkdtemp(prefix="pld-bench-")) / "serve.log"
    proc, url = start_server(folder, log, extra)
    rates: dict[int, list[float]] = {c: [] for c in args.concurrency}
    answers: dict[int, list[str]] = {}
    try:
        with OpenAIBackend(str(folder), base_url=url, concurrency=1, timeout=600) as warm:
            list(warm.classify_many(system, users[:2], labels))  # load and first-call costs
        for _ in range(args.rounds):
            for c in args.concurrency:
                with OpenAIBackend(str(folder), base_url=url, concurrency=c, timeout=600) as b:
                    started = time.perf_counter()
                    got = list(b.classify_many(system, users, labels))
                    elapsed = time.perf_counter() - started
                rates[c].append(len(users) / elapsed)
                answers[c] = [g.raw for g in got]
                print(f"concurrency {c:>2}: {len(users) / elapsed:.2f} examples/s", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    base = answers[args.concurrency[0]]
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "model": MODEL,
        "server": "transformers serve " + " ".join(extra),
        "system_prompt_chars": len(system),
        "examples": len(users),
        "rounds": args.rounds,
        "examples_per_s": {str(c): round(statistics.median(r), 3) for c, r in rates.items()},
        "same_answers_as_first": {
            str(c): sum(a == b for a, b in zip(answers[c], base)) for c in args.concurrency
        },
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
