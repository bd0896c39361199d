"""Loading the local backend's torch model: quietly, with the packed-prefix attention where the
model takes it, and what the local backend shows while transformers loads weights."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def load_causal_lm(
    folder: Path, *, dtype: torch.dtype, device: torch.device, attention: str
) -> tuple[PreTrainedModel, bool]:
    """The transformers model in `folder`, on `device` in eval mode, with the attention
    implementation `attention` (registered beforehand), or the model's own where it has no
    attention interface; and whether it got `attention`."""
    from transformers import AutoModelForCausalLM

    with quiet_progress_unless_terminal():
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=dtype, attn_implementation=attention
            )
            custom_attention = True
        except (ValueError, KeyError, TypeError):  # no attention interface in this model
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
            custom_attention = False
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, custom_attention


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
