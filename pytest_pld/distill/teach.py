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
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backends import Backend, get_backend
from ..datasets import Example, split_fraction
from ..errors import PldError
from ..instructions import InstructionSet
from ..progress import Progress
from ..render import render_user_message
from ..suite import Suite, example_fields
from .answers import MODES, Teacher, ask_for_rule, default_mode, entity_terms
from .cost import PhaseCost
from .guard import refuse_gate_split
from .prompts import TEACH_SCHEMA, task_header, teach_messages
from .teachers import default_teacher
from .traces import Trace, TraceWriter, check_compatible, drop_truncated_tail, read_traces

#: stop after this many teacher calls in a row raised (server down, model missing): recording
#: hundreds of identical failures helps nobody, and the traces so far are kept for a resume
MAX_CALL_ERRORS_IN_A_ROW = 5
#: the temperature of sampled draws (1..K-1) when none is given
DEFAULT_TEMPERATURE = 0.7
DEFAULT_SEED = 0


def draw_seed(seed: int, example_id: str, draw: int) -> int:
    """The sampling seed of one draw: a stable function of the run's seed, the example and the
    draw (sha256, not hash(): the same on every machine and Python), below 2**31 because some
    servers take only 32-bit seeds."""
    digest = hashlib.sha256(f"pld-draw\0{seed}\0{example_id}\0{draw}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _sample_order(example: Example) -> float:
    # the order `Suite.load_examples(limit=)` samples in, so a --per-label sample keeps the
    # examples an earlier --limit run taught (per label, a prefix of the same order)
    return split_fraction("sample:" + example.id)


def select_examples(
    examples: list[Example], *, limit: int | None, per_label: int | None
) -> list[Example]:
    """With `per_label`, up to that many examples of each gold label (the first ones in the
    --limit sampling order); with `limit` as well, at most `limit` of those in total, taken
    from the labels in turn, so a rare label keeps its share instead of being crowded out.
    Without `per_label` this is --limit's own sample. File order is kept."""
    if per_label is None:
        return examples  # `load_examples(limit=)` already sampled
    by_label: dict[str, list[Example]] = {}
    for example in sorted(examples, key=_sample_order):
        by_label.setdefault(example.label, []).append(example)
    queues = [chosen[:per_label] for chosen in by_label.values()]
    picked: list[Example] = []
    depth = 0
    while any(depth < len(q) for q in queues) and (limit is None or len(picked) < limit):
        for queue in queues:
            if depth < len(queue) and (limit is None or len(picked) < limit):
                picked.append(queue[depth])
        depth += 1
    keep = {e.id for e in picked}
    return [e for e in examples if e.id in keep]


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
    _check_draw_options(limit, per_label, samples, temperature, seed)
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


def _check_draw_options(
    limit: int | None, per_label: int | None, samples: int, temperature: float, seed: int
) -> None:
    for flag, value in (("--limit", limit), ("--per-label", per_label), ("--samples", samples)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise PldError(f"{flag} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PldError(f"--seed must be an integer >= 0, got {seed!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise PldError(f"--temperature must be a number, got {temperature!r}")
    if samples > 1 and not 0 < temperature <= 2:
        raise PldError(
            f"--temperature must be in (0, 2] for sampled draws, got {temperature}",
            hint="draw 0 is always the greedy answer; draws 1.. are sampled, and at "
            "temperature 0 they would all repeat it (0.7 is the default)",
        )


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
    existing = read_traces(summary.out, missing_ok=True)
    check_compatible(existing, suite.name, tuple(suite.labels))
    if existing.truncated_line is not None:
        summary.truncated_line = existing.truncated_line
        log(
            f"{summary.out}:{existing.truncated_line}: truncated last line (an interrupted "
            "write) removed; its example will be taught again"
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
        and (t.temperature != summary.temperature or t.seed != _seed_of(summary, t.id, t.draw))
        for t in kept
    )

    iset = suite.load_instructions()
    header = header_for(iset, suite)
    # the task's own words (labels, preamble, definitions) are fair game for a general rule
    vocabulary = [
        *suite.labels,
        iset.preamble,
        *iset.label_definitions.values(),
        suite.user_template,
    ]
    where = str(suite.path)
    cost = summary.cost
    started = time.perf_counter()
    bar = Progress(len(todo), f"teach {suite.name}", progress)
    in_a_row = 0
    try:
        with TraceWriter(summary.out) as writer:
            for example, draw in todo:
                sampled = draw > 0
                temperature = summary.temperature if sampled else None
                seed = _seed_of(summary, example.id, draw) if sampled else None
                fields = example_fields(example)
                user = render_user_message(suite.user_template, fields, where=where)
                begun = _now()
                entities = entity_terms(example.fields, allowed=vocabulary)
                answer = ask_for_rule(
                    backend,
                    teach_messages(
                        header,
                        user,
                        example.label,
                        mode=summary.mode,
                        avoid=_most_specific(entities),
                    ),
                    mode=summary.mode,
                    label=example.label,
                    entities=entities,
                    want_reasoning=summary.mode == "json",
                    schema=TEACH_SCHEMA,
                    temperature=temperature,
                    seed=seed,
                )
                trace = Trace(
                    id=example.id,
                    suite=suite.name,
                    split=split,
                    gold=example.label,
                    rule=answer.rule if answer.ok else "",
                    reasoning=answer.reasoning,
                    teacher=summary.teacher,
                    status="ok" if answer.ok else "failed",
                    labels=tuple(suite.labels),
                    mode=summary.mode,
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
                writer.append(trace)
                summary.taught += 1
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
        cost.wall_s += time.perf_counter() - started


def _seed_of(summary: TeachSummary, example_id: str, draw: int) -> int:
    return draw_seed(summary.seed, example_id, draw)
