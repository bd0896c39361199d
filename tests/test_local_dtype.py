"""The local backend's default dtype "auto": bfloat16 where the CPU computes it natively, float32
where torch would emulate it; the cache identity names the dtype that actually runs."""

from __future__ import annotations

import pytest

from pytest_pld.backends import packaged
from pytest_pld.backends.packaged import auto_dtype, resolve_dtype_name
from pytest_pld.errors import PldError

ZEN3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni\n"
ZEN4 = "flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
SKYLAKE_X = "flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd crc32 atomics\n"

CPUS = {
    "AVX2-only AMD EPYC (Zen 3)": (ZEN3, "float32"),
    "AVX512 without BF16 (Skylake-X)": (SKYLAKE_X, "float32"),
    "AVX512-BF16 (Zen 4)": (ZEN4, "bfloat16"),
    "AMX (Sapphire Rapids)": (SAPPHIRE_RAPIDS, "bfloat16"),
    "aarch64 with BF16 (Graviton 3)": (GRAVITON3, "bfloat16"),
    "aarch64 without BF16 (Graviton 2)": (GRAVITON2, "float32"),
    "no flags line": ("processor\t: 0\nmodel name\t: something\n", "float32"),
    "empty": ("", "float32"),
}


@pytest.mark.parametrize(("cpuinfo", "expected"), CPUS.values(), ids=CPUS.keys())
def test_auto_picks_bfloat16_only_where_the_cpu_computes_it_natively(
    cpuinfo: str, expected: str
) -> None:
    assert auto_dtype(cpuinfo=cpuinfo) == expected
    assert auto_dtype("cpu", cpuinfo=cpuinfo) == expected


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_auto_on_an_accelerator_is_bfloat16_whatever_the_cpu(device: str) -> None:
    assert auto_dtype(device, cpuinfo=ZEN3) == "bfloat16"


def test_auto_is_float32_where_cpuinfo_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    real_path = packaged.Path
    monkeypatch.setattr(packaged, "Path", lambda p: real_path(tmp_path / "no-cpuinfo"))
    assert auto_dtype() == "float32"


@pytest.mark.parametrize("flags", [ZEN3, ZEN4], ids=["emulated bf16", "native bf16"])
def test_explicit_dtypes_are_kept_and_only_auto_is_resolved(
    monkeypatch: pytest.MonkeyPatch, flags: str
) -> None:
    monkeypatch.setattr(
        packaged, "auto_dtype", lambda device=None: auto_dtype(device, cpuinfo=flags)
    )
    assert resolve_dtype_name("auto") == auto_dtype(cpuinfo=flags)
    assert resolve_dtype_name("AUTO") == auto_dtype(cpuinfo=flags)
    for given, name in [("bf16", "bfloat16"), ("fp32", "float32"), ("half", "float16")]:
        assert resolve_dtype_name(given) == name
    with pytest.raises(PldError, match="unknown dtype"):
        resolve_dtype_name("int8")


def test_the_cheap_identity_names_the_resolved_dtype_not_auto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cache keys must say what ran: "auto" on two machines can be two different dtypes."""
    resolved = packaged.ResolvedModel.__new__(packaged.ResolvedModel)
    monkeypatch.setattr(packaged, "resolve_model", lambda model: resolved)
    seen: list[object] = []
    monkeypatch.setattr(packaged, "identity_of", lambda r, *, dtype, **kw: seen.append(dtype))
    for flags, want in [(ZEN3, "float32"), (ZEN4, "bfloat16")]:
        monkeypatch.setattr(
            packaged, "auto_dtype", lambda device=None, f=flags: auto_dtype(device, cpuinfo=f)
        )
        packaged.local_identity("any")
        packaged.local_identity("any", dtype="fp32")
        assert seen[-2:] == [want, "float32"]
