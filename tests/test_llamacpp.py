"""Generation through llama.cpp (`backends/local/llamacpp.py`): which engine a `local:` backend
generates with, the cache identities, and, on the real packaged GGUF models, `pld teach`'s
library function writing parsed rules through llama.cpp, repeatably, without loading torch's
copy of the model.

The real-model tests need llama-cpp-python, an optional prerequisite (`pip install
llama-cpp-python`, or `pip install 'pytest-pld[llama]'`; `tox -e distill` installs it, `tox -e py`
does not, because it builds from source for several minutes): without it they skip, saying so.
The engine-choice tests fake its presence or absence and need no model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Needs

from pytest_pld.backends.base import GenerateOptions, Generation, Message, generation_identity
from pytest_pld.backends.local import llamacpp
from pytest_pld.backends.local.llamacpp import LLAMA_CPP, TRANSFORMERS, choose_generation
from pytest_pld.backends.packaged import PACKAGED, ResolvedModel
from pytest_pld.cache import ResponseCache, generate_key
from pytest_pld.distill.cost import CostLedger, CountingTeacher
from pytest_pld.distill.teach import teach
from pytest_pld.distill.traces import read_traces
from pytest_pld.errors import PldError
from pytest_pld.suite import load_suite
from pytest_pld.testing import ScriptedBackend

if TYPE_CHECKING:
    from pytest_pld.backends.local.backend import LocalBackend

ROOT = Path(__file__).resolve().parents[1]
SMOL = "smollm2-135m-instruct"
TEACHER = "qwen2.5-coder-1.5b-instruct"
GGUF = ResolvedModel("m.gguf", "gguf", (Path("m.gguf"),), "0" * 64)
FOLDER = ResolvedModel("dir", "folder", (Path("dir/model.safetensors"),), "1" * 64, Path("dir"))
CAPITAL = [
    Message("system", "You answer in one short sentence."),
    Message("user", "What is the capital of France?"),
]
TEACHER_WHY = "the 1.5B teacher: tox -e distill installs it, CI does not"


def needs_llama_cpp() -> None:
    Needs().llama_cpp()


def needs_packaged(name: str) -> None:
    if name == TEACHER:
        Needs().optional_model(name, TEACHER_WHY)
    else:
        Needs().model(name)


@pytest.fixture
def llama_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "installed_version", lambda: "0.3.36")


@pytest.fixture
def llama_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp, "installed_version", lambda: None)


# -- which engine (no model) ------------------------------------------------------------------


def test_a_gguf_model_on_the_cpu_generates_through_llama_cpp_where_it_is_installed(
    llama_installed: None,
) -> None:
    engine = choose_generation("auto", GGUF, "cpu")
    assert engine.name == LLAMA_CPP and not engine.note
    assert engine.identity == {"engine": "llama.cpp", "llama-cpp-python": "0.3.36", "settings": 1}
    assert choose_generation("llama.cpp", GGUF, "cpu") == engine


@pytest.mark.parametrize(
    ("resolved", "device"), [(FOLDER, "cpu"), (GGUF, "cuda")], ids=["folder", "gpu"]
)
def test_a_folder_or_a_gpu_generates_through_transformers_without_a_note(
    llama_installed: None, resolved: ResolvedModel, device: str
) -> None:
    engine = choose_generation("auto", resolved, device)
    assert (engine.name, engine.identity, engine.note) == (
        TRANSFORMERS,
        {"engine": "transformers"},
        "",
    )


def test_without_llama_cpp_generation_falls_back_with_a_note_on_cost_and_fix(
    llama_missing: None,
) -> None:
    engine = choose_generation("auto", GGUF, "cpu")
    assert engine.name == TRANSFORMERS
    assert "2-4x slower" in engine.note and "pip install llama-cpp-python" in engine.note
    assert "builds llama.cpp from source once" in engine.note and "caches" in engine.note


def test_an_engine_that_cannot_run_is_refused_with_what_to_do(llama_missing: None) -> None:
    with pytest.raises(PldError, match="needs llama-cpp-python") as err:
        choose_generation("llama.cpp", GGUF, "cpu")
    assert "pip install llama-cpp-python" in (err.value.hint or "")
    with pytest.raises(PldError, match="needs a GGUF model"):
        choose_generation("llama.cpp", FOLDER, "cpu")
    with pytest.raises(PldError, match="generation must be one of auto, llama.cpp"):
        choose_generation("vllm", GGUF, "cpu")
    assert choose_generation("transformers", GGUF, "cpu").name == TRANSFORMERS


def test_a_note_is_said_once_per_process(capsys: pytest.CaptureFixture[str]) -> None:
    llamacpp.say_once("note: slow path (test)")
    llamacpp.say_once("note: slow path (test)")
    llamacpp.say_once("")
    assert capsys.readouterr().err == "note: slow path (test)\n"


def test_seeds_repeat_within_llama_cpps_range_and_an_unseeded_draw_is_fresh() -> None:
    assert llamacpp.llama_seed(7) == 7 == llamacpp.llama_seed(7)
    assert llamacpp.llama_seed(0xFFFFFFFF) == 0  # never llama.cpp's "random" seed
    fresh = {llamacpp.llama_seed(None) for _ in range(20)}
    assert len(fresh) > 1 and all(0 <= s < 0xFFFFFFFF for s in fresh)


# -- cache identities -------------------------------------------------------------------------


class TwoEngines(ScriptedBackend):
    """A scripted backend whose generations are keyed apart from its classifications."""

    def generation_identity(self) -> dict[str, Any]:
        return {**self.identity(), "generation": {"engine": "other"}}


def test_cached_generations_are_keyed_by_the_generation_identity(tmp_path: Path) -> None:
    plain, two = ScriptedBackend(generate=["a", "b"]), TwoEngines(generate=["a", "b"])
    assert generation_identity(plain) == plain.identity()
    assert generation_identity(two) != two.identity()
    msgs = [Message("user", "hi")]
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        cache.put(generate_key(two.identity(), msgs), Generation(text="scores' identity"))
        teacher = CountingTeacher(two, CostLedger(), cache)
        assert teacher.generate(msgs).text == "a"  # not the entry under identity()
        stored = cache.get(generate_key(generation_identity(two), msgs))
        assert isinstance(stored, Generation) and stored.text == "a"
        assert teacher.generate(msgs).text == "a"  # now from the cache


def test_scoring_identity_is_the_same_whatever_engine_generates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The classification cache and run records keep their keys; generations do not mix."""
    needs_packaged(SMOL)
    from pytest_pld.backends.local import local_identity
    from pytest_pld.backends.local.backend import LocalBackend

    monkeypatch.setattr(llamacpp, "installed_version", lambda: "0.3.36")
    fast = LocalBackend(SMOL)
    slow = LocalBackend(SMOL, generation="transformers")
    monkeypatch.setattr(llamacpp, "installed_version", lambda: None)
    fallback = LocalBackend(SMOL)
    assert fast.identity() == slow.identity() == fallback.identity() == local_identity(SMOL)
    assert fast.generation_identity()["generation"]["engine"] == "llama.cpp"
    assert slow.generation_identity() == fallback.generation_identity()
    assert slow.generation_identity()["generation"] == {"engine": "transformers"}
    msgs = [Message("user", "hi")]
    keys = {generate_key(b.generation_identity(), msgs) for b in (fast, slow)}
    assert len(keys) == 2
    assert not any(b._loaded for b in (fast, slow, fallback))  # creating loads no model


@pytest.mark.integration
def test_without_llama_cpp_generation_runs_through_transformers_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_packaged(SMOL)
    from pytest_pld.backends.local.backend import LocalBackend

    monkeypatch.setattr(llamacpp, "installed_version", lambda: None)
    monkeypatch.setattr(llamacpp, "_said", set())
    backend = LocalBackend(SMOL)
    try:
        answers = [backend.generate(CAPITAL, GenerateOptions(max_tokens=4)) for _ in range(2)]
    finally:
        backend.close()
    assert backend.generation.name == TRANSFORMERS and backend._loaded
    assert answers[0] == replace(answers[1], latency_s=answers[0].latency_s)
    err = capsys.readouterr().err
    assert err.count("pip install llama-cpp-python") == 1, err
    assert f"local:{SMOL} generates through transformers" in err


# -- the real GGUF models ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol_llama() -> Iterator[LocalBackend]:
    needs_llama_cpp()
    needs_packaged(SMOL)
    from pytest_pld.backends.local.backend import LocalBackend

    backend = LocalBackend(SMOL, generation="llama.cpp")
    yield backend
    backend.close()


@pytest.mark.integration
def test_llama_cpp_answers_with_prefill_stop_and_max_tokens_like_the_transformers_path(
    smol_llama: LocalBackend,
) -> None:
    from pytest_pld.backends.local.backend import LocalBackend

    out = smol_llama.generate(
        CAPITAL, GenerateOptions(max_tokens=24, stop=["\n"], prefill="The capital of France is")
    )
    assert "Paris" in out.text and "\n" not in out.text
    assert not out.text.startswith("The capital of France is")
    assert out.finish_reason in ("stop", "length") and 0 < out.completion_tokens <= 24
    short = smol_llama.generate(CAPITAL, GenerateOptions(max_tokens=3))
    assert (short.completion_tokens, short.finish_reason) == (3, "length")
    whole = smol_llama.generate(CAPITAL, GenerateOptions(max_tokens=64))  # ends its turn by itself
    assert whole.finish_reason == "stop" and "<|im_end|>" not in whole.text
    assert whole.completion_tokens < 64
    # the same chat template and tokens as transformers: the prompts are equally long
    torch_side = LocalBackend(SMOL, generation="transformers")
    try:
        same = torch_side.generate(
            CAPITAL, GenerateOptions(max_tokens=3, prefill="The capital of France is")
        )
    finally:
        torch_side.close()
    assert same.prompt_tokens == out.prompt_tokens > 10
    assert not smol_llama._loaded  # llama.cpp generation never loaded the torch model


@pytest.mark.integration
def test_a_greedy_answer_does_not_depend_on_the_calls_before_it_or_the_context_size(
    smol_llama: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prefix reuse (module docstring of `llamacpp`): the same greedy text after another
    prompt sharing a prefix, after a longer one, and in a fresh model whose context had to
    grow for this prompt."""
    other = [CAPITAL[0], Message("user", "What is the capital of Italy?")]
    first = smol_llama.generate(CAPITAL, GenerateOptions(max_tokens=64))
    assert first.finish_reason == "stop"  # it ends its turn, so a larger max_tokens keeps it
    smol_llama.generate(other, GenerateOptions(max_tokens=8))
    assert smol_llama.generate(CAPITAL, GenerateOptions(max_tokens=64)).text == first.text
    from pytest_pld.backends.packaged import gguf_file

    monkeypatch.setattr(llamacpp, "MIN_CONTEXT", 16)
    small = llamacpp.LlamaCppGenerator(gguf_file(smol_llama.resolved), threads=1)
    try:
        chat = [{"role": m.role, "content": m.content} for m in CAPITAL]
        grown = small.generate(
            chat, max_tokens=2000, stop=(), prefill="", temperature=None, seed=None
        )
        # a context of 1,024 tokens first (to read the template), then one for this request
        assert small.loads == 2
    finally:
        small.close()
    assert grown.text == first.text


@pytest.mark.integration
def test_a_prompt_over_the_models_context_is_an_error_naming_the_token_counts(
    smol_llama: LocalBackend,
) -> None:
    long = [Message("user", "word " * 9000)]
    with pytest.raises(PldError, match=r"over the model's context of 8192 tokens"):
        smol_llama.generate(long, GenerateOptions(max_tokens=8))


@pytest.mark.integration
def test_pld_teach_writes_rules_through_llama_cpp_greedy_and_sampled_draws_repeat(
    tmp_path: Path,
) -> None:
    """`teach` with the packaged SmolLM2 GGUF: one greedy and one sampled draw of two StereoSet
    train examples, taught twice by one backend (the second time after other prompts filled
    its key-value cache) and once by a fresh one: the same rules, parsed, every time."""
    needs_llama_cpp()
    needs_packaged(SMOL)
    from pytest_pld.backends.local.backend import LocalBackend

    shipped = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    options: dict[str, Any] = {"limit": 2, "samples": 2, "temperature": 1.0, "progress": False}
    backend = LocalBackend(SMOL)
    fresh = LocalBackend(SMOL)
    outs = [tmp_path / f"{i}.jsonl" for i in range(3)]
    try:
        assert backend.generation.name == LLAMA_CPP  # "auto", where llama-cpp-python is
        for out, teacher in zip(outs, (backend, backend, fresh)):
            summary = teach(shipped, teacher=teacher, out=out, log=lambda s: None, **options)
            assert (summary.taught, summary.failed) == (4, 0), summary.lines()
        assert backend.generation_identity()["generation"]["engine"] == "llama.cpp"
        assert not backend._loaded and not fresh._loaded  # no torch model for a teacher
    finally:
        backend.close()
        fresh.close()
    runs = [{(t.id, t.draw): t for t in read_traces(out).traces} for out in outs]
    assert sorted(d for _, d in runs[0]) == [0, 0, 1, 1]
    for trace in runs[0].values():
        assert trace.ok and trace.rule.startswith("If ") and trace.gold in trace.rule
        assert trace.teacher == f"local:{SMOL}" and trace.completion_tokens > 0
    assert {(t.draw, t.temperature) for t in runs[0].values()} == {(0, 0.0), (1, 1.0)}
    for again in runs[1:]:
        assert {k: t.rule for k, t in again.items()} == {k: t.rule for k, t in runs[0].items()}


@pytest.mark.integration
def test_the_packaged_teacher_writes_a_stereoset_rule_through_llama_cpp(tmp_path: Path) -> None:
    """The 1.5B teacher (Q4_K_M, chunked in 22 packages: assembled into one GGUF file once),
    one greedy StereoSet trace; about half a minute on 2 cores."""
    needs_llama_cpp()
    needs_packaged(TEACHER)
    from pytest_pld.backends.local.backend import LocalBackend
    from pytest_pld.backends.packaged import file_digest, gguf_file

    shipped = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    backend = LocalBackend(TEACHER)
    try:
        gguf = gguf_file(backend.resolved)
        assert file_digest([gguf]) == PACKAGED[TEACHER].sha256 and gguf.suffix == ".gguf"
        out = tmp_path / "teacher.jsonl"
        summary = teach(shipped, teacher=backend, out=out, limit=1, log=lambda s: None)
        assert backend.generation.name == LLAMA_CPP and not backend._loaded
    finally:
        backend.close()
    (trace,) = read_traces(out).traces
    assert summary.ok == 1 and trace.ok, summary.lines()
    assert trace.rule.startswith("If ") and trace.gold in trace.rule
    assert trace.teacher == f"local:{TEACHER}"
