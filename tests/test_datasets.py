"""Dataset loaders: exact counts of the shipped data, premise retrieval, prefix repair, and
errors that name the file for every missing or malformed input."""

from __future__ import annotations

import copy
import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_pld.datasets import Example, registry
from pytest_pld.datasets.contractnli import load_contractnli
from pytest_pld.datasets.jsonl import load_jsonl
from pytest_pld.datasets.logiqa import load_logiqa, parse_options, strip_prefix
from pytest_pld.errors import PldError

DATA = Path(__file__).resolve().parents[1] / "suites" / "data"
CNLI = DATA / "contractnli"
STEREOSET = DATA / "stereoset" / "dev_reconstructed.json"
LOGIQA = DATA / "logiqa"


@functools.cache
def load(loader: str, relpath: str, **options: Any) -> list[Example]:
    """Each shipped file is parsed once per session; the tests only read the examples."""
    return registry()[loader].load(DATA / relpath, options)


def label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(sorted(Counter(e.label for e in examples).items()))


# --- the shipped data, counted --------------------------------------------------------------

# Computed once from the shipped files and cross-checked against the data's SOURCE.md:
# train_truncated and dev match SOURCE.md's table exactly; test.json and Test.txt are the
# subsets shipped here (83 of 123 documents; the first 451 of 651 records); Eval.txt matches
# SOURCE.md's answer distribution (a 109, b 122, c 150, d 270).
SHIPPED = {
    "contractnli-train": (
        "contractnli",
        "contractnli/train_truncated.json",
        {},
        850,
        {"Contradiction": 114, "Entailment": 389, "NotMentioned": 347},
    ),
    "contractnli-dev": (
        "contractnli",
        "contractnli/dev.json",
        {},
        1037,
        {"Contradiction": 95, "Entailment": 519, "NotMentioned": 423},
    ),
    "contractnli-test": (
        "contractnli",
        "contractnli/test.json",
        {},
        1411,
        {"Contradiction": 148, "Entailment": 660, "NotMentioned": 603},
    ),
    "stereoset-intra": (
        "stereoset",
        "stereoset/dev_reconstructed.json",
        {},
        1488,
        {"gender": 192, "profession": 564, "race": 681, "religion": 51},
    ),
    "stereoset-inter": (
        "stereoset",
        "stereoset/dev_reconstructed.json",
        {"part": "intersentence"},
        1520,
        {"gender": 174, "profession": 590, "race": 696, "religion": 60},
    ),
    "stereoset-label-intra": (
        "stereoset_label",
        "stereoset/dev_reconstructed.json",
        {},
        4464,
        {"anti-stereotype": 1488, "stereotype": 1488, "unrelated": 1488},
    ),
    "logiqa-eval": ("logiqa", "logiqa/Eval.txt", {}, 651, {"A": 109, "B": 122, "C": 150, "D": 270}),
    "logiqa-test": ("logiqa", "logiqa/Test.txt", {}, 451, {"A": 92, "B": 108, "C": 120, "D": 131}),
}


@pytest.mark.parametrize(
    ("loader", "relpath", "options", "count", "labels"), list(SHIPPED.values()), ids=list(SHIPPED)
)
def test_each_shipped_file_loads_with_its_exact_count_and_label_distribution(
    loader: str, relpath: str, options: dict[str, Any], count: int, labels: dict[str, int]
) -> None:
    examples = load(loader, relpath, **options)
    assert len(examples) == count
    assert label_counts(examples) == labels
    assert len({e.id for e in examples}) == count


@pytest.mark.parametrize(
    ("loader", "relpath", "options", "count", "labels"), list(SHIPPED.values()), ids=list(SHIPPED)
)
def test_every_example_carries_the_fields_its_loader_declares(
    loader: str, relpath: str, options: dict[str, Any], count: int, labels: dict[str, int]
) -> None:
    declared = set(registry()[loader].fields)
    for example in load(loader, relpath, **options):
        assert declared <= set(example.fields), example.id
        assert all(v not in ("", None, ()) for v in example.fields.values()), example.id


def test_registry_offers_every_loader_with_its_options() -> None:
    loaders = registry()
    assert set(loaders) == {
        "contractnli",
        "stereoset",
        "stereoset_label",
        "logiqa",
        "jsonl",
        "csv",
        "parquet",
    }
    assert dict(loaders["contractnli"].options) == {
        "premise": "retrieved",
        "top_k": 8,
        "max_span_chars": 320,
    }
    records = {
        "id_field": "id",
        "label_field": "label",
        "group_field": "",
        "split_field": "",
        "text_fields": (),
    }
    assert dict(loaders["jsonl"].options) == records
    assert dict(loaders["parquet"].options) == records
    assert dict(loaders["csv"].options) == {**records, "delimiter": ","}


# --- ContractNLI ----------------------------------------------------------------------------


def test_contractnli_has_one_example_per_document_and_hypothesis() -> None:
    examples = load("contractnli", "contractnli/dev.json")
    per_doc = Counter(e.group for e in examples)
    assert len(per_doc) == 61 and set(per_doc.values()) == {17}
    first = examples[0]
    assert first.id == f"contractnli-{first.group}-nda-1"
    assert first.fields["document_id"] == first.group
    assert first.fields["hypothesis_key"] == "nda-1"
    assert first.fields["hypothesis"] == (
        "All Confidential Information shall be expressly identified by the Disclosing Party."
    )


def test_contractnli_per_hypothesis_counts_match_the_source_table() -> None:
    # two rows of SOURCE.md's per-hypothesis table for dev.json (E / C / N)
    examples = load("contractnli", "contractnli/dev.json")
    for key, expected in (
        ("nda-2", {"Entailment": 6, "Contradiction": 44, "NotMentioned": 11}),
        ("nda-20", {"Entailment": 13, "Contradiction": 12, "NotMentioned": 36}),
    ):
        got = Counter(e.label for e in examples if e.fields["hypothesis_key"] == key)
        assert got == expected, key


@pytest.mark.parametrize(
    "relpath",
    ["contractnli/train_truncated.json", "contractnli/dev.json", "contractnli/test.json"],
    ids=["train", "dev", "test"],
)
def test_retrieved_premises_stay_short_at_the_default_top_k(relpath: str) -> None:
    # ~4 characters per token: 3,000 characters is about 750 tokens, well under 1,000
    examples = load("contractnli", relpath)
    assert max(len(e.fields["premise"]) for e in examples) < 3000
    assert max(e.fields["premise"].count("\n") + 1 for e in examples) <= 8


def _documents(n: int) -> dict[str, Any]:
    data = json.loads((CNLI / "dev.json").read_text(encoding="utf-8"))
    return {"documents": data["documents"][:n], "labels": data["labels"]}


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("evidence", ["blanked", "every-span", "first-span"])
def test_retrieved_premise_ignores_the_gold_evidence_spans(tmp_path: Path, evidence: str) -> None:
    data = _documents(4)
    tampered = copy.deepcopy(data)
    for doc in tampered["documents"]:
        for ann in doc["annotation_sets"][0]["annotations"].values():
            ann["spans"] = {
                "blanked": [],
                "every-span": list(range(len(doc["spans"]))),
                "first-span": [0],
            }[evidence]
    original = load_contractnli(_write(tmp_path, "a.json", data), {})
    changed = load_contractnli(_write(tmp_path, "b.json", tampered), {})
    assert [e.fields["premise"] for e in original] == [e.fields["premise"] for e in changed]


def test_retrieved_premise_keeps_spans_in_document_order(tmp_path: Path) -> None:
    data = _documents(3)
    path = _write(tmp_path, "docs.json", data)
    # one span per premise line when spans are not clipped; map each line back to its span
    examples = load_contractnli(path, {"max_span_chars": 100_000})
    spans_by_doc = {
        str(doc["id"]): [" ".join(doc["text"][s:e].split()) for s, e in doc["spans"]]
        for doc in data["documents"]
    }
    for example in examples:
        spans = spans_by_doc[example.group or ""]
        lines = example.fields["premise"].split("\n")
        assert len(lines) == 8
        positions = [spans.index(line) for line in lines]
        assert positions == sorted(positions), example.id


def test_retrieved_premise_prefers_spans_that_share_the_hypothesis_words(tmp_path: Path) -> None:
    text = (
        "The parties agree as follows. Payment is due in thirty days. "
        "The Receiving Party may share Confidential Information with its employees. "
        "This agreement is governed by the laws of Delaware."
    )
    starts = [0, text.index("Payment"), text.index("The Receiving"), text.index("This agr")]
    spans = [[s, e] for s, e in zip(starts, [*starts[1:], len(text)])]
    labels = {
        "nda-5": {
            "short_description": "Sharing with employees",
            "hypothesis": "Receiving Party may share some Confidential Information "
            "with some of Receiving Party's employees.",
        }
    }
    doc = {
        "id": 7,
        "text": text,
        "spans": spans,
        "annotation_sets": [{"annotations": {"nda-5": {"choice": "Entailment", "spans": []}}}],
    }
    path = _write(tmp_path, "one.json", {"documents": [doc], "labels": labels})
    (example,) = load_contractnli(path, {"top_k": 1})
    assert example.fields["premise"] == (
        "The Receiving Party may share Confidential Information with its employees."
    )
    assert example.id == "contractnli-7-nda-5"


def test_long_spans_are_cut_at_max_span_chars(tmp_path: Path) -> None:
    path = _write(tmp_path, "docs.json", _documents(2))
    for example in load_contractnli(path, {"max_span_chars": 60}):
        assert all(len(line) <= 64 for line in example.fields["premise"].split("\n"))


def test_full_premise_is_the_whole_contract_with_whitespace_collapsed(tmp_path: Path) -> None:
    data = _documents(1)
    examples = load_contractnli(_write(tmp_path, "d.json", data), {"premise": "full"})
    assert len(examples) == 17
    assert examples[0].fields["premise"] == " ".join(data["documents"][0]["text"].split())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"premise": "gold"}, "premise must be one of retrieved, full"),
        ({"top_k": 0}, "top_k must be a positive integer"),
        ({"max_span_chars": "long"}, "max_span_chars must be a positive integer"),
    ],
    ids=["premise", "top_k", "max_span_chars"],
)
def test_contractnli_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PldError, match=message):
        load_contractnli(CNLI / "dev.json", options)


# --- StereoSet ------------------------------------------------------------------------------


def test_stereoset_bias_domain_example_is_the_clusters_stereotype_sentence() -> None:
    first = load("stereoset", "stereoset/dev_reconstructed.json")[0]
    assert first.id == first.group == "fdc01ba6042b41f0c894cdccc149f5b4"
    assert first.label == "profession"
    assert dict(first.fields) == {
        "sentence": "The chess player was asian.",
        "context": "The chess player was BLANK.",
        "target": "chess player",
    }


def test_stereoset_label_examples_keep_their_cluster_as_group() -> None:
    examples = load("stereoset_label", "stereoset/dev_reconstructed.json")
    clusters = {e.id for e in load("stereoset", "stereoset/dev_reconstructed.json")}
    by_group: dict[str, list[str]] = {}
    for e in examples:
        by_group.setdefault(e.group or "", []).append(e.label)
    assert set(by_group) == clusters
    assert all(
        sorted(v) == ["anti-stereotype", "stereotype", "unrelated"] for v in by_group.values()
    )
    assert examples[0].id == "107a3b2e248a218017cf1ba6a22f2c76"
    assert examples[0].fields["sentence"] == "The chess player was hispanic."


# --- LogiQA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "letter", "expected"),
    [
        ("A.Civic Park is north", "A", "Civic Park is north"),
        ("d.The fertility rate", "D", "The fertility rate"),
        ("C The retired players", "C", "The retired players"),
        ("A? Many Chinese people", "A", "Many Chinese people"),
        ("C 有 白 术", "C", "有 白 术"),
        ("A No dangshen", "A", "No dangshen"),
        ("A small amount of land in C.A area", "C", "A small amount of land in C.A area"),
        ("A small amount", "A", "A small amount"),
        ("Researcher C.Wang is a doctor.", "C", "Researcher C.Wang is a doctor."),
        ("B.G", "C", "B.G"),
        ("A.", "A", "A."),
    ],
    ids=[
        "clean",
        "lowercase",
        "bare-letter",
        "question-mark",
        "chinese",
        "bare-name",
        "article-other-line",
        "article-own-line",
        "glued-name",
        "other-letter",
        "only-prefix",
    ],
)
def test_option_prefixes_are_stripped_only_when_they_match_the_line(
    raw: str, letter: str, expected: str
) -> None:
    assert strip_prefix(raw, letter) == expected


def test_options_listed_as_a_c_b_d_are_put_back_in_letter_order() -> None:
    assert parse_options(["A.F", "C.L", "B.G", "D.M"]) == ["F", "G", "L", "M"]
    # an incomplete set of prefixes is not a permutation: position decides
    assert parse_options(["A.F", "C.L", "G", "D.M"]) == ["F", "C.L", "G", "M"]


@pytest.mark.parametrize(
    ("relpath", "index", "label", "options"),
    [
        ("logiqa/Test.txt", 2, "B", ("No dangshen", "No Shouwu", "有 白 术", "不 白 术")),
        (
            "logiqa/Test.txt",
            108,
            "B",
            (
                "No.2 valve and No.4 valve.",
                "No.2 valve and No.3 valve.",
                "No.3 valve and No.5 valve.",
                "No.4 valve and No.5 valve.",
            ),
        ),
        ("logiqa/Test.txt", 192, "B", ("F", "G", "L", "M")),
    ],
    ids=["bare-letters", "swapped-valves", "swapped-speakers"],
)
def test_logiqa_shipped_records_with_broken_prefixes_load_repaired(
    relpath: str, index: int, label: str, options: tuple[str, ...]
) -> None:
    example = load("logiqa", relpath)[index]
    assert example.id == f"logiqa-Test-{index}"
    assert example.label == label
    assert example.fields["options"] == options
    assert [example.fields[f"option_{x}"] for x in "abcd"] == list(options)


# Options whose own text starts like a prefix, after one prefix was stripped from the raw
# line: people or speakers called A, B, C ("A.A.C, D are playing ..." = players A, C and D;
# "A.A? People are not plants ..." = a dialogue between A and B; "A.A." = person A).
LEGITIMATE_LETTER_STARTS = {
    ("logiqa-Eval-232", "A"),
    ("logiqa-Eval-423", "A"),
    ("logiqa-Eval-450", "A"),
    ("logiqa-Eval-458", "A"),
    ("logiqa-Eval-460", "A"),
    ("logiqa-Test-4", "A"),
    ("logiqa-Test-4", "B"),
    ("logiqa-Test-4", "C"),
    ("logiqa-Test-133", "A"),
}


def test_no_loaded_logiqa_option_keeps_its_own_letter_prefix() -> None:
    kept = {
        (example.id, letter)
        for relpath in ("logiqa/Eval.txt", "logiqa/Test.txt")
        for example in load("logiqa", relpath)
        for letter, option in zip("ABCD", example.fields["options"])
        if option.startswith((f"{letter}.", f"{letter}?", f"{letter.lower()}."))
    }
    assert kept == LEGITIMATE_LETTER_STARTS


def test_logiqa_first_record_reads_by_line_position() -> None:
    first = load("logiqa", "logiqa/Test.txt")[0]
    assert first.label == "A"
    assert first.fields["question"] == (
        "Based on the above statement, which of the following can be derived?"
    )
    assert first.fields["option_a"] == "Civic Park is north of the administrative service area"


def test_logiqa_tolerates_a_trailing_newline_and_crlf(tmp_path: Path) -> None:
    record = "\na\nPassage.\nQuestion?\nA.one\nB.two\nC.three\nD.four"
    path = tmp_path / "x.txt"
    path.write_bytes((f"{record}\n{record}\n").replace("\n", "\r\n").encode())
    examples = load_logiqa(path, {})
    assert [e.id for e in examples] == ["logiqa-x-0", "logiqa-x-1"]
    assert examples[1].fields["options"] == ("one", "two", "three", "four")


# --- JSON Lines -----------------------------------------------------------------------------


def test_jsonl_turns_every_other_key_into_a_field(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"id": 1, "label": "yes", "text": "hi", "meta": {"k": 2}}\n\n'
        '{"id": "b", "label": "no", "text": "ho", "meta": null}\n',
        encoding="utf-8",
    )
    first, second = load_jsonl(path, {})
    assert (first.id, first.label, dict(first.fields)) == (
        "1",
        "yes",
        {"text": "hi", "meta": {"k": 2}},
    )
    assert (second.id, second.group) == ("b", None)


def test_jsonl_reads_the_configured_id_label_and_group_fields(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"uid": "x1", "gold": "A", "doc": "d1", "q": "?"}\n', encoding="utf-8")
    (example,) = load_jsonl(path, {"id_field": "uid", "label_field": "gold", "group_field": "doc"})
    assert (example.id, example.label, example.group, dict(example.fields)) == (
        "x1",
        "A",
        "d1",
        {"doc": "d1", "q": "?"},
    )


# --- errors name the file -------------------------------------------------------------------

LOADER_FILES = {
    "contractnli": "x.json",
    "stereoset": "x.json",
    "stereoset_label": "x.json",
    "logiqa": "x.txt",
    "jsonl": "x.jsonl",
}


@pytest.mark.parametrize("loader", list(LOADER_FILES))
def test_a_missing_file_is_a_pld_error_naming_it(tmp_path: Path, loader: str) -> None:
    path = tmp_path / "nowhere" / LOADER_FILES[loader]
    with pytest.raises(PldError, match="data file not found") as info:
        registry()[loader].load(path, {})
    assert info.value.path == str(path)


@pytest.mark.parametrize("loader", list(LOADER_FILES))
def test_an_empty_file_is_a_pld_error_naming_it(tmp_path: Path, loader: str) -> None:
    path = tmp_path / LOADER_FILES[loader]
    path.write_text("", encoding="utf-8")
    with pytest.raises(PldError) as info:
        registry()[loader].load(path, {})
    assert info.value.path == str(path)


def test_non_utf8_bytes_are_a_pld_error_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_bytes(b"\na\nok\n\xff\xfe broken\n")
    with pytest.raises(PldError, match="not UTF-8") as info:
        load_logiqa(path, {})
    assert (info.value.path, info.value.line) == (str(path), 4)


MALFORMED = {
    "contractnli-not-json": (
        "contractnli",
        "x.json",
        '{"documents": [\n  {"id": 1,,}]}',
        "malformed JSON",
        2,
    ),
    "contractnli-no-documents": ("contractnli", "x.json", '{"data": []}', "'documents' list", None),
    "contractnli-bad-choice": (
        "contractnli",
        "x.json",
        json.dumps(
            {
                "labels": {"nda-1": {"hypothesis": "H."}},
                "documents": [
                    {
                        "id": 9,
                        "text": "Some text.",
                        "spans": [[0, 10]],
                        "annotation_sets": [{"annotations": {"nda-1": {"choice": "Maybe"}}}],
                    }
                ],
            }
        ),
        r"documents\[0\] \(id 9\): annotation 'nda-1' has choice 'Maybe'",
        None,
    ),
    "contractnli-missing-hypothesis": (
        "contractnli",
        "x.json",
        json.dumps(
            {
                "labels": {"nda-1": {"hypothesis": "H."}, "nda-2": {"hypothesis": "G."}},
                "documents": [
                    {
                        "id": 9,
                        "text": "Some text.",
                        "spans": [[0, 10]],
                        "annotation_sets": [{"annotations": {"nda-1": {"choice": "Entailment"}}}],
                    }
                ],
            }
        ),
        "no annotation for nda-2",
        None,
    ),
    "contractnli-span-outside-text": (
        "contractnli",
        "x.json",
        json.dumps(
            {
                "labels": {"nda-1": {"hypothesis": "H."}},
                "documents": [
                    {
                        "id": 9,
                        "text": "Short.",
                        "spans": [[0, 99]],
                        "annotation_sets": [{"annotations": {"nda-1": {"choice": "Entailment"}}}],
                    }
                ],
            }
        ),
        r"spans\[0\] = \[0, 99\] is not a \[start, end\) offset pair",
        None,
    ),
    "contractnli-blank-text": (
        "contractnli",
        "x.json",
        json.dumps(
            {
                "labels": {"nda-1": {"hypothesis": "H."}},
                "documents": [
                    {
                        "id": 9,
                        "text": " \n ",
                        "spans": [[0, 3]],
                        "annotation_sets": [{"annotations": {"nda-1": {"choice": "Entailment"}}}],
                    }
                ],
            }
        ),
        r"documents\[0\] \(id 9\): the contract text is empty",
        None,
    ),
    "stereoset-no-part": (
        "stereoset",
        "x.json",
        '{"version": "1.0", "data": {}}',
        "no data.intrasentence list",
        None,
    ),
    "stereoset-bad-bias-type": (
        "stereoset",
        "x.json",
        json.dumps(
            {
                "data": {
                    "intrasentence": [
                        {
                            "id": "c1",
                            "target": "t",
                            "bias_type": "age",
                            "context": "The t is BLANK.",
                            "sentences": [],
                        }
                    ]
                }
            }
        ),
        r"data.intrasentence\[0\] \(id c1\): bias_type 'age'",
        None,
    ),
    "stereoset-two-stereotypes": (
        "stereoset_label",
        "x.json",
        json.dumps(
            {
                "data": {
                    "intrasentence": [
                        {
                            "id": "c1",
                            "target": "t",
                            "bias_type": "race",
                            "context": "The t is BLANK.",
                            "sentences": [
                                {"id": f"s{i}", "sentence": f"The t is {w}.", "gold_label": g}
                                for i, (w, g) in enumerate(
                                    [("a", "stereotype"), ("b", "stereotype"), ("c", "unrelated")]
                                )
                            ],
                        }
                    ]
                }
            }
        ),
        "expected one sentence per gold label",
        None,
    ),
    "logiqa-short-record": (
        "logiqa",
        "x.txt",
        "\na\nP.\nQ?\nA.1\nB.2\nC.3\nD.4\n\nb\nP.\nQ?",
        "not a whole number of 8-line records",
        9,
    ),
    "logiqa-bad-answer": (
        "logiqa",
        "x.txt",
        "\na\nP.\nQ?\nA.1\nB.2\nC.3\nD.4\n\ne\nP.\nQ?\nA.1\nB.2\nC.3\nD.4",
        "record 1: expected the answer letter a-d",
        10,
    ),
    "logiqa-shifted-record": (
        "logiqa",
        "x.txt",
        "a\nP.\nQ?\nA.1\nB.2\nC.3\nD.4\n",
        "record 0: expected a blank separator line",
        1,
    ),
    "logiqa-empty-option": (
        "logiqa",
        "x.txt",
        "\na\nP.\nQ?\nA.1\n\nC.3\nD.4",
        "the option B line is empty",
        6,
    ),
    "jsonl-bad-line": (
        "jsonl",
        "x.jsonl",
        '{"id": 1, "label": "a"}\n{"id": 2, label}\n',
        "malformed JSON",
        2,
    ),
    "jsonl-not-object": ("jsonl", "x.jsonl", '["id", "label"]\n', "expected a JSON object", 1),
    "jsonl-no-label": (
        "jsonl",
        "x.jsonl",
        '{"id": 1, "label": "a"}\n{"id": 2}\n',
        "record has no 'label' key",
        2,
    ),
    "jsonl-duplicate-id": (
        "jsonl",
        "x.jsonl",
        '{"id": 1, "label": "a"}\n{"id": 1, "label": "b"}',
        r"duplicate id '1' \(first on line 1\)",
        2,
    ),
    "jsonl-list-label": (
        "jsonl",
        "x.jsonl",
        '{"id": 1, "label": ["a"]}',
        "'label' must be a non-empty string or integer",
        1,
    ),
}


@pytest.mark.parametrize(
    ("loader", "name", "content", "message", "line"), list(MALFORMED.values()), ids=list(MALFORMED)
)
def test_a_malformed_file_is_a_pld_error_naming_file_line_and_problem(
    tmp_path: Path, loader: str, name: str, content: str, message: str, line: int | None
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PldError, match=message) as info:
        registry()[loader].load(path, {})
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(path) in str(info.value)
