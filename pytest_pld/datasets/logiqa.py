"""LogiQA 1.0 (Liu et al., IJCAI 2020): 8-line plain-text records, 4-way multiple choice.

Record layout: a blank line, the answer letter (a-d), the passage, the question, then the
four options on lines 5-8. The options are taken by line position, because the machine
translation mangled the "A." ... "D." prefixes (missing, glued to names, "A?", lowercase),
so the prefixes are only stripped, defensively, when they match the line's position.

One exception, found by checking answers against the passages: 19 Test.txt records list the
options as A., C., B., D. (lines 6 and 7 swapped), and their answer letter refers to the
prefix, not the line - e.g. Test record 108, valve puzzle: the answer 'b' is the line
prefixed "B." (the 7th line). When all four lines carry clean, distinct A.-D. prefixes in a
non-alphabetical order, the options are therefore put back in prefix order, which keeps the
gold letter right.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PldError
from .base import Example, Loader
from .jsonl import frozen, read_text

LETTERS = ("A", "B", "C", "D")
RECORD_LINES = 8
FIELDS = ("context", "question", "options", "option_a", "option_b", "option_c", "option_d")
WHAT = "LogiQA 1.0 records of 8 lines: blank, answer letter a-d, passage, question, 4 options"

# "A." "A．" "A?" "A、" "d." "C:" - a letter with punctuation is a prefix whatever follows
_PUNCT_PREFIX = re.compile(r"^([A-Da-d])\s*[.．?？、:：)]\s*")
# "A Shannan", "C The retired ..." - a bare capital letter and a space; only stripped when
# the next word is capitalised or not Latin, so "A small amount of ..." keeps its article
_BARE_PREFIX = re.compile(r"^([A-D])\s+(?=[^a-z\s])")
_CLEAN_PREFIX = re.compile(r"^([A-D])\.")


def strip_prefix(option: str, letter: str) -> str:
    """Remove a leading option letter when it is the letter of this line's position."""
    for pattern in (_PUNCT_PREFIX, _BARE_PREFIX):
        match = pattern.match(option)
        if match and match[1].upper() == letter:
            rest = option[match.end() :].strip()
            if rest:  # an option that is only "A." keeps it rather than becoming empty
                return rest
    return option.strip()


def parse_options(lines: list[str]) -> list[str]:
    """The four options in answer-letter order, prefixes removed (see the module docstring)."""
    prefixes = [_CLEAN_PREFIX.match(line) for line in lines]
    if all(prefixes) and sorted(m[1] for m in prefixes if m) == list(LETTERS):
        order = {m[1]: i for i, m in enumerate(prefixes) if m}
        return [strip_prefix(lines[order[letter]], letter) for letter in LETTERS]
    return [strip_prefix(line, letter) for line, letter in zip(lines, LETTERS)]


def load_logiqa(path: Path, options: Mapping[str, Any]) -> list[Example]:
    text = read_text(path, what=WHAT)
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    # the official files end without a newline; tolerate one (an editor may add it)
    if len(lines) % RECORD_LINES == 1 and lines[-1] == "":
        lines.pop()
    if len(lines) % RECORD_LINES:
        raise PldError(
            f"{len(lines)} lines is not a whole number of {RECORD_LINES}-line records",
            path=path,
            line=len(lines) - len(lines) % RECORD_LINES + 1,
            hint=f"expected {WHAT}; the last record is incomplete",
        )
    if not lines or (len(lines) == RECORD_LINES and not any(lines)):
        raise PldError("no records found", path=path, hint=f"expected {WHAT}")
    examples = []
    for index in range(len(lines) // RECORD_LINES):
        first = index * RECORD_LINES  # 0-based; +1 gives the file's line number
        record = lines[first : first + RECORD_LINES]
        where = f"record {index}"
        if record[0].strip():
            raise PldError(
                f"{where}: expected a blank separator line, got {record[0][:40]!r}",
                path=path,
                line=first + 1,
                hint=f"expected {WHAT}; a record probably has a missing or extra "
                "line above this one",
            )
        answer = record[1].strip()
        if answer.lower() not in ("a", "b", "c", "d"):
            raise PldError(
                f"{where}: expected the answer letter a-d, got {answer[:40]!r}",
                path=path,
                line=first + 2,
                hint=f"expected {WHAT}",
            )
        for offset, name in (
            (2, "passage"),
            (3, "question"),
            (4, "option A"),
            (5, "option B"),
            (6, "option C"),
            (7, "option D"),
        ):
            if not record[offset].strip():
                raise PldError(
                    f"{where}: the {name} line is empty",
                    path=path,
                    line=first + offset + 1,
                    hint=f"expected {WHAT}",
                )
        opts = parse_options(record[4:8])
        fields: dict[str, Any] = {
            "context": record[2].strip(),
            "question": record[3].strip(),
            "options": tuple(opts),
        }
        fields.update({f"option_{letter.lower()}": opt for letter, opt in zip(LETTERS, opts)})
        examples.append(
            Example(id=f"logiqa-{path.stem}-{index}", label=answer.upper(), fields=frozen(fields))
        )
    return examples


LOADERS: list[Loader] = [
    Loader(
        # LogiQA 1.0 text files (Eval.txt/Test.txt): 8-line records, label A-D; fields context,
        # question, options and option_a..option_d.
        name="logiqa",
        load=load_logiqa,
        options=MappingProxyType({}),
        fields=FIELDS,
    )
]
