"""The `openai:` backend: any OpenAI-compatible chat-completions server.

OpenAI itself, vLLM, Ollama, llama.cpp's server, `transformers serve`. The server's URL and key
come from OPENAI_BASE_URL and OPENAI_API_KEY in the environment (a suite file can set neither:
keys and URLs belong to the CI's secrets); the Python API also takes them as arguments.

Behaviour worth knowing:

- Classification asks for a short answer at temperature 0 with a fixed seed and parses it with
  `labels.parse_label`; an answer that is not one label becomes INVALID (metrics count it),
  never a crash and never a guess.
- It also asks for the answer's log-probabilities (`logprobs`, `top_logprobs`: N, default 20,
  OpenAI's maximum) and, where the server returns them, fills the label scores from the first
  answer token (`first_token` says how, and what goes missing); a server that rejects the
  fields is asked again without them, once, and no later request carries them.
- Requests run on a pool of `concurrency` threads; results come back in input order. At most
  `2 * concurrency` requests are in flight, so when a run fails, little finished work is lost.
- Retries are the openai SDK's own (`max_retries`, `timeout` on the client): exponential
  backoff with jitter (0.5 s doubling, at most 8 s) on 408, 409, 429, 5xx, timeouts and
  connection errors, honouring the server's Retry-After. When they run out the backend raises
  a PldError naming the server, the status, the attempts and what to do; results yielded before
  that are the runner's to cache, so a re-run resumes. A request already retrying when the run
  fails finishes its own retries in its thread (at most `max_retries` waits of at most 8 s);
  requests not started yet are dropped.
- The API key is sent to the server and nowhere else: not in `identity()`, reprs, log lines
  or error messages (server error text is masked before it is shown).
- `count_tokens` is approximate (one token per 4 characters, rounded up) unless a `tokenizer`
  (a Hugging Face name or folder) is given, in which case transformers counts exactly.
- The `openai` package is imported when a backend is created, never at package import.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import PldError
from ..labels import parse_label
from .base import GENERATE_DEFAULTS, Classification, GenerateOptions, Generation, Message
from .first_token import completion_scores

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Placeholder key for local servers that do not check one (vLLM and llama.cpp accept any).
NO_KEY = "no-key"
#: Alternatives per answer token asked for: OpenAI's maximum, and vLLM's default --max-logprobs.
TOP_LOGPROBS = 20
#: Statuses the SDK retries (with every 5xx); an error after them says how many attempts it made.
RETRY_STATUS = frozenset({408, 409, 429})
_CHARS_PER_TOKEN = 4
_SNIPPET = 300

__all__ = ["DEFAULT_BASE_URL", "OpenAIBackend", "public_url"]


def public_url(url: str) -> str:
    """`url` without credentials, query or fragment: safe to show and to put in cache keys."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    except ValueError:
        return "<unparseable url>"


class _Stopped(Exception):
    """The surrounding run gave up before this request started."""


class OpenAIBackend:
    """Classify and generate through an OpenAI-compatible chat-completions endpoint."""

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        max_retries: int = 4,
        concurrency: int = 4,
        seed: int | None = 0,
        temperature: float | None = 0.0,
        max_tokens: int = 8,
        revision: str | None = None,
        tokenizer: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        top_logprobs: int = TOP_LOGPROBS,
    ) -> None:
        """
        `revision` names the served weights (a tag, a digest) when the model name alone does
        not; it goes into `identity()` so a new deployment misses the cache. `extra_body` is
        sent with every request (server-specific sampling options) and is part of the identity.
        `top_logprobs`: alternatives asked for at each answer token, for label scores (0: do not
        ask for log-probabilities).
        """
        self.model = model
        self.name = f"openai:{model}"
        self._raw_base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.base_url = public_url(self._raw_base_url)
        key = api_key or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            if urlsplit(self._raw_base_url).hostname == "api.openai.com":
                raise PldError(
                    "no API key for api.openai.com",
                    hint="set OPENAI_API_KEY in the environment (never in the suite "
                    "file), or point OPENAI_BASE_URL at a local OpenAI-compatible server",
                )
            key = NO_KEY
        self._api_key = key
        _check_number("timeout", timeout, low=0, exclusive=True)
        _check_number("max_retries", max_retries, low=0, integer=True)
        _check_number("concurrency", concurrency, low=1, integer=True)
        _check_number("max_tokens", max_tokens, low=1, integer=True)
        _check_number("top_logprobs", top_logprobs, low=0, integer=True)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.seed = seed
        self.temperature = temperature
        self.max_tokens = int(max_tokens)
        self.revision = revision
        self.extra_body = dict(extra_body) if extra_body else None
        self.top_logprobs = int(top_logprobs)
        self._tokenizer_name = tokenizer
        self._tokenizer: Any = None
        # Learned from the server: whether it takes response_format json_schema, and whether
        # it wants max_completion_tokens instead of max_tokens (OpenAI's reasoning models).
        self._json_schema_ok = True
        self._max_tokens_field = "max_tokens"
        self._logprobs_ok = self.top_logprobs > 0  # False once the server refused them
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

        try:
            import openai
        except ImportError as exc:  # pragma: no cover - openai is a dependency
            raise PldError(
                "the openai: backend needs the openai package", hint="pip install openai"
            ) from exc
        self._openai = openai
        self._request_hook: Callable[[], Any] | None = None
        # every HTTP attempt, the SDK's retries included, passes `_before_request` (a rate
        # limit that counted only our calls would let retries of 429s exceed it)
        self._client = openai.OpenAI(
            api_key=key,
            base_url=self._raw_base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            http_client=openai.DefaultHttpxClient(
                timeout=self.timeout, event_hooks={"request": [self._before_request]}
            ),
        )

    # -- the Backend protocol ----------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "revision": self.revision,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            "extra_body": self.extra_body,
            "top_logprobs": self.top_logprobs,
        }

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        users = list(users)
        labels = list(labels)
        if not users:
            return
        stop = threading.Event()
        pool = self._executor()
        window: deque[Future[Classification]] = deque()
        pending = iter(enumerate(users))
        limit = 2 * self.concurrency

        def fill() -> None:
            while len(window) < limit:
                item = next(pending, None)
                if item is None:
                    return
                index, user = item
                window.append(
                    pool.submit(self._classify_one, system, user, labels, index, len(users), stop)
                )

        try:
            fill()
            while window:
                result = window[0].result()
                window.popleft()
                fill()
                yield result
        finally:
            # Normal end, an error, Ctrl-C or a consumer that stopped early: requests not
            # started yet are dropped (a request in flight finishes in its thread).
            stop.set()
            for fut in window:
                fut.cancel()

    def classify(self, system: str, user: str, labels: Sequence[str]) -> Classification:
        return self._classify_one(system, user, list(labels), 0, 1, None)

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        """`temperature` and `seed`, where given, replace the backend's own for this call
        (a teacher's sampled draws); servers that ignore `seed` give unrepeatable draws."""
        max_tokens, stop, prefill = options.max_tokens, options.stop, options.prefill
        json_schema, temperature, seed = options.json_schema, options.temperature, options.seed
        msgs = [_message_dict(m) for m in messages]
        if prefill:
            # Servers that continue a final assistant message return only the continuation;
            # those that start a new turn usually repeat the prefill, which is cut below.
            msgs.append({"role": "assistant", "content": prefill})
        params: dict[str, Any] = self._params(msgs, max_tokens)
        if temperature is not None:
            _check_number("temperature", temperature, low=0)
            params["temperature"] = temperature
        if seed is not None:
            _check_number("seed", seed, low=0, integer=True)
            params["seed"] = seed
        if stop:
            params["stop"] = list(stop)
        if json_schema is not None and self._json_schema_ok:
            params["response_format"] = _response_format(json_schema)
        elif json_schema is not None:
            params["messages"] = _with_schema_instruction(msgs, json_schema)
        try:
            resp, latency = self._complete(params, what="generation")
        except _SchemaRejected:
            self._json_schema_ok = False
            log.info(
                "%s rejected response_format json_schema; asking in the prompt instead",
                self.base_url,
            )
            params.pop("response_format", None)
            params["messages"] = _with_schema_instruction(msgs, json_schema or {})
            resp, latency = self._complete(params, what="generation")
        text, finish, prompt_tokens, completion_tokens = self._read(resp, msgs)
        if prefill:
            text = _strip_prefill(text, prefill)
        return Generation(
            text=text,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
        )

    def count_tokens(self, text: str) -> int:
        if self._tokenizer_name:
            if self._tokenizer is None:
                try:
                    from transformers import AutoTokenizer
                except ImportError as exc:
                    raise PldError(
                        "counting tokens with a tokenizer needs transformers",
                        hint="pip install transformers, or leave tokenizer unset for an "
                        "approximate count",
                    ) from exc
                self._tokenizer = AutoTokenizer.from_pretrained(self._tokenizer_name)
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        return math.ceil(len(text) / _CHARS_PER_TOKEN)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    # -- requests ----------------------------------------------------------------------------

    def before_each_request(self, hook: Callable[[], Any] | None) -> None:
        """Call `hook` before every HTTP request, retries included (a rate limiter's wait)."""
        self._request_hook = hook

    def _before_request(self, request: Any) -> None:
        if self._request_hook is not None:
            self._request_hook()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix="pld-openai"
                )
            return self._pool

    def _params(self, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            self._max_tokens_field: max_tokens,
        }
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.seed is not None:
            params["seed"] = self.seed
        if self.extra_body:
            params["extra_body"] = dict(self.extra_body)
        return params

    def _classify_one(
        self,
        system: str,
        user: str,
        labels: list[str],
        index: int,
        total: int,
        stop: threading.Event | None,
    ) -> Classification:
        if stop is not None and stop.is_set():
            raise _Stopped()
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        what = f"request {index + 1} of {total}" if total > 1 else "request"
        params = self._params(msgs, self.max_tokens)
        if self._logprobs_ok:
            params.update(logprobs=True, top_logprobs=self.top_logprobs)
        try:
            resp, latency = self._complete(params, what=what)
        except _LogprobsRejected:
            self._logprobs_ok = False
            log.warning(
                "%s rejected logprobs/top_logprobs; classifying without label scores",
                self.base_url,
            )
            for key in ("logprobs", "top_logprobs"):
                params.pop(key)
            resp, latency = self._complete(params, what=what)
        text, _finish, prompt_tokens, completion_tokens = self._read(resp, msgs)
        label = parse_label(text, labels)
        return Classification(
            label=label,
            raw=text,
            scores=completion_scores(resp.choices[0], labels) if "logprobs" in params else None,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def _complete(self, params: dict[str, Any], *, what: str) -> tuple[Any, float]:
        """One chat completion (the SDK retries); adapts once to servers that want other
        fields. Returns the completion and the latency of the attempt that answered."""
        openai = self._openai
        try:
            raw = self._client.chat.completions.with_raw_response.create(**params)
            resp = raw.parse()
        except (json.JSONDecodeError, openai.APIResponseValidationError) as exc:
            shown = exc.doc if isinstance(exc, json.JSONDecodeError) else str(exc.body)
            raise self._garbage_error(shown) from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            message = _server_message(exc)
            if "response_format" in params:
                raise _SchemaRejected() from None
            if "top_logprobs" in params and "logprob" in message.lower():
                raise _LogprobsRejected() from None
            if (
                self._max_tokens_field == "max_tokens"
                and "max_completion_tokens" in message
                and exc.status_code == 400
            ):
                self._max_tokens_field = "max_completion_tokens"
                params = dict(params)
                params["max_completion_tokens"] = params.pop("max_tokens")
                return self._complete(params, what=what)
            raise self._status_error(exc, what) from None
        except openai.APIStatusError as exc:
            # llama-cpp-python's server (0.3.x) answers a response_format it does not know
            # (json_schema) with HTTP 500 and a validation error naming the field
            if "response_format" in params and "response_format" in _server_message(exc):
                raise _SchemaRejected() from None
            raise self._status_error(exc, what) from None
        except openai.APIConnectionError as exc:  # includes APITimeoutError
            raise self._connection_error(exc, what) from None
        return resp, raw.elapsed.total_seconds()

    def _read(self, resp: Any, messages: list[dict[str, str]]) -> tuple[str, str | None, int, int]:
        """Text, finish reason and token counts of a completion; garbage is a clear error."""
        choices = getattr(resp, "choices", None)
        first = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(first, "message", None)
        if message is None:
            raise self._garbage_error(resp if isinstance(resp, str) else repr(resp))
        content = getattr(message, "content", None)
        text = content if isinstance(content, str) else ""
        finish = getattr(first, "finish_reason", None)
        usage = getattr(resp, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(prompt_tokens, int):  # servers without usage: approximate
            prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
        if not isinstance(completion_tokens, int):
            completion_tokens = self.count_tokens(text)
        return text, finish, prompt_tokens, completion_tokens

    # -- errors ------------------------------------------------------------------------------

    def _mask(self, text: str) -> str:
        if self._api_key and self._api_key != NO_KEY and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        if self._raw_base_url != self.base_url:
            text = text.replace(self._raw_base_url, self.base_url)
        return text

    def _garbage_error(self, shown: str) -> PldError:
        return PldError(
            f"{self.name}: the server at {self.base_url} returned something that is not a "
            f"chat completion: {self._mask(shown)[:_SNIPPET]!r}",
            hint="check that OPENAI_BASE_URL points at an OpenAI-compatible endpoint (it "
            "usually ends in /v1) and that the server is healthy",
        )

    def _status_error(self, exc: Any, what: str) -> PldError:
        status = exc.status_code
        detail = self._mask(_server_message(exc))[:_SNIPPET]
        attempts = self._attempts(exc)
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        message = (
            f"{self.name}: the server at {self.base_url} answered HTTP {status}"
            f"{_status_name(status)} to {what}{tried}: {detail}"
        )
        if status == 429 or status >= 500 or status in RETRY_STATUS:
            hint = (
                "results that finished are kept in the response cache, so re-running "
                "resumes from there; if the server is overloaded, lower concurrency "
                f"(now {self.concurrency}) or raise max_retries (now {self.max_retries})"
            )
        elif status in (401, 403):
            hint = (
                "check the API key: set OPENAI_API_KEY in the environment (the suite file "
                "must not contain keys)"
            )
        elif status == 404:
            hint = (
                f"check the model name {self.model!r} (GET {self.base_url}/models lists "
                "what the server has) and that OPENAI_BASE_URL ends in /v1"
            )
        else:
            hint = (
                "the server rejected the request, see its message; common causes are a "
                f"model name it does not serve (now {self.model!r}) and a prompt longer "
                "than the model's context"
            )
        return PldError(message, hint=hint)

    def _connection_error(self, exc: Any, what: str) -> PldError:
        openai = self._openai
        cause = exc.__cause__ or exc.__context__
        detail = self._mask(str(cause) if cause else str(exc))[:_SNIPPET]
        attempts = self._attempts(exc)
        tried = f" ({attempts} attempts)" if attempts > 1 else ""
        if isinstance(exc, openai.APITimeoutError):
            message = (
                f"{self.name}: the server at {self.base_url} did not answer {what} "
                f"within {self.timeout:g} s{tried}"
            )
            hint = (
                "raise timeout, lower concurrency, or check the server; results that "
                "finished are kept in the response cache, so re-running resumes"
            )
        else:
            message = (
                f"{self.name}: cannot connect to the OpenAI-compatible server at "
                f"{self.base_url}{tried}: {detail or 'connection error'}"
            )
            hint = (
                "start the server, or point OPENAI_BASE_URL at a running one; results that "
                "finished are kept in the response cache, so re-running resumes"
            )
        return PldError(message, hint=hint)

    def _attempts(self, exc: Any) -> int:
        """How many requests the SDK sent: it numbers its retries in a request header. Without
        that header: every attempt where the SDK retries, one where it does not."""
        request = getattr(exc, "request", None)
        try:
            return int(request.headers["x-stainless-retry-count"]) + 1  # type: ignore[union-attr]
        except (AttributeError, KeyError, TypeError, ValueError):
            status = getattr(exc, "status_code", None)
            retried = status is None or status in RETRY_STATUS or status >= 500
            return self.max_retries + 1 if retried else 1


class _SchemaRejected(Exception):
    """The server refused `response_format`; the caller retries without it."""


class _LogprobsRejected(Exception):
    """The server refused `logprobs` / `top_logprobs`; the caller retries without them."""


def _check_number(
    name: str, value: Any, *, low: float, exclusive: bool = False, integer: bool = False
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int)
    if ok:
        ok = value > low if exclusive else value >= low
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"> {low:g}" if exclusive else f">= {low:g}"
        raise PldError(f"{name} must be {kind} {bound}, got {value!r}", key=name)


def _message_dict(m: Message | Mapping[str, str]) -> dict[str, str]:
    if isinstance(m, Message):
        return {"role": m.role, "content": m.content}
    return {"role": str(m["role"]), "content": str(m["content"])}


def _response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    if "schema" in schema and "name" in schema:  # already OpenAI's json_schema object
        return {"type": "json_schema", "json_schema": dict(schema)}
    name = "".join(
        c if c.isalnum() or c in "_-" else "_" for c in str(schema.get("title") or "output")
    )[:64]
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema)}}


def _with_schema_instruction(
    messages: list[dict[str, str]], schema: Mapping[str, Any]
) -> list[dict[str, str]]:
    body = schema.get("schema", schema) if "name" in schema else schema
    note = (
        "Reply with a single JSON object, and nothing else, that matches this JSON "
        f"schema:\n{json.dumps(body, sort_keys=True)}"
    )
    out = [dict(m) for m in messages]
    for m in out:
        if m["role"] == "system":
            m["content"] = f"{m['content']}\n\n{note}"
            return out
    return [{"role": "system", "content": note}, *out]


def _strip_prefill(text: str, prefill: str) -> str:
    if text.startswith(prefill):
        return text[len(prefill) :]
    stripped = prefill.strip()
    if stripped and text.lstrip().startswith(stripped):
        return text.lstrip()[len(stripped) :]
    return text


def _server_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(body.get("detail"), (str, list)):  # FastAPI-style
            return str(body["detail"])
    if isinstance(body, str) and body.strip():
        return body.strip()
    return str(getattr(exc, "message", "") or exc)


def _status_name(status: int) -> str:
    try:
        return f" ({HTTPStatus(status).phrase.lower()})"
    except ValueError:  # a status the standard library does not name
        return ""
