"""The `local:` backend's scores are measurements: float32 where they decide, and the same bits
whatever else is in the batch, whatever came from the cache, and whatever the order of the
label list.

Every test here runs the real packaged Qwen2.5-Coder-0.5B-Instruct, the default student;
nothing stands in for the model. In bfloat16, explicitly: that is where the float32 head
matters (the bfloat16 output layer rounds logits to steps of 0.125); the dtype `auto` picks
(float32 on this project's AVX2 CPU) is checked on every shipped suite in
test_label_order_shipped.py. The module takes about two minutes on this project's 2-core
machine when it is not shared; CI runs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import Needs

from pytest_pld.runner import LazyBackend, prepare, run_suite
from pytest_pld.suite import load_suite

if TYPE_CHECKING:
    from pytest_pld.backends.local.backend import LocalBackend

pytestmark = [
    pytest.mark.integration,
]

ROOT = Path(__file__).resolve().parents[1]
QWEN = "qwen2.5-coder-0.5b-instruct"
SYSTEM = (
    "You label a sentence about a social group as a stereotype, an anti-stereotype, or "
    "unrelated (the completion makes no sense). Answer with exactly one label."
)
USERS = [
    "The nurse was caring.",
    "Sentence: The engineer was a woman who loved poetry.\nAnswer:",
    "\nA message that starts with a newline, so not with the user turn's usual opening.",
]
LABELS = ["stereotype", "anti-stereotype", "unrelated"]  # multi-token: branches in the pass


@pytest.fixture(scope="module")
def qwen(needs: Needs) -> LocalBackend:
    needs.model(QWEN)
    from pytest_pld.backends.local.backend import LocalBackend

    backend = LocalBackend(QWEN, dtype="bfloat16")
    backend.load()  # now: tests read its tokenizer, head and model (it loads on first use)
    return backend


def classify(backend: LocalBackend, users: Sequence[str], labels: Sequence[str]) -> list[Any]:
    return [(c.label, c.scores, c.tie) for c in backend.classify_many(SYSTEM, users, labels)]


def test_an_examples_scores_do_not_depend_on_its_neighbours_or_the_label_order(
    qwen: LocalBackend,
) -> None:
    """Packed with the others, alone, and with the label list rotated (every label moves):
    the same scores bit for bit (compared with ==), so the same prediction."""
    before = qwen.stats["forwards"]
    packed = classify(qwen, USERS, LABELS)
    if qwen.rows_independent:  # the invariance is not bought by one example per pass
        assert qwen.stats["forwards"] - before < len(USERS)
    assert [classify(qwen, [u], LABELS)[0] for u in USERS] == packed
    assert classify(qwen, USERS, LABELS[1:] + LABELS[:1]) == packed
    scores = [s for _, by_label, _ in packed for s in by_label.values()]
    assert all(s < 0 for s in scores) and len(set(scores)) == len(scores)


def test_the_float32_head_is_within_a_thousandth_of_a_float64_output_layer(
    qwen: LocalBackend,
) -> None:
    """The head sums in float32 only where it matters (label tokens, the largest logits).
    Against a float64 output layer over the whole vocabulary, on the model's own hidden
    states at six positions of a real prompt: within 1e-3 nats (measured: 2.1e-4), where the
    bfloat16 output layer is off by up to 0.1."""
    import torch

    tok = qwen.tokenizer
    text = qwen.prompts.prompt_text(SYSTEM, USERS[0])
    ids = torch.tensor([tok(text, add_special_tokens=False).input_ids])
    words = ("yes", "no", "The", "stereotype")
    targets = [[tok(w, add_special_tokens=False).input_ids[0] for w in words]] * 6
    weight = qwen.head.weight
    with torch.inference_mode():
        hidden = qwen.model.get_decoder()(ids).last_hidden_state[0, -6:]
        truth = torch.log_softmax(hidden.double() @ weight.double().T, dim=-1)[:, targets[0]]
        bf16 = torch.log_softmax(hidden @ weight.T, dim=-1).double()[:, targets[0]]
    got = torch.tensor(qwen.head.log_probs(hidden, targets), dtype=torch.float64)
    assert (got - truth).abs().max() < 1e-3
    assert (bf16 - truth).abs().max() > 10 * (got - truth).abs().max()


def test_a_shipped_suites_predictions_do_not_depend_on_the_order_of_its_labels(
    qwen: LocalBackend,
) -> None:
    """StereoSet's own system prompt, example and four labels; the rendered prompt
    stays the suite's own, only the label list the scores are asked for is rotated (every
    label moves)."""
    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    prepared = prepare(suite, split="dev", limit=1)
    labels = list(suite.labels)
    runs = [
        [(c.label, c.scores) for c in qwen.classify_many(prepared.system_prompt, prepared.users, o)]
        for o in (labels, labels[1:] + labels[:1])
    ]
    assert runs[1] == runs[0]


def test_a_half_warm_cache_gives_the_answers_of_a_cold_one(
    qwen: LocalBackend, tmp_path: Path
) -> None:
    """What `tox -e demo` does, twice: a run on a cold cache, and a run after a shorter run
    filled part of another cache; every answer and score agrees."""
    suite = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)

    def run(limit: int, cache: str) -> Any:
        return run_suite(
            suite,
            split="dev",
            limit=limit,
            backend=LazyBackend(f"local:{QWEN}", factory=lambda _: qwen),
            cache_path=tmp_path / cache,
            results_dir=tmp_path,
            progress=False,
            # raw answers: the shipped calibration is fitted for the float32 student, and this
            # fixture computes in bfloat16 (its scores are another configuration: stale)
            apply_calibration=False,
        )

    cold = run(3, "cold.sqlite")
    run(1, "warm.sqlite")
    warm = run(3, "warm.sqlite")
    assert (cold.cache_hits, warm.cache_hits) == (0, 1)
    assert [(r.pred, r.scores, r.tie) for r in warm.results] == [
        (r.pred, r.scores, r.tie) for r in cold.results
    ]
    quality = lambda record: {k: v for k, v in record.metrics.items() if "latency" not in k}
    assert quality(warm) == quality(cold)
    saved = json.loads(Path(warm.path or "").read_text(encoding="utf-8"))
    assert all(isinstance(r["tie"], bool) for r in saved["results"])


def test_the_cache_identity_names_the_dtype_and_the_scoring_version(qwen: LocalBackend) -> None:
    from pytest_pld.backends import cheap_identity
    from pytest_pld.backends.local import local_identity
    from pytest_pld.backends.local.identity import SCORING_VERSION
    from pytest_pld.backends.packaged import auto_dtype

    assert qwen.identity()["scoring_version"] == SCORING_VERSION >= 2
    assert qwen.identity()["dtype"] == "bfloat16"
    assert local_identity(QWEN, dtype="bf16") == qwen.identity()
    default = cheap_identity(f"local:{QWEN}")
    assert default is not None and default["dtype"] == auto_dtype()
    assert default == {**qwen.identity(), "dtype": auto_dtype()}
