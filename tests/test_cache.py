"""The response cache: keys, modes, resume, concurrent writers, corruption, no secrets."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from pytest_pld.backends.base import Classification, GenerateOptions, Generation, Message
from pytest_pld.backends.openai_backend import OpenAIBackend
from pytest_pld.cache import (
    CacheRebuiltWarning,
    ResponseCache,
    classify_key,
    decode_value,
    encode_value,
    generate_key,
    make_key,
)
from pytest_pld.errors import PldError
from pytest_pld.labels import INVALID

IDENTITY = {
    "provider": "local",
    "model": "smollm2-135m-instruct",
    "weights": "ab12",
    "max_tokens": 8,
    "temperature": 0.0,
}
LABELS = ["Entailment", "Contradiction", "NotMentioned"]


def _result(i: int) -> Classification:
    return Classification(
        label=LABELS[i % 3],
        raw=f"answer {i}",
        scores={"Entailment": -0.5},
        latency_s=0.25 + i,
        prompt_tokens=100 + i,
        completion_tokens=1,
    )


# ---------------------------------------------------------------------------------- keys


def test_the_same_request_gets_the_same_key() -> None:
    assert classify_key(IDENTITY, "sys", "user", LABELS) == classify_key(
        dict(reversed(list(IDENTITY.items()))), "sys", "user", list(LABELS)
    )


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"identity": {**IDENTITY, "model": "qwen"}}, id="model"),
        pytest.param({"identity": {**IDENTITY, "weights": "cd34"}}, id="weights-digest"),
        pytest.param({"identity": {**IDENTITY, "temperature": 0.7}}, id="decoding"),
        pytest.param({"system": "sys v2"}, id="system-prompt"),
        pytest.param({"user": "user 2"}, id="user-message"),
        pytest.param({"labels": ["Entailment", "Contradiction"]}, id="label-set"),
        pytest.param({"labels": list(reversed(LABELS))}, id="label-order"),
    ],
)
def test_anything_that_changes_an_answer_changes_the_key(change: dict) -> None:
    base = {"identity": IDENTITY, "system": "sys", "user": "user", "labels": LABELS}
    changed = {**base, **change}
    assert classify_key(**base) != classify_key(**changed)


def test_classify_and_generate_keys_differ_for_the_same_text() -> None:
    msgs = [Message("system", "sys"), Message("user", "user")]
    assert classify_key(IDENTITY, "sys", "user", LABELS) != generate_key(IDENTITY, msgs)
    assert generate_key(IDENTITY, msgs, GenerateOptions(max_tokens=10)) != generate_key(
        IDENTITY, msgs, GenerateOptions(max_tokens=11)
    )
    assert generate_key(IDENTITY, msgs, GenerateOptions(prefill="{")) != generate_key(
        IDENTITY, msgs
    )
    assert generate_key(
        IDENTITY, msgs, GenerateOptions(json_schema={"type": "object"})
    ) != generate_key(IDENTITY, msgs)


# Keys computed at 4612a67, before generate() took one GenerateOptions: the same call must keep
# the same key, or every answer in users' .pld/cache.sqlite would be asked for again.
PINNED_IDENTITY = {"provider": "openai", "model": "gpt-4.1", "temperature": 0.0}
PINNED_MESSAGES = [
    Message("system", "You write rules."),
    Message("user", "Why is this label right?"),
]
RULE_SCHEMA = {"type": "object", "properties": {"rule": {"type": "string"}}}


@pytest.mark.parametrize(
    ("options", "key"),
    [
        (
            GenerateOptions(),
            "5f839fd10e65085a4c953a42fda1bd66595a3a3f767548248199dea05be2f1f3",
        ),
        (
            GenerateOptions(max_tokens=96, stop=["\n"], prefill="Rule: If"),
            "bed90e2167e9d917fd98df7b976fd3b34a6bc51ec877f3f47498647e93b1626d",
        ),
        (
            GenerateOptions(max_tokens=512, json_schema=RULE_SCHEMA),
            "b8239ee701263b61340c839f4d38ba39dd1dc21a6d8fbb6ce4d0b01eab626705",
        ),
        (
            GenerateOptions(temperature=0.7, seed=3),
            "53d9677e7376c7ffd3a2d946ed988f52a65f37e17560a6a845f5b786324eddff",
        ),
        (
            GenerateOptions(temperature=0.7),
            "1390ac6ad64f54112010267bf69d67f67ee885b68008835f220523fc16e4d0a5",
        ),
    ],
    ids=["greedy", "prefill-stop", "json-schema", "sampled", "sampled-unseeded"],
)
def test_a_generate_key_is_the_one_written_before_generate_options(
    options: GenerateOptions, key: str
) -> None:
    assert generate_key(PINNED_IDENTITY, PINNED_MESSAGES, options) == key


@pytest.mark.parametrize("field", ["api_key", "OPENAI_API_KEY", "secret", "auth_token", "password"])
def test_a_key_like_identity_field_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="credential"):
        make_key({**IDENTITY, "extra": {field: "x"}}, {"kind": "classify"})


def test_values_round_trip_with_latency_and_tokens() -> None:
    c = _result(4)
    g = Generation(
        text="Rule: ...",
        latency_s=1.5,
        prompt_tokens=30,
        completion_tokens=12,
        finish_reason="stop",
    )
    assert decode_value(encode_value(c)) == c
    assert decode_value(encode_value(g)) == g


# ---------------------------------------------------------------------------------- modes


def test_use_mode_returns_what_was_stored(tmp_path: Path) -> None:
    path = tmp_path / ".pld" / "cache.sqlite"
    with ResponseCache(path) as cache:
        keys = [classify_key(IDENTITY, "sys", f"u{i}", LABELS) for i in range(5)]
        for i, key in enumerate(keys[:3]):
            cache.put(key, _result(i))
        found = cache.get_many(keys)
    assert set(found) == set(keys[:3])
    assert found[keys[1]] == _result(1)
    assert (cache.hits, cache.misses, cache.writes) == (3, 2, 3)


def test_an_interrupted_run_resumes_from_what_finished(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    keys = [classify_key(IDENTITY, "sys", f"u{i}", LABELS) for i in range(10)]
    first = ResponseCache(path)
    for i, key in enumerate(keys[:6]):
        first.put(key, _result(i))
    # No close(): the process "dies" here; every put was already committed.
    second = ResponseCache(path)
    done = second.get_many(keys)
    assert sorted(done) == sorted(keys[:6])
    second.close()
    first.close()


def test_refresh_mode_ignores_stored_answers_but_writes_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    key = classify_key(IDENTITY, "sys", "u", LABELS)
    with ResponseCache(path) as cache:
        cache.put(key, _result(0))
    with ResponseCache(path, mode="refresh") as cache:
        assert cache.get_many([key]) == {}
        cache.put(key, _result(1))
    with ResponseCache(path) as cache:
        assert cache.get(key) == _result(1)


def test_off_mode_reads_nothing_and_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path, mode="off") as cache:
        cache.put("k", _result(0))
        assert cache.get_many(["k"]) == {}
        assert len(cache) == 0
    assert not path.exists()


def test_an_unknown_mode_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PldError, match="(?s)unknown cache mode 'bypass'.*use, refresh, off"):
        ResponseCache(tmp_path / "c.sqlite", mode="bypass")


def test_many_keys_are_read_in_chunks(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        items = [(f"key{i}", _result(i)) for i in range(1200)]
        cache.put_many(items)
        found = cache.get_many([k for k, _ in items] + ["missing"])
    assert len(found) == 1200 and cache.misses == 1


def test_the_database_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    ResponseCache(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# ------------------------------------------------------------------- concurrent writers


def _writer(path: str, worker: int, count: int) -> None:
    cache = ResponseCache(path)
    for i in range(count):
        # Every worker also writes a shared key: INSERT OR REPLACE makes them agree.
        cache.put(f"w{worker}-{i}", _result(i))
        cache.put("shared", _result(0))
        cache.get_many([f"w{(worker + 1) % 4}-{i}"])
    cache.close()


def test_several_processes_write_the_same_cache_at_once(tmp_path: Path) -> None:
    path = tmp_path / ".pld" / "cache.sqlite"
    ctx = multiprocessing.get_context("spawn")  # like xdist workers: separate interpreters
    procs = [ctx.Process(target=_writer, args=(str(path), w, 60)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    for p in procs:
        p.close()
    with ResponseCache(path) as cache:
        assert len(cache) == 4 * 60 + 1
        assert cache.get("w3-59") == _result(59)


# Python 3.12+ warns about fork() in a process with threads (xdist's IO thread); the child
# here only touches sqlite through its own new connection.
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_a_cache_opened_before_fork_reconnects_in_the_child(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    cache.put("parent", _result(0))
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_put_from_child, args=(cache,))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0
    proc.close()
    assert set(cache.get_many(["parent", "child"])) == {"parent", "child"}
    cache.close()


def _put_from_child(cache: ResponseCache) -> None:
    cache.put("child", _result(1))


# ------------------------------------------------------------------------------ corruption


def test_a_corrupt_file_is_moved_aside_and_rebuilt_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database, it is a text file" * 100)
    with pytest.warns(
        CacheRebuiltWarning,
        match=r"could not be read.*moved to cache\.sqlite"
        r"\.corrupt-",
    ):
        cache = ResponseCache(path)
    cache.put("k", _result(0))
    assert cache.get("k") == _result(0)
    cache.close()
    aside = list(tmp_path.glob("cache.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")


def test_a_cache_with_an_unknown_schema_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.warns(CacheRebuiltWarning, match="schema version 99"):
        ResponseCache(path).close()


def test_an_unreadable_entry_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with ResponseCache(path) as cache:
        cache.put("good", _result(0))
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO responses VALUES ('bad', '{not json', 0)")
    conn.commit()
    conn.close()
    with ResponseCache(path) as cache:
        assert set(cache.get_many(["good", "bad"])) == {"good"}


# ------------------------------------------------------------------------------ no secrets


def test_api_keys_never_reach_the_cache_file(tmp_path: Path) -> None:
    secret = "sk-test-DO-NOT-LEAK-4f9a8b7c6d5e"
    backend = OpenAIBackend("gpt-test", base_url="http://user:pw@127.0.0.1:9/v1", api_key=secret)
    try:
        identity = backend.identity()
        assert secret not in repr(identity) and "pw" not in identity["base_url"]
        assert secret not in repr(backend)
        path = tmp_path / ".pld" / "cache.sqlite"
        with ResponseCache(path) as cache:
            for i in range(20):
                key = classify_key(identity, "sys", f"user {i}", LABELS)
                assert secret not in key
                cache.put(key, Classification(label=INVALID, raw="??", latency_s=0.1))
            cache.put(generate_key(identity, [Message("user", "hi")]), Generation(text="x"))
        stored = b"".join(p.read_bytes() for p in path.parent.iterdir())
        assert stored and secret.encode() not in stored
    finally:
        backend.close()
