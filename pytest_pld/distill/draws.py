"""Teacher draws (`pld teach --samples K`): which examples, and each draw's temperature and
seed. Draw 0 is the greedy answer; draws 1..K-1 are sampled with a seed derived from (the run's
seed, the example id, the draw), so a resumed or repeated run asks for exactly the same draws.
"""

from __future__ import annotations

import hashlib

from ..datasets import Example, split_fraction
from ..errors import PldError

#: the temperature of sampled draws (1..K-1) when none is given
DEFAULT_TEMPERATURE = 0.7
DEFAULT_SEED = 0


def draw_seed(seed: int, example_id: str, draw: int) -> int:
    """The sampling seed of one draw: a stable function of the run's seed, the example and the
    draw (sha256, not hash(): the same on every machine and Python), below 2**31 because some
    servers take only 32-bit seeds."""
    digest = hashlib.sha256(f"pld-draw\0{seed}\0{example_id}\0{draw}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _sample_order(example: Example) -> float:
    # the order `Suite.load_examples(limit=)` samples in, so a --per-label sample keeps the
    # examples an earlier --limit run taught (per label, a prefix of the same order)
    return split_fraction("sample:" + example.id)


def select_examples(
    examples: list[Example], *, limit: int | None, per_label: int | None
) -> list[Example]:
    """With `per_label`, up to that many examples of each gold label (the first ones in the
    --limit sampling order); with `limit` as well, at most `limit` of those in total, taken
    from the labels in turn, so a rare label keeps its share instead of being crowded out.
    Without `per_label` this is --limit's own sample. File order is kept."""
    if per_label is None:
        return examples  # `load_examples(limit=)` already sampled
    by_label: dict[str, list[Example]] = {}
    for example in sorted(examples, key=_sample_order):
        by_label.setdefault(example.label, []).append(example)
    queues = [chosen[:per_label] for chosen in by_label.values()]
    picked: list[Example] = []
    depth = 0
    while any(depth < len(q) for q in queues) and (limit is None or len(picked) < limit):
        for queue in queues:
            if depth < len(queue) and (limit is None or len(picked) < limit):
                picked.append(queue[depth])
        depth += 1
    keep = {e.id for e in picked}
    return [e for e in examples if e.id in keep]


def check_draw_options(
    limit: int | None, per_label: int | None, samples: int, temperature: float, seed: int
) -> None:
    for flag, value in (("--limit", limit), ("--per-label", per_label), ("--samples", samples)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise PldError(f"{flag} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PldError(f"--seed must be an integer >= 0, got {seed!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise PldError(f"--temperature must be a number, got {temperature!r}")
    if samples > 1 and not 0 < temperature <= 2:
        raise PldError(
            f"--temperature must be in (0, 2] for sampled draws, got {temperature}",
            hint="draw 0 is always the greedy answer; draws 1.. are sampled, and at "
            "temperature 0 they would all repeat it (0.7 is the default)",
        )


def draw_sampling(
    temperature: float, seed: int, example_id: str, draw: int
) -> tuple[float | None, int | None]:
    """(temperature, seed) of one draw of a run at `temperature` with base `seed`: (None,
    None) for the greedy draw 0."""
    if draw == 0:
        return None, None
    return temperature, draw_seed(seed, example_id, draw)
