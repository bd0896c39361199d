"""The Batch API's HTTP side for `pld teach --batch`: upload, create, poll, download.

Through the openai SDK (`client.files.create`, `client.batches.create/retrieve`,
`client.files.content`), as OpenAI documents the files and batches endpoints. The state file
written right after a batch is created is what lets an interrupted run resume polling.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PldError
from ..roles import NO_KEY
from ..yamlio import atomic_write_text

TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"
#: a request is sent at most this often in one run before its example is a failed trace
MAX_ATTEMPTS = 2
#: the default price of a batch request relative to the same request sent directly: OpenAI's
#: Batch API documentation states a 50% discount. It is an assumption for other providers;
#: set `batch_price_ratio` ([tool.pld.teacher] or --teacher-option) to yours.
DEFAULT_BATCH_PRICE_RATIO = 0.5


@dataclass
class BatchOptions:
    poll_s: float = 10.0  # first wait between status checks; doubles up to poll_max_s
    poll_max_s: float = 300.0
    completion_window: str = "24h"
    price_ratio: float = DEFAULT_BATCH_PRICE_RATIO
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    sleep: Callable[[float], None] = time.sleep


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


def now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def read_state(path: Path) -> dict[str, Any] | None:
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


def submit(
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
                "submitted_at": now(),
            },
            indent=1,
        )
        + "\n",
    )
    log(f"submitted batch {batch.id}: {len(requests)} requests (state: {state_path})")


def wait(client: Any, batch_id: str, opts: BatchOptions, log: Callable[[str], None]) -> Any:
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


def collect(
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
