"""A test double of a hosted OpenAI-compatible service: chat completions plus the files and
batches endpoints, on 127.0.0.1.

The hosted Batch API cannot be reached from here (no network beyond package registries), so
this server implements the parts of it `pld teach --batch` uses, as OpenAI documents them:

- `POST /v1/files` (multipart: `purpose`, `file`) -> a File object;
  `GET /v1/files/{id}/content` -> the file's bytes.
- `POST /v1/batches` (`input_file_id`, `endpoint`, `completion_window`, `metadata`) -> a Batch;
  `GET /v1/batches/{id}` -> the Batch, whose `status` moves validating -> in_progress ->
  finalizing -> completed (or failed / expired), with `request_counts`, `output_file_id` and
  `error_file_id`. Output lines are `{"id", "custom_id", "response": {"status_code",
  "request_id", "body"}, "error": null}`; requests that failed or expired go to the error file
  (`response` with a non-2xx status, or `error: {"code": "batch_expired", ...}`).
- `POST /v1/chat/completions` -> a chat completion.

Both paths answer a request with the same function of its body (`answer`), so a batch and a
request-by-request run get the same text for the same request. A batch advances one step per
status check, which keeps tests deterministic and fast. Faults on demand: `hold` keeps batches
in progress, `expire_after` expires the next batch after that many requests, `fail` fails the requests
it picks (once each, unless `fail_always`), `invalid` fails validation.

It answers what a model would not: it is a stand-in for a service, never evidence about a model.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any]], str]


def echo_rule(body: dict[str, Any]) -> str:
    """A JSON rule that depends only on the request: the correct label the prompt names."""
    text = " ".join(m["content"] for m in body["messages"] if m["role"] == "user")
    label = text.split("Correct label:", 1)[1].split()[0] if "Correct label:" in text else "x"
    return json.dumps(
        {
            "reasoning": f"The wording of the input points to {label}.",
            "rule": f"If the wording points to {label}, then the label is {label}.",
        }
    )


@dataclass
class Batch:
    id: str
    input_file_id: str
    lines: list[dict[str, Any]]
    metadata: dict[str, Any]
    created_at: int
    status: str = "validating"
    done: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    checks: int = 0

    def to_json(self) -> dict[str, Any]:
        failed = sum(1 for e in self.errors)
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.created_at if self.status != "validating" else None,
            "expires_at": self.created_at + 86400,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "request_counts": {
                "total": len(self.lines),
                "completed": len(self.done),
                "failed": failed,
            },
            "metadata": self.metadata,
        }


class OpenAIDouble:
    def __init__(self, answer: Answer = echo_rule, *, per_check: int = 1000) -> None:
        self.answer = answer
        self.per_check = per_check  # requests processed per status check
        self.hold = threading.Event()  # set: batches make no progress
        self.expire_after: int | None = None
        self.fail: Callable[[dict[str, Any]], bool] = lambda body: False
        self.fail_always = False
        self.invalid = False
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, Batch] = {}
        self.log: list[dict[str, Any]] = []  # method, path, authorization, body of each request
        self._failed_once: set[str] = set()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                double._serve(self, "GET", b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                double._serve(self, "POST", self.rfile.read(length))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, method: str, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.log if r["method"] == method and r["path"].startswith(prefix)]

    # -- dispatch ----------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler, method: str, raw: bytes) -> None:
        path = h.path.split("?")[0]
        with self._lock:
            self.log.append(
                {
                    "method": method,
                    "path": path,
                    "authorization": h.headers.get("authorization", ""),
                    "body": raw,
                }
            )
            try:
                status, payload = self._route(method, path, raw, h.headers.get("content-type", ""))
            except KeyError as exc:
                status, payload = 404, {"error": {"message": f"no such object: {exc}"}}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        h.send_response(status)
        kind = "application/octet-stream" if isinstance(payload, bytes) else "application/json"
        h.send_header("content-type", kind)
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _route(self, method: str, path: str, raw: bytes, ctype: str) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/chat/completions":
            return 200, self._completion(json.loads(raw))
        if method == "POST" and path == "/v1/files":
            return 200, self._upload(raw, ctype)
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            return 200, self.files[path.split("/")[3]]
        if method == "POST" and path == "/v1/batches":
            return 200, self._create(json.loads(raw))
        if method == "GET" and path.startswith("/v1/batches/"):
            return 200, self._advance(self.batches[path.split("/")[3]])
        return int(HTTPStatus.NOT_FOUND), {"error": {"message": f"no route {method} {path}"}}

    # -- endpoints ---------------------------------------------------------------------------

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.answer(body)
        prompt = sum(len(m["content"].split()) for m in body["messages"])
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt + len(text.split()),
            },
        }

    def _upload(self, raw: bytes, ctype: str) -> dict[str, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw
        )
        parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        content = parts["file"].get_payload(decode=True)
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = content
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": parts["file"].get_filename() or "upload.jsonl",
            "purpose": parts["purpose"].get_content().strip(),
        }

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].splitlines() if x]
        batch = Batch(
            f"batch_{next(self._ids)}",
            body["input_file_id"],
            lines,
            dict(body.get("metadata") or {}),
            int(time.time()),
        )
        self.batches[batch.id] = batch
        return batch.to_json()

    def _advance(self, batch: Batch) -> dict[str, Any]:
        batch.checks += 1
        if batch.status == "validating":
            if self.invalid:
                batch.status = "failed"
                out = batch.to_json()
                out["errors"] = {
                    "object": "list",
                    "data": [{"code": "invalid_request", "message": "bad input file", "line": 1}],
                }
                return out
            batch.status = "in_progress"
        elif batch.status == "in_progress" and not self.hold.is_set():
            self._process(batch)
        elif batch.status == "finalizing":
            self._finish(batch, "completed")
        return batch.to_json()

    def _process(self, batch: Batch) -> None:
        handled = len(batch.done) + len(batch.errors)
        for line in batch.lines[handled : handled + self.per_check]:
            if self.expire_after is not None and handled >= self.expire_after:
                for rest in batch.lines[handled:]:
                    batch.errors.append(self._expired(rest))
                self.expire_after = None  # one batch expires; the next one runs
                self._finish(batch, "expired")
                return
            handled += 1
            custom_id = line["custom_id"]
            if self.fail(line["body"]) and (self.fail_always or custom_id not in self._failed_once):
                self._failed_once.add(custom_id)
                batch.errors.append(
                    {
                        "id": f"batch_req_{next(self._ids)}",
                        "custom_id": custom_id,
                        "response": {
                            "status_code": 500,
                            "request_id": f"req_{next(self._ids)}",
                            "body": {"error": {"message": "The server had an error."}},
                        },
                        "error": None,
                    }
                )
                continue
            batch.done.append(
                {
                    "id": f"batch_req_{next(self._ids)}",
                    "custom_id": custom_id,
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_{next(self._ids)}",
                        "body": self._completion(line["body"]),
                    },
                    "error": None,
                }
            )
        if len(batch.done) + len(batch.errors) >= len(batch.lines):
            batch.status = "finalizing"

    def _expired(self, line: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"batch_req_{next(self._ids)}",
            "custom_id": line["custom_id"],
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion "
                "window expired.",
            },
        }

    def _finish(self, batch: Batch, status: str) -> None:
        if batch.done:
            batch.output_file_id = f"file-{next(self._ids)}"
            self.files[batch.output_file_id] = _jsonl(batch.done)
        if batch.errors:
            batch.error_file_id = f"file-{next(self._ids)}"
            self.files[batch.error_file_id] = _jsonl(batch.errors)
        batch.status = status


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()
