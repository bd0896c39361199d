"""The backend protocol shared by students (classify) and teachers (generate)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import PldError, did_you_mean

#: The prediction recorded when a model's answer is not one of the labels. Metrics count it
#: as wrong (and report its rate); it is never silently replaced by a guess.
INVALID = "invalid"

PROVIDERS = ("local", "openai")

# Extra providers registered at run time (a team's own backend, or a scripted one in unit
# tests of control flow): prefix -> factory(model, **options).
_EXTRA_PROVIDERS: dict[str, Any] = {}


def register_provider(prefix: str, factory: Any) -> None:
    """Make `prefix:model` names create backends with `factory(model, **options)`."""
    _EXTRA_PROVIDERS[prefix] = factory


def unregister_provider(prefix: str) -> None:
    _EXTRA_PROVIDERS.pop(prefix, None)


@dataclass(frozen=True)
class Classification:
    label: str  # one of the labels, or INVALID
    raw: str  # what the model said (or the label text for scored backends)
    scores: Mapping[str, float] | None = None  # per-label log-probabilities, where available
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    truncated: bool = False  # the prompt was cut to fit the model's context


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
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        prefill: str = "",
        json_schema: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Free text for teacher work. `prefill` starts the assistant turn (the text is
        returned without it); `json_schema` asks for structured output where supported."""

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in this model's tokenizer (approximate for remote models)."""

    def close(self) -> None:
        """Release resources (threads, HTTP pools)."""


@dataclass(frozen=True)
class BackendSpec:
    provider: str
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.model}"


def split_name(name: str) -> tuple[str, str]:
    """'local:qwen' -> ('local', 'qwen'); errors say which providers exist."""
    provider, sep, model = name.partition(":")
    if not sep or not model:
        raise PldError(
            f"backend {name!r} must read provider:model",
            hint=f"providers: {', '.join(PROVIDERS)}; "
            "for example local:qwen2.5-coder-0.5b-instruct",
        )
    known = (*PROVIDERS, *_EXTRA_PROVIDERS)
    if provider not in known:
        raise PldError(
            f"unknown provider {provider!r}{did_you_mean(provider, known)}",
            hint=f"providers: {', '.join(known)}",
        )
    return provider, model


def get_backend(name: str, **options: Any) -> Backend:
    """Create a backend by name. Heavy imports happen here, not at package import."""
    provider, model = split_name(name)
    if provider in _EXTRA_PROVIDERS:
        return _EXTRA_PROVIDERS[provider](model, **options)  # type: ignore[no-any-return]
    if provider == "local":
        from .local import LocalBackend

        return LocalBackend(model, **options)
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(model, **options)
