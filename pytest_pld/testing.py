"""A scripted backend for unit tests of control flow (never evidence that a model did anything).

Register it under the `scripted:` provider with `scripted()` (a context manager) or
`use_scripted_backend()`; the answer for each
example comes from a Python function of (system prompt, user message, labels), and teacher
generations come from a queue or a function. Every generate() call's `GenerateOptions`
(temperature and seed included) are recorded in `generate_params`, so a test can check what a
teacher got; a generate function can read the current call's with `backend.generate_params[-1]`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .backends import register_provider, unregister_provider
from .backends.base import GENERATE_DEFAULTS, Classification, GenerateOptions, Generation, Message

ClassifyFn = Callable[[str, str, Sequence[str]], str]
ScoreFn = Callable[[str, str, Sequence[str]], Mapping[str, float]]
GenerateFn = Callable[[Sequence[Message]], str]


class ScriptedBackend:
    """Answers by rule, counts calls, and can fail on demand."""

    def __init__(
        self,
        model: str = "scripted",
        *,
        classify: ClassifyFn | None = None,
        scores: ScoreFn | None = None,
        generate: GenerateFn | Sequence[str] | None = None,
        latency_s: float = 0.001,
        fail_after: int | None = None,
    ) -> None:
        self.name = f"scripted:{model}"
        self.model = model
        self._classify = classify
        # per-label scores (like the local backend's log-probabilities); the answer is then
        # the best-scoring label (the first of equal ones) unless `classify` is given too
        self._scores = scores
        self._generate = generate
        self._queue = list(generate) if isinstance(generate, (list, tuple)) else None
        self.latency_s = latency_s
        self.fail_after = fail_after
        self.classify_calls = 0
        self.generate_calls: list[list[Message]] = []
        #: the parameters of each generate() call, in order (what a real backend would get)
        self.generate_params: list[GenerateOptions] = []

    def identity(self) -> Mapping[str, Any]:
        return {"provider": "scripted", "model": self.model}

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        for user in users:
            if self.fail_after is not None and self.classify_calls >= self.fail_after:
                raise KeyboardInterrupt  # behaves like Ctrl-C in the middle of a run
            self.classify_calls += 1
            scored = dict(self._scores(system, user, labels)) if self._scores else None
            if self._classify is not None:
                label = self._classify(system, user, labels)
            elif scored is not None:
                label = max(labels, key=lambda lab: scored[lab])
            else:
                label = labels[0]
            time.sleep(self.latency_s)
            yield Classification(
                label=label,
                raw=label,
                scores=scored,
                latency_s=self.latency_s,
                prompt_tokens=self.count_tokens(system + user),
            )

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        self.generate_calls.append(list(messages))
        self.generate_params.append(options)
        if self._queue is not None:
            if not self._queue:
                raise AssertionError("scripted teacher ran out of answers")
            text = self._queue.pop(0)
        elif callable(self._generate):
            text = self._generate(messages)
        else:
            text = ""
        return Generation(
            text=text,
            latency_s=self.latency_s,
            prompt_tokens=sum(self.count_tokens(m.content) for m in messages),
            completion_tokens=self.count_tokens(text),
        )

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))

    def close(self) -> None:
        pass


def use_scripted_backend(
    backend: ScriptedBackend | Callable[..., ScriptedBackend], prefix: str = "scripted"
) -> Callable[[], None]:
    """Register `prefix:` names to return `backend`; returns the function that unregisters."""
    if isinstance(backend, ScriptedBackend):
        instance = backend
        register_provider(prefix, lambda model, **_: instance)
    else:
        register_provider(prefix, backend)
    return lambda: unregister_provider(prefix)


@contextlib.contextmanager
def scripted(backend: ScriptedBackend, prefix: str = "scripted") -> Iterator[ScriptedBackend]:
    """`use_scripted_backend` for a `with` block (or a fixture's yield): unregisters on exit,
    also when the block raises."""
    undo = use_scripted_backend(backend, prefix)
    try:
        yield backend
    finally:
        undo()
