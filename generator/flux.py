"""Flux objects that make a cluster follow one environment of the deploy branch.

Per environment: a GitRepository on the deploy branch and a Kustomization applying
./clusters/<env> with pruning and health checks that work for these kinds:
Deployments and InferenceServices report kstatus conditions; KubeAI Models have no
conditions, so they get a CEL `healthCheckExprs` on status.replicas.ready, and Models
that may scale to zero are not health-checked at all (they would never become ready).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generator.config import Config, Flux
from generator.render import ModelRender

KUBEAI_MODEL_READY = "has(status.replicas) && status.replicas.ready >= 1"
CHECKED_KINDS = {"Deployment", "InferenceService", "Model"}


def _health_checks(models: Sequence[ModelRender], environment: str) -> list[dict[str, str]]:
    checks = []
    for model in models:
        rendered = model.environments.get(environment)
        if rendered is None:
            continue
        for obj in rendered.objects:
            if obj["kind"] not in CHECKED_KINDS:
                continue
            if obj["kind"] == "Model" and int(obj["spec"].get("minReplicas", 0)) < 1:
                continue  # scale-to-zero: never "ready" while idle
            checks.append(
                {
                    "apiVersion": obj["apiVersion"],
                    "kind": obj["kind"],
                    "name": obj["metadata"]["name"],
                    "namespace": obj["metadata"]["namespace"],
                }
            )
    return sorted(checks, key=lambda c: (c["kind"], c["namespace"], c["name"]))


def flux_objects(
    models: Sequence[ModelRender], config: Config, environment: str
) -> list[dict[str, Any]]:
    flux: Flux | None = config.flux
    if flux is None:
        return []
    name = f"{flux.name}-{environment}"
    source: dict[str, Any] = {
        "interval": flux.interval,
        "url": flux.url,
        "ref": {"branch": config.deploy.branch},
    }
    if flux.secret_ref:
        source["secretRef"] = {"name": flux.secret_ref}
    checks = _health_checks(models, environment)
    spec: dict[str, Any] = {
        "interval": flux.interval,
        "path": f"./clusters/{environment}",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": name},
        "timeout": flux.timeout,
        "wait": False,
    }
    if flux.depends_on:
        spec["dependsOn"] = [{"name": dep} for dep in flux.depends_on]
    if checks:
        spec["healthChecks"] = checks
    if any(c["kind"] == "Model" for c in checks):
        spec["healthCheckExprs"] = [
            {"apiVersion": "kubeai.org/v1", "kind": "Model", "current": KUBEAI_MODEL_READY}
        ]
    metadata = {
        "name": name,
        "namespace": flux.namespace,
        "labels": {"app.kubernetes.io/managed-by": "servegen"},
    }
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": source,
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": metadata,
            "spec": spec,
        },
    ]
