"""Row independence: the condition under which examples may share a forward pass, and its check.

A linear layer computes each token's row of its output from that token's row of its input
alone, mathematically. In floating point it is the CPU's matrix kernel that decides, and MKL's
float32 GEMM (torch 2.13's CPU path) is not row-independent for very small row counts: a row
comes out with other bits with 2-3 rows than alone on 1 thread, and with 2-11 rows on 2
threads (the kernels for narrow matrices sum in another order, and 2 threads split some of
them differently). Measured on this project's Zen 3 (AVX2), on Qwen2.5-0.5B's own weight
shapes (and in issue 27 on a Zen 4 with AVX512-BF16): from 12 rows up to 1,000, at any
position, on 1 or 2 threads, a row's result was the same bits. Hence the row floor: every
forward pass of the `local:` backend (the decoder's token rows, the label head's rows) is
padded to at least `floor` rows, and the label head always runs in blocks of exactly `floor`
rows.

`check_rows` verifies that on this machine, on the model's own weights, before any example is
scored: for each distinct shape of the decoder's linear layers at row counts from the floor to
8x it (odd ones included: they leave remainders in the kernels' row blocks), and for the
output layer at exactly the floor, a probe row planted at the first, second, middle and last
row of a random batch must give the bits it gave at the floor on 1 thread, on 1 thread and on
the thread count the backend uses. That is about 11 GFLOP per thread count with Qwen2.5-0.5B,
most of it the 151,936-row output layer: 0.45-0.67 s on one core of this project's shared
2-core machine (the old check, 2 layers at small row counts, took a few milliseconds). The
first floor of `ROW_FLOORS` that passes is used; if none does, the backend scores one example
per forward pass (and says so).
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

#: Row floors tried in order; 16 passed on every CPU measured so far (12 was the smallest).
ROW_FLOORS = (16, 32, 64)


@dataclass(frozen=True)
class RowCheck:
    """What `check_rows` found."""

    floor: int | None  # the row floor that passed; None: examples are scored one per pass
    threads: tuple[int, ...]  # the thread counts checked
    seconds: float
    failure: str = ""  # the first mismatch at the largest floor tried, when none passed

    @property
    def pad_to(self) -> int:
        """The floor passes are padded to (the smallest candidate when none passed: padding
        still keeps a row's bits from depending on how small its pass is)."""
        return self.floor or ROW_FLOORS[0]

    def describe(self) -> str:
        on = " and ".join(str(t) for t in self.threads)
        thread_word = "thread" if self.threads == (1,) else "threads"
        if self.floor is not None:
            return f"rows independent at floor {self.floor} on {on} {thread_word}"
        return f"rows not independent on {on} {thread_word} ({self.failure})"


def decoder_row_counts(floor: int) -> list[int]:
    """Row counts the decoder's layers are checked at: the floor, a few just above it (odd
    remainders in the kernels' row blocks), and larger passes (133 rows at floor 16)."""
    return [floor, floor + 1, floor + 3, floor + 7, 2 * floor + 1, 4 * floor + 3, 8 * floor + 5]


@contextmanager
def _threads(count: int) -> Iterator[None]:
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _linear_shapes(model: Any) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """One linear layer of the decoder per distinct (weight shape, has bias)."""
    seen: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor | None]] = {}
    for module in model.get_decoder().modules():
        if isinstance(module, torch.nn.Linear):
            key = (tuple(module.weight.shape), module.bias is not None)
            seen.setdefault(key, (module.weight, module.bias))
    return list(seen.values())


def _mismatch(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rows: Sequence[int],
    threads: Sequence[int],
    gen: torch.Generator,
) -> str:
    """ "" when a probe row gives the same bits at every row count, position and thread count
    (as in the first call: the first row count, 1 thread); else where it did not."""
    width = weight.shape[1]
    probe = torch.randn(width, generator=gen).to(weight)
    reference: torch.Tensor | None = None
    for count in threads:
        with _threads(count):
            for n in rows:
                x = torch.randn(n, width, generator=gen).to(weight)
                at = sorted({0, 1, n // 2, n - 1})
                x[at] = probe
                out = torch.nn.functional.linear(x, weight, bias)
                if reference is None:
                    reference = out[0].clone()
                for i in at:
                    if not torch.equal(out[i], reference):
                        shape = "x".join(str(d) for d in weight.shape)
                        word = "thread" if count == 1 else "threads"
                        return f"a {shape} layer's row {i} of {n} on {count} {word}"
    return ""


@torch.inference_mode()
def check_rows(
    model: Any,
    head_weight: torch.Tensor,
    threads: Sequence[int],
    floors: Sequence[int] = ROW_FLOORS,
) -> RowCheck:
    """The first floor at which this machine's kernels compute rows independently of the rest
    of the call, on every thread count in `threads` (see the module docstring)."""
    t0 = time.perf_counter()
    counts = tuple(sorted(set(threads) | {1}))
    gen = torch.Generator().manual_seed(0)
    failure = ""
    for floor in floors:
        failure = ""
        for weight, bias in _linear_shapes(model):
            failure = _mismatch(weight, bias, decoder_row_counts(floor), counts, gen)
            if failure:
                break
        if not failure:
            # the head runs in blocks of exactly `floor` rows: that shape alone
            failure = _mismatch(head_weight, None, [floor], counts, gen)
        if not failure:
            return RowCheck(floor, counts, time.perf_counter() - t0)
    return RowCheck(None, counts, time.perf_counter() - t0, failure)
