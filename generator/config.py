"""servegen.yaml: the repository config. Every key is optional; unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from generator.fields import (
    Annotations,
    DnsLabel,
    DnsSubdomain,
    Labels,
    Resources,
    StrictModel,
    Toleration,
    single_line,
)

CONFIG_FILE = "servegen.yaml"

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.10.2"
DEFAULT_VLLM_CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.2"


def _relative_dir(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value or not value.strip():
        raise ValueError("must be a relative path inside the repository (no '..')")
    if not value.isprintable():  # it is written into headers and messages
        raise ValueError("must not contain control or line-break characters")
    return str(path)


RelativeDir = Annotated[str, AfterValidator(_relative_dir)]

_TAG = re.compile(r"^[^@\s]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def _pinned_image(value: str) -> str:
    single_line(value)
    name, _, digest = value.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if not _TAG.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid image reference")
    if not digest and (not tag or tag == "latest"):
        raise ValueError(f"image {value!r} must be pinned to a tag other than 'latest' or a digest")
    return value


PinnedImage = Annotated[
    str,
    AfterValidator(_pinned_image),
    Field(description="An image reference pinned to a version tag (not `latest`) or a digest."),
]

Duration = Annotated[
    str,
    StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"),
    Field(description="A Go duration such as 30s, 5m or 1h."),
]


def _branch_name(value: str) -> str:
    bad = (
        not re.fullmatch(r"[A-Za-z0-9._/-]+", value)
        or value.startswith(("/", "-", "."))
        or value.endswith(("/", ".", ".lock"))
        or "//" in value
        or ".." in value
    )
    if bad:
        raise ValueError(f"{value!r} is not a safe git branch name")
    return value


BranchName = Annotated[str, AfterValidator(_branch_name)]


class Environment(StrictModel):
    """One deployment environment (a Flux entry point under clusters/<env>)."""

    namespace: DnsLabel | None = Field(
        default=None, description="Namespace for this environment; default: the top-level one."
    )
    labels: Labels = Field(default_factory=dict, description="Labels added to every object.")
    annotations: Annotations = Field(
        default_factory=dict, description="Annotations added to every object."
    )


class Committer(StrictModel):
    name: str = Field(min_length=1, description="Committer name for deploy commits.")
    email: str = Field(pattern=r"^[^<>\s@]+@[^<>\s@]+$", description="Committer e-mail.")


class Deploy(StrictModel):
    branch: BranchName = Field(
        default="deploy",
        description="Branch that receives rendered manifests and that Flux follows.",
    )
    remote: str | None = Field(default=None, description="Remote to push to (default: origin).")
    committer: Committer | None = Field(
        default=None, description="Identity for deploy commits; else git config or environment."
    )
    max_shrink: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Refuse a publish that removes more than this share of objects "
        "(and any model removal) unless --allow-prune.",
    )


class KubeAI(StrictModel):
    endpoint: str = Field(
        default="http://kubeai/openai/v1",
        pattern=r"^https?://[^\s]+$",
        description="OpenAI base URL of the KubeAI proxy, as clients reach it.",
    )


class VLLM(StrictModel):
    image: PinnedImage = Field(default=DEFAULT_VLLM_IMAGE, description="GPU image.")
    cpu_image: PinnedImage = Field(default=DEFAULT_VLLM_CPU_IMAGE, description="CPU image.")
    version: str | None = Field(
        default=None,
        pattern=r"^v?[0-9]+\.[0-9]+(\.[0-9]+)?$",
        description="vLLM version of the images, when their tags do not say it "
        "(decides --task versus --runner/--convert for pooling).",
    )


class Telemetry(StrictModel):
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^(https?|grpc)://[^\s]+$",
        description="OTLP traces endpoint (http://, https:// or grpc://) for specs with "
        "enable_telemetry.",
    )


class Validation(StrictModel):
    kubernetes_version: str = Field(
        default="1.33",
        pattern=r"^v?1\.[0-9]+(\.[0-9]+)?$",
        description="Kubernetes version whose schemas built-in kinds are checked against.",
    )
    crds: list[str] = Field(
        default_factory=list,
        description="CRD YAML files or directories (relative to the repository, or absolute) "
        "used to validate custom resources, like kubeconform's schema locations.",
    )
    kubeconform: Literal["auto", "always", "never"] = Field(
        default="auto", description="Use a kubeconform binary from PATH: auto, always or never."
    )


class Flux(StrictModel):
    url: str = Field(
        pattern=r"^(http|https|ssh)://.*$",
        description="Git URL (http://, https:// or ssh://) Flux pulls the deploy branch from.",
    )
    interval: Duration = Field(default="1m", description="How often Flux checks the branch.")
    namespace: DnsLabel = Field(default="flux-system", description="Namespace of Flux objects.")
    name: DnsLabel = Field(default="servegen", description="Prefix of the Flux object names.")
    secret_ref: DnsSubdomain | None = Field(
        default=None, description="Secret with git credentials for a private repository."
    )
    timeout: Duration = Field(default="10m", description="Kustomization apply/health timeout.")
    depends_on: list[DnsLabel] = Field(
        default_factory=list,
        description="Flux Kustomizations (same namespace) that install KubeAI/KServe first.",
    )


class Profile(StrictModel):
    """Named scheduling and resource defaults; a spec's own values override them."""

    resources: Resources | None = Field(default=None, description="Default resources.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations.")
    runtime_class_name: DnsSubdomain | None = Field(
        default=None, description="RuntimeClass, e.g. nvidia."
    )


class Policy(StrictModel):
    allowed_image_prefixes: list[str] = Field(
        default_factory=list,
        description="When set, every image must start with one of these prefixes.",
    )
    max_gpus_per_model: int | None = Field(
        default=None, ge=0, description="Upper bound on GPUs per replica."
    )


class Config(StrictModel):
    """servegen.yaml."""

    specs: RelativeDir = Field(default="specs", description="Folder holding the serve specs.")
    output: RelativeDir = Field(default="output", description="Folder for rendered manifests.")
    namespace: DnsLabel = Field(default="default", description="Default namespace.")
    environments: dict[DnsLabel, Environment] = Field(
        default_factory=lambda: {"default": Environment()},
        min_length=1,
        description="Environments to render, by name.",
    )
    deploy: Deploy = Field(default_factory=Deploy, description="Publishing to the deploy branch.")
    kubeai: KubeAI = Field(default_factory=KubeAI, description="KubeAI settings.")
    vllm: VLLM = Field(default_factory=VLLM, description="vLLM images.")
    telemetry: Telemetry = Field(default_factory=Telemetry, description="Tracing.")
    validation: Validation = Field(
        default_factory=Validation, description="How rendered objects are validated."
    )
    flux: Flux | None = Field(default=None, description="Render Flux objects per environment.")
    profiles: dict[DnsLabel, Profile] = Field(
        default_factory=dict, description="Named resource/scheduling profiles."
    )
    policy: Policy = Field(default_factory=Policy, description="Guard rails for every spec.")

    @model_validator(mode="after")
    def _output_apart_from_specs(self) -> Config:
        specs, output = PurePosixPath(self.specs), PurePosixPath(self.output)
        if specs == output or specs in output.parents or output in specs.parents:
            raise ValueError("`specs` and `output` must not contain each other")
        return self

    def namespace_for(self, environment: str, spec_namespace: str | None) -> str:
        if spec_namespace:
            return spec_namespace
        return self.environments[environment].namespace or self.namespace
