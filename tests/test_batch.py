"""`pld teach --batch` against the OpenAI-compatible test double on 127.0.0.1 (openai_double.py:
a stand-in for a hosted Batch API that cannot be reached from here, never evidence about a
model): same traces as the direct path, an expired batch, a partly failed one, a batch that
fails validation, billing, a kill and resume, and no key in anything written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import SECRET, make_tiny_project
from openai_double import OpenAIDouble, echo_rule

from pytest_pld.cli import main
from pytest_pld.distill.traces import read_traces

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "openai:teacher-x"
TIMING = ("started_at", "finished_at", "latency_s")


def repair_once(body: dict[str, Any]) -> str:
    """Unusable first answers for the 'odd' reviews, so their repair request goes out too."""
    first_try = len(body["messages"]) == 2
    if first_try and "is odd here" in body["messages"][-1]["content"]:
        return "I think so."
    return echo_rule(body)


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    d = OpenAIDouble(repair_once)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def project(tmp_path: Path, double: OpenAIDouble, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PLD_TEACHER_BASE_URL", double.base_url)
    monkeypatch.setenv("PLD_TEACHER_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return make_tiny_project(tmp_path / "proj")


def teach(project: Path, *extra: str) -> int:
    return main(
        [
            "teach",
            "tiny",
            "--teacher",
            TEACHER,
            "--root",
            str(project),
            "--batch-poll",
            "0.01",
            *extra,
        ]
    )


def comparable(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for t in read_traces(path).traces:
        data = t.to_json()
        for key in TIMING:
            data.pop(key)
        out[t.id] = data
    return out


def sent_bodies(double: OpenAIDouble) -> list[str]:
    """Chat-completion bodies the double received directly and inside uploaded batch files."""
    direct = [json.loads(r["body"]) for r in double.calls("POST", "/v1/chat/completions")]
    batched = [
        json.loads(line)["body"]
        for batch in double.batches.values()
        for line in double.files[batch.input_file_id].splitlines()
    ]
    return sorted(json.dumps(b, sort_keys=True) for b in direct + batched)


def test_batch_traces_equal_the_direct_paths_and_so_do_the_requests(
    project: Path, double: OpenAIDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert teach(project, "--out", str(project / "direct.jsonl")) == 0
    direct_bodies = sent_bodies(double)
    double.log.clear()
    assert teach(project, "--batch", "--out", str(project / "batch.jsonl")) == 0
    batch_bodies = sent_bodies(double)
    assert batch_bodies == direct_bodies  # the very same requests, 6 first tries + 3 repairs
    assert len(batch_bodies) == 9
    assert comparable(project / "batch.jsonl") == comparable(project / "direct.jsonl")
    traces = read_traces(project / "batch.jsonl").traces
    assert [t.id for t in traces] == [f"train{i}" for i in range(6)]  # example order
    assert all(t.ok for t in traces) and sum(t.attempts == 2 for t in traces) == 3
    assert len(double.batches) == 2  # the first tries, then the repairs
    out = capsys.readouterr()
    assert "batch API: 2 batches" in out.out and "0.5 x the per-request price" in out.out
    assert "submitted batch" in out.err and "completed" in out.err
    assert not list((project / ".pld" / "batches").glob("*.batch.json"))


def test_an_expired_batch_keeps_what_finished_and_resubmits_the_rest(
    project: Path, double: OpenAIDouble
) -> None:
    double.answer = echo_rule
    double.expire_after = 2
    assert teach(project, "--batch") == 0
    first, second = double.batches.values()
    assert first.status == "expired" and len(first.done) == 2 and len(first.errors) == 4
    traces = read_traces(project / "traces" / "tiny.jsonl").traces
    assert len(traces) == 6 and all(t.ok for t in traces)
    assert len(second.lines) == 4  # only the expired requests went out again


def test_a_partly_failed_batch_is_resubmitted_and_what_keeps_failing_is_reported(
    project: Path, double: OpenAIDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.answer = echo_rule
    double.fail = lambda body: "review 0 is" in body["messages"][-1]["content"]
    assert teach(project, "--batch") == 0  # fails once, then succeeds when re-submitted
    assert all(t.ok for t in read_traces(project / "traces" / "tiny.jsonl").traces)
    assert [len(b.lines) for b in double.batches.values()] == [6, 1]

    double.fail_always = True
    (project / ".pld" / "batches" / "answers.jsonl").unlink()  # nothing paid for yet
    out = project / "again.jsonl"
    assert teach(project, "--batch", "--out", str(out)) == 0
    by_id = read_traces(out).by_id()
    assert [len(b.lines) for b in double.batches.values()][2:] == [6, 1]
    assert by_id["train0"].status == "failed"
    assert "batch request failed 2 times: HTTP 500" in by_id["train0"].error
    assert all(by_id[f"train{i}"].ok for i in range(1, 6))

    # a later run replays the answers it paid for and asks only for the failed one again
    assert teach(project, "--batch", "--out", str(project / "third.jsonl")) == 0
    assert [len(b.lines) for b in double.batches.values()][4:] == [1, 1]
    assert "failed x1: teacher call failed" in capsys.readouterr().out


def test_a_batch_that_fails_validation_is_a_clear_error(
    project: Path, double: OpenAIDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    double.invalid = True
    assert teach(project, "--batch") == 2
    err = capsys.readouterr().err
    assert "failed: invalid_request: bad input file" in err and "nothing in it was billed" in err


def test_billing_uses_the_teachers_prices_from_pyproject(
    project: Path, double: OpenAIDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text(
        "[tool.pld.teacher]\ninput_usd_per_mtok = 2.0\noutput_usd_per_mtok = 8.0\n"
        "batch_price_ratio = 0.5\n"
    )
    assert teach(project, "--batch") == 0
    out = capsys.readouterr().out
    traces = read_traces(project / "traces" / "tiny.jsonl").traces
    direct = sum(t.prompt_tokens * 2.0 + t.completion_tokens * 8.0 for t in traces) / 1e6
    assert f"cost: ${direct * 0.5:.4f} at batch prices (${direct:.4f} sent directly)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--teacher", "local:smollm2-135m-instruct"], "--batch needs an openai: teacher"),
        (["--mode", "prefill"], "--batch asks in json mode"),
    ],
    ids=["local-teacher", "prefill-mode"],
)
def test_batch_refuses_what_it_cannot_do(
    project: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert teach(project, "--batch", *args) == 2
    assert message in capsys.readouterr().err


def test_a_killed_batch_teach_resumes_the_same_batch_and_never_submits_twice(
    project: Path, double: OpenAIDouble
) -> None:
    double.answer = echo_rule
    double.hold.set()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "pytest_pld.cli",
        "teach",
        "tiny",
        "--teacher",
        TEACHER,
        "--root",
        str(project),
        "--batch",
        "--batch-poll",
        "0.05",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        state = project / ".pld" / "batches"
        while not list(state.glob("*.batch.json")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)  # it is polling the held batch now
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    (saved,) = state.glob("*.batch.json")
    batch_id = json.loads(saved.read_text())["batch_id"]
    assert len(double.calls("POST", "/v1/batches")) == 1
    assert (
        not (project / "traces" / "tiny.jsonl").exists()
        or not read_traces(project / "traces" / "tiny.jsonl").traces
    )

    double.hold.clear()
    double.log.clear()
    assert teach(project, "--batch") == 0
    assert double.calls("POST", "/v1/batches") == []  # resumed, not submitted again
    assert double.calls("GET", f"/v1/batches/{batch_id}")
    assert len(read_traces(project / "traces" / "tiny.jsonl").traces) == 6
    assert not saved.exists()


def test_the_key_reaches_the_server_and_nothing_that_is_written(
    project: Path, double: OpenAIDouble, capsys: pytest.CaptureFixture[str]
) -> None:
    assert teach(project, "--batch") == 0
    assert teach(project, "--out", str(project / "direct.jsonl")) == 0
    assert {r["authorization"] for r in double.log} == {f"Bearer {SECRET}"}
    written = b"".join(p.read_bytes() for p in project.rglob("*") if p.is_file())
    assert b"review 1 is odd" in written and SECRET.encode() not in written
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
