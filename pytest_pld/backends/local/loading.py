"""Quiet model loading: what the local backend shows while transformers loads weights."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_progress_unless_terminal() -> Iterator[None]:
    """transformers' "Loading weights" bar redraws with carriage returns: in a log file or a
    CI transcript it is hundreds of lines of noise. Shown on a terminal; hidden otherwise, and
    the caller's setting is restored."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled and not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
