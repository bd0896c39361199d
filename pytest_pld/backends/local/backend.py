"""`LocalBackend`: a transformers causal LM in this process (CPU, or a GPU where present).

See the package docstring for how it classifies; the pieces live next to this module:
`prompts` (chat template and tokens), `attention` (the packed-prefix attention) and `scoring`
(the label scores of a forward pass). Generation from a GGUF model runs through llama.cpp where
llama-cpp-python is installed (`llamacpp`), else through transformers.

Each engine loads on first use: a teacher that only generates through llama.cpp never loads
(or converts) the torch model, and a student that only scores never loads llama.cpp. Creating
the backend resolves and verifies the weights (a few `stat` calls once their digest is known).

Latency accounting: each example's `latency_s` is its share of its packed forward pass; the
example that triggered the prefix computation also carries that one-off cost. So the sum of the
latencies is the wall time spent in the backend.
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from ...errors import PldError
from ...labels import top_label
from ..base import (
    GENERATE_DEFAULTS,
    Classification,
    GenerateOptions,
    Generation,
    Message,
    cut_at_stop,
)
from ..packaged import (
    AUTO_DTYPE,
    DEFAULT_MODEL,
    ResolvedModel,
    _ensure_converted,
    auto_dtype_reason,
    gguf_file,
    identity_of,
    resolve_dtype_name,
    resolve_model,
)
from .attention import ATTN_IMPLEMENTATION, KV, flash_cpu, register_attention
from .defaults import PACK_TOKENS
from .identity import SCORING_VERSION
from .llamacpp import LLAMA_CPP, LlamaCppGenerator, choose_generation, say_once
from .loading import quiet_progress_unless_terminal
from .prompts import ChatPrompts, Head, Item
from .rows import RowCheck, check_rows
from .sampling import check_sampling, sampling_kwargs
from .scoring import OutputHead, Suffix, cache_tensors, model_cache, score_copy, score_packed
from .threads import CpuWatch, ThreadChoice, choose_threads

__all__ = ["DEFAULT_MODEL", "LocalBackend"]

#: Model types whose attention was checked against a plain forward pass (tests/test_local_backend).
PACKED_MODEL_TYPES = frozenset({"llama", "qwen2"})
#: Token texts that end an answer besides the model's own end-of-sequence token.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>")
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@dataclass
class _Prefix:
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


def _resolve_dtype(dtype: str | torch.dtype, device: str | None) -> torch.dtype:
    return dtype if isinstance(dtype, torch.dtype) else DTYPES[resolve_dtype_name(dtype, device)]


class LocalBackend:
    """A transformers model in this process, behind the `Backend` protocol."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        dtype: str | torch.dtype = AUTO_DTYPE,
        device: str | None = None,
        threads: int | None = None,
        max_context: int | None = None,
        pack_tokens: int = PACK_TOKENS,
        prefix_reuse: str = "auto",
        on_overflow: str = "error",
        prefix_cache_size: int = 4,
        generation: str = "auto",
    ) -> None:
        """
        model: a packaged short name, a `.gguf` file or a transformers model folder.
        dtype: "auto" (default: bfloat16 on a GPU or a CPU with native bfloat16, AVX512-BF16 or
            AMX, where it is 1.3-2.4x faster than float32; else float32, which is faster where
            bfloat16 is emulated; see `packaged.auto_dtype`), "bfloat16", "float32", "float16".
            The identity names the dtype that ran, so caches never mix them. The converted
            weights are one bfloat16 copy whatever the dtype (float32 holds it exactly).
        device: "cpu", "cuda", "cuda:1", ...; default cuda when available, else cpu.
        threads: torch intra-op threads (process-wide); default: $PLD_THREADS, else under
            pytest-xdist the cores divided among the workers, else the cores this process
            may use less those other processes keep busy (`threads`). No score depends on it.
        max_context: refuse (or truncate) prompts longer than this; default: the model's
            `max_position_embeddings`.
        pack_tokens: examples are packed into one forward pass until about this many tokens
            (where this CPU computes rows independently at a row floor, see `rows`; else one
            per pass). No score depends on it.
        prefix_reuse: "auto" (packed where verified, else copy), "packed" or "copy".
        on_overflow: "error" (PldError naming the token counts) or "truncate" (cut the user
            message from its end, and mark the Classification `truncated`).
        generation: the engine of `generate`: "auto" (llama.cpp for a GGUF model on the CPU
            where llama-cpp-python is installed, else transformers), "llama.cpp" or
            "transformers". `generation_identity()` names it; scoring is always torch.
        """
        if on_overflow not in ("error", "truncate"):
            raise PldError(f"on_overflow must be 'error' or 'truncate', not {on_overflow!r}")
        if prefix_reuse not in ("auto", "packed", "copy"):
            raise PldError(f"prefix_reuse must be 'auto', 'packed' or 'copy', not {prefix_reuse!r}")
        self.name = f"local:{model}"
        self.model_name = model
        watch = CpuWatch()  # others' CPU use while the model loads, for the thread count
        self.dtype = _resolve_dtype(dtype, device)
        auto = str(dtype).lower() == AUTO_DTYPE
        self._dtype_why = "auto: " + auto_dtype_reason(device) if auto else "given"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._threads_given = threads
        self._cpu_watch = watch
        self._thread_choice: ThreadChoice | None = None
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

        self.resolved: ResolvedModel = resolve_model(model)
        self._identity = {
            **identity_of(
                self.resolved, dtype=self.dtype, max_context=max_context, on_overflow=on_overflow
            ),
            "scoring_version": SCORING_VERSION,
        }
        #: the engine of `generate` (see `llamacpp.choose_generation`)
        self.generation = choose_generation(generation, self.resolved, self.device.type)
        self._llama: LlamaCppGenerator | None = None
        self._load_options = (max_context, prefix_reuse)
        self._loaded = False

    def load(self) -> None:
        """Load the torch model and tokenizer now (converting a GGUF once); scoring, counting
        tokens and transformers generation call it on first use."""
        if self._loaded:
            return
        max_context, prefix_reuse = self._load_options
        t0 = time.perf_counter()
        self.folder: Path = _ensure_converted(self.resolved)
        self.convert_s = time.perf_counter() - t0
        register_attention()
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.prompts = ChatPrompts(self.tokenizer)
        with quiet_progress_unless_terminal():
            try:
                self.model = AutoModelForCausalLM.from_pretrained(
                    str(self.folder), dtype=self.dtype, attn_implementation=ATTN_IMPLEMENTATION
                )
                custom_attention = True
            except (ValueError, KeyError, TypeError):  # no attention interface in this model
                self.model = AutoModelForCausalLM.from_pretrained(
                    str(self.folder), dtype=self.dtype
                )
                custom_attention = False
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.load_s = time.perf_counter() - t0
        torch.set_num_threads(self.threads.count)

        config = self.model.config
        self._model_type = str(config.model_type)
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
        self._split_attention = self.device.type == "cpu" and flash_cpu is not None
        #: The row floor every pass is padded to, checked on 1 thread and on the count in use.
        self.row_check: RowCheck = check_rows(
            self.model, self.model.get_output_embeddings().weight, [self.threads.count]
        )
        self.head = OutputHead(self.model, self.row_check.pad_to)
        context = getattr(config, "max_position_embeddings", None) or 2048
        self.max_context = int(max_context) if max_context else int(context)
        self._groups = config.num_attention_heads // getattr(
            config, "num_key_value_heads", config.num_attention_heads
        )
        self._eos_ids = self._stop_token_ids()
        self._loaded = True

    # -- protocol ------------------------------------------------------------------------------

    def identity(self) -> Mapping[str, Any]:
        """See `local.identity.local_identity`, which gives the same without loading the model."""
        return dict(self._identity)

    def generation_identity(self) -> Mapping[str, Any]:
        """`identity()` with the engine that generates (`llamacpp.choose_generation`): the
        key of cached generations, so that an answer of one engine never serves the other.
        Scores do not depend on it, so `identity()` (classification keys, run records) does
        not name it."""
        return {**self._identity, "generation": dict(self.generation.identity)}

    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self.prompts.ids(text))

    def close(self) -> None:
        self._prefixes.clear()
        self.model = None  # type: ignore[assignment]
        if self._llama is not None:
            self._llama.close()

    @property
    def threads(self) -> ThreadChoice:
        """The thread count of torch and llama.cpp alike (`threads.choose_threads`), chosen
        once, when the first engine starts: other processes' CPU use is watched from this
        backend's creation until then."""
        if self._thread_choice is None:
            self._thread_choice = choose_threads(self._threads_given, self._cpu_watch)
        return self._thread_choice

    @property
    def rows_independent(self) -> bool:
        """Whether examples may share a forward pass without changing each other's scores."""
        return self.row_check.floor is not None

    @property
    def setup(self) -> str:
        """What this backend computes with and why, for the run header: e.g. "float32 (auto:
        AVX2, no native bf16), 2 threads (2 usable, 0 busy), packed up to 256 tokens per pass
        (rows independent at floor 16 on 1 and 2 threads)"."""
        dtype = str(self.dtype).removeprefix("torch.")
        threads = f"{self.threads.count} thread{'s' if self.threads.count > 1 else ''}"
        if self.prefix_reuse != "packed":
            packing = f"one example per pass (prefix reuse by copy: {self._model_type})"
        elif self.rows_independent:
            packing = f"packed up to {self.pack_tokens} tokens per pass"
        else:
            packing = "one example per pass"
        return (
            f"{dtype} ({self._dtype_why}), {threads} ({self.threads.why}), {packing} "
            f"({self.row_check.describe()})"
        )

    def __repr__(self) -> str:
        return (
            f"LocalBackend({self.model_name!r}, dtype={self.dtype}, device={self.device}, "
            f"generation={self.generation.name!r})"
        )

    def classify_many(
        self, system: str, users: Sequence[str], labels: Sequence[str]
    ) -> Iterator[Classification]:
        # No `torch.inference_mode()` around the yields: it is thread-wide state and would
        # leak into the caller's code between examples; the computing functions enter it.
        self.load()
        label_ids = self.prompts.label_ids(labels)
        longest_label = max(len(ids) for ids in label_ids)
        t0 = time.perf_counter()
        prefix = self._prefix(system)
        pending_s = time.perf_counter() - t0  # the prefix cost goes to the next example
        if self.prefix_reuse == "packed" and prefix.kv is not None:
            # Tokenize every example first: overflow errors come before any compute.
            items = [self._item(prefix, i, u, longest_label) for i, u in enumerate(users)]
            extra = sum(len(ids) - 1 for ids in label_ids)
            budget = self.pack_tokens if self.rows_independent else 1
            batch: list[Item] = []
            size = 0
            for item in items:
                batch.append(item)
                size += len(item.ids) + extra
                if size >= budget:
                    yield from self._run_packed(prefix, batch, users, labels, label_ids, pending_s)
                    pending_s, batch, size = 0.0, [], 0
            if batch:
                yield from self._run_packed(prefix, batch, users, labels, label_ids, pending_s)
        else:
            for index, user in enumerate(users):
                t = time.perf_counter()
                item = self._item(prefix, index, user, longest_label)
                scores, forwards = score_copy(
                    self.model, self.head, prefix.cache, item.ids, label_ids, self.device
                )
                self.stats["forwards"] += forwards
                latency = time.perf_counter() - t + pending_s
                pending_s = 0.0
                yield self._classification(prefix, item, user, labels, scores, latency)

    def generate(
        self, messages: Sequence[Message], options: GenerateOptions = GENERATE_DEFAULTS
    ) -> Generation:
        """Greedy decoding, or with a `temperature` above 0 temperature sampling whose draws
        come from a generator seeded with `seed` for this call alone (see `sampling`).
        `json_schema` is not enforced locally: shape the output with `prefill` and `stop`.
        Through llama.cpp where `self.generation` says so (`llamacpp`), which answers alike."""
        # local models get structure from prefill/stop, not a grammar: json_schema is unused
        max_tokens, stop, prefill = options.max_tokens, options.stop, options.prefill
        temperature, seed = options.temperature, options.seed
        check_sampling(temperature, seed)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        if self.generation.name == LLAMA_CPP:
            if self._llama is None:
                self._llama = LlamaCppGenerator(
                    gguf_file(self.resolved),
                    threads=self.threads.count,
                    max_context=self._load_options[0],
                    end_of_turn=END_OF_TURN,
                    name=self.name,
                )
            return self._llama.generate(
                chat,
                max_tokens=max_tokens,
                stop=stop,
                prefill=prefill,
                temperature=temperature,
                seed=seed,
            )
        say_once(self.generation.note)
        self.load()  # a one-off, not part of this answer's latency
        t0 = time.perf_counter()
        text = self.prompts.render(chat, add_generation_prompt=True) + prefill
        ids = self.prompts.ids(text)
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
        kwargs.update(sampling_kwargs(temperature, seed))
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
        completion, stopped = cut_at_stop(
            str(self.tokenizer.decode(new, skip_special_tokens=True)), stop
        )
        finish = "stop" if stopped else finish
        return Generation(
            text=completion,
            latency_s=time.perf_counter() - t0,
            prompt_tokens=len(ids),
            completion_tokens=len(out[0]) - len(ids),
            finish_reason=finish,
        )

    # -- prefixes ------------------------------------------------------------------------------

    @torch.inference_mode()
    def _prefix(self, system: str) -> _Prefix:
        if system in self._prefixes:
            self._prefixes.move_to_end(system)
            return self._prefixes[system]
        t0 = time.perf_counter()
        head = self.prompts.head(system)
        prefix = _Prefix(head)
        if len(head.ids) + 1 > self.max_context:
            raise PldError(
                f"the system prompt alone is {len(head.ids)} tokens, over the model's context "
                f"of {self.max_context} tokens",
                hint="shorten the instructions (or raise max_context if the model allows it)",
            )
        if head.ids:
            # The packed path computes the user turn's opening with the head, once, in a pass
            # padded to the row floor (causal: no real token sees the padding, which is
            # dropped from the cache).
            packed = self.prefix_reuse == "packed"
            ids = head.ids + (head.opening if packed else [])
            n = len(ids)
            if packed:
                ids += ids[-1:] * max(0, self.head.rows - n)
            out = self.model(
                torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1
            )
            cache = model_cache(out)
            if packed:
                prefix.kv = cache_tensors(cache, n)
            else:
                prefix.cache = cache
            self.stats["forwards"] += 1
        prefix.compute_s = time.perf_counter() - t0
        self.stats["prefix_builds"] += 1
        self.stats["prefix_s"] += prefix.compute_s
        self._prefixes[system] = prefix
        while len(self._prefixes) > self._prefix_cache_size:
            self._prefixes.popitem(last=False)
        return prefix

    def _item(self, prefix: _Prefix, index: int, user: str, label_len: int) -> Item:
        return self.prompts.item(
            prefix.head,
            index,
            user,
            label_len,
            max_context=self.max_context,
            on_overflow=self.on_overflow,
        )

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        eos = self.model.generation_config.eos_token_id
        for value in eos if isinstance(eos, list) else [eos]:
            if value is not None:
                ids.append(int(value))
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        for name in END_OF_TURN:
            tid = self.tokenizer.convert_tokens_to_ids(name)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id and tid >= 0:
                ids.append(tid)
        return list(dict.fromkeys(ids)) or [0]

    # -- scoring -------------------------------------------------------------------------------

    def _classification(
        self,
        prefix: _Prefix,
        item: Item,
        user: str,
        labels: Sequence[str],
        scores: list[float],
        latency: float,
    ) -> Classification:
        by_label = {label: float(s) for label, s in zip(labels, scores)}
        best, tie = top_label(by_label, user)
        self.stats["examples"] += 1
        return Classification(
            label=best,
            raw=best,
            scores=by_label,
            latency_s=latency,
            prompt_tokens=len(prefix.head.ids) + len(item.ids),
            completion_tokens=0,
            truncated=item.truncated,
            tie=tie,
        )

    def _suffix(self, prefix: _Prefix, item: Item) -> Suffix:
        """The example after the head and the opening, or after the head alone when it does
        not start with the opening; never after tokens it shares with other examples only."""
        assert prefix.kv is not None
        head, opening = prefix.head.ids, prefix.head.opening
        n = len(opening)
        if n and item.ids[:n] == opening and len(item.ids) > n:
            return Suffix(item.ids[n:], len(head) + n, prefix.kv)
        return Suffix(item.ids, len(head), prefix.kv_head())

    def _run_packed(
        self,
        prefix: _Prefix,
        batch: list[Item],
        users: Sequence[str],
        labels: Sequence[str],
        label_ids: list[list[int]],
        pending_s: float,
    ) -> Iterator[Classification]:
        t0 = time.perf_counter()
        suffixes = [self._suffix(prefix, item) for item in batch]
        all_scores = score_packed(
            self.model,
            self.head,
            suffixes,
            label_ids,
            split_attention=self._split_attention,
            groups=self._groups,
            device=self.device,
        )
        self.stats["forwards"] += 1
        wall = time.perf_counter() - t0
        # Each example's share of the forward pass, by its token count.
        sizes = [len(s.ids) for s in suffixes]
        total = sum(sizes)
        for i, (item, scores) in enumerate(zip(batch, all_scores)):
            latency = wall * sizes[i] / total + (pending_s if i == 0 else 0.0)
            yield self._classification(prefix, item, users[item.index], labels, scores, latency)
