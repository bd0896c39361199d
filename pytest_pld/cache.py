"""The response cache: sqlite in the project's `.pld/` folder, keyed by everything that changes
an answer.

A key is the sha256 of canonical JSON of the backend identity (provider, model, weights digest,
decoding parameters), the operation ("classify" or "generate" and its parameters) and its
inputs (rendered system prompt, user message, label set or chat messages). Two runs that would
send the same request to the same model share an entry; changing any of those changes the key.

Several writers are expected (pytest-xdist workers, a `pld run` next to a pytest run), so the
database runs in WAL mode with a busy timeout, every write is its own short transaction, and
writes are `INSERT OR REPLACE` (two workers that computed the same answer simply agree). The
runner stores each result as soon as it has it, so an interrupted run resumes from what
finished.

The cache is disposable: a file that is not a readable cache database is moved aside and
rebuilt, with a warning that says where the old file went.

Secrets never enter it: `make_key` refuses identities with key-like fields, and backends keep
API keys out of `identity()`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .backends.base import GENERATE_DEFAULTS, Classification, GenerateOptions, Generation, Message
from .errors import PldError
from .plain import to_plain

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "CACHE_FORMAT",
    "MODES",
    "CacheRebuiltWarning",
    "ResponseCache",
    "classify_key",
    "generate_key",
    "make_key",
]

#: Bumped when the key recipe or the stored value format changes; old entries then miss.
CACHE_FORMAT = 1
_SCHEMA_VERSION = 1  # sqlite `user_version` of the table layout below
MODES = ("use", "refresh", "off")
Mode = Literal["use", "refresh", "off"]
Value = Classification | Generation

# Field names that look like credentials. Identity dicts are built by backends; this is a guard
# against one that forgets, not the only line of defence.
_SECRET_FIELD = re.compile(
    r"(^|_)(api_?key|secret|password|passwd|authorization|bearer|token)$", re.IGNORECASE
)
_BUSY_TIMEOUT_MS = 30_000
_CHUNK = 500  # keys per SELECT ... IN (...), below sqlite's variable limit


class CacheRebuiltWarning(UserWarning):
    """The cache file was unreadable and has been moved aside and rebuilt."""


# --------------------------------------------------------------------------------------- keys


def _check_no_secrets(obj: Any, where: str = "identity") -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_FIELD.search(k):
                raise ValueError(
                    f"{where}.{k} looks like a credential; it must not be part of a cache key"
                )
            _check_no_secrets(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_no_secrets(v, f"{where}[{i}]")


def canonical_json(obj: Any) -> str:
    return json.dumps(
        to_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def make_key(identity: Mapping[str, Any], operation: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the backend identity and the operation."""
    _check_no_secrets(identity)
    payload = {"format": CACHE_FORMAT, "identity": identity, "operation": operation}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def classify_key(identity: Mapping[str, Any], system: str, user: str, labels: Sequence[str]) -> str:
    """Key of one classification. Label order counts: it is part of the rendered prompt."""
    return make_key(
        identity, {"kind": "classify", "system": system, "user": user, "labels": list(labels)}
    )


def generate_key(
    identity: Mapping[str, Any],
    messages: Sequence[Message | Mapping[str, str]],
    options: GenerateOptions = GENERATE_DEFAULTS,
) -> str:
    """Key of one generation, with every parameter that changes the text.

    A sampled answer is keyed by its temperature and seed, so two draws (different seeds) are
    never served one cached answer. Greedy calls leave both out: their keys are the ones
    written before sampling existed, and those cached answers stay valid."""
    msgs = [
        {"role": m.role, "content": m.content} if isinstance(m, Message) else dict(m)
        for m in messages
    ]
    operation: dict[str, Any] = {
        "kind": "generate",
        "messages": msgs,
        "max_tokens": options.max_tokens,
        "stop": list(options.stop),
        "prefill": options.prefill,
        "json_schema": options.json_schema,
    }
    # the key's bits are pinned (tests/test_cache.py): users' caches must keep hitting
    if options.temperature is not None:
        operation["temperature"] = options.temperature
    if options.seed is not None:
        operation["seed"] = options.seed
    return make_key(identity, operation)


# ------------------------------------------------------------------------------------- values


def encode_value(value: Value) -> str:
    if isinstance(value, Classification):
        kind = "classification"
    elif isinstance(value, Generation):
        kind = "generation"
    else:
        raise TypeError(
            f"cannot cache {type(value).__name__}; expected Classification or Generation"
        )
    return canonical_json({"type": kind, "data": value})


def decode_value(text: str) -> Value:
    obj = json.loads(text)
    cls: type[Classification | Generation] = (
        Classification if obj["type"] == "classification" else Generation
    )
    names = {f.name for f in dataclasses.fields(cls)}
    # Fields added later get their defaults; fields removed later are ignored.
    return cls(**{k: v for k, v in obj["data"].items() if k in names})


# -------------------------------------------------------------------------------------- cache


class ResponseCache:
    """`get_many(keys)` / `put(key, value)` over a sqlite file.

    mode "use" reads and writes, "refresh" ignores what is stored but writes new answers,
    "off" neither reads nor writes (and creates no file). Safe to share between threads; each
    process (a fork included) opens its own connection.
    """

    def __init__(self, path: str | Path, mode: Mode | str = "use") -> None:
        if mode not in MODES:
            raise PldError(f"unknown cache mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
        self.path = Path(path)
        self.mode: str = mode
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        if mode != "off":
            with self._lock:
                self._connection()

    # -- connection -------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, so each statement is its own short transaction.
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown cache schema version {version}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY,"
                " value TEXT NOT NULL,"
                " created_at REAL NOT NULL)"
            )
            if version == 0:
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            # Reading one row proves the table is what we expect.
            conn.execute("SELECT key, value, created_at FROM responses LIMIT 1").fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> sqlite3.Connection:
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        # A connection inherited through fork must not be used (or closed) in the child.
        self._conn = None
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            conn = self._rebuild(exc)
        self._conn, self._pid = conn, pid
        return conn

    def _rebuild(self, exc: sqlite3.DatabaseError) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:  # another process moved it first
            pass
        for suffix in ("-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        try:
            conn = self._open()
        except sqlite3.DatabaseError as again:
            raise PldError(
                f"cannot open the response cache {self.path}: {again}",
                hint="delete the file (it is only a cache), or run with the response cache off",
            ) from again
        warnings.warn(
            CacheRebuiltWarning(
                f"the response cache {self.path} could not be read ({exc}); it was moved to "
                f"{aside.name} and a new, empty cache was created"
            ),
            stacklevel=4,
        )
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r}, mode={self.mode!r})"

    # -- reads and writes -------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, Value]:
        """The stored values of those keys that are present (none in "refresh" and "off")."""
        keys = list(dict.fromkeys(keys))
        if self.mode != "use":
            self.misses += len(keys)
            return {}
        found: dict[str, Value] = {}
        with self._lock:
            conn = self._connection()
            try:
                for start in range(0, len(keys), _CHUNK):
                    chunk = keys[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
                    ).fetchall()
                    for key, text in rows:
                        try:
                            found[key] = decode_value(text)
                        except (ValueError, KeyError, TypeError):
                            pass  # an unreadable entry is a miss; it is overwritten later
            except sqlite3.DatabaseError as exc:
                raise self._error("read", exc) from exc
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def get(self, key: str) -> Value | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, value: Value) -> None:
        """Store one value, committed at once (an interrupted run keeps it)."""
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, Value]]) -> None:
        """Store several values in one short transaction."""
        if self.mode == "off":
            return
        rows = [(key, encode_value(value), time.time()) for key, value in items]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            try:
                if len(rows) == 1:
                    conn.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows[0])
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        conn.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", rows)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise self._error("write", exc) from exc
        self.writes += len(rows)

    def __len__(self) -> int:
        if self.mode == "off":
            return 0
        with self._lock:
            return int(self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def _error(self, what: str, exc: sqlite3.DatabaseError) -> PldError:
        return PldError(
            f"cannot {what} the response cache {self.path}: {exc}",
            hint="another program may hold a long lock on it; if the file is "
            "damaged, delete it (it is only a cache) or run with the "
            "response cache off",
        )
