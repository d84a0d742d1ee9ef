"""Runs inside a virtualenv holding one vLLM release: parse rendered command lines with
that release's own entrypoint and engine-argument validation, never serving.

    python vllm_worker.py cases.json results.json {cuda|cpu} [--no-opentelemetry]

Each case is {"id", "entrypoint": "serve" | "api_server", "args": [...], "env": {...},
"gpus": N}.
The image's entrypoint is replayed: `vllm serve` through vLLM's CLI main with the serve
command stopped before it starts a server, the api_server module through its own
`__main__` block with the event loop stopped before it runs. The parsed arguments then go
through AsyncEngineArgs and the engine configs that can be built without a model
(parallel, LoRA, load, observability).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import runpy
import subprocess
import sys
import traceback
import types
from pathlib import Path
from typing import Any


class Captured(Exception):
    """Raised instead of serving, carrying the parsed arguments."""

    def __init__(self, args: Any) -> None:
        super().__init__("captured")
        self.parsed = args


def cuda_platform() -> Any:
    """vLLM's CUDA platform answering device queries for one L4 (sm 8.9, 24 GiB), the
    GPU of the examples' profile: some modules the CLI imports ask at import time."""
    # The compiled kernels need the CUDA runtime; the parser never calls them.
    sys.modules.setdefault("vllm._C", types.ModuleType("vllm._C"))
    from vllm.platforms import cuda
    from vllm.platforms.interface import DeviceCapability

    capability = DeviceCapability(8, 9)

    class L4(cuda.CudaPlatform):  # type: ignore[misc,valid-type]
        @classmethod
        def get_device_capability(cls, device_id: int = 0) -> Any:
            return capability

        @classmethod
        def has_device_capability(cls, wanted: Any, device_id: int = 0) -> bool:
            if isinstance(wanted, tuple):
                return tuple(capability) >= tuple(wanted)
            return bool(capability.to_int() >= wanted)

        @classmethod
        def get_device_name(cls, device_id: int = 0) -> str:
            return "NVIDIA L4"

        @classmethod
        def get_device_total_memory(cls, device_id: int = 0) -> int:
            return 24 << 30

        @classmethod
        def is_fully_connected(cls, device_ids: list[int]) -> bool:
            return True

    cuda.CudaPlatform = L4
    return L4()


def use_platform(kind: str) -> None:
    """Pin vLLM's platform: no GPU is here, and the parser needs a device type."""
    import vllm.platforms

    if kind == "cuda":
        platform = cuda_platform()
    else:
        import torch

        if not hasattr(torch._C._cpu, "_is_avx512_supported"):
            # vLLM 0.17.0's CPU platform asks torch 2.10 (its pin) through this private
            # name; the CPU torch 2.13.0 here answers only as torch.cpu (0.34.0 asks so).
            torch._C._cpu._is_avx512_supported = torch.cpu._is_avx512_supported
        from vllm.platforms.cpu import CpuPlatform

        platform = CpuPlatform()
    vllm.platforms._current_platform = platform  # type: ignore[attr-defined]


def parse_serve(argv: list[str]) -> Any:
    from vllm.entrypoints.cli import main as cli_main
    from vllm.entrypoints.cli.serve import ServeSubcommand

    def capture(args: Any) -> None:
        if getattr(args, "model_tag", None) is not None:
            args.model = args.model_tag  # what ServeSubcommand.cmd does first
        raise Captured(args)

    ServeSubcommand.cmd = staticmethod(capture)  # type: ignore[method-assign]
    sys.argv = ["vllm", "serve", *argv]
    try:
        cli_main.main()
    except Captured as done:
        return done.parsed
    raise RuntimeError("vllm serve returned without starting a server")


def parse_api_server(argv: list[str]) -> Any:
    import uvloop

    def capture(coro: Any, *_: Any, **__: Any) -> None:
        args = coro.cr_frame.f_locals["args"]
        coro.close()
        raise Captured(args)

    uvloop.run = capture
    sys.argv = ["api_server", *argv]
    try:
        runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__")
    except Captured as done:
        return done.parsed
    raise RuntimeError("api_server returned without starting a server")


def block_opentelemetry() -> None:
    """Make the OpenTelemetry SDK unimportable, as in images whose vLLM does not require it
    (a newer fastapi pulls it into a fresh virtualenv, but not into those images)."""

    class Blocker:
        def find_spec(self, name: str, *_: Any) -> None:
            if name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk."):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, Blocker())  # type: ignore[arg-type]


def build_configs(args: Any, gpus: int) -> list[str]:
    """Engine args, then each config section that needs no model, from those args."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    engine = AsyncEngineArgs.from_cli_args(args)
    built = ["AsyncEngineArgs"]
    world = engine.tensor_parallel_size * engine.pipeline_parallel_size
    if engine.distributed_executor_backend is None and 1 < world <= gpus:
        # vLLM picks multiprocessing when one node has the GPUs (ParallelConfig), and Ray
        # only when it has fewer; this host has none, so say what the pod has.
        engine.distributed_executor_backend = "mp"
    import vllm.config as config

    sections = ["ParallelConfig", "LoadConfig", "ObservabilityConfig"]
    if engine.enable_lora:
        sections.append("LoRAConfig")
    for name in sections:
        cls = getattr(config, name)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        # Unset (None) engine args leave the section's own default in place.
        kwargs = {n: getattr(engine, n) for n in names if getattr(engine, n, None) is not None}
        cls(**kwargs)
        built.append(name)
    return built


def otlp_exporter(args: Any) -> dict[str, Any] | None:
    """The span exporter vLLM builds for the endpoint, as the pod's environment selects it
    (built only: exporters connect lazily)."""
    endpoint = getattr(args, "otlp_traces_endpoint", None)
    if not endpoint:
        return None
    try:
        from vllm.tracing.otel import get_span_exporter
    except ImportError:
        from vllm.tracing import get_span_exporter  # type: ignore[no-redef]
    exporter = get_span_exporter(endpoint)
    fields = {k: repr(v) for k, v in vars(exporter).items() if "endpoint" in k or "insecure" in k}
    return {"class": f"{type(exporter).__module__}.{type(exporter).__name__}", **fields}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(case.get("env", {}))
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("vllm").addHandler(handler)
    result: dict[str, Any] = {"id": case["id"]}
    try:
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            parse = parse_serve if case["entrypoint"] == "serve" else parse_api_server
            args = parse(case["args"])
            built = build_configs(args, case.get("gpus", 0))
            exporter = otlp_exporter(args)
        result.update(ok=True, model=args.model, built=built, exporter=exporter)
    except BaseException as exc:  # argparse exits; every failure is a result
        detail = "".join(traceback.format_exception(exc)).strip()
        result.update(ok=False, error=detail[-6000:])
    finally:
        logging.getLogger("vllm").removeHandler(handler)
        os.environ.clear()
        os.environ.update(saved)
    text = log.getvalue()
    result["deprecations"] = [
        line.strip()[-300:]
        for line in text.splitlines()
        if "deprecat" in line.lower() or "will be removed" in line.lower()
    ]
    if not result["ok"]:
        result["log_tail"] = text[-1500:]
    return result


def cuda_importable() -> str | None:
    """None when the CLI imports under the CUDA platform here, else why not. Some releases
    call compiled CUDA kernels while importing the CLI, which needs a real GPU."""
    done = subprocess.run(
        [sys.executable, __file__, "--probe-cuda"], capture_output=True, text=True
    )
    if done.returncode == 0:
        return None
    lines = done.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


def main() -> None:
    if sys.argv[1:] == ["--probe-cuda"]:
        use_platform("cuda")
        import vllm.entrypoints.cli.main
        import vllm.entrypoints.openai.api_server  # noqa: F401

        return
    cases_file, results_file, platform = sys.argv[1:4]
    if "--no-opentelemetry" in sys.argv[4:]:
        block_opentelemetry()
    fallback = cuda_importable() if platform == "cuda" else None
    use_platform("cpu" if fallback else platform)
    cases = json.loads(Path(cases_file).read_text())
    results = [run_case(case) for case in cases]
    for result in results:
        result["platform"] = f"cpu (cuda: {fallback})" if fallback else platform
    Path(results_file).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
