"""What an object's status says about readiness, one function per kind servegen renders.

Pure functions over the objects as the API server returns them. Controllers and users
can leave any shape in `status`; a field of the wrong type raises Malformed, which
status reports as the model's message instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]


class Malformed(ValueError):
    """A status field of the wrong type: reported as the model's message."""


def at(obj: Any, *path: str) -> Any:
    for key in path:
        if obj is None:
            return None
        if not isinstance(obj, dict):
            raise Malformed(f"{'.'.join(path)} is not an object")
        obj = obj.get(key)
    return obj


def _int(obj: Any, *path: str, default: int | None = None) -> int | None:
    value = at(obj, *path)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{'.'.join(path)} is {value!r}, not an integer")
    return value


def condition(obj: Any, type_: str) -> dict[str, Any] | None:
    conditions = at(obj, "status", "conditions")
    if conditions is None:
        return None
    if not isinstance(conditions, list):
        raise Malformed("status.conditions is not a list")
    for entry in conditions:
        if isinstance(entry, dict) and entry.get("type") == type_:
            # metav1.Condition's status, reason and message are strings; the rules
            # compare and join them as such.
            for key in ("status", "reason", "message"):
                value = entry.get(key)
                if value is not None and not isinstance(value, str):
                    raise Malformed(f"the {type_} condition's {key} is {value!r}, not a string")
            return entry
    return None


def condition_text(cond: Mapping[str, Any] | None) -> str:
    if cond is None:
        return ""
    parts = [str(cond.get(k)) for k in ("reason", "message") if cond.get(k)]
    return ": ".join(parts)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    desired: int | None
    ready_replicas: int | None
    message: str
    cluster_url: str | None = None


def kubeai_model(obj: Object) -> Readiness:
    # kubeai v0.22.1 api/k8s/v1/model_types.go: status.replicas {all, ready}, no conditions;
    # spec.replicas is the autoscaler's (scale subresource), minReplicas the floor.
    desired = _int(obj, "spec", "replicas")
    if desired is None:
        desired = _int(obj, "spec", "minReplicas", default=0)
    ready = _int(obj, "status", "replicas", "ready", default=0) or 0
    # internal/modelcontroller/model_controller.go reconciles the cache before any pod
    # and cache.go returns until the load Job completed: until status.cache.loaded, no
    # replica can start, on a request or otherwise.
    if at(obj, "spec", "cacheProfile") and at(obj, "status", "cache", "loaded") is not True:
        message = "model cache not loaded yet: KubeAI starts no replica before it is"
        return Readiness(False, desired, ready, message)
    if desired == 0 and ready == 0:
        # internal/modelclient/scale.go ScaleAtLeastOneReplica returns at once while
        # autoscaling is disabled: a request then waits and no replica starts.
        if at(obj, "spec", "autoscalingDisabled") is True:
            return Readiness(True, 0, 0, "pinned at 0 replicas: not served")
        return Readiness(True, 0, 0, "scaled to zero: starts on the first request")
    # The same rule as the Flux health check servegen renders (generator/flux.py).
    ok = ready >= 1
    return Readiness(ok, desired, ready, f"{ready}/{desired} replicas ready")


def deployment(obj: Object) -> Readiness:
    # kstatus (sigs.k8s.io/cli-utils v0.37.2 pkg/kstatus/status/core.go, checkGeneration
    # then deploymentConditions), which Flux health checks use: a rollout is done when
    # the controller has seen the generation, and has made, updated, made available and
    # readied every desired replica, with no old one left terminating, and has said so in
    # its Progressing and Available conditions.
    desired = _int(obj, "spec", "replicas", default=1) or 0
    available = _int(obj, "status", "availableReplicas", default=0) or 0
    generation = _int(obj, "metadata", "generation", default=0) or 0
    observed = _int(obj, "status", "observedGeneration", default=0) or 0
    if observed < generation:
        return Readiness(False, desired, available, "rollout not yet observed by the controller")
    progressing = condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(False, desired, available, f"failed: {condition_text(progressing)}")
    pending = _rollout_pending(obj, desired, available)
    message = f"{available}/{desired} replicas available"
    if pending:
        message += f", {pending}"
        available_condition = condition(obj, "Available")
        if available_condition and available_condition.get("status") == "False":
            message += f" ({condition_text(available_condition)})"
    return Readiness(pending is None, desired, available, message)


def _rollout_pending(obj: Object, desired: int, available: int) -> str | None:
    """What a rollout still waits for, in kstatus's order; None when it is done."""
    replicas = _int(obj, "status", "replicas", default=0) or 0
    updated = _int(obj, "status", "updatedReplicas", default=0) or 0
    ready = _int(obj, "status", "readyReplicas", default=0) or 0
    if replicas < desired:
        return f"{replicas}/{desired} created"
    if updated < desired:
        return f"{updated}/{desired} updated"
    if replicas > desired:  # old pods still serving while they terminate
        return f"{replicas - desired} old replica(s) terminating"
    if available < updated:
        return f"{available}/{updated} updated available"
    if ready < desired:
        return f"{ready}/{desired} ready"
    # Then the controller's own verdict, as kstatus reads it: Progressing True with
    # NewReplicaSetAvailable (unless the deadline is switched off, which the controller
    # marks as MaxInt32), and Available True.
    progressing = condition(obj, "Progressing")
    deadline = _int(obj, "spec", "progressDeadlineSeconds", default=_NO_DEADLINE)
    rolled_out = progressing is not None and (
        progressing.get("status"),
        progressing.get("reason"),
    ) == ("True", _ROLLED_OUT)
    if deadline != _NO_DEADLINE and not rolled_out:
        return "new ReplicaSet not yet reported available"
    available_condition = condition(obj, "Available")
    if available_condition is None or available_condition.get("status") != "True":
        return "not yet reported Available"
    return None


_NO_DEADLINE = 2**31 - 1
_ROLLED_OUT = "NewReplicaSetAvailable"


# Reasons a False Ready carries while pods still start: kserve v0.20.0
# inference_service_status.go PropagateRawStatus copies the predictor Deployment's
# Available=False (k8s deployment controller: MinimumReplicasUnavailable) onto it, and
# the ingress reconcilers (reconcilers/ingress kube_ingress_reconciler.go and
# httproute_reconciler.go) hold IngressReady False until the predictor is ready.
_STARTING = frozenset(
    {
        "MinimumReplicasUnavailable",
        "Predictor ingress not created",
        "Transformer ingress not created",
        "Explainer ingress not created",
        "Predictor Deployment NotReady",
        "Transformer Deployment NotReady",
        "Explainer Deployment NotReady",
        "InferenceService Deployment NotReady",
    }
)


def inference_service(obj: Object, predictors: Sequence[Object]) -> Readiness:
    # kserve v0.20.0 pkg/apis/serving/v1beta1/inference_service_status.go: the Ready
    # condition and status.url; replica counts live on the predictor Deployment, labelled
    # serving.kserve.io/inferenceservice=<name> (pkg/constants InferenceServicePodLabelKey).
    ready_condition = condition(obj, "Ready")
    url = at(obj, "status", "url")
    if url is not None and not isinstance(url, str):
        raise Malformed(f"status.url is {url!r}, not a string")
    desired = available = None
    if predictors:
        desired = sum(_int(p, "spec", "replicas", default=1) or 0 for p in predictors)
        available = sum(_int(p, "status", "availableReplicas", default=0) or 0 for p in predictors)
    if ready_condition is None:
        return Readiness(False, desired, available, "no Ready condition yet", url)
    ok = ready_condition.get("status") == "True"
    message = "Ready" if ok else f"not ready: {condition_text(ready_condition) or 'Ready=False'}"
    reason = ready_condition.get("reason")
    if not ok and ready_condition.get("status") == "False" and reason and reason not in _STARTING:
        message = f"failed: {condition_text(ready_condition)}"
    return Readiness(ok, desired, available, message, url)
