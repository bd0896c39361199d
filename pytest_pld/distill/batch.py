"""`pld teach --batch`: the teacher's requests through an OpenAI-compatible Batch API.

At the paper's scale (thousands of training examples) one request per example is what Batch
APIs exist for: a lower price and no rate-limit fights, in exchange for waiting (up to the
completion window, 24 h at OpenAI).

How it keeps the same traces as the request-by-request path: the very same per-example code
(`TeachContext.ask`, i.e. `ask_for_rule` with its one repair request) runs against a teacher
whose answers come from batch results. A request it has no answer for yet is collected and the
example waits; the collected requests go out as one batch; when the batch is done the examples
are asked again, and an answer that needs its repair request sends that in the next batch. So
a batch run and a direct run that get the same answers write the same traces (timestamps and
latencies aside: a batch has no per-request latency).

Nothing paid for is lost or paid twice:
- every answer is appended to `.pld/batches/answers.jsonl` (keyed like the response cache, by
  everything that changes an answer) as soon as a batch's output is downloaded; a re-run, or a
  run into another traces file, replays it;
- the batch id is written to `.pld/batches/<suite>-<out>.batch.json` right after the batch is
  created, so an interrupted `pld teach --batch` resumes polling that batch instead of
  submitting again (the window between the server creating a batch and this file being
  written is one HTTP response);
- requests that failed or expired (an expired batch still returns what it finished) are
  re-submitted once within the run, then reported as failed traces, which a later run retries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backends.base import GENERATE_DEFAULTS, Backend, GenerateOptions, Generation, Message
from ..cache import generate_key
from ..errors import PldError
from ..roles import RoleConfig
from ..suite import Suite
from .answers import RuleAnswer
from .batchapi import (
    DEFAULT_BATCH_PRICE_RATIO,
    MAX_ATTEMPTS,
    BatchOptions,
    ResultStore,
    collect,
    now,
    openai_client,
    read_state,
    submit,
    wait,
)
from .teach import TeachSummary, count_answer, prepare_teach
from .traces import TraceWriter

#: batches one run submits at most: the first, the repairs, and re-submitted failures of both
MAX_SUBMISSIONS = 4


class NotAnsweredYet(Exception):
    """The batch teacher has no answer for this request yet; the example waits for a batch.
    Not one of answers.CALL_ERRORS, so it leaves `ask_for_rule` instead of failing the call."""


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`response_format` for a JSON schema, as the openai: backend sends it."""
    if "schema" in schema and "name" in schema:
        return {"type": "json_schema", "json_schema": dict(schema)}
    name = "".join(
        c if c.isalnum() or c in "_-" else "_" for c in str(schema.get("title") or "output")
    )[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema)}}


class BatchTeacher:
    """A teacher answering from batch results; unanswered requests are collected."""

    def __init__(self, backend: Backend, store: ResultStore) -> None:
        self.name = backend.name
        self.model = backend.name.partition(":")[2]
        self.identity = dict(backend.identity())
        self.store = store
        self.pending: dict[str, dict[str, Any]] = {}

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        if options.stop or options.prefill:
            raise PldError("the batch path asks in json mode only (no prefill, no stop)")
        if options.temperature is not None or options.seed is not None:
            raise PldError("the batch path teaches the greedy draw only (no --samples)")
        key = generate_key(self.identity, messages, options)
        found = self.store.answers.get(key)
        if found is not None:
            return Generation(
                text=found["text"],
                prompt_tokens=found["prompt_tokens"],
                completion_tokens=found["completion_tokens"],
                finish_reason=found.get("finish_reason"),
            )
        attempts, error = self.store.failures.get(key, (0, ""))
        if attempts >= MAX_ATTEMPTS:
            raise PldError(f"batch request failed {attempts} times: {error}")
        self.pending[key] = self._body(messages, options.max_tokens, options.json_schema)
        raise NotAnsweredYet()

    def _body(
        self, messages: Sequence[Message], max_tokens: int, schema: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The request body the openai: backend sends for the same generate() call."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
        }
        if self.identity.get("temperature") is not None:
            body["temperature"] = self.identity["temperature"]
        if self.identity.get("seed") is not None:
            body["seed"] = self.identity["seed"]
        if schema is not None:
            body["response_format"] = response_format(schema)
        body.update(self.identity.get("extra_body") or {})
        return body


def teach_batch(
    suite: Suite,
    *,
    teacher: Backend,
    client: Any,
    out: Path,
    state_dir: Path,
    split: str = "train",
    limit: int | None = None,
    retry_failed: bool = True,
    options: BatchOptions | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> TeachSummary:
    opts = options or BatchOptions()
    summary = TeachSummary(suite.name, split, teacher.name, "json", out)
    context, pairs = prepare_teach(
        suite, summary, split=split, limit=limit, retry_failed=retry_failed, log=log
    )
    todo = [example for example, _ in pairs]  # one greedy draw per example (summary.samples 1)
    stem = f"{suite.name}-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]}"
    store = ResultStore(state_dir / "answers.jsonl")  # keyed by request: shared by all runs
    state_path = state_dir / f"{stem}.batch.json"
    replay = BatchTeacher(teacher, store)
    answers: dict[str, RuleAnswer] = {}
    started = time.perf_counter()
    begun = now()
    batches: list[str] = []
    try:
        for submission in range(MAX_SUBMISSIONS + 1):
            job = read_state(state_path)
            if job is not None:
                if submission == 0:
                    log(f"resuming batch {job['batch_id']} (submitted {job['submitted_at']})")
                batch = wait(client, job["batch_id"], opts, log)
                collect(client, batch, job, store, log)
                batches.append(job["batch_id"])
                state_path.unlink()
            for example in todo:
                if example.id not in answers:
                    try:
                        answers[example.id] = context.ask(replay, example)
                    except NotAnsweredYet:
                        pass
            if not replay.pending:
                break
            if submission == MAX_SUBMISSIONS:
                summary.stopped = (
                    f"{len(todo) - len(answers)} examples still wait for an answer after "
                    f"{MAX_SUBMISSIONS} batches; re-run to continue"
                )
                break
            submit(client, replay.pending, state_path, suite.name, opts, log)
            replay.pending = {}
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        with TraceWriter(out) as writer:
            for example in todo:  # in example order, as the direct path writes them
                if example.id in answers:
                    writer.append(context.trace(example, answers[example.id], begun))
                    count_answer(summary, answers[example.id])
        summary.cost.wall_s += time.perf_counter() - started
        summary.notes.extend(billing_lines(summary, batches, opts))
    return summary


def billing_lines(summary: TeachSummary, batches: list[str], opts: BatchOptions) -> list[str]:
    c = summary.cost
    shown = ", ".join(batches[:3]) + (" ..." if len(batches) > 3 else "")
    out = [
        (
            f"batch API: {len(batches)} batches ({shown or 'none finished'}); billed at "
            f"{opts.price_ratio:g} x the per-request price (batch_price_ratio; the default "
            "0.5 is the discount OpenAI's Batch API documentation states - set yours in "
            "[tool.pld.teacher] or with --teacher-option)"
        )
    ]
    if opts.input_usd_per_mtok is not None and opts.output_usd_per_mtok is not None:
        direct = (
            c.prompt_tokens * opts.input_usd_per_mtok
            + c.completion_tokens * opts.output_usd_per_mtok
        ) / 1e6
        out.append(
            f"cost: ${direct * opts.price_ratio:.4f} at batch prices (${direct:.4f} sent "
            f"directly), at your prices ${opts.input_usd_per_mtok:g} / "
            f"${opts.output_usd_per_mtok:g} per million prompt / completion tokens"
        )
    else:
        out.append(
            "cost in dollars: set input_usd_per_mtok and output_usd_per_mtok "
            "([tool.pld.teacher] or --teacher-option) to see it"
        )
    return out


def teach_with_batch_api(
    suite: Suite,
    *,
    teacher: str,
    role: RoleConfig,
    out: Path,
    split: str = "train",
    limit: int | None = None,
    mode: str = "auto",
    retry_failed: bool = True,
    poll_s: float = 10.0,
    log: Callable[[str], None] = lambda s: None,
) -> TeachSummary:
    """`pld teach --batch`: the teacher role's endpoint, key and prices, checked."""
    from ..backends import parse_model_name
    from .guard import refuse_gate_split

    refuse_gate_split(suite, split, "teach")
    if parse_model_name(teacher)[0] != "openai":
        raise PldError(
            f"--batch needs an openai: teacher (a service with a Batch API), not {teacher}",
            hint="drop --batch to teach request by request",
        )
    if mode not in ("auto", "json"):
        raise PldError("--batch asks in json mode; --mode prefill needs the direct path")
    opts = BatchOptions(
        poll_s=poll_s,
        price_ratio=role.option("batch_price_ratio", DEFAULT_BATCH_PRICE_RATIO),
        input_usd_per_mtok=role.option("input_usd_per_mtok"),
        output_usd_per_mtok=role.option("output_usd_per_mtok"),
    )
    backend = role.make_backend(teacher)
    client = openai_client(
        role.endpoint(),
        timeout=role.option("timeout", 60.0),
        max_retries=role.option("max_retries", 4),
    )
    try:
        return teach_batch(
            suite,
            teacher=backend,
            client=client,
            out=out,
            state_dir=suite.root / ".pld" / "batches",
            split=split,
            limit=limit,
            retry_failed=retry_failed,
            options=opts,
            log=log,
        )
    finally:
        backend.close()
        client.close()
