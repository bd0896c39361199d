"""What `pld init` was asked for (`InitSpec`), and the formats, names and defaults it knows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STUDENT = "local:qwen2.5-coder-0.5b-instruct"
#: train / dev / test shares of a file carved by a hash of the id
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
LOADER_OF = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "parquet": "parquet"}
#: split-column values read as the conventional split names (Hugging Face says validation)
SPLIT_ALIASES = {
    "training": "train",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
    "development": "dev",
    "testing": "test",
}
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class InitSpec:
    """What the user asked for (flags or answers)."""

    name: str
    data: Path
    text_fields: tuple[str, ...]
    label_field: str
    id_field: str = ""  # "" = ids from a hash of the text fields
    split_column: str = ""  # "" = carve by a hash of the id
    labels: tuple[str, ...] = ()  # the label order; () = sorted
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    fmt: str | None = None  # csv, tsv, jsonl or parquet; None = from the suffix
    student: str = DEFAULT_STUDENT
    copy: bool = False
    data_root: Path | None = None
