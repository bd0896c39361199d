"""Shared fixtures.

`needs` (one fixture) decides whether a test that needs more than the package can run: a
packaged model, torch, a serving stack, Chromium. What is missing skips the test on a
developer's machine, naming it; under PLD_REQUIRE_MODELS=1, which `tox -e py` sets, it fails
the test instead, so a green CI run cannot hide a broken model path behind skips. Only a
prerequisite CI does not install by design (the packaged 1.5B) skips there too. Once `needs`
passed, whatever goes wrong is a failure: no test skips on a caught error or a matched string.

Server fixtures (integration): a real OpenAI-compatible server, `transformers serve`, on
127.0.0.1 and a free port, serving the converted SmolLM2-135M-Instruct folder. The raw GGUF
cannot be served (a GGUF-built config has no `architectures`), so the packaged model is
converted once into the user cache by `ensure_converted` and that folder is served. `serve`
starts any such server command and waits for it (test_openai_scores.py starts llama-cpp-python's,
which serves the GGUF itself and returns log-probabilities).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import SERVE_MODEL, Needs, biased_student

from pytest_pld.testing import ScriptedBackend, scripted

SERVER_START_TIMEOUT_S = 180.0

# `transformers serve` as the console script runs it, without relying on the venv's bin/ being
# on PATH.
_SERVE_MAIN = (
    "import sys; from transformers.cli.transformers import main; "
    "sys.argv[0] = 'transformers'; sys.exit(main())"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServedModel:
    """A running `transformers serve` process."""

    process: subprocess.Popen[bytes]
    folder: Path
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        # A server started with a model pins it and wants that exact name in requests.
        return str(self.folder)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


@pytest.fixture(scope="session")
def needs() -> Needs:
    return Needs()


def converted_model_folder() -> Path:
    """The converted SmolLM2 folder (converted once into the user cache)."""
    from pytest_pld.backends.packaged import ensure_converted

    return Path(ensure_converted(SERVE_MODEL))


def start_server(folder: Path, log_path: Path) -> ServedModel:
    """Start `transformers serve` and wait until it answers /v1/models (bounded)."""
    port = free_port()
    cmd = [
        sys.executable,
        "-c",
        _SERVE_MAIN,
        "serve",
        str(folder),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "bfloat16",
    ]
    return serve(cmd, folder, port, log_path, "`transformers serve`")


def serve(cmd: list[str], folder: Path, port: int, log_path: Path, name: str) -> ServedModel:
    """Run a server command (offline, its output in `log_path`) and wait until it answers
    /v1/models on `port`; a server that exits or is not ready in time fails the test."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = open(log_path, "wb")  # noqa: SIM115 - closed right after Popen duplicates it
    try:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )
    finally:
        log.close()
    served = ServedModel(proc, folder, port, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            served.stop()
            pytest.fail(
                f"{name} exited with {proc.returncode} before it was ready:\n{served.log_tail()}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"{served.base_url}/models", timeout=2) as resp:
                if resp.status == 200:
                    return served
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            served.stop()
            pytest.fail(
                f"{name} was not ready after {SERVER_START_TIMEOUT_S:.0f} s:\n{served.log_tail()}",
                pytrace=False,
            )
        time.sleep(0.25)


@pytest.fixture(scope="session")
def serve_model_folder(needs: Needs) -> Path:
    needs.serving()
    return converted_model_folder()


@pytest.fixture(scope="session")
def openai_server(
    serve_model_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedModel]:
    """A real OpenAI-compatible server for the whole session, stopped at the end."""
    served = start_server(
        serve_model_folder, tmp_path_factory.mktemp("serve") / "transformers-serve.log"
    )
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def disposable_openai_server(serve_model_folder: Path, tmp_path: Path) -> Iterator[ServedModel]:
    """A server of its own, for tests that kill it."""
    served = start_server(serve_model_folder, tmp_path / "transformers-serve.log")
    try:
        yield served
    finally:
        with contextlib.suppress(Exception):
            served.stop()


# pytester runs the plugin end to end in temporary projects (tests/test_plugin.py)
pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_data_root_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own PLD_DATA_ROOT must not change what a test reads."""
    monkeypatch.delenv("PLD_DATA_ROOT", raising=False)


# -- a scripted student for control-flow tests of review and ablate (never evidence of a model) --


def keyword_student(system: str, user: str, labels: Sequence[str]) -> str:
    """'yes' when the message's second word appears in the system prompt (i.e. a rule names it)."""
    return "yes" if user.split()[1] in re.findall(r"[a-z]+", system.lower()) else "no"


@pytest.fixture
def student() -> Iterator[ScriptedBackend]:
    """`scripted:demo` answers with keyword_student while the test runs."""
    with scripted(ScriptedBackend("demo", classify=keyword_student)) as backend:
        yield backend


@pytest.fixture
def scored_student() -> Iterator[ScriptedBackend]:
    """`scripted:student` returns `helpers.biased_student`'s label scores while the test runs
    (the reviews project of calibration: raw answers all neg until offsets shift pos up)."""
    with scripted(ScriptedBackend("student", scores=biased_student)) as backend:
        yield backend
