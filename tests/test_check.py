"""Tests for generator.check: rendered objects judged the way the API server would."""

from __future__ import annotations

import copy
import datetime
import types
from pathlib import Path

import pytest

from generator.check import (
    CheckResult,
    ManifestChecker,
    ObjectProblem,
    format_path,
    resolve_kubernetes_version,
)
from generator.errors import ServegenError
from tests.objects import (
    deployment,
    git_repository,
    hpa,
    inference_service,
    kubeai_model,
    kustomization,
    pdb,
    service,
)

K8S = "1.33"


@pytest.fixture(scope="module")
def validator(crds_dir: Path) -> ManifestChecker:
    return ManifestChecker(K8S, [crds_dir])


@pytest.fixture(scope="module")
def builtin_only() -> ManifestChecker:
    return ManifestChecker(K8S)


# --------------------------------------------------------------------------- objects


def problems_at(result: CheckResult) -> dict[str, str]:
    return {p.path: p.message for p in result.problems}


# --------------------------------------------------------------------------- built-in kinds


def test_valid_builtin_objects_pass(builtin_only: ManifestChecker) -> None:
    objects = [
        deployment(),
        service(),
        hpa(),
        pdb(),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}},
    ]
    assert builtin_only.check(objects) == CheckResult(problems=(), skipped_kinds=())


def test_bundled_crds_are_read_when_a_custom_resource_is_first_met(tmp_path: Path) -> None:
    """Built-in kinds never wait for the bundled CRDs; a custom resource reads them."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n", encoding="utf-8")
    checker = ManifestChecker(K8S, bundled_crds=[broken])
    assert checker.check([deployment(), service()]).problems == ()
    with pytest.raises(ServegenError, match=r"broken\.yaml"):
        checker.check([kubeai_model()])


def test_a_broken_configured_crd_is_reported_before_any_object(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n", encoding="utf-8")
    with pytest.raises(ServegenError, match=r"broken\.yaml"):
        ManifestChecker(K8S, [broken])


def test_unknown_field_is_reported_at_its_exact_path(builtin_only: ManifestChecker) -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    result = builtin_only.check([obj])
    assert result.problems == (
        ObjectProblem(
            "apps/v1",
            "Deployment",
            "llama",
            "spec.template.spec.containers[0].imagePullPolcy",
            'unknown field "imagePullPolcy"',
        ),
    )


def test_wrong_type_is_reported_with_expected_and_actual_type(
    builtin_only: ManifestChecker,
) -> None:
    obj = deployment()
    obj["spec"]["replicas"] = "3"
    assert problems_at(builtin_only.check([obj])) == {
        "spec.replicas": 'must be integer, not string ("3")'
    }


@pytest.mark.parametrize(
    ("path", "fits", "beyond", "message"),
    [
        (("spec", "replicas"), (1 << 31) - 1, 1 << 31, "greater than the maximum of 2147483647"),
        (("spec", "replicas"), -(1 << 31), -(1 << 31) - 1, "less than the minimum of -2147483648"),
        (
            ("spec", "template", "spec", "terminationGracePeriodSeconds"),
            (1 << 63) - 1,
            1 << 63,
            "greater than the maximum of 9223372036854775807",
        ),
    ],
    ids=["int32 max", "int32 min", "int64 max"],
)
def test_integers_must_fit_the_go_type_the_api_server_decodes_into(
    builtin_only: ManifestChecker, path: tuple[str, ...], fits: int, beyond: int, message: str
) -> None:
    """`format: int32`/`int64` are bounds: the API server cannot decode 2^31 replicas."""
    objects = []
    for value in (fits, beyond):
        obj = deployment()
        node = obj
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        objects.append(obj)
    assert builtin_only.check(objects[:1]).problems == ()
    found = problems_at(builtin_only.check(objects[1:]))
    assert list(found) == [".".join(path)]
    assert found[".".join(path)].endswith(message)


def test_missing_required_field_is_reported_at_the_field(builtin_only: ManifestChecker) -> None:
    obj = deployment()
    del obj["spec"]["template"]["spec"]["containers"][0]["name"]
    assert problems_at(builtin_only.check([obj])) == {
        "spec.template.spec.containers[0].name": "required field is missing"
    }


def test_all_problems_of_all_objects_are_collected(builtin_only: ManifestChecker) -> None:
    broken = deployment("one")
    broken["spec"]["replicas"] = "3"
    broken["spec"]["bogus"] = True
    del broken["spec"]["selector"]
    other = service("two")
    other["spec"]["ports"][0]["port"] = "eighty"
    result = builtin_only.check([broken, service(), other])
    assert {(p.name, p.path) for p in result.problems} == {
        ("one", "spec.replicas"),
        ("one", "spec.bogus"),
        ("one", "spec.selector"),
        ("two", "spec.ports[0].port"),
    }


def test_int_or_string_accepts_both_and_null_but_not_a_float(
    builtin_only: ManifestChecker,
) -> None:
    ok = [deployment("a"), deployment("b"), deployment("c")]
    ok[0]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = "25%"
    ok[1]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = None
    ok[2]["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 2
    assert builtin_only.check(ok).problems == ()
    bad = deployment()
    bad["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = 1.5
    assert problems_at(builtin_only.check([bad])) == {
        "spec.strategy.rollingUpdate.maxSurge": "must be string or integer, not number (1.5)"
    }


def test_invalid_names_are_rejected_per_kind(builtin_only: ManifestChecker) -> None:
    bad_deployment = deployment("Llama_3")
    # "8b-chat" is a fine DNS-1123 subdomain, but Service names must start with a letter.
    bad_service = service("8b-chat")
    result = builtin_only.check([bad_deployment, bad_service, deployment("8b-chat")])
    messages = {(p.kind, p.path): p.message for p in result.problems}
    assert set(messages) == {("Deployment", "metadata.name"), ("Service", "metadata.name")}
    assert "DNS-1123 subdomain" in messages[("Deployment", "metadata.name")]
    assert "DNS-1035 label" in messages[("Service", "metadata.name")]


def test_missing_name_is_an_error(builtin_only: ManifestChecker) -> None:
    obj = service()
    del obj["metadata"]["name"]
    assert problems_at(builtin_only.check([obj])) == {"metadata.name": "required field is missing"}


def test_label_keys_and_values_are_checked_everywhere(builtin_only: ManifestChecker) -> None:
    obj = deployment()
    obj["metadata"]["labels"]["model"] = "meta-llama/Llama-3.1-8B"
    obj["spec"]["template"]["metadata"]["labels"]["bad key"] = "x"
    found = problems_at(builtin_only.check([obj]))
    assert set(found) == {
        "metadata.labels.model",
        'spec.template.metadata.labels["bad key"]',
    }
    assert found["metadata.labels.model"].startswith('"meta-llama/Llama-3.1-8B" must be')
    assert found['spec.template.metadata.labels["bad key"]'].startswith(
        'key "bad key" must be a qualified name'
    )


def test_unknown_builtin_kind_is_an_error(builtin_only: ManifestChecker) -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "x"}}
    assert builtin_only.check([obj]).problems == (
        ObjectProblem(
            "apps/v1",
            "Deploymnet",
            "x",
            "kind",
            "no schema for apps/v1/Deploymnet in Kubernetes 1.33",
        ),
    )


def test_objects_without_apiversion_or_values_json_cannot_hold_are_problems(
    builtin_only: ManifestChecker,
) -> None:
    no_kind = {"apiVersion": "v1", "metadata": {"name": "x"}}
    odd_value = service()
    odd_value["metadata"]["annotations"] = {"at": datetime.datetime(2025, 1, 1)}
    # Any Mapping will do, not only dicts.
    proxy = types.MappingProxyType({**service("proxy"), "spec": types.MappingProxyType({})})
    result = builtin_only.check([no_kind, odd_value, proxy])
    assert [(p.path, p.message.split(":")[0]) for p in result.problems] == [
        ("kind", "required field is missing or not a string"),
        ("", "not representable as JSON"),
    ]


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("1.33", (1, 33)), ("v1.33.2", (1, 33)), ("1.33.0-gke.100", (1, 33)), ("1.99", None)],
)
def test_version_resolution_picks_newest_bundled_not_newer(
    requested: str, expected: tuple[int, int] | None
) -> None:
    resolved = resolve_kubernetes_version(requested)
    if expected is not None:
        assert resolved == expected
    else:  # newer than anything bundled: the newest bundled version
        assert resolved[0] == 1 and 33 < resolved[1] < 99


@pytest.mark.parametrize("requested", ["1.10", "0.9", "banana", "1"])
def test_unsupported_or_malformed_version_is_a_servegen_error(requested: str) -> None:
    with pytest.raises(ServegenError, match=r"(not supported|invalid kubernetes_version)"):
        ManifestChecker(requested)


def test_schema_version_differs_by_kubernetes_version() -> None:
    # Sidecar containers' restartPolicy appeared in 1.28's Container schema.
    obj = deployment()
    obj["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "side", "image": "busybox", "restartPolicy": "Always"}
    ]
    assert ManifestChecker("1.33").check([obj]).problems == ()
    old = ManifestChecker("1.25").check([obj])
    assert [p.path for p in old.problems] == ["spec.template.spec.initContainers[0].restartPolicy"]


# --------------------------------------------------------------------------- CRDs


def test_valid_custom_resources_pass(validator: ManifestChecker) -> None:
    objects = [kubeai_model(), inference_service(), git_repository(), kustomization(), hpa()]
    assert validator.check(objects) == CheckResult(problems=(), skipped_kinds=())


def test_kubeai_model_unknown_field_and_bad_enum(validator: ManifestChecker) -> None:
    obj = kubeai_model()
    obj["spec"]["engine"] = "TGI"
    obj["spec"]["gpus"] = 1
    found = problems_at(validator.check([obj]))
    assert set(found) == {"spec.engine", "spec.gpus"}
    assert found["spec.gpus"] == 'unknown field "gpus"'
    assert found["spec.engine"].startswith('"TGI" is not one of:')
    assert '"VLLM"' in found["spec.engine"]


def test_a_kubeai_model_int32_field_is_bounded_too(validator: ManifestChecker) -> None:
    """KubeAI decodes maxReplicas into an int32 (format: int32 in its CRD)."""
    fits, beyond = kubeai_model("a"), kubeai_model("b")
    fits["spec"]["maxReplicas"] = (1 << 31) - 1
    beyond["spec"]["maxReplicas"] = 1 << 31
    assert validator.check([fits]).problems == ()
    assert problems_at(validator.check([beyond])) == {
        "spec.maxReplicas": "2147483648 is greater than the maximum of 2147483647"
    }


def test_kubeai_model_required_field_without_default_is_required(
    validator: ManifestChecker,
) -> None:
    # url is required and has no default; targetRequests is required but defaulted by the
    # API server, so leaving it out is fine.
    obj = kubeai_model()
    del obj["spec"]["url"]
    assert problems_at(validator.check([obj])) == {"spec.url": "required field is missing"}


def test_kserve_inference_service_problems(validator: ManifestChecker) -> None:
    obj = inference_service()
    model = obj["spec"]["predictor"]["model"]
    model["storageUri"] = 42
    del model["modelFormat"]["name"]
    model["resources"]["limits"]["memory"] = "lots"
    obj["spec"]["predictor"]["modle"] = {}
    found = problems_at(validator.check([obj]))
    assert set(found) == {
        "spec.predictor.model.storageUri",
        "spec.predictor.model.modelFormat.name",
        "spec.predictor.model.resources.limits.memory",
        "spec.predictor.modle",
    }
    assert found["spec.predictor.model.storageUri"] == "must be string, not integer (42)"
    assert found["spec.predictor.model.resources.limits.memory"].startswith('"lots" does not match')


def test_flux_objects_are_judged_too(validator: ManifestChecker) -> None:
    repo = git_repository()
    repo["spec"]["interval"] = "every minute"
    kust = kustomization()
    kust["spec"]["sourceRef"]["kind"] = "HelmRepository"
    found = problems_at(validator.check([repo, kust]))
    assert set(found) == {"spec.interval", "spec.sourceRef.kind"}


def test_custom_resource_name_must_be_dns_subdomain(validator: ManifestChecker) -> None:
    result = validator.check([kubeai_model("Llama-3.1-8B")])
    assert [p.path for p in result.problems] == ["metadata.name"]
    assert "must be a DNS-1123 subdomain" in result.problems[0].message


def test_unconfigured_crd_is_skipped_once_not_an_error(builtin_only: ManifestChecker) -> None:
    result = builtin_only.check([kubeai_model("a"), kubeai_model("b"), git_repository()])
    assert result.problems == ()
    assert result.skipped_kinds == (
        "kubeai.org/v1/Model",
        "source.toolkit.fluxcd.io/v1/GitRepository",
    )


def test_unserved_version_of_a_configured_crd_is_an_error(validator: ManifestChecker) -> None:
    obj = kubeai_model()
    obj["apiVersion"] = "kubeai.org/v2"
    result = validator.check([obj])
    assert result.skipped_kinds == ()
    assert [p.message for p in result.problems] == [
        "the configured CRD for kubeai.org Model does not serve version v2 (served: v1)"
    ]


# --------------------------------------------------------------------------- paths


def test_format_path_quotes_keys_that_are_not_identifiers() -> None:
    assert format_path(["spec", "containers", 0, "image"]) == "spec.containers[0].image"
    assert (
        format_path(["metadata", "labels", "app.kubernetes.io/name"])
        == 'metadata.labels["app.kubernetes.io/name"]'
    )
    assert format_path([]) == ""


# --------------------------------------------------------------------------- batches
# (Throughput is measured by bench/bench_limits.py, not asserted here.)


def test_a_large_batch_validates_clean(validator: ManifestChecker) -> None:
    mix = [deployment(), service(), hpa(), kubeai_model(), inference_service()]
    objects = [copy.deepcopy(o) for _ in range(1000) for o in mix]
    result = validator.check(objects)
    assert result.problems == ()
