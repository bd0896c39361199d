"""The backend protocol shared by students (classify) and teachers (generate), and its result
types.

This module names no concrete backend: the registry that turns `provider:model` names into
backends is the package itself (`pytest_pld.backends`), and the label logic (`INVALID`, answer
parsing) is `pytest_pld.labels`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Classification:
    label: str  # one of the labels, or INVALID
    raw: str  # what the model said (or the label text for scored backends)
    scores: Mapping[str, float] | None = None  # per-label log-probabilities, where available
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False  # the prompt was cut to fit the model's context
    #: the top score tied exactly with another label's (see `labels.top_label` for which won)
    tie: bool = False


@dataclass(frozen=True)
class Generation:
    text: str
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True)
class GenerateOptions:
    """How one `generate` call decodes. Written once: every wrapper (rate limit, cost ledger,
    teacher checks) passes the object on unchanged, so a new option is a field here plus the
    backends that honour it.

    `prefill` starts the assistant turn (the text is returned without it); `json_schema` asks
    for structured output where supported. `temperature` None or 0 is greedy decoding (the
    default, and what a teacher's first draw uses); above 0 the answer is sampled, and `seed`
    makes the draw repeatable where the backend can (the local backend always; a server only
    if it honours `seed`)."""

    max_tokens: int = 256
    stop: Sequence[str] = ()
    prefill: str = ""
    json_schema: Mapping[str, Any] | None = None
    temperature: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))  # a caller's list stays its own


#: a plain call: greedy, up to 256 tokens, no stop strings, prefill or schema
GENERATE_DEFAULTS = GenerateOptions()


@runtime_checkable
class Backend(Protocol):
    """What the runner and the distiller need from a model."""

    name: str  # "provider:model" as the user wrote it

    def identity(self) -> Mapping[str, Any]:
        """Everything about this backend that changes an answer (model, weights digest,
        decoding parameters), for the response cache key. Never contains secrets."""

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        """Classify many user messages under one system prompt, in order. Backends reuse
        the shared system prefix (a KV cache, a server's prompt cache) across them."""

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        """Free text for teacher work, decoded as `options` say (see `GenerateOptions`)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in this model's tokenizer (approximate for remote models)."""

    def close(self) -> None:
        """Release resources (threads, HTTP pools)."""


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` before the earliest of the `stop` strings it contains, and whether it held one
    (an OpenAI-compatible server's `stop`: the stop string itself is not returned)."""
    cut = [text.find(s) for s in stop if s and s in text]
    return (text[: min(cut)], True) if cut else (text, False)


def generation_identity(backend: Backend) -> Mapping[str, Any]:
    """The identity that keys a backend's cached generations: `generation_identity()` where
    the backend has one (`local:`, whose generation engine does not change its scores), else
    `identity()`."""
    own = getattr(backend, "generation_identity", None)
    return own() if callable(own) else backend.identity()
