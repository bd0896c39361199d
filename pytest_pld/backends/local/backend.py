"""`LocalBackend`: a transformers causal LM in this process (CPU, or a GPU where present).

See the package docstring for how it classifies; the pieces live next to this module:
`loading` (the torch model), `prompts` (chat template and tokens), `attention` (the
packed-prefix attention) and `scoring` (a system prompt's prefix and the label scores of a
forward pass). This class keeps the scoring loop; `generate` hands each request to an engine:
llama.cpp for a GGUF model where llama-cpp-python is installed (`llamacpp`), else transformers
on the torch model (`generation`).

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
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from ...errors import PldError
from ...labels import top_label
from ..base import (
    GENERATE_DEFAULTS,
    Classification,
    GenerateOptions,
    Generation,
    Message,
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
from .attention import ATTN_IMPLEMENTATION, flash_cpu, register_attention
from .defaults import PACK_TOKENS
from .generation import END_OF_TURN, TransformersGenerator, stop_token_ids
from .identity import SCORING_VERSION
from .llamacpp import LLAMA_CPP, LlamaCppGenerator, choose_generation, say_once
from .loading import load_causal_lm
from .prompts import ChatPrompts, Item
from .rows import RowCheck, check_rows
from .sampling import check_sampling
from .scoring import OutputHead, Prefix, cache_tensors, model_cache, score_copy, score_packed
from .threads import CpuWatch, ThreadChoice, choose_threads

__all__ = ["DEFAULT_MODEL", "LocalBackend"]

#: Model types whose attention was checked against a plain forward pass (tests/test_local_backend).
PACKED_MODEL_TYPES = frozenset({"llama", "qwen2"})
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


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
        self._prefixes: OrderedDict[str, Prefix] = OrderedDict()
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
        self.model, custom_attention = load_causal_lm(
            self.folder, dtype=self.dtype, device=self.device, attention=ATTN_IMPLEMENTATION
        )
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
        self._eos_ids = stop_token_ids(self.model, self.tokenizer)
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
        Through llama.cpp where `self.generation` says so (`llamacpp`), else through
        transformers (`generation`); both answer alike."""
        # local models get structure from prefill/stop, not a grammar: json_schema is unused
        check_sampling(options.temperature, options.seed)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self._generator().generate(
            chat,
            max_tokens=options.max_tokens,
            stop=options.stop,
            prefill=options.prefill,
            temperature=options.temperature,
            seed=options.seed,
        )

    def _generator(self) -> LlamaCppGenerator | TransformersGenerator:
        """The engine of `generate`, started on first use (its start is a one-off, not part
        of the answer's latency)."""
        if self.generation.name == LLAMA_CPP:
            if self._llama is None:
                self._llama = LlamaCppGenerator(
                    gguf_file(self.resolved),
                    threads=self.threads.count,
                    max_context=self._load_options[0],
                    end_of_turn=END_OF_TURN,
                    name=self.name,
                )
            return self._llama
        say_once(self.generation.note)
        self.load()
        return TransformersGenerator(
            self.model, self.tokenizer, self.prompts, self.device, self.max_context, self._eos_ids
        )

    # -- prefixes ------------------------------------------------------------------------------

    @torch.inference_mode()
    def _prefix(self, system: str) -> Prefix:
        if system in self._prefixes:
            self._prefixes.move_to_end(system)
            return self._prefixes[system]
        t0 = time.perf_counter()
        head = self.prompts.head(system)
        prefix = Prefix(head)
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

    def _item(self, prefix: Prefix, index: int, user: str, label_len: int) -> Item:
        return self.prompts.item(
            prefix.head,
            index,
            user,
            label_len,
            max_context=self.max_context,
            on_overflow=self.on_overflow,
        )

    # -- scoring -------------------------------------------------------------------------------

    def _classification(
        self,
        prefix: Prefix,
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

    def _run_packed(
        self,
        prefix: Prefix,
        batch: list[Item],
        users: Sequence[str],
        labels: Sequence[str],
        label_ids: list[list[int]],
        pending_s: float,
    ) -> Iterator[Classification]:
        t0 = time.perf_counter()
        suffixes = [prefix.suffix(item) for item in batch]
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
