"""The `local:` backend: a transformers causal LM in this process (CPU, or a GPU where present).

Classification is constrained label scoring: the prompt is the chat template applied to the
system prompt and the user message with the assistant turn opened, and each label is scored by
the log-probability that the assistant's answer starts with exactly that label's tokens (the sum
over the label's tokens). The prediction is the highest-scoring label, so it is always one of
the labels. One forward pass per batch of examples gives every label's score: multi-token labels
ride along as extra branches of the packed batch (see below), so "NotMentioned" costs a few more
tokens, not another pass. With single-token labels this equals first-token scoring.

Why not first-token scoring only: with multi-token labels the first token's probability also
counts other continuations ("Not" + "Mentioned" vs "Not applicable"), and two labels may share
a first token. The full sequence is the exact quantity and costs almost nothing extra here.
Caveat: when one label's tokens are a prefix of another's, the shorter one scores at least as
high; pick labels that do not prefix each other.

Prefix reuse (the PLD workload: a long rule list shared by many short examples). The key-value
states of the system-prompt prefix are computed once per system prompt and kept read-only.
Examples are then packed several at a time into one sequence after that prefix: each token gets
its real position id, and a custom attention function (registered with transformers'
`AttentionInterface`) lets every token attend to the whole cached prefix plus the earlier tokens
of its own example only. So nothing is copied per example (no `deepcopy`, no `torch.cat` of the
prefix into a growing cache, no `repeat_kv` expansion of the prefix for grouped-query
attention), and the linear layers run on a batch of tokens instead of one short example. Tokens
that every example of a call starts with (the user turn's opening, a fixed "Sentence:") are
added to the shared prefix once per call instead of being recomputed per example. On CPU
the attention over the prefix and over the packed tokens are two flash-attention calls merged
by their log-sum-exp; elsewhere one `scaled_dot_product_attention` call over both.
Architectures this was verified on use it (llama, qwen2); others fall back to a per-example
copy of a `DynamicCache` prefix (`prefix_reuse="copy"`), slower but generic.

Latency accounting: each example's `latency_s` is its share of its packed forward pass; the
example that triggered the prefix computation also carries that one-off cost. So the sum of the
latencies is the wall time spent in the backend.

torch and transformers are imported when this module is imported, which happens only when a
`local:` backend is created (see `base.get_backend`).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _tame_openmp_spinning() -> None:
    """Set before torch loads GNU OpenMP (which reads it once, at load time).

    torch's OpenMP workers spin between parallel regions. When another process holds a core
    (a pytest-xdist worker, a served model, another job on a CI runner), a spinning worker
    holds the CPU its sibling needs, and every one of a forward pass's hundreds of parallel
    regions waits a scheduler time slice: measured here on 2 cores, 10-50x slower (a 48 ms
    example took 450-700 ms). Spinning briefly and then sleeping cost nothing measurable when
    the machine was idle and kept that example at 125 ms under load. The user's own settings
    win, and nothing changes if torch was imported before this module.
    """
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")


_tame_openmp_spinning()

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ..errors import PldError
from .base import Classification, Generation, Message
from .packaged import (
    DEFAULT_MODEL,
    ResolvedModel,
    _ensure_converted,
    dtype_name,
    ensure_converted,
    identity_of,
    local_identity,
    packaged_names,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "LocalBackend",
    "ensure_converted",
    "local_identity",
    "packaged_names",
]

ATTN_IMPLEMENTATION = "pld_prefix_sdpa"
#: Model types whose attention was checked against a plain forward pass (tests/test_local_backend).
PACKED_MODEL_TYPES = frozenset({"llama", "qwen2"})
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}
_SENTINEL = "\u2063PLD-USER-MESSAGE\u2063"

_flash_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


# -- the packed-prefix attention ---------------------------------------------------------------


@dataclass
class _Packed:
    """What the attention function needs for one packed forward pass."""

    prefix: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (1, kv_heads, L, head_dim)
    mask_folded: torch.Tensor | None  # additive (1, 1, groups*Q, Q), for the split CPU path
    mask_full: torch.Tensor | None  # bool (1, 1, Q, L+Q), for the generic path


def _prefix_attention(
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

    packed: _Packed | None = kwargs.pop("pld_packed", None)
    if packed is None:  # ordinary forward passes (the prefix itself, generate): plain sdpa
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    kp, vp = packed.prefix[module.layer_idx]  # type: ignore[index]
    batch, heads, q_len, dim = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    if packed.mask_folded is not None and _flash_cpu is not None:
        # Grouped-query attention without repeat_kv: the `groups` query heads that share a
        # key/value head become extra query rows. Every packed token sees the whole prefix, so
        # that part needs no mask; the packed part needs the block-causal mask. The two partial
        # softmaxes are merged by their log-sum-exp.
        qf = query.reshape(batch, kv_heads, groups * q_len, dim)
        o1, lse1 = _flash_cpu(qf, kp, vp, scale=scaling)[:2]
        o2, lse2 = _flash_cpu(qf, key, value, attn_mask=packed.mask_folded, scale=scaling)[:2]
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


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, _prefix_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


# -- prompts -------------------------------------------------------------------------------------


@dataclass
class _Prefix:
    system: str
    head_text: str  # the rendered prompt up to the last special token before the user message
    head_ids: list[int]
    split_ok: bool  # tokenizing head and tail apart gives the same ids as the whole prompt
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # packed path
    cache: Any = None  # copy path: a DynamicCache of the prefix
    compute_s: float = 0.0
    #: packed path: the prefix extended by tokens that every example of a call starts with
    extensions: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=OrderedDict
    )


@dataclass
class _Item:
    index: int
    ids: list[int]  # the tokens after the prefix
    truncated: bool


def _default_threads() -> int | None:
    """$PLD_THREADS; under pytest-xdist, a fair share of the cores (several workers with a
    thread per core each oversubscribe the CPU, and torch then slows down 10-50x)."""
    env = os.environ.get("PLD_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if workers.isdigit() and int(workers) > 1:
        return max(1, (os.cpu_count() or 1) // int(workers))
    return None


def _resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else DTYPES[dtype_name(dtype)]


class LocalBackend:
    """A transformers model in this process, behind the `Backend` protocol."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dtype: str | torch.dtype = "bfloat16",
        device: str | None = None,
        threads: int | None = None,
        max_context: int | None = None,
        pack_tokens: int = 256,
        prefix_reuse: str = "auto",
        on_overflow: str = "error",
        prefix_cache_size: int = 4,
    ) -> None:
        """
        model: a packaged short name, a `.gguf` file or a transformers model folder.
        dtype: bfloat16 (default; 1.3-2.4x faster than float32 on AVX512-BF16 CPUs), float32,
            float16.
        device: "cpu", "cuda", "cuda:1", ...; default cuda when available, else cpu.
        threads: torch intra-op threads (process-wide); default: $PLD_THREADS, else under
            pytest-xdist the cores divided among the workers, else torch's own choice.
        max_context: refuse (or truncate) prompts longer than this; default: the model's
            `max_position_embeddings`.
        pack_tokens: examples are packed into one forward pass until about this many tokens.
        prefix_reuse: "auto" (packed where verified, else copy), "packed" or "copy".
        on_overflow: "error" (PldError naming the token counts) or "truncate" (cut the user
            message from its end, and mark the Classification `truncated`).
        """
        if on_overflow not in ("error", "truncate"):
            raise PldError(f"on_overflow must be 'error' or 'truncate', not {on_overflow!r}")
        if prefix_reuse not in ("auto", "packed", "copy"):
            raise PldError(f"prefix_reuse must be 'auto', 'packed' or 'copy', not {prefix_reuse!r}")
        self.name = f"local:{model}"
        self.model_name = model
        self.dtype = _resolve_dtype(dtype)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        threads = threads or _default_threads()
        if threads:
            torch.set_num_threads(int(threads))
        self.pack_tokens = max(1, int(pack_tokens))
        self.on_overflow = on_overflow
        self._prefix_cache_size = max(1, int(prefix_cache_size))
        self._prefixes: OrderedDict[str, _Prefix] = OrderedDict()
        self.stats: dict[str, float] = {
            "prefix_builds": 0,
            "prefix_s": 0.0,
            "forwards": 0,
            "examples": 0,
        }

        t0 = time.perf_counter()
        self.resolved: ResolvedModel = resolve_model(model)
        self.folder: Path = _ensure_converted(self.resolved)
        self.convert_s = time.perf_counter() - t0
        _register_attention()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                str(self.folder), dtype=self.dtype, attn_implementation=ATTN_IMPLEMENTATION
            )
            custom_attention = True
        except (ValueError, KeyError, TypeError):  # a model without the attention interface
            self.model = AutoModelForCausalLM.from_pretrained(str(self.folder), dtype=self.dtype)
            custom_attention = False
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.load_s = time.perf_counter() - t0

        config = self.model.config
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        packable = (
            custom_attention
            and config.model_type in PACKED_MODEL_TYPES
            and layer_types == {"full_attention"}
        )
        if prefix_reuse == "packed" and not packable:
            raise PldError(
                f"prefix_reuse='packed' is not available for model type {config.model_type!r}",
                hint="use prefix_reuse='auto' or 'copy'",
            )
        self.prefix_reuse = "packed" if prefix_reuse != "copy" and packable else "copy"
        #: On CPU, attention over the prefix and the packed tokens is split (no copies).
        self._split_attention = self.device.type == "cpu" and _flash_cpu is not None
        context = getattr(config, "max_position_embeddings", None) or 2048
        self.max_context = int(max_context) if max_context else int(context)
        self._groups = config.num_attention_heads // getattr(
            config, "num_key_value_heads", config.num_attention_heads
        )
        self._eos_ids = self._stop_token_ids()
        self._identity = identity_of(
            self.resolved, dtype=self.dtype, max_context=max_context, on_overflow=on_overflow
        )

    # -- protocol ------------------------------------------------------------------------------

    def identity(self) -> Mapping[str, Any]:
        """See `packaged.local_identity`, which gives the same without loading the model."""
        return dict(self._identity)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False).input_ids)

    def close(self) -> None:
        self._prefixes.clear()
        self.model = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"LocalBackend({self.model_name!r}, dtype={self.dtype}, device={self.device}, "
            f"prefix_reuse={self.prefix_reuse!r})"
        )

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        # No `torch.inference_mode()` around the yields: it is thread-wide state and would
        # leak into the caller's code between examples; the computing methods enter it.
        label_ids = self._label_ids(labels)
        longest_label = max(len(ids) for ids in label_ids)
        t0 = time.perf_counter()
        prefix = self._prefix(system)
        pending_s = time.perf_counter() - t0  # the prefix cost goes to the next example
        if self.prefix_reuse == "packed" and prefix.kv is not None:
            # Tokenize every example first: overflow errors come before any compute, and
            # the tokens all examples start with (the user turn's opening, a fixed
            # "Sentence:" ...) join the shared prefix instead of being recomputed each time.
            items = [self._item(prefix, i, u, longest_label) for i, u in enumerate(users)]
            shared = _common_length([item.ids for item in items])
            kv, start = prefix.kv, len(prefix.head_ids)
            if shared:
                t0 = time.perf_counter()
                kv = self._extended(prefix, tuple(items[0].ids[:shared]))
                start += shared
                pending_s += time.perf_counter() - t0
            extra = sum(len(ids) - 1 for ids in label_ids)
            batch: list[_Item] = []
            size = 0
            for item in items:
                batch.append(item)
                size += len(item.ids) - shared + extra
                if size >= self.pack_tokens:
                    yield from self._run_packed(
                        prefix, kv, start, shared, batch, labels, label_ids, pending_s
                    )
                    pending_s, batch, size = 0.0, [], 0
            if batch:
                yield from self._run_packed(
                    prefix, kv, start, shared, batch, labels, label_ids, pending_s
                )
        else:
            for index, user in enumerate(users):
                t = time.perf_counter()
                item = self._item(prefix, index, user, longest_label)
                scores = self._score_copy(prefix, item.ids, label_ids)
                latency = time.perf_counter() - t + pending_s
                pending_s = 0.0
                yield self._classification(prefix, item, labels, scores, latency)

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        prefill: str = "",
        json_schema: Mapping[str, Any] | None = None,
    ) -> Generation:
        """Greedy decoding. `json_schema` is not enforced locally: shape the output with
        `prefill` and `stop` instead."""
        del json_schema  # local models get structure from prefill/stop, not a grammar
        t0 = time.perf_counter()
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self._render(chat, add_generation_prompt=True) + prefill
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) + max_tokens > self.max_context:
            raise PldError(
                f"the prompt is {len(ids)} tokens and {max_tokens} more were asked for, over "
                f"the model's context of {self.max_context} tokens",
                hint="shorten the messages or lower max_tokens",
            )
        input_ids = torch.tensor([ids], device=self.device)
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=self._eos_ids,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self._eos_ids[0],
        )
        kwargs: dict[str, Any] = {}
        if stop:
            config.stop_strings = list(stop)
            kwargs["tokenizer"] = self.tokenizer
        with torch.inference_mode():
            out = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                **kwargs,
            )
        new = out[0, len(ids) :].tolist()
        finish = "length"
        if new and new[-1] in self._eos_ids:
            new = new[:-1]
            finish = "stop"
        completion = str(self.tokenizer.decode(new, skip_special_tokens=True))
        cut = [completion.find(s) for s in stop if s and s in completion]
        if cut:
            completion = completion[: min(cut)]
            finish = "stop"
        return Generation(
            text=completion,
            latency_s=time.perf_counter() - t0,
            prompt_tokens=len(ids),
            completion_tokens=len(out[0]) - len(ids),
            finish_reason=finish,
        )

    # -- prompts -------------------------------------------------------------------------------

    def _render(self, chat: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        tok = self.tokenizer
        if not tok.chat_template:
            # A base model: a plain layout, recorded in identity() via the template digest.
            parts = [m["content"] for m in chat]
            return "\n\n".join(parts) + "\n\n"
        try:
            return str(
                tok.apply_chat_template(
                    chat, add_generation_prompt=add_generation_prompt, tokenize=False
                )
            )
        except Exception as err:  # jinja raises for templates without a system role
            if chat and chat[0]["role"] == "system" and len(chat) > 1:
                merged = [
                    {
                        "role": chat[1]["role"],
                        "content": chat[0]["content"] + "\n\n" + chat[1]["content"],
                    },
                    *chat[2:],
                ]
                return str(
                    tok.apply_chat_template(
                        merged, add_generation_prompt=add_generation_prompt, tokenize=False
                    )
                )
            raise PldError(f"the model's chat template failed: {err}") from err

    def _prompt_text(self, system: str, user: str) -> str:
        chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self._render(chat, add_generation_prompt=True)

    def _special_strings(self) -> list[str]:
        tok = self.tokenizer
        specials = set(tok.all_special_tokens)
        for added in getattr(tok, "added_tokens_decoder", {}).values():
            if getattr(added, "special", False):
                specials.add(str(added))
        return [s for s in specials if s]

    @torch.inference_mode()
    def _prefix(self, system: str) -> _Prefix:
        key = system
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return self._prefixes[key]
        t0 = time.perf_counter()
        rendered = self._prompt_text(system, _SENTINEL)
        at = rendered.find(_SENTINEL)
        head = rendered[:at] if at >= 0 else ""
        # Cut the shared head after the last special token before the user message: special
        # tokens are split off before the rest is tokenized, so the head's tokens do not depend
        # on the user message. (Checked just below against tokenizing the whole prompt.)
        cut = max((head.rfind(s) + len(s) for s in self._special_strings() if s in head), default=0)
        head = head[:cut]
        head_ids = self.tokenizer(head, add_special_tokens=False).input_ids if head else []
        probe = self._prompt_text(system, "Example text, to check the tokenization.")
        whole = self.tokenizer(probe, add_special_tokens=False).input_ids
        split = head_ids + self.tokenizer(probe[len(head) :], add_special_tokens=False).input_ids
        prefix = _Prefix(system, head, head_ids, split_ok=probe.startswith(head) and split == whole)
        if len(head_ids) + 1 > self.max_context:
            raise PldError(
                f"the system prompt alone is {len(head_ids)} tokens, over the model's context "
                f"of {self.max_context} tokens",
                hint="shorten the instructions (or raise max_context if the model allows it)",
            )
        if head_ids:
            ids = torch.tensor([head_ids], device=self.device)
            out = self.model(ids, use_cache=True, logits_to_keep=1)
            cache = out.cache if hasattr(out, "cache") else out.past_key_values
            if self.prefix_reuse == "packed":
                prefix.kv = [
                    (layer.keys.contiguous(), layer.values.contiguous()) for layer in cache.layers
                ]
            else:
                prefix.cache = cache
            self.stats["forwards"] += 1
        prefix.compute_s = time.perf_counter() - t0
        self.stats["prefix_builds"] += 1
        self.stats["prefix_s"] += prefix.compute_s
        self._prefixes[key] = prefix
        while len(self._prefixes) > self._prefix_cache_size:
            self._prefixes.popitem(last=False)
        return prefix

    def _tail_ids(self, prefix: _Prefix, user: str) -> list[int] | None:
        text = self._prompt_text(prefix.system, user)
        if prefix.split_ok and text.startswith(prefix.head_text):
            return list(
                self.tokenizer(text[len(prefix.head_text) :], add_special_tokens=False).input_ids
            )
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        n = len(prefix.head_ids)
        if ids[:n] == prefix.head_ids:
            return list(ids[n:])
        return None

    def _item(self, prefix: _Prefix, index: int, user: str, label_len: int) -> _Item:
        room = self.max_context - len(prefix.head_ids) - label_len
        tail = self._tail_ids(prefix, user)
        if tail is None:
            raise PldError(
                "the chat template renders the system prompt differently depending on the user "
                "message, so its cached prefix cannot be reused",
                hint="use prefix_reuse='copy' with a template that keeps the system prompt first",
            )
        if len(tail) <= room:
            return _Item(index, tail, False)
        total = len(prefix.head_ids) + len(tail) + label_len
        if self.on_overflow == "error":
            raise PldError(
                f"user message #{index} makes the prompt {total} tokens (system prefix "
                f"{len(prefix.head_ids)} + user turn {len(tail)} + longest label {label_len}), "
                f"over the model's context of {self.max_context} tokens",
                hint="shorten the example or the rules, or run with on_overflow='truncate'",
            )
        # Truncate: keep the longest start of the user message that fits (binary search on
        # characters; the chat template's closing tokens are kept).
        lo, hi, best = 0, len(user), None
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = self._tail_ids(prefix, user[:mid])
            if candidate is not None and len(candidate) <= room:
                best, lo = candidate, mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise PldError(
                f"even an empty user message #{index} does not fit the model's context of "
                f"{self.max_context} tokens after the {len(prefix.head_ids)}-token system prefix",
                hint="shorten the instructions",
            )
        return _Item(index, best, True)

    def _label_ids(self, labels: Sequence[str]) -> list[list[int]]:
        if not labels:
            raise PldError("classification needs at least one label")
        if len(set(labels)) != len(labels):
            raise PldError(f"duplicate labels in {list(labels)}")
        out: list[list[int]] = []
        for label in labels:
            ids = self.tokenizer(label, add_special_tokens=False).input_ids
            if not ids:
                raise PldError(f"label {label!r} has no tokens")
            out.append(list(ids))
        seen: dict[tuple[int, ...], str] = {}
        for label, ids in zip(labels, out):
            if tuple(ids) in seen:
                raise PldError(
                    f"labels {seen[tuple(ids)]!r} and {label!r} have the same tokens in this "
                    "model's tokenizer, so scoring cannot tell them apart"
                )
            seen[tuple(ids)] = label
        return out

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        eos = self.model.generation_config.eos_token_id
        for value in eos if isinstance(eos, list) else [eos]:
            if value is not None:
                ids.append(int(value))
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        for name in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
            tid = self.tokenizer.convert_tokens_to_ids(name)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.append(tid)
        return list(dict.fromkeys(ids)) or [0]

    # -- scoring -------------------------------------------------------------------------------

    def _classification(
        self,
        prefix: _Prefix,
        item: _Item,
        labels: Sequence[str],
        scores: list[float],
        latency: float,
    ) -> Classification:
        best = max(range(len(labels)), key=lambda k: scores[k])
        self.stats["examples"] += 1
        return Classification(
            label=labels[best],
            raw=labels[best],
            scores={label: float(s) for label, s in zip(labels, scores)},
            latency_s=latency,
            prompt_tokens=len(prefix.head_ids) + len(item.ids),
            completion_tokens=0,
            truncated=item.truncated,
        )

    def _run_packed(
        self,
        prefix: _Prefix,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        start: int,
        shared: int,
        batch: list[_Item],
        labels: Sequence[str],
        label_ids: list[list[int]],
        pending_s: float,
    ) -> Iterator[Classification]:
        t0 = time.perf_counter()
        suffixes = [item.ids[shared:] for item in batch]
        all_scores = self._score_packed(kv, start, suffixes, label_ids)
        wall = time.perf_counter() - t0
        # Each example's share of the forward pass, by its token count.
        sizes = [len(ids) for ids in suffixes]
        total = sum(sizes)
        for i, (item, scores) in enumerate(zip(batch, all_scores)):
            latency = wall * sizes[i] / total + (pending_s if i == 0 else 0.0)
            yield self._classification(prefix, item, labels, scores, latency)

    @torch.inference_mode()
    def _extended(
        self, prefix: _Prefix, common: tuple[int, ...]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The prefix's key-value states extended by `common` tokens (cached, LRU of 2)."""
        if common in prefix.extensions:
            prefix.extensions.move_to_end(common)
            return prefix.extensions[common]
        from transformers import DynamicCache

        assert prefix.kv is not None
        cache = DynamicCache(config=self.model.config)
        for layer, (k, v) in enumerate(prefix.kv):
            cache.update(k, v, layer)  # copies: the shared prefix tensors stay untouched
        start = len(prefix.head_ids)
        out = self.model(
            torch.tensor([list(common)], device=self.device),
            position_ids=torch.arange(start, start + len(common), device=self.device)[None],
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.stats["forwards"] += 1
        grown = out.cache if hasattr(out, "cache") else out.past_key_values
        kv = [(layer.keys.contiguous(), layer.values.contiguous()) for layer in grown.layers]
        prefix.extensions[common] = kv
        while len(prefix.extensions) > 2:
            prefix.extensions.popitem(last=False)
        return kv

    @torch.inference_mode()
    def _score_packed(
        self,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        start: int,
        suffixes: list[list[int]],
        label_ids: list[list[int]],
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
        dev = self.device
        q = len(tokens)
        pos = torch.tensor(positions, device=dev)
        ex = torch.tensor(example, device=dev)
        br = torch.tensor(branch, device=dev)
        allowed = (
            (ex[:, None] == ex[None, :])
            & ((br[None, :] == 0) | (br[None, :] == br[:, None]))
            & (pos[None, :] <= pos[:, None])
        )
        if self._split_attention:
            additive = torch.zeros(allowed.shape, dtype=self.dtype, device=dev)
            additive.masked_fill_(~allowed, float("-inf"))
            packed = _Packed(kv, additive.repeat(self._groups, 1)[None, None], None)
        else:
            full = torch.cat([torch.ones(q, start, dtype=torch.bool, device=dev), allowed], dim=1)
            packed = _Packed(kv, None, full[None, None])
        keep = sorted({w[3] for w in wanted})
        row = {p: i for i, p in enumerate(keep)}
        out = self.model(
            torch.tensor([tokens], device=dev),
            position_ids=pos[None],
            use_cache=False,
            logits_to_keep=torch.tensor(keep, device=dev),
            pld_packed=packed,
        )
        self.stats["forwards"] += 1
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        scores = [[0.0] * len(label_ids) for _ in suffixes]
        picked = logp[[row[w[3]] for w in wanted], [w[2] for w in wanted]].tolist()
        for (e, k, _tok, _p), value in zip(wanted, picked):
            scores[e][k] += value
        return scores

    @torch.inference_mode()
    def _score_copy(
        self, prefix: _Prefix, ids: list[int], label_ids: list[list[int]]
    ) -> list[float]:
        """The generic path: a copy of the prefix cache per example (and per long label)."""
        dev = self.device
        cache = copy.deepcopy(prefix.cache) if prefix.cache is not None else None
        out = self.model(
            torch.tensor([ids], device=dev), cache=cache, use_cache=True, logits_to_keep=1
        )
        self.stats["forwards"] += 1
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        scores = [float(first[lab[0]]) for lab in label_ids]
        cache = out.cache if hasattr(out, "cache") else out.past_key_values
        multi = [k for k, lab in enumerate(label_ids) if len(lab) > 1]
        for n, k in enumerate(multi):
            lab = label_ids[k]
            branch_cache = cache if n == len(multi) - 1 else copy.deepcopy(cache)
            more = self.model(
                torch.tensor([lab[:-1]], device=dev),
                cache=branch_cache,
                use_cache=True,
                logits_to_keep=len(lab) - 1,
            )
            self.stats["forwards"] += 1
            logp = torch.log_softmax(more.logits[0].float(), dim=-1)
            scores[k] += float(sum(logp[j, lab[j + 1]] for j in range(len(lab) - 1)))
        return scores


def _common_length(seqs: list[list[int]]) -> int:
    """How many leading tokens all sequences share, leaving at least one token of each."""
    if len(seqs) < 2:
        return 0
    limit = min(len(s) for s in seqs) - 1
    n = 0
    first = seqs[0]
    while n < limit and all(s[n] == first[n] for s in seqs):
        n += 1
    return n
