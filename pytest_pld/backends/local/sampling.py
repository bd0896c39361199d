"""Seeded temperature sampling for `LocalBackend.generate`.

transformers' `generate` (5.24) samples with `torch.multinomial(probs)` on torch's *global*
random generator and takes no generator or seed argument. Seeding the global generator inside
each call would reset the caller's random state and, with two threads generating at once, let
one call's draws depend on the other's. Instead the sampling happens in a logits processor that
owns a `torch.Generator` seeded for this one call: it draws the next token from
softmax(logits / temperature) and leaves only that token finite, so transformers' greedy step
(`do_sample=False`) picks exactly the drawn token. The draw depends on nothing but the seed,
the prompt and the model: a repeated call with the same seed gives the same text.

This is pure temperature sampling (no top-k, no top-p), what an OpenAI-compatible server does
with `temperature` alone, so a draw means the same on both backends.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ...errors import PldError


def check_sampling(temperature: float | None, seed: int | None) -> None:
    """A negative or non-finite temperature, or a seed that is not an integer, is a user error."""
    if temperature is not None and not (
        isinstance(temperature, (int, float))
        and not isinstance(temperature, bool)
        and 0 <= temperature < float("inf")
    ):
        raise PldError(f"temperature must be a number >= 0, got {temperature!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise PldError(f"seed must be an integer >= 0, got {seed!r}")


def is_sampled(temperature: float | None) -> bool:
    """Temperature 0 (or none) is greedy decoding, as before sampling existed."""
    return temperature is not None and temperature > 0


class SeededSampler(LogitsProcessor):
    """Draws each next token with its own generator; see the module docstring."""

    def __init__(self, temperature: float, seed: int | None) -> None:
        if not temperature > 0:
            raise ValueError("SeededSampler needs a temperature > 0")
        self.temperature = float(temperature)
        self.generator = torch.Generator(device="cpu")
        if seed is None:
            self.generator.seed()  # a fresh, unrepeatable draw
        else:
            self.generator.manual_seed(int(seed))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # float32 on the CPU: the draw must not depend on the model's dtype or device
        probs = torch.softmax(scores.detach().float().cpu() / self.temperature, dim=-1)
        chosen = torch.multinomial(probs, num_samples=1, generator=self.generator)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen.to(scores.device), 0.0)
        return out  # type: ignore[return-value]


def sampling_kwargs(temperature: float | None, seed: int | None) -> dict[str, Any]:
    """Extra `model.generate` arguments: none for greedy decoding; for sampling, the seeded
    sampler (do_sample stays False: the greedy step takes the one token it leaves finite)."""
    if not is_sampled(temperature):
        return {}
    assert temperature is not None
    return {"logits_processor": LogitsProcessorList([SeededSampler(temperature, seed)])}
