"""Prompt-Level Distillation, phases 1-3: `pld teach` (teacher traces) and `pld distill`
(cluster, synthesise, closed loop, proposal).

Modules: teach (phase 1), traces (the JSON Lines file), answers (asking a teacher for one rule
and checking it), embed and cluster (phase 2a), synthesize (2b), refine (phase 3, the closed
loop), propose (the diff, ids, saving), pipeline (distill end to end), guard (split
discipline), cost (accounting), prompts, cli (the two commands).
Importing this package imports no model library.
"""

from __future__ import annotations
