"""A requests-per-minute limit for a role's backend, applied outside the backend.

Providers cap requests per minute; going over them buys 429s and backoff. The limit is a token
bucket refilled at `rpm / 60` per second that holds at most one second's worth (at least one
request), so in any minute at most `rpm` requests plus one second's burst start.

The backend streams `classify_many` from its own thread pool and takes the whole list at once,
so the limiter hands it the list in pieces: each piece is as many requests as the bucket allows
now, and the next piece waits for the bucket. A backend that offers `before_each_request` (the
`openai:` one) instead waits for the bucket before each HTTP request it sends, so its client's
own retries of a 429 or a timeout count against the limit too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .backends.base import (
    GENERATE_DEFAULTS,
    Backend,
    Classification,
    GenerateOptions,
    Generation,
    Message,
)


class TokenBucket:
    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be > 0")
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()

    def take(self, most: int = 1) -> int:
        """Wait until a request may start, then take up to `most` starts; returns how many."""
        with self._lock:  # waiters queue here, in arrival order
            while True:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1:
                    n = max(1, min(most, int(self._tokens)))
                    self._tokens -= n
                    return n
                self._sleep((1 - self._tokens) / self.rate)


class RateLimitedBackend:
    """Any backend, with at most `rpm` requests starting per minute."""

    def __init__(self, inner: Backend, rpm: float, bucket: TokenBucket | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.rpm = rpm
        self.bucket = bucket or TokenBucket(rpm)
        hook = getattr(inner, "before_each_request", None)
        self._inside = callable(hook)  # the backend waits before each HTTP attempt itself
        if callable(hook):
            hook(lambda: self.bucket.take(1))

    def identity(self) -> Mapping[str, Any]:
        return self.inner.identity()  # a rate limit does not change an answer

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        if self._inside:
            yield from self.inner.classify_many(system, users, labels)
            return
        users = list(users)
        start = 0
        while start < len(users):
            n = self.bucket.take(len(users) - start)
            yield from self.inner.classify_many(system, users[start : start + n], labels)
            start += n

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        if not self._inside:
            self.bucket.take(1)
        return self.inner.generate(messages, options)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # model, base_url, ... of the wrapped backend
        return getattr(self.inner, name)
