"""`pld init`: a new suite and a zero-shot instruction set from a labelled CSV, TSV, JSON Lines
or Parquet file.

Two steps, so that bad input never leaves a file behind:

1. `plan_init` reads the data exactly as the suite will (the same loader, options and split
   carving), checks it and composes the files' text. Every problem - an empty file, a missing
   column, a label with a single example, duplicate ids, undecodable bytes, an unusable split
   value, data outside the project with no data root - is a PldError naming the file, line or
   column. Nothing is written.
2. `write_init` creates the files (each atomically, none over an existing file), checks what
   it wrote with `validate_file`, writes the rendered-prompt snapshot, and removes everything
   again if any step fails.

Where the data stays: a file inside the project is referenced by its project-relative path; a
file under the data root (`--data-root`, $PLD_DATA_ROOT) as `data:PATH`, so it is read where it
lives and never copied into the repository; anything else is copied into `suites/data/NAME/`
only when asked (`copy=True`). No absolute path is ever written into a suite.

The modules behind it: `spec` (what was asked), `data` (reading and checking the data),
`render` (the files' text), `plan` (step 1) and `write` (step 2).
"""

from __future__ import annotations

from .data import columns_of, data_format
from .plan import Plan, plan_init
from .spec import DEFAULT_FRACTIONS, DEFAULT_STUDENT, InitSpec
from .write import write_init

__all__ = [
    "DEFAULT_FRACTIONS",
    "DEFAULT_STUDENT",
    "InitSpec",
    "Plan",
    "columns_of",
    "data_format",
    "plan_init",
    "write_init",
]
