"""kubeai-text: a KubeAI `Model` (kubeai.org/v1), served through the shared KubeAI proxy."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from generator.config import Config, PinnedImage
from generator.fields import (
    DnsLabel,
    Envs,
    Int32,
    Int64,
    Line,
    SecretNames,
    StrictModel,
    Text,
    hf_repo_problem,
    hf_repo_schema,
    pvc_claim_problem,
)
from generator.k8sformats import DNS1123_LABEL, DNS1123_SUBDOMAIN
from generator.spec import SpecDocument, spec_override_model
from runtimes.base import (
    Endpoint,
    Facts,
    ObjectRef,
    Problem,
    Runtime,
    long_flag,
    vllm_claimed_flag,
    vllm_unreachable_problems,
)
from runtimes.vllm_engine import flag_problems, image_version

MODEL_URL_RE = r"^(hf|s3|gs|oss|pvc|ollama)://[a-zA-Z0-9._:/@-]+(\?[A-Za-z0-9=&._:-]*)?$"
ADAPTER_URL_RE = r"^(hf|s3|gs|oss)://[a-zA-Z0-9._:/@-]+$"
CACHEABLE_SCHEMES = ("hf://", "s3://", "gs://", "oss://")
# hf://org/model@revision: KubeAI itself has no revision syntax (see _revision()).
_HF_REVISION = re.compile(r"^hf://([^@?]+)@([A-Za-z0-9][A-Za-z0-9._/-]*)$")

Feature = Literal["TextGeneration", "TextEmbedding", "Reranking", "SpeechToText"]
Engine = Literal["VLLM", "OLlama", "Infinity", "FasterWhisper"]

# Which features each engine can serve (KubeAI docs: embeddings on Infinity, vLLM and
# Ollama; reranking on Infinity or vLLM; speech only on FasterWhisper).
ENGINE_FEATURES: dict[str, frozenset[str]] = {
    "VLLM": frozenset({"TextGeneration", "TextEmbedding", "Reranking"}),
    "OLlama": frozenset({"TextGeneration", "TextEmbedding"}),
    "Infinity": frozenset({"TextEmbedding", "Reranking"}),
    "FasterWhisper": frozenset({"SpeechToText"}),
}
FEATURE_PATHS: dict[str, tuple[str, ...]] = {
    "TextGeneration": ("/chat/completions", "/completions"),
    "TextEmbedding": ("/embeddings",),
    "Reranking": ("/rerank",),
    "SpeechToText": ("/audio/transcriptions",),
}
# Environment KubeAI's Ollama images need to answer the proxy (seed platform defaults).
OLLAMA_ENV = {"OLLAMA_DEBUG": "false", "GIN_MODE": "release", "OLLAMA_ORIGINS": "*"}

# kubeai v0.22.1 internal/modelcontroller/model_source.go (parseModelURL) reads a URL's
# query for ?model= (pvc:// with OLlama) and ?insecure= / ?pull= (ollama://) only. On
# hf://, s3://, gs:// and oss:// a query is no part of KubeAI's syntax: the model loader
# (components/model-loader/load.sh) and vLLM get it as part of the repository or path.
QUERY_KEYS: dict[str, tuple[str, ...]] = {"pvc://": ("model",), "ollama://": ("insecure", "pull")}

# What each engine's server must keep as KubeAI v0.22.1 sets it up (internal/
# modelcontroller/engine_*.go): KubeAI puts its flags before the spec's args and its
# environment before the spec's envs, so the spec's own would win.
_NAME = "it serves the model under the Model's name, which its proxy asks for"
_SOURCE = "it points the server at the model it mounted or downloaded (spec.url)"
_PORT = "its proxy and probes reach the server on port 8000 of the pod's address"
_PREFIX = "its proxy sends the OpenAI routes under /v1"
ENGINE_FLAGS: dict[str, dict[str, str]] = {
    "VLLM": {"--model": _SOURCE, "--served-model-name": _NAME, "--host": _PORT, "--port": _PORT},
    "Infinity": {
        "--model-id": _SOURCE,
        "--served-model-name": _NAME,
        "--url-prefix": _PREFIX,
        "--host": _PORT,
        "--port": _PORT,
    },
}
# kubeai v0.22.1 internal/modelcontroller/files.go updates the files' ConfigMap in place
# and mounts each file by subPath, which a running pod never sees change; the pods roll
# only when their spec's hash does (pod_plan.go, k8sutils.PodHash). The files' digest in
# the env is part of that spec, so an edit of a file's content rolls them.
FILES_DIGEST_ENV = "SERVEGEN_FILES_SHA256"


def files_digest(files: Iterable[File]) -> str:
    """sha256 of the files' paths and contents, in order."""
    text = json.dumps([[f.path, f.content] for f in files], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# kubeai v0.22.1 engine_ollama.go: for a pvc:// model it sets OLLAMA_MODELS=/model (the
# claim's mount) before the spec's env, and the later entry wins.
OLLAMA_PVC_ENVS = {"OLLAMA_MODELS": "it points Ollama at the mounted claim"}
ENGINE_ENVS: dict[str, dict[str, str]] = {
    "VLLM": {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "it turns it on to load adapters at run time"},
    "OLlama": {"OLLAMA_HOST": _PORT},
    "Infinity": {
        "INFINITY_MODEL_ID": _SOURCE,
        "INFINITY_SERVED_MODEL_NAME": _NAME,
        "INFINITY_URL_PREFIX": _PREFIX,
        "INFINITY_HOST": _PORT,
        "INFINITY_PORT": _PORT,
    },
    "FasterWhisper": {"WHISPER__MODEL": _SOURCE},
}

# kubeai v0.22.1 internal/modelcontroller/files.go keeps a Model's files in one
# ConfigMap, each under its path with '/' turned into '_' (fileConfigMapKey). A ConfigMap
# key is letters, digits, '-', '_' and '.', at most 253 of them (k8s v1.33
# IsConfigMapKey), and a ConfigMap holds at most 1 MiB of data (ValidateConfigMap). The
# controller makes that ConfigMap first (model_controller.go): a file it cannot store
# stops the Model there.
CONFIGMAP_KEY_MAX_LENGTH = 253
CONFIGMAP_MAX_BYTES = 1 << 20


class Adapter(StrictModel):
    name: str = Field(
        pattern=r"^[a-z0-9-]+$", max_length=63, description="Adapter name (a-z, 0-9, '-')."
    )
    url: str = Field(
        pattern=ADAPTER_URL_RE,
        description="hf://, s3://, gs:// or oss:// URL.",
        json_schema_extra=hf_repo_schema,  # _hf_id_problems
    )


class File(StrictModel):
    path: str = Field(
        pattern=r"^/[-._a-zA-Z0-9/]+$",
        max_length=CONFIGMAP_KEY_MAX_LENGTH,
        description="Absolute path in the model pod, of letters, digits, '-', '_', '.' and "
        "'/' (KubeAI keeps the file in a ConfigMap under the path, '/' written as '_').",
    )
    content: Text = Field(max_length=100_000, description="File content.")


class KubeAIModelSpec(StrictModel):
    """The model: what KubeAI loads."""

    url: str = Field(
        pattern=MODEL_URL_RE,
        description="Base model: hf://, s3://, gs://, oss://, pvc:// or ollama:// URL.",
        examples=["hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0"],
        json_schema_extra=hf_repo_schema,  # _hf_id_problems
    )
    model_name: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None,
        pattern=DNS1123_LABEL.pattern,
        description="KubeAI Model name and OpenAI `model` value (default: the spec name).",
    )
    image: PinnedImage | None = Field(default=None, description="Serving image override.")
    adapters: list[Adapter] = Field(default_factory=list, description="LoRA adapters (VLLM).")
    features: list[Feature] = Field(
        default_factory=lambda: list[Feature](["TextGeneration"]),
        min_length=1,
        description="OpenAI features served.",
    )
    engine: Engine = Field(default="VLLM", description="Serving engine.")


# What an environment may pin differently: the model version (see README).
SPEC_OVERRIDES = ("url", "image", "adapters")


class KubeAIModelSpecOverride(spec_override_model(KubeAIModelSpec, SPEC_OVERRIDES)):  # type: ignore[misc]
    """What an environment may override in `spec` (environments.<env>.spec)."""


# kubeai v0.22.1 internal/modelcontroller/cache.go (cachePVCName): a cache profile's
# models share the PVC `shared-model-cache-<cacheProfile>`, and a PVC's name is a
# DNS-1123 subdomain: any other profile name leaves the Model without its cache.
CACHE_PVC_PREFIX = "shared-model-cache-"
CACHE_PROFILE_MAX_LENGTH = DNS1123_SUBDOMAIN.max_length - len(CACHE_PVC_PREFIX)
CacheProfileName = Annotated[
    str,
    StringConstraints(pattern=DNS1123_SUBDOMAIN.pattern, max_length=CACHE_PROFILE_MAX_LENGTH),
    Field(description="A DNS-1123 subdomain: KubeAI names its PVC after it."),
]


class PrefixHash(StrictModel):
    mean_load_factor: Int64 | None = Field(default=None, ge=100, description="Default 125.")
    replication: Int64 | None = Field(
        default=None, ge=1, description="Default 256; immutable once created."
    )
    prefix_char_length: Int64 | None = Field(default=None, ge=1, description="Default 100.")


class LoadBalancing(StrictModel):
    strategy: Literal["LeastLoad", "PrefixHash"] = Field(
        default="LeastLoad", description="LeastLoad or PrefixHash."
    )
    prefix_hash: PrefixHash | None = Field(default=None, description="PrefixHash tuning.")


class Scaling(StrictModel):
    replicas: Int32 | None = Field(
        default=None, ge=0, description="Fixed replicas; only with autoscaling_disabled."
    )
    min_replicas: Int32 = Field(default=1, ge=0, description="0 allows scale from zero.")
    max_replicas: Int32 | None = Field(default=None, ge=1, description="Upper bound.")
    autoscaling_disabled: bool = Field(default=False, description="Stop KubeAI autoscaling.")
    target_requests: Int32 | None = Field(
        default=None, ge=1, description="Active requests per replica to aim for (100)."
    )
    scale_down_delay_seconds: Int64 | None = Field(
        default=None, ge=0, description="Delay before scaling down (30)."
    )
    load_balancing: LoadBalancing | None = Field(default=None, description="Load balancing.")


class KubeAIServe(StrictModel):
    """How the model is served."""

    # In the other runtimes `profile` names a `profiles` entry of servegen.yaml; the KubeAI
    # resource profile is a different thing, so it has a different name and `profile`
    # is refused here with this explanation.
    renamed_fields: ClassVar[dict[str, str]] = {
        "profile": "the KubeAI resource profile is `resource_profile` here (`profile` names "
        "a servegen.yaml `profiles` entry, which kubeai-text does not use)"
    }

    resource_profile: str = Field(
        default="cpu",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="KubeAI resource profile (defined in the KubeAI installation, not in "
        "servegen.yaml), e.g. cpu or nvidia-gpu-l4.",
    )
    processors: int = Field(
        default=1, ge=1, le=64, description="Resource profile multiplier (the N in profile:N)."
    )
    cache_profile: CacheProfileName | None = Field(
        default=None,
        description="KubeAI cache profile (defined in the KubeAI installation). KubeAI names "
        f"its PVC {CACHE_PVC_PREFIX}<profile>, so a DNS-1123 subdomain of at most "
        f"{CACHE_PROFILE_MAX_LENGTH} characters.",
    )
    args: list[Line] = Field(default_factory=list, description="Extra engine arguments.")
    envs: Envs = Field(default_factory=dict)
    secrets: SecretNames = Field(default_factory=list)
    files: list[File] = Field(default_factory=list, description="Files mounted into the pods.")
    priority_class_name: DnsLabel | None = Field(default=None, description="PriorityClass.")
    scaling: Scaling = Field(default_factory=Scaling, description="Replicas and autoscaling.")


class KubeAITextDocument(SpecDocument[KubeAIModelSpec, KubeAIServe, KubeAIModelSpecOverride]):
    """A kubeai-text serve spec."""

    kind: Literal["kubeai-text"] = Field(description="kubeai-text: a KubeAI Model.")


def model_name(doc: KubeAITextDocument) -> str:
    return doc.spec.model_name or doc.name


class KubeAIText(Runtime[KubeAITextDocument]):
    kind: ClassVar[str] = "kubeai-text"
    document = KubeAITextDocument
    templates: ClassVar[tuple[str, ...]] = ("model.yaml.j2",)
    spec_overrides: ClassVar[tuple[str, ...]] = SPEC_OVERRIDES

    def spec_problems(self, doc: KubeAITextDocument, config: Config) -> Iterable[Problem]:
        spec, serve = doc.spec, doc.serve
        if len(model_name(doc)) > 40:
            where: tuple[str, ...] = ("spec", "model_name") if doc.spec.model_name else ("name",)
            yield Problem(where, "KubeAI Model names are at most 40 characters")
        if spec.adapters and spec.engine != "VLLM":
            yield Problem(("spec", "adapters"), "adapters are only supported with engine VLLM")
        for feature in spec.features:
            if feature not in ENGINE_FEATURES[spec.engine]:
                index = spec.features.index(feature)
                yield Problem(
                    ("spec", "features", index),
                    f"engine {spec.engine} cannot serve {feature} (it serves "
                    f"{', '.join(sorted(ENGINE_FEATURES[spec.engine]))})",
                )
        pooled = sorted({"TextEmbedding", "Reranking"} & set(spec.features))
        if spec.engine == "VLLM" and "TextGeneration" in spec.features and pooled:
            # vllm v0.10.0 config.py _get_supported_tasks: one runner per server, generate
            # or pooling; KubeAI (engine_vllm.go) starts one server per Model.
            yield Problem(
                ("spec", "features"),
                f"one vLLM server either generates text or pools ({', '.join(pooled)}), "
                "never both: serve them as two Models",
            )
        if spec.url.startswith("ollama://") and spec.engine != "OLlama":
            yield Problem(("spec", "url"), "ollama:// URLs need engine OLlama")
        if spec.engine == "OLlama" and not spec.url.startswith(("ollama://", "pvc://")):
            yield Problem(("spec", "url"), "engine OLlama loads ollama:// or pvc:// URLs")
        if spec.url.startswith(("gs://", "oss://")) and serve.cache_profile is None:
            yield Problem(("spec", "url"), "gs:// and oss:// URLs need serve.cache_profile")
        if claim_problem := pvc_claim_problem(spec.url):
            yield Problem(("spec", "url"), claim_problem)
        yield from _engine_source_problems(spec, serve)
        yield from _namespace_problems(doc, config)
        if serve.cache_profile is not None and not spec.url.startswith(CACHEABLE_SCHEMES):
            yield Problem(
                ("serve", "cache_profile"),
                "cache_profile is only supported with hf://, s3://, gs:// or oss:// URLs",
            )
        yield from _scaling_problems(serve.scaling)
        yield from _file_problems(serve.files)
        yield from _owned_problems(spec, serve)
        names = [adapter.name for adapter in spec.adapters]
        for index, name in enumerate(names):
            if name == model_name(doc):
                # kubeai v0.22.1 engine_vllm.go serves the model as --served-model-name
                # <Model name> and adapters.go loads each adapter under its own name;
                # vLLM looks a request's model up among the adapters first.
                yield Problem(
                    ("spec", "adapters", index, "name"),
                    f"adapter {name!r} has the model's name: every request for the model "
                    "would go to the adapter",
                )
            elif name in names[:index]:
                # kubeai v0.22.1 internal/modelcontroller/adapters.go labels the pod
                # adapter.kubeai.org/<name> with the hash of one URL per name: two
                # adapters of one name reload each other on every reconcile.
                yield Problem(
                    ("spec", "adapters", index, "name"), f"duplicate adapter name {name!r}"
                )

    def context(self, doc: KubeAITextDocument, config: Config) -> dict[str, Any]:
        spec, serve = doc.spec, doc.serve
        scaling = serve.scaling
        env = dict(OLLAMA_ENV) if spec.engine == "OLlama" else {}
        env.update(serve.envs)
        if serve.files:
            env[FILES_DIGEST_ENV] = files_digest(serve.files)
        url, revision_args = _revision(spec.url)
        model: dict[str, Any] = {
            "url": url,
            "engine": spec.engine,
            "features": list(spec.features),
            "resourceProfile": f"{serve.resource_profile}:{serve.processors}",
            "minReplicas": scaling.min_replicas,
        }
        optional: dict[str, Any] = {
            "adapters": [a.model_dump() for a in spec.adapters] or None,
            "image": spec.image,
            "args": [*revision_args, *serve.args] or None,
            "env": dict(sorted(env.items())) or None,
            "envFrom": [{"secretRef": {"name": s}} for s in serve.secrets] or None,
            "files": [f.model_dump() for f in serve.files] or None,
            "cacheProfile": serve.cache_profile,
            "maxReplicas": scaling.max_replicas,
            "targetRequests": scaling.target_requests,
            "scaleDownDelaySeconds": scaling.scale_down_delay_seconds,
            "priorityClassName": serve.priority_class_name,
            "loadBalancing": _load_balancing(scaling.load_balancing),
        }
        if scaling.autoscaling_disabled:
            # The KubeAI autoscaler owns spec.replicas; only a pinned model sets it.
            # kubeai v0.22.1 internal/modelcontroller/model_controller.go: with
            # autoscalingDisabled the replica bounds are not applied, so minReplicas
            # means nothing to KubeAI; it follows the pinned count so that a model pinned
            # at 0 is not health-checked as if one replica had to become ready.
            pinned = pinned_replicas(scaling)
            optional["autoscalingDisabled"] = True
            optional["replicas"] = pinned
            model["minReplicas"] = pinned
        model.update({key: value for key, value in optional.items() if value is not None})
        return {"name": model_name(doc), "labels": dict(doc.labels), "spec": model}

    def expected(self, doc: KubeAITextDocument, config: Config) -> list[ObjectRef]:
        return [ObjectRef("kubeai.org/v1", "Model", model_name(doc))]

    def namespace_in(self, doc: KubeAITextDocument, config: Config, environment: str) -> str:
        # kubeai v0.22.1 internal/manager/run.go: the manager caches and reconciles only
        # POD_NAMESPACE (its own); a Model anywhere else is never served.
        return config.kubeai_for(environment).namespace

    def endpoint_in(
        self, doc: KubeAITextDocument, config: Config, environment: str, namespace: str
    ) -> Endpoint:
        return self._endpoint(doc, config.kubeai_for(environment).url, namespace)

    def endpoint(self, doc: KubeAITextDocument, config: Config, namespace: str) -> Endpoint:
        return self._endpoint(doc, config.kubeai.url, namespace)

    def _endpoint(self, doc: KubeAITextDocument, base_url: str, namespace: str) -> Endpoint:
        name = model_name(doc)
        features = list(doc.spec.features)
        paths = [path for f in features for path in FEATURE_PATHS[f]]
        return Endpoint(
            name=doc.name,
            runtime=self.kind,
            namespace=namespace,
            base_url=base_url,
            model=name,
            adapters=tuple(f"{name}_{a.name}" for a in doc.spec.adapters),
            features=tuple(features),
            paths=(*paths, models_path(features)),
        )

    def shared_object_hint(self, obj: Mapping[str, Any], namespace: str) -> str | None:
        if obj.get("kind") != "Model":
            return None
        # kubeai v0.22.1 internal/manager/run.go: one KubeAI reconciles the Models of its
        # own namespace only, so environments sharing it share one Model namespace.
        return (
            f"KubeAI reads Models only from its own namespace ({namespace}), so environments "
            "sharing one KubeAI cannot both serve a model of this name: give each its own "
            "KubeAI (environments.<env>.kubeai.namespace), declare separate clusters "
            "(environments.<env>.cluster), or disable the model in one environment"
        )

    def facts(self, doc: KubeAITextDocument, config: Config) -> Facts:
        return Facts(images=(doc.spec.image,) if doc.spec.image else ())


def models_path(features: Sequence[str]) -> str:
    """The model-list route that shows a model with these features."""
    # kubeai v0.22.1 internal/openaiserver/models.go: /v1/models lists TextGeneration
    # models only, unless ?feature=... names other features.
    if "TextGeneration" in features:
        return "/models"
    return "/models?" + "&".join(f"feature={f}" for f in features)


def pinned_replicas(scaling: Scaling) -> int:
    return scaling.replicas if scaling.replicas is not None else scaling.min_replicas


def _revision(url: str) -> tuple[str, list[str]]:
    """`hf://org/model@rev` as KubeAI can load it: the plain repo plus vLLM's --revision."""
    match = _HF_REVISION.fullmatch(url)
    if match is None:
        return url, []
    return f"hf://{match.group(1)}", [f"--revision={match.group(2)}"]


def _file_problems(files: Sequence[File]) -> Iterable[Problem]:
    if len(files) > 10:
        yield Problem(("serve", "files"), "at most 10 files are allowed")
    stored: dict[str, str] = {}  # ConfigMap key -> the path stored under it
    for index, file in enumerate(files):
        key = file.path.replace("/", "_")  # kubeai v0.22.1 files.go fileConfigMapKey
        if key not in stored:
            stored[key] = file.path
            continue
        other = stored[key]
        where = ("serve", "files", index, "path")
        if other == file.path:
            yield Problem(where, f"duplicate file path {file.path!r}")
        else:
            yield Problem(
                where,
                f"{file.path!r} and {other!r} would share one file: KubeAI keeps both in its "
                f"ConfigMap under the key {key!r} ('/' written as '_')",
            )
    size = sum(len(file.content.encode()) for file in files)
    if size > CONFIGMAP_MAX_BYTES:
        yield Problem(
            ("serve", "files"),
            f"the files hold {size:,} bytes: KubeAI keeps them in one ConfigMap, which "
            f"holds at most {CONFIGMAP_MAX_BYTES:,}",
        )


def _owned_problems(spec: KubeAIModelSpec, serve: KubeAIServe) -> Iterable[Problem]:
    engine = spec.engine
    flags = ENGINE_FLAGS.get(engine, {})
    for index, arg in enumerate(serve.args):
        flag = vllm_claimed_flag(arg, flags) if engine == "VLLM" else long_flag(arg)
        if flag in flags:
            yield Problem(("serve", "args", index), f"{flag} is KubeAI's to set: {flags[flag]}")
        elif engine == "VLLM":
            yield from vllm_unreachable_problems(index, arg)
    if engine == "VLLM":
        # Without spec.image the cluster's KubeAI configuration picks the image (its
        # release unknown here): only a flag no checked release takes is said, as a warning.
        # kubeai v0.22.1 engine_vllm.go runs `python3 -m vllm.entrypoints.openai.api_server`
        # with --model, whatever the image's entrypoint.
        version = image_version(spec.image) if spec.image else None
        kubeais = partial(vllm_claimed_flag, flags=flags)  # (said above)
        found = flag_problems(serve.args, version, kubeais, api_server=True)
        for index, message, error in found:
            yield Problem(("serve", "args", index), message, "error" if error else "warning")
    envs = ENGINE_ENVS[engine]
    if engine == "OLlama" and spec.url.startswith("pvc://"):
        envs = {**envs, **OLLAMA_PVC_ENVS}
    if FILES_DIGEST_ENV in serve.envs:
        yield Problem(
            ("serve", "envs", FILES_DIGEST_ENV),
            f"{FILES_DIGEST_ENV} is servegen's to set: it rolls the pods when serve.files change",
        )
    for name in serve.envs:
        if name in envs:
            yield Problem(("serve", "envs", name), f"{name} is KubeAI's to set: {envs[name]}")


def _query_problems(url: str) -> Iterable[Problem]:
    base, mark, query = url.partition("?")
    if not mark:
        return
    scheme = base[: base.index("://") + 3]
    keys = QUERY_KEYS.get(scheme)
    if keys is None:
        yield Problem(
            ("spec", "url"),
            f"KubeAI reads no query on {scheme} URLs: the model loader and the engine would "
            f"take '?{query}' as part of the name; remove it",
        )
        return
    for part in query.split("&"):
        key = part.partition("=")[0]
        if key not in keys:
            known = " and ".join(f"?{k}=" for k in keys)
            yield Problem(
                ("spec", "url"),
                f"KubeAI reads only {known} on {scheme} URLs, not {key!r}",
            )
            return


def _revision_problems(spec: KubeAIModelSpec, serve: KubeAIServe) -> Iterable[Problem]:
    # kubeai v0.22.1 internal/modelcontroller/engine_vllm.go passes the repo as
    # --model=<ref> and components/model-loader/load.sh downloads <ref> as given: neither
    # knows `@revision`. Only vLLM downloading by itself (no cache profile) can take
    # the revision, as its own --revision flag. (Object keys and paths of the other
    # schemes may hold '@': model_source.go's URL pattern takes anything but '?'.)
    if (
        spec.url.startswith("hf://")
        and "@" in spec.url
        and _HF_REVISION.fullmatch(spec.url) is None
    ):
        yield Problem(
            ("spec", "url"),
            "a Hugging Face repository id has no '@': only hf://org/model@rev is accepted, "
            "which servegen turns into vLLM's --revision",
        )
        return
    if _HF_REVISION.fullmatch(spec.url) is None:
        return
    if spec.engine != "VLLM" or serve.cache_profile is not None:
        why = (
            f"engine {spec.engine} downloads the repository as named"
            if spec.engine != "VLLM"
            else "with a cache_profile the KubeAI model loader downloads the default branch"
        )
        yield Problem(
            ("spec", "url"),
            f"KubeAI has no revision syntax for hf:// URLs ({why}, so @revision names a "
            "repository that does not exist); drop @revision: only engine VLLM without a "
            "cache_profile can pin one (servegen passes it to vLLM as --revision)",
        )
    elif "--revision" in map(long_flag, serve.args):
        yield Problem(
            ("spec", "url"),
            "the revision is given twice: in spec.url (@revision) and as --revision in serve.args",
        )


def _hf_id_problems(spec: KubeAIModelSpec) -> Iterable[Problem]:
    # kubeai v0.22.1 internal/modelcontroller/model_source.go keeps all of hf://<ref> as
    # the reference; engine_vllm.go (--model), engine_infinity.go, engine_fasterwhisper.go
    # and components/model-loader/load.sh (adapters, cache profiles) hand it to the Hub
    # as a repository id, which refuses hf://org/model:rev or hf://org/model/sub.
    urls: list[tuple[tuple[str | int, ...], str]] = [(("spec", "url"), spec.url)]
    urls += [(("spec", "adapters", i, "url"), a.url) for i, a in enumerate(spec.adapters)]
    for path, url in urls:
        problem = hf_repo_problem(url) if url.startswith("hf://") else None
        if problem:
            yield Problem(path, f"{problem}: KubeAI hands it to Hugging Face as written")


def _engine_source_problems(spec: KubeAIModelSpec, serve: KubeAIServe) -> Iterable[Problem]:
    yield from _hf_id_problems(spec)
    yield from _revision_problems(spec, serve)
    yield from _query_problems(spec.url)
    if spec.url.startswith("pvc://") and spec.engine in ("Infinity", "FasterWhisper"):
        # kubeai v0.22.1 internal/modelcontroller/model_source.go mounts the claim at
        # /model, but only engine_vllm.go points its server there: engine_infinity.go
        # (INFINITY_MODEL_ID) and engine_fasterwhisper.go (WHISPER__MODEL) pass
        # <claim>/<path> on as a Hugging Face model id.
        yield Problem(
            ("spec", "url"),
            f"engine {spec.engine} cannot load pvc:// URLs: KubeAI mounts the claim at /model "
            f"but tells {spec.engine} to fetch <claim>/<path> from Hugging Face; use hf://, or "
            "s3:// with a cache profile",
        )
    for index, adapter in enumerate(spec.adapters):
        if adapter.url.startswith("hf://") and "@" in adapter.url:
            # kubeai v0.22.1 internal/modelcontroller/adapters.go runs the loader's `load <url>`.
            yield Problem(
                ("spec", "adapters", index, "url"),
                "KubeAI adapter URLs have no revision syntax (@revision)",
            )
    no_cache = serve.cache_profile is None
    if spec.url.startswith("s3://") and spec.engine in ("Infinity", "FasterWhisper") and no_cache:
        # kubeai v0.22.1 internal/modelcontroller/engine_infinity.go and
        # engine_fasterwhisper.go pass s3's bucket/path on as a Hugging Face model id;
        # only VLLM streams s3:// itself (engine_vllm.go, runai_streamer).
        yield Problem(
            ("spec", "url"),
            f"engine {spec.engine} loads s3:// URLs only through a cache profile (without one "
            "it would look bucket/path up on Hugging Face); set serve.cache_profile",
        )
    if spec.engine != "OLlama":
        return
    if spec.url.startswith("pvc://") and "model=" not in spec.url.partition("?")[2]:
        # kubeai v0.22.1 internal/modelcontroller/engine_ollama.go: the startup probe
        # runs `ollama cp <?model=> <name>`; without ?model= it copies "" and never starts.
        yield Problem(
            ("spec", "url"),
            "engine OLlama needs the model's Ollama name with pvc:// URLs: "
            "pvc://<claim>?model=<name>, e.g. pvc://models?model=qwen2:0.5b",
        )
    if serve.args:
        # kubeai v0.22.1 internal/modelcontroller/engine_ollama.go: args replace the
        # image's `serve` command, so the Ollama server never starts.
        yield Problem(
            ("serve", "args"),
            "engine OLlama takes no args: they replace the image's `ollama serve` command; "
            "configure Ollama with serve.envs (OLLAMA_*) instead",
        )


def _namespace_problems(doc: KubeAITextDocument, config: Config) -> Iterable[Problem]:
    if doc.namespace is None:
        return
    for env in config.environments:
        kubeai = config.kubeai_for(env).namespace
        if doc.namespace != kubeai:
            # kubeai v0.22.1 internal/manager/run.go: Models outside KubeAI's own
            # namespace are never reconciled.
            yield Problem(
                ("namespace",),
                f"KubeAI Models must live where KubeAI runs: namespace {kubeai!r} in "
                f"environment {env}; remove `namespace` (it is set from kubeai.namespace)",
            )
            return


def _scaling_problems(scaling: Scaling) -> Iterable[Problem]:
    if scaling.max_replicas is not None and scaling.min_replicas > scaling.max_replicas:
        yield Problem(
            ("serve", "scaling", "min_replicas"),
            f"min_replicas ({scaling.min_replicas}) must be <= max_replicas "
            f"({scaling.max_replicas})",
        )
    pinned = pinned_replicas(scaling)
    limit = scaling.max_replicas
    if scaling.autoscaling_disabled and limit is not None and pinned > limit:
        yield Problem(
            ("serve", "scaling", "replicas"),
            f"replicas ({pinned}) must be <= max_replicas ({limit})",
        )
    if scaling.autoscaling_disabled and pinned == 0:
        # kubeai v0.22.1 internal/modelclient/scale.go ScaleAtLeastOneReplica returns
        # at once while autoscaling is disabled: no request starts a replica.
        yield Problem(
            ("serve", "scaling", "autoscaling_disabled"),
            "pinned at 0 replicas: KubeAI starts none, so requests to this model wait until "
            "they time out (it stays in the endpoint catalog)",
            severity="warning",
        )
    if scaling.replicas is not None and not scaling.autoscaling_disabled:
        yield Problem(
            ("serve", "scaling", "replicas"),
            "replicas is managed by the KubeAI autoscaler; set autoscaling_disabled: true "
            "to pin it, or use min_replicas/max_replicas",
        )
    balancing = scaling.load_balancing
    if balancing and balancing.prefix_hash and balancing.strategy != "PrefixHash":
        yield Problem(
            ("serve", "scaling", "load_balancing", "prefix_hash"),
            "prefix_hash only applies with strategy PrefixHash",
        )


def _load_balancing(balancing: LoadBalancing | None) -> dict[str, Any] | None:
    if balancing is None:
        return None
    out: dict[str, Any] = {"strategy": balancing.strategy}
    if balancing.prefix_hash is not None:
        # camelCase, as the CRD defines it: snake_case keys would be pruned silently.
        prefix = {
            "meanLoadFactor": balancing.prefix_hash.mean_load_factor,
            "replication": balancing.prefix_hash.replication,
            "prefixCharLength": balancing.prefix_hash.prefix_char_length,
        }
        out["prefixHash"] = {k: v for k, v in prefix.items() if v is not None}
    return out
