"""Prompts of the `local:` backend: the chat template, the shared head of every prompt of a
system prompt, each example's tokens after it, and the labels' tokens.

The head is the rendered prompt up to the last special token before the user message: special
tokens are split off before the rest is tokenized, so the head's tokens do not depend on the
user message (checked against tokenizing a whole prompt, `Head.split_ok`). The opening is what
the chat template puts between the head and the user message's own text ("user" and a newline
in ChatML), found by tokenizing probe messages: it depends on the template alone, so examples
that start with it can share its computation without their scores depending on which other
examples a call holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import PldError

_SENTINEL = "\u2063PLD-USER-MESSAGE\u2063"
#: User messages whose tokenized tails show what every user turn starts with.
_PROBES = ("Example text, to check the tokenization.", "x", "7 probes", "Why?")


def check_generation_fits(prompt_tokens: int, max_tokens: int, context: int) -> None:
    """A PldError when a prompt and the tokens asked for after it exceed the model's context;
    both generation engines (`generation`, `llamacpp`) check a request with it."""
    if prompt_tokens + max_tokens > context:
        raise PldError(
            f"the prompt is {prompt_tokens} tokens and {max_tokens} more were asked for, over "
            f"the model's context of {context} tokens",
            hint="shorten the messages or lower max_tokens",
        )


@dataclass(frozen=True)
class Head:
    """The part of every prompt of one system prompt that comes before the user message."""

    system: str
    text: str
    ids: list[int]
    split_ok: bool  # tokenizing head and tail apart gives the same ids as the whole prompt
    opening: list[int]  # tokens the template puts before the user's text, after the head


@dataclass
class Item:
    """One example: its tokens after the head."""

    index: int
    ids: list[int]
    truncated: bool


class ChatPrompts:
    """Renders and tokenizes prompts with one model's tokenizer and chat template."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def render(self, chat: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
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

    def prompt_text(self, system: str, user: str) -> str:
        chat = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.render(chat, add_generation_prompt=True)

    def ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _special_strings(self) -> list[str]:
        tok = self.tokenizer
        specials = set(tok.all_special_tokens)
        for added in getattr(tok, "added_tokens_decoder", {}).values():
            if getattr(added, "special", False):
                specials.add(str(added))
        return [s for s in specials if s]

    def head(self, system: str) -> Head:
        rendered = self.prompt_text(system, _SENTINEL)
        at = rendered.find(_SENTINEL)
        head = rendered[:at] if at >= 0 else ""
        # Cut the shared head after the last special token before the user message (see the
        # module docstring; checked just below against tokenizing the whole prompt).
        cut = max((head.rfind(s) + len(s) for s in self._special_strings() if s in head), default=0)
        head = head[:cut]
        head_ids = self.ids(head) if head else []
        probe = self.prompt_text(system, _PROBES[0])
        whole = self.ids(probe)
        split = head_ids + self.ids(probe[len(head) :])
        ok = probe.startswith(head) and split == whole
        without = Head(system, head, head_ids, ok, [])
        tails = [self.tail_ids(without, text) or [] for text in _PROBES]
        n = 0
        while all(len(t) > n + 1 and t[n] == tails[0][n] for t in tails):
            n += 1
        return Head(system, head, head_ids, ok, tails[0][:n])

    def tail_ids(self, head: Head, user: str) -> list[int] | None:
        text = self.prompt_text(head.system, user)
        if head.split_ok and text.startswith(head.text):
            return self.ids(text[len(head.text) :])
        ids = self.ids(text)
        n = len(head.ids)
        if ids[:n] == head.ids:
            return ids[n:]
        return None

    def item(
        self,
        head: Head,
        index: int,
        user: str,
        label_len: int,
        *,
        max_context: int,
        on_overflow: str,
    ) -> Item:
        """Example `index` as tokens after the head, checked against the context (with room
        for the longest label) and cut from its end when `on_overflow` is "truncate"."""
        room = max_context - len(head.ids) - label_len
        tail = self.tail_ids(head, user)
        if tail is None:
            raise PldError(
                "the chat template renders the system prompt differently depending on the user "
                "message, so its cached prefix cannot be reused",
                hint="use prefix_reuse='copy' with a template that keeps the system prompt first",
            )
        if len(tail) <= room:
            return Item(index, tail, False)
        total = len(head.ids) + len(tail) + label_len
        if on_overflow == "error":
            raise PldError(
                f"user message #{index} makes the prompt {total} tokens (system prefix "
                f"{len(head.ids)} + user turn {len(tail)} + longest label {label_len}), "
                f"over the model's context of {max_context} tokens",
                hint="shorten the example or the rules, or run with on_overflow='truncate'",
            )
        # Truncate: keep the longest start of the user message that fits (binary search on
        # characters; the chat template's closing tokens are kept).
        lo, hi, best = 0, len(user), None
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = self.tail_ids(head, user[:mid])
            if candidate is not None and len(candidate) <= room:
                best, lo = candidate, mid + 1
            else:
                hi = mid - 1
        if best is None:
            raise PldError(
                f"even an empty user message #{index} does not fit the model's context of "
                f"{max_context} tokens after the {len(head.ids)}-token system prefix",
                hint="shorten the instructions",
            )
        return Item(index, best, True)

    def label_ids(self, labels: Sequence[str]) -> list[list[int]]:
        """Each label's tokens; refuses label sets the scoring cannot tell apart."""
        if not labels:
            raise PldError("classification needs at least one label")
        if len(set(labels)) != len(labels):
            raise PldError(f"duplicate labels in {list(labels)}")
        out: list[list[int]] = []
        for label in labels:
            ids = self.ids(label)
            if not ids:
                raise PldError(f"label {label!r} has no tokens")
            out.append(ids)
        seen: dict[tuple[int, ...], str] = {}
        for label, ids in zip(labels, out):
            if tuple(ids) in seen:
                raise PldError(
                    f"labels {seen[tuple(ids)]!r} and {label!r} have the same tokens in this "
                    "model's tokenizer, so scoring cannot tell them apart"
                )
            seen[tuple(ids)] = label
        return out
