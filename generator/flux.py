"""Flux objects that make a cluster follow one environment of the deploy branch.

Per environment, all in flux/<env>/:
- a GitRepository on the deploy branch;
- the Kustomization `<name>-<env>` applying ./clusters/<env> (the models) with pruning
  and health checks that work for these kinds: Deployments and InferenceServices report
  kstatus conditions; KubeAI Models have no conditions, so they get a CEL
  `healthCheckExprs` on status.replicas.ready, and Models that may scale to zero are not
  health-checked at all (they would never become ready);
- the Kustomization `<name>-<env>-flux` applying ./flux/<env> itself. Applied once by
  hand (`kubectl apply -k flux/<env>`), it keeps these objects, the health checks above
  included, in step with the deploy branch from then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from generator import outtree
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
    spec = _kustomization_spec(flux, name, f"./{outtree.cluster_dir(environment)}")
    if flux.depends_on:
        spec["dependsOn"] = [{"name": dep} for dep in flux.depends_on]
    if checks:
        spec["healthChecks"] = checks
    if any(c["kind"] == "Model" for c in checks):
        spec["healthCheckExprs"] = [
            {"apiVersion": "kubeai.org/v1", "kind": "Model", "current": KUBEAI_MODEL_READY}
        ]
    labels = {"app.kubernetes.io/managed-by": "servegen"}
    metadata = {"name": name, "namespace": flux.namespace, "labels": labels}
    # kustomize-controller v1.9.4 (fluxcd/pkg ssa/manager_wait.go): a health check whose
    # target is gone counts as NotFound until the timeout, and objects applied once by
    # hand are never updated from git. So the objects carrying the health checks are
    # themselves applied from the deploy branch, by a Kustomization that includes itself.
    sync = _kustomization_spec(flux, name, f"./{outtree.flux_dir(environment)}")
    kustomization = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization"}
    return [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": source,
        },
        {**kustomization, "metadata": metadata, "spec": spec},
        {**kustomization, "metadata": {**metadata, "name": f"{name}-flux"}, "spec": sync},
    ]


def _kustomization_spec(flux: Flux, source: str, path: str) -> dict[str, Any]:
    """A Flux Kustomization applying `path` of the GitRepository `source`, pruning."""
    return {
        "interval": flux.interval,
        "path": path,
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": source},
        "timeout": flux.timeout,
        "wait": False,
    }
