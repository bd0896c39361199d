"""Model backends, named `provider:model` (`local:qwen2.5-coder-0.5b-instruct`, `openai:gpt-4.1`),
and the registry that creates them.

A provider is a factory plus two optional hooks that answer without creating the backend: its
cache identity and its token counter. The runner asks the registry for those (a fully cached
run then never loads a model) and never names a provider itself.

Providers load lazily: naming a backend imports its module; importing this package does not
import torch, transformers or openai. The concrete backends import `base` (the protocol and
result types), never this package, so the package has no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PldError, did_you_mean
from .base import Backend, Classification, GenerateOptions, Generation, Message

__all__ = [
    "Backend",
    "Classification",
    "Configured",
    "GenerateOptions",
    "Generation",
    "Message",
    "Provider",
    "cheap_identity",
    "cheap_token_counter",
    "get_backend",
    "parse_model_name",
    "provider_names",
    "register_provider",
    "unregister_provider",
]

Factory = Callable[..., Backend]
IdentityHook = Callable[..., Mapping[str, Any]]
CounterHook = Callable[[str], Callable[[str], int]]


@dataclass(frozen=True)
class Provider:
    """How `prefix:model` names become backends.

    factory(model, **options) creates the backend. The hooks take the model name (the identity
    hook also the options of a `Configured` factory) and must give the same answers as the
    created backend's `identity()` and `count_tokens` without loading a model; a provider
    without them is simply created when they are needed.
    """

    factory: Factory
    identity: IdentityHook | None = None
    token_counter: CounterHook | None = None


def _local_backend(model: str, **options: Any) -> Backend:
    from .local.backend import LocalBackend

    return LocalBackend(model, **options)


def _local_identity(model: str, **options: Any) -> Mapping[str, Any]:
    from .local.identity import local_identity

    return local_identity(model, **options)


def _local_token_counter(model: str) -> Callable[[str], int]:
    from .packaged import local_token_counter

    return local_token_counter(model)


def _openai_backend(model: str, **options: Any) -> Backend:
    from .openai_backend import OpenAIBackend

    return OpenAIBackend(model, **options)


_BUILTIN: dict[str, Provider] = {
    "local": Provider(_local_backend, _local_identity, _local_token_counter),
    "openai": Provider(_openai_backend),
}
_providers: dict[str, Provider] = dict(_BUILTIN)


def register_provider(
    prefix: str,
    factory: Factory,
    *,
    identity: IdentityHook | None = None,
    token_counter: CounterHook | None = None,
) -> None:
    """Make `prefix:model` names create backends with `factory(model, **options)` (a team's
    own backend, or a scripted one in unit tests of control flow)."""
    _providers[prefix] = Provider(factory, identity, token_counter)


def unregister_provider(prefix: str) -> None:
    """Undo `register_provider`; a built-in provider that was replaced comes back."""
    if prefix in _BUILTIN:
        _providers[prefix] = _BUILTIN[prefix]
    else:
        _providers.pop(prefix, None)


def provider_names() -> list[str]:
    return list(_providers)


def parse_model_name(name: str) -> tuple[str, str]:
    """'local:qwen' -> ('local', 'qwen'); errors say which providers exist."""
    provider, sep, model = name.partition(":")
    known = provider_names()
    if not sep or not model:
        raise PldError(
            f"backend {name!r} must read provider:model",
            hint=f"providers: {', '.join(known)}; for example local:qwen2.5-coder-0.5b-instruct",
        )
    if provider not in _providers:
        raise PldError(
            f"unknown provider {provider!r}{did_you_mean(provider, known)}",
            hint=f"providers: {', '.join(known)}",
        )
    return provider, model


def get_backend(name: str, **options: Any) -> Backend:
    """Create a backend by name. Heavy imports happen here, not at package import."""
    provider, model = parse_model_name(name)
    return _providers[provider].factory(model, **options)


@dataclass(frozen=True)
class Configured:
    """`get_backend` with options (a role's options for a local model): the runner still asks
    the registry for its identity and token counter, with these options, without creating it."""

    options: Mapping[str, Any]

    def __call__(self, name: str) -> Backend:
        return get_backend(name, **self.options)


def cheap_identity(name: str, **options: Any) -> dict[str, Any] | None:
    """`get_backend(name, **options).identity()` without creating the backend, where the
    provider can tell; None where it cannot."""
    provider, model = parse_model_name(name)
    hook = _providers[provider].identity
    return dict(hook(model, **options)) if hook is not None else None


def cheap_token_counter(name: str) -> Callable[[str], int] | None:
    """`get_backend(name).count_tokens` without loading a model, where the provider can tell;
    None where it cannot. Raises PldError when the model is missing."""
    provider, model = parse_model_name(name)
    hook = _providers[provider].token_counter
    return hook(model) if hook is not None else None
