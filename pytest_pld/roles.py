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
  the others apply to served models only. The options themselves (type, range, which roles
  take them, their parser and defaults) are the table in `role_options`.

Every value remembers where it came from, for `--show-config`; keys are shown masked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .backends import Backend, Configured, get_backend, parse_model_name
from .errors import PldError, did_you_mean
from .role_options import (
    ENDPOINT_WORDS,
    OPTIONS,
    ROLES,
    allowed_options,
    default_text,
    is_local_option,
    parse_option,
)

SHARED_URL_ENV = "OPENAI_BASE_URL"
SHARED_KEY_ENV = "OPENAI_API_KEY"
#: where the openai SDK (and the openai: backend) go when no URL is set
DEFAULT_HOST = "api.openai.com"
#: the key sent to a server that needs none (vLLM, llama.cpp and transformers serve take any)
NO_KEY = "no-key"


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
            if s.source.startswith("flag") and is_local_option(key) != local
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
                out.append(f"  {name}  {default_text(self.role, name)}  (default)")
        if model and ":" in model and not model.startswith("openai:"):
            out.append(f"  note: {model} is not an openai: model; the endpoint is not used")
        elif model and ":" not in model and not model.startswith("("):
            out.append(f"  note: {model} runs in this process; the endpoint is not used")
        out.extend(f"  note: {n}" for n in self.notes)
        return out

    def _named_settings(self) -> list[tuple[str, Setting]]:
        named = [("base_url", self.base_url), ("api_key", self.api_key), *self.options.items()]
        return [(key, s) for key, s in named if s is not None]


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
            if ENDPOINT_WORDS.search(name) and name not in allowed:
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
