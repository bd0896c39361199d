"""Progress output: a bar on a terminal, timed plain lines in a log, nothing when disabled."""

from __future__ import annotations

import io
import time

import pytest

from pytest_pld.progress import LOG_EVERY_S, Progress, notice, route_notices


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_plain_line_at_most_every_interval_with_the_time_left() -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(100, "contractnli/test", stream=log, clock=clock)
    for _ in range(10):  # 10 examples within the first interval: no line yet
        clock.now += 1.0
        progress(1)
    assert log.getvalue() == ""
    clock.now = LOG_EVERY_S
    progress(15)
    assert log.getvalue() == (
        f"contractnli/test: 25/100 ex (25%), {LOG_EVERY_S:.0f} s, "
        f"about {LOG_EVERY_S * 3:.0f} s left\n"
    )
    clock.now += 1.0
    progress(1)
    assert log.getvalue().count("\n") == 1  # the next line waits for the next interval
    assert "\r" not in log.getvalue()


def test_no_line_once_everything_is_done_and_none_when_disabled() -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(5, "x", stream=log, clock=clock)
    clock.now = 10 * LOG_EVERY_S
    progress(5)  # the caller prints its own summary at the end
    silent = Progress(5, "x", enabled=False, stream=log, clock=clock)
    clock.now = 20 * LOG_EVERY_S
    silent(1)
    progress.close()
    silent.close()
    assert log.getvalue() == ""


def test_a_terminal_gets_a_tqdm_bar() -> None:
    term = Terminal()
    progress = Progress(3, "teach toy", stream=term)
    progress(3)
    progress.close()
    drawn = term.getvalue()
    assert "teach toy:" in drawn and "/3 [" in drawn and "\r" in drawn  # a redrawn bar


def test_cached_answers_count_as_done_but_not_towards_the_time_left() -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(100, "contractnli/test, 0 rules", stream=log, clock=clock)
    progress(50, cached=True)  # a burst from the response cache, no time spent
    clock.now = LOG_EVERY_S
    progress(10)  # 10 answers worked for in LOG_EVERY_S: 40 more take 4 intervals
    assert log.getvalue() == (
        f"contractnli/test, 0 rules: 60/100 ex (60%), {LOG_EVERY_S:.0f} s, 50 cached, "
        f"about {LOG_EVERY_S * 4:.0f} s left\n"
    )


def test_no_time_left_is_guessed_from_cached_answers_alone() -> None:
    log, clock = io.StringIO(), Clock()
    progress = Progress(100, "x", stream=log, clock=clock)
    progress(40, cached=True)
    clock.now = LOG_EVERY_S
    progress(0)
    assert log.getvalue() == f"x: 40/100 ex (40%), {LOG_EVERY_S:.0f} s, 40 cached\n"


def test_a_cached_burst_does_not_enter_the_bars_rate() -> None:
    term = Terminal()
    progress = Progress(100, "contractnli/test, 0 rules", stream=term)
    progress(50, cached=True)
    assert progress.bar.format_dict["rate"] is None  # nothing worked for yet: no rate
    time.sleep(0.15)  # tqdm reads its own clock; one answer worked for in >= 0.15 s
    progress(1)
    rate = progress.bar.format_dict["rate"]
    progress.close()
    # above 1/0.15 per second, the 50 cached answers were counted as work done in that time
    assert rate is not None and rate <= 1 / 0.15
    drawn = term.getvalue()
    assert "51/100" in drawn and "50 cached" in drawn


def test_a_notice_goes_to_stderr_or_where_it_is_routed_until_that_is_undone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    notice("pld: converting m once")
    assert capsys.readouterr().err == "pld: converting m once\n"
    heard: list[str] = []
    undo = route_notices(heard.append)
    notice("pld: converted m in 3 s")
    undo()
    notice("back on stderr")
    assert heard == ["pld: converted m in 3 s"]
    assert capsys.readouterr().err == "back on stderr\n"
