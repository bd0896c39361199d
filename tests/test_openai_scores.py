"""Label scores of a served student (`backends.first_token`, the `openai:` backend's log-probability
path).

Matching tokens to labels is checked on hand-written token lists. The integration tests start a
real OpenAI-compatible server that returns log-probabilities, llama-cpp-python's
`python -m llama_cpp.server` serving the packaged SmolLM2-135M GGUF on 127.0.0.1, and drive the
backend and `pld calibrate` against it. (`transformers serve` returns none: see
test_openai_backend.py.)
"""

from __future__ import annotations

import json
import math
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, serve
from helpers import Needs

from pytest_pld import metrics
from pytest_pld.backends.first_token import completion_scores, label_scores
from pytest_pld.backends.openai_backend import OpenAIBackend
from pytest_pld.cli import main
from pytest_pld.instructions import load_instruction_set

STEREOSET = ["gender", "profession", "race", "religion"]


# --- matching tokens to labels ------------------------------------------------------------------


def test_a_token_stands_for_the_one_label_it_starts() -> None:
    top = [(" Race", -0.5), ("race", -1.0), ("rel", -2.0), ("gender", -3.0), ("The", -0.1)]
    got = label_scores(top, STEREOSET)
    assert list(got) == ["gender", "race", "religion"]  # in label order; profession is missing
    assert got["race"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.0)))
    assert (got["religion"], got["gender"]) == (-2.0, -3.0)


def test_a_token_that_starts_two_labels_stands_for_neither() -> None:
    # "r" starts race and religion; "Not" starts both NotMentioned and NotEntailed
    assert label_scores([("r", -0.1), ("race", -2.0)], STEREOSET) == {"race": -2.0}
    assert label_scores([("Not", -0.1)], ["NotMentioned", "NotEntailed", "Entailment"]) == {}


def test_single_letter_labels_match_whole_and_case_sensitively() -> None:
    top = [("A", -0.3), (" B", -1.0), ("a", -2.0), ("And", -2.5), ("C.", -3.0)]
    assert label_scores(top, ["A", "B", "C", "D"]) == {"A": -0.3, "B": -1.0, "C": -3.0}


def test_scores_come_from_the_first_token_with_letters_or_digits() -> None:
    choice = {
        "logprobs": {
            "content": [
                {"token": " ", "top_logprobs": [{"token": " ", "logprob": -0.01}]},
                {
                    "token": "gender",
                    "top_logprobs": [
                        {"token": "gender", "logprob": -0.2},
                        {"token": "race", "logprob": -1.9},
                    ],
                },
                {"token": ".", "top_logprobs": [{"token": "religion", "logprob": -9.0}]},
            ]
        }
    }
    assert completion_scores(choice, STEREOSET) == {"gender": -0.2, "race": -1.9}
    assert completion_scores({"logprobs": None}, STEREOSET) is None
    assert completion_scores({}, STEREOSET) is None


# --- a real server that returns log-probabilities -----------------------------------------------

SENTIMENT_SYSTEM = (
    "Classify the sentiment of the review. Answer with exactly one word: positive or negative."
)
LABELS = ["positive", "negative"]


def _smollm2_gguf() -> Path:
    from pytest_pld.backends.packaged import find_parts, get_packaged

    Needs().model("smollm2-135m-instruct")
    parts, _ = find_parts(get_packaged("smollm2-135m-instruct"))
    return parts[0]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1; its base URL."""
    # llama-cpp-python's server is the local server here that returns log-probabilities
    Needs().llama_cpp()
    Needs().modules("sse_starlette", "starlette_context", install="pip install 'pytest-pld[llama]'")
    gguf = _smollm2_gguf()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", "1"]
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    served = serve(cmd, gguf, port, log_path, "llama_cpp.server")
    try:
        yield served.base_url
    finally:
        served.stop()


@pytest.mark.integration
def test_a_llama_cpp_server_gives_label_scores_from_the_first_answer_token(
    llama_server: str,
) -> None:
    reviews = ["I loved every minute of it.", "The worst acting I have ever seen."]
    with OpenAIBackend("smollm2", base_url=llama_server, timeout=120) as backend:
        got = list(backend.classify_many(SENTIMENT_SYSTEM, reviews, LABELS))
        again = list(backend.classify_many(SENTIMENT_SYSTEM, reviews, LABELS))
    for c in got:
        assert c.scores is not None and set(c.scores) == set(LABELS)
        assert all(math.isfinite(v) and v <= 0 for v in c.scores.values())
    loved = got[0]
    assert loved.label == "positive" and loved.scores is not None
    assert loved.scores["positive"] > loved.scores["negative"]
    assert [c.scores for c in again] == [c.scores for c in got]  # temperature 0: repeatable


def sentiment_project(root: Path, reviews: list[tuple[str, str]]) -> Path:
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    rows = [
        {"id": f"r{i}", "label": label, "text": text} for i, (text, label) in enumerate(reviews)
    ]
    (root / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "test.jsonl").write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    (root / "suites" / "reviews.yaml").write_text(
        textwrap.dedent("""\
        name: reviews
        dataset: {loader: jsonl}
        splits: {dev: dev.jsonl, test: test.jsonl}
        labels: [positive, negative]
        user_template: "{{ text }}"
        instructions: instructions/reviews.yaml
        student: openai:smollm2
        gates: {macro_f1: ">= 0.1"}
        """),
        encoding="utf-8",
    )
    path = root / "instructions" / "reviews.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: reviews
        version: 1
        preamble: Classify the sentiment of the review.
        output: 'Answer with exactly one word: {{ labels | join(" or ") }}.'
        """),
        encoding="utf-8",
    )
    return path


@pytest.mark.integration
def test_pld_calibrate_fits_a_served_students_label_scores(
    llama_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviews = [
        ("I loved every minute of it.", "positive"),
        ("Terrible, a waste of money.", "negative"),
        ("Boring and far too long.", "negative"),
        ("The worst acting I have ever seen.", "negative"),
    ]
    path = sentiment_project(tmp_path, reviews)
    argv = ["calibrate", "reviews", "--write", "--student-base-url", llama_server]
    argv += ["--student-option", "timeout=120", "--root", str(tmp_path)]
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    cal = load_instruction_set(path).calibration
    assert cal is not None and cal.student == "openai:smollm2" and cal.examples == 4
    assert set(cal.offsets) == set(LABELS)
    # the claimed macro-F1 is what the offsets give on the run record of the same examples
    run = ["run", "reviews", "--split", "dev", "--student-base-url", llama_server]
    assert main([*run, "--root", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "cache hits 4, model calls 0" in printed
    record = json.loads(Path(printed.split("run record: ")[1].strip()).read_text())
    gold = tuple(r["gold"] for r in record["results"])
    calibrated = tuple(cal.answer(r["scores"], r["id"]) for r in record["results"])
    after = metrics.macro_f1(metrics.Predictions(tuple(LABELS), gold, calibrated))
    assert round(after, 4) == cal.macro_f1_after
    # the run applied the calibration to the served scores (another URL would not matter)
    assert record["calibration"]["applied"] is True
    assert tuple(r["pred"] for r in record["results"]) == calibrated


@pytest.mark.integration
def test_pld_calibrate_refuses_a_served_student_whose_label_was_not_among_the_top_n(
    llama_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SmolLM2 answers this review by repeating it, and the first token of neither label is
    among its 20 most likely first tokens: the review has no label scores, and calibration
    says so instead of fitting a guess."""
    path = sentiment_project(tmp_path, [("Best film of the year!", "positive")])
    before = path.read_text(encoding="utf-8")
    argv = ["calibrate", "reviews", "--student-base-url", llama_server, "--root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "openai:smollm2 returned no label scores for 1 of 1 examples (first: r0)" in err
    assert "top_logprobs" in err
    assert path.read_text(encoding="utf-8") == before
