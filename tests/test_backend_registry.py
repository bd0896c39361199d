"""The backend registry: `provider:model` names and provider hooks (the package's import rules
are checked with the whole package's in tests/test_layout.py).

The scripted backends here count calls of the registry's control flow; nothing is evidence of
what a model does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
from helpers import Needs

from pytest_pld.backends import (
    cheap_identity,
    cheap_token_counter,
    get_backend,
    parse_model_name,
    provider_names,
    register_provider,
    unregister_provider,
)
from pytest_pld.errors import PldError
from pytest_pld.runner import LazyBackend
from pytest_pld.testing import ScriptedBackend


@pytest.fixture
def counting_provider() -> Iterator[dict[str, int]]:
    calls = {"factory": 0, "identity": 0, "counter": 0}

    def factory(model: str, **options: object) -> ScriptedBackend:
        calls["factory"] += 1
        return ScriptedBackend(model)

    def identity(model: str) -> dict[str, str]:
        calls["identity"] += 1
        return {"provider": "counting", "model": model}

    def counter(model: str) -> Callable[[str], int]:
        calls["counter"] += 1
        return lambda text: len(text)

    register_provider("counting", factory, identity=identity, token_counter=counter)
    try:
        yield calls
    finally:
        unregister_provider("counting")


def test_a_registered_providers_hooks_answer_without_creating_the_backend(
    counting_provider: dict[str, int],
) -> None:
    lazy = LazyBackend("counting:m1")
    assert lazy.identity() == {"provider": "counting", "model": "m1"}
    assert lazy.token_counter()("four") == 4
    assert counting_provider == {"factory": 0, "identity": 1, "counter": 1}
    assert isinstance(lazy.get(), ScriptedBackend)
    assert counting_provider["factory"] == 1


def test_a_provider_without_hooks_is_created_for_its_identity() -> None:
    made: list[ScriptedBackend] = []
    register_provider("plain", lambda model, **_: made.append(ScriptedBackend(model)) or made[-1])
    try:
        assert cheap_identity("plain:m") is None and cheap_token_counter("plain:m") is None
        lazy = LazyBackend("plain:m")
        assert lazy.identity() == {"provider": "scripted", "model": "m"}
        assert len(made) == 1
    finally:
        unregister_provider("plain")
    assert "plain" not in provider_names()


def test_unregistering_a_replaced_builtin_brings_it_back() -> None:
    register_provider("openai", lambda model, **_: ScriptedBackend(model))
    try:
        assert isinstance(get_backend("openai:x"), ScriptedBackend)
    finally:
        unregister_provider("openai")
    assert "openai" in provider_names()
    assert cheap_identity("openai:gpt-test") is None  # the built-in again: no identity hook


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("qwen", "must read provider:model"),
        ("local:", "must read provider:model"),
        ("locl:qwen", "unknown provider 'locl' (did you mean 'local'?)"),
    ],
    ids=["no-provider", "no-model", "misspelt-provider"],
)
def test_bad_backend_names_are_errors_that_list_the_providers(name: str, message: str) -> None:
    with pytest.raises(PldError) as err:
        parse_model_name(name)
    assert message in str(err.value)
    assert "local" in (err.value.hint or "") and "openai" in (err.value.hint or "")


def test_a_local_models_identity_does_not_import_torch(needs: Needs) -> None:
    needs.model("smollm2-135m-instruct")
    code = (
        "import sys\n"
        "from pytest_pld.runner import LazyBackend\n"
        "identity = LazyBackend('local:smollm2-135m-instruct').identity()\n"
        "assert len(identity['weights_sha256']) == 64, identity\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.integration
def test_a_local_models_token_counter_does_not_import_torch_once_converted(needs: Needs) -> None:
    from pytest_pld.backends.packaged import ensure_converted

    needs.model("smollm2-135m-instruct")

    ensure_converted("smollm2-135m-instruct")  # converting (once) does import torch
    code = (
        "import sys\n"
        "from pytest_pld.runner import LazyBackend\n"
        "assert LazyBackend('local:smollm2-135m-instruct').token_counter()('hello world') >= 2\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
