"""Generation through llama.cpp (`llama-cpp-python`), in this process, on the model's GGUF file.

Why: the packaged models are quantised GGUF files (Q4_K_M, Q4_1). transformers de-quantises
them and computes in float32 on a CPU without native bfloat16; llama.cpp runs the quantised
weights as they are: a 1.5B teacher's StereoSet trace took a median of 13.7 s against 43.5 s
through transformers, in the same run on 2 AVX2 cores other jobs shared (BENCHMARKS.md). Label
scoring stays on torch: its scores are float32 measurements with the same bits however
examples are batched (`scoring`), which llama.cpp does not promise.

What a call does, so that it answers like the transformers path (`generation`):

- The prompt is the model's own chat template (the GGUF's `tokenizer.chat_template`, the one
  transformers reads when it converts the file) rendered by transformers' renderer through
  `ChatPrompts`, with the prefill appended, and tokenized with special tokens parsed and no
  BOS added; then plain completion (not llama.cpp's chat completion, which has no prefill).
- Decoding is greedy, or with a temperature pure temperature sampling (no top-k, top-p or
  min-p: the same distribution as `sampling.SeededSampler` and an OpenAI-compatible server
  given `temperature` alone) drawn by llama.cpp's sampler seeded for this call alone.
- It stops at an end-of-turn token (dropped from the text, counted in `completion_tokens`),
  at `max_tokens`, or when a `stop` string appears (the text is cut before the earliest one);
  `finish_reason` is "stop" or "length" as on the transformers path.
- A prompt that starts like the previous call's (the teacher prompts of one suite share their
  task header; a repair call repeats the whole first exchange) reuses that prefix's key-value
  cache (llama-cpp-python's own prefix matching) and computes only the rest: with answers of
  13-19 tokens (prefill mode), the 300-400 prompt tokens are most of a trace's computation.
  That changes no bit: the last prompt token's logits of a 415-token prompt were identical
  whether it was computed whole or after reused prefixes of 37 to 414 tokens, and with 1 or 2
  threads (Q4_K_M and Q4_1, AVX2; `tests/test_llamacpp.py` checks that a greedy answer is the
  same after another call and in a new context). So a greedy answer depends on the prompt, the
  model and this module's settings only, as the response cache assumes.

The context (key-value cache) is allocated for the longest prompt seen so far, at least
`MIN_CONTEXT` tokens, and re-created larger when a longer request comes (loading the model
again from the memory-mapped file: about a second). A request longer than the model's trained
context (or `max_context`) is a PldError naming the token counts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import PldError
from ..base import Generation, cut_at_stop
from ..packaged import ResolvedModel
from .prompts import ChatPrompts, check_generation_fits

LLAMA_CPP = "llama.cpp"
TRANSFORMERS = "transformers"
GENERATION_CHOICES = ("auto", LLAMA_CPP, TRANSFORMERS)
DISTRIBUTION = "llama-cpp-python"
#: Bumped when how this module drives llama.cpp changes a generated text (the sampler chain,
#: the prompt batch size), so that cached generations of the older settings miss.
SETTINGS_VERSION = 1
#: Tokens per decode call of a prompt (llama.cpp's default); fixed, since a prompt split into
#: other batches may round differently.
N_BATCH = 512
#: The smallest context allocated (then in steps of 1,024): every `pld teach` call of the
#: shipped suites fits, so a run loads the model once (the longest teacher prompt of a train
#: split is ContractNLI's, 781 tokens in json mode; a repair call adds the first answer and the
#: repair request, and 200 tokens to generate: under 1,300), and a 1.5B's key-value cache of
#: 4,096 tokens is about 115 MB.
MIN_CONTEXT = 4096
#: llama.cpp's `LLAMA_DEFAULT_SEED` (0xFFFFFFFF) asks for a random seed; seeds are taken
#: modulo this, so every seed a user gives stays repeatable.
_SEED_MODULUS = 0xFFFFFFFF
INSTALL_HINT = (
    f"pip install {DISTRIBUTION} (it builds llama.cpp from source once, several minutes; pip "
    "caches the wheel)"
)


def installed_version() -> str | None:
    """The installed llama-cpp-python's version, or None; without importing it."""
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a source checkout on the path
        return "unknown"


def engine_identity(version: str | None) -> dict[str, Any]:
    """What names a llama.cpp generation in a cache key: llama-cpp-python's version (it pins
    the llama.cpp source, whose kernels decide the text) and `SETTINGS_VERSION`."""
    return {"engine": LLAMA_CPP, DISTRIBUTION: version, "settings": SETTINGS_VERSION}


@dataclass(frozen=True)
class GenerationEngine:
    """Which engine a `local:` backend generates with, and why."""

    name: str  # LLAMA_CPP or TRANSFORMERS
    #: names the engine in the generation cache key (`LocalBackend.generation_identity`)
    identity: dict[str, Any] = field(default_factory=dict)
    #: said once, at the first generation: what the transformers fallback costs, and the fix
    note: str = ""


def choose_generation(requested: str, resolved: ResolvedModel, device: str) -> GenerationEngine:
    """`requested` "auto": llama.cpp for a GGUF model (packaged or a `.gguf` path) on the CPU
    where llama-cpp-python is installed; transformers for a transformers folder, on a GPU
    (where torch generates fast and this llama.cpp build would not use it), or without
    llama-cpp-python, with a note saying what that costs. "llama.cpp" where it cannot run is
    a PldError; "transformers" is always possible."""
    if requested not in GENERATION_CHOICES:
        raise PldError(
            f"generation must be one of {', '.join(GENERATION_CHOICES)}, not {requested!r}"
        )
    version = installed_version()
    if requested == TRANSFORMERS:
        return GenerationEngine(TRANSFORMERS, {"engine": TRANSFORMERS})
    gguf = resolved.folder is None
    if requested == LLAMA_CPP:
        if not gguf:
            raise PldError(
                "generation='llama.cpp' needs a GGUF model; this is a transformers folder",
                path=resolved.folder,
                hint="name a packaged model or a .gguf file, or use generation='transformers'",
            )
        if version is None:
            raise PldError("generation='llama.cpp' needs llama-cpp-python", hint=INSTALL_HINT)
    elif not gguf or device != "cpu":
        return GenerationEngine(TRANSFORMERS, {"engine": TRANSFORMERS})
    elif version is None:
        return GenerationEngine(
            TRANSFORMERS,
            {"engine": TRANSFORMERS},
            note=f"note: local:{resolved.name} generates through transformers (the weights "
            "de-quantised), 2-4x slower on a CPU than llama.cpp: a 1.5B teacher's StereoSet "
            "trace took a median of 44 s against 14 s, same run, 2 shared AVX2 cores. For the "
            "fast path: " + INSTALL_HINT,
        )
    return GenerationEngine(LLAMA_CPP, engine_identity(version))


_said: set[str] = set()


def say_once(message: str) -> None:
    """Print `message` to stderr the first time this process says it."""
    if message and message not in _said:
        _said.add(message)
        print(message, file=sys.stderr, flush=True)


def llama_seed(seed: int | None) -> int:
    """The sampler seed of one draw: the given seed (modulo llama.cpp's 32-bit range, below
    its "random" value), or a fresh random one for an unseeded draw."""
    if seed is None:
        return secrets.randbelow(_SEED_MODULUS)
    return int(seed) % _SEED_MODULUS


class _GgufTemplate:
    """The GGUF's chat template behind the two members `ChatPrompts.render` uses, rendered
    by transformers' own renderer with the special tokens transformers passes."""

    def __init__(self, template: str | None, special_tokens: dict[str, str]) -> None:
        self.chat_template = template
        self._special = special_tokens

    def apply_chat_template(
        self, chat: list[dict[str, str]], *, add_generation_prompt: bool, tokenize: bool
    ) -> str:
        try:  # transformers' own renderer: the prompt text of its path, exactly
            from transformers.utils.chat_template_utils import render_jinja_template
        except ImportError as exc:  # an older transformers renders inside its tokenizer only
            raise PldError(
                f"rendering the GGUF's chat template needs a newer transformers: {exc}",
                hint="pip install -U transformers, or generate with generation='transformers'",
            ) from exc
        assert not tokenize
        rendered = render_jinja_template(
            conversations=[chat],
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            **self._special,
        )
        # (texts, generation indices) in transformers 4.5x-5.x
        texts = rendered[0] if isinstance(rendered, tuple) else rendered
        return str(texts[0] if isinstance(texts, list) else texts)


class LlamaCppGenerator:
    """One GGUF model in llama.cpp, loaded on the first `generate`."""

    def __init__(
        self,
        gguf: Path,
        *,
        threads: int,
        max_context: int | None = None,
        end_of_turn: Sequence[str] = (),
        name: str = "",
        log: Callable[[str], None] = say_once,
    ) -> None:
        """threads: llama.cpp's threads for the prompt and for each generated token.
        max_context: refuse requests longer than this (default: the model's trained context).
        end_of_turn: token texts that end the answer besides the GGUF's own end-of-generation
            tokens (the same names the transformers path stops at).
        name: what the first load's note calls the model (default: the file's name)."""
        self.gguf = gguf
        self.name = name or gguf.name
        self.threads = max(1, int(threads))
        self.max_context = int(max_context) if max_context else None
        self._end_of_turn_names = tuple(end_of_turn)
        self._log = log
        self._llm: Any = None
        self._n_ctx = 0
        self._prompts: ChatPrompts | None = None
        self._end_ids: frozenset[int] = frozenset()
        self.load_s = 0.0
        self.loads = 0

    # -- loading -------------------------------------------------------------------------------

    def _load(self, need: int) -> Any:
        """The model with a context of at least `need` tokens (see the module docstring)."""
        if self._llm is not None and need <= self._n_ctx:
            return self._llm
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # checked by the caller; a broken install lands here
            raise PldError(f"llama-cpp-python does not import: {exc}", hint=INSTALL_HINT) from exc
        n_ctx = max(MIN_CONTEXT, -(-need // 1024) * 1024)  # `need` rounded up to 1,024
        if self.max_context:
            n_ctx = min(n_ctx, max(need, self.max_context))
        self.close()
        t0 = time.perf_counter()
        self._llm = Llama(
            model_path=str(self.gguf),
            n_ctx=n_ctx,
            n_batch=N_BATCH,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
        )
        self._n_ctx = n_ctx
        self.load_s += time.perf_counter() - t0
        self.loads += 1
        if self._prompts is None:
            self._prompts = ChatPrompts(_GgufTemplate(*self._template()))
            self._end_ids = self._end_of_turn_ids()
        if self.loads == 1:
            self._log(
                f"generating with {LLAMA_CPP} ({DISTRIBUTION} {installed_version()}, "
                f"{self.threads} thread{'s' if self.threads != 1 else ''}): {self.name}"
            )
        return self._llm

    def _template(self) -> tuple[str | None, dict[str, str]]:
        llm = self._llm
        template = llm.metadata.get("tokenizer.chat_template")
        special = {}
        for name, token_id in (("bos_token", llm.token_bos()), ("eos_token", llm.token_eos())):
            if token_id is not None and token_id >= 0:
                special[name] = self._piece(token_id)
        return template, special

    def _piece(self, token_id: int) -> str:
        return bytes(self._llm.detokenize([token_id], special=True)).decode("utf-8", "replace")

    def _end_of_turn_ids(self) -> frozenset[int]:
        """The named end-of-turn tokens this vocabulary has (as one special token each)."""
        ids = set()
        for name in self._end_of_turn_names:
            found = self._ids(name)
            if len(found) == 1 and self._piece(found[0]) == name:
                ids.add(found[0])
        return frozenset(ids)

    def _ends_turn(self, token: int) -> bool:
        import llama_cpp

        return token in self._end_ids or bool(
            llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token)
        )

    def _ids(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def trained_context(self) -> int:
        return int(self._load(1)._model.n_ctx_train())

    # -- generation ----------------------------------------------------------------------------

    def generate(
        self,
        chat: list[dict[str, str]],
        *,
        max_tokens: int,
        stop: Sequence[str],
        prefill: str,
        temperature: float | None,
        seed: int | None,
    ) -> Generation:
        from .sampling import is_sampled  # here: that module imports torch, this one does not

        self._load(1)  # the first call's load is a one-off, not part of its latency
        t0 = time.perf_counter()
        assert self._prompts is not None
        ids = self._ids(self._prompts.render(chat, add_generation_prompt=True) + prefill)
        check_generation_fits(len(ids), max_tokens, self.max_context or self.trained_context())
        if max_tokens < 1:
            return Generation("", time.perf_counter() - t0, len(ids), 0, "length")
        llm = self._load(len(ids) + max_tokens)
        sampled = is_sampled(temperature)
        llm.set_seed(llama_seed(seed) if sampled else 0)
        new: list[int] = []
        finish = "length"
        stops = [s for s in stop if s]
        for token in llm.generate(
            ids,
            temp=float(temperature) if sampled and temperature else 0.0,
            top_k=0,  # no cut-offs: pure temperature sampling (top_k <= 0 is off)
            top_p=1.0,
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
            reset=True,  # keeps the prefix shared with the previous call (module docstring)
        ):
            new.append(int(token))
            if self._ends_turn(token):
                finish = "stop"
                break
            if len(new) >= max_tokens or (stops and any(s in self._text(new) for s in stops)):
                break
        text, stopped = cut_at_stop(self._text(new[:-1] if finish == "stop" else new), stops)
        return Generation(
            text=text,
            latency_s=time.perf_counter() - t0,
            prompt_tokens=len(ids),
            completion_tokens=len(new),
            finish_reason="stop" if stopped else finish,
        )

    def _text(self, tokens: list[int]) -> str:
        # special=False leaves control tokens out, as transformers' skip_special_tokens does
        raw = bytes(self._llm.detokenize(tokens, special=False))
        return raw.decode("utf-8", errors="replace")

    def close(self) -> None:
        if self._llm is not None:
            self._llm.close()
            self._llm = None
            self._n_ctx = 0
