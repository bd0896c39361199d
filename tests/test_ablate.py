"""`pld ablate`: leave-one-rule-out effects, prune candidates and model-call accounting.

The unit tests use the scripted backend (control flow); the integration test runs the real
packaged SmolLM2-135M-Instruct on a handful of examples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from helpers import Needs

from pytest_pld.ablate import ablate, ablation_from_json
from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.report.ablation import format_json
from pytest_pld.suite import Suite, load_suite
from pytest_pld.testing import ScriptedBackend, scripted

WORDS = ("apple", "pear", "plum", "fig")

SUITE = """\
name: demo
dataset: {{loader: jsonl}}
splits: {{dev: data/dev.jsonl, test: data/test.jsonl}}
labels: [yes, "no"]
user_template: "{{{{ text }}}}"
instructions: instructions/demo.yaml
student: {student}
gates:
  accuracy: ">= 0.5"
"""

# R1 makes apple examples right, R2 makes plum examples wrong (they are "no"), R3 is inert
INSTRUCTIONS = """\
name: demo
version: 3
preamble: Decide yes or no.
rules:
  - id: R1
    text: Say yes for apple.
  - id: R2
    text: Say yes for plum.
  - id: R3
    text: Be careful.
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


def make_suite(
    root: Path,
    *,
    student: str = "scripted:demo",
    instructions: str = INSTRUCTIONS,
    dev: int = 16,
) -> Suite:
    for folder in ("suites", "instructions", "data"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split, n in (("dev", dev), ("test", 4)):
        # apple examples are "yes", all others "no"
        lines = [
            json.dumps(
                {
                    "id": f"{split}{i}",
                    "text": f"a {WORDS[i % 4]} {i}",
                    "label": "yes" if i % 4 == 0 else "no",
                }
            )
            for i in range(n)
        ]
        (root / "data" / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "suites" / "demo.yaml").write_text(SUITE.format(student=student))
    (root / "instructions" / "demo.yaml").write_text(instructions)
    return load_suite(root / "suites" / "demo.yaml", root)


def test_each_rule_gets_its_effect_and_the_harmless_ones_are_prune_candidates(
    tmp_path: Path, student: ScriptedBackend
) -> None:
    result = ablate(make_suite(tmp_path), resamples=100)
    rows = {r.id: r for r in result.rules}
    assert result.split == "dev" and result.examples == 16
    assert rows["R1"].effects["accuracy"].value == pytest.approx(4 / 16)  # helps
    assert rows["R2"].effects["accuracy"].value == pytest.approx(-4 / 16)  # hurts
    assert rows["R3"].effects["accuracy"].value == 0  # inert
    assert result.prune_candidates == ["R2", "R3"]
    for row in result.rules:
        effect = row.effects["macro_f1"]
        assert effect.low <= effect.value <= effect.high
    assert rows["R1"].tokens == 5  # the words of "1. Say yes for apple." (scripted tokenizer)
    assert result.all_rules is not None and result.all_rules.tokens > rows["R1"].tokens


def test_model_calls_are_counted_and_a_second_ablation_is_served_from_the_cache(
    tmp_path: Path, student: ScriptedBackend
) -> None:
    suite = make_suite(tmp_path)
    first = ablate(suite, resamples=50)
    # full set, three leave-one-out variants and the no-rules variant, 16 examples each
    assert first.model_calls == student.classify_calls == 5 * 16
    second = ablate(suite, resamples=50)
    assert second.model_calls == 0 and second.cache_hits == 5 * 16
    assert student.classify_calls == 5 * 16


def test_the_command_prints_the_table_prune_candidates_and_model_calls(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_suite(tmp_path)
    assert (
        main(["ablate", "demo", "--root", str(tmp_path), "--resamples", "50", "--limit", "8"]) == 0
    )
    out = capsys.readouterr().out
    assert "ablation of demo v3 on demo/dev: 8 examples, model scripted:demo" in out
    assert re.search(r"^R2 .* yes +Say yes for plum\.$", out, re.MULTILINE)
    assert "prune candidates (removal did not lower macro-F1 or accuracy): R2, R3" in out
    assert "model calls: 40 (cache hits: 0)" in out
    assert "wide intervals" in out


def test_markdown_and_json_outputs(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_suite(tmp_path)
    main(["ablate", "demo", "--root", str(tmp_path), "--resamples", "50", "--format", "md"])
    md = capsys.readouterr().out
    assert "| `R2` |" in md and "Prune candidates: `R2`, `R3`." in md
    main(["ablate", "demo", "--root", str(tmp_path), "--resamples", "50", "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert data["prune_candidates"] == ["R2", "R3"] and data["model_calls"] == 0


def prior_or_apple(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Label scores biased to "no". Without R1 the student notices half of the apples (number
    % 8 == 0); R1 ("Say yes for apple.") makes it notice all; R3 ("Be careful.") adds 1.5 to
    yes everywhere: what an offset does, so a refitted calibration takes it back out."""
    rules = system.lower()
    number = int(user.split()[2])
    noticed = "apple" in user and (number % 8 == 0 or "yes for apple" in rules)
    return {"yes": -2.0 + float(noticed) + (1.5 if "careful" in rules else 0.0), "no": 0.0}


def test_with_label_scores_effects_are_measured_on_answers_calibrated_per_variant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instructions = INSTRUCTIONS.replace("  - id: R2\n    text: Say yes for plum.\n", "")
    suite = make_suite(tmp_path, instructions=instructions, dev=32)
    with scripted(ScriptedBackend("demo", scores=prior_or_apple)) as backend:
        result = ablate(suite, resamples=200)
        assert main(["ablate", "demo", "--root", str(tmp_path), "--resamples", "50"]) == 0
    rows = {r.id: r for r in result.rules}
    real, prior = rows["R1"], rows["R3"]
    assert real.calibrated_effects is not None and prior.calibrated_effects is not None
    # raw, the prior shift looks like the bigger help; calibrated, it does nothing
    assert prior.effects["macro_f1"].value > real.effects["macro_f1"].value > 0
    assert prior.calibrated_effects["macro_f1"].value == 0
    assert real.calibrated_effects["macro_f1"].value > 0
    assert result.prune_candidates == ["R3"]
    assert result.full_calibrated == {"macro_f1": 1.0, "accuracy": 1.0}
    # full set, two leave-one-out variants and no rules; refitting called no model, and the
    # command's second ablation was served from the cache
    assert result.model_calls == backend.classify_calls == 4 * 32
    out = capsys.readouterr().out
    assert "model calls: 0 (cache hits: 128)" in out
    assert "calibrated macro-F1" in out and "raw macro-F1" in out
    assert "prune candidates (removal did not lower calibrated macro-F1 or" in out
    data = json.loads(format_json(result))
    assert ablation_from_json(data).rules[1].calibrated_effects == prior.calibrated_effects


def test_a_set_without_rules_has_nothing_to_ablate(
    tmp_path: Path, student: ScriptedBackend
) -> None:
    suite = make_suite(
        tmp_path, instructions=INSTRUCTIONS.split("rules:")[0] + "output: 'One word.'\n"
    )
    with pytest.raises(PldError, match="no rules to ablate"):
        ablate(suite)


def test_a_suite_without_the_split_is_an_error_naming_its_splits(
    tmp_path: Path, student: ScriptedBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_suite(tmp_path)
    assert main(["ablate", "demo", "--split", "train", "--root", str(tmp_path)]) == 2
    assert "declared splits: dev, test" in capsys.readouterr().err


def test_ablating_on_the_gate_split_is_allowed_with_a_warning(
    tmp_path: Path, student: ScriptedBackend
) -> None:
    result = ablate(make_suite(tmp_path), split="test", resamples=20)
    assert any("the split the gates use" in note for note in result.notes)


@pytest.mark.integration
def test_ablation_with_the_real_small_local_model(tmp_path: Path, needs: Needs) -> None:
    needs.model("smollm2-135m-instruct")
    instructions = INSTRUCTIONS.replace("  - id: R3\n    text: Be careful.\n", "")
    suite = make_suite(tmp_path, student="local:smollm2-135m-instruct", instructions=instructions)
    result = ablate(suite, limit=6, resamples=200)
    assert [r.id for r in result.rules] == ["R1", "R2"]
    assert result.examples == 6
    # full set + 2 leave-one-out variants + no rules, 6 examples each; nothing cached yet
    assert result.model_calls == 4 * 6 and result.cache_hits == 0
    assert result.size_unit == "tokens" and all(r.tokens > 0 for r in result.rules)
    # the local backend scores every label: each variant is also calibrated, from the same runs
    assert result.full_calibrated is not None
    for row in result.rules:
        assert row.calibrated_effects is not None
        for effect in [*row.effects.values(), *row.calibrated_effects.values()]:
            assert -1 <= effect.low <= effect.value <= effect.high <= 1
    again = ablate(suite, limit=6, resamples=50)
    assert again.model_calls == 0  # every answer came from the cache
