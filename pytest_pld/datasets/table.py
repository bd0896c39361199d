"""Tables: CSV (and TSV, through the `delimiter` option) and Parquet, one example per row.

The header names the fields; what they mean (id, label, group, split, text) is shared with the
JSON Lines loader (`records.py`). CSV is read through `textio`, so a file in another encoding
is an error naming its line and byte; a row with more or fewer cells than the header is an
error naming its line, because csv would otherwise pad or drop cells silently.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PldError
from .base import Example, Loader
from .jsonl import read_text
from .records import RECORD_OPTIONS, check_columns, record_options, to_examples

CSV_OPTIONS: Mapping[str, Any] = MappingProxyType({**RECORD_OPTIONS, "delimiter": ","})
#: pytest-pld is installed from a checkout or a git URL, not an index, so the hint names what its
#: parquet extra adds rather than `pip install 'pytest-pld[parquet]'`, which would fail
PARQUET_HINT = "pip install pyarrow  (what the parquet extra of pytest-pld adds)"


def _delimiter(options: Mapping[str, Any]) -> str:
    value = options.get("delimiter", ",")
    if not isinstance(value, str) or len(value) != 1 or value in '\r\n"':
        raise PldError(
            f"csv loader: delimiter must be one character other than a quote or newline, "
            f"got {value!r}",
            key="dataset.options.delimiter",
            hint="',' for CSV, \"\\t\" (in double quotes) for TSV",
        )
    return value


def read_csv(
    path: Path, delimiter: str, *, what: str
) -> tuple[list[str], int, Iterator[tuple[int, dict[str, str]]]]:
    """(header, header line, rows as (first line, {column: cell})). Blank lines are skipped;
    a quoted cell may span lines, so a row is named by the line it starts on."""
    text = read_text(path, what=what)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)

    def next_row() -> tuple[int, list[str]] | None:
        start = reader.line_num + 1
        try:
            while True:
                row = next(reader)
                if any(cell.strip() for cell in row):
                    return start, row
                start = reader.line_num + 1
        except StopIteration:
            return None
        except csv.Error as exc:
            raise PldError(
                f"malformed CSV: {exc}",
                path=path,
                line=reader.line_num or 1,
                hint=f"expected {what}",
            ) from None

    first = next_row()
    if first is None:
        raise PldError("the file is empty: no header row", path=path, hint=f"expected {what}")
    header_line, header = first
    header = [name.strip() for name in header]
    _check_header(header, path, header_line, delimiter)

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        while (item := next_row()) is not None:
            line, row = item
            if len(row) != len(header):
                raise PldError(
                    f"{len(row)} cells, but the header (line {header_line}) has {len(header)} "
                    "columns",
                    path=path,
                    line=line,
                    hint="quote cells that contain the delimiter or a line break"
                    if len(row) > len(header)
                    else "every row needs a cell for every column (it may be empty)",
                )
            yield line, dict(zip(header, row))

    return header, header_line, rows()


def _check_header(header: Sequence[str], path: Path, line: int, delimiter: str) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise PldError(
                f"the header names column {name!r} twice",
                path=path,
                line=line,
                hint="give every column a distinct name",
            )
        seen.add(name)
    if len(header) == 1 and delimiter == "," and "\t" in header[0]:
        raise PldError(
            "the header has one column that contains tabs: is this a TSV file?",
            path=path,
            line=line,
            hint='set the csv loader\'s option delimiter: "\\t"',
        )


def load_csv(
    path: Path, options: Mapping[str, Any], positions: dict[str, int] | None = None
) -> list[Example]:
    opts = record_options("csv", options)
    delimiter = _delimiter(options)
    what = f"a {'TSV' if delimiter == chr(9) else 'CSV'} file with a header row naming the columns"
    header, header_line, rows = read_csv(path, delimiter, what=what)
    check_columns(header, opts, path, line=header_line)
    return to_examples(rows, path, opts, what=what, positions=positions)


def read_parquet(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """(columns, rows as (1-based row number, {column: value})); needs pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PldError(
            "reading Parquet files needs the optional dependency pyarrow",
            path=path,
            hint=PARQUET_HINT,
        ) from None
    if not path.is_file():
        raise PldError(
            "data file not found (expected a Parquet file)",
            path=path,
            hint="restore it from git or fix the split's path in the suite",
        )
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise PldError(f"cannot read the Parquet file: {exc}", path=path) from None
    columns = list(table.column_names)
    return columns, ((i, row) for i, row in enumerate(table.to_pylist(), start=1))


def load_parquet(
    path: Path, options: Mapping[str, Any], positions: dict[str, int] | None = None
) -> list[Example]:
    opts = record_options("parquet", options)
    columns, rows = read_parquet(path)
    check_columns(columns, opts, path, line=None)
    return to_examples(rows, path, opts, what="a Parquet table", unit="row", positions=positions)


LOADERS: list[Loader] = [
    Loader(
        # CSV or TSV (delimiter: "\t") with a header row; every column except the id and label
        # becomes a template field. Options as for jsonl.
        name="csv",
        load=load_csv,
        options=CSV_OPTIONS,
        fields=[],
    ),
    Loader(
        # a Parquet table (needs pyarrow: pip install 'pytest-pld[parquet]'); options as for jsonl.
        name="parquet",
        load=load_parquet,
        options=RECORD_OPTIONS,
        fields=[],
    ),
]
