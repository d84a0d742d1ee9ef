"""huggingfaceserve: a KServe `InferenceService` (serving.kserve.io/v1beta1) run by the
Hugging Face serving runtime (modelFormat `huggingface`).

KServe's storage initializer downloads `storageUri` into /mnt/models and the runtime
(`python -m huggingfaceserver`) serves it on the vLLM or the Hugging Face backend. The
OpenAI routes live under /openai/v1 on the `<name>-predictor` Service; encoder tasks
(classification, fill-mask) answer the Open Inference (v2) and v1 predict protocols.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints

from generator.config import Config, PinnedImage, Profile
from generator.errors import RenderError
from generator.fields import (
    DnsLabel,
    DnsSubdomain,
    Envs,
    Int32,
    Labels,
    Line,
    Resources,
    SecretNames,
    StrictModel,
    Toleration,
    pvc_claim_problem,
)
from generator.k8sformats import DNS1035_LABEL
from generator.spec import SpecDocument, spec_override_model
from runtimes.base import (
    Endpoint,
    Facts,
    ObjectRef,
    Problem,
    Runtime,
    utilization_request_problem,
)
from runtimes.kserve_release import SUPPORTED_BELOW_MINOR, SUPPORTED_FROM_MINOR
from runtimes.parser_rules import (
    HELP_MESSAGE,
    ReleaseFlags,
    argparse_takes,
    asks_for_help,
    did_you_mean,
    option_like,
    value_problems,
)

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
GPU = "nvidia.com/gpu"

_HF_RE = (
    r"(hf|huggingface)://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
    r"([@:][A-Za-z0-9][A-Za-z0-9._-]*)?"
)
_OBJECT_RE = r"(s3|gs)://[a-z0-9][a-z0-9._-]*[a-z0-9](/[A-Za-z0-9._/=+@-]*)?"
_PVC_RE = r"pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9._/=+@-]*)?"
PATH_RE = rf"^({_HF_RE}|{_OBJECT_RE}|{_PVC_RE})$"
_HF_PARTS = re.compile(r"^(?:hf|huggingface)://([^@:]+)(?:[@:](.+))?$")

PREDICTOR_SUFFIX = "-predictor"  # the Deployment/Service KServe creates: <name>-predictor
# kserve v0.20.0 pkg/constants/constants.go (PredictorServiceName): an InferenceService
# `<name>` makes its predictor's Deployment, Service and HPA as `<name>-predictor` in its
# namespace (Standard mode), so those names are taken even though servegen renders none.
PREDICTOR_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)
KNATIVE_REVISION_SUFFIX = "-00001"  # Knative revisions append a 5-digit generation

Task = Literal[
    "sequence_classification",
    "token_classification",
    "fill_mask",
    "text_generation",
    "text2text_generation",
    "text_embedding",
    "time_series_forecast",
]
Backend = Literal["auto", "vllm", "huggingface"]
Dtype = Literal["auto", "float16", "float32", "bfloat16", "float", "half"]
ScaleMetric = Literal["cpu", "memory", "concurrency", "rps"]
DeploymentMode = Literal["Standard", "Knative"]
VllmTask = Literal["embed", "score"]
TensorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]+$", max_length=256)]

GENERATIVE_TASKS = frozenset({"text_generation", "text2text_generation"})
OPENAI_PATHS = {
    "TextGeneration": ("/chat/completions", "/completions", "/models"),
    "TextEmbedding": ("/embeddings", "/models"),
    "Reranking": ("/rerank", "/models"),
}
# kserve v0.20.0 huggingfaceserver: text2text (encoder-decoder) models have no chat
# template, so only the completions route answers.
TEXT2TEXT_PATHS = ("/completions", "/models")
VLLM_TASK_FEATURES = {"embed": "TextEmbedding", "score": "Reranking"}
# kserve v0.17.0 to v0.20.0 run vLLM 0.15.1 to 0.24.0 (python/kserve/pyproject.toml),
# which have no --task: a pooling model is --runner pooling with --convert. v0.15 and
# v0.16 run vLLM 0.8 and 0.9, which take --task embed or score. huggingfaceserver/
# __main__.py reads its own --task on the Hugging Face backend only and drops any
# argument no parser knows (parse_known_args), so a wrong flag fails silently.
RUNNER_SINCE_KSERVE = 17
POOLING_CONVERT = {"embed": "embed", "score": "classify"}
# kserve v0.20.0 pkg/constants/constants.go: Standard/Knative exist from 0.16; older
# releases know only RawDeployment/Serverless and silently fall back to their default.
LEGACY_MODE_NAMES = {"Standard": "RawDeployment", "Knative": "Serverless"}
STORAGE_ACCOUNT_SUFFIX = "-storage"
# URIs the storage initializer downloads (pvc:// is mounted, no credentials involved).
DOWNLOADED_SCHEMES = ("hf://", "huggingface://", "s3://", "gs://")
# Standard mode scales with a HorizontalPodAutoscaler (resource metrics); Knative mode
# with the Knative Pod Autoscaler (request metrics). KServe's webhook enforces both.
MODE_METRICS: dict[str, frozenset[str]] = {
    "Standard": frozenset({"cpu", "memory"}),
    "Knative": frozenset({"concurrency", "rps"}),
}

# Arguments the generator sets, or that would make the rendered object lie about itself
# (served name, model location, ports, backend and task). Compared with '-' read as '_':
# either spelling of them would change what is served (see KSERVE_OWN_ARGS for how
# the server reads the two spellings of vLLM's flags).
OWNED_ARGS: dict[str, str] = {
    "model_name": "it is spec.model_name",
    "served_model_name": "the served name is spec.model_name",
    "model_id": "the model comes from spec.path (storageUri)",
    "model_dir": "the model comes from spec.path (storageUri)",
    "backend": "it is serve.backend",
    "task": "it is serve.huggingface_task or serve.vllm_task",
    "runner": "it follows serve.vllm_task",
    "convert": "it follows serve.vllm_task",
    "http_port": "KServe owns the serving ports",
    "grpc_port": "KServe owns the serving ports",
}
# The option strings of the parser that reads the runtime's args when vLLM does not serve
# the model (backend huggingface, or auto with an architecture vLLM lacks): kserve/
# model_server.py's parser, then huggingfaceserver/__main__.py's own flags and those it
# adds on that backend (--task, --max_log_len, --dtype). By KServe minor release, each
# entry what that release added: read from v0.15.2, v0.16.0, v0.17.0 and v0.18.0 (v0.19.0
# and v0.20.0 define the same); conformance/run.py compares v0.20.0's with the parser's.
_HF_BACKEND_FLAGS_ADDED: dict[int, frozenset[str]] = {
    15: frozenset(
        {
            "--access_log_format", "--backend", "--configure_logging", "--disable_log_requests",
            "--disable_lower_case", "--disable_special_tokens", "--dtype", "--enable_docs_url",
            "--enable_grpc", "--enable_latency_logging", "--enable_predictor_health_check",
            "--grpc_max_receive_message_length", "--grpc_max_send_message_length",
            "--grpc_port", "--http_port", "--log_config_file", "--max-log-len",
            "--max_asyncio_workers", "--max_length", "--max_log_len", "--max_model_len",
            "--max_threads", "--model_dir", "--model_id", "--model_name", "--model_revision",
            "--predictor_host", "--predictor_protocol", "--predictor_request_retries",
            "--predictor_request_timeout_seconds", "--predictor_use_ssl", "--protocol",
            "--return_probabilities", "--return_token_type_ids", "--task",
            "--tensor_input_names", "--tokenizer_revision", "--trust_remote_code", "--workers",
        }
    ),
    16: frozenset({"--return_raw_logits"}),
    17: frozenset({"--event-loop"}),
    18: frozenset({"--return_offsets_mapping", "--timeout-keep-alive"}),
}  # fmt: skip


@cache
def hf_backend_flags(minor: int) -> frozenset[str]:
    """The Hugging Face backend's option strings in KServe 0.<minor> (0.15 to 0.20)."""
    return frozenset().union(
        *(flags for since, flags in _HF_BACKEND_FLAGS_ADDED.items() if since <= minor)
    )


# The flags KServe's model server and huggingfaceserver/__main__.py define themselves
# in any of those releases, '-' read as '_'. Every other flag is vLLM's under the vLLM
# backend, and __main__.py reads it with parse_known_args(): vLLM's FlexibleArgumentParser
# turns '_' into '-' only in parse_args() (vllm 0.24.0 vllm/utils/argparse_utils.py), so
# `--a_b` for vLLM's `--a-b` is an unknown argument there and is dropped without a word.
KSERVE_OWN_FLAGS = hf_backend_flags(20)
KSERVE_OWN_ARGS = frozenset(flag[2:].replace("-", "_") for flag in KSERVE_OWN_FLAGS)
# Flags a typed serve field renders; passing them in `args` too is ambiguous.
FIELD_ARGS: dict[str, str] = {
    "max_model_len": "max_length",
    "max_length": "max_length",
    "dtype": "dtype",
    "tokenizer_revision": "tokenizer_revision",
    "model_revision": "model_revision",
    "trust_remote_code": "trust_remote_code",
    "disable_lower_case": "disable_lower_case",
    "disable_special_tokens": "disable_special_tokens",
    "return_token_type_ids": "return_token_type_ids",
    "return_probabilities": "return_probabilities",
    "disable_log_requests": "disable_log_requests",
    "tensor_input_names": "tensor_input_names",
    "max_log_len": "max_log_len",
}
BOOL_FLAGS = (
    "trust_remote_code",
    "disable_lower_case",
    "disable_special_tokens",
    "return_token_type_ids",
    "return_probabilities",
    "disable_log_requests",
)
OPENAI_PREFIX_ENV = "KSERVE_OPENAI_ROUTE_PREFIX"
DEFAULT_OPENAI_PREFIX = "/openai"


class HFModelSpec(StrictModel):
    """The model: where KServe's storage initializer fetches it from."""

    path: str = Field(
        pattern=PATH_RE,
        max_length=1024,
        description=(
            "Model location: hf://org/model[@revision] (the legacy huggingface:// scheme "
            "and org/model:revision are accepted), s3://bucket/path, gs://bucket/path or "
            "pvc://claim/path."
        ),
        examples=["hf://Qwen/Qwen2.5-0.5B-Instruct", "s3://models/bert-base-uncased"],
    )
    model_name: DnsLabel | None = Field(
        default=None,
        description="Served model name (--model_name) and OpenAI `model` value "
        "(default: the spec name).",
    )
    image: PinnedImage | None = Field(
        default=None,
        description="Serving image override (default: the image of KServe's "
        "huggingfaceserver runtime).",
    )


# What an environment may pin differently: the model version (see README).
SPEC_OVERRIDES = ("path", "image")


class HFModelSpecOverride(spec_override_model(HFModelSpec, SPEC_OVERRIDES)):  # type: ignore[misc]
    """What an environment may override in `spec` (environments.<env>.spec)."""


class Scaling(StrictModel):
    """Replica bounds and the autoscaler target."""

    min_replicas: Int32 | None = Field(
        default=None, ge=0, description="Minimum replicas (KServe default 1); 0 needs Knative."
    )
    max_replicas: Int32 | None = Field(default=None, ge=1, description="Maximum replicas.")
    scale_metric: ScaleMetric | None = Field(
        default=None,
        description="Autoscaling metric: cpu or memory (Standard mode), concurrency or rps "
        "(Knative mode).",
    )
    scale_target: Int32 | None = Field(
        default=None,
        gt=0,
        description="Target per replica: utilization percent for cpu/memory, requests for "
        "concurrency/rps.",
    )


class HFServe(StrictModel):
    """How the model is served."""

    backend: Backend = Field(
        default="auto",
        description="auto (vLLM when it supports the architecture), vllm or huggingface.",
    )
    huggingface_task: Task | None = Field(
        default=None,
        description="Task for the Hugging Face backend (--task); default: inferred from the "
        "model architecture. Needs backend: huggingface.",
    )
    vllm_task: VllmTask | None = Field(
        default=None,
        description="Task for the vLLM backend: embed (embeddings) or score (reranking); "
        "default: text generation. Needs backend: vllm. Rendered as --runner/--convert from "
        "KServe 0.17 (vLLM 0.15 and later), as --task before.",
    )
    max_length: int | None = Field(
        default=None, gt=0, description="Context length in tokens (--max_model_len)."
    )
    dtype: Dtype | None = Field(default=None, description="Weights data type (--dtype).")
    tokenizer_revision: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        max_length=255,
        description="Tokenizer revision (--tokenizer_revision).",
    )
    model_revision: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=255,
        description="Model revision (branch, tag or commit) for hf:// paths; the storage "
        "initializer downloads it (storageUri hf://org/model:revision).",
    )
    trust_remote_code: bool | None = Field(
        default=None, description="Allow custom model code (--trust_remote_code); off by default."
    )
    disable_lower_case: bool | None = Field(
        default=None, description="Do not lower-case input for the tokenizer."
    )
    disable_special_tokens: bool | None = Field(
        default=None, description="Encode without the model's special tokens."
    )
    return_token_type_ids: bool | None = Field(default=None, description="Return token type ids.")
    return_probabilities: bool | None = Field(
        default=None, description="Return all class probabilities."
    )
    disable_log_requests: bool | None = Field(default=None, description="Do not log requests.")
    tensor_input_names: list[TensorName] = Field(
        default_factory=list,
        description="Tensor input names passed to the model (--tensor_input_names a,b).",
    )
    max_log_len: int | None = Field(
        default=None, ge=0, description="Prompt characters or ids printed in request logs."
    )
    args: list[Line] = Field(
        default_factory=list,
        description="Extra runtime/engine arguments, after the generated ones "
        "(`--flag value` or `--flag=value`).",
    )
    resources: Resources | None = Field(
        default=None,
        description="cpu (request and limit), mem (request and limit), gpu (nvidia.com/gpu) "
        "and disk (ephemeral-storage request for the downloaded model); overrides the "
        "profile key by key.",
    )
    profile: DnsLabel | None = Field(
        default=None, description="Name of a servegen.yaml profile supplying defaults."
    )
    envs: Envs = Field(default_factory=dict)
    secrets: SecretNames = Field(default_factory=list)
    service_account_name: DnsSubdomain | None = Field(
        default=None,
        description="ServiceAccount of the predictor; KServe hands its secrets' credentials "
        "(e.g. HF_TOKEN for gated hf:// models) to the storage initializer. Default: one "
        "servegen renders (<name>-storage) listing `secrets` when there are any.",
    )
    node_selector: Labels = Field(
        default_factory=dict, description="Node selector labels, merged over the profile's."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations; replace the profile's when set."
    )
    scaling: Scaling = Field(default_factory=Scaling, description="Replicas and autoscaling.")
    deployment_mode: DeploymentMode = Field(
        default="Standard",
        description="KServe deployment mode: Standard (Deployment + HPA) or Knative.",
    )


def longest_name(deployment_mode: str) -> int:
    """How long a spec's name may be: KServe names its objects <name>-predictor (and
    Knative revisions add a generation), which must stay DNS-1035 labels."""
    longest = DNS1035_LABEL.max_length - len(PREDICTOR_SUFFIX)
    if deployment_mode == "Knative":
        longest -= len(KNATIVE_REVISION_SUFFIX)
    return longest


def _document_schema(schema: dict[str, Any]) -> None:
    """_name_problems' rule, for editors: a DNS-1035 label (a letter first), as long as
    the deployment mode allows. Only the spec's own mode is read: an environment's
    override is judged once merged, which no schema can do."""
    name = schema["properties"]["name"]
    name["pattern"] = DNS1035_LABEL.pattern
    name["maxLength"] = longest_name("Standard")
    mode = {"const": "Knative", "description": "Knative, whose revisions lengthen names."}
    knative = {"properties": {"deployment_mode": mode}, "required": ["deployment_mode"]}
    schema["if"] = {
        "properties": {"serve": {**knative, "description": "Served in Knative mode."}},
        "required": ["serve"],
    }
    shorter = {"maxLength": longest_name("Knative"), "description": "Shorter in Knative mode."}
    schema["then"] = {"properties": {"name": shorter}}


class HuggingFaceServeDocument(SpecDocument[HFModelSpec, HFServe, HFModelSpecOverride]):
    """A huggingfaceserve serve spec."""

    model_config = ConfigDict(json_schema_extra=_document_schema)

    location_field: ClassVar[str] = "path"
    # kserve v0.20.0 storage initializer: serve.model_revision picks what is downloaded.
    version_serve_fields: ClassVar[tuple[str, ...]] = ("model_revision",)

    kind: Literal["huggingfaceserve"] = Field(
        description="huggingfaceserve: a KServe InferenceService on the Hugging Face runtime."
    )


def model_name(doc: HuggingFaceServeDocument) -> str:
    return doc.spec.model_name or doc.name


def storage_uri(doc: HuggingFaceServeDocument) -> str:
    """spec.path as KServe's storage initializer reads it.

    huggingface:// becomes hf://, and a revision (`@rev`, `:rev`, or serve.model_revision)
    is written `hf://org/model:rev`, the form the storage initializer passes to
    snapshot_download(revision=...). A --model_revision flag alone would not do: the
    runtime loads the already-downloaded /mnt/models, where revisions mean nothing.
    """
    path = doc.spec.path
    match = _HF_PARTS.fullmatch(path)
    if match is None:
        return path
    repo, revision = match.group(1), match.group(2) or doc.serve.model_revision
    return f"hf://{repo}:{revision}" if revision else f"hf://{repo}"


def _path_revision(path: str) -> str | None:
    match = _HF_PARTS.fullmatch(path)
    return match.group(2) if match else None


def _profile(doc: HuggingFaceServeDocument, config: Config) -> Profile | None:
    name = doc.serve.profile
    return config.profiles.get(name) if name else None


def _resources(doc: HuggingFaceServeDocument, config: Config) -> Resources:
    """Profile resources overridden key by key by the spec's."""
    profile = _profile(doc, config)
    base = (profile.resources if profile else None) or Resources()
    own = doc.serve.resources or Resources()
    return base.model_copy(update=own.model_dump(exclude_none=True))


def gpus(doc: HuggingFaceServeDocument, config: Config) -> int:
    return _resources(doc, config).gpu or 0


def _kubernetes_resources(res: Resources) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        # KServe's defaulter fills a missing cpu limit with its default (1 core), which
        # would undercut any larger request; so the limit follows the request.
        requests["cpu"] = limits["cpu"] = res.cpu
    if res.mem:
        requests["memory"] = limits["memory"] = res.mem
    if res.gpu:
        requests[GPU] = limits[GPU] = str(res.gpu)
    if res.disk:
        # The storage initializer downloads into an emptyDir on node ephemeral storage.
        requests["ephemeral-storage"] = res.disk
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def runtime_args(doc: HuggingFaceServeDocument, config: Config) -> list[str]:
    serve = doc.serve
    args = [f"--model_name={model_name(doc)}"]
    if serve.backend != "auto":
        args.append(f"--backend={serve.backend}")
    if serve.huggingface_task:
        args.append(f"--task={serve.huggingface_task}")
    if serve.vllm_task:
        args.extend(vllm_task_args(serve.vllm_task, config))
    if serve.max_length is not None:
        args.append(f"--max_model_len={serve.max_length}")
    if serve.dtype:
        args.append(f"--dtype={serve.dtype}")
    if serve.tokenizer_revision:
        args.append(f"--tokenizer_revision={serve.tokenizer_revision}")
    if serve.model_revision:
        args.append(f"--model_revision={serve.model_revision}")
    # The runtime declares these store_true: the flag alone turns them on, and there is
    # no way to spell "false" but to leave the flag out.
    args.extend(f"--{flag}" for flag in BOOL_FLAGS if getattr(serve, flag))
    if serve.tensor_input_names:
        args.append(f"--tensor_input_names={','.join(serve.tensor_input_names)}")
    if serve.max_log_len is not None:
        # Dashes: the Hugging Face backend's parser takes both spellings, vLLM's only this
        # one (kserve v0.20.0 huggingfaceserver/__main__.py; vLLM's cli_args.py).
        args.append(f"--max-log-len={serve.max_log_len}")
    return [*args, *serve.args]


def vllm_task_args(task: str, config: Config) -> list[str]:
    """The vLLM flags that make the KServe release's vLLM serve `task`."""
    if config.kserve.at_least(RUNNER_SINCE_KSERVE):
        return ["--runner=pooling", f"--convert={POOLING_CONVERT[task]}"]
    return [f"--task={task}"]


def _arg_name(arg: str) -> str | None:
    if not arg.startswith("--") or arg == "--":
        return None
    return arg[2:].split("=", 1)[0].replace("-", "_")


def openai_prefix(doc: HuggingFaceServeDocument) -> str:
    return doc.serve.envs.get(OPENAI_PREFIX_ENV, DEFAULT_OPENAI_PREFIX)


class HuggingFaceServe(Runtime[HuggingFaceServeDocument]):
    kind: ClassVar[str] = "huggingfaceserve"
    document = HuggingFaceServeDocument
    templates: ClassVar[tuple[str, ...]] = ("inferenceservice.yaml.j2", "serviceaccount.yaml.j2")
    spec_overrides: ClassVar[tuple[str, ...]] = SPEC_OVERRIDES

    def spec_problems(self, doc: HuggingFaceServeDocument, config: Config) -> Iterable[Problem]:
        serve = doc.serve
        yield from _name_problems(doc)
        yield from _model_problems(doc)
        if claim_problem := pvc_claim_problem(doc.spec.path):
            yield Problem(("spec", "path"), claim_problem)
        if serve.huggingface_task and serve.backend != "huggingface":
            yield Problem(
                ("serve", "huggingface_task"),
                f"huggingface_task needs backend: huggingface (it is {serve.backend}): the "
                "runtime's task names are read by the Hugging Face backend only, while "
                "under vLLM (backend vllm, or auto with a vLLM-supported model) --task is "
                "parsed by vLLM, which does not know them",
            )
        if serve.vllm_task and serve.backend != "vllm":
            yield Problem(
                ("serve", "vllm_task"),
                f"vllm_task needs backend: vllm (it is {serve.backend}): only vLLM reads "
                "these task names",
            )
        if serve.tokenizer_revision is not None:
            # kserve v0.20.0 huggingfaceserver/__main__.py loads the tokenizer from
            # --model_dir (/mnt/models, what storageUri downloaded): a revision is not read.
            yield Problem(
                ("serve", "tokenizer_revision"),
                "tokenizer_revision has no effect: the tokenizer is loaded from the files the "
                "storage initializer downloaded from spec.path; pin the revision in spec.path "
                "(hf://org/model@rev) instead",
            )
        yield from _args_problems(serve, config)
        yield from _exclusive_output_problems(serve, config)
        if serve.profile is not None and serve.profile not in config.profiles:
            known = ", ".join(sorted(config.profiles)) or "none are defined in servegen.yaml"
            yield Problem(
                ("serve", "profile"), f"unknown profile {serve.profile!r} (known: {known})"
            )
        prefix = serve.envs.get(OPENAI_PREFIX_ENV)
        # kserve v0.15-v0.20 protocol/rest/openai/endpoints.py: APIRouter(prefix=...), and
        # FastAPI refuses a prefix ending in "/": the model server would not start.
        if prefix and not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
            yield Problem(
                ("serve", "envs", OPENAI_PREFIX_ENV),
                "the OpenAI route prefix must be empty or a URL path such as /openai, "
                "without a trailing /",
            )
        yield from _catalog_problems(serve, config)
        yield from _scaling_problems(serve)
        yield from _utilization_problems(doc, config)
        limit = config.policy.max_gpus_per_model
        count = gpus(doc, config)
        if limit is not None and count > limit:
            own = serve.resources is not None and serve.resources.gpu is not None
            path = ("serve", "resources", "gpu") if own else ("serve", "profile")
            yield Problem(
                path, f"{count} GPUs per replica exceeds policy.max_gpus_per_model ({limit})"
            )

    def context(self, doc: HuggingFaceServeDocument, config: Config) -> dict[str, Any]:
        serve = doc.serve
        if serve.profile is not None and serve.profile not in config.profiles:
            raise RenderError(f"{self.kind} spec {doc.name!r}: unknown profile {serve.profile!r}")
        profile = _profile(doc, config)
        node_selector = {**(profile.node_selector if profile else {}), **serve.node_selector}
        tolerations = serve.tolerations or (profile.tolerations if profile else [])
        scaling = serve.scaling
        # kserve v0.20.0 pkg/credentials/service_account_credentials.go: the storage
        # initializer gets credentials only from the predictor ServiceAccount's secrets
        # (a secret with key HF_TOKEN, pkg/credentials/hf/hf_secret.go), never from the
        # model container's envFrom. So `secrets` also go on a ServiceAccount.
        storage_account = storage_account_name(doc) if uses_storage_account(doc) else None
        return {
            "name": doc.name,
            "labels": {**doc.labels, "app.kubernetes.io/name": doc.name},
            "deployment_mode": deployment_mode_name(serve.deployment_mode, config),
            "storage_account": storage_account,
            "storage_secrets": [{"name": s} for s in serve.secrets],
            "storage_uri": storage_uri(doc),
            "args": runtime_args(doc, config),
            "env": [{"name": k, "value": v} for k, v in sorted(serve.envs.items())],
            "env_from": [{"secretRef": {"name": s}} for s in serve.secrets],
            "image": doc.spec.image,
            "resources": _kubernetes_resources(_resources(doc, config)),
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "scale_metric": scaling.scale_metric,
            "scale_target": scaling.scale_target,
            "service_account_name": serve.service_account_name or storage_account,
            "node_selector": node_selector,
            "tolerations": [t.to_kubernetes() for t in tolerations],
            "runtime_class_name": profile.runtime_class_name if profile else None,
        }

    def expected(self, doc: HuggingFaceServeDocument, config: Config) -> list[ObjectRef]:
        refs = [ObjectRef(API_VERSION, KIND, doc.name)]
        if uses_storage_account(doc):
            refs.append(ObjectRef("v1", "ServiceAccount", storage_account_name(doc)))
        return refs

    def endpoint(self, doc: HuggingFaceServeDocument, config: Config, namespace: str) -> Endpoint:
        """OpenAI tasks get the OpenAI base URL and paths relative to it; the other tasks
        get the predictor's root URL and absolute protocol paths (Open Inference v2 and
        v1 predict, or the time-series routes), so `base_url + path` is always callable."""
        name = model_name(doc)
        host = f"http://{doc.name}{PREDICTOR_SUFFIX}.{namespace}.svc.cluster.local"
        task = doc.serve.huggingface_task
        base_url, features = host, (str(task),)
        paths: tuple[str, ...] = (f"/v2/models/{name}/infer", f"/v1/models/{name}:predict")
        if doc.serve.vllm_task is not None:
            feature = VLLM_TASK_FEATURES[doc.serve.vllm_task]
            base_url = f"{host}{openai_prefix(doc)}/v1"
            features, paths = (feature,), OPENAI_PATHS[feature]
        elif task is None or task in GENERATIVE_TASKS or task == "text_embedding":
            feature = "TextEmbedding" if task == "text_embedding" else "TextGeneration"
            base_url = f"{host}{openai_prefix(doc)}/v1"
            features, paths = (feature,), OPENAI_PATHS[feature]
            if task == "text2text_generation":
                paths = TEXT2TEXT_PATHS
        elif task == "time_series_forecast":
            paths = ("/v1/timeseries/forecast", "/v1/timeseries/models")
        return Endpoint(
            name=doc.name,
            runtime=self.kind,
            namespace=namespace,
            base_url=base_url,
            model=name,
            features=features,
            paths=paths,
        )

    def controller_objects(self, obj: Mapping[str, Any]) -> Iterable[tuple[dict[str, Any], str]]:
        if obj["kind"] != KIND:
            return
        metadata = {"name": f"{obj['metadata']['name']}{PREDICTOR_SUFFIX}"}
        metadata["namespace"] = obj["metadata"].get("namespace")
        for api, kind in PREDICTOR_KINDS:
            made = {"apiVersion": api, "kind": kind, "metadata": metadata}
            yield made, "made by KServe for the InferenceService of"

    def facts(self, doc: HuggingFaceServeDocument, config: Config) -> Facts:
        return Facts(
            images=(doc.spec.image,) if doc.spec.image else (),
            gpus_per_replica=gpus(doc, config),
        )


def _name_problems(doc: HuggingFaceServeDocument) -> Iterable[Problem]:
    # KServe's validating webhook: an InferenceService name is a DNS-1035 label.
    if not DNS1035_LABEL.compiled.fullmatch(doc.name):
        yield Problem(("name",), "KServe InferenceService names must start with a letter")
    longest = longest_name(doc.serve.deployment_mode)
    if len(doc.name) > longest:
        yield Problem(
            ("name",),
            f"at most {longest} characters in {doc.serve.deployment_mode} mode: KServe names "
            f"its objects {doc.name}{PREDICTOR_SUFFIX}..., which must fit in "
            f"{DNS1035_LABEL.max_length}",
        )


def _model_problems(doc: HuggingFaceServeDocument) -> Iterable[Problem]:
    revision = doc.serve.model_revision
    if revision is None:
        return
    if not doc.spec.path.startswith(("hf://", "huggingface://")):
        yield Problem(
            ("serve", "model_revision"),
            "model_revision only applies to hf:// paths: other paths are downloaded as they are",
        )
        return
    in_path = _path_revision(doc.spec.path)
    if in_path is not None and in_path != revision:
        yield Problem(
            ("serve", "model_revision"),
            f"model_revision {revision!r} contradicts the revision {in_path!r} in spec.path",
        )


def _args_problems(serve: HFServe, config: Config) -> Iterable[Problem]:
    if not serve.args:
        return  # (the parsers' table is loaded for a spec with args only)
    vllm_backend = None if serve.backend == "huggingface" else _listed_parser(config, "vllm")
    for index, arg in enumerate(serve.args):
        # Read by KServe's own parser first, whatever the backend (__main__.py's first
        # parse_known_args(), kserve v0.15.2 to v0.20.0): the rest goes unread.
        if arg == "--":
            yield Problem(("serve", "args", index), DOUBLE_DASH)
            return
        if asks_for_help(arg, _release_flags(config)):
            yield Problem(("serve", "args", index), HELP_MESSAGE.format(arg=arg))
            continue
        if serve.backend == "huggingface" and (
            found := _hf_backend_problems(serve.args, index, config)
        ):
            yield from found
            continue
        name = _arg_name(arg)
        if name is None:
            continue
        if name in OWNED_ARGS:
            yield Problem(
                ("serve", "args", index),
                f"--{name} is set by the generator ({OWNED_ARGS[name]})",
            )
        elif any(owned.startswith(name) for owned in OWNED_ARGS):
            yield Problem(
                ("serve", "args", index),
                f"--{name} abbreviates an argument the generator sets; spell arguments out",
            )
        elif name in FIELD_ARGS and getattr(serve, FIELD_ARGS[name]) not in (None, []):
            yield Problem(
                ("serve", "args", index), f"--{name} is already set by serve.{FIELD_ARGS[name]}"
            )
        elif vllm_backend is not None:
            yield from _parser_problems(serve.args, index, *vllm_backend)
        elif serve.backend != "huggingface" and name not in KSERVE_OWN_ARGS:
            yield from _vllm_spelling_problems(index, arg)


# After `--` the parser reads no item as a flag: the Hugging Face backend drops them all;
# on the vLLM backend vLLM's optional positional model name takes the first (KServe
# serves spec.path, not that name) and the rest are dropped (replayed on v0.20.0).
DOUBLE_DASH = (
    "-- ends the flags: no item after it is read as one, and none of them has any effect "
    "(the runtime says nothing)"
)
# The parsers the runtime reads its args with, by KServe minor release and backend,
# listed from the server itself by conformance/flags.py (with the vllm wheel its image
# pins): KServe's and huggingfaceserver's flags, then vLLM's or the Hugging Face
# backend's. Where a release is not listed, hf_backend_flags() names its flags.
KSERVE_FLAGS_FILE = Path(__file__).with_name("kserve_flags.json")


@cache
def kserve_parsers() -> dict[int, dict[str, tuple[str, ReleaseFlags]]]:
    """Each listed KServe minor release: each backend's parser, named for messages."""
    data = json.loads(KSERVE_FLAGS_FILE.read_text(encoding="utf-8"))
    parsers = {}
    for minor, entry in data["releases"].items():
        names = {
            "huggingface": f"KServe {minor}'s Hugging Face backend",
            "vllm": f"KServe {minor}'s vLLM backend (vLLM {entry['wheel']['version']})",
        }
        parsers[int(minor.split(".")[1])] = {
            backend: (names[backend], ReleaseFlags.listed(listing))
            for backend, listing in entry["backends"].items()
        }
    return parsers


def _listed_parser(config: Config, backend: str) -> tuple[str, ReleaseFlags] | None:
    return kserve_parsers().get(config.kserve.minor, {}).get(backend)


def _parser_problems(
    args: Sequence[str], index: int, release: str, flags: ReleaseFlags
) -> Iterator[Problem]:
    """What a listed parser of the runtime drops or refuses of the long flag `args[index]`.

    kserve v0.20.0 huggingfaceserver/__main__.py reads the args with parse_known_args()
    of vLLM's FlexibleArgumentParser (vllm 0.24.0 vllm/utils/argparse_utils.py), which,
    unlike its parse_args(), reads each flag as written: no `_` as `-`, no JSON `.key`.
    A flag it lacks is dropped without a word; a prefix of several flags, a value given
    to a switch, none given to a flag that takes one and one outside fixed choices make
    it exit. Words no flag takes are dropped too (on the vLLM backend the first is
    vLLM's positional model name, which KServe ignores), and not judged here."""
    arg = args[index]
    name = arg.partition("=")[0]
    taken = argparse_takes(name, flags.flags)
    if len(taken) == 1:
        for at, message, _ in value_problems(args, index, taken[0], flags, release):
            yield Problem(("serve", "args", at), message)
    elif taken:
        yield Problem(("serve", "args", index), _abbreviates(name, taken, release))
    elif "_" in name and "--" + name[2:].replace("_", "-") in flags.flags - KSERVE_OWN_FLAGS:
        yield from _vllm_spelling_problems(index, arg)
    else:
        yield Problem(("serve", "args", index), _unknown(name, release, flags.flags))


def _abbreviates(name: str, taken: Sequence[str], release: str) -> str:
    listed = ", ".join(taken[:3]) + (", ..." if len(taken) > 3 else "")
    return (
        f"{name} abbreviates several flags of {release} ({listed}): the server exits at "
        "start-up; write the flag out"
    )


def _unknown(name: str, release: str, flags: frozenset[str]) -> str:
    return f"{name}: {release} takes no such flag and drops it without a word{_hint(name, flags)}"


def _hf_backend_problems(args: Sequence[str], index: int, config: Config) -> list[Problem]:
    """What the Hugging Face backend's parser drops or refuses of `args[index]`.

    kserve v0.15.2 to v0.20.0 huggingfaceserver/__main__.py reads the args with
    parse_known_args(): an item no flag takes, a short flag included, is left over and
    dropped without a word; a prefix of several flags is 'ambiguous option', and the
    server exits. A listed release's parser judges values too (_parser_problems). Where
    the release is outside those, a flag the nearest one lacks is a warning (that
    release may define it)."""
    arg = args[index]
    listed = _listed_parser(config, "huggingface")
    if arg.startswith("--") and listed is not None:
        return list(_parser_problems(args, index, *listed))
    minor = config.kserve.minor
    release = f"KServe 0.{minor}'s Hugging Face backend"
    flags = _release_flags(config)
    if arg.startswith("--"):
        name = arg.partition("=")[0]
        taken = argparse_takes(name, flags)
        if len(taken) == 1:
            return []
        if taken:
            return [Problem(("serve", "args", index), _abbreviates(name, taken, release))]
        message = _unknown(name, release, flags)
    elif option_like(arg, flags):  # (a short one: the backend has none)
        message = (
            f"{arg}: the Hugging Face backend has no short flags; it drops {arg} without a word"
        )
    else:
        return []  # a flag's value
    checked = SUPPORTED_FROM_MINOR <= minor < SUPPORTED_BELOW_MINOR
    return [Problem(("serve", "args", index), message, "error" if checked else "warning")]


def _release_flags(config: Config) -> frozenset[str]:
    """The Hugging Face backend's flags in the configured release, or in the nearest one
    checked when it is outside them."""
    minor = min(max(config.kserve.minor, SUPPORTED_FROM_MINOR), SUPPORTED_BELOW_MINOR - 1)
    return hf_backend_flags(minor)


def _hint(name: str, flags: frozenset[str]) -> str:
    """How to write the flag `name` meant, if it is one of `flags` spelt otherwise."""
    for spelt, other in (("-", "_"), ("_", "-")):
        if (respelt := "--" + name[2:].replace(spelt, other)) in flags:
            return f" (it spells this flag with '{other}': write {respelt})"
    if " " in name:
        return "; a flag and its value are two items of args"
    return did_you_mean(name, flags)


def _vllm_spelling_problems(index: int, arg: str) -> Iterable[Problem]:
    """A vLLM flag spelt with '_', which the runtime drops (see KSERVE_OWN_ARGS)."""
    flag = arg.split("=", 1)[0]
    if "_" in flag:
        yield Problem(
            ("serve", "args", index),
            f"{flag} would be dropped without a word: KServe's runtime passes vLLM's flags "
            "to vLLM's parser without turning '_' into '-' (as `vllm serve` does); "
            f"write {flag.replace('_', '-')}",
        )


def _exclusive_output_problems(serve: HFServe, config: Config) -> Iterable[Problem]:
    # kserve v0.20.0 python/huggingfaceserver/huggingfaceserver/__main__.py: the two flags
    # are a mutually exclusive argparse group; the server exits at start with both. Each
    # is read as its parser reads it: spelt as defined, or a prefix of it alone.
    flags = _release_flags(config)
    taken = [argparse_takes(arg.partition("=")[0], flags) for arg in serve.args]
    if ("--return_raw_logits",) not in taken:
        return
    if serve.return_probabilities or ("--return_probabilities",) in taken:
        yield Problem(
            ("serve", "args", taken.index(("--return_raw_logits",))),
            "--return_raw_logits cannot go with return_probabilities: the runtime refuses "
            "both at start; choose one",
        )


def uses_storage_account(doc: HuggingFaceServeDocument) -> bool:
    """Whether servegen renders a ServiceAccount carrying `secrets` for the download."""
    serve = doc.serve
    return (
        bool(serve.secrets)
        and serve.service_account_name is None
        and doc.spec.path.startswith(DOWNLOADED_SCHEMES)
    )


def storage_account_name(doc: HuggingFaceServeDocument) -> str:
    return f"{doc.name}{STORAGE_ACCOUNT_SUFFIX}"


def deployment_mode_name(mode: str, config: Config) -> str:
    return mode if config.kserve.at_least(16) else LEGACY_MODE_NAMES[mode]


def _utilization_problems(doc: HuggingFaceServeDocument, config: Config) -> Iterable[Problem]:
    # kserve v0.20.0 reconcilers/hpa/hpa_reconciler.go getHPAMetrics: in Standard mode
    # the HPA scales on CPU utilization unless scale_metric is memory (memory only with
    # a scale_target). Only worth saying where it can scale at all.
    serve = doc.serve
    scaling = serve.scaling
    floor = 1 if scaling.min_replicas is None else scaling.min_replicas
    if serve.deployment_mode != "Standard" or (scaling.max_replicas or 0) <= floor:
        return
    metric = scaling.scale_metric or "cpu"
    if metric == "memory" and scaling.scale_target is None:
        return  # refused in _scaling_problems
    resource: Literal["cpu", "mem"] = "mem" if metric == "memory" else "cpu"
    if problem := utilization_request_problem(_resources(doc, config), serve.resources, resource):
        yield problem


def _catalog_problems(serve: HFServe, config: Config) -> Iterable[Problem]:
    """What the endpoint catalog lists must be what the server serves."""
    if serve.backend == "huggingface" and serve.huggingface_task is None:
        # kserve v0.20.0 huggingfaceserver/__main__.py infers the task from the model's
        # architecture, which servegen does not see: a classifier would serve no chat.
        yield Problem(
            ("serve", "huggingface_task"),
            "set huggingface_task: with backend huggingface the runtime infers the task "
            "from the model's architecture, and the endpoint catalog must say which API the "
            "model serves (text_generation for chat, sequence_classification, ...)",
        )
    if serve.huggingface_task == "time_series_forecast" and not config.kserve.at_least(16):
        # kserve v0.16.0 added the time-series task and its /v1/timeseries routes.
        yield Problem(
            ("serve", "huggingface_task"),
            f"time_series_forecast needs KServe 0.16 or later (kserve.version is "
            f"{config.kserve.version})",
        )
    if serve.vllm_task == "score" and not config.kserve.at_least(15, 1):
        # kserve v0.15.1 protocol/rest/openai/endpoints.py added /v1/rerank.
        yield Problem(
            ("serve", "vllm_task"),
            "KServe 0.15.0 has no /rerank route (added in 0.15.1): set kserve.version "
            "to the release the clusters run",
        )


def _scaling_problems(serve: HFServe) -> Iterable[Problem]:
    scaling, mode = serve.scaling, serve.deployment_mode
    if (
        scaling.min_replicas is not None
        and scaling.max_replicas is not None
        and scaling.min_replicas > scaling.max_replicas
    ):
        yield Problem(
            ("serve", "scaling", "min_replicas"),
            f"min_replicas ({scaling.min_replicas}) must be <= max_replicas "
            f"({scaling.max_replicas})",
        )
    if scaling.min_replicas == 0 and mode == "Standard":
        yield Problem(
            ("serve", "scaling", "min_replicas"),
            "scale to zero needs deployment_mode: Knative (Standard mode scales with a "
            "HorizontalPodAutoscaler, which keeps at least one replica)",
        )
    if scaling.scale_metric is not None and scaling.scale_metric not in MODE_METRICS[mode]:
        allowed = " or ".join(sorted(MODE_METRICS[mode]))
        other = "Knative" if mode == "Standard" else "Standard"
        yield Problem(
            ("serve", "scaling", "scale_metric"),
            f"{mode} mode autoscales on {allowed}; scale_metric {scaling.scale_metric} "
            f"needs deployment_mode: {other}",
        )
    if mode == "Standard" and scaling.scale_metric == "memory" and scaling.scale_target is None:
        # kserve v0.15-v0.20 hpa_reconciler.go getHPAMetrics sets no memory metric without
        # a target, and Kubernetes defaults an HPA with no metrics to CPU at 80%.
        yield Problem(
            ("serve", "scaling", "scale_metric"),
            "scale_metric memory needs a scale_target (a utilization percentage): without "
            "one, KServe gives the autoscaler no metric and it scales on CPU instead",
        )
    if mode == "Standard" and scaling.scale_target is not None and scaling.scale_target > 100:
        yield Problem(
            ("serve", "scaling", "scale_target"),
            "in Standard mode scale_target is a utilization percentage (1-100)",
        )
