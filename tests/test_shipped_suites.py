"""The suites and instruction sets shipped in suites/ and instructions/: they load, their
splits are the documented, disjoint ones, their prompts fit the budget, and their gates can
fail."""

from __future__ import annotations

import functools
import math
from collections import Counter
from pathlib import Path

import pytest

from pytest_pld import metrics
from pytest_pld.datasets import Example
from pytest_pld.example_clusters import example_clusters
from pytest_pld.render import render_user_message
from pytest_pld.suite import SPLITS, Suite, example_fields, find_suites, load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITES = ["contractnli", "logiqa", "stereoset", "stereoset-intrasentence"]


@functools.cache
def suite(name: str) -> Suite:
    return load_suite(ROOT / "suites" / f"{name}.yaml", ROOT)


def examples(name: str, split: str) -> list[Example]:
    return suite(name).load_examples(split)  # the suite module caches parsed files


def test_the_project_ships_exactly_the_four_paper_suites() -> None:
    assert sorted(find_suites(ROOT)) == SUITES


@pytest.mark.parametrize("name", SUITES)
def test_every_shipped_suite_loads(name: str) -> None:
    loaded = suite(name)
    assert loaded.name == name
    assert set(loaded.splits) == set(SPLITS)
    assert loaded.gate_split == "test"
    assert loaded.student == "local:qwen2.5-coder-0.5b-instruct"
    assert loaded.instructions == f"instructions/{name}.yaml"


# Counts computed once from the shipped data (see suites/data/*/ATTRIBUTION.md).
SPLIT_COUNTS = {
    ("contractnli", "train"): {"Contradiction": 114, "Entailment": 389, "NotMentioned": 347},
    ("contractnli", "dev"): {"Contradiction": 95, "Entailment": 519, "NotMentioned": 423},
    ("contractnli", "test"): {"Contradiction": 148, "Entailment": 660, "NotMentioned": 603},
    ("stereoset", "train"): {"gender": 75, "profession": 232, "race": 271, "religion": 17},
    ("stereoset", "dev"): {"gender": 39, "profession": 109, "race": 150, "religion": 12},
    ("stereoset", "test"): {"gender": 78, "profession": 223, "race": 260, "religion": 22},
    ("stereoset-intrasentence", "train"): {
        "anti-stereotype": 595,
        "stereotype": 595,
        "unrelated": 595,
    },
    ("stereoset-intrasentence", "dev"): {
        "anti-stereotype": 310,
        "stereotype": 310,
        "unrelated": 310,
    },
    ("stereoset-intrasentence", "test"): {
        "anti-stereotype": 583,
        "stereotype": 583,
        "unrelated": 583,
    },
    ("logiqa", "train"): {"A": 75, "B": 90, "C": 111, "D": 179},
    ("logiqa", "dev"): {"A": 34, "B": 32, "C": 39, "D": 91},
    ("logiqa", "test"): {"A": 92, "B": 108, "C": 120, "D": 131},
}


@pytest.mark.parametrize(
    ("name", "split"), list(SPLIT_COUNTS), ids=[f"{n}-{s}" for n, s in SPLIT_COUNTS]
)
def test_each_split_has_its_documented_label_counts(name: str, split: str) -> None:
    got = Counter(e.label for e in examples(name, split))
    assert dict(sorted(got.items())) == SPLIT_COUNTS[(name, split)]
    assert set(got) == set(suite(name).labels)  # every label occurs in every split


@pytest.mark.parametrize("name", SUITES)
def test_splits_share_no_example_and_no_group(name: str) -> None:
    seen_ids: dict[str, str] = {}
    seen_groups: dict[str, str] = {}
    for split in SPLITS:
        for example in examples(name, split):
            assert seen_ids.setdefault(example.id, split) == split, example.id
            group = example.group or example.id
            assert seen_groups.setdefault(group, split) == split, (example.id, group)


def test_both_stereoset_suites_put_each_cluster_in_the_same_split() -> None:
    for split in SPLITS:
        clusters = {e.group for e in examples("stereoset", split)}
        sentences = {e.group for e in examples("stereoset-intrasentence", split)}
        assert clusters == sentences, split


CLUSTER_KEYS = {
    "contractnli": ("document_id", 83),  # 17 hypotheses per contract
    "logiqa": ("context", 385),  # several questions per passage
    "stereoset": ("target", 79),  # several items per target term
    "stereoset-intrasentence": ("target", 79),
}


@pytest.mark.parametrize("name", SUITES)
def test_every_shipped_suite_resamples_clusters_of_related_examples(name: str) -> None:
    key, n_clusters = CLUSTER_KEYS[name]
    assert suite(name).cluster_key == key
    test = examples(name, "test")
    ids = example_clusters(suite(name), test)
    assert ids is not None and len(set(ids)) == n_clusters < len(test)


@pytest.mark.parametrize("name", SUITES)
def test_split_data_lives_inside_suites_data(name: str) -> None:
    data = (ROOT / "suites" / "data").resolve()
    for split in SPLITS:
        path = suite(name).split_path(split)
        assert data in path.parents and path.is_file(), path


@pytest.mark.parametrize("folder", ["contractnli", "stereoset", "logiqa"])
def test_each_data_folder_carries_its_licence_and_attribution(folder: str) -> None:
    here = ROOT / "suites" / "data" / folder
    licence = {
        "contractnli": ["LICENSE", "TERMS"],
        "stereoset": ["LICENSE.md"],
        "logiqa": ["NOTICE"],
    }[folder]
    for name in ["ATTRIBUTION.md", *licence]:
        assert (here / name).is_file(), name
    assert "Citation" in (here / "ATTRIBUTION.md").read_text(encoding="utf-8")


# the version each shipped instruction set is at (REPRODUCTION.md): stereoset's v2 rules were
# withdrawn (v3, they lost to the prior-shift control) and v4 added a fitted calibration; every
# other suite's v2 added one
SHIPPED_VERSION = {"stereoset": 4, "logiqa": 2, "contractnli": 2, "stereoset-intrasentence": 2}
# suites whose instructions went through `pld distill --write` (REPRODUCTION.md); none today
DISTILLED: set[str] = set()


@pytest.mark.parametrize("name", SUITES)
def test_instruction_set_is_zero_shot_or_a_distilled_version_with_provenance(name: str) -> None:
    iset = suite(name).load_instructions()
    version = SHIPPED_VERSION[name]
    assert (iset.name, iset.version) == (name, version)
    if name in DISTILLED:
        assert iset.rules and all(r.provenance.get("method") for r in iset.rules)
        assert all(r.label in suite(name).labels for r in iset.rules)
    else:
        assert iset.rules == ()
    assert list(iset.label_definitions) == list(suite(name).labels)
    # comments are part of the reviewed file; round-trip saving must have some to keep
    text = suite(name).instructions_path.read_text(encoding="utf-8")
    assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 2


@pytest.mark.parametrize("name", SUITES)
def test_system_prompt_names_every_label_in_the_output_instruction(name: str) -> None:
    prompt = suite(name).system_prompt()
    last = prompt.strip().splitlines()[-1]
    assert last.startswith("Answer with exactly one")
    assert all(label in last for label in suite(name).labels)


@pytest.mark.parametrize("name", SUITES)
def test_every_example_renders_within_the_prompt_budget(name: str) -> None:
    s = suite(name)
    system = s.system_prompt()
    longest = max(
        len(render_user_message(s.user_template, example_fields(e), where=str(s.path)))
        for split in SPLITS
        for e in examples(name, split)
    )
    # no tokenizer here: 3 characters per token over-counts English BPE tokens, so this is a
    # safe upper bound. The zero-shot prompt must leave room for the distilled rules too.
    estimated_tokens = (len(system) + longest) / 3
    assert s.max_prompt_tokens is not None
    assert estimated_tokens < s.max_prompt_tokens / 2, (estimated_tokens, s.max_prompt_tokens)


@pytest.mark.parametrize("name", SUITES)
def test_prompt_token_gate_matches_the_suites_budget(name: str) -> None:
    s = suite(name)
    (bound,) = [b for b in s.gates if b.metric == "prompt_tokens"]
    assert (bound.op, bound.value) == ("<=", s.max_prompt_tokens)


@pytest.mark.parametrize("name", SUITES)
def test_every_gate_can_fail(name: str) -> None:
    # a bound that holds over the metric's whole range checks nothing
    extremes = {
        "accuracy": (0.0, 1.0),
        "macro_f1": (0.0, 1.0),
        "invalid_rate": (0.0, 1.0),
        "prompt_tokens": (0.0, math.inf),
    }
    gates = suite(name).gates
    assert {b.metric for b in gates} >= {"accuracy", "invalid_rate", "prompt_tokens"}
    for bound in gates:
        entry, _ = metrics.lookup(bound.metric, suite(name).labels)
        worst = extremes[bound.metric][0 if entry.higher_is_better else 1]
        assert not bound.holds(worst), bound.label
