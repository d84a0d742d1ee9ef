"""vllmserve-text/-speech/-pooling: real rendering, checked against Kubernetes schemas."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

import runtimes
from generator.config import Config
from generator.fields import single_line
from generator.spec import deep_merge
from generator.validate import validate_repository
from runtimes.base import Problem, Runtime
from runtimes.vllm_engine import (
    SUPPORTED_BELOW,
    SUPPORTED_FROM,
    image_version,
    release_flags,
    serve_entrypoint,
)
from runtimes.vllmserve import (
    VLLMServePooling,
    VLLMServeSpeech,
    VLLMServeText,
    cpu_memory,
    owned_flag,
    pooling_args,
    quantity_bytes,
)

RUNTIMES: dict[str, Runtime[Any]] = {
    r.kind: r for r in (VLLMServeText(), VLLMServeSpeech(), VLLMServePooling())
}
HOSTILE = [
    "line one\nline two",
    "---",
    "--- \napiVersion: v1\nkind: Secret\nmetadata:\n  name: evil",
    "{{ name }}",
    "{% if true %}x{% endif %}",
    "'\"quoted\"'",
    "&a *a",
    "*a",
    "key: value",
    "- item",
    "# comment",
    "tab\there",
    "\u2028sep\x85nel\x7f",
]


def doc(kind: str = "vllmserve-text", **fields: Any) -> Any:
    data: dict[str, Any] = {"kind": kind, "name": "m", "spec": {"url": "hf://org/model"}}
    data.update(fields)
    if kind == "vllmserve-pooling":  # required (the catalog follows it): embed unless given
        data["serve"] = {"task": "embed", **data.get("serve", {})}
    return RUNTIMES[kind].document.model_validate(data)


def config(**fields: Any) -> Config:
    return Config.model_validate(fields)


def render(d: Any, cfg: Config | None = None) -> dict[str, dict[str, Any]]:
    """Render, validate every object strictly, and index the objects by Kind/name."""
    cfg = cfg or Config()
    runtime = RUNTIMES[d.kind]
    assert list(runtime.spec_problems(d, cfg)) == []
    objects = runtime.render(d, cfg)
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, "1.33", strict=True)
        except kubernetes_validate.ValidationError as exc:  # keep the failure readable
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {str(exc).splitlines()[0]}")
        assert "namespace" not in obj["metadata"]
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def container(objects: dict[str, dict[str, Any]], name: str = "m") -> dict[str, Any]:
    c: dict[str, Any] = objects[f"Deployment/{name}"]["spec"]["template"]["spec"]["containers"][0]
    return c


def pod(objects: dict[str, dict[str, Any]], name: str = "m") -> dict[str, Any]:
    p: dict[str, Any] = objects[f"Deployment/{name}"]["spec"]["template"]["spec"]
    return p


def env(objects: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"]}


def after_port(args: list[str]) -> list[str]:
    """The generated flags after the fixed head (model, name, host, port)."""
    return args[args.index("--port") + 2 :]


def problems(d: Any, cfg: Config | None = None) -> list[Problem]:
    return list(RUNTIMES[d.kind].spec_problems(d, cfg or Config()))


# --- the default objects ---------------------------------------------------------------


def test_defaults_render_deployment_and_service() -> None:
    objects = render(doc(labels={"team": "nlp"}))
    assert sorted(objects) == ["Deployment/m", "Service/m"]
    deployment = objects["Deployment/m"]
    labels = {"team": "nlp", "app.kubernetes.io/name": "m", "app.kubernetes.io/component": "vllm"}
    assert deployment["metadata"]["labels"] == labels
    selector = {"app.kubernetes.io/name": "m", "servegen.io/spec": "m"}
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    assert deployment["spec"]["template"]["metadata"]["labels"] == {**labels, **selector}
    assert deployment["spec"]["replicas"] == 1
    c = container(objects)
    assert c["name"] == "vllm"
    assert c["image"] == "vllm/vllm-openai:v0.10.2"
    assert "command" not in c
    assert c["args"] == [
        "--model", "org/model", "--served-model-name", "m", "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 1800
    # A replica still within its startup budget must not fail the rollout (and so Flux's
    # health check): the deployment controller's deadline outlasts the probe's.
    assert objects["Deployment/m"]["spec"]["progressDeadlineSeconds"] > 1800
    assert c["livenessProbe"]["periodSeconds"] == 30
    assert c["readinessProbe"]["periodSeconds"] == 10
    # uid 1000 has no passwd entry in the image: torch asks getpass.getuser(), which
    # reads USER first and raises without it.
    assert env(objects) == {
        "HOME": "/models-cache",
        "HF_HOME": "/models-cache/huggingface",
        "USER": "vllm",
    }
    assert "envFrom" not in c and "resources" not in c
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    p = pod(objects)
    assert p["securityContext"]["runAsNonRoot"] is True
    assert p["securityContext"]["runAsUser"] == 1000
    assert p["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert p["enableServiceLinks"] is False
    assert {"nodeSelector", "tolerations", "runtimeClassName"}.isdisjoint(p)
    assert p["volumes"] == [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
        {"name": "model-cache", "emptyDir": {}},
    ]
    assert c["volumeMounts"] == [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": "/models-cache"},
    ]
    service = objects["Service/m"]
    assert service["metadata"]["labels"] == labels
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}],
    }


def test_model_name_and_image_overrides() -> None:
    d = doc(spec={"url": "hf://org/model", "model_name": "chat", "image": "my/vllm:v0.11.0"})
    c = container(render(d))
    assert c["image"] == "my/vllm:v0.11.0"
    assert c["args"][2:4] == ["--served-model-name", "chat"]
    assert "command" not in c


def test_unpinned_image_is_refused() -> None:
    with pytest.raises(ValidationError):
        doc(spec={"url": "hf://org/model", "image": "my/vllm:latest"})


# --- model sources ---------------------------------------------------------------------


def test_hf_revision_becomes_flag() -> None:
    c = container(render(doc(spec={"url": "hf://Qwen/Qwen3-0.6B@a1b2c3"})))
    assert c["args"][:2] == ["--model", "Qwen/Qwen3-0.6B"]
    assert c["args"][8:] == ["--revision", "a1b2c3"]


def test_s3_streams_with_runai() -> None:
    d = doc(spec={"url": "s3://models/llama/3.1-8b"}, serve={"secrets": ["s3-creds"]})
    c = container(render(d))
    assert c["args"][:2] == ["--model", "s3://models/llama/3.1-8b"]
    assert c["args"][8:] == ["--load-format", "runai_streamer"]
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


@pytest.mark.parametrize(
    ("url", "model"),
    [("pvc://models/qwen/3b", "/models/qwen/3b"), ("pvc://models", "/models")],
)
def test_pvc_is_mounted_read_only(url: str, model: str) -> None:
    objects = render(doc(spec={"url": url}))
    c = container(objects)
    assert c["args"][:2] == ["--model", model]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod(objects)["volumes"]


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/model",
        "hf://org/model\nx",
        "s3://UPPER/x",
        "gs://bucket/x",
        "hf://org/model@",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError):
        doc(spec={"url": url})


@pytest.mark.parametrize("url", ["pvc://models/../etc", "pvc://models/./x"])
def test_pvc_dot_segments_are_refused(url: str) -> None:
    # The sub-path becomes the volume's subPath, which the API server refuses with '..'.
    assert [(p.path, p.message) for p in problems(doc(spec={"url": url}))] == [
        (
            ("spec", "url"),
            "pvc:// sub-paths may not contain '.' or '..' segments: the pod could not mount it",
        )
    ]


# --- adapters --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["vllmserve-text", "vllmserve-pooling"])
def test_adapters_enable_lora(kind: str) -> None:
    adapters = [{"name": "sql", "url": "hf://org/sql-lora"}, {"name": "fr", "url": "hf://o/fr"}]
    d = doc(kind, spec={"url": "hf://org/model", "adapters": adapters})
    args = container(render(d))["args"]
    assert args[args.index("--enable-lora") :] == [
        "--enable-lora", "--max-loras", "2", "--lora-modules", "sql=org/sql-lora", "fr=o/fr",
    ]  # fmt: skip
    assert RUNTIMES[kind].endpoint(d, Config(), "ns").adapters == ("sql", "fr")


def test_speech_refuses_adapters() -> None:
    d = doc("vllmserve-speech", spec={"url": "hf://openai/whisper", "adapters": [
        {"name": "x", "url": "hf://org/x"}]})  # fmt: skip
    assert [p.path for p in problems(d)] == [("spec", "adapters")]


def test_duplicate_adapter_names() -> None:
    adapters = [{"name": "a", "url": "hf://o/a"}, {"name": "a", "url": "hf://o/b"}]
    d = doc(spec={"url": "hf://org/model", "adapters": adapters})
    assert [p.path for p in problems(d)] == [("spec", "adapters", 1, "name")]


def test_adapter_revisions_are_refused() -> None:
    with pytest.raises(ValidationError):
        doc(spec={"url": "hf://org/model", "adapters": [{"name": "a", "url": "hf://o/a@v1"}]})


# --- telemetry -------------------------------------------------------------------------


OTEL_IMAGE = "vllm/vllm-openai:v0.17.0"


def test_telemetry_adds_endpoint_and_service_name() -> None:
    cfg = config(telemetry={"otlp_endpoint": "grpc://otel-collector:4317"})
    spec = {"url": "hf://org/model", "image": OTEL_IMAGE}
    serve = {"enable_telemetry": True, "args": ["--max-model-len", "4096"]}
    objects = render(doc(spec=spec, serve=serve), cfg)
    assert container(objects)["args"][7:] == [
        "--otlp-traces-endpoint", "http://otel-collector:4317", "--max-model-len", "4096",
    ]  # fmt: skip
    assert env(objects)["OTEL_SERVICE_NAME"] == "m"
    assert env(objects)["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "grpc"


@pytest.mark.parametrize(
    ("url", "endpoint", "protocol"),
    [
        # grpc:// is plaintext gRPC: the gRPC exporter is plaintext only for http://.
        ("grpc://otel:4317", "http://otel:4317", "grpc"),
        ("http://otel:4317", "http://otel:4317", "grpc"),
        ("https://otel.example.com:4317", "https://otel.example.com:4317", "grpc"),
        # OTLP/HTTP posts to the URL as given: the traces path is added when missing.
        ("http://otel:4318", "http://otel:4318/v1/traces", "http/protobuf"),
        ("https://otel.example.com:4318/", "https://otel.example.com:4318/v1/traces",
         "http/protobuf"),
        ("https://otel.example.com/v1/traces", "https://otel.example.com/v1/traces",
         "http/protobuf"),
    ],
)  # fmt: skip
def test_otlp_scheme_selects_the_exporter(url: str, endpoint: str, protocol: str) -> None:
    spec = {"url": "hf://org/model", "image": OTEL_IMAGE}
    objects = render(doc(spec=spec, serve={"enable_telemetry": True}), config(
        telemetry={"otlp_endpoint": url}))  # fmt: skip
    args = container(objects)["args"]
    assert args[args.index("--otlp-traces-endpoint") + 1] == endpoint
    assert env(objects)["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == protocol


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.10.2", "vllm/vllm-openai:v0.16.1"])
def test_telemetry_is_refused_on_images_without_opentelemetry(image: str) -> None:
    cfg = config(telemetry={"otlp_endpoint": "http://otel:4317"})
    found = problems(doc(spec={"url": "hf://o/m", "image": image},
                         serve={"enable_telemetry": True}), cfg)  # fmt: skip
    assert [p.path for p in found] == [("serve", "enable_telemetry")]
    assert "OpenTelemetry is not available" in found[0].message
    assert "0.17.0 or later" in found[0].message


def test_telemetry_without_endpoint_is_a_problem() -> None:
    found = problems(doc(serve={"enable_telemetry": True}))
    assert [p.path for p in found] == [("serve", "enable_telemetry")]
    assert "telemetry.otlp_endpoint" in found[0].message


def test_no_telemetry_when_disabled() -> None:
    cfg = config(telemetry={"otlp_endpoint": "http://otel:4318"})
    objects = render(doc(), cfg)
    assert "--otlp-traces-endpoint" not in container(objects)["args"]
    assert "OTEL_SERVICE_NAME" not in env(objects)


# --- pooling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "task", "flags"),
    [
        ("vllm/vllm-openai:v0.10.0", "embed", ["--task", "embed"]),
        ("vllm/vllm-openai:v0.10.0", "score", ["--task", "score"]),
        ("vllm/vllm-openai:v0.10.2", "embed", ["--runner", "pooling", "--convert", "embed"]),
        ("vllm/vllm-openai:v0.10.1.1", "score", ["--runner", "pooling", "--convert", "classify"]),
        ("vllm/vllm-openai:v0.11.0", "reward", ["--runner", "pooling", "--convert", "reward"]),
        ("vllm/vllm-openai:v0.16.0", "reward", ["--runner", "pooling"]),
        (
            f"my/vllm@sha256:{'a' * 64}",
            "classify",
            ["--runner", "pooling", "--convert", "classify"],
        ),
    ],
)
def test_pooling_flags_follow_the_image_version(
    image: str, task: str | None, flags: list[str]
) -> None:
    serve = {"task": task} if task else {}
    d = doc("vllmserve-pooling", spec={"url": "hf://BAAI/bge-m3", "image": image}, serve=serve)
    assert after_port(container(render(d))["args"]) == flags


def test_pooling_version_from_config_when_the_tag_has_none() -> None:
    cfg = config(vllm={"image": "registry.local/vllm:gpu-build-7", "version": "0.10.0"})
    d = doc("vllmserve-pooling", serve={"task": "embed"})
    assert container(render(d, cfg))["args"][8:] == ["--task", "embed"]
    # A tag that names a version wins over the config's fallback.
    cfg = config(vllm={"image": "vllm/vllm-openai:v0.10.2", "version": "0.10.0"})
    assert container(render(d, cfg))["args"][8:10] == ["--runner", "pooling"]


def test_pooling_flag_helpers() -> None:
    assert image_version("registry:5000/vllm/vllm-openai:v0.11.0-cu128") == (0, 11, 0)
    assert image_version("vllm/vllm-openai:0.10") == (0, 10, 0)
    assert image_version(f"vllm/vllm-openai@sha256:{'b' * 64}") is None
    assert image_version("vllm/vllm-openai:nightly") is None
    assert pooling_args("reward", None) == ["--runner", "pooling"]
    assert pooling_args("embed", (0, 10, 0)) == ["--task", "embed"]


def test_task_only_exists_for_pooling() -> None:
    for kind in ("vllmserve-text", "vllmserve-speech"):
        with pytest.raises(ValidationError):
            doc(kind, serve={"task": "embed"})


@pytest.mark.parametrize(
    ("task", "features", "paths"),
    [
        (None, ["TextEmbedding"], ["/embeddings", "/models"]),
        ("embed", ["TextEmbedding"], ["/embeddings", "/models"]),
        ("score", ["Reranking"], ["/score", "/rerank", "/models"]),
        ("classify", ["Classification"], ["/models"]),
        ("reward", ["Reward"], ["/models"]),
    ],
)
def test_pooling_endpoint(task: str | None, features: list[str], paths: list[str]) -> None:
    d = doc("vllmserve-pooling", serve={"task": task} if task else {})
    entry = RUNTIMES[d.kind].endpoint(d, Config(), "ai").to_json()
    assert entry["features"] == features
    base = "http://m.ai.svc.cluster.local:8000/v1"
    assert entry["base_url"] == base
    assert entry["endpoints"] == [base + path for path in paths]


def test_text_and_speech_endpoints() -> None:
    text = doc(spec={"url": "hf://org/model", "model_name": "chat"})
    entry = RUNTIMES[text.kind].endpoint(text, Config(), "ns").to_json()
    assert entry["model"] == "chat"
    assert entry["runtime"] == "vllmserve-text"
    assert entry["features"] == ["TextGeneration"]
    assert [e.rsplit("/v1", 1)[1] for e in entry["endpoints"]] == [
        "/chat/completions", "/completions", "/models",
    ]  # fmt: skip
    speech = doc("vllmserve-speech", spec={"url": "hf://openai/whisper-large-v3"})
    entry = RUNTIMES[speech.kind].endpoint(speech, Config(), "ns").to_json()
    assert entry["features"] == ["SpeechToText"]
    assert [e.rsplit("/v1", 1)[1] for e in entry["endpoints"]] == [
        "/audio/transcriptions", "/audio/translations", "/models",
    ]  # fmt: skip
    assert container(render(speech))["args"][8:] == []


# --- CPU image -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mem", "space"),
    # (limit - 2Gi /dev/shm - 1Gi runtime) / 2: the other half is for the weights.
    [(None, "6"), ("10Gi", "3"), ("5Gi", "1"), ("16000M", "5"), ("64G", "28")],
)
def test_cpu_image_sets_kv_cache_space(mem: str | None, space: str) -> None:
    serve: dict[str, Any] = {"use_cpu_image": True}
    if mem:
        serve["resources"] = {"mem": mem}
    objects = render(doc(serve=serve))
    assert container(objects)["image"].startswith("public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:")
    assert env(objects)["VLLM_CPU_KVCACHE_SPACE"] == space


def test_cpu_image_refuses_gpus() -> None:
    d = doc(serve={"use_cpu_image": True, "resources": {"gpu": 1}})
    assert [p.path for p in problems(d)] == [("serve", "use_cpu_image")]


def test_user_envs_win_over_generated_ones() -> None:
    d = doc(serve={"use_cpu_image": True, "envs": {"VLLM_CPU_KVCACHE_SPACE": "3", "B": "2",
                                                    "A": "1", "HF_HOME": "/data/hf"}})  # fmt: skip
    names = [e["name"] for e in container(render(d))["env"]]
    assert names == ["HOME", "USER", "A", "B", "HF_HOME", "VLLM_CPU_KVCACHE_SPACE"]
    assert env(render(d))["VLLM_CPU_KVCACHE_SPACE"] == "3"


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        ("16Gi", 16 << 30),
        ("512Mi", 512 << 20),
        ("1Ti", 1 << 40),
        ("2Ki", 2048),
        ("1k", 1000),
        ("3M", 3_000_000),
        ("2G", 2_000_000_000),
        ("1T", 10**12),
        ("1e9", 10**9),
        ("1.5Gi", 3 << 29),
        ("1024", 1024),
        ("500m", Decimal("0.5")),
    ],
)
def test_quantity_bytes(quantity: str, value: int | Decimal) -> None:
    assert quantity_bytes(quantity) == value


@pytest.mark.parametrize("word", ["lots", "1K", "16GB"])  # no "K": Kubernetes has "k" only
def test_quantity_bytes_refuses_what_kubernetes_refuses(word: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        quantity_bytes(word)


# --- resources and profiles ------------------------------------------------------------


def test_resources_requests_and_limits() -> None:
    d = doc(serve={"resources": {"cpu": 4, "mem": "32Gi", "gpu": 2, "disk": "100Gi"}})
    objects = render(d)
    assert container(objects)["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"},
    }
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "100Gi"}} in pod(objects)["volumes"]
    assert RUNTIMES["vllmserve-text"].facts(d, Config()).gpus_per_replica == 2


def test_profile_merge() -> None:
    cfg = config(
        profiles={
            "l4": {
                "resources": {"cpu": "8", "mem": "32Gi", "gpu": 1, "disk": "50Gi"},
                "node_selector": {"gpu": "l4", "zone": "a"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "runtime_class_name": "nvidia",
            }
        }
    )
    d = doc(serve={"profile": "l4", "resources": {"mem": "48Gi"}, "node_selector": {"zone": "b"}})
    objects = render(d, cfg)
    assert container(objects)["resources"] == {
        "requests": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "48Gi", "nvidia.com/gpu": "1"},
    }
    p = pod(objects)
    assert p["nodeSelector"] == {"gpu": "l4", "zone": "b"}
    assert p["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert p["runtimeClassName"] == "nvidia"
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "50Gi"}} in p["volumes"]
    own = [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]
    d = doc(serve={"profile": "l4", "tolerations": own})
    assert pod(render(d, cfg))["tolerations"] == own


def test_unknown_profile_lists_known_ones() -> None:
    cfg = config(profiles={"l4": {}, "a100": {}})
    found = problems(doc(serve={"profile": "h100"}), cfg)
    assert [p.path for p in found] == [("serve", "profile")]
    assert "a100, l4" in found[0].message
    assert "none are defined" in problems(doc(serve={"profile": "h100"}))[0].message


def test_facts_count_gpus_after_the_profile_merge() -> None:
    # policy.max_gpus_per_model is enforced centrally from these facts.
    cfg = config(profiles={"big": {"resources": {"gpu": 4}}})
    runtime = RUNTIMES["vllmserve-text"]
    assert runtime.facts(doc(serve={"profile": "big"}), cfg).gpus_per_replica == 4
    d = doc(serve={"profile": "big", "resources": {"gpu": 2}})
    assert runtime.facts(d, cfg).gpus_per_replica == 2
    assert runtime.facts(d, cfg).images == ("vllm/vllm-openai:v0.10.2",)


def test_facts_name_the_image() -> None:
    cfg = config(vllm={"cpu_image": "cpu/vllm:v0.10.2"})
    facts = RUNTIMES["vllmserve-text"].facts(doc(serve={"use_cpu_image": True}), cfg)
    assert facts.images == ("cpu/vllm:v0.10.2",)
    assert facts.gpus_per_replica == 0


# --- scaling ---------------------------------------------------------------------------


def test_cpu_hpa_omits_replicas_and_defaults_cpu_request() -> None:
    objects = render(doc(serve={"scaling": {"max_replicas": 3}}))
    assert sorted(objects) == ["Deployment/m", "HorizontalPodAutoscaler/m", "Service/m"]
    assert "replicas" not in objects["Deployment/m"]["spec"]
    hpa = objects["HorizontalPodAutoscaler/m"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "m"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 3)
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert container(objects)["resources"] == {"requests": {"cpu": "1"}}
    # Scaled down only once the need has been gone as long as a replica may take to load.
    startup = container(objects)["startupProbe"]
    loading = startup["periodSeconds"] * startup["failureThreshold"]
    assert hpa["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": loading}}


def test_cpu_hpa_keeps_an_explicit_cpu_request() -> None:
    d = doc(serve={"resources": {"cpu": "6"}, "scaling": {"max_replicas": 3, "target": 60}})
    objects = render(d)
    assert container(objects)["resources"] == {"requests": {"cpu": "6"}}
    metric = objects["HorizontalPodAutoscaler/m"]["spec"]["metrics"][0]
    assert metric["resource"]["target"]["averageUtilization"] == 60


def test_requests_waiting_hpa() -> None:
    scaling = {"min_replicas": 2, "max_replicas": 6, "metric": "requests_waiting"}
    objects = render(doc(serve={"scaling": scaling}))
    hpa = objects["HorizontalPodAutoscaler/m"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert hpa["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "vllm:num_requests_waiting"},
                "target": {"type": "AverageValue", "averageValue": "5"},
            },
        }
    ]
    assert "resources" not in container(objects)
    assert "PodDisruptionBudget/m" in objects


def test_no_hpa_when_min_equals_max() -> None:
    objects = render(doc(serve={"scaling": {"min_replicas": 3, "max_replicas": 3}}))
    assert sorted(objects) == ["Deployment/m", "PodDisruptionBudget/m", "Service/m"]
    assert objects["Deployment/m"]["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("serve", "pdb"),
    [
        ({}, False),
        ({"replicas": 2}, True),
        ({"replicas": 0}, False),
        ({"scaling": {"max_replicas": 4}}, False),
        ({"replicas": 2, "scaling": {"max_replicas": 4}}, True),
        ({"replicas": 5, "scaling": {"min_replicas": 1, "max_replicas": 4}}, False),
    ],
)
def test_pdb_when_more_than_one_replica_must_run(serve: dict[str, Any], pdb: bool) -> None:
    objects = render(doc(serve=serve))
    assert ("PodDisruptionBudget/m" in objects) is pdb
    if pdb:
        assert objects["PodDisruptionBudget/m"]["spec"] == {
            "maxUnavailable": 1,
            # A pod that runs but is not Ready never holds a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": {"app.kubernetes.io/name": "m", "servegen.io/spec": "m"}},
        }


def test_scaling_problems() -> None:
    bad = doc(serve={"scaling": {"min_replicas": 4, "max_replicas": 2}})
    assert [p.path for p in problems(bad)] == [("serve", "scaling", "min_replicas")]
    bad = doc(serve={"replicas": 3, "scaling": {"max_replicas": 2}})
    assert [p.path for p in problems(bad)] == [("serve", "scaling", "min_replicas")]
    lonely = doc(serve={"scaling": {"min_replicas": 2}})
    assert [p.path for p in problems(lonely)] == [("serve", "scaling", "min_replicas")]
    zero = doc(serve={"replicas": 0, "scaling": {"max_replicas": 2}})
    assert [p.path for p in problems(zero)] == [("serve", "replicas")]
    with pytest.raises(ValidationError):
        doc(serve={"scaling": {"min_replicas": 0, "max_replicas": 2}})


# --- services --------------------------------------------------------------------------


def test_alias_service_and_type() -> None:
    d = doc(serve={"service_name": "llm", "service_type": "NodePort"})
    objects = render(d)
    assert sorted(objects) == ["Deployment/m", "Service/llm", "Service/m"]
    assert objects["Service/llm"]["spec"] == objects["Service/m"]["spec"]
    assert objects["Service/llm"]["spec"]["type"] == "NodePort"


def test_alias_must_differ_from_the_name() -> None:
    assert [p.path for p in problems(doc(serve={"service_name": "m"}))] == [
        ("serve", "service_name")
    ]


# --- user args -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg",
    [
        "--model", "--model=x", "--served-model-name", "--served_model_name=x", "--host",
        "--port=9000", "--enable-lora", "--lora-modules=a=b", "--task", "--runner=pooling",
        "--convert", "--otlp-traces-endpoint=http://x",
    ],
)  # fmt: skip
def test_owned_args_are_refused(arg: str) -> None:
    value = [] if "=" in arg or arg == "--enable-lora" else ["x"]
    d = doc(serve={"args": ["--max-model-len", "4096", arg, *value]})
    found = problems(d)
    assert [p.path for p in found] == [("serve", "args", 2)]
    flag = owned_flag(arg)
    assert flag is not None and flag in found[0].message


@pytest.mark.parametrize("arg", ["--max-loras", "--model-impl=vllm", "--hosts", "model", "-p"])
def test_other_args_pass(arg: str) -> None:
    assert owned_flag(arg) is None


def args_problems(args: list[str], image: str = "vllm/vllm-openai:v0.34.0") -> list[Any]:
    found = problems(doc(spec={"url": "hf://org/model", "image": image}, serve={"args": args}))
    return [(p.path[-1], p.severity, p.message) for p in found]


@pytest.mark.parametrize(
    "args",
    [
        ["--max-model-len", "4096"], ["--max-model-len=4096"], ["--max_model_len=4096"],
        ["--max-model-l", "4096"], ["--no-enable-prefix-caching"],
        ["--compilation-config.mode=3"], ["--hf-overrides.rope_theta", "1e6"],
        ["--max-model-len", "4096", "--"], ["-tp", "1", "-O3"],
    ],
)  # fmt: skip
def test_flags_the_release_takes_pass(args: list[str]) -> None:
    assert args_problems(args) == []


def test_a_flag_the_release_lacks_is_an_error_naming_the_closest() -> None:
    assert args_problems(["--enable-prefix-caching", "--max-model-length=4096"]) == [
        (
            1,
            "error",
            "--max-model-length: vLLM 0.34.0 takes no such flag (did you mean "
            "--max-model-len?), so the server exits at start-up",
        )
    ]


def test_an_abbreviation_of_several_flags_is_an_error() -> None:
    [(index, severity, message)] = args_problems(["--max-num", "8"])
    assert (index, severity) == (0, "error")
    assert message.startswith("--max-num abbreviates several flags of vLLM 0.34.0 (--max-num-")
    assert message.endswith("its parser refuses it and the server exits at start-up; "
                            "write the flag out")  # fmt: skip


def test_a_flag_of_newer_releases_on_an_older_image_is_an_error() -> None:
    """--shuffle-safetensors-files came in vLLM 0.34.0 (vllm/engine/arg_utils.py)."""
    image = "vllm/vllm-openai:v0.33.0"
    assert args_problems(["--shuffle-safetensors-files"], image) == [
        (
            0,
            "error",
            "--shuffle-safetensors-files: vLLM 0.33.0 takes no such flag, so the server "
            "exits at start-up; vLLM 0.34.0 takes it",
        )
    ]
    assert args_problems(["--shuffle-safetensors-files"]) == []


def test_a_flag_and_its_value_in_one_item_is_an_error() -> None:
    [(_, severity, message)] = args_problems(["--max-model-len 4096"])
    assert severity == "error"
    assert message.endswith("a flag and its value are two items of args")


def test_on_an_unchecked_release_only_a_flag_no_checked_release_takes_warns() -> None:
    image = "vllm/vllm-openai:v0.20.0"
    assert args_problems(["--shuffle-safetensors-files", "--max-model-len=1"], image) == []
    assert args_problems(["--max-model-length=1"], image) == [
        (
            0,
            "warning",
            "--max-model-length: no vLLM release servegen checked (0.10.0 to 0.34.0) takes "
            "this flag (did you mean --max-model-len?); unless the image's release added "
            "it, the server exits at start-up",
        )
    ]


@pytest.mark.parametrize(
    ("arg", "image"),
    [
        ("--help", "vllm/vllm-openai:v0.34.0"),
        ("--hel", "vllm/vllm-openai:v0.34.0"),
        ("-h", "vllm/vllm-openai:v0.34.0"),
        ("--help=all", "vllm/vllm-openai:v0.10.0"),
        ("--help", "vllm/vllm-openai:v0.20.0"),  # a release servegen has no list of
    ],
)
def test_the_help_flag_is_an_error(arg: str, image: str) -> None:
    # argparse prints the usage and exits with status 0: the pod restarts it forever.
    assert args_problems(["--enforce-eager", arg], image) == [
        (1, "error", f"{arg} asks for the help: the server exits at start-up instead of serving")
    ]


def test_a_prefix_of_help_and_another_flag_is_an_abbreviation_of_several() -> None:
    """vLLM 0.34.0 takes --headless too: --he is ambiguous, not the help."""
    [(_, severity, message)] = args_problems(["--he"])
    assert severity == "error"
    assert message.startswith("--he abbreviates several flags of vLLM 0.34.0 (--headless, ")
    assert "--help" in message


def test_an_owned_flag_is_said_once() -> None:
    found = args_problems(["--por", "9000", "--serv", "x"])
    assert [(index, severity) for index, severity, _ in found] == [(0, "error"), (2, "error")]
    assert all("is set by servegen" in message for _, _, message in found)


def test_every_checked_release_lists_the_flags_servegen_renders() -> None:
    table = release_flags()
    assert SUPPORTED_FROM in table and max(table) < SUPPORTED_BELOW
    for version, release in table.items():
        rendered = {"--served-model-name", "--host", "--port", "--revision", "--enable-lora"}
        assert rendered <= release.flags, version
        assert serve_entrypoint(version) or "--model" in release.flags, version
        pooling = {"--runner", "--convert"} if version >= (0, 10, 1) else {"--task"}
        assert pooling <= release.flags, version
        assert release.switches | release.valued <= release.flags
        assert not release.switches & release.valued
        assert release.choices.keys() <= release.valued
        assert "--enable-lora" in release.switches and "--port" in release.valued


@pytest.mark.parametrize(
    ("args", "index", "message"),
    [
        (["--enable-prefix-caching=true"], 0,
         "--enable-prefix-caching takes no value in vLLM 0.34.0: its parser refuses "
         "--enable-prefix-caching= and the server exits at start-up"),
        (["--max-model-len"], 0,
         "--max-model-len needs a value in vLLM 0.34.0: its parser refuses it without one "
         "and the server exits at start-up"),
        (["--max-model-len", "--enforce-eager"], 0,
         "--max-model-len needs a value in vLLM 0.34.0: its parser refuses it without one "
         "and the server exits at start-up"),
        (["--enforce-eager", "--dtype", "bfloat-16"], 2,
         "'bfloat-16' is not a value --dtype takes in vLLM 0.34.0 (auto, bfloat16, float, "
         "float16, float32, half) (did you mean bfloat16?): the server exits at start-up"),
        (["--dtype=f16"], 0,
         "'f16' is not a value --dtype takes in vLLM 0.34.0 (auto, bfloat16, float, "
         "float16, float32, half): the server exits at start-up"),
    ],
)  # fmt: skip
def test_a_value_the_release_refuses_is_an_error(args: list[str], index: int, message: str) -> None:
    assert args_problems(args) == [(index, "error", message)]


def test_a_word_no_flag_takes_is_refused_by_vllm_serve() -> None:
    assert args_problems(["--trust-remote-code", "true", "--max-model-len", "8"]) == [
        (
            1,
            "error",
            "'true' is no flag's value (--trust-remote-code takes no value): vLLM 0.34.0's "
            "parser refuses it ('unrecognized arguments') and the server exits at start-up",
        )
    ]
    assert [index for index, _, _ in args_problems(["--max-model-len", "8", "--", "x"])] == [3]


def test_the_api_server_takes_a_first_stray_word_as_a_model_name_it_ignores() -> None:
    image = "vllm/vllm-openai:v0.10.2"  # the api_server entrypoint (up to 0.11.0)
    found = args_problems(["--trust-remote-code", "true", "--enforce-eager", "yes"], image)
    assert [(index, severity) for index, severity, _ in found] == [(1, "warning"), (3, "error")]
    assert found[0][2] == (
        "'true' is no flag's value (--trust-remote-code takes no value): vLLM 0.10.2's "
        "api_server takes it as a model name, which it ignores"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--seed", "-1"], ["--chat-template", "-a template"], ["--dtype", "bfloat16"],
        ["--dtype=half"], ["--enable-prefix-caching"], ["--max-model-len", "-1"],
        ["--compilation-config.mode", "3"], ["--runner", "nonsense"],
    ],
)  # fmt: skip
def test_values_the_release_takes_or_servegen_judges_itself_pass(args: list[str]) -> None:
    found = args_problems(args)
    assert all("is set by servegen" in message for _, _, message in found)


# --- hostile input ---------------------------------------------------------------------


def one_line(value: str) -> bool:
    try:
        single_line(value)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_envs_and_args_survive_verbatim_or_are_refused(value: str) -> None:
    serve = {"envs": {"X": value}, "args": ["--chat-template", value], "task": "embed"}
    if not one_line(value):  # a line break or control character: the engine refuses it
        with pytest.raises(ValidationError, match="control and line-break"):
            doc("vllmserve-pooling", serve=serve)
        return
    d = doc("vllmserve-pooling", serve=serve)
    if value.startswith("--"):  # vLLM's parser reads it as a flag, and takes none so named
        assert [(p.path, p.severity) for p in problems(d)] == [
            (("serve", "args", 0), "error"),  # --chat-template without a value
            (("serve", "args", 1), "error"),
        ]
        return
    objects = render(d)
    assert sorted(objects) == ["Deployment/m", "Service/m"]
    assert env(objects)["X"] == value
    assert container(objects)["args"][-2:] == ["--chat-template", value]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_and_labels_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        doc(labels={"team": value})
    with pytest.raises(ValidationError):
        doc(spec={"url": "hf://org/model", "model_name": value})
    with pytest.raises(ValidationError):
        doc(serve={"service_name": value})
    with pytest.raises(ValidationError):
        doc(serve={"node_selector": {"zone": value}})
    with pytest.raises(ValidationError):
        doc(serve={"secrets": [value]})


def test_hostile_tolerations_are_refused_by_the_api_servers_rules() -> None:
    # A taint key is a qualified name and an Equal value a label value (ValidateTolerations),
    # so no hostile string reaches a manifest through a toleration.
    for value in HOSTILE:
        with pytest.raises(ValidationError) as caught:
            doc(serve={"tolerations": [{"key": value, "value": value}]})
        if one_line(value):
            assert "must be a qualified name" in str(caught.value)
            assert "taint value" in str(caught.value)
        else:
            assert "control and line-break" in str(caught.value)
    objects = render(doc(serve={"tolerations": [{"key": "example.com/gpu", "value": "a-1"}]}))
    assert pod(objects)["tolerations"] == [
        {"operator": "Equal", "key": "example.com/gpu", "value": "a-1"}
    ]


# --- documents -------------------------------------------------------------------------


def merged(kind: str, serve: dict[str, Any], override: dict[str, Any]) -> Any:
    """The document for one environment, the way the generator merges overrides."""
    d = doc(kind, serve=serve, environments={"env": {"serve": override}})
    return doc(kind, serve=deep_merge(serve, d.environments["env"].serve))


def test_environment_overrides_merge_into_a_valid_serve() -> None:
    serve = {"replicas": 2, "resources": {"cpu": "4", "mem": "16Gi"}}
    prod = merged("vllmserve-text", serve, {"replicas": 3, "resources": {"gpu": 1, "mem": None}})
    assert prod.serve.replicas == 3
    assert container(render(prod))["resources"]["requests"] == {"cpu": "4", "nvidia.com/gpu": "1"}
    assert merged("vllmserve-pooling", {}, {"task": "score"}).serve.task == "score"
    with pytest.raises(ValidationError):
        merged("vllmserve-text", {}, {"task": "score"})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        doc(serve={"replica": 2})
    with pytest.raises(ValidationError):
        doc(spec={"url": "hf://org/model", "engine": "VLLM"})


def test_every_field_has_a_description() -> None:
    def walk(schema: dict[str, Any], where: str) -> None:
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description") or "$ref" in prop or "allOf" in prop, f"{where}.{name}"

    for runtime in RUNTIMES.values():
        schema = runtime.document.model_json_schema()
        walk(schema, runtime.kind)
        for name, definition in schema.get("$defs", {}).items():
            walk(definition, name)


# --- what each vLLM release can do (issue: manifests that work on a real cluster) -------


@pytest.mark.parametrize(
    ("image", "head"),
    [
        # Up to 0.11.0 the entrypoint is the api_server module, which needs --model.
        ("vllm/vllm-openai:v0.10.2", ["--model", "org/model", "--served-model-name"]),
        ("vllm/vllm-openai:v0.11.0", ["--model", "org/model", "--served-model-name"]),
        # From 0.11.1 it is `vllm serve`, whose model is the first positional argument.
        ("vllm/vllm-openai:v0.11.1", ["org/model", "--served-model-name"]),
        ("vllm/vllm-openai:v0.33.0", ["org/model", "--served-model-name"]),
        (f"vllm/vllm-openai@sha256:{'c' * 64}", ["org/model", "--served-model-name"]),
    ],
)
def test_model_is_passed_the_way_the_entrypoint_expects(image: str, head: list[str]) -> None:
    c = container(render(doc(spec={"url": "hf://org/model", "image": image})))
    assert "command" not in c
    assert c["args"][: len(head)] == head


@pytest.mark.parametrize(
    ("gpus", "args", "added"),
    [
        (1, [], []),
        (2, [], ["--tensor-parallel-size", "2"]),
        (4, [], ["--tensor-parallel-size", "4"]),
        (4, ["--pipeline-parallel-size", "2"], ["--tensor-parallel-size", "2"]),
        (4, ["-tp", "4"], []),
        (4, ["--tensor_parallel_size=2", "-pp=2"], []),
    ],
)
def test_tensor_parallelism_fills_the_gpus(gpus: int, args: list[str], added: list[str]) -> None:
    d = doc(serve={"resources": {"gpu": gpus}, "args": args})
    assert after_port(container(render(d))["args"]) == [*added, *args]


@pytest.mark.parametrize(
    ("gpus", "args", "index", "fragment"),
    [
        (2, ["--tensor-parallel-size", "4"], 0, "cannot fit resources.gpu = 2"),
        (2, ["-tp=2", "--pipeline-parallel-size", "2"], 0, "tensor 2 x pipeline 2"),
        (4, ["--pipeline-parallel-size", "3"], 0, "cannot fit resources.gpu = 4"),
        (2, ["--max-model-len", "8", "-tp", "two"], 2, "needs a positive whole number"),
        (2, ["--tensor-parallel-size"], 0, "needs a positive whole number"),
        # isdigit() holds for "²", which int() refuses; int() refuses 4,301 digits too.
        (2, ["-tp", "²"], 0, "needs a positive whole number"),
        (2, ["-tp", "9" * 4301], 0, "needs a positive whole number"),
        (2, ["-tp", "9" * 4300], 0, "cannot fit resources.gpu = 2"),
    ],
)
def test_parallel_sizes_that_cannot_fit_are_refused(
    gpus: int, args: list[str], index: int, fragment: str
) -> None:
    found = problems(doc(serve={"resources": {"gpu": gpus}, "args": args}))
    assert [(p.path, p.severity) for p in found] == [(("serve", "args", index), "error")]
    assert fragment in found[0].message


def test_parallel_sizes_leaving_gpus_idle_warn() -> None:
    found = problems(doc(serve={"resources": {"gpu": 4}, "args": ["-tp", "2"]}))
    assert [(p.path, p.severity) for p in found] == [(("serve", "args", 0), "warning")]
    assert "2 of the 4 GPUs" in found[0].message


def test_s3_adapters_are_refused() -> None:
    adapters = [{"name": "a", "url": "hf://o/a"}, {"name": "b", "url": "s3://loras/b"}]
    found = problems(doc(spec={"url": "hf://org/model", "adapters": adapters}))
    assert [p.path for p in found] == [("spec", "adapters", 1, "url")]
    assert "not s3://" in found[0].message


@pytest.mark.parametrize(
    ("version", "refused"),
    [("0.10.2", True), ("0.11.2", True), ("0.12.0", False), ("0.33.0", False)],
)
def test_s3_on_old_cpu_images_is_refused(version: str, refused: bool) -> None:
    image = f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v{version}"
    d = doc(spec={"url": "s3://models/qwen", "image": image}, serve={"use_cpu_image": True})
    found = problems(d)
    assert [p.path for p in found] == ([("spec", "url")] if refused else [])
    if refused:
        assert "run:ai model streamer" in found[0].message


def test_s3_on_gpu_images_streams() -> None:
    d = doc(spec={"url": "s3://models/qwen", "image": "vllm/vllm-openai:v0.10.2"})
    assert problems(d) == []


@pytest.mark.parametrize(
    ("url", "image", "refused"),
    [
        ("hf://BAAI/bge-small-en-v1.5", "vllm/vllm-openai:v0.10.2", True),
        ("hf://sentence-transformers/all-MiniLM-L6-v2", "vllm/vllm-openai:v0.12.0", True),
        ("hf://FacebookAI/roberta-base", "vllm/vllm-openai:v0.11.0", True),
        ("hf://BAAI/bge-small-en-v1.5", "vllm/vllm-openai:v0.33.0", False),
        ("hf://Qwen/Qwen3-Embedding-0.6B", "vllm/vllm-openai:v0.10.2", False),
    ],
)
def test_lora_on_bert_style_pooling_models(url: str, image: str, refused: bool) -> None:
    spec = {"url": url, "image": image, "adapters": [{"name": "a", "url": "hf://o/a"}]}
    found = problems(doc("vllmserve-pooling", spec=spec))
    assert [p.path for p in found] == ([("spec", "adapters")] if refused else [])
    if refused:
        assert "BERT-style" in found[0].message


@pytest.mark.parametrize(
    "url",
    ["hf://BAAI/bge-small-en-v1.5", "hf://intfloat/e5-large-v2", "hf://Qwen/Qwen3-Embedding-0.6B",
     "hf://BAAI/bge-reranker-v2-m3", "s3://models/nomic-embed-text"],
)  # fmt: skip
def test_pooling_models_are_not_served_as_text(url: str) -> None:
    found = problems(doc(spec={"url": url}))
    assert [p.path for p in found] == [("spec", "url")]
    assert "vllmserve-pooling" in found[0].message
    # The same model as a pooling spec is fine and is catalogued as what it is.
    pooled = doc("vllmserve-pooling", spec={"url": url})
    assert problems(pooled) == []
    features = RUNTIMES["vllmserve-pooling"].endpoint(pooled, Config(), "ns").features
    assert "TextGeneration" not in features


@pytest.mark.parametrize(
    ("url", "mem", "space"),
    [
        # The name states 0.5B parameters: ~0.93 GiB of bf16 weights, the rest is KV cache.
        ("hf://Qwen/Qwen2.5-0.5B-Instruct", "12Gi", "8"),
        ("hf://Qwen/Qwen2.5-7B-Instruct", "32Gi", "15"),
        # No size in the name: half of what /dev/shm and the runtime leave.
        ("hf://BAAI/bge-small-en-v1.5", "8Gi", "2"),
    ],
)
def test_cpu_kv_cache_leaves_room_for_weights_and_shm(url: str, mem: str, space: str) -> None:
    kind = "vllmserve-pooling" if "bge" in url else "vllmserve-text"
    d = doc(kind, spec={"url": url}, serve={"use_cpu_image": True, "resources": {"mem": mem}})
    objects = render(d)
    assert env(objects)["VLLM_CPU_KVCACHE_SPACE"] == space
    shm = next(v for v in pod(objects)["volumes"] if v["name"] == "shm")
    total = int(space) * (1 << 30) + quantity_bytes(shm["emptyDir"]["sizeLimit"])
    memory = cpu_memory(url, mem)
    assert total + (memory.weights or 0) < quantity_bytes(mem)


@pytest.mark.parametrize(
    ("url", "mem", "user", "path"),
    [
        ("hf://Qwen/Qwen2.5-7B-Instruct", "16Gi", None, ("serve", "resources", "mem")),
        ("hf://org/model", "4Gi", None, ("serve", "resources", "mem")),
        ("hf://org/model", "12Gi", "10", ("serve", "envs", "VLLM_CPU_KVCACHE_SPACE")),
        ("hf://org/model", "12Gi", "lots", ("serve", "envs", "VLLM_CPU_KVCACHE_SPACE")),
        # More digits than int() reads (4,300) and a memory limit past 2^63-1 bytes: judged
        # like any other value, never an internal error.
        ("hf://org/model", "12Gi", "9" * 5000, ("serve", "envs", "VLLM_CPU_KVCACHE_SPACE")),
        ("hf://org/model", "1e-999999", None, ("serve", "resources", "mem")),
    ],
)
def test_cpu_memory_that_cannot_hold_the_kv_cache_is_refused(
    url: str, mem: str, user: str | None, path: tuple[str, ...]
) -> None:
    serve: dict[str, Any] = {"use_cpu_image": True, "resources": {"mem": mem}}
    if user is not None:
        serve["envs"] = {"VLLM_CPU_KVCACHE_SPACE": user}
    found = problems(doc(spec={"url": url}, serve=serve))
    assert [p.path for p in found] == [path]


@pytest.mark.parametrize("mem", ["1.073745e+37", "1e9999999999", "9" * 60 + "Ei"])
def test_a_memory_limit_beyond_any_machine_leaves_the_whole_kv_cache(mem: str) -> None:
    """quantity.go caps quantities at 2^63-1: the KV cache is what that leaves, a whole
    number of GiB (a Decimal floor division of 1e37 would raise instead)."""
    serve = {"use_cpu_image": True, "resources": {"mem": mem}}
    d = doc(spec={"url": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, serve=serve)
    assert problems(d) == []
    space = int(env(render(d))["VLLM_CPU_KVCACHE_SPACE"])
    assert space == cpu_memory("hf://Qwen/Qwen2.5-0.5B-Instruct", mem).kv_cache_gib()
    assert ((1 << 63) - 1) // (1 << 30) - 4 < space < ((1 << 63) - 1) // (1 << 30)


def test_image_outside_the_supported_range_warns() -> None:
    found = problems(doc(spec={"url": "hf://o/m", "image": "vllm/vllm-openai:v0.9.2"}))
    assert [(p.path, p.severity) for p in found] == [(("spec", "image"), "warning")]
    assert "outside the supported range 0.10.0" in found[0].message
    assert problems(doc(spec={"url": "hf://o/m", "image": "vllm/vllm-openai:v0.34.0"})) == []
    found = problems(doc(spec={"url": "hf://o/m", "image": "vllm/vllm-openai:v0.35.0"}))
    assert "to below 0.35.0" in found[0].message


def test_config_images_outside_the_supported_range_warn_once() -> None:
    cfg = config(vllm={"image": "vllm/vllm-openai:v0.8.5", "cpu_image": "cpu/vllm:v0.35.0"})
    found = runtimes.config_problems(cfg)
    assert [(p.path, p.severity) for p in found] == [
        (("vllm", "image"), "warning"), (("vllm", "cpu_image"), "warning"),
    ]  # fmt: skip
    assert runtimes.config_problems(Config()) == []


def test_supported_range_warnings_are_positioned_and_do_not_fail(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "servegen.yaml").write_text("vllm:\n  image: vllm/vllm-openai:v0.9.2\n")
    (tmp_path / "specs" / "m.yaml").write_text(
        "kind: vllmserve-text\nname: m\nspec:\n  url: hf://org/model\n"
        "  image: vllm/vllm-openai:v0.8.5\n"
    )
    validated = validate_repository(tmp_path)
    assert validated.ok and [s.name for s in validated.specs] == ["m"]
    assert validated.failed_files == frozenset()
    found = [(d.path, d.line, d.col, d.json_path, d.severity) for d in validated.diagnostics]
    assert found == [
        ("servegen.yaml", 2, 10, "vllm.image", "warning"),
        ("specs/m.yaml", 5, 10, "spec.image", "warning"),
    ]
