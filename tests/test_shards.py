"""Sharded evaluation: --pld-shard / pld run --shard, pld merge, and gating on --pld-record.

Control flow runs against the scripted student of test_plugin.py (never evidence about a
model); the acceptance check - two shards of the shipped StereoSet suite with the real packaged
student, merged, against one unsharded run - is the integration test at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import PLUGIN_EXAMPLES as N
from helpers import Needs, calls, edit, make_plugin_project

from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.record import load_record
from pytest_pld.shard_merge import merge_records
from pytest_pld.shards import Shard, bucket, parse_shard
from pytest_pld.testing import ScriptedBackend, scripted

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    return make_plugin_project(pytester)


# ------------------------------------------------------------------------------ shard choice


def test_an_example_always_lands_in_the_same_shard() -> None:
    # sha256-based, so the same on every machine and Python version (hash() is salted)
    assert [bucket(f"r{i}", 4) for i in range(8)] == [bucket(f"r{i}", 4) for i in range(8)]
    assert {bucket(f"id-{i}", 3) for i in range(200)} == {1, 2, 3}
    assert bucket("r0", 1) == 1


@pytest.mark.parametrize(
    ("text", "shard"), [("1/2", Shard(1, 2)), ("4/4", Shard(4, 4)), (" 1/1 ", Shard(1, 1))]
)
def test_a_shard_reads_i_of_n(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2", "1/2/3"])
def test_a_malformed_shard_is_an_error_saying_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match=r"I/N with 1 <= I <= N"):
        parse_shard(text)


# ------------------------------------------------------------------------- pytest --pld-shard


def shard_runs(project: pytest.Pytester, count: int, *extra: str) -> list[Path]:
    out = []
    for i in range(1, count + 1):
        folder = project.path / f"part{i}"
        result = project.runpytest(
            "--pld-suite=sentiment", f"--pld-shard={i}/{count}", f"--pld-results={folder}", *extra
        )
        assert result.ret == 0, result.stdout.str()
        (record,) = folder.glob(f"sentiment-test-shard{i}of{count}-*.json")
        out.append(record)
    return out


def gate_outcomes(project: pytest.Pytester, *args: str) -> dict[str, str]:
    xml = project.path / "junit.xml"
    project.runpytest("--pld-suite=sentiment", f"--junitxml={xml}", *args)
    outcomes = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        outcomes[case.get("name", "")] = kind
    return outcomes


def test_shards_skip_the_gates_and_merge_into_the_unsharded_record(
    project: pytest.Pytester,
) -> None:
    parts = shard_runs(project, 3, "--pld-limit=20")
    loaded = [load_record(p) for p in parts]
    assert sum(len(r.results) for r in loaded) == 20
    assert all(r.metrics == {} and r.shard is not None for r in loaded)
    assert len({r.shard["run_id"] for r in loaded if r.shard}) == 1
    assert calls(project) == 20  # each example evaluated by exactly one shard

    merged = project.path / "merged.json"
    assert main(["merge", *map(str, parts), "-o", str(merged), "--root", str(project.path)]) == 0
    whole = load_record(merged)

    alone = project.path / "alone"
    result = project.runpytest(
        "--pld-suite=sentiment", "--pld-limit=20", f"--pld-results={alone}", "--pld-no-cache"
    )
    (unsharded_path,) = alone.glob("sentiment-test-*.json")
    unsharded = load_record(unsharded_path)
    assert whole.metrics == unsharded.metrics
    assert [r.id for r in whole.results] == [r.id for r in unsharded.results]
    assert [r.pred for r in whole.results] == [r.pred for r in unsharded.results]
    assert whole.shard is None and whole.cache_misses + whole.cache_hits == 20
    assert result.ret == 1  # the regression baseline is missing in this project: same below

    before = calls(project)
    on_record = gate_outcomes(project, "--pld-limit=20", f"--pld-record={merged}")
    on_run = gate_outcomes(project, "--pld-limit=20", "--pld-no-cache")
    assert on_record == on_run
    assert on_record["macro_f1>=0.6"] == "passed"
    assert calls(project) == before + 20  # only the --pld-no-cache run called the model


def test_a_merged_record_keeps_each_examples_cluster_id(project: pytest.Pytester) -> None:
    edit(project, "suites/sentiment.yaml", "gates:\n", "cluster_key: hint\ngates:\n")
    parts = shard_runs(project, 2, "--pld-limit=10")
    merged = project.path / "merged.json"
    assert main(["merge", *map(str, parts), "-o", str(merged), "--root", str(project.path)]) == 0
    whole = load_record(merged)
    lines = (project.path / "data" / "sentiment.jsonl").read_text().splitlines()
    hints = {row["id"]: row["hint"] for row in map(json.loads, lines)}
    assert whole.cluster_key == "hint"
    assert [r.cluster for r in whole.results] == [hints[r.id] for r in whole.results]


def test_a_shard_run_reports_its_part_and_how_to_gate_on_the_whole(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest("--pld-suite=sentiment", "--pld-shard=2/2", "-rs")
    result.assert_outcomes(passed=1, skipped=3)  # render runs; the gates wait for the merge
    text = result.stdout.str()
    assert "pld: shard 2/2 (gates run on the merged record)" in text
    assert "shard 2/2 of run" in text and "pld merge" in text and "--pld-record" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pld-shard=1/2", "--pld-record=x.json"], "give one of them"),
        (["--pld-shard=1/2", "--pld-update-baseline"], "needs the whole run"),
        (["--pld-shard=3/2"], "I/N with 1 <= I <= N"),
    ],
    ids=["shard-and-record", "shard-and-update-baseline", "shard-out-of-range"],
)
def test_contradictory_shard_options_are_usage_errors(
    project: pytest.Pytester, args: list[str], message: str
) -> None:
    result = project.runpytest("--pld-suite=sentiment", *args)
    assert result.ret == 4
    assert message in result.stderr.str()


def test_gating_on_a_partial_or_foreign_record_is_an_error_not_a_pass(
    project: pytest.Pytester,
) -> None:
    (part, _) = shard_runs(project, 2, "--pld-limit=10")
    result = project.runpytest("--pld-suite=sentiment", "--pld-limit=10", f"--pld-record={part}")
    result.assert_outcomes(passed=1, failed=3)
    assert "the gates need the whole run" in result.stdout.str()

    merged = project.path / "merged.json"
    parts = sorted(project.path.glob("part*/*.json"))
    assert main(["merge", *map(str, parts), "-o", str(merged)]) == 0
    result = project.runpytest("--pld-suite=sentiment", "--pld-limit=12", f"--pld-record={merged}")
    result.assert_outcomes(passed=1, failed=3)
    assert "--pld-limit: record 10, this run 12" in result.stdout.str()


# -------------------------------------------------------------------------------- pld merge


def test_merge_refuses_overlaps_gaps_and_parts_of_other_runs(project: pytest.Pytester) -> None:
    three = shard_runs(project, 3, "--pld-limit=12")
    a, b, c = (load_record(p) for p in three)
    with pytest.raises(PldError, match="overlapping parts: shard 1/3 in") as err:
        merge_records([a, a, b, c])
    assert str(three[0]) in str(err.value)
    with pytest.raises(PldError, match="missing shards: 2/3") as err:
        merge_records([a, c])
    assert str(three[2]) in str(err.value)

    for folder in project.path.glob("part*"):
        shutil.rmtree(folder)
    other = shard_runs(project, 3, "--pld-limit=14")
    with pytest.raises(PldError, match="are parts of different runs") as err:
        merge_records([a, load_record(other[1]), c])
    text = str(err.value)
    assert str(three[0]) in text and str(other[1]) in text and "limit: 12 vs 14" in text


def test_merge_refuses_a_whole_record(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = project.path / "whole"
    project.runpytest("--pld-suite=sentiment", f"--pld-results={folder}")
    (whole,) = folder.glob("*.json")
    assert main(["merge", str(whole)]) == 2
    assert "not a shard's run record" in capsys.readouterr().err


def test_pld_run_shard_writes_a_partial_record_and_says_so(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(project.path)
    hinted = ScriptedBackend(
        "good", classify=lambda s, user, labels: user.rsplit(":", 1)[1].strip()
    )
    with scripted(hinted):
        code = main(
            ["run", "sentiment", "--shard", "1/2", "--root", root, "--results", f"{root}/p"]
        )
        out = capsys.readouterr().out
        assert code == 0, capsys.readouterr().err
        assert "shard 1/2 of run" in out and "pld merge" in out and "partial run record" in out
        assert "macro_f1" not in out  # no metrics for a part
        main(["run", "sentiment", "--shard", "2/2", "--root", root, "--results", f"{root}/p"])
    parts = sorted((project.path / "p").glob("*.json"))
    whole = merge_records([load_record(p) for p in parts])
    assert len(whole.results) == N and whole.metrics["macro_f1"] == 1.0
    assert hinted.classify_calls == N


# ---------------------------------------------------------------- acceptance: real student


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )


def junit(path: Path) -> dict[str, str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        out[case.get("name", "")] = kind
    return out


@pytest.mark.integration
def test_two_stereoset_shards_merged_gate_exactly_like_one_unsharded_run(
    tmp_path: Path, needs: Needs
) -> None:
    """The shipped suite and the packaged student, in a copy of the project (its own cache):
    two shards fill the cache; the unsharded run ignores it (--pld-no-cache) and so answers
    every example afresh in one batch."""
    needs.model("qwen2.5-coder-0.5b-instruct")
    for folder in ("suites", "instructions", "baselines"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    base = ["--pld-suite=stereoset", "--pld-limit=40"]
    parts = []
    for i in (1, 2):
        run = pytest_run(tmp_path, *base, f"--pld-shard={i}/2", f"--pld-results={tmp_path}/p{i}")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        parts += list((tmp_path / f"p{i}").glob("*.json"))
    merged = tmp_path / "merged.json"
    assert main(["merge", *map(str, parts), "-o", str(merged)]) == 0

    alone = pytest_run(
        tmp_path,
        *base,
        "--pld-no-cache",
        f"--pld-results={tmp_path}/a",
        f"--junitxml={tmp_path}/alone.xml",
    )
    gated = pytest_run(tmp_path, *base, f"--pld-record={merged}", f"--junitxml={tmp_path}/m.xml")
    (alone_record,) = (tmp_path / "a").glob("*.json")
    whole, unsharded = load_record(merged), load_record(alone_record)
    assert [r.id for r in whole.results] == [r.id for r in unsharded.results]
    assert [r.pred for r in whole.results] == [r.pred for r in unsharded.results]
    for name in ("accuracy", "macro_f1", "invalid_rate", "prompt_tokens"):
        assert whole.metrics[name] == unsharded.metrics[name], name
    assert junit(tmp_path / "m.xml") == junit(tmp_path / "alone.xml")
    assert gated.returncode == alone.returncode
    assert json.loads(merged.read_text())["cache_misses"] == 40
