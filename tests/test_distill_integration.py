"""End to end with a real packaged local model as teacher and student: `pld teach` then
`pld distill` on a small StereoSet sample (a few examples per label). Slow: -m integration."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
from helpers import Needs

from pytest_pld.cli import main
from pytest_pld.datasets import Example
from pytest_pld.distill.pipeline import distill
from pytest_pld.distill.settings import DistillSettings
from pytest_pld.distill.teach import teach
from pytest_pld.distill.traces import read_traces
from pytest_pld.folds import DEFAULT_HOLDOUT, split_holdout
from pytest_pld.instructions import Rule, load_instruction_set
from pytest_pld.instructions_save import save_instruction_set
from pytest_pld.suite import Suite, load_suite

ROOT = Path(__file__).resolve().parents[1]
MODEL = "local:smollm2-135m-instruct"


def per_label(examples: list[Example], n: int) -> list[Example]:
    picked: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        if len(picked[example.label]) < n:
            picked[example.label].append(example)
    return [e for group in picked.values() for e in group]


def small_stereoset(root: Path) -> Suite:
    """The shipped stereoset suite's prompt and instructions over a few examples per label of
    its own train/dev/test splits (as JSON lines, so the sample is explicit)."""
    shipped = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    (root / "suites").mkdir()
    (root / "instructions").mkdir()
    (root / "data").mkdir()
    # without the shipped calibration: it was fitted for the suite's 0.5B student, and this
    # suite's student is another (a distill proposal refits one for it)
    text = (ROOT / "instructions" / "stereoset.yaml").read_text("utf-8")
    assert text.count("\ncalibration:") == 1, "the calibration section is expected last"
    (root / "instructions" / "small.yaml").write_text(
        text.split("\ncalibration:")[0] + "\n", encoding="utf-8"
    )
    for split, n in (("train", 3), ("dev", 3), ("test", 2)):
        rows = per_label(shipped.load_examples(split), n)
        (root / "data" / f"{split}.jsonl").write_text(
            "".join(
                json.dumps({"id": e.id, "label": e.label, **dict(e.fields)}) + "\n" for e in rows
            ),
            encoding="utf-8",
        )
    template = json.dumps(shipped.user_template)
    (root / "suites" / "small.yaml").write_text(
        textwrap.dedent(f"""\
        name: small
        dataset: {{loader: jsonl}}
        splits: {{train: data/train.jsonl, dev: data/dev.jsonl, test: data/test.jsonl}}
        labels: [{", ".join(shipped.labels)}]
        user_template: {template}
        instructions: instructions/small.yaml
        student: {MODEL}
        gates: {{accuracy: ">= 0.1"}}
        """),
        encoding="utf-8",
    )
    return load_suite(root / "suites" / "small.yaml", root)


@pytest.mark.integration
def test_teach_and_distill_with_the_real_small_local_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], needs: Needs
) -> None:
    needs.model(MODEL.removeprefix("local:"))
    suite = small_stereoset(tmp_path)
    traces = tmp_path / "traces" / "small.jsonl"
    summary = teach(suite, teacher=MODEL, out=traces, log=lambda s: None)
    # the offline path: prefill + stop strings give a usable rule for (nearly) every example
    assert summary.mode == "prefill" and summary.examples == 12
    assert summary.ok >= 9 and summary.cost.teacher_calls >= 12
    assert summary.cost.tokens > 0
    ok = [t for t in read_traces(traces).traces if t.ok]
    assert all(t.rule.startswith("If ") and t.rule.endswith(".") for t in ok)

    proposal = distill(
        suite,
        DistillSettings(
            traces=traces,
            teacher=MODEL,  # the small model throughout, even where the 1.5B is installed
            embedder="tfidf",
            cluster="kmeans",
            rounds=1,
            limit_dev=12,
            limit_train=12,
            max_candidates=5,
            progress=False,
        ),
        log=lambda s: None,
        state_dir=tmp_path / ".pld",
    )
    # a real proposal: candidates from the model, each scored by the student on dev's
    # selection fold; the proposal's numbers come from the held-back fold
    rest, held = split_holdout(suite.load_examples("dev"), DEFAULT_HOLDOUT)
    scored = [d for d in proposal.decisions if d["after"]]
    assert scored and all(d["after"]["n"] == len(rest) for d in scored)
    assert proposal.before["n"] == (len(held) or len(rest))
    assert proposal.conditions is not None and proposal.conditions.n == proposal.before["n"]
    assert proposal.cost["phases"]["select"]["student_calls"] > 0
    assert proposal.saved_to is not None and proposal.saved_to.exists()
    # the local student scores every label: candidates were judged on calibrated answers
    assert proposal.settings["judged_on"] == "calibrated"
    assert all("raw_macro_f1" in d["after"] for d in scored)

    # every candidate rule renders in the system prompt, and an instruction file holding all
    # of them (whether or not the student's score kept them) passes `pld validate`
    iset = load_instruction_set(suite.instructions_path)
    rules = [
        Rule(id=f"C{i:03d}", text=d["text"], label=d["label"])
        for i, d in enumerate(proposal.decisions, start=1)
        if d["text"]
    ]
    candidate_set = iset.with_rules(rules, version=iset.version + 1)
    prompt = suite.system_prompt(candidate_set)
    assert all(r.text in prompt for r in rules)
    scratch = tmp_path / "instructions" / "candidates.yaml"
    shutil.copy(suite.instructions_path, scratch)
    save_instruction_set(candidate_set, scratch, expected_text=scratch.read_text("utf-8"))
    capsys.readouterr()
    assert main(["validate", str(scratch), "--root", str(tmp_path)]) == 0

    # the proposal itself, applied: still valid, version bumped when it changes anything
    if proposal.changed:
        proposal.write()
        written = load_instruction_set(suite.instructions_path)
        assert written.version == iset.version + 1
        assert all(r.provenance for r in written.rules if r.id not in {x.id for x in iset.rules})
        # with the calibration refitted for the new rules: fresh for this student and prompt
        cal = written.calibration
        assert cal is not None and (cal.student, cal.split) == (MODEL, "dev")
        assert cal.is_stale(MODEL, suite.system_prompt(written)) is None
    assert main(["validate", "--root", str(tmp_path)]) == 0


@pytest.mark.integration
def test_the_real_model_rewords_a_rule_once_its_own_words_are_named(needs: Needs) -> None:
    """The wording check's paraphrase with qwen2.5-coder-0.5b (float32, prefill): asked plainly
    and greedily, small models hand a rule back; the re-asks that name the rule's own words
    ('contains', 'phrase') and sample got this rule said without one of them. Three
    generations at most."""
    from pytest_pld.backends.local.backend import LocalBackend
    from pytest_pld.distill.teach import header_for
    from pytest_pld.distill.wording import content_words, paraphrase, reworded

    shipped = load_suite(ROOT / "suites" / "stereoset.yaml", ROOT)
    header = header_for(load_instruction_set(shipped.instructions_path), shipped)
    rule = Rule(  # R007 of the 1.5B teacher's StereoSet proposal
        id="R007",
        text="If the sentence contains the phrase 'to be an <occupation>', then the label is "
        "profession.",
        label="profession",
    )
    assert content_words(rule.text, header, rule.label) == ["contains", "phrase"]
    needs.model("qwen2.5-coder-0.5b-instruct")
    # the seeded draws this was written with are transformers' (float32); llama.cpp's sampler
    # draws others (it reworded this rule with 2 of 12 seeds when measured), so which of
    # three draws succeed depends on the engine
    backend = LocalBackend(
        "qwen2.5-coder-0.5b-instruct", dtype="float32", generation="transformers"
    )
    try:
        answer = paraphrase(backend, rule, mode="prefill", header=header)  # type: ignore[arg-type]
    finally:
        backend.close()
    assert answer.ok, answer.error
    assert reworded(answer.rule, rule, header), answer.rule
    assert "profession" in answer.rule and answer.rule != rule.text
