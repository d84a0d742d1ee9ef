"""What vLLM itself does, release by release: the rules vllmserve renders and checks by.

Each rule names the upstream file and release it follows. The version of an image comes
from its tag (`v0.10.2`, `0.10.1.1`, `v0.11.0-cu128`), else from `vllm.version` in
servegen.yaml; None means unknown, and the newest behaviour is assumed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runtimes.base import Problem, long_flag
from runtimes.parser_rules import (
    HELP_MESSAGE,
    ReleaseFlags,
    argparse_takes,
    asks_for_help,
    did_you_mean,
    option_like,
    value_problems,
)

if TYPE_CHECKING:
    from generator.config import Config

Version = tuple[int, int, int]

# The releases servegen renders for; the conformance check (conformance/run.py) parses
# rendered command lines with the real CLI of the releases listed in the README.
SUPPORTED_FROM: Version = (0, 10, 0)
SUPPORTED_BELOW: Version = (0, 35, 0)

# vllm v0.11.1 docker/Dockerfile: the vllm-openai ENTRYPOINT becomes `vllm serve`, whose
# model is the first positional argument (--model only logs a deprecation there);
# up to v0.11.0 it is `python3 -m vllm.entrypoints.openai.api_server`, which needs --model.
SERVE_ENTRYPOINT_SINCE: Version = (0, 11, 1)
# vllm v0.17.0 requirements/common.txt adds the OpenTelemetry SDK; older images fail at
# start-up with "OpenTelemetry is not available" (vllm/tracing.py) given an OTLP endpoint.
OTEL_SINCE: Version = (0, 17, 0)
# vllm v0.12.0 docker/Dockerfile.cpu installs the run:ai model streamer; the CPU images up
# to v0.11.x lack it, so `--load-format runai_streamer` (s3://) fails there.
CPU_RUNAI_SINCE: Version = (0, 12, 0)
# vllm v0.12.0 vllm/model_executor/models/bert.py: no BERT model implements SupportsLoRA
# ("does not support LoRA yet"); v0.33.0 and v0.34.0 bert.py and roberta.py do. Releases in between
# were not checked, so they are refused too.
BERT_LORA_SINCE: Version = (0, 33, 0)

_VERSION_RE = re.compile(r"^v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?")


def parse_version(text: str | None) -> Version | None:
    match = _VERSION_RE.match(text or "")
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def image_version(image: str) -> Version | None:
    """The vLLM version in an image tag (`vllm/vllm-openai:v0.10.2` -> (0, 10, 2))."""
    tag = image.partition("@")[0].rsplit("/", 1)[-1].partition(":")[2]
    return parse_version(tag)


def show(version: Version) -> str:
    return ".".join(map(str, version))


def older_than(version: Version | None, since: Version) -> bool:
    """Known to predate `since` (an unknown version is taken as the newest)."""
    return version is not None and version < since


def supported(version: Version | None) -> bool:
    return version is None or SUPPORTED_FROM <= version < SUPPORTED_BELOW


def unsupported_message(image: str, version: Version) -> str:
    return (
        f"image {image!r} is vLLM {show(version)}, outside the supported range "
        f"{show(SUPPORTED_FROM)} to below {show(SUPPORTED_BELOW)}: its flags are not checked "
        "against that release and may not start"
    )


def config_problems(config: Config) -> Iterator[Problem]:
    """The configured vLLM images outside the supported range: warned once, from
    servegen.yaml, not from every spec that uses the default image."""
    for key in ("image", "cpu_image"):
        image = getattr(config.vllm, key)
        version = image_version(image) or parse_version(config.vllm.version)
        if version is not None and not supported(version):
            yield Problem(("vllm", key), unsupported_message(image, version), "warning")


def serve_entrypoint(version: Version | None) -> bool:
    """Whether the image's entrypoint is `vllm serve` (model positional)."""
    return version is None or version >= SERVE_ENTRYPOINT_SINCE


def model_args(model: str, version: Version | None) -> list[str]:
    """How the model is passed to the image's entrypoint."""
    return [model] if serve_entrypoint(version) else ["--model", model]


# --- parallelism ----------------------------------------------------------------------

# vllm v0.10.0 vllm/engine/arg_utils.py: the parallel sizes and their short aliases.
PARALLEL_FLAGS = {
    "--tensor-parallel-size": "tensor",
    "-tp": "tensor",
    "--pipeline-parallel-size": "pipeline",
    "-pp": "pipeline",
    "--data-parallel-size": "data",
    "-dp": "data",
}


@dataclass(frozen=True)
class ParallelArg:
    """One parallel-size flag found in serve.args."""

    index: int
    kind: str
    value: int | None  # None: not a positive integer


def parallel_flag(arg: str) -> str | None:
    """Which parallel size `arg` sets ("tensor", "pipeline", "data"), if any."""
    flag = arg.partition("=")[0]
    return PARALLEL_FLAGS.get(flag.replace("_", "-") if flag.startswith("--") else flag)


def parallel_args(args: list[str]) -> list[ParallelArg]:
    """The tensor/pipeline/data parallel sizes a user passes (`-tp 2`, `--tp=2`...)."""
    found = []
    for index, arg in enumerate(args):
        _, eq, value = arg.partition("=")
        kind = parallel_flag(arg)
        if kind is None:
            continue
        if not eq:
            value = args[index + 1] if index + 1 < len(args) else ""
        # ASCII digits int() reads: isdigit() alone accepts "²", and int() refuses more
        # than 4,300 digits.
        plain = value.isascii() and value.isdigit() and len(value) <= 4300
        number = int(value) if plain and int(value) > 0 else None
        found.append(ParallelArg(index, kind, number))
    return found


# --- flags ------------------------------------------------------------------------------

# The long flags each checked release's entrypoint parser takes, and how each takes a
# value, listed from the release itself by conformance/flags.py (vllm wheels from PyPI;
# the releases, their versions and source commits are in the file).
FLAGS_FILE = Path(__file__).with_name("vllm_flags.json")


@cache
def release_flags() -> dict[Version, ReleaseFlags]:
    data = json.loads(FLAGS_FILE.read_text(encoding="utf-8"))
    table = {}
    for text, listed in data["releases"].items():
        version = parse_version(text)
        if version is not None:
            table[version] = ReleaseFlags.listed(listed, serve=listed["entrypoint"] == "serve")
    return table


@cache
def any_release_flags() -> frozenset[str]:
    """Every long flag some listed release takes (made once: a union of nine releases'
    flags per spec was 2% of a cold render)."""
    return frozenset().union(*(listed.flags for listed in release_flags().values()))


def flag_name(arg: str) -> str:
    """The option a long `arg` names as vLLM's parser reads it (FlexibleArgumentParser
    .parse_args: vllm v0.10.0 vllm/utils/__init__.py, v0.34.0 vllm/utils/argparse_utils.py):
    the part before a `=value` and before a `.key` of a JSON flag
    (`--compilation-config.mode=3`), with `_` read as `-`."""
    return (long_flag(arg) or arg).partition(".")[0]


def flag_problems(
    args: Sequence[str],
    version: Version | None,
    owned: Callable[[str], str | None],
    *,
    api_server: bool = False,
) -> Iterator[tuple[int, str, bool]]:
    """(index, message, is an error) for each long flag in `args`, or its value, that
    the image's vLLM would refuse at start-up; a flag `owned` names (one the caller
    sets itself, and judges) and its value are left alone.

    For a release conformance/flags.py listed, what it refuses is an error: a flag it
    does not take or an abbreviation of several, a value given to a flag that takes
    none, none given to one that takes one, and a value outside a flag's fixed
    choices. So is a word no flag takes as its value (`--trust-remote-code true`),
    except the first on the api_server entrypoint, which takes it as a model name it
    ignores (a warning), and so does that module when `api_server` says the command
    runs it whatever the release (KubeAI does). For any other release, a flag no
    listed release takes is a warning (that release may have added it)."""
    table = release_flags()
    release = table.get(version) if version is not None else None
    if release is not None and version is not None:
        yield from _stray_problems(args, release, show(version), release.serve and not api_server)
    for index, arg in enumerate(args):
        if arg == "--":  # the rest is positional
            return
        if asks_for_help(arg, any_release_flags() if release is None else release.flags):
            yield index, HELP_MESSAGE.format(arg=arg), True
            continue
        if not arg.startswith("--") or owned(arg):
            continue  # a value, a short option, or the caller's to judge
        name = flag_name(arg)
        if release is None or version is None:
            if not any(len(argparse_takes(name, listed.flags)) == 1 for listed in table.values()):
                yield index, _unlisted(name, table), False
            continue
        taken = argparse_takes(name, release.flags)
        if len(taken) != 1:
            yield index, _refused(name, taken, version, table), True
        elif "." not in arg.partition("=")[0]:  # (a JSON flag's `.key` takes JSON)
            yield from value_problems(args, index, taken[0], release, f"vLLM {show(version)}")


def _stray_problems(
    args: Sequence[str], release: ReleaseFlags, version: str, serve: bool
) -> Iterator[tuple[int, str, bool]]:
    """The words of `args` no option takes as its value, as argparse consumes them: a
    switch takes none, a valued flag (or a JSON flag's `.key`, or a short option) the
    next word that is no option, a flag of another arity (or one refused already)
    every such word; after `--` every word is positional. The model is the positional
    of `vllm serve` (`serve`); the api_server module takes a first stray word as its
    (ignored) positional model name."""
    strays: list[int] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            strays.extend(range(index, len(args)))
            break
        if not option_like(arg, release.flags) and not arg.startswith("--"):
            strays.append(index - 1)  # (a `--` word is a flag to judge, taken or not)
            continue
        if "=" in arg:
            continue
        if _switch(arg, release) is not None:
            continue
        taken = argparse_takes(flag_name(arg), release.flags)
        valued = len(taken) == 1 and taken[0] in release.valued
        one = not arg.startswith("--") or "." in arg or valued
        while index < len(args) and args[index] != "--":
            if option_like(args[index], release.flags):
                break
            index += 1
            if one:
                break
    for count, at in enumerate(strays):
        switch = _switch(args[at - 1], release) if at else None
        hint = f" ({switch} takes no value)" if switch else ""
        if count == 0 and not serve:
            message = f"vLLM {version}'s api_server takes it as a model name, which it ignores"
        else:
            message = (
                f"vLLM {version}'s parser refuses it ('unrecognized arguments') and the server "
                "exits at start-up"
            )
        yield at, f"{args[at]!r} is no flag's value{hint}: {message}", count > 0 or serve


def _switch(arg: str, release: ReleaseFlags) -> str | None:
    """The switch (a flag that takes no value) `arg` names, written without `=`."""
    if not arg.startswith("--") or "=" in arg or "." in arg:
        return None
    taken = argparse_takes(flag_name(arg), release.flags)
    return taken[0] if len(taken) == 1 and taken[0] in release.switches else None


def _unlisted(name: str, table: Mapping[Version, ReleaseFlags]) -> str:
    checked = f"{show(min(table))} to {show(max(table))}"
    return (
        f"{name}: no vLLM release servegen checked ({checked}) takes this flag"
        f"{did_you_mean(name, any_release_flags())}; unless the image's release added it, the "
        "server exits at start-up"
    )


def _refused(
    name: str, taken: tuple[str, ...], version: Version, table: Mapping[Version, ReleaseFlags]
) -> str:
    release = f"vLLM {show(version)}"
    if taken:
        listed = ", ".join(taken[:3]) + (", ..." if len(taken) > 3 else "")
        return (
            f"{name} abbreviates several flags of {release} ({listed}): its parser refuses "
            "it and the server exits at start-up; write the flag out"
        )
    others = [
        show(v) for v, flags in sorted(table.items()) if len(argparse_takes(name, flags.flags)) == 1
    ]
    verb = "takes" if len(others) == 1 else "take"
    elsewhere = f"; vLLM {', '.join(others)} {verb} it" if others else ""
    if " " in name:
        elsewhere += "; a flag and its value are two items of args"
    return (
        f"{name}: {release} takes no such flag{did_you_mean(name, table[version].flags)}, so the "
        f"server exits at start-up{elsewhere}"
    )


# --- tracing ----------------------------------------------------------------------------

OTLP_HTTP_PORT = 4318
OTLP_TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class OtlpExporter:
    """The --otlp-traces-endpoint value and the exporter variables that make it mean
    what the configured URL says."""

    endpoint: str
    protocol: str  # "grpc" or "http/protobuf"


def otlp_exporter(url: str) -> OtlpExporter:
    """Map telemetry.otlp_endpoint to vLLM's exporter settings.

    vllm v0.33.0 and v0.34.0 vllm/tracing/otel.py pick the exporter from
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL (default grpc); the gRPC exporter
    (opentelemetry-exporter-otlp-proto-grpc) uses TLS for `https://` and plaintext for
    `http://`, so `grpc://host:port` (plaintext gRPC, as written) is passed as
    `http://host:port`. An http(s) URL on port 4318 or with a /v1/traces path is
    OTLP/HTTP, whose exporter posts to the URL as given, so an empty path gets /v1/traces.
    Any other http(s) URL is gRPC: plaintext for http, TLS for https.
    """
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if parts.scheme == "grpc":
        return OtlpExporter(f"http://{parts.netloc}", "grpc")
    if parts.port == OTLP_HTTP_PORT or path.endswith(OTLP_TRACES_PATH):
        full = url if path else f"{parts.scheme}://{parts.netloc}{OTLP_TRACES_PATH}"
        return OtlpExporter(full, "http/protobuf")
    return OtlpExporter(f"{parts.scheme}://{parts.netloc}", "grpc")


# --- what the model name tells ----------------------------------------------------------

# Hugging Face repos whose names say they are BERT-family encoders (BertModel,
# RobertaModel, XLMRobertaModel and their classifiers); only these are recognised.
_BERT_STYLE = re.compile(
    r"(bert|roberta|minilm|mpnet|bge-(small|base|large|m3)|bge-reranker-(base|large|v2-m3)"
    r"|(^|[-_/])e5-(small|base|large)|ms-marco)",
    re.IGNORECASE,
)
# Names that mark a pooling model (embedding, reranking, reward); vLLM's runner "auto"
# (vllm v0.10.2 vllm/config/__init__.py ModelConfig) serves pooling architectures with the
# pooling runner, which has no /v1/chat/completions.
_POOLING_NAME = re.compile(
    r"(embed|rerank|(^|[-_/])(bge|gte|e5)-|minilm|mpnet|sentence-transformers/|reward)",
    re.IGNORECASE,
)


def bert_style(repo: str) -> bool:
    return bool(_BERT_STYLE.search(repo))


def pooling_name(repo: str) -> bool:
    return bool(_POOLING_NAME.search(repo))


# --- CPU memory -------------------------------------------------------------------------

GIB = 1 << 30
# The vLLM process, tokenizer and Python heap outside weights and KV cache.
CPU_RUNTIME_RESERVE = 1 * GIB
# Bytes per parameter of bf16/fp16 weights (the CPU image's default dtype is bfloat16).
WEIGHT_BYTES = 2
_PARAMS = re.compile(r"(?<![0-9.])([0-9]+(?:\.[0-9]+)?)[bB](?![a-zA-Z0-9])")


def weight_bytes(repo: str) -> Decimal | None:
    """Weights implied by a parameter count in the name (`Qwen2.5-0.5B` -> 1e9 bytes)."""
    match = _PARAMS.search(repo.rsplit("/", 1)[-1])
    if not match:
        return None
    return Decimal(match.group(1)) * Decimal(10**9) * WEIGHT_BYTES


# vllm v0.10.2 vllm/platforms/cpu.py: VLLM_CPU_KVCACHE_SPACE is the KV cache in GiB
# (4 when unset), allocated in process memory next to the weights; the memory-backed
# /dev/shm emptyDir is charged to the same cgroup limit.
@dataclass(frozen=True)
class CpuMemory:
    """How a CPU pod's memory limit is shared (all in bytes)."""

    limit: Decimal
    shm: Decimal
    weights: Decimal | None  # None: the name does not say

    @property
    def free(self) -> Decimal:
        """What the limit leaves after /dev/shm, the runtime and known weights."""
        return self.limit - self.shm - CPU_RUNTIME_RESERVE - (self.weights or 0)

    def kv_cache_gib(self) -> int:
        """VLLM_CPU_KVCACHE_SPACE: all that is free when the weights are known, else half
        of it (the other half for the weights); 0 when nothing is left."""
        free = self.free if self.weights is not None else self.free / 2
        # int() first: a huge limit (1e37 bytes) has more digits than the decimal
        # context holds, and Decimal // would raise rather than round.
        return max(0, int(free) // GIB)

    def fits(self, kv_gib: int) -> bool:
        return kv_gib >= 1 and kv_gib * GIB <= self.free
