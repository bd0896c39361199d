"""The packed-prefix attention of the `local:` backend.

The key-value states of the system-prompt prefix are computed once and kept read-only.
Examples are packed several at a time into one sequence after that prefix: each token gets its
real position id, and this attention function (registered with transformers'
`AttentionInterface`) lets every token attend to the whole cached prefix plus the earlier
tokens of its own example only. So nothing is copied per example (no `deepcopy`, no `torch.cat`
of the prefix into a growing cache, no `repeat_kv` expansion of the prefix for grouped-query
attention). On CPU the attention over the prefix and over the packed tokens are two
flash-attention calls merged by their log-sum-exp; elsewhere one `scaled_dot_product_attention`
call over both.
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


@dataclass
class Packed:
    """What the attention function needs for one packed forward pass."""

    prefix: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, kv_heads, L, head_dim)
    mask_folded: torch.Tensor | None  # additive (1, 1, groups*Q, Q), for the split CPU path
    mask_full: torch.Tensor | None  # bool (1, 1, Q, L+Q), for the generic path


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
    kp, vp = packed.prefix[module.layer_idx]  # type: ignore[index]
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if packed.mask_folded is not None and flash_cpu is not None:
        # Grouped-query attention without repeat_kv: the `groups` query heads that share a
        # key/value head become extra query rows. Every packed token sees the whole prefix, so
        # that part needs no mask; the packed part needs the block-causal mask. The two partial
        # softmaxes are merged by their log-sum-exp.
        qf = query.reshape(batch, kv_heads, groups * q_len, dim)
        o1, lse1 = flash_cpu(qf, kp, vp, scale=scaling)[:2]
        o2, lse2 = flash_cpu(qf, key, value, attn_mask=packed.mask_folded, scale=scaling)[:2]
        lse = torch.logaddexp(lse1, lse2)
        out = o1.float() * (lse1 - lse).exp().unsqueeze(-1)
        out += o2.float() * (lse2 - lse).exp().unsqueeze(-1)
        out = out.to(query.dtype).view(batch, kv_heads, groups, q_len, dim)
        out = out.reshape(batch, heads, q_len, dim)
    else:
        out = torch.nn.functional.scaled_dot_product_attention(
            query,
            torch.cat([kp, key], dim=2),
            torch.cat([vp, value], dim=2),
            attn_mask=packed.mask_full,
            scale=scaling,
            enable_gqa=groups > 1,
        )
    return out.transpose(1, 2).contiguous(), None


def register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
