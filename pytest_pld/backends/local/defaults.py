"""The local backend's option defaults, in a module of their own so that the backend and the
role options (`roles`) read them without importing the package that lazily imports the backend
(an import cycle)."""

from __future__ import annotations

#: Tokens per packed forward pass, by default.
PACK_TOKENS = 256
#: What the role options of a local model default to, for `--show-config`.
LOCAL_DEFAULTS = {
    "dtype": "auto",
    "threads": "$PLD_THREADS, else the usable cores less those other processes keep busy",
    "pack_tokens": str(PACK_TOKENS),
}
