"""Per-environment `spec` overrides: every overridable field of every runtime is merged,
validated and rendered as an overlay patch, and the endpoint catalog follows it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import runtimes
from generator.pipeline import Build, build
from generator.render import object_key
from generator.validate import validate_repository
from generator.write import write_tree
from tests.kustomize import kustomize

CONFIG = """\
environments:
  staging: {namespace: llm-staging, cluster: staging}
  prod: {namespace: llm-prod, cluster: prod}
"""

BASES: dict[str, str] = {
    "kubeai-text": "url: hf://Qwen/Qwen2.5-0.5B-Instruct",
    "vllmserve-text": "url: hf://Qwen/Qwen2.5-0.5B-Instruct@a1b2c3",
    "vllmserve-speech": "url: hf://openai/whisper-large-v3@a1b2c3",
    "vllmserve-pooling": "url: hf://Qwen/Qwen3-Embedding-0.6B",
    "huggingfaceserve": "path: hf://google-bert/bert-base-uncased@a1b2c3",
}

# (kind, override of `spec` in staging, file of the patch, its exact operations)
CASES: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    (
        "kubeai-text",
        "url: hf://Qwen/Qwen2.5-1.5B-Instruct",
        "patch-model-m.yaml",
        [{"op": "replace", "path": "/spec/url", "value": "hf://Qwen/Qwen2.5-1.5B-Instruct"}],
    ),
    (
        "kubeai-text",
        "image: substratusai/vllm:v0.6.4",
        "patch-model-m.yaml",
        [{"op": "add", "path": "/spec/image", "value": "substratusai/vllm:v0.6.4"}],
    ),
    (
        "kubeai-text",
        'adapters: [{name: sql, url: "hf://org/sql-lora"}]',
        "patch-model-m.yaml",
        [
            {
                "op": "add",
                "path": "/spec/adapters",
                "value": [{"name": "sql", "url": "hf://org/sql-lora"}],
            }
        ],
    ),
    (
        "vllmserve-text",
        "url: hf://Qwen/Qwen2.5-0.5B-Instruct@d4e5f6",
        "patch-deployment-m.yaml",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/args/9", "value": "d4e5f6"}],
    ),
    (
        "vllmserve-text",
        "image: vllm/vllm-openai:v0.11.0",
        "patch-deployment-m.yaml",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "vllm/vllm-openai:v0.11.0",
            }
        ],
    ),
    (
        "vllmserve-speech",
        "url: hf://openai/whisper-large-v3@d4e5f6",
        "patch-deployment-m.yaml",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/args/9", "value": "d4e5f6"}],
    ),
    (
        "vllmserve-speech",
        "image: vllm/vllm-openai:v0.11.0",
        "patch-deployment-m.yaml",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "vllm/vllm-openai:v0.11.0",
            }
        ],
    ),
    (
        "vllmserve-pooling",
        "url: hf://BAAI/bge-base-en-v1.5",
        "patch-deployment-m.yaml",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/args/1",
                "value": "BAAI/bge-base-en-v1.5",
            }
        ],
    ),
    (
        "vllmserve-pooling",
        "image: vllm/vllm-openai:v0.11.0",
        "patch-deployment-m.yaml",
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/image",
                "value": "vllm/vllm-openai:v0.11.0",
            }
        ],
    ),
    (
        "huggingfaceserve",
        "path: hf://google-bert/bert-base-uncased@d4e5f6",
        "patch-inferenceservice-m.yaml",
        [
            {
                "op": "replace",
                "path": "/spec/predictor/model/storageUri",
                "value": "hf://google-bert/bert-base-uncased:d4e5f6",
            }
        ],
    ),
    (
        "huggingfaceserve",
        "image: kserve/huggingfaceserver:v0.15.0",
        "patch-inferenceservice-m.yaml",
        [
            {
                "op": "add",
                "path": "/spec/predictor/model/image",
                "value": "kserve/huggingfaceserver:v0.15.0",
            }
        ],
    ),
]
# vLLM LoRA adapters change several flags at once: checked on the final objects below.
ADAPTER_KINDS = ("vllmserve-text", "vllmserve-pooling")


def repository(tmp_path: Path, kind: str, override: str, base_extra: str = "") -> Path:
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "servegen.yaml").write_text(CONFIG)
    serve = "serve:\n  task: embed\n" if kind == "vllmserve-pooling" else ""  # required
    spec = (
        f"kind: {kind}\nname: m\nspec:\n  {BASES[kind]}\n{base_extra}{serve}"
        f"environments:\n  staging:\n    spec:\n      {override}\n"
    )
    (root / "specs" / "m.yaml").write_text(spec)
    return root


def parse(data: bytes) -> Any:
    return YAML(typ="safe").load(data.decode())


def assert_kustomize_builds_rendered(result: Build, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, result.files)
    for env in ("staging", "prod"):
        built = kustomize(out / "clusters" / env)
        expected = [obj for m in result.models for obj in m.environments[env].objects]
        assert sorted(built, key=object_key) == sorted(expected, key=object_key)


def test_every_runtime_declares_what_it_lets_environments_override() -> None:
    declared = {kind: runtime.spec_overrides for kind, runtime in runtimes.registry().items()}
    assert declared == {
        "kubeai-text": ("url", "image", "adapters"),
        "vllmserve-text": ("url", "image", "adapters"),
        "vllmserve-speech": ("url", "image", "adapters"),
        "vllmserve-pooling": ("url", "image", "adapters"),
        "huggingfaceserve": ("path", "image"),
    }


def test_every_overridable_field_is_covered_by_a_case() -> None:
    covered = {(kind, override.partition(":")[0]) for kind, override, _, _ in CASES}
    covered |= {(kind, "adapters") for kind in ADAPTER_KINDS}
    # Speech refuses adapters in any environment (see the invalid corpus).
    covered.add(("vllmserve-speech", "adapters"))
    wanted = {
        (kind, field)
        for kind, runtime in runtimes.registry().items()
        for field in runtime.spec_overrides
    }
    assert wanted == covered


@pytest.mark.parametrize(("kind", "override", "patch", "operations"), CASES)
def test_spec_override_renders_as_overlay_patch(
    tmp_path: Path,
    crds_dir: Path,
    kind: str,
    override: str,
    patch: str,
    operations: list[dict[str, Any]],
) -> None:
    result = build(repository(tmp_path, kind, override), crds=[crds_dir], keep_objects=True)
    overlay = "models/m/overlays/staging"
    assert parse(result.files[f"{overlay}/{patch}"]) == operations
    kustomization = parse(result.files[f"{overlay}/kustomization.yaml"])
    assert [p["path"] for p in kustomization["patches"]] == [patch]
    # prod has no override: its overlay carries no patch at all.
    assert "patches" not in parse(result.files["models/m/overlays/prod/kustomization.yaml"])
    assert_kustomize_builds_rendered(result, tmp_path)


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_vllm_adapter_override_reaches_flags_and_catalog(
    tmp_path: Path, crds_dir: Path, kind: str
) -> None:
    override = 'adapters: [{name: sql, url: "hf://org/sql-lora"}]'
    result = build(repository(tmp_path, kind, override), crds=[crds_dir], keep_objects=True)
    (model,) = result.models
    args = {
        env: model.environments[env].objects[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        for env in ("staging", "prod")
    }
    assert args["staging"][-5:] == [
        "--enable-lora",
        "--max-loras",
        "1",
        "--lora-modules",
        "sql=org/sql-lora",
    ]
    assert "--enable-lora" not in args["prod"]
    catalogs = {env: json.loads(result.files[f"endpoints/{env}.json"]) for env in args}
    assert catalogs["staging"]["models"][0]["adapters"] == ["sql"]
    assert catalogs["prod"]["models"][0]["adapters"] == []
    assert_kustomize_builds_rendered(result, tmp_path)


def test_kubeai_adapter_override_reaches_catalog(tmp_path: Path, crds_dir: Path) -> None:
    base_extra = '  adapters: [{name: sql, url: "hf://org/sql-lora"}]\n'
    override = (
        'adapters: [{name: sql, url: "hf://org/sql-lora-v2"}, {name: web, url: "s3://l/web"}]'
    )
    root = repository(tmp_path, "kubeai-text", override, base_extra)
    result = build(root, crds=[crds_dir], keep_objects=True)
    catalogs = {
        env: json.loads(result.files[f"endpoints/{env}.json"]) for env in ("staging", "prod")
    }
    assert catalogs["staging"]["models"][0]["adapters"] == ["m_sql", "m_web"]
    assert catalogs["prod"]["models"][0]["adapters"] == ["m_sql"]
    patch = parse(result.files["models/m/overlays/staging/patch-model-m.yaml"])
    assert patch == [
        {
            "op": "replace",
            "path": "/spec/adapters",
            "value": [
                {"name": "sql", "url": "hf://org/sql-lora-v2"},
                {"name": "web", "url": "s3://l/web"},
            ],
        }
    ]


def test_spec_override_merges_key_by_key_and_keeps_the_base(tmp_path: Path) -> None:
    root = repository(tmp_path, "vllmserve-text", "image: vllm/vllm-openai:v0.11.0")
    (spec,) = validate_repository(root).specs
    staging, prod = spec.environments["staging"], spec.environments["prod"]
    assert staging.spec.url == prod.spec.url == "hf://Qwen/Qwen2.5-0.5B-Instruct@a1b2c3"
    assert (staging.spec.image, prod.spec.image) == ("vllm/vllm-openai:v0.11.0", None)
    assert prod is spec.base  # no override: the base itself, rendered once


def test_spec_and_serve_overrides_combine(tmp_path: Path, crds_dir: Path) -> None:
    root = repository(
        tmp_path, "kubeai-text", "url: hf://Qwen/Qwen2.5-1.5B-Instruct\n    serve: {processors: 2}"
    )
    result = build(root, crds=[crds_dir], keep_objects=True)
    (model,) = result.models
    spec = model.environments["staging"].objects[0]["spec"]
    assert (spec["url"], spec["resourceProfile"]) == ("hf://Qwen/Qwen2.5-1.5B-Instruct", "cpu:2")
