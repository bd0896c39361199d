"""The `openai:` backend.

Two kinds of tests:

- Protocol tests run against a small scripted HTTP server on 127.0.0.1 (`http.server` in a
  thread). They check the backend's control flow - retries (the openai SDK's, configured by the
  backend), error messages, fallbacks, ordering, key hygiene - over real HTTP. The scripted replies stand in for a *server's
  behaviour* (a 429, a 503, a garbage body), never for a model's judgement.
- Integration tests (`-m integration`) start a real `transformers serve` with SmolLM2-135M and
  drive the backend against it, including a server killed mid-run and off-label answers.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import FakeClock

from pytest_pld.backends import get_backend
from pytest_pld.backends.base import Backend, Classification, GenerateOptions, Message
from pytest_pld.backends.openai_backend import OpenAIBackend, public_url
from pytest_pld.cache import ResponseCache, classify_key
from pytest_pld.errors import PldError
from pytest_pld.labels import INVALID
from pytest_pld.ratelimit import RateLimitedBackend, TokenBucket

if TYPE_CHECKING:
    from conftest import ServedModel

SECRET = "sk-test-NEVER-SHOW-ME-0123456789abcdef"
NLI = ["Entailment", "Contradiction", "NotMentioned"]


# ------------------------------------------------------------------ scripted HTTP server


def completion(text: str, *, usage: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    return body


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict -> JSON; str/bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"


Action = Reply | Callable[[dict[str, Any]], Reply]


class ScriptedServer:
    """Replies from a queue (then `default`), and records every request it saw."""

    def __init__(self) -> None:
        self.queue: deque[Action] = deque()
        self.default: Action = Reply(body=completion("Entailment"))
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with script._lock:
                    script.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    action = script.queue.popleft() if script.queue else script.default
                    script.in_flight += 1
                    script.max_in_flight = max(script.max_in_flight, script.in_flight)
                try:
                    reply = action(body) if callable(action) else action
                    if reply.delay:
                        time.sleep(reply.delay)
                    payload = reply.body
                    data = (
                        json.dumps(payload).encode()
                        if isinstance(payload, (dict, list))
                        else payload.encode()
                        if isinstance(payload, str)
                        else payload or b""
                    )
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with script._lock:
                        script.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that timed out and hung up is expected here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    s = ScriptedServer()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def make_backend(server: ScriptedServer) -> Iterator[Callable[..., OpenAIBackend]]:
    made: list[OpenAIBackend] = []

    def make(**options: Any) -> OpenAIBackend:
        options = {
            "base_url": server.base_url,
            "api_key": SECRET,
            "timeout": 5,
            **options,
        }
        b = OpenAIBackend("m", **options)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def status(code: int, message: str = "nope", *, wait_ms: int | None = 10, **headers: str) -> Reply:
    """An error reply. By default it asks for a 10 ms wait before a retry (`retry-after-ms`,
    which the SDK honours), so that retry tests do not sleep through the SDK's backoff."""
    if wait_ms is not None:
        headers = {"retry-after-ms": str(wait_ms), **headers}
    return Reply(status=code, body={"error": {"message": message, "type": "x"}}, headers=headers)


# ------------------------------------------------------------------------- construction


def test_the_backend_satisfies_the_protocol_and_is_named_by_provider(
    make_backend: Callable[..., OpenAIBackend],
) -> None:
    b = make_backend()
    assert isinstance(b, Backend)
    assert b.name == "openai:m"


def test_get_backend_builds_it_from_a_provider_model_name(server: ScriptedServer) -> None:
    b = get_backend("openai:gpt-test", base_url=server.base_url, api_key=SECRET)
    try:
        assert isinstance(b, OpenAIBackend) and b.model == "gpt-test"
    finally:
        b.close()


def test_base_url_and_key_come_from_the_environment(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with OpenAIBackend("m") as b:
        assert b.classify("sys", "user", NLI).label == "Entailment"
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"
    assert server.requests[0]["path"] == "/v1/chat/completions"


def test_no_key_for_api_openai_com_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(PldError, match="(?s)no API key.*OPENAI_API_KEY"):
        OpenAIBackend("gpt-4.1")


def test_a_local_server_needs_no_key(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIBackend("m", base_url=server.base_url) as b:
        assert b.classify("s", "u", NLI).label == "Entailment"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", 0),
        ("max_retries", -1),
        ("timeout", 0),
        ("max_tokens", 0),
        ("concurrency", 1.5),
        ("concurrency", True),
    ],
    ids=[
        "zero-concurrency",
        "negative-retries",
        "zero-timeout",
        "zero-max-tokens",
        "fractional-concurrency",
        "bool-concurrency",
    ],
)
def test_bad_options_are_errors_naming_the_option(option: str, value: Any) -> None:
    with pytest.raises(PldError, match=f"{option} must be") as err:
        OpenAIBackend("m", base_url="http://127.0.0.1:9/v1", **{option: value})
    assert err.value.key == option


def test_importing_the_package_does_not_import_openai() -> None:
    code = (
        "import sys, pytest_pld, pytest_pld.backends, pytest_pld.cache, pytest_pld.labels; "
        "assert 'openai' not in sys.modules, 'openai imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_identity_has_decoding_parameters_and_no_secrets() -> None:
    with OpenAIBackend(
        "m",
        base_url="http://user:pass@127.0.0.1:9/v1?k=" + SECRET,
        api_key=SECRET,
        seed=7,
        temperature=0.0,
        max_tokens=5,
        revision="2026-11",
    ) as b:
        ident = b.identity()
        assert ident == {
            "provider": "openai",
            "model": "m",
            "revision": "2026-11",
            "base_url": "http://127.0.0.1:9/v1",
            "temperature": 0.0,
            "seed": 7,
            "max_tokens": 5,
            "extra_body": None,
            "top_logprobs": 20,
        }
        assert SECRET not in repr(b) and "pass" not in repr(b)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
        ("https://u:p@example.com/v1?key=s#f", "https://example.com/v1"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ],
    ids=["trailing-slash", "credentials-query-fragment", "ipv6"],
)
def test_public_url_drops_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_count_tokens_is_an_approximation_without_a_tokenizer(
    make_backend: Callable[..., OpenAIBackend],
) -> None:
    b = make_backend()
    assert b.count_tokens("") == 0
    assert b.count_tokens("abcd") == 1
    assert b.count_tokens("x" * 4001) == math.ceil(4001 / 4)


# ----------------------------------------------------------------------------- classify


def test_a_request_carries_system_user_temperature_seed_and_max_tokens(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    c = make_backend(seed=3, max_tokens=6).classify("the rules", "the example", NLI)
    body = server.bodies[0]
    assert body["messages"] == [
        {"role": "system", "content": "the rules"},
        {"role": "user", "content": "the example"},
    ]
    assert (body["temperature"], body["seed"], body["max_tokens"], body["model"]) == (
        0.0,
        3,
        6,
        "m",
    )
    assert c == Classification(
        label="Entailment",
        raw="Entailment",
        latency_s=c.latency_s,
        prompt_tokens=11,
        completion_tokens=2,
    )
    assert c.latency_s > 0


def test_chatty_answers_are_parsed_and_off_label_answers_are_invalid(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    answers = [
        "The answer is: contradiction.",
        "I cannot decide.",
        "**NotMentioned**",
        "Entailment or contradiction",
        "",
    ]
    server.queue.extend(Reply(body=completion(a)) for a in answers)
    got = list(make_backend(concurrency=1).classify_many("s", ["u"] * 5, NLI))
    assert [c.label for c in got] == ["Contradiction", INVALID, "NotMentioned", INVALID, INVALID]
    assert [c.raw for c in got] == answers


def test_results_come_back_in_input_order_with_bounded_concurrency(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    labels = [f"L{i}" for i in range(12)]

    def reply(body: dict[str, Any]) -> Reply:
        i = int(body["messages"][1]["content"])
        return Reply(body=completion(f"L{i}"), delay=0.01 * (12 - i))  # later ones finish first

    server.default = reply
    got = list(make_backend(concurrency=3).classify_many("s", [str(i) for i in range(12)], labels))
    assert [c.label for c in got] == labels
    assert 1 < server.max_in_flight <= 3


def test_an_empty_batch_sends_nothing(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    assert list(make_backend().classify_many("s", [], NLI)) == []
    assert server.requests == []


def test_usage_missing_from_the_reply_is_approximated(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = Reply(body=completion("Entailment", usage=False))
    c = make_backend().classify("x" * 40, "y" * 40, NLI)
    assert (c.prompt_tokens, c.completion_tokens) == (20, math.ceil(len("Entailment") / 4))


def with_logprobs(
    body: dict[str, Any], tokens: list[tuple[str, list[tuple[str, float]]]]
) -> dict[str, Any]:
    """A completion carrying chat log-probabilities: (generated token, its alternatives)."""
    body["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": token,
                "logprob": top[0][1],
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top],
            }
            for token, top in tokens
        ]
    }
    return body


def test_label_scores_come_from_the_first_answer_tokens_log_probabilities(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    """The server's reply stands in for a server (a real one: test_openai_scores.py)."""
    top = [("Cont", -0.2), (" Entail", -2.0), ("Ent", -3.0), ("The", -4.0), ("Not", -5.0)]
    server.default = Reply(
        body=with_logprobs(completion("Contradiction"), [("**", [("**", -0.1)]), ("Cont", top)])
    )
    c = make_backend(top_logprobs=5).classify("s", "u", NLI)
    body = server.bodies[0]
    assert (body["logprobs"], body["top_logprobs"]) == (True, 5)
    assert c.label == "Contradiction" and c.scores is not None
    assert c.scores == pytest.approx(
        {
            "Entailment": math.log(math.exp(-2.0) + math.exp(-3.0)),
            "Contradiction": -0.2,
            "NotMentioned": -5.0,
        }
    )


def test_a_reply_without_log_probabilities_has_no_scores_and_zero_asks_for_none(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    assert make_backend().classify("s", "u", NLI).scores is None
    assert make_backend(top_logprobs=0).classify("s", "u", NLI).scores is None
    assert "logprobs" in server.bodies[0] and "logprobs" not in server.bodies[1]
    assert "top_logprobs" not in server.bodies[1]


def test_a_server_that_rejects_log_probabilities_is_asked_without_them_from_then_on(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.queue.append(status(400, "logprobs is not supported with this model"))
    b = make_backend()
    assert b.classify("s", "u", NLI).label == "Entailment"
    b.classify("s", "u", NLI)
    assert "top_logprobs" in server.bodies[0]
    assert all("logprobs" not in body for body in server.bodies[1:]) and len(server.bodies) == 3


# ------------------------------------------------------------------------------- retries


def test_429_twice_then_an_answer_succeeds_after_two_retries(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    """Retry control flow over real HTTP; the final reply is canned, not a model."""
    server.queue.extend(
        [
            status(429, "slow down"),
            status(429, "slow down"),
            Reply(body=completion("Contradiction")),
        ]
    )
    c = make_backend().classify("s", "u", NLI)
    assert c.label == "Contradiction"
    assert len(server.requests) == 3


def test_a_rate_limit_counts_the_clients_own_retries(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    """Two 429s and an answer are three HTTP requests: each waits for the bucket, so the
    retries cannot exceed the limit (a limit around the call alone would count one)."""
    server.queue.extend([status(429), status(429), Reply(body=completion("Contradiction"))])
    clock = FakeClock()
    limited = RateLimitedBackend(
        make_backend(), 60, TokenBucket(60, clock=clock, sleep=clock.sleep)
    )
    assert limited.classify("s", "u", NLI).label == "Contradiction"
    assert len(server.requests) == 3
    assert clock.now == pytest.approx(2.0)  # one a second: the first request is free
    server.queue.extend([status(429), Reply(body=completion("ok"))])
    limited.generate([Message("user", "hi")], GenerateOptions(max_tokens=4))
    assert clock.now == pytest.approx(4.0)  # the generate call and its retry


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried(
    code: int, server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.queue.append(status(code))
    assert make_backend().classify("s", "u", NLI).label == "Entailment"
    assert len(server.requests) == 2


def test_retries_honour_the_servers_retry_after_and_back_off_without_it(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.queue.extend(
        [status(429, wait_ms=None, **{"Retry-After": "1"}), status(503, wait_ms=None)]
    )
    started = time.monotonic()
    assert make_backend(max_retries=2).classify("s", "u", NLI).label == "Entailment"
    elapsed = time.monotonic() - started
    # 1 s asked for by the server, then the SDK's first backoff (0.5 s less up to 25% jitter)
    assert 1.0 + 0.375 <= elapsed < 5, elapsed
    counts = [r["headers"].get("x-stainless-retry-count") for r in server.requests]
    assert counts == ["0", "1", "2"]


def test_a_server_that_says_do_not_retry_is_reported_after_one_attempt(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = status(503, "down for maintenance", **{"x-should-retry": "false"})
    with pytest.raises(PldError) as err:
        make_backend(max_retries=3).classify("s", "u", NLI)
    text = str(err.value)
    assert "HTTP 503 (service unavailable)" in text and "attempts" not in text
    assert len(server.requests) == 1


def test_exhausted_retries_name_the_server_status_and_what_to_do(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = status(503, "overloaded")
    with pytest.raises(PldError) as err:
        make_backend(max_retries=2).classify("s", "u", NLI)
    text = str(err.value)
    assert server.base_url in text and "HTTP 503" in text and "after 3 attempts" in text
    assert "overloaded" in text
    assert "response cache" in text and "resumes" in text
    assert len(server.requests) == 3


def test_a_400_is_not_retried_and_shows_the_servers_message(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = status(400, "This model's maximum context length is 2048 tokens")
    with pytest.raises(PldError, match="(?s)HTTP 400.*maximum context length.*hint") as err:
        make_backend().classify("s", "u", NLI)
    assert len(server.requests) == 1
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_404_hints_at_the_model_name(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = status(404, "model 'm' not found")
    with pytest.raises(PldError, match="(?s)HTTP 404.*check the model name 'm'"):
        make_backend().classify("s", "u", NLI)


def test_a_rejected_key_is_masked_even_when_the_server_echoes_it(
    server: ScriptedServer,
    make_backend: Callable[..., OpenAIBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.queue.append(status(503, f"busy, key {SECRET}"))
    server.default = status(401, f"Incorrect API key provided: {SECRET}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PldError) as err:
        make_backend().classify("s", "u", NLI)
    text = str(err.value)
    assert "HTTP 401" in text and "OPENAI_API_KEY" in text
    assert SECRET not in text and "***" in text
    assert SECRET not in caplog.text


def test_a_timeout_is_retried_then_reported(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = Reply(body=completion("Entailment"), delay=1.0)
    started = time.monotonic()
    with pytest.raises(PldError, match=r"did not answer request within 0\.2 s \(2 attempts\)"):
        make_backend(timeout=0.2, max_retries=1).classify("s", "u", NLI)
    assert time.monotonic() - started < 5


def _closed_port() -> int:
    with socket.socket() as s:  # nothing listens there once the probe socket is closed
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_is_an_error_naming_the_url() -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/v1"
    with (
        OpenAIBackend("m", base_url=url, api_key=SECRET, max_retries=2) as b,
        pytest.raises(PldError) as err,
    ):
        list(b.classify_many("s", ["u1", "u2"], NLI))
    text = str(err.value)
    assert f"cannot connect to the OpenAI-compatible server at {url}" in text
    assert "start the server" in text and "OPENAI_BASE_URL" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body="<html><body>502 from the proxy</body></html>", content_type="text/html"),
        Reply(body={"unexpected": True}),
        Reply(body={"choices": []}),
        Reply(body="{not json"),
        Reply(body=""),
        Reply(body={"error": {"message": "internal"}}),
    ],
    ids=[
        "html-page",
        "json-without-choices",
        "no-choices",
        "broken-json",
        "empty-body",
        "error-object-with-200",
    ],
)
def test_garbage_from_the_server_is_a_clear_error(
    reply: Reply, server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = reply
    with pytest.raises(PldError, match="(?s)not a chat completion.*ends in /v1"):
        make_backend().classify("s", "u", NLI)


def test_a_failure_mid_run_keeps_the_results_before_it(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend], tmp_path: Path
) -> None:
    """What the runner sees: results yielded, then a PldError; the cache keeps the yielded."""
    server.queue.extend(Reply(body=completion("Contradiction")) for _ in range(3))
    server.default = status(503, "gone")
    b = make_backend(concurrency=1, max_retries=1)
    users = [f"u{i}" for i in range(6)]
    cache = ResponseCache(tmp_path / "cache.sqlite")
    done = []
    with pytest.raises(PldError, match=r"request 4 of 6 after 2 attempts"):
        for user, c in zip(users, b.classify_many("s", users, NLI)):
            cache.put(classify_key(b.identity(), "s", user, NLI), c)
            done.append(c)
    assert [c.label for c in done] == ["Contradiction"] * 3
    keys = [classify_key(b.identity(), "s", u, NLI) for u in users]
    assert set(cache.get_many(keys)) == set(keys[:3])
    cache.close()


def test_a_consumer_that_stops_early_does_not_wait_for_the_rest(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = Reply(body=completion("Entailment"), delay=0.05)
    b = make_backend(concurrency=2)
    it = b.classify_many("s", [f"u{i}" for i in range(50)], NLI)
    assert next(it).label == "Entailment"
    it.close()
    time.sleep(0.3)
    assert len(server.requests) <= 8  # the in-flight window, not the whole batch


# ----------------------------------------------------------------------------- generate


def test_generate_returns_text_and_usage(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = Reply(body=completion("A rule."))
    g = make_backend().generate(
        [Message("system", "teach"), Message("user", "why?")],
        GenerateOptions(max_tokens=40, stop=["\n\n"]),
    )
    assert (g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason) == (
        "A rule.",
        11,
        2,
        "stop",
    )
    body = server.bodies[0]
    assert body["max_tokens"] == 40 and body["stop"] == ["\n\n"]


def test_a_sampled_draw_sends_its_temperature_and_seed_and_a_greedy_call_the_backends_own(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.default = Reply(body=completion("A rule."))
    b = make_backend()
    b.generate([Message("user", "why?")])
    b.generate([Message("user", "why?")], GenerateOptions(temperature=0.9, seed=1234))
    greedy, sampled = server.bodies
    assert (sampled["temperature"], sampled["seed"]) == (0.9, 1234)
    assert (greedy["temperature"], greedy["seed"]) == (0.0, 0)  # the backend's own


def test_prefill_is_sent_as_an_assistant_turn_and_cut_when_echoed(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.queue.extend([Reply(body=completion('{"rule": "x"}')), Reply(body=completion(' "x"}'))])
    b = make_backend()
    echoed = b.generate([Message("user", "q")], GenerateOptions(prefill='{"rule":'))
    continued = b.generate([Message("user", "q")], GenerateOptions(prefill='{"rule":'))
    assert server.bodies[0]["messages"][-1] == {"role": "assistant", "content": '{"rule":'}
    assert echoed.text == ' "x"}'
    assert continued.text == ' "x"}'


@pytest.mark.parametrize(
    "rejections",
    [
        [status(400, "response_format json_schema is not supported")],
        # llama-cpp-python 0.3.36's server: a request validation error as HTTP 500, which the
        # SDK retries (max_retries=1 below) before the backend sees it
        2
        * [
            status(
                500,
                "1 validation error: {'type': 'literal_error', 'loc': ('body', "
                "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
            )
        ],
    ],
    ids=["400", "500-naming-response_format"],
)
def test_json_schema_is_requested_and_dropped_when_the_server_rejects_it(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend], rejections: list[Reply]
) -> None:
    schema = {"title": "Rule", "type": "object", "properties": {"rule": {"type": "string"}}}
    server.queue.extend(
        [
            *rejections,
            Reply(body=completion('{"rule": "a"}')),
            Reply(body=completion('{"rule": "b"}')),
        ]
    )
    b = make_backend(max_retries=1)
    with_schema = GenerateOptions(json_schema=schema)
    first = b.generate([Message("system", "teach"), Message("user", "q")], with_schema)
    second = b.generate([Message("user", "q")], with_schema)
    assert (first.text, second.text) == ('{"rule": "a"}', '{"rule": "b"}')
    sent = server.bodies[len(rejections) - 1 :]
    assert sent[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Rule", "schema": schema},
    }
    assert "response_format" not in sent[1] and "response_format" not in sent[2]
    assert '"rule"' in sent[1]["messages"][0]["content"]  # the schema moved into the prompt
    assert sent[2]["messages"][0]["role"] == "system"


def test_max_completion_tokens_is_used_when_the_server_asks_for_it(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    server.queue.append(
        status(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with "
            "this model. Use 'max_completion_tokens' instead.",
        )
    )
    b = make_backend()
    assert b.classify("s", "u", NLI).label == "Entailment"
    b.classify("s", "u", NLI)
    assert "max_tokens" in server.bodies[0]
    assert server.bodies[1]["max_completion_tokens"] == 8 and "max_tokens" not in server.bodies[1]
    assert server.bodies[2]["max_completion_tokens"] == 8


def test_extra_body_is_sent_and_part_of_the_identity(
    server: ScriptedServer, make_backend: Callable[..., OpenAIBackend]
) -> None:
    b = make_backend(extra_body={"top_k": 1})
    b.classify("s", "u", NLI)
    assert server.bodies[0]["top_k"] == 1
    assert b.identity()["extra_body"] == {"top_k": 1}


def test_the_key_is_sent_to_the_server_but_never_cached_or_logged(
    server: ScriptedServer,
    make_backend: Callable[..., OpenAIBackend],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.queue.append(status(429))
    b = make_backend()
    path = tmp_path / ".pld" / "cache.sqlite"
    users = [f"user {i}" for i in range(5)]
    with ResponseCache(path) as cache:
        for user, c in zip(users, b.classify_many("sys", users, NLI)):
            cache.put(classify_key(b.identity(), "sys", user, NLI), c)
    assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    stored = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"Entailment" in stored and SECRET.encode() not in stored
    assert SECRET not in caplog.text and "retry 1 of 4" in caplog.text


# ------------------------------------------------------------ integration: real server


SENTIMENT_SYSTEM = (
    "Classify the sentiment of the review. Answer with exactly one word: positive or negative."
)
REVIEWS = [
    "I loved every minute of it.",
    "Terrible, a waste of money.",
    "Best film of the year!",
    "Boring and far too long.",
]


@pytest.fixture
def served_backend(openai_server: ServedModel) -> Iterator[OpenAIBackend]:
    b = OpenAIBackend(
        openai_server.model,
        base_url=openai_server.base_url,
        api_key=SECRET,
        concurrency=2,
        timeout=60,
    )
    try:
        yield b
    finally:
        b.close()


@pytest.mark.integration
def test_a_served_model_classifies_into_labels_or_invalid(
    served_backend: OpenAIBackend, tmp_path: Path
) -> None:
    labels = ["positive", "negative"]
    got = list(served_backend.classify_many(SENTIMENT_SYSTEM, REVIEWS, labels))
    assert len(got) == len(REVIEWS)
    for c in got:
        assert c.label in {*labels, INVALID}
        assert c.raw.strip() and c.prompt_tokens > 0 and 0 < c.completion_tokens <= 8
        assert c.latency_s > 0
        # `transformers serve` ignores logprobs/top_logprobs (and says so in its log): no scores
        assert c.scores is None
    # The same requests again are deterministic (temperature 0, seed).
    again = list(served_backend.classify_many(SENTIMENT_SYSTEM, REVIEWS[:2], labels))
    assert [c.raw for c in again] == [c.raw for c in got[:2]]
    # Stored in the cache as the runner would, with no trace of the key.
    path = tmp_path / ".pld" / "cache.sqlite"
    with ResponseCache(path) as cache:
        for review, c in zip(REVIEWS, got):
            cache.put(classify_key(served_backend.identity(), SENTIMENT_SYSTEM, review, labels), c)
    stored = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert SECRET.encode() not in stored


@pytest.mark.integration
def test_labels_a_served_model_never_says_are_invalid_not_a_crash(
    served_backend: OpenAIBackend,
) -> None:
    labels = ["zebra-7", "quasar-9"]
    got = list(served_backend.classify_many(SENTIMENT_SYSTEM, REVIEWS[:2], labels))
    assert [c.label for c in got] == [INVALID] * 2
    assert all(c.raw for c in got)


@pytest.mark.integration
def test_a_served_model_generates_text_with_usage(served_backend: OpenAIBackend) -> None:
    g = served_backend.generate(
        [Message("user", "What is the capital of France?")], GenerateOptions(max_tokens=10)
    )
    assert "Paris" in g.text
    assert g.prompt_tokens > 0 and 0 < g.completion_tokens <= 10
    assert g.finish_reason in {"stop", "length"}
    prefilled = served_backend.generate(
        [Message("user", "What is the capital of France?")],
        GenerateOptions(max_tokens=6, prefill="The capital of France is"),
    )
    assert not prefilled.text.startswith("The capital of France is")
    structured = served_backend.generate(
        [Message("user", "Give a JSON object with a name.")],
        GenerateOptions(
            max_tokens=8,
            json_schema={"type": "object", "properties": {"name": {"type": "string"}}},
        ),
    )
    assert structured.text


@pytest.mark.integration
def test_the_tokenizer_counts_exactly_when_given(openai_server: ServedModel) -> None:
    with OpenAIBackend(
        openai_server.model, base_url=openai_server.base_url, tokenizer=str(openai_server.folder)
    ) as b:
        n = b.count_tokens("The capital of France is Paris.")
    assert 5 <= n <= 10


@pytest.mark.integration
def test_a_server_killed_mid_run_is_an_error_after_the_finished_results(
    disposable_openai_server: ServedModel, tmp_path: Path
) -> None:
    served = disposable_openai_server
    users = [f"Review {i}: " + REVIEWS[i % 4] for i in range(12)]
    labels = ["positive", "negative"]
    done: list[Classification] = []
    with (
        OpenAIBackend(
            served.model,
            base_url=served.base_url,
            concurrency=2,
            max_retries=2,
            timeout=30,
        ) as b,
        ResponseCache(tmp_path / "cache.sqlite") as cache,
    ):
        started = time.monotonic()
        with pytest.raises(PldError) as err:
            for user, c in zip(users, b.classify_many(SENTIMENT_SYSTEM, users, labels)):
                cache.put(classify_key(b.identity(), SENTIMENT_SYSTEM, user, labels), c)
                done.append(c)
                if len(done) == 2:
                    served.process.kill()
                    served.process.wait(timeout=10)
        elapsed = time.monotonic() - started
        keys = [classify_key(b.identity(), SENTIMENT_SYSTEM, u, labels) for u in users]
        cached = cache.get_many(keys)
    text = str(err.value)
    assert served.base_url in text
    assert "cannot connect" in text or "HTTP 5" in text
    assert "resumes" in text
    assert 2 <= len(done) < len(users)
    assert set(cached) == set(keys[: len(done)])  # a re-run asks only for the rest
    assert elapsed < 60
