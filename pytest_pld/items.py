"""pytest nodes for suites: one File per selected suite, one Item per gate.

Each item reads the suite's run record from the session state (`session.State`), which
evaluates the suite once, and turns a gate's verdict into a pass or a readable failure.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from . import project
from .errors import PldError, did_you_mean
from .report import gate_summary
from .session import Options, State, get_state
from .suite import Bound, RegressionGate, Suite


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
        if _has_calibration(suite):
            yield CalibrationItem.from_parent(self, name="calibration", suite=suite)
        for bound in suite.gates:
            yield BoundItem.from_parent(self, name=bound.label, suite=suite, bound=bound)
        if regression is not None:
            yield RegressionItem.from_parent(
                self, name=regression.label, suite=suite, gate=regression, baseline=baseline
            )

    def _load(self, o: Options) -> tuple[Suite, RegressionGate | None, Path | None]:
        from .backends import parse_model_name
        from .project import resolve_inside
        from .suite import load_suite

        suite = load_suite(self.path, o.root, data_root=o.data_root)
        split = o.split_for(suite)
        if split not in suite.splits:
            raise PldError(
                f"--pld-split={split}: the suite has no such split"
                f"{did_you_mean(split, suite.splits)}",
                path=self.path,
                key="splits",
                hint=f"its splits: {', '.join(suite.splits)}",
            )
        try:  # an unknown provider fails here, before any item runs
            parse_model_name(o.model_for(suite))
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

    def runtest(self) -> None:
        """The item's check. One that stops before it reports its numbers (the data did not
        load, a template is broken) still reports a row, so the summary table lists every item
        pytest ran, with pytest's outcome."""
        try:
            self.check()
        except BaseException as exc:
            if not any(key == gate_summary.P + "suite" for key, _ in self.user_properties):
                self.user_properties.extend(self._stopped_properties(exc))
            raise

    def check(self) -> None:
        raise NotImplementedError

    def _stopped_properties(self, exc: BaseException) -> list[tuple[str, object]]:
        """The row of an item stopped by `exc`: a skip keeps no error; anything else is the
        error's first line. The instruction set is named when it loads, so the run line does
        not say "instructions -" when it is the data that failed."""
        try:
            iset = self.suite.load_instructions()
            instructions = f"{iset.name} v{iset.version}"
        except PldError:
            instructions = ""
        if isinstance(exc, pytest.skip.Exception):
            error = ""
        elif isinstance(exc, (GateFailed, PldError)):
            error = str(exc)
        else:  # not a user error: its type is what a bug report needs first
            error = f"{type(exc).__name__}: {exc}"
        return gate_summary.error_properties(self.suite.name, self.name, error, instructions)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, (GateFailed, PldError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def record(self) -> Any:
        """The suite's run record; a failed run is reported on this item and re-raised. A
        shard's partial record skips the gate: metrics exist only for the merged whole."""
        try:
            record = self.state.record_for(self.suite)
        except PldError as exc:
            self.user_properties.extend(
                gate_summary.error_properties(self.suite.name, self.name, str(exc))
            )
            raise GateFailed(
                f"{self.suite.name}: the suite could not be evaluated\n{exc}"
            ) from None
        except Exception as exc:
            # not a user error: keep the traceback, it is what a bug report needs
            self.user_properties.extend(
                gate_summary.error_properties(
                    self.suite.name, self.name, f"{type(exc).__name__}: {exc}"
                )
            )
            raise
        if record.shard is not None:
            from .shards import describe

            pytest.skip(
                f"{describe(record)}; partial run record {project.shown(record.path, self.state.options.root)}"
                " - gates run on the whole: pld merge the N records, then pytest "
                f"--pld-suite={self.suite.name} --pld-record=MERGED.json"
            )
        return record

    def fail_with(self, message: str, details: Sequence[str], record: Any) -> None:
        o = self.state.options
        lines = [message, *(f"  {d}" for d in details)]
        if record is not None:
            path = project.shown(record.path, o.root)
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

    def check(self) -> None:
        from .runner import prepare

        o = self.state.options
        suite = self.suite
        prepared = prepare(suite, split=o.split_for(suite), limit=o.limit)
        budget = suite.max_prompt_tokens
        most: float | None = None
        if budget is not None:
            count = self.state.backends.get(o.model_for(suite)).token_counter()
            system = count(prepared.system_prompt)
            counts = [system + count(u) for u in prepared.users]
            most = float(max(counts))
        self.user_properties.extend(
            gate_summary.render_properties(
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
                        f"{project.shown(str(suite.path), o.root)}"
                    ),
                    f"see the prompt: pld render {suite.name} --example {worst}",
                ],
                None,
            )


class SnapshotItem(SuiteItem):
    """The rendered system prompt equals its committed snapshot (`pld snapshot`), so a rule,
    template or default-template change cannot alter what the model sees unreviewed."""

    def check(self) -> None:
        from .snapshot import check_snapshot

        ok, message = check_snapshot(self.suite)
        where = project.shown(str(self.suite.snapshot_path()), self.state.options.root)
        self.user_properties.extend(
            gate_summary.snapshot_properties(self.suite.name, self.name, where)
        )
        if not ok:
            raise GateFailed(f"{self.suite.name}: {message}")


def _has_calibration(suite: Suite) -> bool:
    """Whether the suite's instruction set has a calibration: section. An instruction file
    that does not load gets no calibration item; the render item and every gate report it."""
    try:
        return suite.load_instructions().calibration is not None
    except PldError:
        return False


class CalibrationItem(SuiteItem):
    """The instruction set's calibration is fresh for this run: fitted for this student, this
    rendered system prompt and this backend's scores, with the suite's labels. Collected only
    for a set with a calibration; skipped under --pld-no-calibration, where nothing applies it.

    The run refuses a stale calibration too (every metric gate then fails with the same
    error); this item names the problem once, without evaluating anything."""

    def check(self) -> None:
        from .calibration import refit_command, suite_problems

        o = self.state.options
        if not o.apply_calibration:
            pytest.skip(
                "calibration switched off (--pld-no-calibration): the gates judge the raw "
                "student, so there is no calibration to check"
            )
        suite = self.suite
        iset = suite.load_instructions()
        cal = iset.calibration
        assert cal is not None  # collected only for a set with one
        model = o.model_for(suite)
        self.user_properties.extend(
            gate_summary.calibration_item_properties(suite.name, self.name, cal.describe())
        )
        problems = suite_problems(
            cal,
            labels=suite.labels,
            student=model,
            system_prompt=suite.system_prompt(iset),
            suite=suite.name,
            backend=self.state.backends.get(model).identity(),
            name_refit=False,  # said once, below
        )
        if problems:
            raise GateFailed(
                "\n".join(
                    [
                        f"{suite.name}: the calibration of {suite.instructions} cannot be applied",
                        *(f"  {p.format()}" for p in problems),
                        f"  refit it and commit it with the rules: {refit_command(suite.name)}",
                        "  or gate the raw student: --pld-no-calibration",
                    ]
                )
            )


class BoundItem(SuiteItem):
    """One threshold gate, e.g. macro_f1 >= 0.6."""

    def __init__(self, *, bound: Bound, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound = bound

    def line(self) -> int | None:
        return self.bound.line

    def check(self) -> None:
        from .gates import evaluate_bound, family_of
        from .verdicts import is_per_class

        record = self.record()
        family = None
        if is_per_class(self.bound):
            family = family_of(self.suite.gates, record, self.suite.family)[self.bound.label]
        result = evaluate_bound(self.bound, record, family=family)
        self.user_properties.extend(gate_summary.gate_properties(self.suite.name, result, record))
        if not result.passed:
            where = project.shown(str(self.suite.path), self.state.options.root)
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

    def check(self) -> None:
        from .gates import evaluate_regression, write_baseline

        o = self.state.options
        record = self.record()
        shown = project.shown(str(self.baseline), o.root)
        if o.update_baseline:
            write_baseline(record, self.baseline)
            self.user_properties.extend(
                gate_summary.baseline_properties(self.suite.name, self.name, record, shown)
            )
            return
        result = evaluate_regression(
            self.gate,
            record,
            self.baseline,
            shown_path=shown,
            create_command=o.command(self.suite, "--pld-update-baseline", *self._baseline_option()),
            power=o.power_for(self.gate),
        )
        self.user_properties.extend(gate_summary.gate_properties(self.suite.name, result, record))
        if not result.passed:
            self.fail_with(result.message, result.details, record)

    def _baseline_option(self) -> Sequence[str]:
        o = self.state.options
        return [f"--pld-baseline={project.shown(str(o.baseline), o.root)}"] if o.baseline else []
