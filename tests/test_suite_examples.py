"""A suite's examples are parsed once per file while it is unchanged, in a bounded cache that
hands every caller its own list."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
from helpers import make_project

from pytest_pld.suite import model


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> OrderedDict:
    cache: OrderedDict = OrderedDict()
    monkeypatch.setattr(model, "_LOAD_CACHE", cache)
    return cache


def test_a_caller_that_changes_its_examples_does_not_change_the_next_callers(
    tmp_path: Path, fresh_cache: OrderedDict
) -> None:
    suite = make_project(tmp_path)
    first = suite.load_examples("dev")
    ids = [e.id for e in first]
    first.clear()
    assert [e.id for e in suite.load_examples("dev")] == ids
    assert len(fresh_cache) == 1  # read once: the second call came from the cache


def test_the_cache_keeps_only_the_files_read_last(
    tmp_path: Path, fresh_cache: OrderedDict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model, "LOAD_CACHE_SIZE", 2)
    suite = make_project(tmp_path)
    for split in ("train", "dev", "test", "dev"):
        suite.load_examples(split)
    assert [key[1].name for key in fresh_cache] == ["test.jsonl", "dev.jsonl"]


def test_a_changed_file_is_read_again(tmp_path: Path, fresh_cache: OrderedDict) -> None:
    suite = make_project(tmp_path)
    assert len(suite.load_examples("test")) == 2
    path = tmp_path / "data" / "test.jsonl"
    row = {"id": "x3", "label": "pos", "text": "great", "topic": "secret"}
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(row) + "\n", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a coarse clock, too
    assert [e.id for e in suite.load_examples("test")] == ["x1", "x2", "x3"]
