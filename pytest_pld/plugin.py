"""pytest wiring for pytest-pld: options, ini keys, collection, reports.

Only wiring lives here; the work is in session.py (options, run state), items.py (one test
item per gate), gates.py and report.py. Without --pld-suite
every hook returns at once and nothing heavier than this module is imported, so a project's
ordinary test run pays nothing for the plugin being installed.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .session import State


def _limit(text: str) -> int:
    """--pld-limit: `pld`'s positive_int (argparse and the standard library only), with a
    hint, because 0 or a negative number is a usage error here, never 'all'."""
    import argparse

    from .cli.options import positive_int

    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (leave --pld-limit out to run every example)"
        ) from None


def _shard(text: str) -> Any:
    from .cli.options import shard_type

    return shard_type(text)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pld", "pytest-pld: instruction-set gates")
    group.addoption(
        "--pld-suite",
        metavar="NAME[,NAME...]",
        default=None,
        help="evaluate these suites (files in the suites folder) as gates, or "
        "'all'. Default: none, so the plugin collects nothing",
    )
    group.addoption(
        "--pld-model",
        metavar="PROVIDER:MODEL",
        default=None,
        help="student model for every selected suite, e.g. "
        "local:qwen2.5-coder-0.5b-instruct. Default: the ini key "
        "pld_default_model, else each suite's `student`",
    )
    group.addoption(
        "--pld-limit",
        metavar="N",
        type=_limit,
        default=None,
        help="evaluate a deterministic sample of N examples (N >= 1), for fast "
        "PR runs. Default: every example of the split",
    )
    group.addoption(
        "--pld-split",
        metavar="SPLIT",
        default=None,
        help="split to evaluate: any split the suites declare (train, dev, test, or another "
        "name such as heldout). Default: each suite's gate_split (test)",
    )
    group.addoption(
        "--pld-data-root",
        metavar="DIR",
        default=None,
        help="read-only folder where suites' data:PATH split paths resolve. Default: "
        "$PLD_DATA_ROOT, else none (other data paths stay inside the project)",
    )
    group.addoption(
        "--pld-no-cache",
        action="store_true",
        default=False,
        help="neither read nor write the response cache (.pld/cache.sqlite). "
        "Default: cached answers are reused",
    )
    group.addoption(
        "--pld-no-calibration",
        action="store_true",
        default=False,
        help="gate the raw student: do not apply the instruction sets' calibration: sections "
        "(the ::calibration items skip). Default: a set's calibration is applied",
    )
    group.addoption(
        "--pld-results",
        metavar="DIR",
        default=None,
        help="folder for run records. Default: the ini key pld_results, else .pld/runs",
    )
    group.addoption(
        "--pld-baseline",
        metavar="PATH",
        default=None,
        help="baseline run record for the regression gate (with several suites: "
        "a folder of SUITE.json). Default: the suite's "
        "gates.regression.baseline",
    )
    group.addoption(
        "--pld-update-baseline",
        action="store_true",
        default=False,
        help="write this run's record as the regression baseline instead of "
        "comparing with it. Default: off",
    )
    group.addoption(
        "--pld-report",
        metavar="PATH",
        default=None,
        help="write a Markdown report (gate table, per-class scores) to PATH; it "
        "is also appended to $GITHUB_STEP_SUMMARY when that is set. "
        "Default: none",
    )
    group.addoption(
        "--pld-shard",
        metavar="I/N",
        type=_shard,
        default=None,
        help="evaluate shard I of N (a stable 1/N of the sample, by example id) into a "
        "partial run record; the gates are skipped (they run on the whole: pld merge, then "
        "--pld-record). Default: the whole sample",
    )
    group.addoption(
        "--pld-record",
        metavar="PATH",
        default=None,
        help="gate on this run record (e.g. from pld merge) instead of evaluating; no model "
        "is called (with several suites: a folder of SUITE.json). Default: evaluate",
    )
    group.addoption(
        "--pld-student-base-url",
        metavar="URL",
        default=None,
        help="the student's OpenAI-compatible endpoint. Default: $PLD_STUDENT_BASE_URL, "
        "else $OPENAI_BASE_URL",
    )
    group.addoption(
        "--pld-student-api-key",
        metavar="KEY",
        default=None,
        help="the student's API key; prefer $PLD_STUDENT_API_KEY (a flag shows in the "
        "process list). Default: $PLD_STUDENT_API_KEY, else $OPENAI_API_KEY for its host",
    )
    group.addoption(
        "--pld-student-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a student option (repeatable): temperature, seed, timeout, max_retries, "
        "max_tokens, concurrency, requests_per_minute for a served model; dtype, threads, "
        "pack_tokens for a local: one. Default: $PLD_STUDENT_<KEY>, else [tool.pld.student] "
        "in pyproject.toml, else the backend's",
    )
    group.addoption(
        "--pld-power",
        choices=("warn", "fail"),
        default=None,
        help="what an underpowered regression gate (its detectable drop exceeds its margin) "
        "does: warn or fail. Default: the suite's gates.regression.power, else the ini key "
        "pld_power, else warn",
    )
    parser.addini(
        "pld_suites_dir",
        default="suites",
        help="folder of suite files, relative to the rootdir (default: suites)",
    )
    parser.addini(
        "pld_default_model",
        default="",
        help="student model for every suite unless --pld-model is given "
        "(default: each suite's `student`)",
    )
    parser.addini(
        "pld_results",
        default="",
        help="folder for run records, relative to the rootdir (default: .pld/runs)",
    )
    parser.addini(
        "pld_power",
        default="",
        help="what an underpowered regression gate does, warn or fail, unless --pld-power or "
        "the suite's gates.regression.power says (default: warn)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pld: a pytest-pld gate (added to every gate item)")
    if not config.getoption("pld_suite", None):
        return
    from .session import STATE_KEY, State, make_options

    options = make_options(config)
    worker: dict[str, Any] | None = getattr(config, "workerinput", None)
    state = State(options, worker["testrunuid"] if worker else None)
    config.stash[STATE_KEY] = state
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        # explicit paths run alongside the gates, unless they already name a suite file (or a
        # gate in it, `suites/x.yaml::accuracy>=0.5`), which must then not widen to all gates
        named = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
        config.args.extend(
            str(p) for p in options.suite_paths if not any(n == p or n in p.parents for n in named)
        )
    else:
        # `pytest --pld-suite=X` alone means "run the gates", not the whole test suite too
        config.args[:] = [str(p) for p in options.suite_paths]
    config.pluginmanager.register(ActiveSession(config, state), "pld-session")


class ActiveSession:
    """The hooks that only matter when suites are selected (registered by pytest_configure)."""

    def __init__(self, config: pytest.Config, state: State) -> None:
        from .progress import route_notices

        self.config = config
        self.state = state
        self._undo_notices = route_notices(self._notice)

    def _notice(self, text: str) -> None:
        """A notice (a model's one-off conversion) shown when it is said, past pytest's output
        capture, which would hold it until the test ends and show it only if the test fails."""
        capture = self.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{text}", file=sys.stderr, flush=True)  # after pytest's progress dots

    def pytest_collect_file(
        self, file_path: Path, parent: pytest.Collector
    ) -> pytest.Collector | None:
        if file_path.resolve() not in self.state.options.suite_paths:
            return None
        from .items import SuiteFile

        return SuiteFile.from_parent(parent, path=file_path)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # called in the controller for reports from xdist workers too
        if report.when != "call" or not report.user_properties:
            return
        from .report.gate_summary import row_from_report

        row = row_from_report(report)
        if row is not None:
            self.state.rows.append(row)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.state.close()
        if hasattr(self.config, "workerinput") or not self.state.rows:
            return  # a worker's rows travel in its reports; the controller writes the report
        from .report.gate_summary import markdown, write_markdown

        text = markdown(self.state.rows, self.state.options.root)
        self.state.written = write_markdown(text, self.state.options.report)

    def pytest_report_header(self) -> list[str]:
        from .session import header_lines

        return header_lines(self.state.options)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.state.rows:
            return
        from .report.gate_summary import terminal_lines

        terminalreporter.write_sep("=", "pytest-pld summary")
        for setup in self.state.setups:
            terminalreporter.write_line(f"student {setup}")
        for line in terminal_lines(self.state.rows, self.state.options.root):
            terminalreporter.write_line(line)
        for place in self.state.written:
            terminalreporter.write_line(f"markdown report: {place}")

    def pytest_unconfigure(self) -> None:
        self._undo_notices()
        self.state.close()
