"""What several test modules share, so that no test module imports another: the projects they
scaffold under a temporary folder, run records with known answers, random predictions and a
fake clock.

Projects live under the test's own tmp_path (or pytester's folder), never in the checkout.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from pytest_pld.backends.base import Message
from pytest_pld.cli import main
from pytest_pld.labels import INVALID
from pytest_pld.metrics import Predictions
from pytest_pld.record import ExampleResult, RunRecord
from pytest_pld.suite import Suite, load_suite


def run_pld(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`pld ARGV` in this process: its exit code, stdout and stderr."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write each project-relative file under `root`, making its folders; returns `root`."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


# --- the toy review project (teach, distill, runner, compare) -------------------------------------

TRAIN = [
    ("t1", "pos", "a great film about Zorblax", "Zorblax"),
    ("t2", "pos", "great acting all round", "acting"),
    ("t3", "neg", "a dull plot", "plot"),
    ("t4", "neg", "dull and long", "length"),
    ("t5", "pos", "great music", "music"),
]


def make_project(root: Path, *, name: str = "toy", gate_split: str = "test") -> Suite:
    """A two-label suite with train/dev/test files and an instruction file with comments."""
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    data = root / "data"
    data.mkdir()

    def write(split: str, rows: Sequence[tuple[str, str, str, str]]) -> None:
        (data / f"{split}.jsonl").write_text(
            "".join(
                json.dumps({"id": i, "label": label, "text": text, "topic": topic}) + "\n"
                for i, label, text, topic in rows
            ),
            encoding="utf-8",
        )

    write("train", TRAIN)
    write(
        "dev",
        [
            (
                f"d{i}",
                "pos" if i % 2 else "neg",
                ("a great show" if i % 2 else "a dull show"),
                "show",
            )
            for i in range(8)
        ],
    )
    write(
        "test",
        [
            ("x1", "pos", "the one test sentence that nobody may ever copy into a rule", "secret"),
            ("x2", "neg", "dull", "secret"),
        ],
    )
    (root / "suites" / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
        name: {name}
        dataset: {{loader: jsonl}}
        splits: {{train: data/train.jsonl, dev: data/dev.jsonl, test: data/test.jsonl}}
        labels: [pos, neg]
        user_template: "Topic: {{{{ topic }}}}\\nText: {{{{ text }}}}"
        instructions: instructions/{name}.yaml
        student: scripted:student
        gate_split: {gate_split}
        gates: {{accuracy: ">= 0.5"}}
        """),
        encoding="utf-8",
    )
    (root / "instructions" / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
        # Sentiment rules. This comment must survive every write.
        name: {name}
        version: 1
        preamble: >
          Decide whether a review is positive or negative.
        label_definitions:
          pos: the reviewer liked it, a long definition that wraps onto a second line because
            it goes on and on
          neg: the reviewer did not
        rules:
          # a hand-written rule; its comment and lines stay as they are
          - id: R001
            text: A review that calls something dull is neg.
            label: neg
        # the output instruction
        output: 'Answer with one word: {{{{ labels | join(", ") }}}}.'
        """),
        encoding="utf-8",
    )
    return load_suite(root / "suites" / f"{name}.yaml", root)


def good_json(messages: Sequence[Message]) -> str:
    prompt = next(m.content for m in messages if "Correct label: " in m.content)
    gold = prompt.split("Correct label: ")[1].split()[0]
    cue = "praises something as great" if gold == "pos" else "complains it is dull"
    return json.dumps(
        {
            "reasoning": "the wording decides",
            "rule": f"If the text {cue}, then the label is {gold}.",
        }
    )


# --- the reviews project of calibration (a scripted student with label scores) --------------------

REVIEWS_INSTRUCTIONS = textwrap.dedent("""\
    # Reviews, zero-shot.
    name: toy
    version: 2
    preamble: Decide whether a review is positive or negative.
    rules: []
    # the output line names the suite's labels
    output: 'Answer with one word: {{ labels | join(", ") }}.'
    """)


def make_reviews_project(root: Path, n: int = 12) -> Path:
    """A suite whose dev and test reviews alternate great (pos) and dull (neg)."""
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    write_review_splits(root, {"dev": n, "test": n})
    (root / "suites" / "toy.yaml").write_text(
        textwrap.dedent("""\
        name: toy
        dataset: {loader: jsonl}
        splits: {dev: data/dev.jsonl, test: data/test.jsonl}
        labels: [pos, neg]
        user_template: "Review: {{ text }}"
        instructions: instructions/toy.yaml
        student: scripted:student
        gates: {accuracy: ">= 0.5"}
        """),
        encoding="utf-8",
    )
    path = root / "instructions" / "toy.yaml"
    path.write_text(REVIEWS_INSTRUCTIONS, encoding="utf-8")
    return path


def biased_student(system: str, user: str, labels: Sequence[str]) -> Mapping[str, float]:
    """Says neg unless pos is shifted up: great reviews score pos 1.0, neg always 1.5."""
    return {"pos": float("great" in user), "neg": 1.5}


# --- the tiny project of the teacher roles and the Batch API --------------------------------------

SECRET = "sk-batch-test-DO-NOT-LEAK-0123456789"


def make_tiny_project(root: Path, n: int = 6) -> Path:
    """A two-label suite "tiny" with n train examples and an empty rule list."""
    (root / "suites").mkdir(parents=True)
    (root / "instructions").mkdir()
    (root / "data").mkdir()
    (root / "suites" / "tiny.yaml").write_text(
        textwrap.dedent("""\
        name: tiny
        dataset: {loader: jsonl}
        splits: {train: data/train.jsonl, dev: data/dev.jsonl, test: data/test.jsonl}
        labels: [pos, neg]
        user_template: "{{ text }}"
        instructions: instructions/tiny.yaml
        student: scripted:x
        gates: {accuracy: ">= 0.1"}
        """)
    )
    (root / "instructions" / "tiny.yaml").write_text(
        "name: tiny\nversion: 1\npreamble: You label short reviews.\nrules: []\n"
        "output: 'Answer with one word: {{ labels | join(\", \") }}.'\n"
    )
    for split, count in (("train", n), ("dev", 2), ("test", 2)):
        rows = [
            {
                "id": f"{split}{i}",
                "text": f"review {i} is {'odd' if i % 2 else 'even'} here",
                "label": "pos" if i % 2 else "neg",
            }
            for i in range(count)
        ]
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


# --- the pytester project of the plugin tests (the scripted student counts its calls) -------------

PLUGIN_EXAMPLES = 24  # examples in the temporary suite

PLUGIN_CONFTEST = """
from pathlib import Path

from pytest_pld.testing import ScriptedBackend, use_scripted_backend

CALLS = Path(__file__).parent / "calls.txt"


def make(model, **_):
    def classify(system, user, labels):
        with CALLS.open("a") as fh:
            fh.write(user.replace("\\n", " ") + "\\n")
        if model == "broken":
            raise RuntimeError("backend exploded")
        if model == "poor" or "hint" not in system.lower():
            return labels[0]
        return user.rsplit("hint:", 1)[1].strip()

    return ScriptedBackend(model, classify=classify, latency_s=0.02)


_undo = []


def pytest_configure(config):
    _undo.append(use_scripted_backend(make))


def pytest_unconfigure(config):
    while _undo:
        _undo.pop()()
"""

PLUGIN_SUITE = """\
name: sentiment
dataset: {loader: jsonl}
splits: {test: data/sentiment.jsonl, dev: data/dev.jsonl}
labels: [pos, neg]
user_template: "{{ text }} hint: {{ hint }}"
instructions: instructions/sentiment.yaml
student: scripted:good
max_prompt_tokens: 200
gates:
  macro_f1: ">= 0.6"
  accuracy: ">= 0.5"
  regression: {metric: macro_f1, baseline: baselines/sentiment.json, margin: 0.02}
"""

PLUGIN_INSTRUCTIONS = """\
name: sentiment
version: 1
preamble: You label short reviews.
rules:
  - id: R1
    text: Trust the hint.
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


def make_plugin_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A temporary project with the sentiment suite and the scripted student."""
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(PLUGIN_CONFTEST)
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "sentiment.yaml").write_text(PLUGIN_SUITE)
    (pytester.path / "instructions").mkdir()
    (pytester.path / "instructions" / "sentiment.yaml").write_text(PLUGIN_INSTRUCTIONS)
    data = pytester.path / "data"
    data.mkdir()
    rows = [
        {
            "id": f"r{i}",
            "text": f"review number {i}",
            "hint": "pos" if i % 2 else "neg",
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(PLUGIN_EXAMPLES)
    ]
    (data / "sentiment.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "dev.jsonl").write_text(
        "".join(json.dumps({**r, "id": f"d{i}"}) + "\n" for i, r in enumerate(rows[:6]))
    )
    pytester.makepyfile(test_ordinary="def test_ordinary():\n    pass\n")
    return pytester


def calls(project: pytest.Pytester) -> int:
    path = project.path / "calls.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def edit(project: pytest.Pytester, relative: str, old: str, new: str) -> None:
    path = project.path / relative
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


# --- temporary git repositories (pld review) ----------------------------------------------------


def isolate_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Isolate git from the user's configuration (signing, hooks, default branch)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.org")


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# --- run records with known answers (gates, verdicts, compare) ------------------------------------

RECORD_LABELS = ["pos", "neg", "mixed"]


def make_record(
    gold: Sequence[str],
    pred: Sequence[str],
    *,
    clusters: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    version: int = 1,
) -> RunRecord:
    ids = list(ids) if ids is not None else [f"e{i}" for i in range(len(gold))]
    results = [
        ExampleResult(id=i, gold=g, pred=p, latency_ms=5.0, prompt_tokens=40, raw=p)
        for i, g, p in zip(ids, gold, pred)
    ]
    for result, cluster in zip(results, clusters or ()):
        result.cluster = cluster
    return RunRecord(
        suite="s",
        split="test",
        limit=None,
        model="scripted:m",
        backend={"provider": "scripted"},
        instructions={"name": "s", "version": version, "hash": f"h{version}"},
        labels=list(RECORD_LABELS),
        system_prompt_sha256="x",
        results=results,
        cluster_key="doc" if clusters else None,
        path="/runs/s.json",
    )


def documents(
    n_docs: int, size: int, seed: int = 0
) -> tuple[list[str], list[str], list[str], list[str]]:
    """Gold labels, predictions right by document (each document has its own accuracy, so
    errors cluster), cluster ids and example ids."""
    rng = random.Random(seed)
    gold, pred, clusters = [], [], []
    for d in range(n_docs):
        right = rng.choice([0.2, 0.5, 0.9])
        for _ in range(size):
            g = rng.choice(RECORD_LABELS)
            gold.append(g)
            pred.append(
                g if rng.random() < right else RECORD_LABELS[(RECORD_LABELS.index(g) + 1) % 3]
            )
            clusters.append(f"doc{d}")
    return gold, pred, clusters, [f"e{i}" for i in range(len(gold))]


def worsen(gold: Sequence[str], pred: Sequence[str], every: int) -> list[str]:
    """Every `every`-th right answer made wrong."""
    out, right = list(pred), 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        if g == p:
            right += 1
            if right % every == 0:
                out[i] = RECORD_LABELS[(RECORD_LABELS.index(g) + 1) % 3]
    return out


# --- random predictions (metrics, stats) ----------------------------------------------------------

PREDICTION_LABELS = ("a", "b", "c")


def random_preds(seed: int, n: int = 60, invalid: float = 0.1) -> Predictions:
    rng = random.Random(seed)
    gold = [rng.choice(PREDICTION_LABELS) for _ in range(n)]
    pred = [
        INVALID
        if rng.random() < invalid
        else g
        if rng.random() < 0.6
        else rng.choice(PREDICTION_LABELS)
        for g in gold
    ]
    return Predictions(PREDICTION_LABELS, tuple(gold), tuple(pred))


# --- a clock that only moves when slept on --------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- the pld init review project of the data-check and README tests ----------------------------

#: a conftest registering the scripted student `scripted:demo` (control flow only)
DEMO_CONFTEST = """
from pytest_pld.testing import ScriptedBackend, use_scripted_backend

_undo = []


def pytest_configure(config):
    _undo.append(use_scripted_backend(ScriptedBackend("demo")))


def pytest_unconfigure(config):
    while _undo:
        _undo.pop()()
"""


POSITIVE = ["a great film", "wonderful acting", "I enjoyed it", "superb", "brilliant", "a joy"]
NEGATIVE = ["a boring mess", "terrible acting", "I walked out", "dull", "awful script", "flat"]


def write_reviews(path: Path, *, bom: bool = False) -> None:
    """36 reviews, ids r0..r35, half positive; `bom` starts the file with a byte-order mark."""
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "label"])
        i = 0
        for k in range(3):
            for label, texts in (("positive", POSITIVE), ("negative", NEGATIVE)):
                for text in texts:
                    writer.writerow([f"r{i}", f"{text} ({k})", label])
                    i += 1


def init_rev(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """A project as `pld init rev --data reviews.csv --text text --label label` writes it, and
    what that printed."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("")
    write_reviews(root / "reviews.csv")
    argv = ["init", "rev", "--data", str(root / "reviews.csv"), "--text", "text"]
    assert main([*argv, "--label", "label", "--root", str(root)]) == 0
    return root, capsys.readouterr().out


def gate_project(pytester: pytest.Pytester, root: Path, conftest: str = DEMO_CONFTEST) -> None:
    """The `pld init` project copied into pytester's folder, with the scripted student (as
    scripted:demo, registered by `conftest`)."""
    for rel in ("reviews.csv", "suites/rev.yaml", "instructions/rev.yaml"):
        (pytester.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / rel).write_bytes((root / rel).read_bytes())
    snapshot = "instructions/rev.prompt.txt"
    (pytester.path / snapshot).write_bytes((root / snapshot).read_bytes())
    pytester.makeini("[pytest]\n")
    pytester.makeconftest(conftest)


# --- prerequisites of model-backed tests (the `needs` fixture) ---------------------------------

#: the packaged model that `transformers serve` serves in the server tests
SERVE_MODEL = "smollm2-135m-instruct"


class Needs:
    """The prerequisites of tests that need more than the package (the `needs` fixture)."""

    #: set by tox's [testenv]: a missing prerequisite fails instead of skipping
    required = os.environ.get("PLD_REQUIRE_MODELS", "") == "1"

    def missing(self, what: str, how: str) -> None:
        """Skip (or, where prerequisites are required, fail) naming what is missing."""
        if self.required:
            pytest.fail(
                f"{what} is missing, and PLD_REQUIRE_MODELS=1 requires it ({how}; or unset "
                "PLD_REQUIRE_MODELS to skip tests that need it)",
                pytrace=False,
            )
        pytest.skip(f"{what} is missing: {how}")

    def modules(self, *names: str, install: str) -> None:
        absent = [m for m in names if importlib.util.find_spec(m) is None]
        if absent:
            self.missing(
                f"the Python package{'s' if len(absent) > 1 else ''} {', '.join(absent)}", install
            )

    def model(self, name: str) -> None:
        """A packaged local model, and what runs it (torch, transformers)."""
        from pytest_pld.backends.packaged import install_command, is_installed

        self.modules(
            "torch", "transformers", install="the local extra: README, Use it in your project"
        )
        if not is_installed(name):
            self.missing(f"the packaged model {name}", install_command(name))

    def optional_model(self, name: str, why: str) -> None:
        """A packaged model CI does not install (`why`): skipped wherever it is missing."""
        from pytest_pld.backends.packaged import install_command, is_installed

        if not is_installed(name):
            pytest.skip(
                f"the packaged model {name} is not installed ({why}): {install_command(name)}"
            )
        self.model(name)

    def llama_cpp(self) -> None:
        """llama-cpp-python, which builds from source for minutes: an optional prerequisite that
        `tox -e distill` installs and CI does not, so its tests skip wherever it is missing."""
        if importlib.util.find_spec("llama_cpp") is None:
            pytest.skip(
                "llama-cpp-python is not installed (an optional prerequisite, built from source: "
                "pip install 'pytest-pld[llama]', or tox -e distill)"
            )

    def serving(self) -> None:
        """`transformers serve` and the model it serves."""
        self.modules(
            "transformers",
            "fastapi",
            "uvicorn",
            "torch",
            install="the local and serve extras: README, Use it in your project",
        )
        self.model(SERVE_MODEL)

    def chromium(self) -> str:
        """Chromium's path; CI installs Debian's package (.ci/run)."""
        found = shutil.which("chromium") or shutil.which("chromium-browser")
        if found is None:
            self.missing("Chromium", "install Debian's chromium package (.ci/run does)")
        assert found is not None
        return found


# --- great and dull reviews (distill selection, calibration) -------------------------------------


def great_or_dull(split: str, i: int) -> str:
    """Odd reviews are great (pos), even ones dull (neg)."""
    return f"{split} {i}: a {'great' if i % 2 else 'dull'} show"


def write_review_splits(
    root: Path, sizes: dict[str, int], text: Callable[[str, int], str] = great_or_dull
) -> None:
    """data/SPLIT.jsonl for each split: `sizes[split]` reviews, ids SPLIT0.., odd ones pos."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = [
            {"id": f"{split}{i}", "label": "pos" if i % 2 else "neg", "text": text(split, i)}
            for i in range(n)
        ]
        (root / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )


def write_review_traces(path: Path, traces: Sequence[tuple[int, str]]) -> None:
    """A traces file of suite "toy": one rule of the teacher scripted:t per (train example
    number, rule); odd examples are pos."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"train{i}",
                    "suite": "toy",
                    "split": "train",
                    "gold": "pos" if i % 2 else "neg",
                    "rule": rule,
                    "teacher": "scripted:t",
                    "status": "ok",
                    "labels": ["pos", "neg"],
                }
            )
            + "\n"
            for i, rule in traces
        ),
        encoding="utf-8",
    )


REVIEW_SUITE = """\
name: toy
dataset: {loader: jsonl}
splits: {train: data/train.jsonl, dev: data/dev.jsonl, test: data/test.jsonl}
labels: [pos, neg]
user_template: "{{ text }}"
instructions: instructions/toy.yaml
student: scripted:student
gates: {accuracy: ">= 0.5"}
"""

REVIEW_INSTRUCTIONS = """\
name: toy
version: 1
preamble: Decide whether a review is positive or negative.
rules: []
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


def make_review_project(
    root: Path,
    sizes: dict[str, int],
    traces: Sequence[tuple[int, str]],
    *,
    text: Callable[[str, int], str] = great_or_dull,
    suite_extra: str = "",
    head: str = "",
) -> Suite:
    """Suite "toy" (student scripted:student) with great and dull reviews, an instruction set
    without rules (`head`: lines before it, such as a comment) and traces/toy.jsonl."""
    write_review_splits(root, sizes, text)
    write_review_traces(root / "traces" / "toy.jsonl", traces)
    write_files(
        root,
        {
            "suites/toy.yaml": REVIEW_SUITE + suite_extra,
            "instructions/toy.yaml": head + REVIEW_INSTRUCTIONS,
        },
    )
    return load_suite(root / "suites" / "toy.yaml", root)
