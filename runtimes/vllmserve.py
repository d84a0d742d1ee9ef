"""vllmserve-text, vllmserve-speech, vllmserve-pooling: vLLM's OpenAI server on a Deployment.

The three kinds share one implementation and one template folder (templates/vllmserve/);
they differ in the catalog entry they publish, in whether LoRA adapters are allowed
(not for speech), and in pooling's `task`. Each spec renders a Deployment and a Service
named after the spec, an optional alias Service (`serve.service_name`), an optional
HorizontalPodAutoscaler and an optional PodDisruptionBudget.

Choices made here:

- Model URLs: `hf://org/model[@revision]` is passed as the Hugging Face id (vLLM downloads
  it into HF_HOME on the model-cache volume), the revision as `--revision`.
  `s3://bucket/path` is passed as is with `--load-format runai_streamer`; credentials and
  endpoint come only from `serve.secrets` (envFrom). `pvc://claim[/subpath]` mounts the
  claim read-only at /models and serves /models/<subpath>; its files must be readable
  by uid/gid 1000.
- No `command`: the vllm/vllm-openai and vLLM CPU images start the OpenAI server from
  their entrypoint, so the generated `args` are the server's flags. That entrypoint is
  the api_server module up to 0.11.0 (model via --model) and `vllm serve` from 0.11.1
  (model first, positional); see runtimes/vllm_engine.py for this and the other rules
  that depend on the image's vLLM release. Custom images must behave the same way.
- Pooling `task`: vLLM up to 0.10.0 takes `--task <task>`; from 0.10.1 the same choice is
  `--runner pooling --convert <conversion>`, where embed -> embed, classify -> classify,
  score -> classify (cross-encoders are sequence-classification models, whose conversion
  serves both classify and score) and reward -> reward. `--convert reward` is only
  documented up to the 0.11 series and is gone by 0.16, so from 0.12 on reward emits just
  `--runner pooling` and lets vLLM pick the conversion from the architecture. The version
  comes from the image tag (`v0.10.2`, `0.10.1.1`, `v0.11.0-cu128`...), else from
  `vllm.version` in servegen.yaml; when neither says it (e.g. a digest-only image) the
  newest form is assumed. The task is required: it decides the API the catalog lists.
- Owned flags (--model, --served-model-name, --host, --port, LoRA, task/runner/convert,
  tracing) cannot be passed in `serve.args`; other user args come last, so they win
  over generated ones such as --max-loras or --load-format.
- Non-root: the upstream image runs as root by default but works as uid 1000 when its
  writable paths are on a volume, so HOME and HF_HOME point into the model-cache emptyDir
  (vLLM, Triton and FlashInfer keep compile caches under HOME), and when the user has a
  name: uid 1000 has no passwd entry in the image, and torch's inductor cache
  (torch/_inductor/runtime/cache_dir_utils.py, default_cache_dir) asks getpass.getuser(),
  which raises without one unless USER is set (vLLM 0.24.0 imports it at start-up through
  vllm/env_override.py; vllm-project/vllm#44548). User `envs` override any generated
  variable.
- Scaling: an HPA is rendered when `scaling.max_replicas` exceeds the minimum
  (`scaling.min_replicas`, default `replicas`). Metric `cpu` targets CPU utilization
  (default 80%) and needs CPU requests, so a CPU request of DEFAULT_HPA_CPU_REQUEST is set
  when none is given. Metric `requests_waiting` targets the per-pod average of
  WAITING_METRIC (default 5) and needs a custom-metrics adapter (e.g. prometheus-adapter)
  that exposes vLLM's Prometheus series under that name. With an HPA the Deployment's
  `spec.replicas` is left out so Flux's server-side apply never fights the HPA over it.
- A PodDisruptionBudget (maxUnavailable 1) is rendered when the minimum replica count
  is above 1; with one replica it would only block node drains.
- /dev/shm is a memory-backed emptyDir of SHM_SIZE (the size vLLM's Kubernetes example
  uses); it counts against the memory limit, so it is fixed rather than derived from mem.
- CPU image: VLLM_CPU_KVCACHE_SPACE (GiB) is what the memory limit leaves after
  /dev/shm, the runtime and the weights (CpuMemory in vllm_engine.py);
  CPU_IMAGE_DEFAULT_MEM is assumed when mem is unset.
- GPUs: with more than one and no --tensor-parallel-size in serve.args, tensor
  parallelism spans them all (divided by any pipeline/data parallel size given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import ConfigDict, Field

from generator.config import Config, PinnedImage, Profile
from generator.errors import cut
from generator.fields import (
    HF_REPO_ID,
    Dns1035Label,
    DnsLabel,
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
from generator.k8sformats import DNS1035_LABEL, parse_quantity
from generator.spec import SpecDocument, spec_override_model
from runtimes.base import (
    Endpoint,
    Facts,
    ObjectRef,
    Problem,
    Runtime,
    long_flag,
    utilization_request_problem,
    vllm_claimed_flag,
    vllm_unreachable_problems,
)
from runtimes.vllm_engine import (
    BERT_LORA_SINCE,
    CPU_RUNAI_SINCE,
    OTEL_SINCE,
    SUPPORTED_BELOW,
    CpuMemory,
    Version,
    bert_style,
    flag_problems,
    image_version,
    model_args,
    older_than,
    otlp_exporter,
    parallel_args,
    parallel_flag,
    parse_version,
    pooling_name,
    show,
    supported,
    unsupported_message,
    weight_bytes,
)

PORT = 8000
MODELS_DIR = "/models"
CACHE_DIR = "/models-cache"
HF_HOME = f"{CACHE_DIR}/huggingface"
# Writable homes for the non-root user, and its name (see the module docstring).
RUN_AS_NAME = "vllm"
HOME_ENV = {"HOME": CACHE_DIR, "HF_HOME": HF_HOME, "USER": RUN_AS_NAME}
SHM_DIR = "/dev/shm"  # noqa: S108 - the container's shared memory, not a temp file
SHM_SIZE = "2Gi"
RUN_AS = 1000
GPU_RESOURCE = "nvidia.com/gpu"
# A CPU-utilization HPA divides usage by the request; without one it cannot scale.
DEFAULT_HPA_CPU_REQUEST = "1"
DEFAULT_TARGETS = {"cpu": 80, "requests_waiting": 5}
WAITING_METRIC = "vllm:num_requests_waiting"
CPU_IMAGE_DEFAULT_MEM = "16Gi"
KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
OTLP_PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
# vLLM versions that changed the pooling flags (see the module docstring).
RUNNER_SINCE = (0, 10, 1)
REWARD_CONVERT_UNTIL = (0, 12, 0)
CONVERT = {"embed": "embed", "classify": "classify", "score": "classify", "reward": "reward"}

# Flags servegen generates; users may not pass them in serve.args.
OWNED_FLAGS = frozenset(
    {
        "--model",
        "--served-model-name",
        "--host",
        "--port",
        "--enable-lora",
        "--lora-modules",
        "--task",
        "--runner",
        "--convert",
        "--otlp-traces-endpoint",
    }
)

_HF = rf"hf://{HF_REPO_ID}"
_S3 = r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/=+-]*)?"
_PVC = r"pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[A-Za-z0-9._-]+)*/?"
MODEL_URL_RE = rf"^({_HF}(@[A-Za-z0-9][A-Za-z0-9._/-]*)?|{_S3}|{_PVC})$"
ADAPTER_URL_RE = rf"^({_HF}|{_S3})$"
GIB = 1 << 30


# --- the spec --------------------------------------------------------------------------


class Adapter(StrictModel):
    """A LoRA adapter served next to the base model."""

    name: str = Field(
        pattern=r"^[a-z0-9-]+$",
        max_length=63,
        description="Adapter name: the `model` value clients send (a-z, 0-9, '-').",
    )
    url: str = Field(
        pattern=ADAPTER_URL_RE,
        max_length=1024,
        description="hf://org/repo (no revision). s3:// is refused: vLLM cannot load "
        "adapters from it.",
    )


class VLLMModelSpec(StrictModel):
    """The model: what vLLM loads."""

    url: str = Field(
        pattern=MODEL_URL_RE,
        max_length=1024,
        description="Base model: hf://org/model[@revision], s3://bucket/path or "
        "pvc://claim[/subpath].",
        examples=["hf://Qwen/Qwen3-0.6B", "s3://models/qwen3", "pvc://models/qwen3"],
    )
    model_name: DnsLabel | None = Field(
        default=None,
        description="Served model name (the OpenAI `model` value); default: the spec name.",
    )
    image: PinnedImage | None = Field(
        default=None,
        description="Image override; default: vllm.image (or vllm.cpu_image) of servegen.yaml.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list, description="LoRA adapters (text and pooling only)."
    )


# What an environment may pin differently: the model version (see README).
SPEC_OVERRIDES = ("url", "image", "adapters")


class VLLMModelSpecOverride(spec_override_model(VLLMModelSpec, SPEC_OVERRIDES)):  # type: ignore[misc]
    """What an environment may override in `spec` (environments.<env>.spec)."""


class VLLMScaling(StrictModel):
    """Horizontal autoscaling; an HPA exists when max_replicas exceeds the minimum."""

    min_replicas: Int32 | None = Field(
        default=None, ge=1, description="Fewest replicas the HPA keeps (default: replicas)."
    )
    max_replicas: Int32 | None = Field(
        default=None, ge=1, description="Most replicas the HPA may run; unset: no HPA."
    )
    metric: Literal["cpu", "requests_waiting"] = Field(
        default="cpu",
        description="cpu (CPU utilization) or requests_waiting (vLLM queue length per pod, "
        "needs a custom-metrics adapter).",
    )
    # int32 as the cpu metric's averageUtilization; the queue's averageValue is a
    # quantity, but no pod waits on two billion requests either.
    target: Int32 | None = Field(
        default=None,
        ge=1,
        description="CPU utilization percent (default 80) or waiting requests per pod (default 5).",
    )


class VLLMServeOptions(StrictModel):
    """How the model is served."""

    args: list[Line] = Field(
        default_factory=list, description="Extra vLLM engine arguments, appended last."
    )
    enable_telemetry: bool = Field(
        default=False,
        description="Send OTLP traces to telemetry.otlp_endpoint (images of vLLM 0.17.0 and "
        "later).",
    )
    use_cpu_image: bool = Field(default=False, description="Run vLLM's CPU image (no GPUs).")
    replicas: Int32 = Field(
        default=1, ge=0, description="Replica count; with autoscaling, the default minimum."
    )
    scaling: VLLMScaling = Field(default_factory=VLLMScaling, description="Autoscaling.")
    resources: Resources = Field(
        default_factory=Resources, description="Resources; override the profile's key by key."
    )
    profile: DnsLabel | None = Field(
        default=None, description="Name of a `profiles` entry of servegen.yaml."
    )
    envs: Envs = Field(default_factory=dict)
    secrets: SecretNames = Field(default_factory=list)
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the Service."
    )
    service_name: Dns1035Label | None = Field(
        default=None, description="Name of an extra alias Service for the same pods."
    )
    node_selector: Labels = Field(
        default_factory=dict, description="Node labels to schedule on; merged over the profile's."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations; replace the profile's when set."
    )


class VLLMPoolingServeOptions(VLLMServeOptions):
    """How a pooling (embedding, scoring, classification, reward) model is served."""

    task: Literal["embed", "classify", "score", "reward"] | None = Field(
        default=None,
        description="Pooling task (required): embed, classify, score or reward; decides "
        "the API the server runs and the endpoint catalog lists.",
    )


# What the three vllmserve kinds share; pooling's serve section extends VLLMServeOptions.
VLLMDocument = SpecDocument[VLLMModelSpec, VLLMServeOptions, VLLMModelSpecOverride]


def _document_schema(schema: dict[str, Any]) -> None:
    """spec_problems' name rule, for editors: the Service is named after the spec, so
    the name is a DNS-1035 label (a letter first)."""
    schema["properties"]["name"]["pattern"] = DNS1035_LABEL.pattern


class VLLMServeTextDocument(VLLMDocument):
    """A vllmserve-text serve spec."""

    model_config = ConfigDict(json_schema_extra=_document_schema)

    kind: Literal["vllmserve-text"] = Field(description="vllmserve-text: vLLM text generation.")


class VLLMServeSpeechDocument(VLLMDocument):
    """A vllmserve-speech serve spec."""

    model_config = ConfigDict(json_schema_extra=_document_schema)

    kind: Literal["vllmserve-speech"] = Field(description="vllmserve-speech: vLLM speech-to-text.")


def _pooling_document_schema(schema: dict[str, Any]) -> None:
    """VLLMServePooling.spec_problems' task rule too: the spec itself names a task (an
    absent `serve` is read as `{}`, which names none). An environment's override need not
    repeat it, so the rule is the document's, not the serve section's."""
    _document_schema(schema)
    serve = schema["properties"]["serve"]
    task = {"type": "string", "description": "Required in the spec: it picks the one API."}
    named = {"properties": {"task": task}, "required": ["task"]}
    # Beside a $ref, draft 7 ignores every other keyword: both go under allOf.
    serve["allOf"] = [{"$ref": serve.pop("$ref")}, named]
    schema["required"] = [*schema["required"], "serve"]


class VLLMServePoolingDocument(
    SpecDocument[VLLMModelSpec, VLLMPoolingServeOptions, VLLMModelSpecOverride]
):
    """A vllmserve-pooling serve spec."""

    model_config = ConfigDict(json_schema_extra=_pooling_document_schema)

    kind: Literal["vllmserve-pooling"] = Field(
        description="vllmserve-pooling: vLLM embeddings, scoring, classification, reward."
    )


VLLMDocT = TypeVar("VLLMDocT", bound=VLLMDocument)


# --- helpers ---------------------------------------------------------------------------


def quantity_bytes(quantity: str) -> Decimal:
    """The value of a Kubernetes quantity (`16Gi`, `500M`, `1e9`, `1024`) as a number."""
    return parse_quantity(quantity)


def vllm_version(image: str, config: Config) -> Version | None:
    """The tag's version, else servegen.yaml's vllm.version, else None (unknown)."""
    return image_version(image) or parse_version(config.vllm.version)


def pooling_args(task: str | None, version: Version | None) -> list[str]:
    """The flags selecting a pooling task for a vLLM version (None: unknown, newest)."""
    if task is None:
        return []
    if version is not None and version < RUNNER_SINCE:
        return ["--task", task]
    if task == "reward" and (version is None or version >= REWARD_CONVERT_UNTIL):
        return ["--runner", "pooling"]
    return ["--runner", "pooling", "--convert", CONVERT[task]]


def _judged_here(arg: str) -> str | None:
    """The flag `arg` sets when this module judges it and its value itself."""
    return owned_flag(arg) or parallel_flag(arg)


def owned_flag(arg: str) -> str | None:
    """The generator-owned flag `arg` sets (`--port 1`, `--port=1`, `--served_model_name`,
    `--por 1`)."""
    return vllm_claimed_flag(arg, OWNED_FLAGS)


def _model_ref(url: str) -> tuple[str, list[str]]:
    """The --model value and the extra flags loading it needs."""
    if url.startswith("hf://"):
        repo, _, revision = url[len("hf://") :].partition("@")
        return repo, ["--revision", revision] if revision else []
    if url.startswith("s3://"):
        return url, ["--load-format", "runai_streamer"]
    subpath = url[len("pvc://") :].partition("/")[2].strip("/")
    return f"{MODELS_DIR}/{subpath}" if subpath else MODELS_DIR, []


def _adapter_ref(url: str) -> str:
    return url[len("hf://") :] if url.startswith("hf://") else url


def _pvc_claim(url: str) -> str | None:
    return url[len("pvc://") :].partition("/")[0] if url.startswith("pvc://") else None


def _model_repo(url: str) -> str:
    """What names the model: the Hugging Face repo, else the bucket or claim path."""
    return url.partition("://")[2].partition("@")[0]


def tensor_parallel(args: list[str], gpus: int) -> list[str]:
    """--tensor-parallel-size filling the GPUs when the user sets none.

    vllm v0.10.0 vllm/config.py ParallelConfig: tensor_parallel_size defaults to 1, so
    without it every GPU but one sits idle; the GPUs left by pipeline and data
    parallelism (when the user sets those) are split by tensor parallelism.
    """
    found = parallel_args(args)
    if gpus <= 1 or any(p.kind == "tensor" for p in found):
        return []
    others = 1
    for p in found:
        others *= p.value or 1
    if others > gpus or gpus % others:
        return []  # refused by _parallel_problems
    return ["--tensor-parallel-size", str(gpus // others)]


def _parallel_problems(args: list[str], plan: _Plan) -> Iterable[Problem]:
    found = parallel_args(args)
    for p in found:
        if p.value is None:
            yield Problem(
                ("serve", "args", p.index), f"{args[p.index]}: needs a positive whole number"
            )
    if plan.gpus < 1 or any(p.value is None for p in found):
        return
    world = 1
    for p in found:
        world *= p.value or 1
    tensor = any(p.kind == "tensor" for p in found)
    if world > plan.gpus or (not tensor and plan.gpus % world):
        sizes = " x ".join(f"{p.kind} {p.value}" for p in found)
        yield Problem(
            ("serve", "args", found[0].index),
            f"parallel sizes ({sizes}) cannot fit resources.gpu = {plan.gpus}: tensor x "
            "pipeline x data parallel size must divide it",
        )
    elif tensor and world < plan.gpus:
        yield Problem(
            ("serve", "args", found[0].index),
            f"parallel sizes use {world} of the {plan.gpus} GPUs (resources.gpu); the rest "
            "sit idle",
            "warning",
        )


def cpu_memory(url: str, mem: str | None) -> CpuMemory:
    """How the CPU image's memory limit is shared (CPU_IMAGE_DEFAULT_MEM when unset)."""
    try:
        limit = quantity_bytes(mem or CPU_IMAGE_DEFAULT_MEM)
    except (ValueError, InvalidOperation):  # reported by the field's own validation
        limit = quantity_bytes(CPU_IMAGE_DEFAULT_MEM)
    return CpuMemory(limit, quantity_bytes(SHM_SIZE), weight_bytes(_model_repo(url)))


def _cpu_memory_problems(doc: VLLMDocument, plan: _Plan) -> Iterable[Problem]:
    memory = cpu_memory(doc.spec.url, plan.resources.mem)
    user = doc.serve.envs.get(KV_CACHE_ENV)
    if user is not None:
        # ASCII digits only (int() refuses "²", which isdigit() accepts); more than 18
        # digits of GiB fit no memory limit (and int() refuses 4,300).
        readable = user.isascii() and user.isdigit() and len(user) <= 18
        if not (readable and memory.fits(int(user))):
            yield Problem(
                ("serve", "envs", KV_CACHE_ENV),
                f"{KV_CACHE_ENV}={cut(user, 20)} GiB does "
                "not fit: the memory limit leaves "
                f"{_gib(memory.free)} GiB after /dev/shm ({SHM_SIZE}), the runtime and the "
                "weights the name states",
            )
    elif memory.kv_cache_gib() < 1:
        yield Problem(
            ("serve", "resources", "mem"),
            f"{plan.resources.mem or CPU_IMAGE_DEFAULT_MEM} leaves no room for a KV cache "
            f"after /dev/shm ({SHM_SIZE}), the runtime and the weights; raise resources.mem",
        )


def _gib(value: Decimal) -> str:
    return f"{max(value, Decimal(0)) / GIB:.1f}"


def selector_labels(name: str) -> dict[str, str]:
    """The Deployment's pod selector (also the Services' and the PDB's)."""
    return {"app.kubernetes.io/name": name, "servegen.io/spec": name}


def model_name(doc: VLLMDocument) -> str:
    return str(doc.spec.model_name or doc.name)


@dataclass(frozen=True)
class _Plan:
    """Everything derived from a spec and the config that several methods need."""

    image: str
    resources: Resources
    node_selector: dict[str, str]
    tolerations: tuple[Toleration, ...]
    runtime_class_name: str | None
    min_replicas: int
    hpa: bool
    version: Version | None

    @property
    def gpus(self) -> int:
        return self.resources.gpu or 0


# The plans of the last few documents. spec_problems(), facts(), context() and
# expected() each need the plan of one frozen document under one config: it is made
# once. Each entry holds its document and config, so their ids are never reused while
# it is kept; the tuple is replaced whole, never changed in place.
_RECENT_PLANS: tuple[tuple[VLLMDocument, Config, _Plan], ...] = ()
_MAX_RECENT_PLANS = 8


def _plan(doc: VLLMDocument, config: Config) -> _Plan:
    global _RECENT_PLANS
    for kept_doc, kept_config, plan in _RECENT_PLANS:
        if kept_doc is doc and kept_config is config:
            return plan
    plan = _new_plan(doc, config)
    _RECENT_PLANS = ((doc, config, plan), *_RECENT_PLANS[: _MAX_RECENT_PLANS - 1])
    return plan


def _new_plan(doc: VLLMDocument, config: Config) -> _Plan:
    serve: VLLMServeOptions = doc.serve
    profile = config.profiles.get(serve.profile or "") or Profile()
    base = profile.resources or Resources()
    resources = base.model_copy(update=serve.resources.model_dump(exclude_none=True))
    default_image = config.vllm.cpu_image if serve.use_cpu_image else config.vllm.image
    image = doc.spec.image or default_image
    scaling = serve.scaling
    minimum = scaling.min_replicas if scaling.min_replicas is not None else serve.replicas
    hpa = scaling.max_replicas is not None and scaling.max_replicas > minimum
    if hpa and scaling.metric == "cpu" and resources.cpu is None:
        resources = resources.model_copy(update={"cpu": DEFAULT_HPA_CPU_REQUEST})
    return _Plan(
        image=image,
        resources=resources,
        node_selector={**profile.node_selector, **serve.node_selector},
        tolerations=tuple(serve.tolerations or profile.tolerations),
        runtime_class_name=profile.runtime_class_name,
        min_replicas=minimum,
        hpa=hpa,
        version=vllm_version(image, config),
    )


# --- the runtimes ----------------------------------------------------------------------


class VLLMServeRuntime(Runtime[VLLMDocT]):
    """What the three vllmserve kinds share; subclasses name the kind and the catalog."""

    template_dir: ClassVar[str | None] = "vllmserve"
    templates: ClassVar[tuple[str, ...]] = (
        "deployment.yaml.j2",
        "service.yaml.j2",
        "hpa.yaml.j2",
        "pdb.yaml.j2",
    )
    features: ClassVar[tuple[str, ...]]
    paths: ClassVar[tuple[str, ...]]
    allows_adapters: ClassVar[bool] = True
    spec_overrides: ClassVar[tuple[str, ...]] = SPEC_OVERRIDES
    pooling: ClassVar[bool] = False
    generates_text: ClassVar[bool] = False

    def spec_problems(self, doc: VLLMDocT, config: Config) -> Iterable[Problem]:
        serve = doc.serve
        scaling = serve.scaling
        # k8s.io/kubernetes v1.33 pkg/apis/core/validation ValidateServiceName: DNS-1035.
        if not DNS1035_LABEL.compiled.fullmatch(doc.name):
            yield Problem(
                ("name",), "the Service is named after the spec: it must start with a letter"
            )
        if claim_problem := pvc_claim_problem(doc.spec.url):
            yield Problem(("spec", "url"), claim_problem)
        if serve.profile is not None and serve.profile not in config.profiles:
            known = ", ".join(sorted(config.profiles)) or "none are defined"
            yield Problem(
                ("serve", "profile"), f"unknown profile {serve.profile!r} (known: {known})"
            )
        plan = _plan(doc, config)
        for index, arg in enumerate(serve.args):
            flag = owned_flag(arg)
            if flag:
                written = arg.partition("=")[0]
                spelt = "" if long_flag(arg) == flag else f" ({written} abbreviates it)"
                yield Problem(
                    ("serve", "args", index),
                    f"{flag} is set by servegen{spelt}; use the spec's fields instead",
                )
            else:
                yield from vllm_unreachable_problems(index, arg)
        if scaling.min_replicas is not None and scaling.max_replicas is None:
            yield Problem(
                ("serve", "scaling", "min_replicas"),
                "min_replicas only applies with max_replicas; use replicas for a fixed count",
            )
        if scaling.max_replicas is not None and plan.min_replicas > scaling.max_replicas:
            yield Problem(
                ("serve", "scaling", "min_replicas"),
                f"min_replicas ({plan.min_replicas}, default: replicas) must be <= "
                f"max_replicas ({scaling.max_replicas})",
            )
        if plan.hpa and plan.min_replicas < 1:
            yield Problem(
                ("serve", "replicas"),
                "autoscaling needs at least one replica: set scaling.min_replicas",
            )
        if plan.hpa and scaling.metric == "requests_waiting":
            # vllm v1 engine/async_llm.py makes its stat loggers, Prometheus's included,
            # only with log_stats: the metric the autoscaler reads would never appear.
            for index, arg in enumerate(serve.args):
                if _disables_stats(arg):
                    yield Problem(
                        ("serve", "args", index),
                        f"--disable-log-stats stops vLLM exporting {WAITING_METRIC}, which "
                        "the requests_waiting autoscaler scales on",
                    )
        cpu_scaled = plan.hpa and scaling.metric == "cpu"
        if cpu_scaled and (
            zero := utilization_request_problem(plan.resources, serve.resources, "cpu")
        ):
            yield zero
        if doc.spec.adapters and not self.allows_adapters:
            yield Problem(("spec", "adapters"), f"{self.kind} does not support LoRA adapters")
        names = [adapter.name for adapter in doc.spec.adapters]
        for index, name in enumerate(names):
            if name in names[:index]:
                yield Problem(("spec", "adapters", index, "name"), f"duplicate adapter {name!r}")
            elif name == model_name(doc):
                # vllm v0.10.0 serving_engine.py _maybe_get_adapters: a request's model
                # name is looked up among the adapters first.
                yield Problem(
                    ("spec", "adapters", index, "name"),
                    f"adapter {name!r} has the served model's name: every request for the "
                    "model would go to the adapter",
                )
        if serve.use_cpu_image and plan.gpus > 0:
            yield Problem(
                ("serve", "use_cpu_image"),
                f"the CPU image cannot use GPUs (resources.gpu is {plan.gpus})",
            )
        if serve.enable_telemetry and not config.telemetry.otlp_endpoint:
            yield Problem(
                ("serve", "enable_telemetry"),
                "no traces endpoint: set telemetry.otlp_endpoint in servegen.yaml",
            )
        if serve.service_name is not None and serve.service_name == doc.name:
            yield Problem(("serve", "service_name"), "service_name must differ from the spec name")
        yield from self._engine_problems(doc, config, plan)

    def _engine_problems(self, doc: VLLMDocT, config: Config, plan: _Plan) -> Iterable[Problem]:
        """What the image's vLLM release cannot do (see runtimes/vllm_engine.py)."""
        spec, serve = doc.spec, doc.serve
        version = plan.version
        if spec.image and version is not None and not supported(version):
            yield Problem(("spec", "image"), unsupported_message(spec.image, version), "warning")
        telemetry = serve.enable_telemetry and config.telemetry.otlp_endpoint
        if telemetry and older_than(version, OTEL_SINCE):
            yield Problem(
                ("serve", "enable_telemetry"),
                f"vLLM {show(version or OTEL_SINCE)} images do not ship OpenTelemetry and stop "
                "at start-up ('OpenTelemetry is not available'); use an image of vLLM "
                f"{show(OTEL_SINCE)} or later (spec.image)",
            )
        for index, adapter in enumerate(spec.adapters):
            if adapter.url.startswith("s3://"):
                # vllm v0.11.0 vllm/lora/utils.py get_adapter_absolute_path: a local path or
                # a Hugging Face repo id; an s3:// URL is looked up on the Hub and not found.
                yield Problem(
                    ("spec", "adapters", index, "url"),
                    "vLLM loads LoRA adapters only from a local path or a Hugging Face repo, "
                    "not s3://; publish the adapter as hf://org/repo",
                )
        yield from self._model_problems(doc, plan)
        yield from _parallel_problems(serve.args, plan)
        # Owned flags are said above, with what to use instead; parallel sizes too.
        for index, message, error in flag_problems(serve.args, version, _judged_here):
            yield Problem(("serve", "args", index), message, "error" if error else "warning")
        if serve.use_cpu_image:
            yield from _cpu_memory_problems(doc, plan)

    def _model_problems(self, doc: VLLMDocT, plan: _Plan) -> Iterable[Problem]:
        spec = doc.spec
        version = plan.version
        repo = _model_repo(spec.url)
        where = show(version or SUPPORTED_BELOW)
        cpu_s3 = spec.url.startswith("s3://") and doc.serve.use_cpu_image
        if cpu_s3 and older_than(version, CPU_RUNAI_SINCE):
            yield Problem(
                ("spec", "url"),
                f"the vLLM {where} CPU image has no run:ai model streamer, which s3:// needs; "
                f"use a CPU image of vLLM {show(CPU_RUNAI_SINCE)} or later, or pvc://",
            )
        pooled_lora = spec.adapters and self.pooling and bert_style(repo)
        if pooled_lora and older_than(version, BERT_LORA_SINCE):
            yield Problem(
                ("spec", "adapters"),
                f"{repo!r} is a BERT-style model, which supports no LoRA in vLLM {where}; use "
                f"an image of vLLM {show(BERT_LORA_SINCE)} or later",
            )
        if self.generates_text and pooling_name(repo):
            yield Problem(
                ("spec", "url"),
                f"{repo!r} looks like an embedding/reranking model: vLLM serves it with the "
                "pooling runner, without chat or completions; use kind vllmserve-pooling",
            )

    def mode_args(self, doc: VLLMDocT, config: Config, image: str) -> list[str]:
        """Flags that select what kind of model this is (pooling's task)."""
        return []

    def catalog(self, doc: VLLMDocT) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(features, paths under /v1) for the endpoint catalog."""
        return self.features, self.paths

    def context(self, doc: VLLMDocT, config: Config) -> dict[str, Any]:
        spec, serve = doc.spec, doc.serve
        plan = _plan(doc, config)
        name = doc.name
        selector = selector_labels(name)
        labels = {
            **doc.labels,
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/component": "vllm",
        }
        return {
            "name": name,
            "labels": labels,
            "selector": selector,
            "pod_labels": {**labels, **selector},
            # With an HPA, spec.replicas is left out: the HPA owns it, and a value in the
            # manifest would be reset by every Flux (server-side apply) reconciliation.
            "replicas": None if plan.hpa else plan.min_replicas,
            "image": plan.image,
            "args": self._args(doc, config, plan),
            "env": self._env(doc, config, plan),
            "env_from": [{"secretRef": {"name": secret}} for secret in serve.secrets],
            "resources": _resources(plan.resources),
            "volumes": _volumes(spec, plan),
            "volume_mounts": _volume_mounts(spec),
            "node_selector": plan.node_selector,
            "tolerations": [t.to_kubernetes() for t in plan.tolerations],
            "runtime_class_name": plan.runtime_class_name,
            "port": PORT,
            "run_as": RUN_AS,
            "service_type": serve.service_type,
            "alias_name": serve.service_name,
            "hpa": _hpa(serve.scaling, plan) if plan.hpa else None,
            "pdb": plan.min_replicas > 1,
        }

    def _args(self, doc: VLLMDocT, config: Config, plan: _Plan) -> list[str]:
        spec, serve = doc.spec, doc.serve
        model, load_args = _model_ref(spec.url)
        args = [*model_args(model, plan.version), "--served-model-name", model_name(doc)]
        args += ["--host", "0.0.0.0", "--port", str(PORT), *load_args]  # noqa: S104
        args += tensor_parallel(serve.args, plan.gpus)
        args += self.mode_args(doc, config, plan.image)
        if spec.adapters:
            args += ["--enable-lora", "--max-loras", str(len(spec.adapters)), "--lora-modules"]
            args += [f"{a.name}={_adapter_ref(a.url)}" for a in spec.adapters]
        endpoint = config.telemetry.otlp_endpoint
        if serve.enable_telemetry and endpoint:
            args += ["--otlp-traces-endpoint", otlp_exporter(endpoint).endpoint]
        return [*args, *serve.args]

    def _env(self, doc: VLLMDocT, config: Config, plan: _Plan) -> list[dict[str, str]]:
        """HOME and HF_HOME, then the user's envs by name, then feature variables.

        A variable the user sets replaces the generated one of the same name.
        """
        serve = doc.serve
        tail: dict[str, str] = {}
        endpoint = config.telemetry.otlp_endpoint
        if serve.enable_telemetry and endpoint:
            tail["OTEL_SERVICE_NAME"] = doc.name
            tail[OTLP_PROTOCOL_ENV] = otlp_exporter(endpoint).protocol
        if serve.use_cpu_image:
            tail[KV_CACHE_ENV] = str(cpu_memory(doc.spec.url, plan.resources.mem).kv_cache_gib())
        env = {key: value for key, value in HOME_ENV.items() if key not in serve.envs}
        env.update(sorted(serve.envs.items()))
        env.update((key, value) for key, value in tail.items() if key not in serve.envs)
        return [{"name": key, "value": value} for key, value in env.items()]

    def expected(self, doc: VLLMDocT, config: Config) -> list[ObjectRef]:
        plan = _plan(doc, config)
        refs = [ObjectRef("apps/v1", "Deployment", doc.name), ObjectRef("v1", "Service", doc.name)]
        if doc.serve.service_name:
            refs.append(ObjectRef("v1", "Service", doc.serve.service_name))
        if plan.hpa:
            refs.append(ObjectRef("autoscaling/v2", "HorizontalPodAutoscaler", doc.name))
        if plan.min_replicas > 1:
            refs.append(ObjectRef("policy/v1", "PodDisruptionBudget", doc.name))
        return refs

    def endpoint(self, doc: VLLMDocT, config: Config, namespace: str) -> Endpoint:
        features, paths = self.catalog(doc)
        return Endpoint(
            name=doc.name,
            runtime=self.kind,
            namespace=namespace,
            base_url=f"http://{doc.name}.{namespace}.svc.cluster.local:{PORT}/v1",
            model=model_name(doc),
            adapters=tuple(a.name for a in doc.spec.adapters),
            features=features,
            paths=paths,
        )

    def facts(self, doc: VLLMDocT, config: Config) -> Facts:
        # The policy (allowed_image_prefixes, max_gpus_per_model) is checked centrally
        # from these facts; GPUs are counted after the profile merge.
        plan = _plan(doc, config)
        return Facts(images=(plan.image,), gpus_per_replica=plan.gpus)


class VLLMServeText(VLLMServeRuntime[VLLMServeTextDocument]):
    kind: ClassVar[str] = "vllmserve-text"
    document = VLLMServeTextDocument
    features: ClassVar[tuple[str, ...]] = ("TextGeneration",)
    generates_text: ClassVar[bool] = True
    paths: ClassVar[tuple[str, ...]] = ("/chat/completions", "/completions", "/models")


class VLLMServeSpeech(VLLMServeRuntime[VLLMServeSpeechDocument]):
    kind: ClassVar[str] = "vllmserve-speech"
    document = VLLMServeSpeechDocument
    features: ClassVar[tuple[str, ...]] = ("SpeechToText",)
    paths: ClassVar[tuple[str, ...]] = ("/audio/transcriptions", "/audio/translations", "/models")
    allows_adapters: ClassVar[bool] = False


def _disables_stats(arg: str) -> bool:
    """`arg` is --disable-log-stats, spelt out or abbreviated past --disable-log-
    (shorter is ambiguous with --disable-log-requests, which vLLM refuses)."""
    flag = long_flag(arg) or ""
    return len(flag) > len("--disable-log-") and "--disable-log-stats".startswith(flag)


# Catalog entry per pooling task. Only paths under /v1 are listed (the catalog appends
# them to base_url); /classify and /pooling live at the server root.
POOLING_CATALOG: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = {
    None: (("TextEmbedding",), ("/embeddings", "/models")),
    "embed": (("TextEmbedding",), ("/embeddings", "/models")),
    "score": (("Reranking",), ("/score", "/rerank", "/models")),
    "classify": (("Classification",), ("/models",)),
    "reward": (("Reward",), ("/models",)),
}


class VLLMServePooling(VLLMServeRuntime[VLLMServePoolingDocument]):
    kind: ClassVar[str] = "vllmserve-pooling"
    document = VLLMServePoolingDocument
    features: ClassVar[tuple[str, ...]] = POOLING_CATALOG[None][0]
    paths: ClassVar[tuple[str, ...]] = POOLING_CATALOG[None][1]
    pooling: ClassVar[bool] = True

    def spec_problems(self, doc: VLLMServePoolingDocument, config: Config) -> Iterable[Problem]:
        yield from super().spec_problems(doc, config)
        if doc.serve.task is None:
            # vLLM (v0.10.0 config.py _get_supported_tasks) runs one pooling API per
            # server, detected from the architecture unless told: a reranker detected as
            # a classifier served no /embeddings, the API the catalog would list.
            yield Problem(
                ("serve", "task"),
                "set task (embed, classify, score or reward): it decides the one API the "
                "vLLM server runs, and the endpoint catalog lists that API",
            )

    def mode_args(self, doc: VLLMServePoolingDocument, config: Config, image: str) -> list[str]:
        return pooling_args(doc.serve.task, vllm_version(image, config))

    def catalog(self, doc: VLLMServePoolingDocument) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return POOLING_CATALOG[doc.serve.task]


# --- object fragments ------------------------------------------------------------------


def _resources(resources: Resources) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = resources.cpu
    if resources.mem is not None:
        requests["memory"] = limits["memory"] = resources.mem
    if resources.gpu:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(resources.gpu)
    out = {"requests": requests, "limits": limits}
    return {key: value for key, value in out.items() if value}


def _volumes(spec: VLLMModelSpec, plan: _Plan) -> list[dict[str, Any]]:
    cache: dict[str, Any] = {}
    if plan.resources.disk is not None:
        cache["sizeLimit"] = plan.resources.disk
    volumes: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
        {"name": "model-cache", "emptyDir": cache},
    ]
    claim = _pvc_claim(spec.url)
    if claim:
        volumes.append(
            {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    return volumes


def _volume_mounts(spec: VLLMModelSpec) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": SHM_DIR},
        {"name": "model-cache", "mountPath": CACHE_DIR},
    ]
    if _pvc_claim(spec.url):
        mounts.append({"name": "model", "mountPath": MODELS_DIR, "readOnly": True})
    return mounts


def _hpa(scaling: VLLMScaling, plan: _Plan) -> dict[str, Any]:
    target = scaling.target or DEFAULT_TARGETS[scaling.metric]
    if scaling.metric == "cpu":
        metric: dict[str, Any] = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target},
            },
        }
    else:
        metric = {
            "type": "Pods",
            "pods": {
                "metric": {"name": WAITING_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(target)},
            },
        }
    return {
        "min_replicas": plan.min_replicas,
        "max_replicas": scaling.max_replicas,
        "metrics": [metric],
    }
