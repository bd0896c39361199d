"""How many threads the `local:` backend computes with (no torch import here).

torch's default is one thread per core. On a shared machine that is the slow choice: every
forward pass has hundreds of parallel regions, each waiting for its slowest thread, and a
thread whose core another process holds waits a scheduler slice. Measured on 2 cores with
another process holding one: 2 threads were 2.6-4.6x slower than 1 (and a StereoSet example
took 4.4 s on 2 threads against 0.87 s on 1).

The rule, first that applies:
1. `threads=N` given to the backend (`--student-option threads=N`, `PLD_STUDENT_THREADS`,
   `[tool.pld.student]`);
2. `$PLD_THREADS`;
3. under pytest-xdist, the usable cores divided among the workers;
4. the cores this process may use (`os.sched_getaffinity`), less those other processes keep
   busy, never below 1. "Busy" is measured, not guessed from the load average (which counts
   this process too and lags a minute): the CPU time the usable cores spent outside idle and
   iowait, from /proc/stat, over the seconds the backend spent loading the model, less this
   process's own CPU time over the same window. Another process's use counts as a busy core
   from half a core up (rounded to the nearest whole core).

Thread counts change no score (the backend checks its kernels on 1 thread and on the count
it uses, see `rows`), so the choice is not part of the cache identity.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: The shortest window others' CPU use is measured over (the model load is usually longer).
MIN_WINDOW_S = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    why: str  # e.g. "2 usable, 0 busy", "$PLD_THREADS", "given"


def usable_cores() -> list[int]:
    """The CPUs this process may run on (all of them where affinity cannot be read)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cores: list[int], stat: str) -> float | None:
    """Seconds the given cores spent busy (not idle or iowait) since boot, from /proc/stat's
    text; None when it lists none of them."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    wanted = {f"cpu{c}" for c in cores}
    total, found = 0, False
    for line in stat.splitlines():
        name, *fields = line.split()
        if name in wanted:
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            values = [int(v) for v in fields[:8]]
            total += sum(values) - values[3] - values[4]
            found = True
    return total / tick if found else None


def _read_stat() -> str:
    try:
        return Path("/proc/stat").read_text(encoding="ascii")
    except OSError:
        return ""


def _sample(cores: list[int]) -> tuple[float, float | None, float]:
    """(now, the cores' busy seconds, this process's CPU seconds)."""
    return time.perf_counter(), _busy_seconds(cores, _read_stat()), time.process_time()


class CpuWatch:
    """Other processes' CPU use on the usable cores, from when it was created to `busy()`."""

    def __init__(self, cores: list[int] | None = None) -> None:
        self.cores = usable_cores() if cores is None else cores
        self._start = _sample(self.cores)

    def busy(self) -> float | None:
        """Cores' worth of CPU other processes used over the window; None where /proc/stat
        cannot be read (not Linux)."""
        wall0, busy0, own0 = self._start
        if busy0 is None:
            return None
        left = MIN_WINDOW_S - (time.perf_counter() - wall0)
        if left > 0:
            time.sleep(left)
        wall1, busy1, own1 = _sample(self.cores)
        if busy1 is None:
            return None
        others = (busy1 - busy0) - (own1 - own0)
        return max(0.0, others / (wall1 - wall0))


def choose_threads(
    given: int | None = None,
    watch: CpuWatch | None = None,
    environ: dict[str, str] | os._Environ[str] | None = None,
) -> ThreadChoice:
    """The thread count by the rule in the module docstring."""
    env = os.environ if environ is None else environ
    if given:
        return ThreadChoice(int(given), "given")
    pinned = env.get("PLD_THREADS", "")
    if pinned.isdigit() and int(pinned) > 0:
        return ThreadChoice(int(pinned), "$PLD_THREADS")
    usable = len(watch.cores if watch is not None else usable_cores())
    workers = env.get("PYTEST_XDIST_WORKER_COUNT", "")
    if workers.isdigit() and int(workers) > 1:
        share = max(1, usable // int(workers))
        return ThreadChoice(share, f"{usable} usable / {workers} pytest-xdist workers")
    others = watch.busy() if watch is not None else None
    if others is None:
        return ThreadChoice(usable, f"{usable} usable, busy unknown")
    busy = min(usable, int(others + 0.5))
    return ThreadChoice(max(1, usable - busy), f"{usable} usable, {busy} busy")
