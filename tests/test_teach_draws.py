"""Teacher draws (`pld teach --samples K --temperature T --seed S`) and `--per-label`: control
flow with a scripted teacher (what reaches the teacher, what is written, how a run resumes), and
one test with the real packaged 0.5B model that sampled draws differ from the greedy one and
repeat exactly on a re-run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from helpers import Needs, good_json, make_project

from pytest_pld.backends.base import GenerateOptions, Message
from pytest_pld.cache import generate_key
from pytest_pld.cli import main
from pytest_pld.distill.cost import CostLedger, CountingTeacher
from pytest_pld.distill.draws import draw_seed
from pytest_pld.distill.teach import teach
from pytest_pld.distill.traces import read_traces
from pytest_pld.errors import PldError
from pytest_pld.suite import Suite, load_suite
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def suite(tmp_path: Path) -> Suite:
    return make_project(tmp_path)


def out_of(suite: Suite) -> Path:
    return suite.root / "traces" / "toy.jsonl"


class DrawTeacher(ScriptedBackend):
    """Answers with a rule that names the temperature and seed it was called with, so the
    traces show which call wrote them."""

    def __init__(self) -> None:
        super().__init__("teacher", generate=self._answer)

    def _answer(self, messages: Sequence[Message]) -> str:
        params = self.generate_params[-1]
        answer = json.loads(good_json(messages))
        if params.temperature is not None:
            answer["rule"] = answer["rule"].replace(
                "If the text", f"If (t{params.temperature} s{params.seed}) the text"
            )
        return json.dumps(answer)


@pytest.fixture
def teacher() -> Iterator[DrawTeacher]:
    with scripted(DrawTeacher()) as backend:
        yield backend


def sampled_calls(teacher: ScriptedBackend) -> list[tuple[float | None, int | None]]:
    return [(p.temperature, p.seed) for p in teacher.generate_params]


def test_k_samples_give_k_traces_per_example_greedy_first_then_seeded_draws(
    suite: Suite, teacher: DrawTeacher
) -> None:
    summary = teach(
        suite,
        teacher="scripted:teacher",
        out=out_of(suite),
        limit=2,
        samples=3,
        temperature=0.9,
        seed=5,
    )
    traces = read_traces(out_of(suite)).traces
    ids = sorted({t.id for t in traces})
    assert sorted(t.key for t in traces) == [(i, d) for i in ids for d in range(3)]
    for trace in traces:
        if trace.draw == 0:  # the greedy answer, exactly as a one-draw run writes it
            assert (trace.temperature, trace.seed) == (0.0, None)
            assert trace.rule.startswith("If the text")
        else:
            assert trace.temperature == 0.9 and trace.seed == draw_seed(5, trace.id, trace.draw)
            assert trace.rule.startswith(f"If (t0.9 s{trace.seed}) the text")
    # what reached the teacher: nothing for the greedy draws, temperature and seed otherwise
    calls = sampled_calls(teacher)
    assert calls[:2] == [(None, None), (None, None)]  # every example's draw 0 comes first
    assert all(t == 0.9 for t, _ in calls[2:]) and len({s for _, s in calls[2:]}) == 4
    assert (summary.taught, summary.ok, summary.cost.teacher_calls) == (6, 6, 6)
    assert (
        "2 examples x 3 draws (draw 0 greedy, 1-2 at temperature 0.9, seed 5) = 6 traces"
        in (summary.lines()[0])
    )


def test_draw_seeds_are_stable_and_differ_by_seed_example_and_draw() -> None:
    assert draw_seed(0, "t1", 1) == draw_seed(0, "t1", 1)
    seeds = {draw_seed(s, i, d) for s in (0, 1) for i in ("t1", "t2") for d in (1, 2)}
    assert len(seeds) == 8 and all(0 <= s < 2**31 for s in seeds)


def test_an_interrupted_draw_run_resumes_by_example_and_draw_with_the_same_seeds(
    suite: Suite, teacher: DrawTeacher, tmp_path: Path
) -> None:
    def interrupt_at_the_seventh_call(messages: Sequence[Message]) -> str:
        if len(teacher.generate_calls) == 7:
            raise KeyboardInterrupt
        return DrawTeacher._answer(teacher, messages)

    teacher._generate = interrupt_at_the_seventh_call
    first = teach(suite, teacher="scripted:teacher", out=out_of(suite), samples=2)
    assert first.interrupted and first.ok == 6  # 5 greedy draws, then draw 1 of one example
    teacher._generate = teacher._answer
    second = teach(suite, teacher="scripted:teacher", out=out_of(suite), samples=2)
    assert (second.already_done, second.taught) == (6, 4)
    asked = sampled_calls(teacher)[7:]
    assert all(t == 0.7 for t, _ in asked)  # only sampled draws were left, at the default
    resumed = {t.key: t.rule for t in read_traces(out_of(suite)).traces}
    assert len(resumed) == 10

    # one uninterrupted run into another file draws the very same rules
    with scripted(DrawTeacher()):
        teach(suite, teacher="scripted:teacher", out=tmp_path / "again.jsonl", samples=2)
    assert {t.key: t.rule for t in read_traces(tmp_path / "again.jsonl").traces} == resumed


def test_one_draw_traces_are_draw_0_and_more_samples_add_only_the_sampled_draws(
    suite: Suite, teacher: DrawTeacher
) -> None:
    path = out_of(suite)
    path.parent.mkdir(parents=True)
    (example,) = suite.load_examples("train", limit=1)
    old = {  # a line written before draws existed: no draw, temperature or seed
        "id": example.id,
        "suite": "toy",
        "split": "train",
        "gold": example.label,
        "rule": f"If the text says so, then the label is {example.label}.",
        "teacher": "scripted:teacher",
        "status": "ok",
    }
    path.write_text(json.dumps(old) + "\n", encoding="utf-8")
    (trace,) = read_traces(path).traces
    assert (trace.draw, trace.temperature, trace.seed, trace.ref) == (0, 0.0, None, example.id)
    summary = teach(suite, teacher="scripted:teacher", out=path, limit=1, samples=3)
    assert (summary.already_done, summary.taught) == (1, 2)
    assert sampled_calls(teacher) == [(0.7, draw_seed(0, example.id, d)) for d in (1, 2)]
    refs = [t.ref for t in read_traces(path).traces]
    assert refs == [example.id, f"{example.id}#1", f"{example.id}#2"]


def test_a_failed_draw_is_retried_alone(suite: Suite, teacher: DrawTeacher) -> None:
    def fail_sampled_draws(messages: Sequence[Message]) -> str:
        if teacher.generate_params[-1].temperature:
            return "no JSON here"
        return DrawTeacher._answer(teacher, messages)

    teacher._generate = fail_sampled_draws
    first = teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=1, samples=2)
    assert (first.ok, first.failed) == (1, 1)
    # the repair request of a sampled draw is sampled too, with the draw's seed
    (example,) = suite.load_examples("train", limit=1)
    assert sampled_calls(teacher)[1:] == [(0.7, draw_seed(0, example.id, 1))] * 2
    teacher._generate = teacher._answer
    before = len(teacher.generate_calls)
    second = teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=1, samples=2)
    assert (second.already_done, second.taught, second.ok) == (1, 1, 1)
    assert sampled_calls(teacher)[before:] == [(0.7, draw_seed(0, example.id, 1))]
    traces = read_traces(out_of(suite)).traces
    assert [(t.ref, t.status) for t in traces] == [(example.id, "ok"), (f"{example.id}#1", "ok")]


def test_sampled_draws_already_there_at_another_temperature_are_kept_and_noted(
    suite: Suite, teacher: DrawTeacher
) -> None:
    teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=2, samples=2)
    summary = teach(
        suite, teacher="scripted:teacher", out=out_of(suite), limit=2, samples=2, temperature=1.0
    )
    assert (summary.already_done, summary.taught, summary.sampled_otherwise) == (4, 0, 2)
    assert any(
        "2 of the 4 already there were sampled with another temperature or seed" in line
        for line in summary.lines()
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": 0}, "--samples must be a positive integer"),
        ({"samples": 2, "temperature": 0.0}, "--temperature must be in (0, 2]"),
        ({"samples": 2, "temperature": 2.5}, "--temperature must be in (0, 2]"),
        ({"seed": -1}, "--seed must be an integer >= 0"),
        ({"per_label": 0}, "--per-label must be a positive integer"),
    ],
    ids=["no-samples", "zero-temperature", "too-hot", "negative-seed", "no-per-label"],
)
def test_draw_options_out_of_range_are_errors_before_any_call(
    suite: Suite, teacher: DrawTeacher, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(PldError) as info:
        teach(suite, teacher="scripted:teacher", out=out_of(suite), **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert teacher.generate_calls == [] and not out_of(suite).exists()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("draw", -1, "draw must be an integer >= 0"),
        ("draw", "1", "draw must be an integer >= 0"),
        ("temperature", -0.5, "temperature must be a number >= 0"),
        ("seed", 1.5, "seed must be an integer or null"),
    ],
    ids=["negative-draw", "string-draw", "negative-temperature", "float-seed"],
)
def test_a_trace_line_with_a_bad_draw_field_is_an_error_naming_the_line(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    line = {
        "id": "a",
        "suite": "toy",
        "split": "train",
        "gold": "pos",
        "rule": "If x, then pos.",
        "teacher": "t",
        "status": "ok",
        field: value,
    }
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(PldError) as info:
        read_traces(path)
    assert f"{path}:1:" in str(info.value) and message in str(info.value)


# --- --per-label ---------------------------------------------------------------------------------


def lopsided(tmp_path: Path) -> Suite:
    """20 pos examples and 3 neg ones: a --limit sample may easily miss neg."""
    suite = make_project(tmp_path)
    rows = [(f"p{i:02d}", "pos", f"great thing {i}") for i in range(20)]
    rows += [(f"n{i}", "neg", f"dull thing {i}") for i in range(3)]
    (tmp_path / "data" / "train.jsonl").write_text(
        "".join(
            json.dumps({"id": i, "label": label, "text": text, "topic": "t"}) + "\n"
            for i, label, text in rows
        ),
        encoding="utf-8",
    )
    return load_suite(suite.path, tmp_path)


@pytest.mark.parametrize(
    "per_label, limit, expected",
    [
        (2, None, {"pos": 2, "neg": 2}),
        (5, None, {"pos": 5, "neg": 3}),  # a label with fewer gives all it has
        (5, 4, {"pos": 2, "neg": 2}),  # the labels take turns within --limit
        (5, 7, {"pos": 4, "neg": 3}),
    ],
    ids=["two-each", "rare-label-gives-all", "limit-shared-by-turns", "limit-after-rare-ran-out"],
)
def test_per_label_takes_up_to_n_examples_of_each_label(
    tmp_path: Path,
    teacher: DrawTeacher,
    per_label: int,
    limit: int | None,
    expected: dict[str, int],
) -> None:
    suite = lopsided(tmp_path)
    summary = teach(
        suite, teacher="scripted:teacher", out=out_of(suite), per_label=per_label, limit=limit
    )
    traces = read_traces(out_of(suite)).traces
    assert Counter(t.gold for t in traces) == expected == summary.per_label
    assert any("examples per label: " in line for line in summary.lines())


def test_per_label_keeps_the_examples_an_earlier_limit_run_taught(
    tmp_path: Path, teacher: DrawTeacher
) -> None:
    suite = lopsided(tmp_path)
    by_limit = suite.load_examples("train", limit=10)
    teach(suite, teacher="scripted:teacher", out=out_of(suite), limit=10)
    summary = teach(suite, teacher="scripted:teacher", out=out_of(suite), per_label=10)
    # per label, the same sampling order: the --limit run's examples are all kept
    assert summary.already_done == len(by_limit)
    assert summary.taught == 10 + 3 - len(by_limit)
    assert Counter(t.gold for t in read_traces(out_of(suite)).traces) == {"pos": 10, "neg": 3}


def test_the_teach_command_takes_samples_temperature_seed_and_per_label(
    tmp_path: Path, teacher: DrawTeacher, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = lopsided(tmp_path)
    code = main(
        [
            "teach",
            "toy",
            "--teacher",
            "scripted:teacher",
            "--samples",
            "2",
            "--temperature",
            "0.5",
            "--seed",
            "3",
            "--per-label",
            "1",
            "--root",
            str(suite.root),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "2 examples x 2 draws (draw 0 greedy, 1 at temperature 0.5, seed 3) = 4 traces" in out
    assert "examples per label: neg 1, pos 1" in out
    seeds = {t.seed for t in read_traces(out_of(suite)).traces if t.draw}
    assert seeds == {draw_seed(3, t.id, 1) for t in read_traces(out_of(suite)).traces}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--samples", "0"], "expected a positive integer"),
        (["--samples", "2", "--temperature", "0"], "--temperature"),
        (["--seed", "-3"], "expected an integer >= 0"),
    ],
    ids=["zero-samples", "zero-temperature", "negative-seed"],
)
def test_the_teach_command_rejects_bad_draw_options_with_exit_2(
    suite: Suite,
    teacher: DrawTeacher,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["teach", "toy", "--teacher", "scripted:teacher", *args, "--root", str(suite.root)])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert teacher.generate_calls == []


# --- the response cache keys sampled answers by temperature and seed ------------------------------


def test_the_cache_serves_a_sampled_answer_only_to_the_same_temperature_and_seed(
    tmp_path: Path,
) -> None:
    from pytest_pld.cache import ResponseCache

    answers = iter(f"answer {i}" for i in range(10))
    backend = ScriptedBackend("teacher", generate=lambda messages: next(answers))
    ledger = CostLedger()
    msgs = [Message("user", "a rule, please")]
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        counting = CountingTeacher(backend, ledger, cache)  # type: ignore[arg-type]
        greedy = counting.generate(msgs).text
        one = counting.generate(msgs, GenerateOptions(temperature=0.7, seed=1)).text
        two = counting.generate(msgs, GenerateOptions(temperature=0.7, seed=2)).text
        hotter = counting.generate(msgs, GenerateOptions(temperature=1.0, seed=1)).text
        again = counting.generate(msgs, GenerateOptions(temperature=0.7, seed=1)).text
        greedy_again = counting.generate(msgs).text
    assert len({greedy, one, two, hotter}) == 4 and (again, greedy_again) == (one, greedy)
    assert len(backend.generate_calls) == 4 and ledger.total().teacher_cached == 2
    assert backend.generate_params[1] == GenerateOptions(temperature=0.7, seed=1)
    # a greedy key is the one written before sampling existed: old cached answers stay valid
    greedy_options = GenerateOptions(temperature=None, seed=None)
    assert generate_key({"m": 1}, msgs) == generate_key({"m": 1}, msgs, greedy_options)
    sampled_options = GenerateOptions(temperature=0.7, seed=1)
    assert generate_key({"m": 1}, msgs) != generate_key({"m": 1}, msgs, sampled_options)


# --- the local backend's seeded sampler ----------------------------------------------------------


def _draws(temperature: float, seed: int | None, steps: int = 40) -> list[int]:
    import torch

    from pytest_pld.backends.local.sampling import SeededSampler

    sampler = SeededSampler(temperature, seed)
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0]])
    picked = []
    for _ in range(steps):
        out = sampler(torch.zeros((1, 1), dtype=torch.long), logits.clone())  # type: ignore[arg-type]
        (finite,) = torch.isfinite(out[0]).nonzero()[:, 0].tolist()  # exactly one token left
        picked.append(finite)
    return picked


def test_the_seeded_sampler_repeats_with_its_seed_and_leaves_global_random_state_alone() -> None:
    import torch

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    one, again, other = _draws(1.0, 7), _draws(1.0, 7), _draws(1.0, 8)
    assert torch.rand(1) == expected_next  # the caller's random stream was not touched
    assert one == again and one != other
    assert len(set(one)) >= 3  # at temperature 1 it is a draw, not the greedy token 0


def test_a_low_temperature_concentrates_the_sampler_on_the_greedy_token() -> None:
    assert Counter(_draws(0.05, 1))[0] == 40
    assert Counter(_draws(5.0, 1))[0] < 30


@pytest.mark.parametrize(
    "temperature, seed, message",
    [(-1.0, 1, "temperature must be a number >= 0"), (0.7, -2, "seed must be an integer >= 0")],
    ids=["negative-temperature", "negative-seed"],
)
def test_the_local_backend_refuses_bad_sampling_arguments(
    temperature: float, seed: int, message: str
) -> None:
    from pytest_pld.backends.local.sampling import check_sampling, sampling_kwargs

    with pytest.raises(PldError, match=message):
        check_sampling(temperature, seed)
    assert sampling_kwargs(None, None) == {} and sampling_kwargs(0.0, 3) == {}


# --- the real packaged model ---------------------------------------------------------------------


@pytest.mark.integration
def test_the_real_model_samples_draws_that_differ_from_greedy_and_repeat_on_a_rerun(
    tmp_path: Path, needs: Needs
) -> None:
    """qwen2.5-coder-0.5b (float32) as teacher on one StereoSet train example, three draws:
    greedy, then two sampled at temperature 1.0. A rerun given the first two traces asks for
    draw 2 alone and gets the same text. Four generations: the 2-core machine is slow."""
    from pytest_pld.backends.local.backend import LocalBackend

    needs.model("qwen2.5-coder-0.5b-instruct")
    shipped = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    backend = LocalBackend("qwen2.5-coder-0.5b-instruct", dtype="float32")
    first, again = tmp_path / "first.jsonl", tmp_path / "again.jsonl"
    options = {"limit": 1, "samples": 3, "temperature": 1.0, "progress": False}
    try:
        teach(shipped, teacher=backend, out=first, log=lambda s: None, **options)  # type: ignore[arg-type]
        lines = first.read_text(encoding="utf-8").splitlines()
        again.write_text(lines[0] + "\n" + lines[1] + "\n", encoding="utf-8")  # draws 0, 1
        rerun = teach(shipped, teacher=backend, out=again, log=lambda s: None, **options)  # type: ignore[arg-type]
    finally:
        backend.close()
    draws = {t.draw: t for t in read_traces(first).traces}
    assert sorted(draws) == [0, 1, 2] and all(t.ok for t in draws.values())
    assert (draws[0].temperature, draws[0].seed) == (0.0, None)
    assert [(t.temperature, t.seed) for t in (draws[1], draws[2])] == [
        (1.0, draw_seed(0, draws[0].id, d)) for d in (1, 2)
    ]
    # the 0.5B is sure of itself: a sampled draw may repeat the greedy rule (draw 1 did when
    # this was written), but not every one
    greedy = draws[0].rule
    assert {draws[1].rule, draws[2].rule} - {greedy}, greedy
    assert (rerun.already_done, rerun.taught) == (2, 1)
    redrawn = {t.draw: t for t in read_traces(again).traces}[2]
    assert (redrawn.rule, redrawn.seed) == (draws[2].rule, draws[2].seed)
