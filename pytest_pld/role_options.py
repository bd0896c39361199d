"""The option table of the model roles: each non-secret option a role takes (temperature,
requests per minute, a `local:` student's dtype, ...), its type, range and help, which roles
take it, whether it goes to the backend's constructor, and whether it is for `local:` models
(which run in this process) or for served ones; with its parser (`OptionSpec.convert`,
`parse_option`) and the default `--show-config` names when it is not set.

Where each value comes from (command line, environment, pyproject.toml) and which backend gets
it is `roles`' part.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

from .errors import PldError, did_you_mean

ROLES = ("student", "teacher", "embedder")


@dataclass(frozen=True)
class OptionSpec:
    """One option of the table: what it takes, which roles take it and where it goes."""

    kind: type  # int, float or str
    low: float | None
    high: float | None
    low_open: bool
    roles: tuple[str, ...]
    to_backend: bool  # passed to the backend's constructor (else used by pytest-pld itself)
    help: str
    choices: tuple[str, ...] = ()  # the values a str option takes
    #: an option of `local:` models (which run in this process); the others are for served ones
    local: bool = False

    def convert(self, name: str, raw: Any, where: str, *, text: bool = False) -> int | float | str:
        """`raw` checked against the type and range; `text`: it was typed on a command line."""
        if self.kind is str:
            value = raw.strip().lower() if isinstance(raw, str) else raw
            if value not in self.choices:
                raise PldError(
                    f"{where}: {name} must be one of {', '.join(self.choices)}, got {raw!r}",
                    hint=self.help,
                )
            return str(value)
        if text and isinstance(raw, str):
            try:
                raw = self.kind(raw)
            except ValueError:
                raise PldError(
                    f"{where}: {name} must be {_kind_name(self.kind)}, got {raw!r}",
                    hint=self.help,
                ) from None
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
        if ok and self.kind is int:
            ok = isinstance(raw, int)
        if ok and self.low is not None:
            ok = raw > self.low if self.low_open else raw >= self.low
        if ok and self.high is not None:
            ok = raw <= self.high
        if not ok:
            raise PldError(
                f"{where}: {name} must be {_kind_name(self.kind)}{self._range()}, got {raw!r}",
                hint=self.help,
            )
        return self.kind(raw)  # type: ignore[no-any-return]

    def _range(self) -> str:
        if self.low is None:
            return ""
        low = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        return f" {low}" + (f" and <= {self.high:g}" if self.high is not None else "")


def _kind_name(kind: type) -> str:
    return "an integer" if kind is int else "a number"


_LLM = ("student", "teacher")
OPTIONS: dict[str, OptionSpec] = {
    "temperature": OptionSpec(float, 0, 2, False, _LLM, True, "sampling temperature, 0 to 2"),
    "seed": OptionSpec(int, None, None, False, _LLM, True, "sampling seed sent with requests"),
    "timeout": OptionSpec(float, 0, None, True, ROLES, True, "seconds per request"),
    "max_retries": OptionSpec(int, 0, None, False, ROLES, True, "retries per request"),
    "max_tokens": OptionSpec(
        int, 1, None, False, ("student",), True, "tokens of the student's answer"
    ),
    "concurrency": OptionSpec(
        int, 1, None, False, ("student",), True, "requests in flight at once"
    ),
    "top_logprobs": OptionSpec(
        int,
        0,
        None,
        False,
        ("student",),
        True,
        "alternatives per answer token asked for, for label scores (0: none; OpenAI allows 20)",
    ),
    "requests_per_minute": OptionSpec(
        float,
        0,
        None,
        True,
        _LLM,
        False,
        "at most this many HTTP requests a minute, retries included",
    ),
    "input_usd_per_mtok": OptionSpec(
        float, 0, None, False, ("teacher",), False, "your price per million prompt tokens"
    ),
    "output_usd_per_mtok": OptionSpec(
        float, 0, None, False, ("teacher",), False, "your price per million completion tokens"
    ),
    "batch_price_ratio": OptionSpec(
        float, 0, 1, True, ("teacher",), False, "batch price / per-request price (default 0.5)"
    ),
    "dtype": OptionSpec(
        str,
        None,
        None,
        False,
        ("student",),
        True,
        "a local: student's dtype: auto (bfloat16 where the CPU computes it natively, else "
        "float32), float32, bfloat16 or float16",
        choices=("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16"),
        local=True,
    ),
    "threads": OptionSpec(
        int,
        1,
        None,
        False,
        ("student",),
        True,
        "a local: student's torch threads (default: $PLD_THREADS, else the usable cores less "
        "those other processes keep busy); no score depends on it",
        local=True,
    ),
    "pack_tokens": OptionSpec(
        int,
        1,
        None,
        False,
        ("student",),
        True,
        "a local: student's tokens per forward pass (default 256); no score depends on it",
        local=True,
    ),
}
# names that must never be read from pyproject.toml: a pull request could point them elsewhere
ENDPOINT_WORDS = re.compile(
    r"(^|_)(url|host|endpoint|key|secret|token|password|passwd|auth|authorization)$",
    re.IGNORECASE,
)


def allowed_options(role: str) -> list[str]:
    """The options `role` takes, in the table's order."""
    return [name for name, spec in OPTIONS.items() if role in spec.roles]


def is_local_option(key: str) -> bool:
    """Whether a setting applies to local: models (else to served ones)."""
    spec = OPTIONS.get(key)
    return spec is not None and spec.local


def default_text(role: str, name: str) -> str:
    """What `--show-config` shows for the option `name` of `role` when nothing sets it."""
    if OPTIONS[name].local:
        from .backends.local.defaults import LOCAL_DEFAULTS

        return LOCAL_DEFAULTS[name]
    if name == "requests_per_minute":
        return "no limit"
    if name == "batch_price_ratio":
        return "0.5"
    if name.endswith("_usd_per_mtok"):
        return "unknown"
    if role == "embedder":
        return "the openai SDK's"
    from .backends.openai_backend import OpenAIBackend

    param = inspect.signature(OpenAIBackend.__init__).parameters.get(name)
    return repr(param.default) if param is not None else "the backend's"


def parse_option(flag: str, text: str, role: str) -> tuple[str, int | float | str]:
    """`--teacher-option temperature=0.7` -> ("temperature", 0.7); anything else is an error
    naming the flag and the allowed keys."""
    allowed = allowed_options(role)
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not raw.strip():
        raise PldError(
            f"{flag} {text!r}: expected KEY=VALUE",
            hint=f"for example {flag} {allowed[0]}=0; keys: {', '.join(allowed)}",
        )
    if name not in allowed:
        hint = f"keys for the {role}: {', '.join(allowed)}"
        if ENDPOINT_WORDS.search(name):
            hint += f"; the URL and key have their own flags: --{role}-base-url, --{role}-api-key"
        raise PldError(f"{flag}: unknown key {name!r}{did_you_mean(name, allowed)}", hint=hint)
    return name, OPTIONS[name].convert(name, raw.strip(), flag, text=True)
