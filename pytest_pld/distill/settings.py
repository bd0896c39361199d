"""`DistillSettings`: what one `pld distill` run is told (the command's options, or a caller's
choices), checked once before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import PldError
from ..folds import DEFAULT_HOLDOUT
from . import SELECT_ON
from .answers import MODES
from .embed import resolve_embedder
from .generalise import DEFAULT_LIFT, DEFAULT_MAX_DF
from .rule_clusters import check_params
from .synthesize import STRATEGIES
from .wording import ACTIONS


@dataclass(frozen=True)
class DistillSettings:
    """Frozen: what `check` approved is what the run uses (and records in the proposal)."""

    traces: Path
    teacher: str | None = None  # default: see teachers.distill_teacher; "none": no teacher
    student: str | None = None  # default: the suite's student
    embedder: str = "auto"
    cluster: str = "auto"  # auto | dbscan | hdbscan | kmeans (see rule_clusters.cluster_rules)
    eps: float = 0.4
    min_samples: int = 6
    k: int | None = None
    by_label: bool = True
    synthesis: str = "auto"  # teacher | medoid | both; auto: both (teacher: none -> medoid)
    syntheses: int = 2  # teacher syntheses per cluster (each a candidate)
    rounds: int = 2  # revision rounds after the selection round
    limit_dev: int | None = 48  # dev selection-fold examples that score each candidate
    limit_holdout: int | None = 96  # held-back dev examples for the final choice and report
    holdout: float = DEFAULT_HOLDOUT  # share of dev held back (by group)
    limit_train: int | None = 32
    min_gain: float = 0.0
    confidence: float = 0.95
    strict: bool = False  # keep a rule only when its dev gain's interval excludes 0
    #: what candidate sets are judged by: calibrated (offsets refitted per set; raw where the
    #: student returns no label scores) or raw answers
    select_on: str = "calibrated"
    mode: str = "auto"
    max_candidates: int = 12  # as the command line
    specific_df: float = DEFAULT_MAX_DF  # generality test: "rare across train"
    specific_lift: float = DEFAULT_LIFT  # generality test: "frequent in the sources"
    wording: str = "drop"  # drop | flag | off: rules whose effect vanishes when reworded
    shots: int = 5  # the k-shot condition of the report
    seed: int = 0
    cache_mode: str = "use"
    progress: bool | None = None

    def check(self) -> None:
        check_params(self.cluster, eps=self.eps, min_samples=self.min_samples, k=self.k)
        resolve_embedder(self.embedder)
        if self.synthesis not in ("auto", *STRATEGIES):
            raise PldError(
                f"unknown --synthesis {self.synthesis!r}",
                hint=f"choose auto, {', '.join(STRATEGIES)}",
            )
        if self.mode not in ("auto", *MODES):
            raise PldError(f"unknown --mode {self.mode!r}", hint=f"choose auto, {', '.join(MODES)}")
        if self.rounds < 0 or self.rounds > 10:
            raise PldError(f"--rounds must be between 0 and 10, got {self.rounds}")
        if self.select_on not in SELECT_ON:
            raise PldError(
                f"unknown --select-on {self.select_on!r}", hint=f"choose {', '.join(SELECT_ON)}"
            )
        if self.wording not in ACTIONS:
            raise PldError(
                f"unknown --wording {self.wording!r}", hint=f"choose {', '.join(ACTIONS)}"
            )
        if not 0 <= self.holdout < 1:
            raise PldError(f"--holdout must be in [0, 1), got {self.holdout}")
        if not 0 < self.specific_df < 1:
            raise PldError(f"--specific-df must be in (0, 1), got {self.specific_df}")
        if self.specific_lift < 1:
            raise PldError(f"--specific-lift must be at least 1, got {self.specific_lift}")
        if self.shots < 0:
            raise PldError(f"--shots must be 0 or more, got {self.shots}")
        for name in ("limit_dev", "limit_holdout", "limit_train", "max_candidates", "syntheses"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise PldError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value}"
                )
        if not 0 <= self.min_gain < 1:
            raise PldError(f"--min-gain must be in [0, 1), got {self.min_gain}")
        if not 0.5 <= self.confidence < 1:
            raise PldError(f"--confidence must be in [0.5, 1), got {self.confidence}")
