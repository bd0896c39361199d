"""Prompt-Level Distillation, phases 1-3: `pld teach` (teacher traces) and `pld distill`
(cluster, synthesise, closed loop, proposal).

Modules: teach (phase 1), traces (the JSON Lines file), answers (asking a teacher for one rule
and checking it), embed and rule_clusters (phase 2a), synthesize (2b: several candidates per
cluster), generalise (the generality test), refine (phase 3, the closed loop; student: the
scoring, raw or calibrated), wording (the paraphrase check), budget (the token budget), finish
(final choice on dev's held-back fold, conditions, the proposed set's calibration), held_back
(its numbers, raw and calibrated), propose (the diff, ids, saving), settings (what a run is
told), pipeline (distill end to end, phase by phase), bookkeeping (notes, provenance), guard
(split discipline), cost (accounting), prompts.
Importing this package imports no model library.
"""

from __future__ import annotations

#: the generality test's defaults (`generalise`), here so that `pld --help` stays cheap
DEFAULT_MAX_DF = 0.05
DEFAULT_LIFT = 5.0
#: what `--select-on` judges candidate sets by (`student`), here for the same reason
CALIBRATED, RAW = "calibrated", "raw"
SELECT_ON = (CALIBRATED, RAW)
