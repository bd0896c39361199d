"""Cost accounting: teacher calls, tokens and wall time per phase of teach and distill.

A teacher is usually the expensive part of PLD (a frontier model, billed per token); the student
is cheap per call but called many times by the closed loop. Both are counted per phase so a
reviewer can see what a proposal cost and where the time went.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..backends.base import (
    GENERATE_DEFAULTS,
    Backend,
    GenerateOptions,
    Generation,
    Message,
    generation_identity,
)


@dataclass
class PhaseCost:
    teacher_calls: int = 0
    teacher_failures: int = 0
    teacher_cached: int = 0  # answered from the response cache: no cost
    prompt_tokens: int = 0
    completion_tokens: int = 0
    student_calls: int = 0  # model calls, cache hits excluded
    student_cached: int = 0
    wall_s: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: PhaseCost) -> None:
        for name in (
            "teacher_calls",
            "teacher_failures",
            "teacher_cached",
            "prompt_tokens",
            "completion_tokens",
            "student_calls",
            "student_cached",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.wall_s += other.wall_s

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["wall_s"] = round(self.wall_s, 2)
        out["tokens"] = self.tokens
        return out


@dataclass
class CostLedger:
    """Costs by phase, in the order the phases ran."""

    phases: dict[str, PhaseCost] = field(default_factory=dict)
    current: str | None = None

    def get(self, name: str) -> PhaseCost:
        return self.phases.setdefault(name, PhaseCost())

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[PhaseCost]:
        """Time a phase; teacher calls made inside it (through CountingTeacher) land in it."""
        cost, previous = self.get(name), self.current
        self.current = name
        started = time.perf_counter()
        try:
            yield cost
        finally:
            cost.wall_s += time.perf_counter() - started
            self.current = previous

    def record_teacher(self, gen: Generation | None, *, failed: bool = False) -> None:
        cost = self.get(self.current or "other")
        cost.teacher_calls += 1
        cost.teacher_failures += int(failed)
        if gen is not None:
            cost.prompt_tokens += gen.prompt_tokens
            cost.completion_tokens += gen.completion_tokens

    def record_student(self, calls: int, cached: int) -> None:
        cost = self.get(self.current or "other")
        cost.student_calls += calls
        cost.student_cached += cached

    def total(self) -> PhaseCost:
        out = PhaseCost()
        for cost in self.phases.values():
            out.add(cost)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "phases": {k: v.to_json() for k, v in self.phases.items()},
            "total": self.total().to_json(),
        }

    def table(self) -> str:
        rows = [
            (
                "phase",
                "teacher calls (cached)",
                "failed",
                "tokens (prompt+completion)",
                "student calls (cached)",
                "wall s",
            )
        ]
        for name, c in [*self.phases.items(), ("total", self.total())]:
            rows.append(
                (
                    name,
                    f"{c.teacher_calls} ({c.teacher_cached})",
                    str(c.teacher_failures),
                    f"{c.tokens} ({c.prompt_tokens}+{c.completion_tokens})",
                    f"{c.student_calls} ({c.student_cached})",
                    f"{c.wall_s:.1f}",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths))
            )
            for row in rows
        ]
        return "\n".join(lines)


class CountingTeacher:
    """Wraps a teacher so every generate() is charged to the ledger's current phase.

    With a response cache, a repeated request (the same distill run again, e.g. with
    --write after reviewing the printed proposal) is answered from it: the proposal that is
    written is the one that was reviewed, even with a sampling teacher, and costs nothing.
    """

    def __init__(self, backend: Backend, ledger: CostLedger, cache: Any = None) -> None:
        self.backend = backend
        self.ledger = ledger
        self.cache = cache
        self.name = backend.name

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        key = None
        if self.cache is not None:
            from ..cache import generate_key

            key = generate_key(generation_identity(self.backend), messages, options)
            hit = self.cache.get(key)
            if isinstance(hit, Generation):
                self.ledger.get(self.ledger.current or "other").teacher_cached += 1
                return hit
        try:
            gen = self.backend.generate(messages, options)
        except Exception:
            self.ledger.record_teacher(None, failed=True)
            raise
        self.ledger.record_teacher(gen)
        if key is not None:
            self.cache.put(key, gen)
        return gen

    def close(self) -> None:
        self.backend.close()
