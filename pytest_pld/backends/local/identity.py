"""The `local:` backend's cache identity without torch: what `LocalBackend.identity()` returns,
from the pinned weights digest alone (a few `stat` calls once the digest is cached)."""

from __future__ import annotations

from typing import Any

from ..packaged import local_identity as _packaged_identity

#: Bumped when the scores of the same model and prompt change, so that cached answers of the
#: older scoring miss. 3: every pass padded to the row floor and the head in blocks of it
#: (float32 scores change bits; they no longer depend on the thread count). 2: float32 label
#: head, ties by hash not label order, scores independent of batch, cache and label order
#: (1: the bf16 head of `packaged.SCORING`).
SCORING_VERSION = 3


def local_identity(model: str, **options: Any) -> dict[str, Any]:
    """`LocalBackend(model, **options).identity()` without importing torch or loading the
    model. Options that do not change answers (device, threads, pack_tokens, prefix_reuse) are
    ignored."""
    return {**_packaged_identity(model, **options), "scoring_version": SCORING_VERSION}
