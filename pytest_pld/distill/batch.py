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
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..backends.base import Backend, Generation, Message
from ..cache import generate_key
from ..errors import PldError
from ..roles import NO_KEY, RoleConfig
from ..suite import Suite
from ..yamlio import atomic_write_text
from .answers import RuleAnswer
from .teach import TeachSummary, count_answer, prepare_teach
from .traces import TraceWriter

TERMINAL = ("completed", "failed", "expired", "cancelled")
#: batches one run submits at most: the first, the repairs, and re-submitted failures of both
MAX_SUBMISSIONS = 4
#: a request is sent at most this often in one run before its example is a failed trace
MAX_ATTEMPTS = 2
#: the default price of a batch request relative to the same request sent directly: OpenAI's
#: Batch API documentation states a 50% discount. It is an assumption for other providers;
#: set `batch_price_ratio` ([tool.pld.teacher] or --teacher-option) to yours.
DEFAULT_BATCH_PRICE_RATIO = 0.5
ENDPOINT = "/v1/chat/completions"


@dataclass
class BatchOptions:
    poll_s: float = 10.0  # first wait between status checks; doubles up to poll_max_s
    poll_max_s: float = 300.0
    completion_window: str = "24h"
    price_ratio: float = DEFAULT_BATCH_PRICE_RATIO
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    sleep: Callable[[float], None] = time.sleep


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


class ResultStore:
    """Answers downloaded from batches, appended as JSON lines (durable per line). Failures
    are kept in memory only, so a later run asks again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answers: dict[str, dict[str, Any]] = {}
        self.failures: dict[str, tuple[int, str]] = {}  # key -> (attempts, last error)
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash: that answer is downloaded again
                self.answers[row["key"]] = row

    def add_answer(self, key: str, text: str, usage: Mapping[str, Any], finish: Any) -> None:
        row = {
            "key": key,
            "text": text,
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "finish_reason": finish,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.answers[key] = row
        self.failures.pop(key, None)

    def add_failure(self, key: str, error: str) -> None:
        attempts, _ = self.failures.get(key, (0, ""))
        self.failures[key] = (attempts + 1, error)


class BatchTeacher:
    """A teacher answering from batch results; unanswered requests are collected."""

    def __init__(self, backend: Backend, store: ResultStore) -> None:
        self.name = backend.name
        self.model = backend.name.partition(":")[2]
        self.identity = dict(backend.identity())
        self.store = store
        self.pending: dict[str, dict[str, Any]] = {}

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        prefill: str = "",
        json_schema: Mapping[str, Any] | None = None,
    ) -> Generation:
        if stop or prefill:
            raise PldError("the batch path asks in json mode only (no prefill, no stop)")
        key = generate_key(self.identity, messages, max_tokens=max_tokens, json_schema=json_schema)
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
        self.pending[key] = self._body(messages, max_tokens, json_schema)
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


def openai_client(endpoint: Mapping[str, Any], *, timeout: float, max_retries: int) -> Any:
    """An openai SDK client for the files and batches endpoints. The key is always passed
    (a placeholder where there is none), so the SDK never reads OPENAI_API_KEY itself and
    sends it to a host the roles kept it from."""
    import openai

    return openai.OpenAI(
        base_url=endpoint.get("base_url"),
        api_key=endpoint.get("api_key") or NO_KEY,
        timeout=timeout,
        max_retries=max_retries,
    )


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
    context, todo = prepare_teach(
        suite, summary, split=split, limit=limit, retry_failed=retry_failed, log=log
    )
    stem = f"{suite.name}-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]}"
    store = ResultStore(state_dir / "answers.jsonl")  # keyed by request: shared by all runs
    state_path = state_dir / f"{stem}.batch.json"
    replay = BatchTeacher(teacher, store)
    answers: dict[str, RuleAnswer] = {}
    started = time.perf_counter()
    begun = _now()
    batches: list[str] = []
    try:
        for submission in range(MAX_SUBMISSIONS + 1):
            job = _read_state(state_path)
            if job is not None:
                if submission == 0:
                    log(f"resuming batch {job['batch_id']} (submitted {job['submitted_at']})")
                batch = _wait(client, job["batch_id"], opts, log)
                _collect(client, batch, job, store, log)
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
            _submit(client, replay.pending, state_path, suite.name, opts, log)
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


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        raise PldError(
            "the batch state file is not valid JSON",
            path=path,
            hint="it names a submitted batch; delete it only to give that batch up",
        ) from None
    return data if isinstance(data, dict) and data.get("batch_id") else None


def _submit(
    client: Any,
    requests: Mapping[str, dict[str, Any]],
    state_path: Path,
    suite: str,
    opts: BatchOptions,
    log: Callable[[str], None],
) -> None:
    lines = "".join(
        json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}) + "\n"
        for key, body in requests.items()
    )
    uploaded = client.files.create(file=("pld-teach.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=ENDPOINT,
        completion_window=opts.completion_window,
        metadata={"pld": f"teach {suite}"},
    )
    atomic_write_text(
        state_path,
        json.dumps(
            {
                "batch_id": batch.id,
                "input_file_id": uploaded.id,
                "requests": len(requests),
                "custom_ids": sorted(requests),
                "submitted_at": _now(),
            },
            indent=1,
        )
        + "\n",
    )
    log(f"submitted batch {batch.id}: {len(requests)} requests (state: {state_path})")


def _wait(client: Any, batch_id: str, opts: BatchOptions, log: Callable[[str], None]) -> Any:
    import openai

    wait = opts.poll_s
    while True:
        try:
            batch = client.batches.retrieve(batch_id)
        except openai.OpenAIError as exc:
            raise PldError(
                f"cannot check batch {batch_id}: {type(exc).__name__}: {exc}",
                hint="the batch id is kept under .pld/batches/; re-run to resume polling",
            ) from None
        counts = batch.request_counts
        done = f"{counts.completed} of {counts.total} done" if counts else "no counts yet"
        failed = f", {counts.failed} failed" if counts and counts.failed else ""
        if batch.status in TERMINAL:
            log(f"batch {batch_id}: {batch.status}, {done}{failed}")
            if batch.status == "failed" and not batch.output_file_id:
                errors = getattr(batch, "errors", None)
                data = getattr(errors, "data", None) or []
                detail = "; ".join(f"{e.code}: {e.message}" for e in data) or "no detail"
                raise PldError(
                    f"batch {batch_id} failed: {detail}",
                    hint="fix the cause and re-run; nothing in it was billed",
                )
            return batch
        log(f"batch {batch_id}: {batch.status}, {done}{failed}; next check in {wait:g} s")
        opts.sleep(wait)
        wait = min(opts.poll_max_s, wait * 2)


def _collect(
    client: Any, batch: Any, job: Mapping[str, Any], store: ResultStore, log: Callable[[str], None]
) -> None:
    """Store every answer of a finished batch; what failed, expired or was never run counts
    as a failed attempt (re-submitted in this run, at most MAX_ATTEMPTS in all)."""
    seen: set[str] = set()
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        text = client.files.content(file_id).text
        for line in text.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            key = row.get("custom_id", "")
            seen.add(key)
            response = row.get("response") or {}
            body = response.get("body") or {}
            if response.get("status_code") == 200 and body.get("choices"):
                choice = body["choices"][0]
                store.add_answer(
                    key,
                    choice["message"].get("content") or "",
                    body.get("usage") or {},
                    choice.get("finish_reason"),
                )
            else:
                error = row.get("error") or body.get("error") or {}
                reason = error.get("code") or f"HTTP {response.get('status_code')}"
                store.add_failure(key, f"{reason}: {error.get('message', '')}".strip(": "))
    missing = [k for k in job.get("custom_ids", []) if k not in seen]
    for key in missing:
        store.add_failure(key, f"not run (batch {batch.status})")
    failed = sum(1 for k in seen | set(missing) if k not in store.answers)
    if failed:
        log(
            f"batch {batch.id}: {failed} request(s) failed or expired; each is sent at most "
            f"{MAX_ATTEMPTS} times in a run"
        )


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
    from ..backends.base import split_name
    from .guard import refuse_gate_split

    refuse_gate_split(suite, split, "teach")
    if split_name(teacher)[0] != "openai":
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
