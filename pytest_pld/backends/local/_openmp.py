"""Tame GNU OpenMP's spinning before torch loads (imported first by the modules that import
torch)."""

from __future__ import annotations

import os
import sys


def tame_openmp_spinning() -> None:
    """Set before torch loads GNU OpenMP (which reads it once, at load time).

    torch's OpenMP workers spin between parallel regions. When another process holds a core
    (a pytest-xdist worker, a served model, another job on a CI runner), a spinning worker
    holds the CPU its sibling needs, and every one of a forward pass's hundreds of parallel
    regions waits a scheduler time slice: measured here on 2 cores, 10-50x slower (a 48 ms
    example took 450-700 ms). Spinning briefly and then sleeping cost nothing measurable when
    the machine was idle and kept that example at 125 ms under load. The user's own settings
    win, and nothing changes if torch was imported before this module.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
