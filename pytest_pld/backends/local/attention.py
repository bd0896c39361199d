"""The packed-prefix attention of the `local:` backend, computed example by example.

The key-value states of the system-prompt prefix are computed once and kept read-only.
Examples are packed several at a time into one sequence after that prefix, so that the linear
layers run on a batch of tokens; each token gets its real position id. This attention function
(registered with transformers' `AttentionInterface`) then works per example: the example's
queries attend to the whole cached prefix and, under a block-causal mask, to the example's own
tokens. Nothing is copied per example (no `deepcopy`, no `torch.cat` of the prefix into a
growing cache, no `repeat_kv` expansion of the prefix for grouped-query attention).

Why per example rather than one call over the packed sequence: an attention call over the
whole pack gives a token results that depend, in the last bits, on how many other tokens and
masked keys share the call (measured on torch 2.13's CPU flash kernel: a query's output and
log-sum-exp change with the number of other queries against a 4,900-token prefix, and with
masked keys before or after the example's own). Calls whose shapes and inputs depend on the
example alone make its scores independent of its neighbours, bit for bit.

On CPU the attention over the prefix and over the example's own tokens are two flash-attention
calls merged by their log-sum-exp; elsewhere one `scaled_dot_product_attention` call over the
prefix and the example's tokens.
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

from dataclasses import dataclass
from typing import Any

import torch

ATTN_IMPLEMENTATION = "pld_prefix_sdpa"

#: The CPU flash-attention kernel that also returns the log-sum-exp (None where torch lacks it).
flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, kv_heads, L, head_dim)


@dataclass
class Span:
    """One example's tokens in a packed sequence, and what they may attend to."""

    start: int
    end: int
    prefix: KV  # the cached prefix this example follows
    mask: torch.Tensor  # from `span_mask`


def span_mask(allowed: torch.Tensor, prefix: KV, *, split: bool, groups: int) -> torch.Tensor:
    """The attention mask of one example from `allowed` (n, n), which of its own tokens each
    token sees: for the split CPU path an additive mask over its own tokens with a row per
    query head of a key/value group (1, 1, groups*n, n); else a boolean mask over the prefix
    and its own tokens (1, 1, n, L+n)."""
    kp = prefix[0][0]
    if split:
        additive = torch.zeros(allowed.shape, dtype=kp.dtype, device=kp.device)
        additive.masked_fill_(~allowed, float("-inf"))
        return additive.repeat(groups, 1)[None, None]
    see_prefix = torch.ones(allowed.shape[0], kp.shape[2], dtype=torch.bool, device=kp.device)
    return torch.cat([see_prefix, allowed], dim=1)[None, None]


@dataclass
class Packed:
    """What the attention function needs for one packed forward pass."""

    spans: list[Span]
    split: bool  # two flash calls merged by log-sum-exp (CPU), else one sdpa call


def _flash_split(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    """Attention of one example's queries (1, heads, n, d) over the prefix and its own keys."""
    assert flash_cpu is not None
    _, heads, n, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    # Grouped-query attention without repeat_kv: the `groups` query heads that share a
    # key/value head become extra query rows. Every token sees the whole prefix, so that part
    # needs no mask; the own part needs the block-causal mask. The two partial softmaxes are
    # merged by their log-sum-exp.
    qf = query.reshape(1, kv_heads, groups * n, dim)
    o1, lse1 = flash_cpu(qf, prefix[0], prefix[1], scale=scaling)[:2]
    o2, lse2 = flash_cpu(qf, key.contiguous(), value.contiguous(), attn_mask=mask, scale=scaling)[
        :2
    ]
    lse = torch.logaddexp(lse1, lse2)
    out = o1.float() * (lse1 - lse).exp().unsqueeze(-1)
    out += o2.float() * (lse2 - lse).exp().unsqueeze(-1)
    return out.to(query.dtype).view(1, kv_heads, groups, n, dim).reshape(1, heads, n, dim)


def _sdpa_whole(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    scaling: float | None,
) -> torch.Tensor:
    kp, vp = prefix
    return torch.nn.functional.scaled_dot_product_attention(
        query,
        torch.cat([kp, key], dim=2),
        torch.cat([vp, value], dim=2),
        attn_mask=mask,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packed: Packed | None = kwargs.pop("pld_packed", None)
    if packed is None:  # ordinary forward passes (the prefix itself, generate): plain sdpa
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    layer: int = module.layer_idx  # type: ignore[assignment]
    attend = _flash_split if packed.split and flash_cpu is not None else _sdpa_whole
    batch, heads, q_len, dim = query.shape
    out = query.new_empty(batch, q_len, heads, dim)
    for span in packed.spans:
        s, e = span.start, span.end
        part = attend(
            query[:, :, s:e],
            key[:, :, s:e],
            value[:, :, s:e],
            span.prefix[layer],
            span.mask,
            scaling,
        )
        out[:, s:e] = part.transpose(1, 2)
    # padding tokens after the last example (`scoring.score_packed`) attend to nothing
    out[:, packed.spans[-1].end :] = 0
    return out, None


def register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
