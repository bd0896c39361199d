"""The `needs` fixture (conftest.py): what a test needs beyond the package skips the test where it
is missing, naming it, and fails it under PLD_REQUIRE_MODELS=1 (tox), except a prerequisite CI
does not install by design."""

from __future__ import annotations

import pytest
from helpers import Needs

ABSENT_MODULE = "pytest_pld_no_such_module"


def needs(required: bool) -> Needs:
    found = Needs()
    found.required = required
    return found


def test_a_missing_package_skips_the_test_naming_it() -> None:
    with pytest.raises(pytest.skip.Exception, match=f"the Python package {ABSENT_MODULE} is "):
        needs(False).modules(ABSENT_MODULE, install="pip install it")


def test_under_pld_require_models_a_missing_package_fails_the_test() -> None:
    with pytest.raises(pytest.fail.Exception, match="PLD_REQUIRE_MODELS=1 requires it"):
        needs(True).modules(ABSENT_MODULE, install="pip install it")


def test_a_missing_packaged_model_fails_under_pld_require_models(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_pld.backends import packaged

    monkeypatch.setattr(packaged, "is_installed", lambda name: False)
    monkeypatch.setattr(Needs, "modules", lambda self, *names, install: None)
    with pytest.raises(pytest.fail.Exception, match="the packaged model smollm2-135m-instruct"):
        needs(True).model("smollm2-135m-instruct")
    with pytest.raises(pytest.skip.Exception, match="pld models install smollm2-135m-instruct"):
        needs(False).model("smollm2-135m-instruct")
    # the 1.5B is optional by design: it skips even where models are required
    with pytest.raises(pytest.skip.Exception, match="CI does not install it"):
        needs(True).optional_model("qwen2.5-coder-1.5b-instruct", "CI does not install it")


def test_tox_requires_the_models(pytestconfig: pytest.Config) -> None:
    tox = (pytestconfig.rootpath / "tox.ini").read_text(encoding="utf-8")
    testenv = tox.split("[testenv]", 1)[1].split("\n[", 1)[0]
    assert "PLD_REQUIRE_MODELS = {env:PLD_REQUIRE_MODELS:1}" in testenv
