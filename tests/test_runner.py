"""The runner's control flow with a scripted backend: cache-first, resume, lazy model loading.

The scripted backend stands in for a model only to count calls; nothing here is evidence of
what a model does (the integration tests in test_local_backend and test_plugin are).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Needs, make_project

from pytest_pld.backends.base import Classification
from pytest_pld.cache import decode_value, encode_value
from pytest_pld.errors import PldError
from pytest_pld.labels import top_label
from pytest_pld.record import RunRecord, load_record
from pytest_pld.runner import LazyBackend, run_suite
from pytest_pld.suite import Suite
from pytest_pld.testing import ScriptedBackend, scripted


def answer_by_word(system: str, user: str, labels: object) -> str:
    return "neg" if "dull" in user else "pos"


@pytest.fixture
def suite(tmp_path: Path):
    made = make_project(tmp_path)
    # eight distinct dev messages, so each example has its own cache entry
    rows = [
        {
            "id": f"d{i}",
            "label": "neg" if i % 2 else "pos",
            "text": f"{'a dull' if i % 2 else 'a great'} show number {i}",
            "topic": "show",
        }
        for i in range(8)
    ]
    (tmp_path / "data" / "dev.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return made


def run_dev(suite: Suite, **options: Any) -> RunRecord:
    """run_suite on dev, its cache and run records explicitly under the test's project (a
    library default that writes under a project is never left to chance)."""
    state = suite.root / ".pld"
    return run_suite(
        suite,
        split="dev",
        progress=False,
        cache_path=state / "cache.sqlite",
        results_dir=state / "runs",
        **options,
    )


def test_a_second_run_answers_everything_from_the_cache(suite, tmp_path: Path) -> None:
    with scripted(ScriptedBackend("student", classify=answer_by_word)) as backend:
        first = run_dev(suite)
        calls = backend.classify_calls
        second = run_dev(suite)
    assert calls == 8 and backend.classify_calls == 8
    assert (first.cache_hits, second.cache_hits, second.cache_misses) == (0, 8, 0)
    assert [r.pred for r in first.results] == [r.pred for r in second.results]
    assert second.metrics["accuracy"] == 1.0
    assert load_record(Path(second.path)).predictions() == second.predictions()


def test_an_interrupted_run_keeps_what_finished_and_resumes(suite) -> None:
    dying = ScriptedBackend("student", classify=answer_by_word, fail_after=5)
    with scripted(dying), pytest.raises(PldError, match="interrupted"):
        run_dev(suite)
    with scripted(ScriptedBackend("student", classify=answer_by_word)) as healthy:
        record = run_dev(suite)
    assert (record.cache_hits, healthy.classify_calls) == (5, 3)


def test_changing_a_rule_changes_the_cache_key(suite) -> None:
    with scripted(ScriptedBackend("student", classify=answer_by_word)):
        run_dev(suite)
        iset = suite.load_instructions()
        reworded = iset.with_rules([iset.rules[0].__class__("R001", "Dull means neg.")])
        record = run_dev(suite, instructions=reworded)
    assert record.cache_misses == 8


def test_a_local_models_identity_does_not_load_the_model(needs: Needs) -> None:
    needs.model("smollm2-135m-instruct")
    lazy = LazyBackend("local:smollm2-135m-instruct")
    identity = lazy.identity()
    assert lazy._backend is None  # a fully cached run must not pay for a model load
    assert identity["provider"] == "local" and len(identity["weights_sha256"]) == 64


class _TieOnDull(ScriptedBackend):
    """Scores both labels the same wherever the message says "dull", and then answers the
    first label, as resolving ties by label order would (control flow only)."""

    def classify_many(self, system: str, users: Any, labels: Any) -> Iterator[Classification]:
        for user, answer in zip(users, super().classify_many(system, users, labels)):
            tie = "dull" in user
            scores = {label: -0.75 if tie or label == answer.label else -3.0 for label in labels}
            label = labels[0] if tie else answer.label
            yield dataclasses.replace(answer, label=label, scores=scores, tie=tie)


def test_ties_reach_the_run_record_and_its_tie_rate(suite) -> None:
    with scripted(_TieOnDull("student", classify=answer_by_word)):
        record = run_dev(suite)
        again = run_dev(suite)  # from the cache
    assert [r.tie for r in record.results] == [i % 2 == 1 for i in range(8)]
    assert record.metrics["tie_rate"] == 0.5
    assert record.tie_count() == 4
    # a tie goes to the label with the smallest hash of (example id, label), not the first
    for r in record.results:
        assert r.pred == (top_label(r.scores or {}, r.id)[0] if r.tie else "pos")
    assert {r.pred for r in record.results if r.tie} == {"pos", "neg"}
    assert [r.tie for r in again.results] == [r.tie for r in record.results]
    assert again.cache_hits == 8
    assert [r.tie for r in load_record(Path(record.path)).results] == [
        r.tie for r in record.results
    ]


def test_records_and_cache_entries_written_before_ties_were_recorded_still_load(
    suite, tmp_path: Path
) -> None:
    with scripted(_TieOnDull("student", classify=answer_by_word)):
        record = run_dev(suite)
    data = json.loads(Path(record.path).read_text(encoding="utf-8"))
    for result in data["results"]:
        del result["tie"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data), encoding="utf-8")
    assert [r.tie for r in load_record(old).results] == [None] * 8  # unknown, not 0
    assert load_record(old).tie_count() is None and record.tie_count() == 4
    stored = encode_value(Classification(label="pos", raw="pos"))
    entry = json.loads(stored)
    del entry["data"]["tie"]
    assert decode_value(json.dumps(entry)) == Classification(label="pos", raw="pos", tie=False)
