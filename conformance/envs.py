"""Cached virtualenvs holding a real vLLM release (or the KServe Hugging Face server) whose
argument parsers can run without a GPU, a model or the network.

vLLM wheels pin a CUDA torch of several GB; the parsers only need torch importable, so
each environment gets the CPU torch, the vLLM wheel without its dependencies, and then
those dependencies of the wheel that the parser's imports reach (everything but the GPU
kernels and the distributed runtime, listed in SKIPPED).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

# The vLLM releases checked: each side of every release rule in runtimes/vllm_engine.py
# (0.10.1 runner flags, 0.11.1 entrypoint, 0.12.0 CPU streamer, 0.17.0 OpenTelemetry,
# 0.33.0 BERT LoRA) and the newest release.
VLLM_VERSIONS = (
    "0.10.0", "0.10.2", "0.11.0", "0.11.1", "0.12.0", "0.16.0", "0.17.0", "0.33.0", "0.34.0",
)  # fmt: skip
DEFAULT_CACHE = Path.home() / ".cache" / "servegen-conformance"
TORCH = "torch==2.13.0"
# Requirements the CLI parser never imports: GPU kernels, torch companions pinned to a
# CUDA build, the distributed runtime and compilers.
SKIPPED = re.compile(
    r"^(torch|torchaudio|torchvision|torchcodec|xformers|flashinfer-python|flashinfer-cubin|"
    r"ray|triton|cupy.*|nvidia-.*|deep-gemm|intel-extension-for-pytorch|quack-kernels|"
    r"cuda-.*|apache-tvm-ffi|nixl|lmcache)$",
    re.IGNORECASE,
)


def run(cmd: list[str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT)


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, log: Path) -> Path:
    if not python_of(venv).exists():
        run([sys.executable, "-m", "venv", str(venv)], log)
        run([str(python_of(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"], log)
    return python_of(venv)


def requirements(python: Path, dist: str) -> list[str]:
    """The unconditional requirements of an installed distribution, minus SKIPPED."""
    code = (
        "import json, importlib.metadata as m;"
        f"print(json.dumps(m.distribution({dist!r}).requires or []))"
    )
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    wanted = []
    for req in json.loads(out.stdout):
        spec, _, marker = req.partition(";")
        if "extra ==" in marker:
            continue
        name = re.split(r"[\s\[<>=!~(]", spec.strip(), maxsplit=1)[0]
        if SKIPPED.match(name):
            continue
        if marker.strip() and not _marker_true(python, marker):
            continue
        wanted.append(spec.strip())
    return wanted


def _marker_true(python: Path, marker: str) -> bool:
    code = f"from packaging.markers import Marker; print(Marker({marker.strip()!r}).evaluate())"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() == "True"


def ensure_vllm(cache: Path, version: str) -> Path:
    """A virtualenv with vLLM `version` importable; built once, then reused."""
    venv = cache / f"vllm-{version}"
    done = venv / ".servegen-ready"
    log = cache / f"vllm-{version}.log"
    # The marker records what was installed, so a changed SKIPPED list re-runs the deps.
    stamp = f"{version} {SKIPPED.pattern}"
    if done.exists() and done.read_text() == stamp:
        return python_of(venv)
    python = ensure_venv(venv, log)
    pip = [str(python), "-m", "pip", "install", "-q"]
    run([*pip, TORCH, "packaging"], log)
    run([*pip, "--no-deps", f"vllm=={version}"], log)
    run([*pip, *requirements(python, "vllm")], log)
    done.write_text(stamp)
    return python


def kserve_vllm_pin(source: Path) -> str:
    """`vllm==X` for the vLLM the release's Hugging Face server image installs: its
    Dockerfile's VLLM_VERSION (python/huggingface_server.Dockerfile; from v0.16.0 the
    same as kserve's `llm` extra in python/kserve/pyproject.toml)."""
    text = (source / "python" / "huggingface_server.Dockerfile").read_text()
    match = re.search(r"^ARG VLLM_VERSION=([0-9.]+)$", text, re.MULTILINE)
    if not match:
        raise RuntimeError("no VLLM_VERSION in python/huggingface_server.Dockerfile")
    return f"vllm=={match.group(1)}"


def ensure_kserve(cache: Path, source: Path) -> Path:
    """A virtualenv with the KServe Hugging Face server of `source` (a kserve checkout),
    one per KServe release."""
    version = (source / "python" / "VERSION").read_text().strip()
    venv = cache / f"kserve-huggingfaceserver-{version}"
    done = venv / ".servegen-ready"
    log = cache / f"kserve-{version}.log"
    stamp = f"{source} {SKIPPED.pattern}"
    if done.exists() and done.read_text() == stamp:
        return python_of(venv)
    python = ensure_venv(venv, log)
    pip = [str(python), "-m", "pip", "install", "-q"]
    run([*pip, TORCH, "packaging"], log)
    # kserve's OpenAI protocol types import vLLM, so the server needs the release its
    # `llm` extra pins (the one KServe's image ships), installed the same way as above.
    vllm_pin = kserve_vllm_pin(source)
    run([*pip, "--no-deps", vllm_pin], log)
    run([*pip, *requirements(python, "vllm")], log)
    run([*pip, str(source / "python" / "storage"), str(source / "python" / "kserve")], log)
    run([*pip, "--no-deps", str(source / "python" / "huggingfaceserver")], log)
    # Its own requirements name the sibling folders by file URL (installed above); the
    # quantisation and ModelScope extras are not imported by the parser.
    wanted = [
        r
        for r in requirements(python, "huggingfaceserver")
        if "@" not in r and not r.startswith(("bitsandbytes", "modelscope"))
    ]
    run([*pip, *wanted], log)
    done.write_text(stamp)
    return python
