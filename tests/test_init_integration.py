"""Your own task end to end with the real packaged student, as a user runs it: `pld init` from a
CSV, then exactly the commands it prints; and a held-out split read from a data root outside
the project. Slow: -m integration."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Needs

ROOT = Path(__file__).resolve().parents[1]
STEREOSET = ROOT / "suites" / "data" / "stereoset" / "dev_reconstructed.json"
TEACHER = "local:qwen2.5-coder-0.5b-instruct"

MOODS = {
    "positive": ["I loved every minute of it", "What a wonderful, happy day", "This is great news"],
    "negative": [
        "I hated every minute of it",
        "What a miserable, awful day",
        "This is terrible news",
    ],
}


def run(
    cwd: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def pld(
    cwd: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run(cwd, "-m", "pytest_pld.cli", *argv, env=env)


@pytest.fixture
def project(tmp_path: Path, needs: Needs) -> Path:
    needs.model(TEACHER.removeprefix("local:"))  # every test here runs the packaged student
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    return root


@pytest.mark.integration
def test_init_then_the_printed_commands_with_the_real_student(project: Path) -> None:
    with (project / "data" / "moods.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for label, sentences in MOODS.items():
            writer.writerows([f"{s} ({i})", label] for i in range(8) for s in sentences)
    out = pld(
        project, "init", "moods", "--data", "data/moods.csv", "--text", "text", "--label", "label"
    )
    assert out.returncode == 0, out.stderr
    printed = out.stdout.split("\nnext:\n", 1)[1].split("\nthen ", 1)[0].splitlines()
    commands = [line.strip().split() for line in printed]
    assert [c[:2] for c in commands] == [
        ["pld", "validate"],
        ["pld", "render"],
        ["pld", "run"],
        ["pld", "teach"],
        ["pytest", "--pld-suite=moods"],
    ]
    for command in commands:
        # the same commands, smaller: a few examples keep a CPU run short
        command = [
            {"20": "4", "5": "2", "--pld-limit=20": "--pld-limit=4"}.get(a, a) for a in command
        ]
        if command[0] == "pld":
            out = pld(project, *command[1:])
        else:
            out = run(project, "-m", "pytest", *command[1:], "-p", "no:cacheprovider")
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
        if command[:2] == ["pld", "run"]:
            assert "moods/test: 4 examples, model local:qwen2.5-coder-0.5b-instruct" in out.stdout
            assert re.search(r"^  invalid_rate +0\.000 +0\.000\.\.", out.stdout, re.MULTILINE)
        if command[:2] == ["pld", "teach"]:
            traces = (project / "traces" / "moods.jsonl").read_text().splitlines()
            assert len(traces) == 2
            assert all(json.loads(t)["split"] == "train" for t in traces)
        if command[0] == "pytest":
            # the render check, the snapshot and the invalid_rate gate
            assert "3 passed" in out.stdout
            assert "invalid_rate" in out.stdout


@pytest.mark.integration
def test_pld_run_stereoset_heldout_from_a_data_root_with_the_real_student(
    project: Path, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "instructions", project / "instructions")
    (project / "suites").mkdir()
    text = (ROOT / "suites" / "stereoset.yaml").read_text()
    text = text.replace("labels: [", "  heldout: data:stereoset/heldout.jsonl\nlabels: [")
    (project / "suites" / "stereoset.yaml").write_text(text)
    (project / "suites" / "data" / "stereoset").mkdir(parents=True)
    shutil.copy(STEREOSET, project / "suites" / "data" / "stereoset" / STEREOSET.name)
    data = tmp_path / "readonly" / "stereoset"
    data.mkdir(parents=True)
    clusters = json.loads(STEREOSET.read_text())["data"]["intrasentence"][:3]
    items = [
        {
            "type": "intrasentence",
            **{k: c[k] for k in ("target", "bias_type", "context")},
            **{s["gold_label"]: s["sentence"] for s in c["sentences"]},
        }
        for c in clusters
    ]
    (data / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    data.chmod(0o555)  # read-only: nothing may be written next to the data
    try:
        out = pld(
            project,
            "run",
            "stereoset",
            "--split",
            "heldout",
            env={"PLD_DATA_ROOT": str(tmp_path / "readonly")},
        )
    finally:
        data.chmod(0o755)
    assert out.returncode == 0, out.stderr
    assert "stereoset/heldout: 3 examples, model local:qwen2.5-coder-0.5b-instruct" in out.stdout
    record = json.loads(Path(out.stdout.split("run record: ")[1].strip()).read_text())
    assert record["split"] == "heldout"
    assert [r["gold"] for r in record["results"]] == [c["bias_type"] for c in clusters]
    assert all(r["pred"] in ("gender", "profession", "race", "religion") for r in record["results"])
    assert sorted(p.name for p in data.iterdir()) == ["heldout.jsonl"]
