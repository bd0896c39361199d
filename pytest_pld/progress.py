"""Progress on stderr for long work (evaluation runs, teaching), and notices of one-off work.

On a terminal: a tqdm bar. Where stderr is a file or a CI log, a bar would be one long line of
carriage returns, so instead a plain line is written at most every `LOG_EVERY_S` seconds: a
ten-minute run piped to a log is never silent, and the log stays readable.

Answers found in the response cache arrive in a burst at the start and cost no time, so they
are counted apart (`progress(n, cached=True)`): the time left is estimated from the answers
that were worked for, not from a rate the cache inflated.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

LOG_EVERY_S = 30.0

# Where `notice` writes: None is stderr. The pytest plugin routes notices past its output
# capture, which would otherwise hold them until the test ends - and show them only if it fails.
_notice_sink: Callable[[str], None] | None = None


def notice(text: str) -> None:
    """Tell the user now, on stderr, about work they did not ask for by name and would
    otherwise wait through in silence (a model's one-off conversion): what, why, how long."""
    if _notice_sink is not None:
        _notice_sink(text)
    else:
        print(text, file=sys.stderr, flush=True)


def route_notices(sink: Callable[[str], None] | None) -> Callable[[], None]:
    """Send notices to `sink` (None: stderr); returns what undoes it."""
    global _notice_sink
    before, _notice_sink = _notice_sink, sink

    def undo() -> None:
        global _notice_sink
        _notice_sink = before

    return undo


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """`Progress(total, desc)(n)` advances by n (`cached=True`: n answers that cost no work).
    enabled: None chooses by the stream (bar on a terminal, timed lines otherwise), True always
    draws the bar, False is silent."""

    def __init__(
        self,
        total: int,
        desc: str,
        enabled: bool | None = None,
        *,
        unit: str = "ex",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = self.cached = 0
        self.started = self.last_line = clock()
        terminal = _is_terminal(self.stream)
        self.bar: Any = None
        self.lines = False
        if enabled is False or total <= 0:
            return
        if enabled or terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=self.stream)
        else:
            self.lines = True

    def __call__(self, n: int = 1, *, cached: bool = False) -> None:
        self.done += n
        if cached:
            self.cached += n
        if self.bar is not None:
            if cached:
                self._skip_on_bar(n)
            else:
                self.bar.update(n)
        elif self.lines:
            now = self.clock()
            if now - self.last_line >= LOG_EVERY_S and self.done < self.total:
                self.last_line = now
                self._write_line(now)

    def _skip_on_bar(self, n: int) -> None:
        # tqdm's rate is an average of the counts between two redraws; a cached burst passed
        # through update() would land in it (and in its dynamic miniters, which then freezes the
        # bar). Moving the bar's start point instead is what tqdm's own `initial` does for a
        # resumed loop: the burst shows as done and the rate sees only the answers worked for.
        bar = self.bar
        bar.n += n
        bar.last_print_n += n
        bar.initial += n
        bar.set_postfix_str(f"{self.cached} cached", refresh=False)
        bar.refresh()

    def _write_line(self, now: float) -> None:
        elapsed = now - self.started
        line = (
            f"{self.desc}: {self.done}/{self.total} {self.unit} "
            f"({100 * self.done / self.total:.0f}%), {elapsed:.0f} s"
        )
        if self.cached:
            line += f", {self.cached} cached"
        worked = self.done - self.cached
        if worked:
            line += f", about {elapsed / worked * (self.total - self.done):.0f} s left"
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
