"""Every shipped suite's predictions and scores do not depend on the order of its label list.

Each suite's test split, its own instructions and its own student (the packaged
Qwen2.5-Coder-0.5B-Instruct, in the dtype `auto` picks on this CPU, as `pld run` uses it): the
runner's answers with the suite's label order against the backend's answers with the label
list rotated by one (every label moves). The rendered prompt stays the suite's own; only the
order in which the scores are asked for changes. Compared bit for bit, ties included.

CI checks `PLD_LABEL_ORDER_EXAMPLES` (default 2) examples per suite. The measurement in the
issue is 100 per suite: `PLD_LABEL_ORDER_EXAMPLES=100 pytest tests/test_label_order_shipped.py`,
with `PLD_LABEL_ORDER_CACHE=.pld/cache.sqlite` to take the suite-order answers from a cache a
whole-split `pld run` filled (the rotated ones are always computed, never cached).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import Needs

from pytest_pld.runner import LazyBackend, prepare, run_suite
from pytest_pld.suite import load_suite

if TYPE_CHECKING:
    from pytest_pld.backends.local.backend import LocalBackend

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[1]
QWEN = "qwen2.5-coder-0.5b-instruct"
SUITES = sorted(p.stem for p in (ROOT / "suites").glob("*.yaml"))
EXAMPLES = int(os.environ.get("PLD_LABEL_ORDER_EXAMPLES", "2"))


@pytest.fixture(scope="module")
def qwen(needs: Needs) -> LocalBackend:
    needs.model(QWEN)
    from pytest_pld.backends.local.backend import LocalBackend

    return LocalBackend(QWEN)


@pytest.mark.parametrize("name", SUITES)
def test_rotating_a_shipped_suites_labels_changes_no_prediction_or_score(
    name: str, qwen: LocalBackend, tmp_path: Path
) -> None:
    suite = load_suite(ROOT / "suites" / f"{name}.yaml", ROOT)
    assert suite.student == f"local:{QWEN}"  # the model the suite ships with, nothing else
    cache = os.environ.get("PLD_LABEL_ORDER_CACHE")
    record = run_suite(
        suite,
        split="test",
        limit=EXAMPLES,
        backend=LazyBackend(suite.student, factory=lambda _: qwen),
        cache_path=Path(cache) if cache else tmp_path / "cache.sqlite",
        results_dir=tmp_path,
        progress=False,
    )
    prepared = prepare(suite, split="test", limit=EXAMPLES)
    assert [e.id for e in prepared.examples] == [r.id for r in record.results]
    labels = list(suite.labels)
    rotated = labels[1:] + labels[:1]
    answers = qwen.classify_many(prepared.system_prompt, prepared.users, rotated)

    in_suite_order = [(r.id, r.pred, r.scores, r.tie) for r in record.results]
    in_rotated_order = [
        (r.id, a.label, a.scores, a.tie) for r, a in zip(record.results, answers, strict=True)
    ]
    assert len(in_suite_order) == EXAMPLES
    assert in_rotated_order == in_suite_order
