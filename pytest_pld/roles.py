"""Model roles: the student, the teacher and the embedder each with its endpoint and options.

A team runs the teacher at a hosted API and the student on its own OpenAI-compatible server, so
each role resolves its own URL, key and options:

- URLs and keys come only from the command line or the environment (`PLD_<ROLE>_BASE_URL`,
  `PLD_<ROLE>_API_KEY`, falling back to `OPENAI_BASE_URL` / `OPENAI_API_KEY`), never from a
  file a pull request can change. The shared `OPENAI_API_KEY` is only sent to the shared
  host (`OPENAI_BASE_URL`, else api.openai.com): a role pointed at another host by its own URL
  gets its own key or none, so a key never travels to a server it was not meant for.
- Non-secret options (temperature, requests per minute, ...) come from the command line
  (`--teacher-option temperature=0.7`), the environment (`PLD_TEACHER_TEMPERATURE=0.7`) or
  `[tool.pld.teacher]` in pyproject.toml, first that is set; a URL or key there is refused.
  A `local:` student takes its own options (`dtype`, `threads`, `pack_tokens`) the same ways;
  the others apply to served models only.

Every value remembers where it came from, for `--show-config`; keys are shown masked.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .backends import Backend, Configured, get_backend, parse_model_name
from .errors import PldError, did_you_mean

ROLES = ("student", "teacher", "embedder")
SHARED_URL_ENV = "OPENAI_BASE_URL"
SHARED_KEY_ENV = "OPENAI_API_KEY"
#: where the openai SDK (and the openai: backend) go when no URL is set
DEFAULT_HOST = "api.openai.com"
#: the key sent to a server that needs none (vLLM, llama.cpp and transformers serve take any)
NO_KEY = "no-key"


@dataclass(frozen=True)
class OptionSpec:
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
_ENDPOINT_WORDS = re.compile(
    r"(^|_)(url|host|endpoint|key|secret|token|password|passwd|auth|authorization)$",
    re.IGNORECASE,
)


def allowed_options(role: str) -> list[str]:
    return [name for name, spec in OPTIONS.items() if role in spec.roles]


@dataclass(frozen=True)
class Setting:
    value: Any
    source: str  # "flag --teacher-base-url", "env PLD_TEACHER_API_KEY", "pyproject ...", ...


@dataclass(frozen=True)
class RoleFlags:
    """What the command line said about one role."""

    base_url: str | None = None
    api_key: str | None = None
    options: Sequence[str] = ()  # KEY=VALUE strings, as typed


@dataclass(frozen=True)
class RoleConfig:
    role: str
    base_url: Setting | None
    api_key: Setting | None
    options: Mapping[str, Setting] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        found = self.options.get(name)
        return found.value if found is not None else default

    def endpoint(self) -> dict[str, Any]:
        """base_url and api_key for an openai client (only those that are set)."""
        out: dict[str, Any] = {}
        if self.base_url is not None:
            out["base_url"] = self.base_url.value
        if self.api_key is not None:
            out["api_key"] = self.api_key.value
        return out

    def backend_options(self, name: str) -> dict[str, Any]:
        """Constructor options for the backend `name` in this role. A `local:` model runs in
        this process and takes the local options (`dtype`, `threads`, `pack_tokens`) only; a
        served model takes the endpoint and the other options. A setting given on the command
        line that does not apply to `name` is an error (it would be silently ignored
        otherwise); ones from the environment or pyproject.toml are project-wide defaults and
        apply to the models they fit."""
        provider, _ = parse_model_name(name)
        local = provider == "local"
        wrong = [
            s.source
            for key, s in self._named_settings()
            if s.source.startswith("flag") and _is_local(key) != local
        ]
        if wrong and local:
            raise PldError(
                f"the {self.role} {name} runs in this process; {', '.join(wrong)} only "
                "apply to openai: models",
                hint=f"drop the flag, or name an openai: model as the {self.role}",
            )
        if wrong:
            raise PldError(
                f"{', '.join(wrong)} only apply to local: models, and the {self.role} {name} "
                "is not one",
                hint=f"drop the flag, or name a local: model as the {self.role}",
            )
        options = {k: s.value for k, s in self.options.items() if OPTIONS[k].to_backend}
        if local:
            return {k: v for k, v in options.items() if OPTIONS[k].local}
        out = self.endpoint()
        if provider == "openai" and "api_key" not in out:
            # a placeholder, so the backend does not read OPENAI_API_KEY itself and send it
            # to a host this role kept it from (servers without auth accept any key)
            out["api_key"] = NO_KEY
        out.update({k: v for k, v in options.items() if not OPTIONS[k].local})
        return out

    def make_backend(self, name: str) -> Backend:
        """The backend `name` with this role's endpoint and options, rate-limited when
        `requests_per_minute` is set."""
        self.check_endpoint(name)
        backend = get_backend(name, **self.backend_options(name))
        rpm = self.option("requests_per_minute")
        if rpm is not None and parse_model_name(name)[0] != "local":
            from .ratelimit import RateLimitedBackend

            return RateLimitedBackend(backend, float(rpm))
        return backend

    def factory(self, name: str) -> Callable[[str], Backend]:
        """A factory for `runner.LazyBackend`: `get_backend` itself, with the local options
        when there are any, for a local model (so it keeps its cheap, load-free identity)."""
        options = self.backend_options(name)  # a flag that does not apply is an error now
        if parse_model_name(name)[0] == "local":
            return Configured(options) if options else get_backend
        return self.make_backend

    def check_endpoint(self, name: str) -> None:
        """A hosted model without a URL goes to api.openai.com, which needs a key: say which
        variables would configure this role rather than fail at the first request."""
        provider, _ = parse_model_name(name)
        if provider != "openai" or self.api_key is not None:
            return
        host = urlsplit(self.base_url.value).hostname if self.base_url else DEFAULT_HOST
        if host == DEFAULT_HOST:
            up = self.role.upper()
            raise PldError(
                f"the {self.role} {name} has no endpoint: without a URL it would go to "
                f"https://{DEFAULT_HOST}/v1, and there is no key for it",
                hint=f"set PLD_{up}_BASE_URL (your server, e.g. http://127.0.0.1:8000/v1) or "
                f"PLD_{up}_API_KEY / {SHARED_KEY_ENV} in the environment, or pass "
                f"--{self.role}-base-url",
            )

    def lines(self, model: str | None = None) -> list[str]:
        """The resolved configuration, one line per value with its source; keys masked."""
        head = f"{self.role}: {model}" if model else f"{self.role}: (no model named)"
        out = [head]
        url = self.base_url
        out.append(
            f"  base_url  {url.value}  ({url.source})"
            if url
            else f"  base_url  https://{DEFAULT_HOST}/v1  (default)"
        )
        key = self.api_key
        out.append(f"  api_key   {mask(key.value)}  ({key.source})" if key else "  api_key   none")
        for name in allowed_options(self.role):
            s = self.options.get(name)
            if s is not None:
                out.append(f"  {name}  {s.value}  ({s.source})")
            else:
                out.append(f"  {name}  {_default_text(self.role, name)}  (default)")
        if model and ":" in model and not model.startswith("openai:"):
            out.append(f"  note: {model} is not an openai: model; the endpoint is not used")
        elif model and ":" not in model and not model.startswith("("):
            out.append(f"  note: {model} runs in this process; the endpoint is not used")
        out.extend(f"  note: {n}" for n in self.notes)
        return out

    def _named_settings(self) -> list[tuple[str, Setting]]:
        named = [("base_url", self.base_url), ("api_key", self.api_key), *self.options.items()]
        return [(key, s) for key, s in named if s is not None]


def _is_local(key: str) -> bool:
    """Whether a setting applies to local: models (else to served ones)."""
    spec = OPTIONS.get(key)
    return spec is not None and spec.local


@dataclass(frozen=True)
class ModelRoles:
    """The three roles, resolved once per command."""

    by_role: Mapping[str, RoleConfig]

    def __getitem__(self, role: str) -> RoleConfig:
        return self.by_role[role]

    def lines(self, models: Mapping[str, str | None] | None = None) -> list[str]:
        models = models or {}
        out: list[str] = []
        for role in ROLES:
            out.extend(self.by_role[role].lines(models.get(role)))
        return out


def mask(key: str) -> str:
    """Enough of a key to tell two apart (its last 4 characters, for long keys), never more."""
    return f"***{key[-4:]} ({len(key)} chars)" if len(key) >= 20 else "***"


def _default_text(role: str, name: str) -> str:
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
        if _ENDPOINT_WORDS.search(name):
            hint += f"; the URL and key have their own flags: --{role}-base-url, --{role}-api-key"
        raise PldError(f"{flag}: unknown key {name!r}{did_you_mean(name, allowed)}", hint=hint)
    return name, OPTIONS[name].convert(name, raw.strip(), flag, text=True)


def read_pyproject_roles(root: Path | None) -> tuple[dict[str, dict[str, Setting]], list[str]]:
    """The `[tool.pld.<role>]` tables of the project's pyproject.toml, checked, and notes."""
    out: dict[str, dict[str, Setting]] = {role: {} for role in ROLES}
    if root is None:
        return out, []
    path = root / "pyproject.toml"
    if not path.is_file():
        return out, []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PldError(f"cannot read it: {exc}", path=path) from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            if "tool.pld" not in text:
                return out, []
            note = f"{path}: [tool.pld.*] options skipped: Python 3.10 reads TOML with tomli (pip install tomli)"
            return out, [note]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PldError(f"not valid TOML: {exc}", path=path) from None
    tool = data.get("tool", {}).get("pld", {})
    if not isinstance(tool, Mapping):
        raise PldError("expected a table", path=path, key="tool.pld")
    for role in ROLES:
        table = tool.get(role)
        if table is None:
            continue
        where = f"tool.pld.{role}"
        if not isinstance(table, Mapping):
            raise PldError("expected a table of options", path=path, key=where)
        allowed = allowed_options(role)
        for name, value in table.items():
            if _ENDPOINT_WORDS.search(name) and name not in allowed:
                raise PldError(
                    f"{name} is refused here: a pull request can change pyproject.toml and "
                    "would send requests (and the key) elsewhere",
                    path=path,
                    key=f"{where}.{name}",
                    hint=f"set PLD_{role.upper()}_BASE_URL / PLD_{role.upper()}_API_KEY in "
                    f"the environment (CI secrets), or pass --{role}-base-url",
                )
            if name not in allowed:
                raise PldError(
                    f"unknown option{did_you_mean(name, allowed)}",
                    path=path,
                    key=f"{where}.{name}",
                    hint=f"options for the {role}: {', '.join(allowed)}",
                )
            try:
                converted = OPTIONS[name].convert(name, value, f"{where}.{name}")
            except PldError as exc:
                raise PldError(exc.message, path=path, hint=exc.hint) from None
            out[role][name] = Setting(converted, f"pyproject [{where}]")
    return out, []


def resolve_roles(
    root: Path | None,
    flags: Mapping[str, RoleFlags] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    flag_prefix: str = "--",
) -> ModelRoles:
    """Resolve every role: command line over environment over pyproject.toml over defaults.
    `flag_prefix`: how the flags are spelled (`--pld-` under pytest), for messages."""
    env = os.environ if environ is None else environ
    flags = flags or {}
    from_file, notes = read_pyproject_roles(root)
    shared_url = env.get(SHARED_URL_ENV) or None
    shared_host = urlsplit(shared_url).hostname if shared_url else DEFAULT_HOST
    by_role: dict[str, RoleConfig] = {}
    for role in ROLES:
        f = flags.get(role, RoleFlags())
        up = role.upper()
        role_notes = list(notes)
        url = _first(
            (f.base_url, f"flag {flag_prefix}{role}-base-url"),
            (env.get(f"PLD_{up}_BASE_URL"), f"env PLD_{up}_BASE_URL"),
            (shared_url, f"env {SHARED_URL_ENV}"),
        )
        if url is not None:
            url = Setting(url.value.rstrip("/"), url.source)
        key = _first(
            (f.api_key, f"flag {flag_prefix}{role}-api-key"),
            (env.get(f"PLD_{up}_API_KEY"), f"env PLD_{up}_API_KEY"),
        )
        shared_key = env.get(SHARED_KEY_ENV)
        if key is None and shared_key:
            host = urlsplit(url.value).hostname if url else DEFAULT_HOST
            if host == shared_host:
                key = Setting(shared_key, f"env {SHARED_KEY_ENV}")
            else:
                role_notes.append(
                    f"{SHARED_KEY_ENV} is not sent to {host} (it is for {shared_host}); set "
                    f"PLD_{up}_API_KEY if that server needs a key"
                )
        options = dict(from_file[role])
        for name in allowed_options(role):
            var = f"PLD_{up}_{name.upper()}"
            raw = env.get(var)
            if raw:
                options[name] = Setting(
                    OPTIONS[name].convert(name, raw, var, text=True), f"env {var}"
                )
        for text in f.options:
            flag = f"{flag_prefix}{role}-option"
            name, value = parse_option(flag, text, role)
            options[name] = Setting(value, f"flag {flag}")
        by_role[role] = RoleConfig(role, url, key, options, tuple(role_notes))
    return ModelRoles(by_role)


def _first(*candidates: tuple[str | None, str]) -> Setting | None:
    for value, source in candidates:
        if value:
            return Setting(value, source)
    return None
