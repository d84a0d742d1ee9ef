"""huggingfaceserve: real rendering of KServe InferenceServices, checked against the CRD."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

import runtimes
from generator.config import Config
from generator.crds import bundled_dir
from generator.validate import validate_repository
from runtimes.base import Problem
from runtimes.huggingfaceserve import (
    HuggingFaceServe,
    HuggingFaceServeDocument,
    hf_backend_flags,
    kserve_parsers,
)

RUNTIME = HuggingFaceServe()
CRD_FILE = "serving.kserve.io_inferenceservices.yaml"


def crds_dir() -> Path:
    return bundled_dir()


def _close(schema: Any) -> None:
    """Mark every object schema that lists `properties` as closed, like the API server's
    pruning would (an unknown field is dropped there; here it is an error)."""
    if isinstance(schema, list):
        for item in schema:
            _close(item)
        return
    if not isinstance(schema, dict):
        return
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    for key, value in schema.items():
        if key == "properties":
            for sub in value.values():
                _close(sub)
        elif key in ("items", "additionalProperties", "not") or key in (
            "anyOf",
            "allOf",
            "oneOf",
        ):
            _close(value)


@cache
def isvc_validator() -> Any:
    path = crds_dir() / CRD_FILE
    crd = YAML(typ="safe", pure=False).load(path.read_text(encoding="utf-8"))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
    _close(schema)
    return jsonschema_rs.validator_for(schema)


def assert_valid_isvc(obj: dict[str, Any]) -> None:
    errors = [f"{list(e.instance_path)}: {e.message}" for e in isvc_validator().iter_errors(obj)]
    assert not errors, "\n".join(errors)


def make(serve: dict[str, Any] | None = None, **spec: Any) -> HuggingFaceServeDocument:
    body: dict[str, Any] = {
        "kind": "huggingfaceserve",
        "name": spec.pop("name", "qwen"),
        "spec": {"path": "hf://Qwen/Qwen2.5-0.5B-Instruct", **spec},
    }
    if serve is not None:
        body["serve"] = serve
    return HuggingFaceServeDocument.model_validate(body)


def render(doc: HuggingFaceServeDocument, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    assert list(RUNTIME.spec_problems(doc, config)) == []
    objects = RUNTIME.render(doc, config)
    assert len(objects) == 1
    assert_valid_isvc(objects[0])
    return objects[0]


def problems(doc: HuggingFaceServeDocument, config: Config | None = None) -> list[Problem]:
    return list(RUNTIME.spec_problems(doc, config or Config()))


def paths(doc: HuggingFaceServeDocument, config: Config | None = None) -> list[tuple[Any, ...]]:
    return [p.path for p in problems(doc, config)]


# --- the rendered object ------------------------------------------------------------


def test_minimal_spec_renders_a_lean_inferenceservice() -> None:
    obj = render(make())
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1"
    assert obj["kind"] == "InferenceService"
    assert obj["metadata"] == {
        "name": "qwen",
        "labels": {"app.kubernetes.io/name": "qwen"},
        "annotations": {"serving.kserve.io/deploymentMode": "Standard"},
    }
    assert obj["spec"] == {
        "predictor": {
            "model": {
                "modelFormat": {"name": "huggingface"},
                "storageUri": "hf://Qwen/Qwen2.5-0.5B-Instruct",
                "args": ["--model_name=qwen"],
            }
        }
    }


def test_labels_and_model_name() -> None:
    doc = HuggingFaceServeDocument.model_validate(
        {
            "kind": "huggingfaceserve",
            "name": "chat",
            "labels": {"team": "nlp"},
            "spec": {"path": "hf://a/b", "model_name": "assistant"},
        }
    )
    obj = render(doc)
    assert obj["metadata"]["labels"] == {"team": "nlp", "app.kubernetes.io/name": "chat"}
    assert obj["spec"]["predictor"]["model"]["args"] == ["--model_name=assistant"]


def test_every_field_becomes_its_flag_in_order() -> None:
    doc = make(
        {
            "backend": "huggingface",
            "huggingface_task": "sequence_classification",
            "max_length": 512,
            "dtype": "bfloat16",
            "model_revision": "abc123",
            "trust_remote_code": True,
            "disable_lower_case": True,
            "disable_special_tokens": True,
            "return_token_type_ids": True,
            "return_probabilities": True,
            "disable_log_requests": True,
            "tensor_input_names": ["input_ids", "attention_mask"],
            "max_log_len": 100,
            "args": ["--workers", "2", "--enable_docs_url=true"],
        },
        path="hf://google-bert/bert-base-uncased",
    )
    model = render(doc)["spec"]["predictor"]["model"]
    assert model["args"] == [
        "--model_name=qwen",
        "--backend=huggingface",
        "--task=sequence_classification",
        "--max_model_len=512",
        "--dtype=bfloat16",
        "--model_revision=abc123",
        "--trust_remote_code",
        "--disable_lower_case",
        "--disable_special_tokens",
        "--return_token_type_ids",
        "--return_probabilities",
        "--disable_log_requests",
        "--tensor_input_names=input_ids,attention_mask",
        "--max-log-len=100",  # the one spelling both backends' parsers know
        "--workers",
        "2",
        "--enable_docs_url=true",
    ]
    assert model["storageUri"] == "hf://google-bert/bert-base-uncased:abc123"


def test_false_booleans_and_auto_backend_emit_nothing() -> None:
    doc = make(
        {
            "backend": "auto",
            "trust_remote_code": False,
            "disable_lower_case": False,
            "disable_log_requests": False,
        }
    )
    assert render(doc)["spec"]["predictor"]["model"]["args"] == ["--model_name=qwen"]


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("huggingface://meta-llama/Llama-3.2-1B", "hf://meta-llama/Llama-3.2-1B"),
        ("hf://meta-llama/Llama-3.2-1B@main", "hf://meta-llama/Llama-3.2-1B:main"),
        ("huggingface://org/model:v1.0", "hf://org/model:v1.0"),
        ("hf://org/model:3f2a9c1", "hf://org/model:3f2a9c1"),
        ("s3://models/bert/v1/", "s3://models/bert/v1/"),
        ("gs://bucket/path/model", "gs://bucket/path/model"),
        ("pvc://model-cache/llama", "pvc://model-cache/llama"),
    ],
)
def test_storage_uri_normalisation(path: str, uri: str) -> None:
    obj = render(make(path=path))
    assert obj["spec"]["predictor"]["model"]["storageUri"] == uri
    assert not any("revision" in a for a in obj["spec"]["predictor"]["model"]["args"])


def test_model_revision_reaches_the_storage_initializer() -> None:
    model = render(make({"model_revision": "refs-pr-1"}))["spec"]["predictor"]["model"]
    assert model["storageUri"] == "hf://Qwen/Qwen2.5-0.5B-Instruct:refs-pr-1"
    assert "--model_revision=refs-pr-1" in model["args"]
    same = make({"model_revision": "main"}, path="hf://a/b@main")
    assert render(same)["spec"]["predictor"]["model"]["storageUri"] == "hf://a/b:main"


def test_model_revision_conflicts() -> None:
    clash = make({"model_revision": "v2"}, path="hf://a/b@v1")
    assert paths(clash) == [("serve", "model_revision")]
    not_hf = make({"model_revision": "v2"}, path="s3://bucket/model")
    assert paths(not_hf) == [("serve", "model_revision")]


@pytest.mark.parametrize(
    "path",
    [
        "hf://just-a-name",
        "hf://a/b/c",
        "hf://a/b@",
        "http://example.com/model",
        "hf://a/b\n---",
        "s3://",
        "pvc://Claim/x",
        "file:///mnt/models",
    ],
)
def test_bad_paths_are_rejected(path: str) -> None:
    with pytest.raises(ValidationError):
        make(path=path)


@pytest.mark.parametrize(
    "serve",
    [
        {"max_length": 0},
        {"backend": "tgi"},
        {"huggingface_task": "question_answering"},
        {"dtype": "int8"},
        {"tensor_input_names": ["a,b"]},
        {"scaling": {"min_replicas": -1}},
        {"scaling": {"max_replicas": 0}},
        {"scaling": {"scale_target": 0}},
        {"scaling": {"scale_metric": "gpu"}},
        {"deployment_mode": "RawDeployment"},
        {"envs": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz123456"}},
        {"unknown": 1},
    ],
)
def test_invalid_serve_fields(serve: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make(serve)


def test_image_must_be_pinned() -> None:
    with pytest.raises(ValidationError):
        make(image="kserve/huggingfaceserver:latest")
    obj = render(make(image="kserve/huggingfaceserver:v0.15.2"))
    assert obj["spec"]["predictor"]["model"]["image"] == "kserve/huggingfaceserver:v0.15.2"


def test_env_secrets_and_service_account() -> None:
    doc = make(
        {
            "envs": [{"name": "ZED", "value": 1}, {"name": "ALPHA", "value": True}],
            "secrets": ["hf-token", "s3-creds"],
            "service_account_name": "models-reader",
        }
    )
    obj = render(doc)
    model = obj["spec"]["predictor"]["model"]
    assert model["env"] == [{"name": "ALPHA", "value": "true"}, {"name": "ZED", "value": "1"}]
    assert model["envFrom"] == [
        {"secretRef": {"name": "hf-token"}},
        {"secretRef": {"name": "s3-creds"}},
    ]
    assert obj["spec"]["predictor"]["serviceAccountName"] == "models-reader"


def all_objects(doc: HuggingFaceServeDocument, config: Config | None = None) -> list[Any]:
    config = config or Config()
    assert list(RUNTIME.spec_problems(doc, config)) == []
    return RUNTIME.render(doc, config)


def test_secrets_reach_the_storage_initializer_through_a_service_account() -> None:
    """kserve v0.20.0: the downloader reads the predictor ServiceAccount's secrets only."""
    isvc, account = all_objects(make({"secrets": ["hf-token", "s3-creds"]}))
    assert_valid_isvc(isvc)
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "qwen-storage"
    assert account == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "qwen-storage", "labels": {"app.kubernetes.io/name": "qwen"}},
        "automountServiceAccountToken": False,
        "secrets": [{"name": "hf-token"}, {"name": "s3-creds"}],
    }
    # The runtime container keeps them too (envFrom), as before.
    assert isvc["spec"]["predictor"]["model"]["envFrom"][0] == {"secretRef": {"name": "hf-token"}}


@pytest.mark.parametrize(
    ("serve", "spec"),
    [
        ({"secrets": ["hf-token"], "service_account_name": "mine"}, {}),
        ({"secrets": ["creds"]}, {"path": "pvc://models/qwen"}),
        ({}, {}),
    ],
    ids=["own-account", "pvc-is-not-downloaded", "no-secrets"],
)
def test_no_service_account_when_not_needed(serve: dict[str, Any], spec: dict[str, Any]) -> None:
    (isvc,) = all_objects(make(serve, **spec))
    assert isvc["spec"]["predictor"].get("serviceAccountName") == serve.get("service_account_name")


def test_the_gated_example_downloads_with_its_token(crds_dir: Path) -> None:
    from generator.pipeline import build
    from tests.conftest import EXAMPLES

    result = build(EXAMPLES, crds=[crds_dir], keep_objects=True)
    (llama,) = [m for m in result.models if m.name == "llama-kserve"]
    objects = {o["kind"]: o for o in llama.environments["prod"].objects}
    account = objects["ServiceAccount"]
    assert account["metadata"]["namespace"] == "llm-prod"
    assert account["secrets"] == [{"name": "hf-token"}]
    predictor = objects["InferenceService"]["spec"]["predictor"]
    assert predictor["serviceAccountName"] == account["metadata"]["name"]


@pytest.mark.parametrize(
    ("version", "standard", "knative"),
    [
        ("0.15", "RawDeployment", "Serverless"),
        ("v0.15.2", "RawDeployment", "Serverless"),
        ("0.16", "Standard", "Knative"),
        ("0.20", "Standard", "Knative"),
    ],
)
def test_deployment_mode_names_follow_the_kserve_version(
    version: str, standard: str, knative: str
) -> None:
    config = Config.model_validate({"kserve": {"version": version}})
    key = "serving.kserve.io/deploymentMode"
    assert render(make(), config)["metadata"]["annotations"][key] == standard
    doc = make({"deployment_mode": "Knative"})
    assert render(doc, config)["metadata"]["annotations"][key] == knative


@pytest.mark.parametrize(
    ("task", "feature", "route", "convert"),
    [
        ("embed", "TextEmbedding", "/embeddings", "embed"),
        ("score", "Reranking", "/rerank", "classify"),
    ],
)
def test_vllm_backend_tasks(task: str, feature: str, route: str, convert: str) -> None:
    doc = make({"backend": "vllm", "vllm_task": task})
    # KServe 0.20 runs vLLM 0.24, which has no --task (gone after vLLM 0.11).
    assert render(doc)["spec"]["predictor"]["model"]["args"] == [
        "--model_name=qwen",
        "--backend=vllm",
        "--runner=pooling",
        f"--convert={convert}",
    ]
    # KServe 0.16 runs vLLM 0.9.2, which knows --task and not --runner.
    older = Config.model_validate({"kserve": {"version": "0.16"}})
    assert render(doc, older)["spec"]["predictor"]["model"]["args"][2:] == [f"--task={task}"]
    endpoint = RUNTIME.endpoint(doc, Config(), "ns")
    assert endpoint.features == (feature,)
    assert endpoint.paths == (route, "/models")
    assert endpoint.base_url == "http://qwen-predictor.ns.svc.cluster.local/openai/v1"


def test_return_raw_logits_alone_is_fine() -> None:
    doc = make(
        {
            "backend": "huggingface",
            "huggingface_task": "sequence_classification",
            "args": ["--return_raw_logits"],
        }
    )
    assert paths(doc) == []
    both = make({"args": ["--return_probabilities", "--return_raw_log"]})
    assert paths(both) == [("serve", "args", 1)]
    # Spelt with '-', it is no flag of the runtime's: dropped, and said so (once).
    [found] = problems(make({"args": ["--return_probabilities", "--return-raw-logits"]}))
    assert found.message.startswith("--return-raw-logits: KServe 0.20's vLLM backend ")


# --- resources, profiles and policy ---------------------------------------------------


def test_resources_map_to_kubernetes_names() -> None:
    doc = make({"resources": {"cpu": 4, "mem": "16Gi", "gpu": 1, "disk": "50Gi"}})
    assert render(doc)["spec"]["predictor"]["model"]["resources"] == {
        "requests": {
            "cpu": "4",
            "memory": "16Gi",
            "nvidia.com/gpu": "1",
            "ephemeral-storage": "50Gi",
        },
        "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
    }


def test_zero_gpus_and_empty_resources_are_omitted() -> None:
    doc = make({"resources": {"gpu": 0}})
    assert "resources" not in render(doc)["spec"]["predictor"]["model"]


def gpu_config(**policy: Any) -> Config:
    return Config.model_validate(
        {
            "profiles": {
                "gpu-l4": {
                    "resources": {"cpu": "8", "mem": "24Gi", "gpu": 1},
                    "node_selector": {"gpu": "l4", "zone": "a"},
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "runtime_class_name": "nvidia",
                },
                "cpu": {},
            },
            "policy": policy,
        }
    )


def test_profile_supplies_defaults_and_spec_overrides_key_by_key() -> None:
    doc = make(
        {
            "profile": "gpu-l4",
            "resources": {"mem": "32Gi"},
            "node_selector": {"zone": "b", "pool": "inference"},
        }
    )
    predictor = render(doc, gpu_config())["spec"]["predictor"]
    assert predictor["model"]["resources"] == {
        "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
    }
    assert predictor["nodeSelector"] == {"gpu": "l4", "zone": "b", "pool": "inference"}
    assert predictor["tolerations"] == [
        {"operator": "Exists", "key": "nvidia.com/gpu", "effect": "NoSchedule"}
    ]
    assert predictor["runtimeClassName"] == "nvidia"
    assert RUNTIME.facts(doc, gpu_config()).gpus_per_replica == 1


def test_spec_tolerations_replace_the_profiles() -> None:
    doc = make(
        {"profile": "gpu-l4", "tolerations": [{"key": "dedicated", "value": "ml"}]},
    )
    predictor = render(doc, gpu_config())["spec"]["predictor"]
    assert predictor["tolerations"] == [{"operator": "Equal", "key": "dedicated", "value": "ml"}]


def test_unknown_profile_lists_the_known_ones() -> None:
    found = problems(make({"profile": "tpu"}), gpu_config())
    assert [p.path for p in found] == [("serve", "profile")]
    assert "cpu, gpu-l4" in found[0].message
    assert "none are defined" in problems(make({"profile": "tpu"}))[0].message


def test_gpu_policy() -> None:
    config = gpu_config(max_gpus_per_model=2)
    assert paths(make({"resources": {"gpu": 4}}), config) == [("serve", "resources", "gpu")]
    assert paths(make({"resources": {"gpu": 2}}), config) == []
    strict = gpu_config(max_gpus_per_model=0)
    assert paths(make({"profile": "gpu-l4"}), strict) == [("serve", "profile")]


def test_facts() -> None:
    facts = RUNTIME.facts(make(image="registry.local/hf:1.2"), Config())
    assert facts.images == ("registry.local/hf:1.2",)
    assert facts.gpus_per_replica == 0
    assert RUNTIME.facts(make(), Config()).images == ()


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "index"),
    [
        (["--model_name", "other"], 0),
        (["--workers=2", "--model_name=other"], 1),
        (["--model_id", "org/model"], 0),
        (["--model_dir=/tmp"], 0),
        (["--backend=vllm"], 0),
        (["--task", "embed"], 0),
        (["--http_port=9000"], 0),
        (["--grpc_port", "9001"], 0),
        (["--model-name=other"], 0),
        (["--served-model-name", "x"], 0),
        (["--dtype=half", "--model"], 1),
    ],
)
def test_owned_args_are_rejected(args: list[str], index: int) -> None:
    found = problems(make({"args": args}))
    assert [p.path for p in found] == [("serve", "args", index)]


def test_args_duplicating_typed_fields() -> None:
    assert paths(make({"dtype": "float16", "args": ["--dtype=half"]})) == [("serve", "args", 0)]
    assert paths(make({"max_length": 10, "args": ["--max-model-len", "20"]})) == [
        ("serve", "args", 0)
    ]
    # Without the typed field, the flag may come through args.
    assert paths(make({"args": ["--dtype=half", "--max-model-len=4096"]})) == []


@pytest.mark.parametrize("backend", ["vllm", "auto"])
def test_vllm_flags_spelt_with_underscores_are_refused(backend: str) -> None:
    # kserve v0.20.0 huggingfaceserver/__main__.py reads vLLM's flags with
    # parse_known_args(), which (unlike vLLM's parse_args) keeps '_': dropped silently.
    args = ["--tensor_parallel_size=2", "--gpu-memory-utilization", "0.8"]
    args.append("--enable_prefix_caching")
    found = problems(make({"backend": backend, "args": args}))
    assert [(p.path, p.message) for p in found] == [
        (
            ("serve", "args", index),
            f"{flag} would be dropped without a word: KServe's runtime passes vLLM's flags "
            "to vLLM's parser without turning '_' into '-' (as `vllm serve` does); "
            f"write {flag.replace('_', '-')}",
        )
        for index, flag in ((0, "--tensor_parallel_size"), (3, "--enable_prefix_caching"))
    ]


@pytest.mark.parametrize(
    "args",
    [
        # KServe's and huggingfaceserver's own flags are defined with '_'.
        ["--max_model_len=4096", "--trust_remote_code", "--disable_log_requests"],
        ["--enable_docs_url=true", "--max-log-len=100", "--tensor-parallel-size=2"],
        # A value may hold '_'; only the flag's name counts.
        ["--load-format=runai_streamer", "--kv-cache-dtype", "fp8_e4m3"],
    ],
)
def test_underscores_allowed_where_the_runtime_reads_them(args: list[str]) -> None:
    assert paths(make({"backend": "vllm", "args": args})) == []


def test_underscores_on_the_hugging_face_backend_are_its_own() -> None:
    # No vLLM parser there: the flag is huggingfaceserver's spelling or unknown either way.
    serve = {"backend": "huggingface", "huggingface_task": "fill_mask"}
    assert paths(make({**serve, "args": ["--return_token_type_ids"]})) == []


HF_BACKEND = {"backend": "huggingface", "huggingface_task": "fill_mask"}
ON_020 = "KServe 0.20's Hugging Face backend"


@pytest.mark.parametrize(
    ("args", "index", "message"),
    [
        (
            ["--max-model-len=128"],
            0,
            f"--max-model-len: {ON_020} takes no such flag and drops it without a word "
            "(it spells this flag with '_': write --max_model_len)",
        ),
        (
            ["--enable_docs_url=false", "--timeout_keep_alive=5"],
            1,
            f"--timeout_keep_alive: {ON_020} takes no such flag and drops it without a word "
            "(it spells this flag with '-': write --timeout-keep-alive)",
        ),
        (
            ["--return_probabilites"],
            0,
            f"--return_probabilites: {ON_020} takes no such flag and drops it without a word "
            "(did you mean --return_probabilities?)",
        ),
        (
            ["--max_model_len 512"],
            0,
            f"--max_model_len 512: {ON_020} takes no such flag and drops it without a word; "
            "a flag and its value are two items of args",
        ),
        (
            ["--max_l=4"],
            0,
            f"--max_l abbreviates several flags of {ON_020} (--max_length, --max_log_len): "
            "the server exits at start-up; write the flag out",
        ),
        (
            ["-x"],
            0,
            "-x: the Hugging Face backend has no short flags; it drops -x without a word",
        ),
        (
            ["--workers=2", "--", "--enable_docs_url"],
            1,
            "-- ends the flags: no item after it is read as one, and none of them has any "
            "effect (the runtime says nothing)",
        ),
        # Values, as the release's parser (runtimes/kserve_flags.json) takes them.
        (
            ["--trust_remote_code=true"],
            0,
            f"--trust_remote_code takes no value in {ON_020}: its parser refuses "
            "--trust_remote_code= and the server exits at start-up",
        ),
        (
            ["--enable_docs_url", "--workers=2"],
            0,
            f"--enable_docs_url needs a value in {ON_020}: its parser refuses it without one "
            "and the server exits at start-up",
        ),
        (
            ["--protocol", "v3"],
            1,
            f"'v3' is not a value --protocol takes in {ON_020} (grpc-v2, v1, v2): the server "
            "exits at start-up",
        ),
    ],
)
def test_hugging_face_backend_refuses_what_its_parser_drops(
    args: list[str], index: int, message: str
) -> None:
    found = problems(make({**HF_BACKEND, "args": args}))
    assert [(p.path, p.message, p.severity) for p in found] == [
        (("serve", "args", index), message, "error")
    ]


@pytest.mark.parametrize("backend", ["huggingface", "vllm", "auto"])
@pytest.mark.parametrize("arg", ["--help", "--hel", "-h", "--help=all"])
def test_the_help_flag_is_an_error_on_every_backend(backend: str, arg: str) -> None:
    # KServe's own parser reads the args first, whatever the backend, and exits.
    serve = HF_BACKEND if backend == "huggingface" else {"backend": backend}
    found = problems(make({**serve, "args": [arg]}))
    assert [(p.path, p.message) for p in found] == [
        (
            ("serve", "args", 0),
            f"{arg} asks for the help: the server exits at start-up instead of serving",
        )
    ]


@pytest.mark.parametrize(
    "args",
    [
        # Its own flags, a unique abbreviation (argparse takes it), values of any shape.
        ["--workers", "2", "--max-log-len=100", "--return_prob", "--tensor_input_names=a,b"],
        ["--max_model_len", "-1", "--model_revision", "main branch"],
    ],
)
def test_hugging_face_backend_takes_its_own_flags(args: list[str]) -> None:
    assert paths(make({**HF_BACKEND, "args": args})) == []


VLLM_020 = "KServe 0.20's vLLM backend (vLLM 0.24.0)"


@pytest.mark.parametrize("backend", ["vllm", "auto"])
@pytest.mark.parametrize(
    ("args", "index", "message"),
    [
        (
            ["--gpu-memory-utilisation=0.8"],
            0,
            f"--gpu-memory-utilisation: {VLLM_020} takes no such flag and drops it without a "
            "word (did you mean --gpu-memory-utilization?)",
        ),
        (
            # No JSON `.key` in parse_known_args(): that is parse_args()'s.
            ["--compilation-config.mode=3"],
            0,
            f"--compilation-config.mode: {VLLM_020} takes no such flag and drops it without a "
            "word (did you mean --compilation-config?)",
        ),
        (
            ["--max_log_len=100"],
            0,
            f"--max_log_len: {VLLM_020} takes no such flag and drops it without a word (it "
            "spells this flag with '-': write --max-log-len)",
        ),
        (
            ["--max-num", "8"],
            0,
            f"--max-num abbreviates several flags of {VLLM_020} (--max-num-batched-tokens, "
            "--max-num-partial-prefills, --max-num-seqs): the server exits at start-up; write "
            "the flag out",
        ),
        (
            ["--enforce-eager=true"],
            0,
            f"--enforce-eager takes no value in {VLLM_020}: its parser refuses "
            "--enforce-eager= and the server exits at start-up",
        ),
        (
            ["--enable-prefix-caching", "--max-model-len"],
            1,
            f"--max-model-len needs a value in {VLLM_020}: its parser refuses it without one "
            "and the server exits at start-up",
        ),
        (
            ["--dtype", "bf16"],
            1,
            f"'bf16' is not a value --dtype takes in {VLLM_020} (auto, bfloat16, float, "
            "float16, float32, half): the server exits at start-up",
        ),
    ],
)
def test_vllm_backend_refuses_what_its_parser_drops_or_exits_on(
    backend: str, args: list[str], index: int, message: str
) -> None:
    found = problems(make({"backend": backend, "args": args}))
    assert [(p.path, p.message) for p in found] == [(("serve", "args", index), message)]


@pytest.mark.parametrize(
    "args",
    [
        # vLLM's flags and KServe's own; a unique abbreviation; values of any shape.
        ["--max-num-seq=4", "--enable-prefix-caching", "--max_model_len=4096"],
        ["--gpu-memory-utilization", "0.85", "--chat-template={{ x }}", "--enable_docs_url=1"],
    ],
)
def test_vllm_backend_takes_the_flags_of_its_parser(args: list[str]) -> None:
    assert paths(make({"backend": "vllm", "args": args})) == []


def test_vllm_backend_of_an_unlisted_release_judges_only_the_spelling() -> None:
    # KServe 0.16 runs vLLM 0.9.2, whose parser servegen has not listed.
    config = Config.model_validate({"kserve": {"version": "0.16"}})
    doc = make({"backend": "vllm", "args": ["--gpu-memory-utilisation=0.8", "--max_num_seqs=4"]})
    assert paths(doc, config) == [("serve", "args", 1)]


@pytest.mark.parametrize("minor", sorted(kserve_parsers()))
def test_listed_parsers_agree_with_the_flags_read_from_kserve_source(minor: int) -> None:
    # runtimes/kserve_flags.json comes from the server's parser; hf_backend_flags() from
    # each release's source files: the two must name the same flags (argparse adds -h).
    parsers = kserve_parsers()[minor]
    assert parsers["huggingface"][1].flags == hf_backend_flags(minor) | {"--help"}
    # Every KServe flag but the Hugging Face backend's own is on the vLLM backend too.
    own = {"--task", "--dtype", "--max_log_len", "--max-log-len"}
    assert hf_backend_flags(minor) - own <= parsers["vllm"][1].flags


@pytest.mark.parametrize(
    ("version", "flag", "ok"),
    [
        ("0.15", "--return_raw_logits", False),
        ("0.16", "--return_raw_logits", True),
        ("0.16", "--event-loop=uvloop", False),
        ("0.17", "--event-loop=uvloop", True),
        ("0.17", "--timeout-keep-alive=5", False),
        ("v0.18.1", "--timeout-keep-alive=5", True),
        ("0.19", "--return_offsets_mapping", True),
    ],
)
def test_hugging_face_backend_flags_follow_the_kserve_release(
    version: str, flag: str, ok: bool
) -> None:
    config = Config.model_validate({"kserve": {"version": version}})
    assert (paths(make({**HF_BACKEND, "args": [flag]}), config) == []) is ok


@pytest.mark.parametrize(("version", "release"), [("0.14", "0.14"), ("v0.21.0", "0.21")])
def test_hugging_face_backend_outside_the_checked_releases_warns(
    version: str, release: str
) -> None:
    # That release may define the flag: said, but the spec still renders.
    config = Config.model_validate({"kserve": {"version": version}})
    [found] = problems(make({**HF_BACKEND, "args": ["--no_such_flag"]}), config)
    assert (found.severity, found.message) == (
        "warning",
        f"--no_such_flag: KServe {release}'s Hugging Face backend takes no such flag and "
        "drops it without a word",
    )


# --- check() rules --------------------------------------------------------------------


def test_min_replicas_above_max() -> None:
    doc = make({"scaling": {"min_replicas": 3, "max_replicas": 2}})
    assert paths(doc) == [("serve", "scaling", "min_replicas")]


def test_scaling_renders_when_set() -> None:
    doc = make(
        {
            "scaling": {
                "min_replicas": 1,
                "max_replicas": 4,
                "scale_metric": "cpu",
                "scale_target": 75,
            }
        }
    )
    predictor = render(doc)["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 75)


def test_scale_to_zero_needs_knative() -> None:
    assert paths(make({"scaling": {"min_replicas": 0}})) == [("serve", "scaling", "min_replicas")]
    doc = make({"deployment_mode": "Knative", "scaling": {"min_replicas": 0}})
    obj = render(doc)
    assert obj["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    assert obj["spec"]["predictor"]["minReplicas"] == 0


@pytest.mark.parametrize(
    ("mode", "metric", "ok"),
    [
        ("Standard", "cpu", True),
        ("Standard", "memory", True),
        ("Standard", "concurrency", False),
        ("Standard", "rps", False),
        ("Knative", "concurrency", True),
        ("Knative", "rps", True),
        ("Knative", "cpu", False),
        ("Knative", "memory", False),
    ],
)
def test_scale_metric_matches_the_autoscaler(mode: str, metric: str, ok: bool) -> None:
    doc = make({"deployment_mode": mode, "scaling": {"scale_metric": metric, "scale_target": 70}})
    assert paths(doc) == ([] if ok else [("serve", "scaling", "scale_metric")])


def test_standard_scale_target_is_a_percentage() -> None:
    assert paths(make({"scaling": {"scale_target": 150}})) == [("serve", "scaling", "scale_target")]
    knative = {"deployment_mode": "Knative", "scaling": {"scale_target": 150}}
    assert paths(make(knative)) == []


@pytest.mark.parametrize(
    ("backend", "ok"), [("vllm", False), ("auto", False), ("huggingface", True)]
)
def test_huggingface_task_needs_the_huggingface_backend(backend: str, ok: bool) -> None:
    doc = make({"backend": backend, "huggingface_task": "text_embedding"})
    assert paths(doc) == ([] if ok else [("serve", "huggingface_task")])


def test_inferenceservice_name_rules() -> None:
    assert paths(make(name="7b-chat")) == [("name",)]
    long = "m" * 54
    assert paths(make(name=long)) == [("name",)]
    assert paths(make(name="m" * 53)) == []
    assert paths(make({"deployment_mode": "Knative"}, name="m" * 48)) == [("name",)]


def test_openai_route_prefix_must_be_a_path() -> None:
    bad = make({"envs": {"KSERVE_OPENAI_ROUTE_PREFIX": "openai v1"}})
    assert paths(bad) == [("serve", "envs", "KSERVE_OPENAI_ROUTE_PREFIX")]


# --- endpoint -------------------------------------------------------------------------


def test_endpoint_for_text_generation() -> None:
    endpoint = RUNTIME.endpoint(make(model_name="qwen-chat"), Config(), "llm")
    assert endpoint.base_url == "http://qwen-predictor.llm.svc.cluster.local/openai/v1"
    assert endpoint.model == "qwen-chat"
    assert endpoint.features == ("TextGeneration",)
    assert endpoint.to_json()["endpoints"] == [
        "http://qwen-predictor.llm.svc.cluster.local/openai/v1/chat/completions",
        "http://qwen-predictor.llm.svc.cluster.local/openai/v1/completions",
        "http://qwen-predictor.llm.svc.cluster.local/openai/v1/models",
    ]
    t2t = make({"backend": "huggingface", "huggingface_task": "text2text_generation"})
    t2t_endpoint = RUNTIME.endpoint(t2t, Config(), "llm")
    assert t2t_endpoint.features == ("TextGeneration",)
    # Encoder-decoder models have no chat template: no chat route in the catalog.
    assert t2t_endpoint.paths == ("/completions", "/models")


def test_endpoint_for_embeddings() -> None:
    doc = make({"backend": "huggingface", "huggingface_task": "text_embedding"})
    endpoint = RUNTIME.endpoint(doc, Config(), "ns")
    assert endpoint.features == ("TextEmbedding",)
    assert endpoint.to_json()["endpoints"] == [
        "http://qwen-predictor.ns.svc.cluster.local/openai/v1/embeddings",
        "http://qwen-predictor.ns.svc.cluster.local/openai/v1/models",
    ]


def test_endpoint_for_predictive_tasks_uses_open_inference() -> None:
    doc = make(
        {"backend": "huggingface", "huggingface_task": "fill_mask"},
        model_name="bert",
    )
    endpoint = RUNTIME.endpoint(doc, Config(), "ns")
    assert endpoint.base_url == "http://qwen-predictor.ns.svc.cluster.local"
    assert endpoint.features == ("fill_mask",)
    assert endpoint.to_json()["endpoints"] == [
        "http://qwen-predictor.ns.svc.cluster.local/v2/models/bert/infer",
        "http://qwen-predictor.ns.svc.cluster.local/v1/models/bert:predict",
    ]
    ts = make({"backend": "huggingface", "huggingface_task": "time_series_forecast"})
    assert RUNTIME.endpoint(ts, Config(), "ns").paths == (
        "/v1/timeseries/forecast",
        "/v1/timeseries/models",
    )


@pytest.mark.parametrize(("prefix", "base"), [("", "/v1"), ("/llm", "/llm/v1")])
def test_endpoint_follows_the_openai_route_prefix(prefix: str, base: str) -> None:
    doc = make({"envs": {"KSERVE_OPENAI_ROUTE_PREFIX": prefix}})
    assert paths(doc) == []
    endpoint = RUNTIME.endpoint(doc, Config(), "ns")
    assert endpoint.base_url == f"http://qwen-predictor.ns.svc.cluster.local{base}"


def test_routes_follow_the_kserve_release() -> None:
    """time_series_forecast and its routes came in 0.16, /rerank in 0.15.1."""
    ts = make({"backend": "huggingface", "huggingface_task": "time_series_forecast"})
    old = Config.model_validate({"kserve": {"version": "0.15"}})
    assert [p.message for p in RUNTIME.spec_problems(ts, old)] == [
        "time_series_forecast needs KServe 0.16 or later (kserve.version is 0.15)"
    ]
    rerank = make({"backend": "vllm", "vllm_task": "score"})
    first = Config.model_validate({"kserve": {"version": "0.15.0"}})
    assert [p.path for p in RUNTIME.spec_problems(rerank, first)] == [("serve", "vllm_task")]
    patched = Config.model_validate({"kserve": {"version": "0.15.1"}})
    assert list(RUNTIME.spec_problems(rerank, patched)) == []
    # A release written without its patch is taken as the newest of its minor.
    assert list(RUNTIME.spec_problems(rerank, old)) == []


# --- hostile input --------------------------------------------------------------------

HOSTILE = [
    "line1\nline2",
    "---",
    "a\n---\nkind: Secret",
    "{{ name }}",
    "{% if true %}x{% endif %}",
    "'single' \"double\"",
    "&a",
    "*a",
    "!!python/object:os.system",
    "key: value",
    "- item",
    "# comment",
    "\u2028sep\x85",
    "tab\there",
]


_LINE_BREAK_OR_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_strings_survive_verbatim_or_are_refused(value: str) -> None:
    # (As an item of its own, a value like `---` is a flag the runtime lacks: refused.)
    serve = {"envs": {"HOSTILE": value}, "args": [f"--chat-template={value}"]}
    if _LINE_BREAK_OR_CONTROL.search(value):  # the engine would refuse it
        with pytest.raises(ValidationError, match="control and line-break"):
            make(serve)
        return
    doc = make(serve)
    obj = render(doc)
    model = obj["spec"]["predictor"]["model"]
    assert model["env"] == [{"name": "HOSTILE", "value": value}]
    assert model["args"][-1:] == [f"--chat-template={value}"]
    assert obj["metadata"]["name"] == "qwen"


def test_hostile_labels_cannot_escape() -> None:
    with pytest.raises(ValidationError):
        HuggingFaceServeDocument.model_validate(
            {
                "kind": "huggingfaceserve",
                "name": "x",
                "labels": {"a": "b\n---\nkind: Secret"},
                "spec": {"path": "hf://a/b"},
            }
        )


# --- CRD validation -------------------------------------------------------------------


def test_crd_validator_is_not_vacuous() -> None:
    obj = render(make())
    broken = copy.deepcopy(obj)
    broken["spec"]["predictor"]["model"]["bogusField"] = 1
    assert not isvc_validator().is_valid(broken)
    typo = copy.deepcopy(obj)
    typo["spec"]["predictor"]["scaleMetric"] = "gpu"
    assert not isvc_validator().is_valid(typo)


def test_everything_at_once_is_valid_against_the_crd() -> None:
    doc = make(
        {
            "backend": "vllm",
            "max_length": 8192,
            "dtype": "half",
            "args": ["--gpu-memory-utilization=0.9"],
            "resources": {"cpu": "500m", "mem": "8Gi", "gpu": 2, "disk": "40Gi"},
            "profile": "gpu-l4",
            "envs": {"VLLM_LOGGING_LEVEL": "INFO"},
            "secrets": ["hf-token"],
            "service_account_name": "sa",
            "node_selector": {"x": "y"},
            "tolerations": [
                {
                    "key": "k",
                    "operator": "Equal",
                    "value": "v",
                    "effect": "NoExecute",
                    "toleration_seconds": 30,
                }
            ],
            "scaling": {
                "min_replicas": 0,
                "max_replicas": 3,
                "scale_metric": "rps",
                "scale_target": 5,
            },
            "deployment_mode": "Knative",
        },
        image="kserve/huggingfaceserver:v0.15.2-gpu",
        model_name="big",
    )
    obj = render(doc, gpu_config())
    assert obj["spec"]["predictor"]["tolerations"] == [
        {
            "operator": "Equal",
            "key": "k",
            "value": "v",
            "effect": "NoExecute",
            "tolerationSeconds": 30,
        }
    ]


def test_node_selector_must_be_labels() -> None:
    with pytest.raises(ValidationError):
        make({"node_selector": {"zone": "a\n---\nkind: Secret"}})


@pytest.mark.parametrize(
    ("version", "warned"),
    [("0.14", True), ("0.14.9", True), ("0.15", False), ("v0.15.0", False), ("0.20", False),
     ("0.20.9", False), ("0.21", True), ("0.21.0", True)],
)  # fmt: skip
def test_a_kserve_release_outside_the_checked_ones_is_a_warning(version: str, warned: bool) -> None:
    config = Config.model_validate({"kserve": {"version": version}})
    found = [(p.path, p.severity) for p in runtimes.config_problems(config)]
    assert found == ([(("kserve", "version"), "warning")] if warned else [])


def test_the_kserve_release_warning_is_positioned_and_does_not_fail(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "servegen.yaml").write_text("kserve:\n  version: '0.21'\n")
    (tmp_path / "specs" / "m.yaml").write_text(
        "kind: huggingfaceserve\nname: m\nspec:\n  path: hf://org/model\n"
    )
    validated = validate_repository(tmp_path)
    assert validated.ok and [s.name for s in validated.specs] == ["m"]
    [diag] = validated.diagnostics
    assert (diag.path, diag.line, diag.col, diag.severity) == ("servegen.yaml", 2, 12, "warning")
    assert diag.message.startswith(
        "KServe 0.21 is outside the releases servegen checks huggingfaceserve specs against "
        "(0.15 to 0.20)"
    )


def test_the_parsers_table_is_read_for_a_spec_with_args_only() -> None:
    # A spec without args has nothing for KServe's parsers to read: judging it must not
    # cost the table's load (one per process, on a cold `validate`'s path).
    kserve_parsers.cache_clear()
    try:
        assert problems(make({"backend": "vllm"})) == []
        assert kserve_parsers.cache_info().currsize == 0
        assert problems(make({"backend": "vllm", "args": ["--max-model-len=4096"]})) == []
        assert kserve_parsers.cache_info().currsize == 1
    finally:
        kserve_parsers.cache_clear()
