"""The shape of a `pld review`: what the reviewer computes and the formatters print."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .diff import SetDiff
from .git import Revision

if TYPE_CHECKING:  # `pld --help` imports the review command: keep that cheap
    from ..roles import RoleConfig
    from ..stats import McNemar


@dataclass(frozen=True)
class ReviewOptions:
    suites: tuple[str, ...] = ()  # only sets used by these suites (default: all)
    split: str | None = None  # default: each suite's gate split
    limit: int | None = None
    model: str | None = None  # default: each suite's student
    run: bool = True  # compute missing run records (False: only reuse existing ones)
    tokens: bool = True  # count tokens with the student's tokenizer (False: characters)
    resamples: int = 1000
    max_flips: int = 20
    data_root: Path | None = None  # where suites' data:PATH split paths resolve
    #: the student role (endpoint and options from flags, PLD_STUDENT_* and pyproject.toml);
    #: None: each model's defaults
    student: RoleConfig | None = None


@dataclass
class MetricDelta:
    name: str
    base: float
    head: float
    delta: float
    low: float | None = None  # paired bootstrap interval of the delta, where resamplable
    high: float | None = None

    @property
    def verdict(self) -> str:
        """'better'/'worse' when the interval excludes 0, 'same' when nothing moved."""
        from ..metrics import lookup

        if self.delta == 0 and (self.low is None or self.low == self.high == 0):
            return "same"
        if self.low is None or self.high is None or self.low <= 0 <= self.high:
            return "unclear"
        up = self.low > 0
        higher_is_better = lookup(self.name)[0].higher_is_better
        return "better" if up == higher_is_better else "worse"


@dataclass
class Flip:
    id: str
    gold: str
    base: str
    head: str


@dataclass
class PairedDeltas:
    """Two records compared example by example (`reviewer.paired_deltas`)."""

    metrics: list[MetricDelta]
    right_to_wrong: list[Flip]
    wrong_to_right: list[Flip]
    examples: int  # paired by id
    mcnemar: McNemar | None  # exact test of correctness; None without paired examples
    clusters: int | None = None  # clusters the intervals resampled; None: examples
    cluster_key: str | None = None
    #: accuracy and macro-F1 of the raw students, when either side's answers are calibrated
    raw_metrics: list[MetricDelta] = field(default_factory=list)
    #: why the two sides' answers differ in kind (`record.calibration_contrast`)
    calibration_note: str | None = None


@dataclass
class SuiteReport:
    suite: str
    split: str
    limit: int | None
    model: str
    status: str  # compared | prompt unchanged | no records | error
    prompt_diff: str = ""
    prompt_size: tuple[int | None, int | None] = (None, None)
    size_unit: str = "tokens"
    examples: int = 0
    model_calls: int = 0
    metrics: list[MetricDelta] = field(default_factory=list)
    right_to_wrong: list[Flip] = field(default_factory=list)
    wrong_to_right: list[Flip] = field(default_factory=list)
    records: dict[str, str | None] = field(default_factory=dict)
    note: str | None = None
    mcnemar: McNemar | None = None
    clusters: int | None = None  # clusters the intervals resampled; None: examples
    cluster_key: str | None = None
    #: each side's answers ("calibrated (prior-shift, ...)", "raw ..."); empty: neither side
    #: has a calibration
    calibration: dict[str, str] = field(default_factory=dict)
    raw_metrics: list[MetricDelta] = field(default_factory=list)  # see PairedDeltas
    calibration_note: str | None = None


@dataclass
class SetReport:
    path: str
    status: str  # changed | added | removed | no semantic change | invalid
    diff: SetDiff | None = None
    errors: dict[str, str] = field(default_factory=dict)  # side -> what is wrong there
    suites: list[SuiteReport] = field(default_factory=list)
    note: str | None = None


@dataclass
class Review:
    base: Revision
    head: Revision
    sets: list[SetReport]
    unchanged: int  # instruction sets present at either side and identical
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "items"):  # MappingProxyType in provenance
        return dict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
