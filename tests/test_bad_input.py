"""A corpus of malformed files, one per reader of a file a pull request can change.

Every case builds a small valid project in tmp_path, breaks one file, and checks the exact
error (file, line, key, message, a hint) from the library function that reads it and, where a
command reads that file, from the command: exit code, the same location on stderr, no
traceback, and nothing written.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import write_files

from pytest_pld.cli import main
from pytest_pld.datasets import registry
from pytest_pld.distill.propose import read_proposal
from pytest_pld.distill.traces import drop_truncated_tail, read_traces
from pytest_pld.errors import PldError, PldErrors
from pytest_pld.instructions import load_instruction_set
from pytest_pld.instructions_save import save_instruction_set
from pytest_pld.record import ExampleResult, RunRecord, load_record, save_record
from pytest_pld.snapshot import read_snapshot
from pytest_pld.suite import load_suite

BOM = codecs.BOM_UTF8
LATIN1_WORD = "café".encode("latin-1")  # the é alone (0xe9) is not UTF-8


# --- a small valid project -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A valid data file for one loader; MARK is the text the cases replace."""

    ext: str
    data: str
    labels: tuple[str, ...]
    user_template: str


MARK = "MARKTEXT"
SAMPLES = {
    "jsonl": Sample(
        "jsonl",
        '{"id": "1", "label": "yes", "text": "plain"}\n'
        f'{{"id": "2", "label": "no", "text": "{MARK}"}}\n',
        ("yes", "no"),
        "Text: {{ text }}",
    ),
    "contractnli": Sample(
        "json",
        json.dumps(
            {
                "labels": {"nda-1": {"hypothesis": "H."}},
                "documents": [
                    {
                        "id": 1,
                        "text": f"{MARK} is a clause.",
                        "spans": [[0, 18]],
                        "annotation_sets": [{"annotations": {"nda-1": {"choice": "Entailment"}}}],
                    }
                ],
            },
            indent=1,
        ),
        ("Entailment", "Contradiction", "NotMentioned"),
        "{{ premise }} / {{ hypothesis }}",
    ),
    "stereoset": Sample(
        "json",
        json.dumps(
            {
                "data": {
                    "intrasentence": [
                        {
                            "id": "c1",
                            "target": "t",
                            "bias_type": "race",
                            "context": "c",
                            "sentences": [
                                {"id": "s1", "sentence": MARK, "gold_label": "stereotype"},
                                {"id": "s2", "sentence": "b", "gold_label": "anti-stereotype"},
                                {"id": "s3", "sentence": "c", "gold_label": "unrelated"},
                            ],
                        }
                    ]
                }
            },
            indent=1,
        ),
        ("gender", "profession", "race", "religion"),
        "{{ sentence }}",
    ),
    "logiqa": Sample(
        "txt",
        f"\na\n{MARK}\nQuestion?\nA. w\nB. x\nC. y\nD. z",
        ("A", "B", "C", "D"),
        "{{ context }} {{ question }}",
    ),
}

INSTRUCTIONS = """\
name: demo
version: 1
preamble: Decide which label fits.
output: 'Answer with one of {{ labels | join(", ") }}.'
template: templates/system.j2
"""
TEMPLATE = "{{ preamble }}\n{{ output }}\n"


def suite_text(loader: str, user_template: str | None = None) -> str:
    sample = SAMPLES[loader]
    labels = ", ".join(sample.labels)
    return f"""\
name: demo
dataset:
  loader: {loader}
splits:
  train: data/train.{sample.ext}
  dev: data/dev.{sample.ext}
  test: data/test.{sample.ext}
labels: [{labels}]
user_template: |-
  {user_template or sample.user_template}
instructions: instructions/demo.yaml
student: local:qwen2.5-coder-0.5b-instruct
gates:
  accuracy: ">= 0.5"
"""


USER_TEMPLATE_LINE = 10  # the line of the user template's text in suite_text


def make_loader_project(root: Path, loader: str = "jsonl") -> Path:
    sample = SAMPLES[loader]
    files = {
        "pyproject.toml": "",
        "suites/demo.yaml": suite_text(loader),
        "instructions/demo.yaml": INSTRUCTIONS,
        "templates/system.j2": TEMPLATE,
        **{f"data/{split}.{sample.ext}": sample.data for split in ("train", "dev", "test")},
    }
    return write_files(root, files).resolve()


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def only_error(exc: PldError) -> PldError:
    errors = exc.errors if isinstance(exc, PldErrors) else [exc]
    assert len(errors) == 1, [e.format() for e in errors]
    return errors[0]


def check_error(
    exc: PldError, path: Path, line: int | None, key: str | None, fragment: str
) -> PldError:
    error = only_error(exc)
    assert (error.path, error.line, error.key) == (str(path), line, key), error.format()
    assert fragment in error.message, error.format()
    assert error.hint, error.format()
    return error


def where(path: Path, line: int | None, key: str | None) -> str:
    """How PldError.format() starts: `file:line: key: `."""
    return f"{path}{f':{line}' if line is not None else ''}: {f'{key}: ' if key else ''}"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.err


def check_validate(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    target: Path,
    path: Path,
    line: int | None,
    key: str | None,
    fragment: str,
) -> None:
    before = tree(root)
    code, err = run_cli(capsys, "validate", "--root", str(root), str(target))
    assert code == 1, err
    assert f"error {where(path, line, key)}" in err and fragment in err, err
    assert "hint: " in err
    assert tree(root) == before  # validation writes nothing


# --- instruction files ---------------------------------------------------------------------------


def _lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


HEAD = ("name: demo", "version: 1", "preamble: Decide which label fits.")
ALIAS_BOMB = [
    "rules:",
    "  - id: R1",
    "    text: t",
    "    provenance:",
    "      a: &a [x, x, x, x, x, x, x, x, x, x]",
    *(
        f"      {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]"
        for i in range(5)
    ),
]

INSTRUCTION_CASES = [
    pytest.param(
        _lines(*HEAD, """output: "Answer with one of {{ labels | join(', ') \""""),
        4,
        "output",
        "template syntax error: unexpected end of template",
        id="output-jinja-syntax-error",
    ),
    pytest.param(
        _lines(*HEAD, "output: |-", "  Answer with one of:", '  {{ labels | join(", ") }'),
        6,
        "output",
        "template syntax error: unexpected '}'",
        id="output-syntax-error-on-line-2-of-a-literal-block",
    ),
    pytest.param(
        _lines(*HEAD, "output: >-", "  Answer with one of:", '  {{ labels | join(", ") }'),
        5,  # a folded block is joined into one line: the error is in the text starting here
        "output",
        "template syntax error: unexpected '}'",
        id="output-syntax-error-in-a-folded-block-names-the-line-it-starts-on",
    ),
    pytest.param(
        _lines(*HEAD, "output: '{{ labels | joinn(\", \") }}'"),
        4,
        "output",
        "No filter named 'joinn'",
        id="output-unknown-filter",
    ),
    pytest.param(
        _lines(*HEAD, "output: 'Answer with {{ label }}'"),
        4,
        "output",
        "undefined template variable 'label'",
        id="output-undefined-variable",
    ),
    pytest.param(
        _lines(*HEAD, "output: '{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}'"),
        4,
        "output",
        "template nests too deeply",
        id="output-nested-past-the-recursion-limit",
    ),
    pytest.param(
        INSTRUCTIONS.replace("Decide", "Décide").encode("latin-1"),
        3,
        None,
        "not UTF-8 text: byte 0xe9 at byte offset 33 (line 3, column 12)",
        id="latin-1-text",
    ),
    pytest.param(
        INSTRUCTIONS.encode("utf-16"),
        1,
        None,
        "UTF-16 or UTF-32 text",
        id="utf-16-text",
    ),
    pytest.param(
        INSTRUCTIONS.encode("utf-16-le"),
        1,
        None,
        "a NUL byte at byte offset 1",
        id="utf-16-without-a-byte-order-mark",
    ),
    pytest.param(
        bytes(range(256)),
        1,
        None,
        "binary content",
        id="binary-file",
    ),
    pytest.param(
        _lines(*HEAD[:2], "preamble: Decide\x01 which label fits.", "output: ok"),
        3,
        None,
        "control character #x0001",
        id="control-character",
    ),
    pytest.param(
        _lines(*HEAD[:2], 'preamble: "Decide \\ud800"', "output: ok"),
        3,
        None,
        "lone surrogate",
        id="escaped-lone-surrogate",
    ),
    pytest.param(
        _lines(*HEAD, "output: ok", *ALIAS_BOMB),
        None,
        None,
        "expands to more than",
        id="yaml-alias-bomb",
    ),
    pytest.param(
        # deep enough to pass Python's recursion limit; ruamel slows quadratically with depth
        _lines(*HEAD, "output: ok", "description: " + "[" * 600 + "]" * 600),
        None,
        None,
        "nested too deeply",
        id="yaml-nested-past-the-recursion-limit",
    ),
]


@pytest.mark.parametrize("content, line, key, fragment", INSTRUCTION_CASES)
def test_a_malformed_instruction_file_is_an_error_naming_file_line_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    line: int | None,
    key: str | None,
    fragment: str,
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "instructions/demo.yaml"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        load_instruction_set(path)
    check_error(info.value, path, line, key, fragment)
    check_validate(capsys, root, path, path, line, key, fragment)


def test_the_headline_cases_print_one_clear_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "instructions/demo.yaml"
    path.write_bytes(_lines(*HEAD, """output: "Answer with one of {{ labels | join(', ') \""""))
    assert run_cli(capsys, "validate", "--root", str(root), str(path))[1].splitlines()[0] == (
        f"error {path}:4: output: template syntax error: unexpected end of template, "
        "expected 'end of print statement'."
    )
    path.write_bytes(INSTRUCTIONS.replace("Decide", "Décide").encode("latin-1"))
    assert run_cli(capsys, "validate", "--root", str(root), str(path))[1].splitlines()[:2] == [
        (
            f"error {path}:3: not UTF-8 text: byte 0xe9 at byte offset 33 (line 3, column 12): "
            "invalid continuation byte"
        ),
        "  hint: re-save the file as UTF-8 (most editors: 'Save with encoding' > UTF-8)",
    ]


@pytest.mark.parametrize(
    "file, content",
    [
        pytest.param("instructions/demo.yaml", BOM + INSTRUCTIONS.encode(), id="instructions"),
        pytest.param("suites/demo.yaml", BOM + suite_text("jsonl").encode(), id="suite"),
        pytest.param("templates/system.j2", BOM + TEMPLATE.encode(), id="template"),
        pytest.param("data/test.jsonl", BOM + SAMPLES["jsonl"].data.encode(), id="data"),
    ],
)
def test_a_utf8_byte_order_mark_just_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, content: bytes
) -> None:
    root = make_loader_project(tmp_path)
    (root / file).write_bytes(content)
    suite = load_suite(root / "suites/demo.yaml", root)
    iset = suite.load_instructions()
    assert iset.name == "demo" and suite.name == "demo"
    assert suite.system_prompt(iset).startswith("Decide which label fits.")
    assert [e.id for e in suite.load_examples("test")] == ["1", "2"]
    code, err = run_cli(capsys, "validate", "--root", str(root))
    assert code == 0, err


# --- the template file an instruction set names --------------------------------------------------


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        pytest.param(b"{{ preamble }}\n{{ output }\n", 2, "template syntax error", id="syntax"),
        pytest.param(b"{% if preamble %}\n{{ output }}\n", 2, "Unexpected end", id="unclosed-if"),
        pytest.param(
            b"{{ preamble }}\n" + LATIN1_WORD + b" {{ output }}\n",
            2,
            "not UTF-8 text: byte 0xe9 at byte offset 18",
            id="latin-1",
        ),
        pytest.param(b"{{ preamble }}\x00", 1, "binary content", id="binary"),
    ],
)
def test_a_broken_template_file_is_an_error_in_that_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    line: int,
    fragment: str,
) -> None:
    root = make_loader_project(tmp_path)
    template = root / "templates/system.j2"
    template.write_bytes(content)
    with pytest.raises(PldError) as info:
        load_instruction_set(root / "instructions/demo.yaml", root=root)
    check_error(info.value, template, line, None, fragment)
    suite = root / "suites/demo.yaml"
    check_validate(capsys, root, suite, template, line, None, fragment)


def test_a_missing_template_file_is_an_error_at_the_template_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_loader_project(tmp_path)
    (root / "templates/system.j2").unlink()
    path = root / "instructions/demo.yaml"
    with pytest.raises(PldError) as info:
        load_instruction_set(path, root=root)
    check_error(info.value, path, 5, "template", "template file 'templates/system.j2' not found")
    check_validate(capsys, root, root / "suites/demo.yaml", path, 5, "template", "not found")


def test_validating_an_instruction_file_alone_checks_its_template_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_loader_project(tmp_path)
    (root / "templates/system.j2").write_text("{{ preamble }\n")
    code, _ = run_cli(capsys, "validate", "--root", str(root), str(root / "instructions/demo.yaml"))
    assert code == 1


# --- suites --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loader, user_template, line, fragment",
    [
        pytest.param("jsonl", "Text: {{ text }", USER_TEMPLATE_LINE, "unexpected '}'", id="syntax"),
        pytest.param(
            "jsonl",
            "Text: {{ text }}\n  {% for x in text %}",
            USER_TEMPLATE_LINE + 1,
            "Unexpected end of template",
            id="unclosed-for-on-line-2",
        ),
        pytest.param(
            "logiqa",
            "{{ context }}\n  {{ passage }}",
            USER_TEMPLATE_LINE + 1,
            "undefined template variable 'passage'",
            id="undefined-field-of-the-loader",
        ),
    ],
)
def test_a_broken_user_template_is_an_error_at_its_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    loader: str,
    user_template: str,
    line: int,
    fragment: str,
) -> None:
    root = make_loader_project(tmp_path, loader)
    path = root / "suites/demo.yaml"
    path.write_text(suite_text(loader, user_template), encoding="utf-8")
    with pytest.raises(PldError) as info:
        load_suite(path, root)
    check_error(info.value, path, line, "user_template", fragment)
    check_validate(capsys, root, path, path, line, "user_template", fragment)


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        pytest.param(
            suite_text("jsonl").replace("Text:", "Téxt:").encode("latin-1"),
            USER_TEMPLATE_LINE,
            "not UTF-8 text: byte 0xe9",
            id="latin-1",
        ),
        pytest.param(suite_text("jsonl").encode("utf-16"), 1, "UTF-16", id="utf-16"),
        pytest.param(b"name: demo\n\x00\x01", 2, "binary content", id="binary"),
    ],
)
def test_a_suite_file_that_is_not_utf8_text_is_an_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, line: int, fragment: str
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "suites/demo.yaml"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        load_suite(path, root)
    check_error(info.value, path, line, None, fragment)
    check_validate(capsys, root, path, path, line, None, fragment)


# --- data files ----------------------------------------------------------------------------------


def _data_line(data: str) -> int:
    return data[: data.index(MARK)].count("\n") + 1


DATA_CASES = [
    pytest.param(loader, bad, fragment, id=f"{loader}-{name}")
    for loader in SAMPLES
    for name, bad, fragment in (
        ("latin-1", LATIN1_WORD, "not UTF-8 text: byte 0xe9"),
        ("nul-byte", b"\x00", "binary content"),
    )
]


@pytest.mark.parametrize("loader, bad, fragment", DATA_CASES)
def test_a_data_file_that_is_not_utf8_text_is_an_error_naming_line_and_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loader: str, bad: bytes, fragment: str
) -> None:
    root = make_loader_project(tmp_path, loader)
    sample = SAMPLES[loader]
    path = root / f"data/test.{sample.ext}"
    raw = sample.data.encode().replace(MARK.encode(), bad)
    path.write_bytes(raw)
    line, offset = _data_line(sample.data), raw.index(bad[-1:])
    with pytest.raises(PldError) as info:
        registry()[loader].load(path, {})
    error = check_error(info.value, path, line, None, fragment)
    assert f"byte offset {offset}" in error.message
    check_validate(capsys, root, root / "suites/demo.yaml", path, line, None, fragment)


@pytest.mark.parametrize("loader", list(SAMPLES))
def test_a_data_file_with_a_byte_order_mark_loads_like_one_without(
    tmp_path: Path, loader: str
) -> None:
    root = make_loader_project(tmp_path, loader)
    plain = root / f"data/test.{SAMPLES[loader].ext}"
    marked = root / "marked" / plain.name  # same name: logiqa ids include it
    marked.parent.mkdir()
    marked.write_bytes(BOM + plain.read_bytes())
    load = registry()[loader].load
    assert [(e.id, e.label, dict(e.fields)) for e in load(marked, {})] == [
        (e.id, e.label, dict(e.fields)) for e in load(plain, {})
    ]


@pytest.mark.parametrize(
    "loader, content, line, fragment",
    [
        pytest.param("jsonl", b"[" * 100_000, 1, "nests JSON", id="jsonl-deep-nesting"),
        pytest.param("contractnli", b"[" * 100_000, None, "nests JSON", id="json-deep-nesting"),
        pytest.param(
            "contractnli",
            json.dumps(
                {
                    "labels": {"nda-1": {"hypothesis": "H."}},
                    "documents": [
                        {
                            "id": 1,
                            "text": "T.",
                            "spans": [[0, 2]],
                            "annotation_sets": [{"annotations": "nda-1"}],
                        }
                    ],
                }
            ).encode(),
            None,
            "no annotation_sets[0].annotations mapping",
            id="contractnli-annotations-a-string",
        ),
    ],
)
def test_data_that_would_crash_a_loader_is_an_error(
    tmp_path: Path, loader: str, content: bytes, line: int | None, fragment: str
) -> None:
    path = tmp_path / "data.json"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        registry()[loader].load(path, {})
    check_error(info.value, path, line, None, fragment)


# --- run records (baselines) and saved proposals: one JSON object each ---------------------------


def a_record() -> RunRecord:
    return RunRecord(
        suite="demo",
        split="test",
        limit=None,
        model="local:m",
        backend={},
        instructions={},
        labels=["yes", "no"],
        system_prompt_sha256="0" * 64,
        results=[ExampleResult("1", "yes", "no", 12.5, 40)],
    )


@pytest.mark.parametrize(
    "read, content, line, fragment",
    [
        pytest.param(
            load_record, b'{"suite": "d' + LATIN1_WORD + b'"}', 1, "byte offset 15", id="latin-1"
        ),
        pytest.param(load_record, b"\x00\x00\x00", 1, "binary content", id="binary"),
        pytest.param(load_record, '{"a": 1}'.encode("utf-16"), 1, "UTF-16", id="utf-16"),
        pytest.param(
            load_record, b'{\n  "schema": 1,\n  oops\n}', 3, "malformed JSON", id="bad-json"
        ),
        pytest.param(load_record, b"[1, 2]", 1, "got an array", id="an-array"),
        pytest.param(load_record, b"[" * 100_000, None, "nests JSON", id="deep-nesting"),
        pytest.param(
            read_proposal,
            b'{"path": "' + LATIN1_WORD + b'"}',
            1,
            "byte offset 13",
            id="proposal-latin-1",
        ),
        pytest.param(read_proposal, bytes(range(40)), 1, "binary content", id="proposal-binary"),
        pytest.param(read_proposal, b"[]", 1, "got an array", id="proposal-an-array"),
        pytest.param(
            read_proposal,
            b'{"path": "x.yaml"}',
            None,
            "base_text, proposed_text",
            id="proposal-keys-missing",
        ),
        pytest.param(
            read_proposal, b'{"a": ' * 100_000, None, "nests JSON", id="proposal-deep-nesting"
        ),
    ],
)
def test_a_malformed_run_record_or_proposal_is_an_error_naming_the_line(
    tmp_path: Path, read: Callable[[Path], object], content: bytes, line: int | None, fragment: str
) -> None:
    path = tmp_path / "file.json"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        read(path)
    check_error(info.value, path, line, None, fragment)


def test_a_run_record_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = save_record(a_record(), tmp_path / "baseline.json")
    path.write_bytes(BOM + path.read_bytes())
    assert load_record(path).predictions() == a_record().predictions()


# --- traces --------------------------------------------------------------------------------------

TRACE = {
    "id": "t1",
    "suite": "demo",
    "split": "train",
    "gold": "yes",
    "rule": "If it says yes, then the label is yes.",
    "teacher": "x:y",
    "status": "ok",
}
LINE1 = json.dumps(TRACE).encode() + b"\n"


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        pytest.param(
            LINE1 + b'{"id": "t' + LATIN1_WORD + b'"}\n' + LINE1,
            2,
            f"byte offset {len(LINE1) + 12} (line 2, column 13)",
            id="latin-1-middle-line",
        ),
        pytest.param(
            LINE1 + b'{"id": "t' + LATIN1_WORD + b'", "suite": "demo"}',
            2,
            "not UTF-8 text",
            id="latin-1-last-line-is-not-an-interrupted-write",
        ),
        pytest.param(LINE1 + b"\x00\x01\x02\n", 2, "binary content", id="binary-line"),
        pytest.param(LINE1.decode().encode("utf-16"), 1, "UTF-16", id="utf-16"),
        pytest.param(b"plain text, no newline", 1, "malformed trace line", id="other-text"),
        pytest.param(
            json.dumps({**TRACE, "labels": 5}).encode() + b"\n",
            1,
            "labels must be a list",
            id="labels-not-a-list",
        ),
        pytest.param(LINE1 + b"[" * 100_000 + b"\n", 2, "nested too deeply", id="deep-nesting"),
    ],
)
def test_a_malformed_traces_file_is_an_error_and_is_never_cut(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    line: int,
    fragment: str,
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "traces.jsonl"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        read_traces(path)
    check_error(info.value, path, line, None, fragment)
    code, err = run_cli(capsys, "distill", "demo", "--traces", str(path), "--root", str(root))
    assert code == 2 and f"error: {where(path, line, None)}" in err and fragment in err, err
    assert path.read_bytes() == content


def test_a_traces_file_with_a_byte_order_mark_reads_and_cuts_its_tail_in_the_right_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(BOM + LINE1 + b'{"id": "t2", "su')
    tf = read_traces(path)
    assert [t.id for t in tf.traces] == ["t1"] and tf.truncated_line == 2
    drop_truncated_tail(tf)
    assert path.read_bytes() == BOM + LINE1


# --- applying a saved proposal -------------------------------------------------------------------


def test_a_proposal_file_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "proposal.json"
    data = {"path": "instructions/x.yaml", "base_text": "a", "proposed_text": "b"}
    path.write_bytes(BOM + json.dumps(data).encode())
    saved = read_proposal(path)
    assert (saved.path, saved.base_text, saved.proposed_text) == (Path(data["path"]), "a", "b")


def test_applying_a_proposal_that_is_not_utf8_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "proposal.json"
    path.write_bytes(b'{"path": "' + LATIN1_WORD + b'"}')
    code, err = run_cli(capsys, "distill", "demo", "--apply", str(path), "--root", str(root))
    assert code == 2 and "byte offset 13" in err


def test_applying_a_proposal_to_an_instruction_file_that_is_not_utf8_writes_nothing(
    tmp_path: Path,
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "instructions/demo.yaml"
    iset = load_instruction_set(path)
    content = INSTRUCTIONS.replace("Decide", "Décide").encode("latin-1")
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        save_instruction_set(iset.with_rules([], version=2), path, expected_text=INSTRUCTIONS)
    check_error(info.value, path, 3, None, "not UTF-8 text")
    assert path.read_bytes() == content


# --- rendered-prompt snapshots -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        pytest.param(b"Decide\n" + LATIN1_WORD + b"\n", 2, "byte offset 10", id="latin-1"),
        pytest.param(b"Decide\x00", 1, "binary content", id="binary"),
    ],
)
def test_a_snapshot_that_is_not_utf8_text_is_an_error_saying_how_to_recreate_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, line: int, fragment: str
) -> None:
    root = make_loader_project(tmp_path)
    path = root / "instructions/demo.prompt.txt"
    path.write_bytes(content)
    with pytest.raises(PldError) as info:
        read_snapshot(path)
    error = check_error(info.value, path, line, None, fragment)
    assert "pld snapshot --update" in (error.hint or "")
    code, err = run_cli(capsys, "snapshot", "demo", "--root", str(root))
    assert code == 2 and f"error: {where(path, line, None)}" in err and fragment in err, err
    assert path.read_bytes() == content


def test_a_snapshot_with_a_byte_order_mark_matches_the_rendered_prompt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_loader_project(tmp_path)
    suite = load_suite(root / "suites/demo.yaml", root)
    rendered = suite.system_prompt()
    (root / "instructions/demo.prompt.txt").write_bytes(BOM + rendered.encode())
    code, err = run_cli(capsys, "snapshot", "demo", "--root", str(root))
    assert code == 0, err
