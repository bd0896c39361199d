"""The `local:` backend: a transformers causal LM in this process (CPU, or a GPU where present).

Classification is constrained label scoring: the prompt is the chat template applied to the
system prompt and the user message with the assistant turn opened, and each label is scored by
the log-probability that the assistant's answer starts with exactly that label's tokens (the sum
over the label's tokens). The prediction is the highest-scoring label, so it is always one of
the labels. One forward pass per batch of examples gives every label's score: multi-token labels
ride along as extra branches of the packed batch, so "NotMentioned" costs a few more tokens,
not another pass. With single-token labels this equals first-token scoring.

Why not first-token scoring only: with multi-token labels the first token's probability also
counts other continuations ("Not" + "Mentioned" vs "Not applicable"), and two labels may share
a first token. The full sequence is the exact quantity and costs almost nothing extra here.
Caveat: when one label's tokens are a prefix of another's, the shorter one scores at least as
high; pick labels that do not prefix each other.

Prefix reuse (the PLD workload: a long rule list shared by many short examples): the system
prompt's key-value states are computed once and kept read-only, together with the tokens the
chat template opens every user turn with, and examples are packed several at a time after them
(`attention`). Architectures this was verified on use it (llama, qwen2); others fall back to a
per-example copy of a `DynamicCache` prefix (`prefix_reuse="copy"`), slower but generic.

Scores are measurements (`scoring`): float32 where they decide, and the same bits whether an
example is scored alone, packed with any other examples, after others came from the cache, with
the label list in another order, or on another thread count. Every forward pass is padded to a
row floor at which the CPU's matrix kernels compute rows independently (`rows`, checked on the
model's weights at start-up; where the check fails, one example per pass). An exact tie that
remains is flagged (`tie`) and resolved by `labels.top_label`, never by the order of the labels.

The modules: `backend` (`LocalBackend`: its lazy loads, thread choice and scoring loop),
`loading` (the torch model), `prompts` (chat template and tokens), `attention` (the
packed-prefix attention, example by example), `scoring` (a system prompt's prefix, label scores
of a forward pass, the float32 head), `rows` (the row floor and its check), `threads` (how many
threads, and why), the engines of `generate`: `generation` (transformers) and `llamacpp`
(llama.cpp), with `sampling` (seeded temperature sampling), and `defaults` (the option
defaults) and `identity` (the cache identity, with `SCORING_VERSION`), both without torch.
Importing this package does not import torch; `LocalBackend` is imported from `backend` on
first use, which happens only when a `local:` backend is created (see
`pytest_pld.backends.get_backend`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..packaged import DEFAULT_MODEL, ensure_converted, packaged_names
from .defaults import LOCAL_DEFAULTS, PACK_TOKENS
from .identity import local_identity

if TYPE_CHECKING:
    from .backend import LocalBackend

__all__ = [
    "DEFAULT_MODEL",
    "LOCAL_DEFAULTS",
    "PACK_TOKENS",
    "LocalBackend",
    "ensure_converted",
    "local_identity",
    "packaged_names",
]


def __getattr__(name: str) -> Any:
    # `LocalBackend` imports torch: only when it is asked for, not with this package.
    if name == "LocalBackend":
        from .backend import LocalBackend

        return LocalBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
