"""One error type for everything a user can get wrong, formatted as `file:line: key: message`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class PldError(Exception):
    """A user-facing error: says what is wrong, where, and what to do next.

    The CLI and the pytest plugin print `str(err)` without a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.path:
            where = self.path
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        key = f"{self.key}: " if self.key else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class PldErrors(PldError):
    """Several independent errors found in one pass (validation reports all, not the first)."""

    def __init__(self, errors: list[PldError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.format() for e in errors))

    def format(self) -> str:
        return "\n".join(e.format() for e in self.errors)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def counted(n: int, noun: str) -> str:
    """'1 gate', '4 gates', '0 rules'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
