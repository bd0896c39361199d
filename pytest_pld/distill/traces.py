"""Teacher traces: one JSON object per line, appended as each teacher call finishes.

Appending line by line (flushed and fsynced) means an interrupted `pld teach` loses at most the
line being written; that line is then the file's last and has no newline, which is how a
truncated line is told apart from a corrupt one in the middle (an error naming its line).

An example may have several traces, one per teacher draw (`pld teach --samples K`): draw 0 is
the greedy answer, draws 1..K-1 are sampled at `temperature` with a `seed` derived from the
example and the draw. A trace is identified by (id, draw); lines written before draws existed
have neither field and read as draw 0 at temperature 0.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import PldError
from ..textio import decode_text
from .cost import PhaseCost

if TYPE_CHECKING:
    from ..suite import Suite

STATUSES = ("ok", "failed")
_FIX_LINE = "fix or delete that line; `pld teach` re-teaches missing (id, draw) pairs"
REQUIRED = ("id", "suite", "split", "gold", "rule", "teacher", "status")


@dataclass(frozen=True)
class Trace:
    id: str
    suite: str
    split: str
    gold: str
    rule: str
    teacher: str
    status: str  # ok | failed
    reasoning: str = ""
    labels: tuple[str, ...] = ()
    mode: str = ""  # json | prefill
    error: str = ""
    attempts: int = 1
    entity_terms: tuple[str, ...] = ()  # words of the example the rule copies
    started_at: str = ""
    finished_at: str = ""
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    draw: int = 0  # 0: the greedy answer; 1..K-1: sampled draws
    temperature: float = 0.0  # 0.0: greedy
    seed: int | None = None  # the sampling seed of this draw (None: greedy)
    line: int = field(default=0, compare=False)  # where it was read from (not written)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.rule.strip())

    @property
    def key(self) -> tuple[str, int]:
        """What identifies a trace in its file: the example and the draw."""
        return (self.id, self.draw)

    @property
    def ref(self) -> str:
        """How provenance names this trace: the example id, with `#draw` after a sampled draw
        (draw 0 is plain `id`, as it was before draws existed)."""
        return self.id if self.draw == 0 else f"{self.id}#{self.draw}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("line")
        data["labels"] = list(self.labels)
        data["entity_terms"] = list(self.entity_terms)
        return data


@dataclass
class TraceFile:
    path: Path
    traces: list[Trace]  # the latest line per (id, draw), in first-seen order
    lines: int = 0
    truncated_line: int | None = None  # 1-based line number of a truncated last line
    truncated_offset: int | None = None  # byte offset where that line starts

    def by_key(self) -> dict[tuple[str, int], Trace]:
        return {t.key: t for t in self.traces}

    def by_id(self) -> dict[str, Trace]:
        """Each example's draw 0 (its greedy trace)."""
        return {t.id: t for t in self.traces if t.draw == 0}


def _trace_from(data: Any, path: Path, line: int) -> Trace:
    if not isinstance(data, Mapping):
        raise PldError("expected a JSON object (one trace per line)", path=path, line=line)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise PldError(
            f"trace is missing {', '.join(missing)}",
            path=path,
            line=line,
            hint="traces are written by `pld teach`; re-create the file with it",
        )
    if data["status"] not in STATUSES:
        raise PldError(
            f"status must be one of {', '.join(STATUSES)}, got {data['status']!r}",
            path=path,
            line=line,
        )
    for key in ("id", "suite", "split", "gold", "rule", "teacher"):
        if not isinstance(data[key], str):
            raise PldError(f"{key} must be a string", path=path, line=line)
    _check_draw_fields(data, path, line)
    known = set(Trace.__dataclass_fields__) - {"line"}
    kwargs = {k: v for k, v in data.items() if k in known}
    for key in ("labels", "entity_terms"):
        if not isinstance(data.get(key) or [], list):
            raise PldError(f"{key} must be a list of strings", path=path, line=line, hint=_FIX_LINE)
        kwargs[key] = tuple(str(x) for x in data.get(key) or ())
    if "temperature" in kwargs:
        kwargs["temperature"] = float(kwargs["temperature"])
    try:
        return Trace(**kwargs, line=line)
    except TypeError as exc:
        raise PldError(f"malformed trace ({exc})", path=path, line=line) from None


def _check_draw_fields(data: Mapping[str, Any], path: Path, line: int) -> None:
    """draw, temperature and seed are optional; where present they must make sense."""
    draw = data.get("draw", 0)
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise PldError(
            f"draw must be an integer >= 0, got {draw!r}", path=path, line=line, hint=_FIX_LINE
        )
    temperature = data.get("temperature", 0.0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < float("inf")
    ):
        raise PldError(
            f"temperature must be a number >= 0, got {temperature!r}",
            path=path,
            line=line,
            hint=_FIX_LINE,
        )
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise PldError(
            f"seed must be an integer or null, got {seed!r}", path=path, line=line, hint=_FIX_LINE
        )


def read_traces(path: Path, *, missing_ok: bool = False) -> TraceFile:
    """Read a traces file. A truncated last line is reported in the result and skipped; any
    other malformed line is a PldError naming it (silently dropping it would lose a paid
    teacher call without anyone noticing)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return TraceFile(path, [])
        raise PldError(
            "traces file not found",
            path=path,
            hint="create it with `pld teach SUITE --teacher MODEL`",
        ) from None
    except IsADirectoryError:
        raise PldError("expected a traces file, found a directory", path=path) from None
    latest: dict[tuple[str, int], Trace] = {}
    # a BOM (an editor's) is skipped, but counted: offsets are where `drop_truncated_tail` cuts
    offset = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    tf = TraceFile(path, [])
    chunks = raw[offset:].split(b"\n")
    for index, chunk in enumerate(chunks):
        number = index + 1
        is_last = index == len(chunks) - 1
        start, offset = offset, offset + len(chunk) + 1
        if not chunk.strip():
            continue
        tf.lines = number
        try:
            data = json.loads(chunk.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            if is_last and _cut_off_append(chunk, exc):  # no newline after it
                tf.truncated_line, tf.truncated_offset = number, start
                continue
            if isinstance(exc, UnicodeDecodeError) or b"\x00" in chunk:
                decode_text(raw, path, what="traces file")  # raises, naming the byte
            if isinstance(exc, json.JSONDecodeError):
                msg = exc.msg
            else:
                msg = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
            raise PldError(
                f"malformed trace line: {msg}", path=path, line=number, hint=_FIX_LINE
            ) from None
        trace = _trace_from(data, path, number)
        # a later line for the same example and draw (a retried failure) wins
        latest.pop(trace.key, None)
        latest[trace.key] = trace
    tf.traces = list(latest.values())
    return tf


def _cut_off_append(chunk: bytes, exc: Exception) -> bool:
    """Whether an unreadable last line is an interrupted append: the start of a JSON object
    cut short, maybe inside a character - not other text, another encoding or binary data,
    which `drop_truncated_tail` must never cut away."""
    if not chunk.startswith(b"{"):  # every line the writer appends starts with "{"
        return False
    return not isinstance(exc, UnicodeDecodeError) or exc.end == len(chunk)


def drop_truncated_tail(tf: TraceFile) -> None:
    """Cut an interrupted write off the end so new lines do not run into it. Its example has
    no trace yet, so `pld teach` teaches it again: nothing is lost."""
    if tf.truncated_offset is None:
        return
    with open(tf.path, "r+b") as fh:
        fh.truncate(tf.truncated_offset)
        fh.flush()
        os.fsync(fh.fileno())


class TraceWriter:
    """Appends traces one line at a time, durable as soon as append() returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # a last line without its newline (written by hand, or a crash after the JSON but
        # before the newline) would otherwise have the next trace glued onto it
        needs_newline = False
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        # held open across appends (closed by close()/__exit__): one open per run, not per line
        self._fh: TextIO = open(path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        if needs_newline:
            self._fh.write("\n")

    def append(self, trace: Trace) -> None:
        self._fh.write(json.dumps(trace.to_json(), ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def extend(self, traces: Iterable[Trace]) -> None:
        for trace in traces:
            self.append(trace)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> TraceWriter:  # noqa: PYI034 - not subclassed
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_compatible(tf: TraceFile, suite: str, labels: tuple[str, ...]) -> None:
    """Traces of another suite, or written under another label set, are an error naming the
    first offending line: rules distilled from them would argue for labels the student
    cannot answer."""
    for trace in tf.traces:
        if trace.suite != suite:
            raise PldError(
                f"trace of suite {trace.suite!r}, not {suite!r}",
                path=tf.path,
                line=trace.line,
                hint=f"teach this suite into its own file: pld teach {suite} "
                f"--out traces/{suite}.jsonl",
            )
        if trace.labels and tuple(trace.labels) != labels:
            raise PldError(
                f"trace written for labels {list(trace.labels)}, but the suite's "
                f"labels are {list(labels)}",
                path=tf.path,
                line=trace.line,
                hint="the label set changed since teaching; re-teach into a new file",
            )
        if trace.gold not in labels:
            raise PldError(
                f"gold label {trace.gold!r} is not one of the suite's labels {list(labels)}",
                path=tf.path,
                line=trace.line,
                hint="re-teach into a new file",
            )


def load_usable_traces(
    suite: Suite, path: Path, notes: list[str], log: Callable[[str], None]
) -> tuple[list[Trace], PhaseCost]:
    """The traces of `path` that hold a rule, and what teaching them cost; refuses traces of
    the gate split, notes failed calls, a truncated last line and dev-split traces."""
    tf = read_traces(path)
    if tf.truncated_line is not None:
        msg = (
            f"{path}:{tf.truncated_line}: truncated last line (an interrupted write) "
            "skipped; `pld teach` re-teaches its example"
        )
        notes.append(msg)
        log(msg)
    if not tf.traces:
        raise PldError(
            "the traces file has no traces",
            path=path,
            hint=f"run: pld teach {suite.name} --teacher MODEL --out {path}",
        )
    check_compatible(tf, suite.name, tuple(suite.labels))
    for trace in tf.traces:
        if trace.split == suite.gate_split:
            raise PldError(
                f"trace {trace.id!r} was taught on the {trace.split!r} split, which "
                "the gates score; distilling from it would leak the test answers",
                path=path,
                line=trace.line,
                hint="re-teach on the train split: pld teach SUITE --split train",
            )
    usable = [t for t in tf.traces if t.ok]
    if any(t.split == "dev" for t in usable):
        notes.append(
            "some traces were taught on the dev split, which also scores the "
            "candidate rules: the dev metrics below are optimistic"
        )
    failed = len(tf.traces) - len(usable)
    cost = PhaseCost(
        teacher_calls=sum(t.attempts for t in tf.traces),
        teacher_failures=failed,
        prompt_tokens=sum(t.prompt_tokens for t in tf.traces),
        completion_tokens=sum(t.completion_tokens for t in tf.traces),
        wall_s=sum(t.latency_s for t in tf.traces),
    )
    if failed:
        notes.append(f"{failed} of {len(tf.traces)} traces are failed teacher calls; skipped")
    if not usable:
        raise PldError(
            f"none of the {len(tf.traces)} traces has a usable rule",
            path=path,
            hint="re-run `pld teach` (it retries failed examples) or try another --teacher",
        )
    return usable, cost
