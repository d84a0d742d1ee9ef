"""A cluster where Flux and the controllers have applied what servegen rendered."""

from __future__ import annotations

from typing import Any

from generator.flux import flux_objects
from generator.pipeline import Build
from tests.kubeapi import FakeKubeAPI


def ready_status(obj: dict[str, Any]) -> dict[str, Any]:
    kind = obj["kind"]
    if kind == "Model":
        floor = int(obj["spec"].get("minReplicas", 0))
        cache = {"cache": {"loaded": True}} if obj["spec"].get("cacheProfile") else {}
        return {"replicas": {"all": floor, "ready": floor}, **cache}
    if kind == "Deployment":
        replicas = int(obj["spec"].get("replicas", 1))
        return {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
    if kind == "InferenceService":
        name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
        return {
            "url": f"http://{name}.{ns}.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    return {}


def flux_status(deploy: str, ready: bool = True, reason: str = "ReconciliationSucceeded") -> Any:
    revision = f"deploy@sha1:{deploy}"
    condition = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": f"Applied revision: {revision}" if ready else "health check failed",
    }
    return {"lastAppliedRevision": revision, "conditions": [condition]}


def apply_environment(api: FakeKubeAPI, result: Build, env: str, deploy: str) -> None:
    """Play Flux and the controllers: apply what servegen rendered, all ready."""
    for model in result.models:
        rendered = model.environments.get(env)
        for obj in rendered.objects if rendered else ():
            applied = api.apply({**obj, "status": ready_status(obj)})
            if obj["kind"] == "InferenceService":  # KServe's predictor Deployment
                namespace, name = applied["metadata"]["namespace"], applied["metadata"]["name"]
                # kserve v0.20.0 components/predictor.go buildObjectMeta: the
                # InferenceService's own labels, servegen's included, and KServe's.
                labels = {
                    **applied["metadata"].get("labels", {}),
                    "serving.kserve.io/inferenceservice": name,
                    "component": "predictor",
                }
                api.apply(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": {
                            "name": f"{name}-predictor",
                            "namespace": namespace,
                            "labels": labels,
                        },
                        "spec": {"replicas": 1},
                        "status": ready_status({"kind": "Deployment", "spec": {"replicas": 1}}),
                    }
                )
    for obj in flux_objects(result.models, result.config, env):
        status = flux_status(deploy)
        if obj["kind"] == "GitRepository":
            status = {"artifact": {"revision": f"deploy@sha1:{deploy}"}, **status}
        api.apply({**obj, "status": status})
