"""Label scores of the `local:` backend: log P(label's tokens | prompt), summed over the label's
tokens, for several examples per forward pass.

Multi-token labels ride along as extra branches of the packed batch: each label's tokens but
its last follow the example as a branch that sees the example and itself only, so
"NotMentioned" costs a few more tokens, not another pass.
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

import copy
from typing import Any

import torch

from .attention import Packed

KV = list[tuple[torch.Tensor, torch.Tensor]]


def model_cache(out: Any) -> Any:
    """The key-value cache of a transformers model output (named `cache` or `past_key_values`
    depending on the version)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def cache_tensors(cache: Any) -> KV:
    return [(layer.keys.contiguous(), layer.values.contiguous()) for layer in cache.layers]


@torch.inference_mode()
def extend_prefix(model: Any, kv: KV, start: int, tokens: list[int], device: torch.device) -> KV:
    """The key-value states of a prefix of `start` tokens extended by `tokens`."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    for layer, (k, v) in enumerate(kv):
        cache.update(k, v, layer)  # copies: the shared prefix tensors stay untouched
    out = model(
        torch.tensor([tokens], device=device),
        position_ids=torch.arange(start, start + len(tokens), device=device)[None],
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return cache_tensors(model_cache(out))


@torch.inference_mode()
def score_packed(
    model: Any,
    kv: KV,
    start: int,
    suffixes: list[list[int]],
    label_ids: list[list[int]],
    *,
    split_attention: bool,
    groups: int,
    dtype: torch.dtype,
    device: torch.device,
) -> list[list[float]]:
    """Label log-probabilities for several examples in one forward pass after a prefix of
    `start` tokens whose key-value states are `kv`."""
    tokens: list[int] = []
    positions: list[int] = []
    example: list[int] = []
    branch: list[int] = []
    # (example, label, token to predict, index of the position whose logits predict it)
    wanted: list[tuple[int, int, int, int]] = []
    for e, ids in enumerate(suffixes):
        base = len(tokens)
        tokens += ids
        positions += range(start, start + len(ids))
        example += [e] * len(ids)
        branch += [0] * len(ids)
        last = base + len(ids) - 1
        for k, lab in enumerate(label_ids):
            wanted.append((e, k, lab[0], last))
            # The label's tokens but its last, as a branch that sees the example and
            # itself only; position j predicts the label's token j + 1.
            b0 = len(tokens)
            tokens += lab[:-1]
            positions += range(start + len(ids), start + len(ids) + len(lab) - 1)
            example += [e] * (len(lab) - 1)
            branch += [k + 1] * (len(lab) - 1)
            for j in range(len(lab) - 1):
                wanted.append((e, k, lab[j + 1], b0 + j))
    q = len(tokens)
    pos = torch.tensor(positions, device=device)
    ex = torch.tensor(example, device=device)
    br = torch.tensor(branch, device=device)
    allowed = (
        (ex[:, None] == ex[None, :])
        & ((br[None, :] == 0) | (br[None, :] == br[:, None]))
        & (pos[None, :] <= pos[:, None])
    )
    if split_attention:
        additive = torch.zeros(allowed.shape, dtype=dtype, device=device)
        additive.masked_fill_(~allowed, float("-inf"))
        packed = Packed(kv, additive.repeat(groups, 1)[None, None], None)
    else:
        full = torch.cat([torch.ones(q, start, dtype=torch.bool, device=device), allowed], dim=1)
        packed = Packed(kv, None, full[None, None])
    keep = sorted({w[3] for w in wanted})
    row = {p: i for i, p in enumerate(keep)}
    out = model(
        torch.tensor([tokens], device=device),
        position_ids=pos[None],
        use_cache=False,
        logits_to_keep=torch.tensor(keep, device=device),
        pld_packed=packed,
    )
    logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    scores = [[0.0] * len(label_ids) for _ in suffixes]
    picked = logp[[row[w[3]] for w in wanted], [w[2] for w in wanted]].tolist()
    for (e, k, _tok, _p), value in zip(wanted, picked):
        scores[e][k] += value
    return scores


@torch.inference_mode()
def score_copy(
    model: Any, cache: Any, ids: list[int], label_ids: list[list[int]], device: torch.device
) -> tuple[list[float], int]:
    """The generic path: a copy of the prefix cache per example (and per long label).
    Returns the scores and the number of forward passes."""
    cache = copy.deepcopy(cache) if cache is not None else None
    out = model(torch.tensor([ids], device=device), cache=cache, use_cache=True, logits_to_keep=1)
    forwards = 1
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    scores = [float(first[lab[0]]) for lab in label_ids]
    cache = model_cache(out)
    multi = [k for k, lab in enumerate(label_ids) if len(lab) > 1]
    for n, k in enumerate(multi):
        lab = label_ids[k]
        branch_cache = cache if n == len(multi) - 1 else copy.deepcopy(cache)
        more = model(
            torch.tensor([lab[:-1]], device=device),
            cache=branch_cache,
            use_cache=True,
            logits_to_keep=len(lab) - 1,
        )
        forwards += 1
        logp = torch.log_softmax(more.logits[0].float(), dim=-1)
        scores[k] += float(sum(logp[j, lab[j + 1]] for j in range(len(lab) - 1)))
    return scores, forwards


def common_length(seqs: list[list[int]]) -> int:
    """How many leading tokens all sequences share, leaving at least one token of each."""
    if len(seqs) < 2:
        return 0
    limit = min(len(s) for s in seqs) - 1
    n = 0
    first = seqs[0]
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return n
