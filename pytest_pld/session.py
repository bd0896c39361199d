"""The state of a pytest session with suites selected: its options and its run records.

The suite is evaluated once per session, lazily, by the first gate item that needs it; the
other items read the same run record. Under pytest-xdist the workers agree through a file
lock so that only one of them evaluates: the others wait and then load its record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from .errors import PldError
from .report.gate_summary import Row
from .roles import ModelRoles, RoleFlags, resolve_roles
from .runner import BackendPool, LazyBackend
from .shards import Shard
from .suite import RegressionGate, Suite

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
    data_root: Path | None = None  # --pld-data-root, else $PLD_DATA_ROOT
    shard: Shard | None = None
    record: Path | None = None  # gate on this record (or folder of SUITE.json) instead
    roles: ModelRoles | None = None
    apply_calibration: bool = True  # False: --pld-no-calibration, the raw student

    def student_backend(self, name: str) -> LazyBackend:
        """A lazily created student with the student role's endpoint and options."""
        if self.roles is None:
            return LazyBackend(name)
        return LazyBackend(name, self.roles["student"].factory(name))

    def record_path(self, suite: Suite) -> Path | None:
        if self.record is None:
            return None
        several = len(self.suite_paths) > 1 or self.record.is_dir()
        return self.record / f"{suite.name}.json" if several else self.record

    power: str | None = None  # --pld-power
    power_ini: str | None = None  # the ini key pld_power

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
        if self.data_root is not None:
            parts.append(f"--pld-data-root={self.data_root}")
        if self.shard is not None:
            parts.append(f"--pld-shard={self.shard}")
        if not self.apply_calibration:
            parts.append("--pld-no-calibration")
        return shlex.join([*parts, *extra])

    def power_for(self, gate: RegressionGate) -> str:
        """warn | fail for an underpowered regression gate (`verdicts.resolve_power`)."""
        from .verdicts import resolve_power

        return resolve_power(self.power, gate.power, self.power_ini)

    def pld_run_command(self, suite: Suite) -> str:
        parts = ["pld", "run", suite.name, "--split", self.split_for(suite)]
        if self.limit is not None:
            parts += ["--limit", str(self.limit)]
        if self.model is not None:
            parts += ["--model", self.model]
        if self.data_root is not None:
            parts += ["--data-root", str(self.data_root)]
        if not self.apply_calibration:
            parts.append("--no-calibration")
        return shlex.join(parts)


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
    shard = config.getoption("pld_shard")
    record = config.getoption("pld_record")
    update = bool(config.getoption("pld_update_baseline"))
    if shard is not None and record:
        raise pytest.UsageError(
            "--pld-shard evaluates a part of a run and --pld-record gates on a whole one: "
            "give one of them"
        )
    if shard is not None and update:
        raise pytest.UsageError(
            "--pld-update-baseline needs the whole run: merge the shards (pld merge) and run "
            "--pld-record=MERGED.json --pld-update-baseline"
        )
    try:
        roles = resolve_roles(
            root,
            {
                "student": RoleFlags(
                    base_url=config.getoption("pld_student_base_url"),
                    api_key=config.getoption("pld_student_api_key"),
                    options=tuple(config.getoption("pld_student_option") or ()),
                )
            },
            flag_prefix="--pld-",
        )
    except PldError as exc:
        raise pytest.UsageError(str(exc)) from None
    power_ini = str(config.getini("pld_power") or "").strip() or None
    if power_ini not in (None, "warn", "fail"):
        raise pytest.UsageError(
            f"ini key pld_power = {power_ini!r}: expected warn or fail\n"
            "  hint: warn reports an underpowered regression gate, fail fails it"
        )
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
        update_baseline=update,
        report=(invocation / str(report_path)).resolve() if report_path else None,
        data_root=_data_root(config, invocation),
        shard=shard,
        record=(invocation / str(record)).resolve() if record else None,
        roles=roles,
        apply_calibration=not config.getoption("pld_no_calibration"),
        power=config.getoption("pld_power"),
        power_ini=power_ini,
    )


def _data_root(config: pytest.Config, invocation: Path) -> Path | None:
    from .project import data_root

    given = config.getoption("pld_data_root", None)
    try:
        return data_root(invocation / str(given) if given else None, option="--pld-data-root")
    except PldError as exc:
        raise pytest.UsageError(str(exc)) from None


def header_lines(o: Options) -> list[str]:
    """pytest's header: a shard, a record gated on, a student endpoint that is not the
    default (keys masked), so a CI log says what was evaluated where."""
    out = []
    if o.shard is not None:
        out.append(f"pld: shard {o.shard} (gates run on the merged record)")
    if o.record is not None:
        out.append(f"pld: gating on the run record {o.record} (no model is called)")
    if not o.apply_calibration:
        out.append(
            "pld: calibration switched off (--pld-no-calibration): the gates judge the raw "
            "student, not the instruction sets' calibrated answers"
        )
    student = o.roles["student"] if o.roles else None
    if student is not None and student.base_url is not None:
        key = f", key from {student.api_key.source}" if student.api_key else ", no key"
        out.append(
            f"pld: student endpoint {student.base_url.value} ({student.base_url.source}{key})"
        )
    if student is not None:
        out.extend(f"pld: note: {n}" for n in student.notes)
    return out


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
    backends: BackendPool = field(init=False)  # students, with the student role's endpoint
    rows: list[Row] = field(default_factory=list)  # filled from test reports
    written: list[str] = field(default_factory=list)  # where the Markdown report went
    #: how each student this process loaded computed (dtype, threads, packing), for the summary
    setups: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.backends = BackendPool(self.options.student_backend)

    def close(self) -> None:
        self.setups += self.backends.setups()
        self.backends.close()

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
                "shard": str(o.shard),
                "record": str(o.record_path(suite)),
                "calibration": o.apply_calibration,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def _evaluate_once(self, suite: Suite) -> Any:
        if self.worker_uid is None:
            return self._evaluate(suite)
        from .record import load_record
        from .yamlio import atomic_write_text

        folder = self.options.results_dir / ".locks"
        stem = f"{suite.name}-{self.run_key(suite)}"
        marker = folder / f"{stem}.json"
        # released by the OS if the holder dies, so a crashed worker cannot block the others
        with FileLock(folder / f"{stem}.lock"):
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
        given = o.record_path(suite)
        if given is not None:
            from .shard_merge import check_gated_record

            return check_gated_record(
                given,
                suite,
                split=o.split_for(suite),
                limit=o.limit,
                model=model,
                apply_calibration=o.apply_calibration,
            )
        return run_suite(
            suite,
            split=o.split_for(suite),
            limit=o.limit,
            model=model,
            cache_mode=o.cache_mode,
            results_dir=o.results_dir,
            # the overhead gate compares with a rule-free run of the same examples
            measure_without_rules=any(b.metric == "latency_overhead" for b in suite.gates),
            backend=self.backends.get(model),
            progress=None,
            shard=o.shard,
            apply_calibration=o.apply_calibration,
        )


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


STATE_KEY = pytest.StashKey[State]()


def get_state(config: pytest.Config) -> State:
    return config.stash[STATE_KEY]
