"""How many threads the local backend computes with: the rule (`backends.local.threads`), and
that its measurement of other processes' CPU use sees a real busy process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_pld.backends.local import threads
from pytest_pld.backends.local.threads import CpuWatch, ThreadChoice, choose_threads

STAT = """cpu  900 0 300 5000 20 0 10 0 0 0
cpu0 {a} 0 100 2500 10 0 5 {steal} 0 0
cpu1 400 0 100 2500 10 0 5 0 0 0
intr 12345
"""


class FixedWatch(CpuWatch):
    """A window whose other-process use is given (for the rule alone)."""

    def __init__(self, cores: list[int], busy: float | None) -> None:
        self.cores = cores
        self._busy = busy

    def busy(self) -> float | None:
        return self._busy


@pytest.mark.parametrize(
    ("given", "env", "busy", "expected"),
    [
        (3, {"PLD_THREADS": "1"}, 0.0, ThreadChoice(3, "given")),
        (None, {"PLD_THREADS": "1"}, 0.0, ThreadChoice(1, "$PLD_THREADS")),
        (
            None,
            {"PYTEST_XDIST_WORKER_COUNT": "2"},
            0.0,
            ThreadChoice(2, "4 usable / 2 pytest-xdist workers"),
        ),
        (None, {}, 0.2, ThreadChoice(4, "4 usable, 0 busy")),
        (None, {}, 0.5, ThreadChoice(3, "4 usable, 1 busy")),  # half a core counts
        (None, {}, 2.4, ThreadChoice(2, "4 usable, 2 busy")),
        (None, {}, 7.0, ThreadChoice(1, "4 usable, 4 busy")),  # never below 1
        (None, {}, None, ThreadChoice(4, "4 usable, busy unknown")),
        (None, {"PLD_THREADS": "zero"}, 0.0, ThreadChoice(4, "4 usable, 0 busy")),
    ],
    ids=[
        "given",
        "env",
        "xdist",
        "idle",
        "half-busy",
        "two-busy",
        "all-busy",
        "no-proc",
        "bad-env",
    ],
)
def test_the_thread_count_follows_the_rule(
    given: int | None, env: dict[str, str], busy: float | None, expected: ThreadChoice
) -> None:
    assert choose_threads(given, FixedWatch([0, 1, 2, 3], busy), env) == expected


def test_busy_time_is_read_for_the_usable_cores_only_with_steal_counted() -> None:
    tick = threads.os.sysconf("SC_CLK_TCK")
    text = STAT.format(a=300, steal=40)
    # cpu0: user 300 + system 100 + softirq 5 + steal 40 (idle and iowait are not busy)
    assert threads._busy_seconds([0], text) == pytest.approx(445 / tick)
    assert threads._busy_seconds([0, 1], text) == pytest.approx((445 + 505) / tick)
    assert threads._busy_seconds([7], text) is None


def test_this_process_own_cpu_time_is_not_counted_as_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over a 2 s window the two cores were busy 3 core-seconds, 2 of them this process's
    own (loading the model): others used half a core."""
    samples = iter([(10.0, 100.0, 5.0), (12.0, 103.0, 7.0)] * 2)  # (wall, busy, own) seconds
    monkeypatch.setattr(threads, "_sample", lambda cores: next(samples))
    watch = CpuWatch([0, 1])
    assert watch.busy() == pytest.approx(0.5)
    assert choose_threads(None, CpuWatch([0, 1]), {}) == ThreadChoice(1, "2 usable, 1 busy")


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat (Linux)")
def test_the_watch_sees_another_process_that_keeps_a_core_busy() -> None:
    """A real child process spinning for the whole window: at least most of a core shows as
    busy (more when other jobs share the machine; never this process's own time)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter has started and spins
        watch = CpuWatch()
        time.sleep(1.0)
        busy = watch.busy()
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.7, busy
