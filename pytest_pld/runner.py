"""The runner: evaluate a suite split with a student model, through the response cache.

It renders the system prompt once, looks every example up in the cache, sends only the misses
to the backend (which reuses the shared system prefix), stores each answer as soon as it
arrives (so Ctrl-C loses nothing that finished), and writes a run record (`record.py`).

When the instruction set has a calibration, the runner checks it is fresh for this student and
prompt before any model call (a stale one is an error with the refit command), and adds its
offsets to each result's label scores before the answer is taken; `apply_calibration=False`
(`--no-calibration`) shows the raw student instead, and the record says so.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import (
    Backend,
    Classification,
    Configured,
    cheap_identity,
    cheap_token_counter,
    get_backend,
)
from .cache import ResponseCache, classify_key
from .calibration_run import calibrate_results, require_fresh
from .datasets import Example
from .errors import PldError
from .example_clusters import example_clusters
from .instructions import InstructionSet
from .labels import top_label
from .progress import Progress
from .record import (
    ExampleResult,
    RunRecord,
    calibration_entry,
    compute_metrics,
    save_record,
    sha256_text,
)
from .suite import Suite
from .suite.data_checks import render_users

if TYPE_CHECKING:
    from .shards import Shard


@dataclass
class PreparedSuite:
    """A suite rendered for one split: what the model will see, without running anything."""

    suite: Suite
    split: str
    instructions: InstructionSet
    system_prompt: str
    examples: list[Example]
    users: list[str]


def prepare(
    suite: Suite,
    *,
    split: str | None = None,
    limit: int | None = None,
    instructions: InstructionSet | None = None,
    examples: Sequence[Example] | None = None,
) -> PreparedSuite:
    split = split or suite.gate_split
    iset = instructions or suite.load_instructions()
    system = suite.system_prompt(iset)
    if examples is None:
        examples = suite.load_examples(split, limit=limit)
    users = render_users(suite, examples, split)
    return PreparedSuite(suite, split, iset, system, list(examples), users)


class LazyBackend:
    """Creates the backend on first use, so a fully cached run never loads a model."""

    def __init__(self, name: str, factory: Callable[[str], Backend] | None = None) -> None:
        self.name = name
        self._factory = factory or get_backend  # None: the registry's own construction
        self._backend: Backend | None = None
        self._identity: dict[str, Any] | None = None
        self._counter: Callable[[str], int] | None = None

    def get(self) -> Backend:
        if self._backend is None:
            self._backend = self._factory(self.name)
        return self._backend

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = self._cheap_identity() or dict(self.get().identity())
        return self._identity

    def _cheap_identity(self) -> dict[str, Any] | None:
        """The identity without loading a model (a local model: its pinned weights digest,
        no torch import), so that a fully cached run never pays for a model it does not call.
        The registry knows which providers can tell; a custom factory is asked directly."""
        if self._backend is not None:
            return None
        if isinstance(self._factory, Configured):
            return cheap_identity(self.name, **self._factory.options)
        return cheap_identity(self.name) if self._factory is get_backend else None

    def token_counter(self) -> Callable[[str], int]:
        """The backend's `count_tokens`; for a model not loaded yet whose provider can count
        without it (a local model: its tokenizer alone, a fraction of a second instead of
        loading the weights). Raises PldError at once when the model is missing, so callers
        can fall back to counting characters."""
        if self._counter is None:
            registry = self._factory is get_backend or isinstance(self._factory, Configured)
            if self._backend is None and registry:  # options do not change the tokenizer
                self._counter = cheap_token_counter(self.name)
            if self._counter is None:
                self._counter = self.get().count_tokens
        return self._counter

    def setup(self) -> str | None:
        """What the loaded backend computes with and why (a local model's dtype, threads and
        packing), None when it was not loaded or does not say."""
        setup = getattr(self._backend, "setup", None)
        return setup if isinstance(setup, str) else None

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


class BackendPool:
    """One lazily created backend per model name, shared by everything a session runs (token
    counts, runs of several suites or of both sides of a review)."""

    def __init__(self, factory: Callable[[str], LazyBackend] = LazyBackend) -> None:
        self._factory = factory
        self._by_name: dict[str, LazyBackend] = {}

    def get(self, name: str) -> LazyBackend:
        if name not in self._by_name:
            self._by_name[name] = self._factory(name)
        return self._by_name[name]

    def setups(self) -> list[str]:
        """ "NAME: SETUP" of every loaded backend that says how it computes."""
        return [f"{name}: {lazy.setup()}" for name, lazy in self._by_name.items() if lazy.setup()]

    def close(self) -> None:
        for lazy in self._by_name.values():
            lazy.close()
        self._by_name.clear()


def size_counter(
    lazy: LazyBackend, *, tokens: bool = True, notes: list[str] | None = None
) -> tuple[Callable[[str], int], str]:
    """A prompt-size function and its unit: the model's tokenizer ("tokens"), or characters
    ("chars") when `tokens` is off. When the tokenizer is unavailable (model not installed),
    raise - or, given `notes`, fall back to characters and say why there."""
    if tokens:
        try:
            return lazy.token_counter(), "tokens"
        except PldError as exc:
            if notes is None:
                raise
            notes.append(f"counting characters, not tokens: {exc.message}")
    return len, "chars"


def classify_cached(
    backend: LazyBackend,
    cache: ResponseCache,
    system: str,
    examples: Sequence[Example],
    users: Sequence[str],
    labels: Sequence[str],
    *,
    progress: Progress | None = None,
) -> tuple[list[ExampleResult], int]:
    """Classify through the cache; returns results in example order and the number of hits."""
    identity = backend.identity()
    keys = [classify_key(identity, system, u, labels) for u in users]
    found = cache.get_many(keys)
    results: list[ExampleResult | None] = [None] * len(examples)
    for i, key in enumerate(keys):
        if key in found:
            value = found[key]
            # the cache stores Classification objects (older entries may be plain dicts)
            answer = value if isinstance(value, Classification) else Classification(**value)  # type: ignore[arg-type]
            results[i] = _result(examples[i], answer, cached=True)
    hits = sum(r is not None for r in results)
    if progress and hits:
        progress(hits, cached=True)
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        model = backend.get()
        stream = model.classify_many(system, [users[i] for i in todo], labels)
        for i, answer in zip(todo, stream):
            cache.put(keys[i], answer)
            results[i] = _result(examples[i], answer, cached=False)
            if progress:
                progress(1)
    return [r for r in results if r is not None], hits


def _result(example: Example, c: Classification, *, cached: bool) -> ExampleResult:
    pred = c.label
    if c.tie and c.scores:
        # The backend resolved the tie by the user message; the record resolves it by the
        # example's id, so that it goes the same way whatever the instructions render.
        pred = top_label(c.scores, example.id)[0]
    return ExampleResult(
        id=example.id,
        gold=example.label,
        pred=pred,
        latency_ms=c.latency_s * 1000.0,
        prompt_tokens=c.prompt_tokens,
        scores=dict(c.scores) if c.scores else None,
        raw=c.raw,
        truncated=c.truncated,
        cached=cached,
        tie=c.tie if c.scores else None,  # an answer without scores cannot tie
    )


def default_cache_path(root: Path) -> Path:
    return root / ".pld" / "cache.sqlite"


def default_results_dir(root: Path) -> Path:
    return root / ".pld" / "runs"


def run_suite(
    suite: Suite,
    *,
    split: str | None = None,
    limit: int | None = None,
    model: str | None = None,
    cache_mode: str = "use",
    cache_path: Path | None = None,
    measure_without_rules: bool = False,
    results_dir: Path | None = None,
    instructions: InstructionSet | None = None,
    backend: LazyBackend | None = None,
    progress: bool | None = None,
    write_record: bool = True,
    shard: Shard | None = None,
    examples: Sequence[Example] | None = None,
    progress_desc: str | None = None,
    apply_calibration: bool = True,
) -> RunRecord:
    """Evaluate one split of a suite and (by default) write its run record. With `shard`,
    only that part of the (limited) sample, into a partial record without metrics.
    `examples`: these examples of `split` instead of loading it (a fold of it, chosen by the
    caller). `progress_desc` names the work on the progress line (default: suite/split).
    The instruction set's calibration, when it has one, is checked and applied unless
    `apply_calibration` is False (the raw student; the record says it was switched off)."""
    if limit is not None and limit < 1:
        raise PldError(f"limit must be a positive integer, got {limit}")
    started = time.perf_counter()
    prepared = prepare(
        suite, split=split, limit=limit, instructions=instructions, examples=examples
    )
    if not prepared.examples:
        raise PldError(f"split {prepared.split!r} has no examples", path=suite.path)
    whole = len(prepared.examples)
    positions: list[int] = []
    sample = ""
    if shard is not None:
        from .shards import select

        prepared, positions, sample = select(prepared, shard)
    # checked before any model call: a suite whose examples lack the key fails at once
    cluster_ids = example_clusters(suite, prepared.examples)
    model_name = model or suite.student
    own_backend = backend is None
    lazy = backend or LazyBackend(model_name)
    cache = ResponseCache(cache_path or default_cache_path(suite.root), mode=cache_mode)
    total = len(prepared.examples) * (2 if measure_without_rules else 1)
    bar = Progress(total, progress_desc or f"{suite.name}/{prepared.split}", progress)
    cal = prepared.instructions.calibration if apply_calibration else None  # what is applied
    try:
        if cal is not None:  # before any model call: stale offsets are an error
            require_fresh(
                cal,
                labels=suite.labels,
                student=model_name,
                system_prompt=prepared.system_prompt,
                suite=suite.name,
                backend=lazy.identity(),
            )
        results, hits = classify_cached(
            lazy,
            cache,
            prepared.system_prompt,
            prepared.examples,
            prepared.users,
            suite.labels,
            progress=bar,
        )
        without = None
        if measure_without_rules:
            bare = prepared.instructions.without_rules()
            bare_system = suite.system_prompt(bare)
            without, bare_hits = classify_cached(
                lazy,
                cache,
                bare_system,
                prepared.examples,
                prepared.users,
                suite.labels,
                progress=bar,
            )
            hits += bare_hits
        identity = lazy.identity()
    except KeyboardInterrupt:
        raise PldError(
            "interrupted; every answer that finished is in the cache",
            hint="re-run the same command to resume",
        ) from None
    finally:
        bar.close()
        cache.close()
        if own_backend:
            lazy.close()
    for rows in (results, without or []):
        for row, cluster in zip(rows, cluster_ids or ()):
            row.cluster = cluster
    if cal is not None:  # the rule-free run of latency_overhead stays raw
        calibrate_results(cal, results, suite.labels, student=model_name)
    iset = prepared.instructions
    record = RunRecord(
        suite=suite.name,
        split=prepared.split,
        limit=limit,
        model=model_name,
        backend=identity,
        instructions={
            "path": str(iset.path.relative_to(suite.root)) if iset.path else None,
            "name": iset.name,
            "version": iset.version,
            "hash": iset.content_hash(),
            "rules": len(iset.rules),
        },
        labels=list(suite.labels),
        system_prompt_sha256=sha256_text(prepared.system_prompt),
        results=results,
        without_rules=without,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        duration_s=round(time.perf_counter() - started, 3),
        cache_hits=hits,
        cache_misses=total - hits,
        cluster_key=suite.cluster_key,
        skipped=dict(suite.split_data(prepared.split).skipped),
        calibration=calibration_entry(iset.calibration, applied=apply_calibration),
    )
    names = [
        *suite.metrics,
        *(b.metric for b in suite.gates),
        "invalid_rate",
        "tie_rate",
        "prompt_tokens",
        "latency_p50_ms",
        "latency_p95_ms",
    ]
    if measure_without_rules:
        names.append("latency_overhead")
    names = list(dict.fromkeys(names))
    part = ""
    if shard is None:
        record.metrics = compute_metrics(record, names)
    else:
        from .shards import shard_info

        record.shard = shard_info(
            record, shard, positions=positions, total=whole, sample=sample, metric_names=names
        )
        part = f"-shard{shard.index}of{shard.count}"
    if write_record:
        folder = results_dir or default_results_dir(suite.root)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        save_record(record, folder / f"{suite.name}-{prepared.split}{part}-{stamp}.json")
    return record
