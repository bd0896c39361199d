"""Dataset loaders: each turns a data file into a list of `Example`s for one split.

A loader is registered by name and declares the options it accepts, so suite validation can
reject an unknown option with the file, line and allowed names.
"""

from __future__ import annotations

from .base import Example, Loader, LoadFn, content_id, split_fraction

__all__ = ["Example", "LoadFn", "Loader", "content_id", "registry", "split_fraction"]


def registry() -> dict[str, Loader]:
    from . import contractnli, jsonl, logiqa, stereoset, table  # local: keep start-up light

    loaders = [
        *contractnli.LOADERS,
        *stereoset.LOADERS,
        *logiqa.LOADERS,
        *jsonl.LOADERS,
        *table.LOADERS,
    ]
    return {loader.name: loader for loader in loaders}
