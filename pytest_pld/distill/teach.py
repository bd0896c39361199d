"""Phase 1 (extraction): teacher calls per training example, given the input and the gold
label, each answered with a general rule; every answer is appended to a JSON Lines trace file.

Draws (`samples`): draw 0 of every example is the greedy answer (what a one-draw run writes),
draws 1..K-1 are sampled at `temperature` with a seed derived from (seed, example id, draw), so
a resumed or repeated run asks for exactly the same draws. Draws are taught draw by draw (every
example's draw 0 first): an interrupted run has the greedy traces of as many examples as
possible. A trace is done when its (example id, draw) is in the file.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import Backend, get_backend
from ..datasets import Example
from ..errors import PldError
from ..instructions import InstructionSet
from ..progress import Progress
from ..render import render_user_message
from ..suite import Suite, example_fields
from .answers import MODES, RuleAnswer, Teacher, ask_for_rule, default_mode, entity_terms
from .cost import PhaseCost
from .draws import (
    DEFAULT_SEED,
    DEFAULT_TEMPERATURE,
    check_draw_options,
    draw_sampling,
    draw_seed,
    select_examples,
)
from .guard import refuse_gate_split
from .prompts import TEACH_SCHEMA, task_header, teach_messages
from .teachers import default_teacher
from .traces import Trace, TraceWriter, check_compatible, drop_truncated_tail, read_traces

#: stop after this many teacher calls in a row raised (server down, model missing): recording
#: hundreds of identical failures helps nobody, and the traces so far are kept for a resume
MAX_CALL_ERRORS_IN_A_ROW = 5


@dataclass
class TeachSummary:
    suite: str
    split: str
    teacher: str
    mode: str
    out: Path
    examples: int = 0  # in the split (after --limit / --per-label)
    samples: int = 1  # draws per example
    temperature: float = DEFAULT_TEMPERATURE  # of draws 1..samples-1
    seed: int = DEFAULT_SEED
    #: examples per gold label (shown with --per-label)
    per_label: Counter[str] = field(default_factory=Counter)
    already_done: int = 0  # (example, draw) pairs already in the file
    #: of those, how many each other teacher wrote (a resume skips them, whoever taught them)
    done_by_others: Counter[str] = field(default_factory=Counter)
    #: sampled draws already there with another temperature or seed (also skipped)
    sampled_otherwise: int = 0
    taught: int = 0  # teacher answers (example, draw) attempted in this run
    ok: int = 0
    failed: int = 0
    entity_flagged: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    cost: PhaseCost = field(default_factory=PhaseCost)
    truncated_line: int | None = None
    interrupted: bool = False
    stopped: str = ""  # why the run stopped early, if it did
    notes: list[str] = field(default_factory=list)  # e.g. the batch path's billing

    def lines(self) -> list[str]:
        c = self.cost
        if self.samples == 1:
            what = f"{self.examples} examples"
        else:
            last = "" if self.samples == 2 else f"-{self.samples - 1}"
            what = (
                f"{self.examples} examples x {self.samples} draws (draw 0 greedy, 1{last} at "
                f"temperature {self.temperature:g}, seed {self.seed}) = "
                f"{self.examples * self.samples} traces"
            )
        out = [
            (
                f"teach {self.suite}/{self.split}: {what}, "
                f"{self.already_done} already in {self.out}, {self.taught} taught now "
                f"(teacher {self.teacher}, {self.mode} mode)"
            ),
            (
                f"  ok {self.ok}, failed {self.failed}, rules naming example words "
                f"(flagged) {self.entity_flagged}"
            ),
            (
                f"  teacher calls {c.teacher_calls}, tokens {c.tokens} ({c.prompt_tokens} "
                f"prompt + {c.completion_tokens} completion), wall {c.wall_s:.1f} s"
            ),
        ]
        if self.per_label:
            out.insert(
                1,
                "  examples per label: "
                + ", ".join(f"{label} {n}" for label, n in sorted(self.per_label.items())),
            )
        for teacher, n in self.done_by_others.most_common():
            out.append(
                f"  note: {n} of the {self.already_done} already there were taught by {teacher}, "
                f"not {self.teacher}; to teach them with this teacher, use another --out"
            )
        for reason, n in self.failure_reasons.most_common():
            out.append(f"  failed x{n}: {reason}")
        if self.sampled_otherwise:
            out.append(
                f"  note: {self.sampled_otherwise} of the {self.already_done} already there "
                f"were sampled with another temperature or seed than {self.temperature:g} / "
                f"{self.seed}; they were kept. To draw them anew, use another --out"
            )
        if self.truncated_line:
            out.append(
                f"  note: line {self.truncated_line} of {self.out} was truncated (an "
                "interrupted write); it was removed and its draw taught again"
            )
        if self.interrupted:
            out.append(
                "  interrupted: every finished trace is saved; re-run the same command to resume"
            )
        if self.stopped:
            out.append(f"  stopped early: {self.stopped}")
        out.extend(f"  {note}" for note in self.notes)
        return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _reason(error: str) -> str:
    """Failure reasons grouped for the summary (without the example-specific details)."""
    return error.split(" (")[0].split(":")[0] if error else "unknown"


def _most_specific(terms: tuple[str, ...]) -> list[str]:
    """Whole phrases before the single words they contain ('chess player' covers 'chess')."""
    phrases = sorted(terms, key=lambda t: (-len(t.split()), t))
    out: list[str] = []
    for term in phrases:
        if not any(term in kept.split() for kept in out):
            out.append(term)
    return out


def header_for(iset: InstructionSet, suite: Suite) -> str:
    return task_header(iset.preamble, suite.labels, iset.label_definitions)


def teach(
    suite: Suite,
    *,
    teacher: str | Backend | None = None,
    out: Path,
    split: str = "train",
    limit: int | None = None,
    per_label: int | None = None,
    samples: int = 1,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = DEFAULT_SEED,
    mode: str = "auto",
    retry_failed: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> TeachSummary:
    """Teach `samples` draws of every selected example into `out` (see the module docstring);
    `limit` and `per_label` select the examples (see `select_examples`)."""
    refuse_gate_split(suite, split, "teach")
    check_draw_options(limit, per_label, samples, temperature, seed)
    if teacher is None:
        teacher = default_teacher()  # before any work: a missing teacher is a quick error
    backend = get_backend(teacher) if isinstance(teacher, str) else teacher
    name = backend.name
    if mode == "auto":
        mode = default_mode(name)
    if mode not in MODES:
        raise PldError(f"unknown mode {mode!r}", hint=f"modes: auto, {', '.join(MODES)}")
    summary = TeachSummary(
        suite.name, split, name, mode, out, samples=samples, temperature=temperature, seed=seed
    )
    try:
        _teach(
            suite,
            backend,
            summary,
            split=split,
            limit=limit,
            per_label=per_label,
            retry_failed=retry_failed,
            progress=progress,
            log=log,
        )
    finally:
        if isinstance(teacher, str):
            backend.close()
    return summary


@dataclass
class TeachContext:
    """What every teacher request of one run shares; `ask` and `trace` are the whole
    per-example work, used alike by the request-by-request and the batch paths."""

    suite: Suite
    split: str
    mode: str
    teacher: str
    header: str
    vocabulary: list[str]

    def ask(
        self,
        backend: Teacher,
        example: Example,
        *,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> RuleAnswer:
        """One draw: greedy without `temperature`, else sampled with `seed`."""
        fields = example_fields(example)
        user = render_user_message(self.suite.user_template, fields, where=str(self.suite.path))
        entities = entity_terms(example.fields, allowed=self.vocabulary)
        return ask_for_rule(
            backend,
            teach_messages(
                self.header,
                user,
                example.label,
                mode=self.mode,
                avoid=_most_specific(entities),
            ),
            mode=self.mode,
            label=example.label,
            entities=entities,
            want_reasoning=self.mode == "json",
            schema=TEACH_SCHEMA,
            temperature=temperature,
            seed=seed,
        )

    def trace(
        self,
        example: Example,
        answer: RuleAnswer,
        begun: str,
        *,
        draw: int = 0,
        temperature: float | None = None,
        seed: int | None = None,
    ) -> Trace:
        return Trace(
            id=example.id,
            suite=self.suite.name,
            split=self.split,
            gold=example.label,
            rule=answer.rule if answer.ok else "",
            reasoning=answer.reasoning,
            teacher=self.teacher,
            status="ok" if answer.ok else "failed",
            labels=tuple(self.suite.labels),
            mode=self.mode,
            error=answer.error,
            attempts=answer.attempts,
            entity_terms=answer.entity_terms,
            started_at=begun,
            finished_at=_now(),
            latency_s=round(answer.latency_s, 3),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            draw=draw,
            temperature=float(temperature or 0.0),
            seed=seed,
        )


def count_answer(summary: TeachSummary, answer: RuleAnswer) -> None:
    summary.taught += 1
    cost = summary.cost
    cost.teacher_calls += answer.attempts
    cost.prompt_tokens += answer.prompt_tokens
    cost.completion_tokens += answer.completion_tokens
    if answer.ok:
        summary.ok += 1
        summary.entity_flagged += bool(answer.entity_terms)
    else:
        summary.failed += 1
        cost.teacher_failures += 1
        summary.failure_reasons[_reason(answer.error)] += 1


def prepare_teach(
    suite: Suite,
    summary: TeachSummary,
    *,
    split: str,
    limit: int | None,
    per_label: int | None = None,
    retry_failed: bool,
    log: Callable[[str], None],
) -> tuple[TeachContext, list[tuple[Example, int]]]:
    """Read the traces so far (cutting a truncated last line), and the (example, draw) pairs
    still to teach, draw by draw (`summary.samples` draws per example)."""
    existing = read_traces(summary.out, missing_ok=True)
    check_compatible(existing, suite.name, tuple(suite.labels))
    if existing.truncated_line is not None:
        summary.truncated_line = existing.truncated_line
        log(
            f"{summary.out}:{existing.truncated_line}: truncated last line (an interrupted "
            "write) removed; its draw will be taught again"
        )
        drop_truncated_tail(existing)

    examples = select_examples(
        suite.load_examples(split, limit=None if per_label else limit),
        limit=limit,
        per_label=per_label,
    )
    if not examples:
        raise PldError(f"split {split!r} has no examples", path=suite.path)
    summary.examples = len(examples)
    if per_label:
        summary.per_label = Counter(e.label for e in examples)
    done = {
        t.key: t for t in existing.traces if t.ok or (t.status == "failed" and not retry_failed)
    }
    # draw by draw: every example's greedy draw before any sampled one
    todo = [
        (example, draw)
        for draw in range(summary.samples)
        for example in examples
        if (example.id, draw) not in done
    ]
    kept = [
        done[(e.id, draw)]
        for draw in range(summary.samples)
        for e in examples
        if (e.id, draw) in done
    ]
    summary.already_done = len(kept)
    summary.done_by_others = Counter(t.teacher for t in kept if t.teacher != summary.teacher)
    summary.sampled_otherwise = sum(
        t.draw > 0
        and (
            t.temperature != summary.temperature or t.seed != draw_seed(summary.seed, t.id, t.draw)
        )
        for t in kept
    )

    iset = suite.load_instructions()
    # the task's own words (labels, preamble, definitions) are fair game for a general rule
    vocabulary = [
        *suite.labels,
        iset.preamble,
        *iset.label_definitions.values(),
        suite.user_template,
    ]
    context = TeachContext(
        suite, split, summary.mode, summary.teacher, header_for(iset, suite), vocabulary
    )
    return context, todo


def _teach(
    suite: Suite,
    backend: Teacher,
    summary: TeachSummary,
    *,
    split: str,
    limit: int | None,
    per_label: int | None,
    retry_failed: bool,
    progress: bool | None,
    log: Callable[[str], None],
) -> None:
    context, todo = prepare_teach(
        suite,
        summary,
        split=split,
        limit=limit,
        per_label=per_label,
        retry_failed=retry_failed,
        log=log,
    )
    started = time.perf_counter()
    bar = Progress(len(todo), f"teach {suite.name}", progress)
    in_a_row = 0
    try:
        with TraceWriter(summary.out) as writer:
            for example, draw in todo:
                temperature, seed = draw_sampling(
                    summary.temperature, summary.seed, example.id, draw
                )
                begun = _now()
                answer = context.ask(backend, example, temperature=temperature, seed=seed)
                trace = context.trace(
                    example, answer, begun, draw=draw, temperature=temperature, seed=seed
                )
                writer.append(trace)
                count_answer(summary, answer)
                bar(1)
                in_a_row = in_a_row + 1 if answer.call_error else 0
                if in_a_row >= MAX_CALL_ERRORS_IN_A_ROW:
                    summary.stopped = (
                        f"{in_a_row} teacher calls in a row failed (last: "
                        f"{answer.error}); fix the teacher and re-run to resume"
                    )
                    break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.cost.wall_s += time.perf_counter() - started
