"""servegen.yaml: the repository config. Every key is optional; unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from generator.errors import ServegenError, UnknownEnvironmentError, cut
from generator.fields import (
    LINE_PATTERN,
    Annotations,
    DnsLabel,
    DnsSubdomain,
    Labels,
    Resources,
    StrictModel,
    Toleration,
    credential_pattern,
    single_line,
)
from generator.k8sformats import DNS1123_SUBDOMAIN
from generator.k8sschemas import resolve_kubernetes_version
from generator.urls import (
    AUTHORITY_PATTERN,
    CREDENTIALS_PATTERN,
    CREDENTIALS_PROBLEM,
    credential_places,
    url_problem,
)

CONFIG_FILE = "servegen.yaml"

# Whitespace and line breaks, spelled out: `\s` and `.` mean different things to pydantic's
# (Rust) regular expressions and to an editor's (ECMAScript) ones. `\s` is U+0085 to the
# first and U+FEFF to the second; `.` stops at '\r', U+2028 and U+2029 only in the second.
# A pattern using them would let validate accept what the editor marks, or the reverse.
_BLANK = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"

DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.10.2"
DEFAULT_VLLM_CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.2"


def _relative_dir(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError("must be a relative path inside the repository, not an absolute one")
    if ".." in path.parts or "\\" in value or not value.strip():
        raise ValueError("must be a relative path inside the repository (no '..')")
    if not value.isprintable():  # it is written into headers and messages
        raise ValueError("must not contain control or line-break characters")
    return str(path)


RelativeDir = Annotated[str, AfterValidator(_relative_dir)]


def _crd_source(value: str) -> str:
    # servegen.yaml is the spec authors' file: it names nothing outside the repository
    # (a file of the CI machine, /dev/zero). A CRD elsewhere is the operator's --crds.
    if PurePosixPath(value).is_absolute():
        raise ValueError(
            "must be a relative path inside the repository; pass a CRD elsewhere on this "
            "machine with --crds"
        )
    return _relative_dir(value)


CrdSource = Annotated[str, AfterValidator(_crd_source)]

# An image reference as the kubelet parses it (github.com/distribution/reference v0.6.0,
# regexp.go and normalize.go): an optional registry host[:port], lower-case path
# components, a tag of at most 128 word characters, '.' and '-' not first, and here only a
# sha256 digest; else the pod fails with InvalidImageName. Spelled without `\w` or `.`:
# one pattern for validate and the JSON Schema (editors' regexes read those differently).
_HOST_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
# A first component is a registry only with a '.', a port or as localhost (normalize.go
# splitDockerDomain); else it is a path component, lower-case like the rest.
_REGISTRY = rf"(?:(?:{_HOST_PART}(?:[.]{_HOST_PART})+|localhost)(?::[0-9]+)?|{_HOST_PART}:[0-9]+)"
_TAG = re.compile(
    rf"^(?:{_REGISTRY}/)?{_PATH_PART}(?:/{_PATH_PART})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


def _pinned_image(value: str) -> str:
    single_line(value)
    name, _, digest = value.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    if not _TAG.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid image reference")
    if not digest and (not tag or tag == "latest"):
        raise ValueError(f"image {value!r} must be pinned to a tag other than 'latest' or a digest")
    return value


def _pinned_image_schema(schema: dict[str, Any]) -> None:
    """_pinned_image's rule, for editors. Past _TAG, an '@' is a digest; without one, the
    tag is what follows the first ':' of the last '/'-segment, and must be neither empty
    nor `latest`."""
    digest = {"pattern": "@"}
    tagged = {"pattern": ":[^/]+$", "not": {"pattern": "(^|/)[^/:]*:latest$"}}
    schema["pattern"] = _TAG.pattern
    schema["allOf"] = [{"pattern": LINE_PATTERN}, {"anyOf": [digest, tagged]}]


PinnedImage = Annotated[
    str,
    AfterValidator(_pinned_image),
    Field(
        description="An image reference pinned to a version tag (not `latest`) or a digest.",
        json_schema_extra=_pinned_image_schema,
    ),
]

Duration = Annotated[
    str,
    StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"),
    Field(description="A Go duration such as 30s, 5m or 1h."),
]


def _nonzero(value: str) -> str:
    # source-controller and kustomize-controller (fluxcd, v1.x) requeue an object after its
    # interval, and controller-runtime reads a RequeueAfter of 0 as "do not requeue":
    # Flux would check the deploy branch once and never again.
    if not any(digit in value for digit in "123456789"):
        raise ValueError(f"{value!r} is no interval: Flux would never check again")
    return value


Interval = Annotated[Duration, AfterValidator(_nonzero)]


_BRANCH_CHARACTERS = "[A-Za-z0-9._/-]+"
_BRANCH_NOT_FIRST = ("/", "-", ".")
_BRANCH_NOT_LAST = ("/", ".", ".lock")
_BRANCH_NOT_INSIDE = ("//", "..")


def _branch_name(value: str) -> str:
    bad = (
        not re.fullmatch(_BRANCH_CHARACTERS, value)
        or value.startswith(_BRANCH_NOT_FIRST)
        or value.endswith(_BRANCH_NOT_LAST)
        or any(part in value for part in _BRANCH_NOT_INSIDE)
        or value == "HEAD"
    )
    if bad:
        raise ValueError(f"{value!r} is not a safe git branch name")
    return value


def _literal(text: str) -> str:
    # Each punctuation character in a class of its own: `.` matches itself, and no
    # escape is needed that ECMAScript's unicode mode would refuse (`\-`).
    return "".join(c if c.isalnum() else f"[{c}]" for c in text)


def _branch_schema(schema: dict[str, Any]) -> None:
    """_branch_name's rule, for editors: JSON Schema has no negative pattern, so what a
    branch may not be is a `not` of the ways it can go wrong."""
    wrong = [
        *(f"^{_literal(first)}" for first in _BRANCH_NOT_FIRST),
        *(f"{_literal(last)}$" for last in _BRANCH_NOT_LAST),
        *(_literal(inside) for inside in _BRANCH_NOT_INSIDE),
    ]
    schema["pattern"] = f"^{_BRANCH_CHARACTERS}$"
    schema["not"] = {"anyOf": [*({"pattern": p} for p in wrong), {"const": "HEAD"}]}


BranchName = Annotated[str, AfterValidator(_branch_name), Field(json_schema_extra=_branch_schema)]

_CREDENTIALS_ADVICE = "keep credentials in a Secret"


def _service_url(value: str) -> str:
    """generator/urls.py's rule, and no credential of a known kind where a URL carries one
    (a token as the user name, or in the query): it would be written out as it is."""
    problem = url_problem(value)
    if problem == CREDENTIALS_PROBLEM:  # the URL is not quoted: it would show the password
        raise ValueError(f"{problem}: {_CREDENTIALS_ADVICE}")
    kind = credential_pattern(credential_places(value))
    if kind:
        raise ValueError(
            f"holds what looks like {kind}, which would be written into the manifests in "
            f"plaintext: {_CREDENTIALS_ADVICE}"
        )
    if problem:
        raise ValueError(f"{cut(value)!r} {problem}")
    return value


def _service_url_schema(schema: dict[str, Any]) -> None:
    """_service_url's rule, for editors (but for the credential patterns, which need `\\b`)."""
    schema["allOf"] = [{"pattern": AUTHORITY_PATTERN}, {"not": {"pattern": CREDENTIALS_PATTERN}}]


# Each URL field: its schemes (and the characters a URL may hold) first, so a URL without
# a scheme is told which it needs, then _service_url.
_URL_RULE = AfterValidator(_service_url)
_URL_SCHEMA = Field(json_schema_extra=_service_url_schema)
HttpUrl = Annotated[
    str, StringConstraints(pattern=rf"^https?://[^{_BLANK}]+$"), _URL_RULE, _URL_SCHEMA
]
OtlpUrl = Annotated[
    str, StringConstraints(pattern=rf"^(https?|grpc)://[^{_BLANK}]+$"), _URL_RULE, _URL_SCHEMA
]
GitUrl = Annotated[
    str,
    StringConstraints(pattern=r"^(http|https|ssh)://[^\n\r\u2028\u2029]*$"),
    _URL_RULE,
    _URL_SCHEMA,
]


def in_cluster_namespace(url: str) -> str | None:
    """The namespace an in-cluster Service URL names (`http://svc.ns.svc[.cluster.local]/...`)."""
    host = re.sub(r"^[a-z]+://", "", url).split("/", 1)[0].split(":", 1)[0]
    match = re.fullmatch(r"[a-z0-9-]+\.([a-z0-9-]+)\.svc(\.cluster\.local)?\.?", host)
    return match.group(1) if match else None


KUBEAI_API_PATH = "/openai/v1"


def kubeai_endpoint(namespace: str) -> str:
    """The OpenAI base URL of the KubeAI proxy installed in `namespace`."""
    # kubeai v0.22.1 charts/kubeai/templates/service.yaml: Service `kubeai`, port 80.
    return f"http://kubeai.{namespace}.svc.cluster.local{KUBEAI_API_PATH}"


class KubeAIInstall(StrictModel):
    """Where one environment's KubeAI runs; its Models must live in that namespace."""

    namespace: DnsLabel = Field(
        description="Namespace KubeAI runs in. KubeAI reconciles Models only in its own "
        "namespace, so this environment's Models are written there."
    )
    endpoint: HttpUrl | None = Field(
        default=None,
        description="OpenAI base URL of this KubeAI, as clients reach it "
        "(default: http://kubeai.<namespace>.svc.cluster.local/openai/v1).",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_in_namespace(cls, endpoint: str | None, info: ValidationInfo) -> str | None:
        namespace = info.data.get("namespace")
        named = in_cluster_namespace(endpoint or "")
        if namespace is not None and named is not None and named != namespace:
            raise ValueError(
                f"{endpoint!r} is a Service in namespace {named!r}, but KubeAI runs in "
                f"{namespace!r} (where the Models go): the endpoint and the namespace "
                "must agree"
            )
        # kubeai v0.22.1 internal/openaiserver/handler.go serves its API under /openai/v1
        # only; anything in front of its Service (another host) may map paths as it likes.
        parts = urlsplit(endpoint or "")
        kubeai_service = named is not None and (parts.hostname or "").split(".")[0] == "kubeai"
        if kubeai_service and parts.path.rstrip("/") != KUBEAI_API_PATH:
            raise ValueError(
                f"{endpoint!r} is KubeAI's Service, which serves its OpenAI API under "
                f"{KUBEAI_API_PATH}: end the endpoint with it"
            )
        return endpoint

    @property
    def url(self) -> str:
        return self.endpoint or kubeai_endpoint(self.namespace)


class StatusReader(StrictModel):
    """Who runs `servegen status` for an environment; gets read-only RBAC in rbac/<env>/."""

    kind: Literal["ServiceAccount", "User", "Group"] = Field(
        default="ServiceAccount", description="Subject kind of the RoleBindings."
    )
    name: str = Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$", description="Subject name.")
    namespace: DnsLabel | None = Field(
        default=None, description="The ServiceAccount's namespace (required for ServiceAccount)."
    )

    @field_validator("name")
    @classmethod
    def _service_account_name(cls, name: str, info: ValidationInfo) -> str:
        # k8s v1.33 pkg/apis/rbac/validation ValidateRoleBindingSubject: a ServiceAccount
        # subject's name is a ServiceAccount's, a DNS-1123 subdomain; the API server
        # refuses the RoleBinding otherwise.
        if info.data.get("kind") == "ServiceAccount" and not DNS1123_SUBDOMAIN.matches(name):
            raise ValueError(f"{cut(name)!r} {DNS1123_SUBDOMAIN.help}: it names a ServiceAccount")
        return name

    @model_validator(mode="after")
    def _namespace_for_service_account(self) -> StatusReader:
        if (self.kind == "ServiceAccount") != (self.namespace is not None):
            raise ValueError("`namespace` is required for a ServiceAccount and only for one")
        return self


class Environment(StrictModel):
    """One deployment environment (a Flux entry point under clusters/<env>)."""

    namespace: DnsLabel | None = Field(
        default=None, description="Namespace for this environment; default: the top-level one."
    )
    cluster: DnsLabel | None = Field(
        default=None,
        description="Name of the cluster this environment deploys to. Environments with the "
        "same cluster (all of them, when none is set) must not write the same object: "
        "servegen refuses, e.g., one KubeAI Model written by two environments.",
    )
    kubeai: KubeAIInstall | None = Field(
        default=None, description="This environment's KubeAI; default: the top-level `kubeai`."
    )
    labels: Labels = Field(default_factory=dict, description="Labels added to every object.")
    annotations: Annotations = Field(
        default_factory=dict, description="Annotations added to every object."
    )
    context: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="kubeconfig context `servegen status` reads this environment from; "
        "default: the current context (or the in-cluster service account).",
    )
    status_reader: StatusReader | None = Field(
        default=None,
        description="Render least-privilege read-only RBAC (rbac/<env>/: a Role and "
        "RoleBinding per namespace, list and watch only) for this subject.",
    )


class Committer(StrictModel):
    name: str = Field(min_length=1, description="Committer name for deploy commits.")
    email: str = Field(
        pattern=rf"^[^<>@{_BLANK}]+@[^<>@{_BLANK}]+$", description="Committer e-mail."
    )


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


class KubeAI(KubeAIInstall):
    """The KubeAI every environment uses unless it names its own."""

    namespace: DnsLabel = Field(
        default="kubeai",
        description="Namespace KubeAI runs in (default kubeai). KubeAI reconciles Models "
        "only in its own namespace, so Models are written there.",
    )


class KServe(StrictModel):
    version: str = Field(
        default="0.20",
        pattern=r"^v?0\.[0-9]{1,6}(\.[0-9]{1,6})?$",
        description="KServe release the clusters run (default 0.20); decides the "
        "deployment-mode names (Standard/Knative from 0.16, RawDeployment/Serverless before).",
    )

    @property
    def minor(self) -> int:
        """The release's minor number: 20 for 0.20 or v0.20.1."""
        return int(self.version.lstrip("v").split(".")[1])

    def at_least(self, minor: int, patch: int = 0) -> bool:
        """Whether the release is 0.<minor>.<patch> or later; a version written without
        a patch counts as the newest of its minor."""
        written = self.version.lstrip("v").split(".")[2:]
        return (self.minor, int(written[0]) if written else float("inf")) >= (minor, patch)


class VLLM(StrictModel):
    image: PinnedImage = Field(default=DEFAULT_VLLM_IMAGE, description="GPU image.")
    cpu_image: PinnedImage = Field(default=DEFAULT_VLLM_CPU_IMAGE, description="CPU image.")
    version: str | None = Field(
        default=None,
        pattern=r"^v?[0-9]{1,6}\.[0-9]{1,6}(\.[0-9]{1,6})?$",
        description="vLLM version of the images, when their tags do not say it "
        "(decides --task versus --runner/--convert for pooling).",
    )


class Telemetry(StrictModel):
    otlp_endpoint: OtlpUrl | None = Field(
        default=None,
        description="OTLP traces endpoint (http://, https:// or grpc://) for specs with "
        "enable_telemetry.",
    )


class Validation(StrictModel):
    kubernetes_version: str = Field(
        default="1.33",
        pattern=r"^v?1\.[0-9]{1,6}(\.[0-9]{1,6})?$",
        description="Kubernetes version whose schemas built-in kinds are checked against.",
    )

    @field_validator("kubernetes_version")
    @classmethod
    def _schemas_exist(cls, version: str) -> str:
        # Told here, at its place in servegen.yaml, rather than when the first object is
        # checked (a message without a position, after every spec was read).
        try:
            resolve_kubernetes_version(version)
        except ServegenError as exc:
            raise ValueError(exc.message) from None
        return version

    crds: list[CrdSource] = Field(
        default_factory=list,
        description="Extra CRD YAML files or directories inside the repository (relative "
        "paths) for validating custom resources. servegen bundles the CRDs of every kind "
        "it renders; a CRD listed here replaces the bundled one of the same kind. A CRD "
        "elsewhere on the machine is passed with --crds.",
    )
    kubeconform: Literal["auto", "always", "never"] = Field(
        default="auto", description="Use a kubeconform binary from PATH: auto, always or never."
    )


class Flux(StrictModel):
    url: GitUrl = Field(
        description="Git URL (http://, https:// or ssh://) Flux pulls the deploy branch from.",
    )
    interval: Interval = Field(
        default="1m", description="How often Flux checks the branch (more than 0)."
    )
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
    node_selector: Labels = Field(default_factory=dict, description="Node selector.")
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
    pinned_environments: list[DnsLabel] = Field(
        default_factory=list,
        description="Environments whose models must pin an immutable version: hf:// models "
        "a commit SHA revision, and every image a tag (not latest) or a digest, set in the "
        "spec rather than left to the runtime's default.",
    )
    pinned_image_digest: bool = Field(
        default=False,
        description="In pinned environments, images need a digest (@sha256:...), not just a tag.",
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
    kserve: KServe = Field(default_factory=KServe, description="KServe settings.")
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
    def _pinned_environments_declared(self) -> Config:
        unknown = [env for env in self.policy.pinned_environments if env not in self.environments]
        if unknown:
            raise ValueError(
                f"policy.pinned_environments names undeclared environment(s) {', '.join(unknown)} "
                f"(declared: {', '.join(self.environments)})"
            )
        return self

    @model_validator(mode="after")
    def _output_apart_from_specs(self) -> Config:
        specs, output = PurePosixPath(self.specs), PurePosixPath(self.output)
        if specs == output or specs in output.parents or output in specs.parents:
            raise ValueError("`specs` and `output` must not contain each other")
        return self

    def require_environment(self, name: str) -> None:
        """Raise unless servegen.yaml declares `name` (what every --env, --from and --to
        is judged by, with the same message)."""
        if name not in self.environments:
            declared = ", ".join(self.environments) or "none"
            raise UnknownEnvironmentError(
                f"unknown environment {name!r} (declared in servegen.yaml: {declared})"
            )

    def kubeai_for(self, environment: str) -> KubeAIInstall:
        """The KubeAI install an environment's Models go to."""
        return self.environments[environment].kubeai or self.kubeai

    def cluster_of(self, environment: str) -> str:
        return self.environments[environment].cluster or ""

    def namespace_for(self, environment: str, spec_namespace: str | None) -> str:
        if spec_namespace:
            return spec_namespace
        return self.environments[environment].namespace or self.namespace
