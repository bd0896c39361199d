"""Generation through transformers, on `LocalBackend`'s torch model: the peer of
`llamacpp.LlamaCppGenerator`, with the same `generate` call, so that the backend hands a request
to whichever engine `llamacpp.choose_generation` picked and both answer alike.

Decoding is greedy, or with a `temperature` above 0 temperature sampling drawn by a generator
seeded for the call alone (`sampling`). It stops at an end-of-turn token (`stop_token_ids`:
dropped from the text, counted in `completion_tokens`), at `max_tokens`, or when a `stop`
string appears (the text is cut before the earliest one); `finish_reason` is "stop" or
"length".
"""

from __future__ import annotations

from ._openmp import tame_openmp_spinning

tame_openmp_spinning()

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig

from ..base import Generation, cut_at_stop
from .prompts import ChatPrompts, check_generation_fits
from .sampling import sampling_kwargs

#: Token texts that end an answer besides the model's own end-of-sequence token.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>")


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The token ids that end an answer: the model's and the tokenizer's end-of-sequence
    tokens and those of `END_OF_TURN` the vocabulary has, each once, in that order."""
    ids: list[int] = []
    eos = model.generation_config.eos_token_id
    for value in eos if isinstance(eos, list) else [eos]:
        if value is not None:
            ids.append(int(value))
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    for name in END_OF_TURN:
        tid = tokenizer.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.append(tid)
    return list(dict.fromkeys(ids)) or [0]


@dataclass(frozen=True)
class TransformersGenerator:
    """One loaded torch model's generation; the backend makes one per call (it is a handful
    of references), so it always sees the backend's current `max_context`."""

    model: Any
    tokenizer: Any
    prompts: ChatPrompts
    device: torch.device
    max_context: int
    eos_ids: list[int]

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
        t0 = time.perf_counter()
        text = self.prompts.render(chat, add_generation_prompt=True) + prefill
        ids = self.prompts.ids(text)
        check_generation_fits(len(ids), max_tokens, self.max_context)
        input_ids = torch.tensor([ids], device=self.device)
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=self.eos_ids,
            pad_token_id=self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.eos_ids[0],
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
        if new and new[-1] in self.eos_ids:
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
