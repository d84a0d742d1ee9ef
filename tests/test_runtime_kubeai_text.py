"""kubeai-text: what KubeAI v0.22.1 actually does with the Models servegen writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from generator.config import Config
from generator.errors import InvalidInputError
from generator.flux import flux_objects
from generator.pipeline import build
from runtimes.kubeai_text import KubeAIText, KubeAITextDocument

RUNTIME = KubeAIText()

TWO_ENVIRONMENTS = """\
namespace: llm
environments:
  dev: {namespace: llm-dev}
  prod: {namespace: llm-prod}
flux: {url: "https://github.com/example-org/llm-serving"}
"""

CHAT = """\
kind: kubeai-text
name: tinyllama-chat
spec:
  url: hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0
"""


def make(serve: dict[str, Any] | None = None, **spec: Any) -> KubeAITextDocument:
    body: dict[str, Any] = {
        "kind": "kubeai-text",
        "name": "chat",
        "spec": {"url": "hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0", **spec},
    }
    if serve is not None:
        body["serve"] = serve
    return KubeAITextDocument.model_validate(body)


def model_spec(doc: KubeAITextDocument, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    assert list(RUNTIME.spec_problems(doc, config)) == []
    (obj,) = RUNTIME.render(doc, config)
    spec: dict[str, Any] = obj["spec"]
    return spec


def repo(tmp_path: Path, config: str, *specs: str) -> Path:
    (tmp_path / "specs").mkdir(parents=True)
    (tmp_path / "servegen.yaml").write_text(config)
    for index, text in enumerate(specs):
        (tmp_path / "specs" / f"spec{index}.yaml").write_text(text)
    return tmp_path


# --- defect 1: Models go where KubeAI runs --------------------------------------------


def test_models_go_to_the_namespace_of_each_environments_kubeai(
    tmp_path: Path, crds_dir: Path
) -> None:
    config = TWO_ENVIRONMENTS.replace(
        "  dev: {namespace: llm-dev}",
        "  dev: {namespace: llm-dev, kubeai: {namespace: kubeai-dev}}",
    )
    result = build(repo(tmp_path, config, CHAT), crds=[crds_dir], keep_objects=True)
    (model,) = result.models
    dev, prod = model.environments["dev"], model.environments["prod"]
    assert dev.objects[0]["metadata"]["namespace"] == "kubeai-dev"
    assert prod.objects[0]["metadata"]["namespace"] == "kubeai"  # the top-level default
    assert dev.endpoint.base_url == "http://kubeai.kubeai-dev.svc.cluster.local/openai/v1"
    assert prod.endpoint.base_url == "http://kubeai.kubeai.svc.cluster.local/openai/v1"
    assert (dev.endpoint.namespace, prod.endpoint.namespace) == ("kubeai-dev", "kubeai")
    overlay = result.files["models/tinyllama-chat/overlays/dev/kustomization.yaml"].decode()
    assert "namespace: kubeai-dev" in overlay
    checks = flux_objects(result.models, result.config, "dev")[1]["spec"]["healthChecks"]
    assert checks == [
        {
            "apiVersion": "kubeai.org/v1",
            "kind": "Model",
            "name": "tinyllama-chat",
            "namespace": "kubeai-dev",
        }
    ]


def test_an_explicit_endpoint_is_the_catalog_url(tmp_path: Path, crds_dir: Path) -> None:
    config = TWO_ENVIRONMENTS + "kubeai: {endpoint: 'https://llm.example.com/openai/v1'}\n"
    config = config.replace(
        "  prod: {namespace: llm-prod}", "  prod: {namespace: llm-prod, cluster: b}"
    )
    result = build(repo(tmp_path, config, CHAT), crds=[crds_dir])
    assert result.models[0].environments["prod"].endpoint.base_url == (
        "https://llm.example.com/openai/v1"
    )


def test_two_environments_sharing_one_kubeai_cannot_both_write_a_model(
    tmp_path: Path, crds_dir: Path
) -> None:
    root = repo(tmp_path, TWO_ENVIRONMENTS, CHAT)
    with pytest.raises(InvalidInputError) as caught:
        build(root, crds=[crds_dir])
    (problem,) = caught.value.diagnostics
    assert (problem.path, problem.line, problem.col) == ("specs/spec0.yaml", 2, 7)
    assert "Model/tinyllama-chat in namespace kubeai is written by both environment dev" in (
        problem.message
    )
    assert "environments.<env>.kubeai.namespace" in problem.message


@pytest.mark.parametrize(
    "fix",
    [
        ("  prod: {namespace: llm-prod}", "  prod: {namespace: llm-prod, cluster: prod}"),
        ("  dev: {namespace: llm-dev}", "  dev: {namespace: llm-dev, kubeai: {namespace: k2}}"),
    ],
    ids=["separate-clusters", "separate-kubeai"],
)
def test_separate_clusters_or_kubeai_installs_do_not_collide(
    tmp_path: Path, crds_dir: Path, fix: tuple[str, str]
) -> None:
    root = repo(tmp_path, TWO_ENVIRONMENTS.replace(*fix), CHAT)
    assert sorted(build(root, crds=[crds_dir]).models[0].environments) == ["dev", "prod"]


def test_a_model_disabled_in_one_environment_does_not_collide(
    tmp_path: Path, crds_dir: Path
) -> None:
    spec = CHAT + "environments:\n  prod: {enabled: false}\n"
    assert build(repo(tmp_path, TWO_ENVIRONMENTS, spec), crds=[crds_dir]).models


def test_environments_sharing_a_namespace_collide_for_every_kind(
    tmp_path: Path, crds_dir: Path
) -> None:
    """The rule is general: two environments on one cluster writing one Deployment."""
    config = TWO_ENVIRONMENTS.replace("{namespace: llm-prod}", "{namespace: llm-dev}")
    vllm = "kind: vllmserve-text\nname: qwen\nspec:\n  url: hf://Qwen/Qwen2.5-0.5B-Instruct\n"
    with pytest.raises(InvalidInputError) as caught:
        build(repo(tmp_path, config, vllm), crds=[crds_dir])
    messages = [d.message for d in caught.value.diagnostics]
    assert any("Deployment/qwen in namespace llm-dev is written by both" in m for m in messages)


# --- defect 2: revisions ----------------------------------------------------------------


def test_hf_revision_becomes_vllms_revision_flag() -> None:
    spec = model_spec(make({"args": ["--max-model-len=2048"]}, url="hf://org/model@v1.2"))
    assert spec["url"] == "hf://org/model"
    assert spec["args"] == ["--revision=v1.2", "--max-model-len=2048"]


# --- defect 4: a model pinned at zero ---------------------------------------------------


def test_pinned_at_zero_renders_zero_and_is_not_health_checked(
    tmp_path: Path, crds_dir: Path
) -> None:
    pinned_doc = make({"scaling": {"autoscaling_disabled": True, "replicas": 0}})
    (obj,) = RUNTIME.render(pinned_doc, Config())
    spec = obj["spec"]
    assert (spec["replicas"], spec["minReplicas"], spec["autoscalingDisabled"]) == (0, 0, True)
    pinned = CHAT + "serve:\n  scaling: {autoscaling_disabled: true, replicas: 0}\n"
    config = TWO_ENVIRONMENTS.replace("{namespace: llm-prod}", "{namespace: llm-prod, cluster: b}")
    result = build(repo(tmp_path, config, pinned), crds=[crds_dir])
    flux_spec = flux_objects(result.models, result.config, "dev")[1]["spec"]
    assert "healthChecks" not in flux_spec and "healthCheckExprs" not in flux_spec
    # ... and is never started by a request (ScaleAtLeastOneReplica returns while
    # autoscaling is disabled): a warning, not an error.
    [warning] = RUNTIME.spec_problems(
        make({"scaling": {"autoscaling_disabled": True, "replicas": 0}}), Config()
    )
    assert warning.severity == "warning"
    assert warning.message.startswith("pinned at 0 replicas: KubeAI starts none")


def test_pinned_replicas_set_min_replicas() -> None:
    spec = model_spec(make({"scaling": {"autoscaling_disabled": True, "replicas": 3}}))
    assert (spec["replicas"], spec["minReplicas"]) == (3, 3)


# --- defect 15: the catalog -------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "engine", "listing"),
    [
        (["TextGeneration"], "VLLM", "/models"),
        (["TextGeneration", "TextEmbedding"], "VLLM", "/models"),
        (["TextEmbedding"], "Infinity", "/models?feature=TextEmbedding"),
        (
            ["TextEmbedding", "Reranking"],
            "Infinity",
            "/models?feature=TextEmbedding&feature=Reranking",
        ),
        (["SpeechToText"], "FasterWhisper", "/models?feature=SpeechToText"),
    ],
)
def test_catalog_lists_models_where_kubeai_lists_them(
    features: list[str], engine: str, listing: str
) -> None:
    doc = make(features=features, engine=engine)
    endpoint = RUNTIME.endpoint_in(doc, Config(), "default", "kubeai").to_json()
    assert endpoint["endpoints"][-1] == (
        "http://kubeai.kubeai.svc.cluster.local/openai/v1" + listing
    )


def test_examples_put_models_where_each_environments_kubeai_runs(crds_dir: Path) -> None:
    from tests.conftest import EXAMPLES

    result = build(EXAMPLES, crds=[crds_dir], keep_objects=True)
    namespaces = {
        (env, obj["metadata"]["namespace"])
        for model in result.models
        for env, rendered in model.environments.items()
        for obj in rendered.objects
        if obj["kind"] == "Model"
    }
    assert namespaces == {("dev", "kubeai"), ("prod", "kubeai-system")}


def test_a_spec_namespace_equal_to_kubeais_is_accepted() -> None:
    doc = make().model_copy(update={"namespace": "kubeai"})
    assert list(RUNTIME.spec_problems(doc, Config())) == []


# --- what KubeAI reads of a URL, its files and its own flags ------------------------------


def problems(doc: KubeAITextDocument) -> list[str]:
    return [p.message for p in RUNTIME.spec_problems(doc, Config())]


@pytest.mark.parametrize(
    ("url", "engine"),
    [
        ("pvc://models?model=qwen2:0.5b", "OLlama"),
        ("ollama://qwen2:0.5b?insecure=true&pull=false", "OLlama"),
        ("s3://models/llama@v2", "VLLM"),  # an object key may hold '@'
        ("pvc://models/qwen-0.5b", "VLLM"),  # vLLM is pointed at the mount
    ],
)
def test_urls_kubeai_reads_as_written_pass(url: str, engine: str) -> None:
    spec = model_spec(make(url=url, engine=engine))
    assert spec["url"] == url


@pytest.mark.parametrize("engine", ["Infinity", "FasterWhisper"])
def test_engines_that_take_a_hugging_face_id_cannot_load_a_claim(engine: str) -> None:
    feature = "SpeechToText" if engine == "FasterWhisper" else "TextEmbedding"
    doc = make(url="pvc://models/some-model", engine=engine, features=[feature])
    assert problems(doc) == [
        f"engine {engine} cannot load pvc:// URLs: KubeAI mounts the claim at /model but "
        f"tells {engine} to fetch <claim>/<path> from Hugging Face; use hf://, or s3:// with "
        "a cache profile"
    ]


def test_files_fit_one_configmap_by_bytes_not_characters() -> None:
    # Five files of 100,000 two-byte characters and one of ASCII: 1 MiB exactly passes.
    wide = [{"path": f"/etc/wide-{n}", "content": "é" * 100_000} for n in range(5)]
    rest = (1 << 20) - 1_000_000
    fits = make({"files": [*wide, {"path": "/etc/rest", "content": "a" * rest}]})
    assert problems(fits) == []
    over = make({"files": [*wide, {"path": "/etc/rest", "content": "a" * (rest + 1)}]})
    assert problems(over) == [
        "the files hold 1,048,577 bytes: KubeAI keeps them in one ConfigMap, which holds at "
        "most 1,048,576"
    ]


def test_a_change_of_file_content_rolls_the_pods() -> None:
    """kubeai v0.22.1 updates the files' ConfigMap in place and mounts each file by
    subPath; pods roll only on a change of their spec's hash. The digest in the env is
    part of that spec: running pods kept stale files before."""

    def env(content: str, path: str = "/etc/app.conf") -> dict[str, str]:
        spec = model_spec(make({"files": [{"path": path, "content": content}], "envs": {"A": "1"}}))
        return dict(spec["env"])

    first = env("mode: a\n")
    assert first["A"] == "1" and len(first["SERVEGEN_FILES_SHA256"]) == 64
    assert env("mode: a\n") == first  # the same files: the same pods
    assert env("mode: b\n")["SERVEGEN_FILES_SHA256"] != first["SERVEGEN_FILES_SHA256"]
    assert (
        env("mode: a\n", "/etc/b.conf")["SERVEGEN_FILES_SHA256"] != first["SERVEGEN_FILES_SHA256"]
    )
    assert "SERVEGEN_FILES_SHA256" not in (model_spec(make({"envs": {"A": "1"}}))["env"])
    assert problems(make({"envs": {"SERVEGEN_FILES_SHA256": "x"}})) == [
        "SERVEGEN_FILES_SHA256 is servegen's to set: it rolls the pods when serve.files change"
    ]


def test_vllm_flags_are_judged_by_the_pinned_image_else_only_warned() -> None:
    args = ["--max-model-length=2048", "--swap-space=4", "--por=1"]

    def found(**spec: Any) -> list[tuple[Any, str, str]]:
        doc = make({"args": args}, engine="VLLM", features=["TextGeneration"], **spec)
        return [(p.path[-1], p.severity, p.message) for p in RUNTIME.spec_problems(doc, Config())]

    # The cluster's KubeAI configuration picks the image: only what no release takes.
    unpinned = found()
    assert [(index, severity) for index, severity, _ in unpinned] == [
        (2, "error"),  # KubeAI's own --port, abbreviated
        (0, "warning"),
    ]
    assert unpinned[1][2].startswith("--max-model-length: no vLLM release servegen checked")
    # vLLM 0.34.0 dropped --swap-space (vllm/engine/arg_utils.py).
    pinned = found(image="vllm/vllm-openai:v0.34.0")
    assert [(index, severity) for index, severity, _ in pinned] == [
        (2, "error"), (0, "error"), (1, "error"),
    ]  # fmt: skip
    assert pinned[2][2].startswith("--swap-space: vLLM 0.34.0 takes no such flag")
    older = found(image="vllm/vllm-openai:v0.10.2")  # which still takes --swap-space
    assert [(index, severity) for index, severity, _ in older] == [(2, "error"), (0, "error")]


def test_kubeai_runs_the_api_server_module_so_a_first_stray_word_is_ignored() -> None:
    """kubeai v0.22.1 engine_vllm.go: `python3 -m vllm.entrypoints.openai.api_server`
    with --model, also for an image whose entrypoint is `vllm serve`."""
    args = ["--enforce-eager", "true", "false"]
    doc = make({"args": args}, engine="VLLM", features=["TextGeneration"],
               image="vllm/vllm-openai:v0.34.0")  # fmt: skip
    found = [(p.path[-1], p.severity) for p in RUNTIME.spec_problems(doc, Config())]
    assert found == [(1, "warning"), (2, "error")]


def test_a_file_path_is_at_most_one_configmap_key_long() -> None:
    longest = "/" + "a" * 252
    assert model_spec(make({"files": [{"path": longest, "content": "x"}]}))["files"]
    with pytest.raises(ValueError, match="at most 253 characters"):
        make({"files": [{"path": longest + "a", "content": "x"}]})


@pytest.mark.parametrize(
    ("engine", "args", "envs"),
    [
        (
            "VLLM",
            ["--max-model-len=2048", "--enable-prefix-caching"],
            {"VLLM_LOGGING_LEVEL": "INFO"},
        ),
        ("Infinity", ["--batch-size=32"], {"INFINITY_ENGINE": "optimum"}),
        ("FasterWhisper", [], {"WHISPER__COMPUTE_TYPE": "int8"}),
    ],
)
def test_flags_and_envs_kubeai_leaves_alone_pass(
    engine: str, args: list[str], envs: dict[str, str]
) -> None:
    feature = {"VLLM": "TextGeneration", "Infinity": "TextEmbedding"}.get(engine, "SpeechToText")
    doc = make({"args": args, "envs": envs}, engine=engine, features=[feature])
    assert problems(doc) == []
