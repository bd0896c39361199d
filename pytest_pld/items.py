"""pytest nodes for suites: one File per selected suite, one Item per gate.

The suite is evaluated once per session, lazily, by the first gate item that needs it; the
other items read the same run record. Under pytest-xdist the workers agree through a file
lock so that only one of them evaluates: the others wait and then load its record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import report
from .errors import PldError
from .suite import Bound, RegressionGate, Suite

# --- options ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The --pld-* options and ini keys of one session, resolved and validated."""

    root: Path
    suites_dir: str
    suite_paths: tuple[Path, ...]
    model: str | None  # --pld-model, else the ini default; None: each suite's student
    limit: int | None
    split: str | None
    cache_mode: str
    results_dir: Path
    baseline: Path | None
    update_baseline: bool
    report: Path | None

    def model_for(self, suite: Suite) -> str:
        return self.model or suite.student

    def split_for(self, suite: Suite) -> str:
        return self.split or suite.gate_split

    def command(self, suite: Suite, *extra: str) -> str:
        """The pytest command that reproduces this run for one suite."""
        parts = ["pytest", f"--pld-suite={suite.name}"]
        if self.limit is not None:
            parts.append(f"--pld-limit={self.limit}")
        if self.split is not None:
            parts.append(f"--pld-split={self.split}")
        if self.model is not None and self.model != suite.student:
            parts.append(f"--pld-model={self.model}")
        return shlex.join([*parts, *extra])

    def pld_run_command(self, suite: Suite) -> str:
        parts = ["pld", "run", suite.name, "--split", self.split_for(suite)]
        if self.limit is not None:
            parts += ["--limit", str(self.limit)]
        if self.model is not None:
            parts += ["--model", self.model]
        return shlex.join(parts)


def positive_int(text: str) -> int:
    """argparse type for --pld-limit: 0 or a negative number is a usage error, not 'all'."""
    import argparse

    from .cli import positive_int as parse

    try:
        return parse(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (leave --pld-limit out to run every example)"
        ) from None


def make_options(config: pytest.Config) -> Options:
    """Read and check the options; every problem is a pytest.UsageError saying what to do."""
    from .suite import resolve_suite_names

    root = config.rootpath
    spec = str(config.getoption("pld_suite"))
    suites_dir = str(config.getini("pld_suites_dir") or "suites")
    try:
        paths = resolve_suite_names(root, spec, suites_dir)
    except PldError as exc:
        raise pytest.UsageError(f"--pld-suite={spec}: {exc}") from None
    invocation = config.invocation_params.dir
    cli_results, ini_results = config.getoption("pld_results"), config.getini("pld_results")
    # a command-line path is relative to where pytest was started; an ini path to the root
    results_dir = (
        invocation / str(cli_results) if cli_results else root / str(ini_results or ".pld/runs")
    ).resolve()
    check_writable(
        results_dir,
        "--pld-results"
        if cli_results
        else "ini key pld_results"
        if ini_results
        else "the results folder",
    )
    baseline = config.getoption("pld_baseline")
    baseline_path = (invocation / str(baseline)).resolve() if baseline else None
    report_path = config.getoption("pld_report")
    no_cache = bool(config.getoption("pld_no_cache"))
    return Options(
        root=root,
        suites_dir=suites_dir,
        suite_paths=tuple(p.resolve() for p in paths),
        model=config.getoption("pld_model") or config.getini("pld_default_model") or None,
        limit=config.getoption("pld_limit"),
        split=config.getoption("pld_split"),
        cache_mode="off" if no_cache else "use",
        results_dir=results_dir,
        baseline=baseline_path,
        update_baseline=bool(config.getoption("pld_update_baseline")),
        report=(invocation / str(report_path)).resolve() if report_path else None,
    )


def check_writable(folder: Path, option: str) -> None:
    """Fail before any model runs, not after an hour of evaluation with nowhere to write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".pld-write-test-{os.getpid()}"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise pytest.UsageError(
            f"{option}: cannot write run records to {folder}: {exc.strerror or exc}\n"
            f"  hint: pass --pld-results DIR with a writable folder (or fix the permissions)"
        ) from None


# --- session state ------------------------------------------------------------------------------


@dataclass
class State:
    """Run state of one session, kept in config.stash."""

    options: Options
    worker_uid: str | None  # the xdist test run id on a worker, else None
    outcomes: dict[str, Any] = field(default_factory=dict)  # suite name -> record or PldError
    backends: dict[str, Any] = field(default_factory=dict)  # model name -> LazyBackend
    rows: list[report.Row] = field(default_factory=list)  # filled from test reports
    written: list[str] = field(default_factory=list)  # where the Markdown report went

    def backend(self, model: str) -> Any:
        from .runner import LazyBackend

        if model not in self.backends:
            self.backends[model] = LazyBackend(model)
        return self.backends[model]

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends.clear()

    def record_for(self, suite: Suite) -> Any:
        """The suite's run record, evaluating it on first use; a failed run fails every gate
        with the same error instead of being retried per item."""
        outcome = self.outcomes.get(suite.name)
        if outcome is None:
            try:
                outcome = self._evaluate_once(suite)
            except Exception as exc:  # noqa: BLE001 - re-raised below, for every gate
                outcome = exc
            self.outcomes[suite.name] = outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_key(self, suite: Suite) -> str:
        o = self.options
        blob = json.dumps(
            {
                "suite": str(suite.path),
                "split": o.split_for(suite),
                "limit": o.limit,
                "model": o.model_for(suite),
                "cache": o.cache_mode,
                "results": str(o.results_dir),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def _evaluate_once(self, suite: Suite) -> Any:
        if self.worker_uid is None:
            return self._evaluate(suite)
        from .runner import load_record
        from .yamlio import atomic_write_text

        folder = self.options.results_dir / ".locks"
        stem = f"{suite.name}-{self.run_key(suite)}"
        marker = folder / f"{stem}.json"
        with file_lock(folder / f"{stem}.lock"):
            done = _read_marker(marker)
            if done.get("testrunuid") == self.worker_uid:
                if "error" in done:
                    raise PldError(str(done["error"]))
                return load_record(Path(done["record"]))
            try:
                record = self._evaluate(suite)
            except Exception as exc:
                # the waiting workers fail with this message instead of evaluating again
                text = str(exc) if isinstance(exc, PldError) else f"{type(exc).__name__}: {exc}"
                atomic_write_text(
                    marker, json.dumps({"testrunuid": self.worker_uid, "error": text})
                )
                raise
            atomic_write_text(
                marker, json.dumps({"testrunuid": self.worker_uid, "record": record.path})
            )
            return record

    def _evaluate(self, suite: Suite) -> Any:
        from .runner import run_suite

        o = self.options
        model = o.model_for(suite)
        return run_suite(
            suite,
            split=o.split_for(suite),
            limit=o.limit,
            model=model,
            cache_mode=o.cache_mode,
            results_dir=o.results_dir,
            # the overhead gate compares with a rule-free run of the same examples
            measure_without_rules=any(b.metric == "latency_overhead" for b in suite.gates),
            backend=self.backend(model),
            progress=None,
        )


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, released by the OS if the holder dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            import msvcrt
            import time

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


STATE_KEY = pytest.StashKey[State]()


def get_state(config: pytest.Config) -> State:
    return config.stash[STATE_KEY]


# --- nodes --------------------------------------------------------------------------------------


class GateFailed(Exception):
    """A gate's verdict; its text is the whole failure report (no traceback)."""


class SuiteFile(pytest.File):
    """A selected suite file; its items are the render check and one item per gate."""

    def collect(self) -> Iterator[pytest.Item]:
        state = get_state(self.config)
        from .snapshot import snapshot_enabled

        try:
            suite, regression, baseline = self._load(state.options)
            snapshot = snapshot_enabled(suite)
        except PldError as exc:
            raise self.CollectError(str(exc)) from None
        yield RenderItem.from_parent(self, name="render", suite=suite)
        if snapshot:
            yield SnapshotItem.from_parent(self, name="snapshot", suite=suite)
        for bound in suite.gates:
            yield BoundItem.from_parent(self, name=bound.label, suite=suite, bound=bound)
        if regression is not None:
            yield RegressionItem.from_parent(
                self, name=regression.label, suite=suite, gate=regression, baseline=baseline
            )

    def _load(self, o: Options) -> tuple[Suite, RegressionGate | None, Path | None]:
        from .backends import split_name
        from .project import resolve_inside
        from .suite import load_suite

        suite = load_suite(self.path, o.root)
        split = o.split_for(suite)
        if split not in suite.splits:
            raise PldError(
                f"--pld-split={split}: the suite has no such split",
                path=self.path,
                key="splits",
                hint=f"its splits: {', '.join(suite.splits)}",
            )
        try:  # an unknown provider fails here, before any item runs
            split_name(o.model_for(suite))
        except PldError as exc:
            given = "--pld-model" if o.model else "student"
            raise PldError(
                f"{given} {o.model_for(suite)!r}: {exc.message}",
                path=self.path,
                key=None if o.model else "student",
                hint=exc.hint,
            ) from None
        regression = suite.regression
        baseline: Path | None = None
        if o.baseline is not None:
            # one PATH serves one suite; with several, PATH is a folder of SUITE.json files
            several = len(o.suite_paths) > 1 or o.baseline.is_dir()
            baseline = o.baseline / f"{suite.name}.json" if several else o.baseline
            regression = regression or RegressionGate("macro_f1", str(baseline))
        elif regression is not None:
            baseline = resolve_inside(
                o.root,
                regression.baseline,
                path=self.path,
                line=regression.line,
                key="gates.regression.baseline",
            )
        if o.update_baseline and regression is None:
            raise PldError(
                "--pld-update-baseline: this suite has no regression gate to write a baseline for",
                path=self.path,
                key="gates",
                hint="add gates.regression: {metric: macro_f1, baseline: "
                f"baselines/{suite.name}.json, margin: 0.02}} or pass "
                "--pld-baseline PATH",
            )
        return suite, regression, baseline


class SuiteItem(pytest.Item):
    """Common ground of the items: the suite, failure reporting, report properties."""

    def __init__(self, *, suite: Suite, **kwargs: Any) -> None:
        # Given as a string, the id is parsed the way pytest parses the ids it stores for
        # --lf and --deselect: "regression[macro_f1]" reads as name + params, so the stored
        # id matches the item again (a child id built from the name alone would not).
        kwargs.setdefault("nodeid", f"{kwargs['parent'].nodeid}::{kwargs['name']}")
        super().__init__(**kwargs)
        self.suite = suite
        self.add_marker("pld")

    @property
    def state(self) -> State:
        return get_state(self.config)

    def line(self) -> int | None:
        return None

    def reportinfo(self) -> tuple[Path, int | None, str]:
        line = self.line()
        return self.path, (line - 1 if line else None), f"{self.suite.name}: {self.name}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (GateFailed, PldError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def record(self) -> Any:
        """The suite's run record; a failed run is reported on this item and re-raised."""
        try:
            return self.state.record_for(self.suite)
        except PldError as exc:
            self.user_properties.extend(
                report.error_properties(self.suite.name, self.name, str(exc))
            )
            raise GateFailed(
                f"{self.suite.name}: the suite could not be evaluated\n{exc}"
            ) from None
        except Exception as exc:
            # not a user error: keep the traceback, it is what a bug report needs
            self.user_properties.extend(
                report.error_properties(self.suite.name, self.name, f"{type(exc).__name__}: {exc}")
            )
            raise

    def fail_with(self, message: str, details: Sequence[str], record: Any) -> None:
        o = self.state.options
        lines = [message, *(f"  {d}" for d in details)]
        if record is not None:
            path = report.shown(record.path, o.root)
            lines += [
                (
                    f"  run: {record.suite}/{record.split}, {len(record.results)} examples, model "
                    f"{record.model}, instructions {record.instructions.get('name')} "
                    f"v{record.instructions.get('version')}"
                ),
                f"  run record: {path}",
                (
                    f"  inspect it: python -m json.tool {shlex.quote(path)}"
                    f"  (or re-run: {o.pld_run_command(self.suite)})"
                ),
            ]
        raise GateFailed("\n".join(lines))


class RenderItem(SuiteItem):
    """Renders the system prompt and every sampled user message; checks the token budget."""

    def runtest(self) -> None:
        from .runner import prepare

        o = self.state.options
        suite = self.suite
        prepared = prepare(suite, split=o.split_for(suite), limit=o.limit)
        budget = suite.max_prompt_tokens
        most: float | None = None
        if budget is not None:
            count = self.state.backend(o.model_for(suite)).token_counter()
            system = count(prepared.system_prompt)
            counts = [system + count(u) for u in prepared.users]
            most = float(max(counts))
        self.user_properties.extend(
            report.render_properties(
                suite.name,
                self.name,
                most,
                f"<= {budget}" if budget else "-",
                len(prepared.users),
                prepared.instructions,
            )
        )
        if budget is not None and most is not None and most > budget:
            worst = max(range(len(counts)), key=counts.__getitem__)
            self.fail_with(
                f"prompt tokens: {most:.0f} (system prompt {system} + user message of "
                f"example {prepared.examples[worst].id}) exceed max_prompt_tokens {budget}",
                [
                    f"counted with the tokenizer of {o.model_for(suite)}",
                    (
                        f"shorten the rules in {suite.instructions} or raise max_prompt_tokens in "
                        f"{report.shown(str(suite.path), o.root)}"
                    ),
                    f"see the prompt: pld render {suite.name} --example {worst}",
                ],
                None,
            )


class SnapshotItem(SuiteItem):
    """The rendered system prompt equals its committed snapshot (`pld snapshot`), so a rule,
    template or default-template change cannot alter what the model sees unreviewed."""

    def runtest(self) -> None:
        from .snapshot import check_snapshot

        ok, message = check_snapshot(self.suite)
        if not ok:
            raise GateFailed(f"{self.suite.name}: {message}")


class BoundItem(SuiteItem):
    """One threshold gate, e.g. macro_f1 >= 0.6."""

    def __init__(self, *, bound: Bound, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound = bound

    def line(self) -> int | None:
        return self.bound.line

    def runtest(self) -> None:
        from .gates import evaluate_bound

        record = self.record()
        result = evaluate_bound(self.bound, record)
        self.user_properties.extend(report.gate_properties(self.suite.name, result, record))
        if not result.passed:
            where = report.shown(str(self.suite.path), self.state.options.root)
            self.fail_with(
                f"{self.suite.name}: {result.message}",
                [
                    *result.details,
                    (
                        f"improve {self.suite.instructions}, or change the bound in {where}"
                        f"{':' + str(self.bound.line) if self.bound.line else ''}"
                    ),
                ],
                record,
            )


class RegressionItem(SuiteItem):
    """The run against the committed baseline; with --pld-update-baseline it writes it."""

    def __init__(self, *, gate: RegressionGate, baseline: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.baseline = baseline

    def line(self) -> int | None:
        return self.gate.line

    def runtest(self) -> None:
        from .gates import evaluate_regression, write_baseline

        o = self.state.options
        record = self.record()
        shown = report.shown(str(self.baseline), o.root)
        if o.update_baseline:
            write_baseline(record, self.baseline)
            self.user_properties.extend(
                report.baseline_properties(self.suite.name, self.name, record, shown)
            )
            return
        result = evaluate_regression(
            self.gate,
            record,
            self.baseline,
            shown_path=shown,
            create_command=o.command(self.suite, "--pld-update-baseline", *self._baseline_option()),
        )
        self.user_properties.extend(report.gate_properties(self.suite.name, result, record))
        if not result.passed:
            self.fail_with(result.message, result.details, record)

    def _baseline_option(self) -> Sequence[str]:
        o = self.state.options
        return [f"--pld-baseline={report.shown(str(o.baseline), o.root)}"] if o.baseline else []
