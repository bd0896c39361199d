"""The runner: evaluate a suite split with a student model, through the response cache.

It renders the system prompt once, looks every example up in the cache, sends only the misses
to the backend (which reuses the shared system prefix), stores each answer as soon as it
arrives (so Ctrl-C loses nothing that finished), and writes a run record.

It is a little over 450 lines because the run record's types (`ExampleResult`, `RunRecord`
with its JSON form, predictions and tie count) live here beside the run that writes them;
they are the part to move into a module of their own when it grows again.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import metrics
from .backends import (
    Backend,
    Classification,
    Configured,
    cheap_identity,
    cheap_token_counter,
    get_backend,
)
from .cache import ResponseCache, classify_key
from .clusters import example_clusters
from .datasets import Example
from .errors import PldError
from .instructions import InstructionSet
from .labels import top_label
from .metrics import Predictions
from .progress import Progress
from .render import render_system_prompt, render_user_message
from .suite import Suite, example_fields
from .textio import read_json_object
from .yamlio import atomic_write_text

if TYPE_CHECKING:
    from .shards import Shard

RECORD_SCHEMA = 1


@dataclass
class ExampleResult:
    id: str
    gold: str
    pred: str
    latency_ms: float
    prompt_tokens: int
    scores: dict[str, float] | None = None
    raw: str = ""
    truncated: bool = False
    cached: bool = False
    cluster: str | None = None  # the example's id under the suite's cluster_key
    #: the top score tied exactly with another label's (None: a record from before ties
    #: were recorded)
    tie: bool | None = None


@dataclass
class RunRecord:
    """Everything a gate, a report or a review needs about one evaluation."""

    suite: str
    split: str
    limit: int | None
    model: str
    backend: dict[str, Any]
    instructions: dict[str, Any]
    labels: list[str]
    system_prompt_sha256: str
    results: list[ExampleResult]
    without_rules: list[ExampleResult] | None = None
    created_at: str = ""
    duration_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    cluster_key: str | None = None  # what `ExampleResult.cluster` holds (None: no clusters)
    # a shard's partial record: which part of which run (shards.shard_info); no metrics
    shard: dict[str, Any] | None = None
    path: str | None = None

    def predictions(self) -> Predictions:
        base = [r.latency_ms for r in self.without_rules] if self.without_rules else []
        return metrics.Predictions(
            labels=tuple(self.labels),
            gold=tuple(r.gold for r in self.results),
            pred=tuple(r.pred for r in self.results),
            latency_ms=tuple(r.latency_ms for r in self.results),
            prompt_tokens=tuple(r.prompt_tokens for r in self.results),
            baseline_latency_ms=tuple(base),
            tie=tuple(r.tie for r in self.results),
        )

    def tie_count(self) -> int | None:
        """Answers that were exact top-score ties; None for a record written before results
        had the flag (unknown, not 0)."""
        known = [r.tie for r in self.results if r.tie is not None]
        return sum(known) if known else None

    def comparable_key(self) -> dict[str, Any]:
        """What must match for two records to be compared example by example."""
        return {
            "suite": self.suite,
            "split": self.split,
            "limit": self.limit,
            "model": self.model,
            "labels": self.labels,
        }

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("path", None)
        return {"schema": RECORD_SCHEMA, **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: str | None = None) -> RunRecord:
        if data.get("schema") != RECORD_SCHEMA:
            raise PldError(
                f"unsupported run record schema {data.get('schema')!r}",
                path=path,
                hint=f"this version reads schema {RECORD_SCHEMA}; re-create it",
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        kwargs["results"] = [ExampleResult(**r) for r in data["results"]]
        if data.get("without_rules") is not None:
            kwargs["without_rules"] = [ExampleResult(**r) for r in data["without_rules"]]
        kwargs["path"] = path
        return cls(**kwargs)


def load_record(path: Path) -> RunRecord:
    hint = "re-create it (for a baseline: pytest --pld-update-baseline)"
    data = read_json_object(path, what="run record", hint=hint)
    try:
        return RunRecord.from_json(data, str(path))
    except (KeyError, TypeError) as exc:
        raise PldError(f"run record has the wrong shape ({exc})", path=path, hint=hint) from None


def save_record(record: RunRecord, path: Path, *, repoint: bool = True) -> Path:
    """Write the record atomically; `repoint` makes `record.path` name the new file (a
    baseline copy keeps pointing at the run's own record)."""
    atomic_write_text(path, json.dumps(record.to_json(), indent=1, ensure_ascii=False) + "\n")
    if repoint:
        record.path = str(path)
    return path


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    system = render_system_prompt(iset, suite.labels, suite.root)
    if examples is None:
        examples = suite.load_examples(split, limit=limit)
    where = str(suite.path)
    users = [
        render_user_message(suite.user_template, example_fields(e), where=where) for e in examples
    ]
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
) -> RunRecord:
    """Evaluate one split of a suite and (by default) write its run record. With `shard`,
    only that part of the (limited) sample, into a partial record without metrics.
    `examples`: these examples of `split` instead of loading it (a fold of it, chosen by the
    caller). `progress_desc` names the work on the progress line (default: suite/split)."""
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
    try:
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
            bare_system = render_system_prompt(bare, suite.labels, suite.root)
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


def compute_metrics(record: RunRecord, names: Sequence[str]) -> dict[str, float]:
    """The named metrics of a whole run (never of a shard: see shards.py)."""
    preds = record.predictions()
    return {n: metrics.compute(n, preds) for n in dict.fromkeys(names)}
