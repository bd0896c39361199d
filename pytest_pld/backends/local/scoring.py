"""Label scores of the `local:` backend: log P(label's tokens | prompt), summed over the label's
tokens, for several examples per forward pass.

Multi-token labels ride along as extra branches of the packed batch: each label's tokens but
its last follow the example as a branch that sees the example and itself only, so
"NotMentioned" costs a few more tokens, not another pass. Branches are laid out in an order
fixed by the labels' tokens, not by the order of the suite's label list, so that permuting the
list changes no score.

The float32 head. The model's output layer runs in its dtype (bfloat16 by default), which
rounds logits of 16-32 to steps of 0.125: label scores came out in multiples of 0.125 and
tied exactly for a fifth of LogiQA's examples. Here what decides a score is summed in float32:
each label token's logit is the float32 dot product of the final hidden state with that
token's row of the output layer (exact products, float32 sums), and the log-softmax
normaliser is the log-sum-exp over the whole vocabulary of the model-dtype logits, corrected
for the `TOP_EXACT` largest by their float32 values. The other logits are off by at most half
a step of the model dtype each, weighted by their small probability. So labels scored at the
same position (single-token labels) are ranked by exact float32 logits, and every score is a
real log-probability: against a float64 output layer over the whole vocabulary, at most
9.3e-4 nats off for SmolLM2-135M (flat distributions) and 2.1e-4 for Qwen2.5-0.5B (a float32
head over the whole vocabulary through MKL: 8e-5), where the bfloat16 head is off by up to
0.1 (tests/test_local_scores.py checks it). A float32 head over the whole vocabulary would
need a float32 copy of the output layer (0.5-0.9 GB) in a bfloat16 model; a float32 model
has one, and there the head's logits are float32 throughout.

Batch independence: bitwise, not a tolerance. An example's scores are the same bits whether it
is scored alone, packed with any other examples in any order, after others came from the
cache, or on another thread count (a tolerance cannot promise the same prediction: any
difference can flip a close call). What makes it so:
- the attention is computed example by example (see `attention`), and each example's layout
  (its tokens, then its label branches in `canonical_order`) depends on the example alone;
- the prefix an example follows depends on the system prompt alone: the head plus the chat
  template's opening of the user turn (`prompts`), not tokens that the examples of one call
  happen to share, which made an example's scores depend on the rest of its call;
- the linear layers and the output layer compute each token's row independently of the other
  rows and of the thread count. MKL's float32 kernels do so only from about a dozen rows up,
  so every decoder pass is padded to at least the row floor and the head runs in blocks of
  exactly that many rows (`rows`, which also checks it on the model's own weights when a
  backend starts; where it fails, the backend scores one example per forward pass).
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .attention import KV, Packed, Span, span_mask
from .prompts import Head, Item

#: How many of the largest logits of a scored position get their float32 value in the
#: normaliser (besides the label tokens).
TOP_EXACT = 64

#: Config attributes of architectures whose logits are not the plain output layer's
#: (soft-capping, scaling): their scores come from the model's own logits instead.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def model_cache(out: Any) -> Any:
    """The key-value cache of a transformers model output (named `cache` or `past_key_values`
    depending on the version)."""
    return out.cache if hasattr(out, "cache") else out.past_key_values


def cache_tensors(cache: Any, length: int | None = None) -> KV:
    """Each layer's keys and values (of the first `length` positions), contiguous."""
    return [
        (layer.keys[:, :, :length].contiguous(), layer.values[:, :, :length].contiguous())
        for layer in cache.layers
    ]


def canonical_order(label_ids: Sequence[Sequence[int]]) -> list[int]:
    """The labels' indexes in an order that depends on their tokens, not on the list's order
    (token sequences are distinct: `ChatPrompts.label_ids` refuses duplicates)."""
    return sorted(range(len(label_ids)), key=lambda k: tuple(label_ids[k]))


class OutputHead:
    """The output layer, with label log-probabilities computed in float32, in blocks of
    exactly `rows` rows (the row floor, see `rows`): every matrix product of the head has the
    same shape, so a row's result cannot depend on how many rows a pass scored."""

    def __init__(self, model: Any, rows: int) -> None:
        layer = model.get_output_embeddings()
        config = model.config
        self.plain = isinstance(layer, torch.nn.Linear) and not any(
            getattr(config, name, None) for name in _LOGIT_TRANSFORMS
        )
        self.weight: torch.Tensor = layer.weight
        self.bias: torch.Tensor | None = getattr(layer, "bias", None)
        self.rows = rows

    @torch.inference_mode()
    def log_probs(
        self, hidden: torch.Tensor, targets: list[list[int]], width: int | None = None
    ) -> list[list[float]]:
        """log P(token) of each row's target tokens, from final hidden states (R, hidden).
        `width`: how many targets a row may have (the number of labels), so that the shapes
        do not depend on which rows share the call."""
        width = max([width or 0, *(len(t) for t in targets)])
        padded = [t + t[-1:] * (width - len(t)) for t in targets]
        n = hidden.shape[0]
        blocks = -(-n // self.rows)
        extra = blocks * self.rows - n
        if extra:  # pad rows (copies of the last), scored and dropped
            hidden = torch.cat([hidden, hidden[-1:].expand(extra, -1)])
            padded += padded[-1:] * extra
        index = torch.tensor(padded, device=hidden.device)
        out = [
            self._block(hidden[b : b + self.rows], index[b : b + self.rows])
            for b in range(0, blocks * self.rows, self.rows)
        ]
        logp = torch.cat(out).tolist()
        return [row[: len(t)] for row, t in zip(logp, targets)]

    def _block(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        approx = torch.nn.functional.linear(hidden, self.weight, self.bias).float()
        # log-sum-exp of the model-dtype logits (log_softmax is one fused pass)
        lse = approx[:, :1] - approx.log_softmax(dim=-1)[:, :1]
        top = approx.topk(min(TOP_EXACT, approx.shape[-1]), dim=-1).indices
        index = torch.cat([top, targets], dim=1)
        # float32 dot products, each summed on its own: a row gives the same bits whatever
        # other rows are scored with it
        exact = (self.weight[index].float() * hidden.float()[:, None, :]).sum(-1)
        if self.bias is not None:
            exact += self.bias.float()[index]
        k = top.shape[1]
        # the normaliser with the largest logits' float32 values instead of their rounded ones
        shift = (exact[:, :k] - lse).exp().sum(-1) - (approx.gather(1, top) - lse).exp().sum(-1)
        return exact[:, k:] - (lse + torch.log1p(shift)[:, None])


@dataclass
class _Layout:
    """One example's tokens (its suffix, then the label branches) and its scored rows."""

    tokens: list[int]
    positions: list[int]
    allowed: torch.Tensor  # bool (n, n): which of the example's tokens each token sees
    last: int  # the suffix's last row: it predicts every label's first token
    #: per label (in the caller's order): (row, token it predicts) for the label's later tokens
    branches: list[list[tuple[int, int]]]
    order: list[int]  # the labels in `canonical_order`, as the branches are laid out

    def targets(self, label_ids: list[list[int]], offset: int) -> list[tuple[int, list[int]]]:
        """The rows to score (in layout order) with the tokens each predicts."""
        rows = [(offset + self.last, [lab[0] for lab in label_ids])]
        rows += [(offset + r, [t]) for k in self.order for r, t in self.branches[k]]
        return rows

    def scores(self, values: list[list[float]]) -> list[float]:
        """The labels' scores from `values`, the log-probabilities of `targets()`."""
        out = list(values[0])
        at = 1
        for k in self.order:
            n = len(self.branches[k])
            out[k] += sum(v[0] for v in values[at : at + n])
            at += n
        return out


def _layout(
    suffix: list[int], start: int, label_ids: list[list[int]], device: torch.device
) -> _Layout:
    tokens = list(suffix)
    positions = list(range(start, start + len(suffix)))
    branch = [0] * len(suffix)
    branches: list[list[tuple[int, int]]] = [[] for _ in label_ids]
    order = canonical_order(label_ids)
    for k in order:
        lab = label_ids[k]
        # The label's tokens but its last, as a branch that sees the example and itself only;
        # position j predicts the label's token j + 1.
        b0 = len(tokens)
        tokens += lab[:-1]
        positions += range(start + len(suffix), start + len(suffix) + len(lab) - 1)
        branch += [k + 1] * (len(lab) - 1)
        branches[k] = [(b0 + j, lab[j + 1]) for j in range(len(lab) - 1)]
    pos = torch.tensor(positions, device=device)
    br = torch.tensor(branch, device=device)
    allowed = ((br[None, :] == 0) | (br[None, :] == br[:, None])) & (pos[None, :] <= pos[:, None])
    return _Layout(tokens, positions, allowed, len(suffix) - 1, branches, order)


@dataclass
class Suffix:
    """What `score_packed` needs of one example: its tokens after `start` prefix tokens whose
    key-value states are `prefix`."""

    ids: list[int]
    start: int
    prefix: KV


@dataclass
class Prefix:
    """A system prompt's head with its computed key-value states."""

    head: Head
    kv: KV | None = None  # packed path: the head and the user turn's opening
    cache: Any = None  # copy path: a DynamicCache of the head
    compute_s: float = 0.0
    _kv_head: KV | None = None

    def kv_head(self) -> KV:
        """The head alone, for examples that do not start with the opening (a copy of the
        head's part of `kv`, made when first needed)."""
        assert self.kv is not None
        if self._kv_head is None:
            n = len(self.head.ids)
            self._kv_head = [(k[:, :, :n].clone(), v[:, :, :n].clone()) for k, v in self.kv]
        return self._kv_head

    def suffix(self, item: Item) -> Suffix:
        """The example after the head and the opening, or after the head alone when it does
        not start with the opening; never after tokens it shares with other examples only."""
        assert self.kv is not None
        head, opening = self.head.ids, self.head.opening
        n = len(opening)
        if n and item.ids[:n] == opening and len(item.ids) > n:
            return Suffix(item.ids[n:], len(head) + n, self.kv)
        return Suffix(item.ids, len(head), self.kv_head())


@torch.inference_mode()
def score_packed(
    model: Any,
    head: OutputHead,
    examples: list[Suffix],
    label_ids: list[list[int]],
    *,
    split_attention: bool,
    groups: int,
    device: torch.device,
) -> list[list[float]]:
    """Label log-probabilities (in the order of `label_ids`) of several examples in one
    forward pass of at least `head.rows` tokens: shorter passes get padding tokens, which
    no example attends to and whose outputs are dropped."""
    tokens: list[int] = []
    positions: list[int] = []
    spans: list[Span] = []
    layouts: list[_Layout] = []
    for ex in examples:
        lay = _layout(ex.ids, ex.start, label_ids, device)
        mask = span_mask(lay.allowed, ex.prefix, split=split_attention, groups=groups)
        spans.append(Span(len(tokens), len(tokens) + len(lay.tokens), ex.prefix, mask))
        tokens += lay.tokens
        positions += lay.positions
        layouts.append(lay)
    pad = max(0, head.rows - len(tokens))
    tokens += tokens[-1:] * pad
    positions += positions[-1:] * pad
    out = model.get_decoder()(
        torch.tensor([tokens], device=device),
        position_ids=torch.tensor([positions], device=device),
        use_cache=False,
        pld_packed=Packed(spans, split_attention),
    )
    wanted = [t for span, lay in zip(spans, layouts) for t in lay.targets(label_ids, span.start)]
    hidden = out.last_hidden_state[0, [row for row, _ in wanted]]
    values = head.log_probs(hidden, [targets for _, targets in wanted], len(label_ids))
    scores, at = [], 0
    for lay in layouts:
        n = 1 + sum(len(b) for b in lay.branches)
        scores.append(lay.scores(values[at : at + n]))
        at += n
    return scores


@torch.inference_mode()
def score_copy(
    model: Any,
    head: OutputHead,
    cache: Any,
    ids: list[int],
    label_ids: list[list[int]],
    device: torch.device,
) -> tuple[list[float], int]:
    """The generic path: a copy of the prefix cache per example (and per long label).
    Returns the scores and the number of forward passes."""

    def forward(tokens: list[int], past: Any, keep: int) -> tuple[Any, torch.Tensor]:
        ids_t = torch.tensor([tokens], device=device)
        if head.plain:
            out = model.get_decoder()(ids_t, cache=past, use_cache=True)
            return model_cache(out), out.last_hidden_state[0, -keep:]
        out = model(ids_t, cache=past, use_cache=True, logits_to_keep=keep)
        return model_cache(out), out.logits[0].float()

    def log_probs(states: torch.Tensor, targets: list[list[int]]) -> list[list[float]]:
        if head.plain:
            return head.log_probs(states, targets)
        logp = torch.log_softmax(states, dim=-1)
        return [[float(logp[j, t]) for t in row] for j, row in enumerate(targets)]

    past, last = forward(ids, copy.deepcopy(cache) if cache is not None else None, 1)
    forwards = 1
    scores = log_probs(last, [[lab[0] for lab in label_ids]])[0]
    multi = [k for k, lab in enumerate(label_ids) if len(lab) > 1]
    for n, k in enumerate(multi):
        lab = label_ids[k]
        branch_past = past if n == len(multi) - 1 else copy.deepcopy(past)
        _, states = forward(lab[:-1], branch_past, len(lab) - 1)
        forwards += 1
        scores[k] += sum(row[0] for row in log_probs(states, [[t] for t in lab[1:]]))
    return scores, forwards
