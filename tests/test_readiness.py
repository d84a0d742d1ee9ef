"""Readiness rules per kind, on status shapes the controllers write (and broken ones)."""

from __future__ import annotations

from typing import Any

import pytest

from generator.readiness import Malformed, deployment, inference_service, kubeai_model


def _model(spec: dict[str, Any], status: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"kind": "Model", "metadata": {"name": "m"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"minReplicas": 1}, None, (False, 1, 0, "0/1 replicas ready")),
        (
            {"minReplicas": 1},
            {"replicas": {"all": 1, "ready": 1}},
            (True, 1, 1, "1/1 replicas ready"),
        ),
        # The autoscaler's spec.replicas wins over the floor.
        (
            {"minReplicas": 1, "replicas": 3},
            {"replicas": {"all": 3, "ready": 2}},
            (True, 3, 2, "2/3 replicas ready"),
        ),
        (
            {"minReplicas": 0},
            {"replicas": {"all": 0, "ready": 0}},
            (True, 0, 0, "scaled to zero: starts on the first request"),
        ),
        (
            {"minReplicas": 0, "replicas": 1},
            {"replicas": {"all": 1, "ready": 0}},
            (False, 1, 0, "0/1 replicas ready"),
        ),
        # Pinned at 0: no request starts a replica (ScaleAtLeastOneReplica returns).
        (
            {"minReplicas": 0, "replicas": 0, "autoscalingDisabled": True},
            {"replicas": {"all": 0, "ready": 0}},
            (True, 0, 0, "pinned at 0 replicas: not served"),
        ),
        # A cached model starts nothing before its cache is loaded: blocked, not idle.
        (
            {"minReplicas": 0, "cacheProfile": "efs"},
            {"replicas": {"all": 0, "ready": 0}, "cache": {"loaded": False}},
            (False, 0, 0, "model cache not loaded yet: KubeAI starts no replica before it is"),
        ),
        (
            {"minReplicas": 0, "cacheProfile": "efs"},
            {"replicas": {"all": 0, "ready": 0}, "cache": {"loaded": True}},
            (True, 0, 0, "scaled to zero: starts on the first request"),
        ),
    ],
)
def test_kubeai_model(spec: dict[str, Any], status: Any, expected: tuple[Any, ...]) -> None:
    r = kubeai_model(_model(spec, status))
    assert (r.ready, r.desired, r.ready_replicas, r.message) == expected


def _deployment(
    spec_replicas: int | None, status: dict[str, Any], generation: int = 1
) -> dict[str, Any]:
    spec = {} if spec_replicas is None else {"replicas": spec_replicas}
    return {
        "kind": "Deployment",
        "metadata": {"name": "d", "generation": generation},
        "spec": spec,
        "status": status,
    }


ROLLED_OUT = [
    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
]


def _counts(
    replicas: int, updated: int, ready: int, available: int, conditions: Any = None
) -> dict[str, Any]:
    """A Deployment's status replica counts, as the controller writes them, with the
    conditions of a finished rollout unless `conditions` is given."""
    return {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": ROLLED_OUT if conditions is None else conditions,
    }


AVAILABLE = {"type": "Available", "status": "True"}
UNAVAILABLE = {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}
UPDATING = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}


def _with_deadline(obj: dict[str, Any], seconds: int) -> dict[str, Any]:
    return {**obj, "spec": {**obj["spec"], "progressDeadlineSeconds": seconds}}


# Progressing=False/ProgressDeadlineExceeded: the deployment controller gave up.
DEADLINE_EXCEEDED = {
    "observedGeneration": 1,
    "conditions": [
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    ],
}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_deployment(2, _counts(2, 2, 2, 2)), (True, 2, 2, "2/2 replicas available")),
        (_deployment(None, _counts(1, 1, 1, 1)), (True, 1, 1, "1/1 replicas available")),
        # Available but not yet updated: a rollout in progress.
        (
            _deployment(2, _counts(2, 1, 2, 2)),
            (False, 2, 2, "2/2 replicas available, 1/2 updated"),
        ),
        # The new pod is made, the old one still serves: kstatus "Pending termination".
        (
            _deployment(1, _counts(2, 1, 1, 1)),
            (False, 1, 1, "1/1 replicas available, 1 old replica(s) terminating"),
        ),
        (
            _deployment(3, _counts(4, 3, 3, 3)),
            (False, 3, 3, "3/3 replicas available, 1 old replica(s) terminating"),
        ),
        (_deployment(2, _counts(1, 1, 1, 1)), (False, 2, 1, "1/2 replicas available, 1/2 created")),
        (
            _deployment(2, _counts(2, 2, 1, 1)),
            (False, 2, 1, "1/2 replicas available, 1/2 updated available"),
        ),
        (
            _deployment(2, _counts(2, 2, 2, 2), generation=2),
            (False, 2, 2, "rollout not yet observed by the controller"),
        ),
        (
            _deployment(
                1,
                {
                    **_counts(1, 1, 0, 0),
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "False",
                            "reason": "MinimumReplicasUnavailable",
                            "message": "Deployment does not have minimum availability.",
                        }
                    ],
                },
            ),
            (
                False,
                1,
                0,
                "0/1 replicas available, 0/1 updated available (MinimumReplicasUnavailable: "
                "Deployment does not have minimum availability.)",
            ),
        ),
        (
            _deployment(
                1,
                DEADLINE_EXCEEDED,
            ),
            (False, 1, 0, "failed: ProgressDeadlineExceeded"),
        ),
        # A generation not yet seen comes first, as in kstatus: a stale deadline
        # condition from the generation before is no failure of this one.
        (
            _deployment(
                1,
                DEADLINE_EXCEEDED,
                generation=2,
            ),
            (False, 1, 0, "rollout not yet observed by the controller"),
        ),
        # Every count done, but the controller has not yet said so (kstatus's last two
        # checks, cli-utils v0.37.2 core.go deploymentConditions).
        (
            _with_deadline(_deployment(2, _counts(2, 2, 2, 2, [AVAILABLE, UPDATING])), 600),
            (False, 2, 2, "2/2 replicas available, new ReplicaSet not yet reported available"),
        ),
        # With the deadline switched off the controller writes no Progressing condition.
        (
            _with_deadline(_deployment(1, _counts(1, 1, 1, 1, [AVAILABLE])), 2**31 - 1),
            (True, 1, 1, "1/1 replicas available"),
        ),
        (
            _deployment(1, _counts(1, 1, 1, 1, [UNAVAILABLE, ROLLED_OUT[1]])),
            (
                False,
                1,
                1,
                "1/1 replicas available, not yet reported Available (MinimumReplicasUnavailable)",
            ),
        ),
        (
            _deployment(1, _counts(1, 1, 1, 1, [ROLLED_OUT[1]])),
            (False, 1, 1, "1/1 replicas available, not yet reported Available"),
        ),
    ],
)
def test_deployment(obj: dict[str, Any], expected: tuple[Any, ...]) -> None:
    r = deployment(obj)
    assert (r.ready, r.desired, r.ready_replicas, r.message) == expected


def test_inference_service_counts_its_predictor_deployments() -> None:
    isvc = {
        "status": {
            "url": "http://x.ns.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }
    predictor = _deployment(2, {"availableReplicas": 1})
    r = inference_service(isvc, [predictor])
    assert (r.ready, r.desired, r.ready_replicas, r.message, r.cluster_url) == (
        True,
        2,
        1,
        "Ready",
        "http://x.ns.example.com",
    )
    r = inference_service({"status": {}}, [])
    assert (r.ready, r.desired, r.ready_replicas, r.message) == (
        False,
        None,
        None,
        "no Ready condition yet",
    )
    unknown = {
        "status": {
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "PredictorNotReady"}]
        }
    }
    assert inference_service(unknown, []).message == "not ready: PredictorNotReady"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: kubeai_model(_model({"minReplicas": "1"})),
            "spec.minReplicas is '1', not an integer",
        ),
        (
            lambda: kubeai_model(_model({}, {"replicas": {"ready": True}})),
            "status.replicas.ready is True, not an integer",
        ),
        (
            lambda: deployment(
                _deployment(1, {"observedGeneration": 1, "conditions": {"type": "Available"}})
            ),
            "status.conditions is not a list",
        ),
        (lambda: inference_service({"status": {"url": 7}}, []), "status.url is 7, not a string"),
        (
            lambda: inference_service(
                {"status": {"conditions": [{"type": "Ready", "status": "False", "reason": ["x"]}]}},
                [],
            ),
            "the Ready condition's reason is ['x'], not a string",
        ),
        (
            lambda: deployment(
                _deployment(
                    1,
                    {
                        "observedGeneration": 1,
                        "conditions": [{"type": "Progressing", "status": True}],
                    },
                )
            ),
            "the Progressing condition's status is True, not a string",
        ),
    ],
)
def test_malformed_fields_raise_malformed(call: Any, message: str) -> None:
    with pytest.raises(Malformed) as caught:
        call()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        # kserve v0.20.0 reconcilers/ingress: IngressReady is False until the predictor is.
        ("Predictor ingress not created", ""),
        ("Predictor Deployment NotReady", "Predictor HTTPRoute not created"),
    ],
)
def test_an_inference_service_waiting_for_its_ingress_is_not_failed(
    reason: str, message: str
) -> None:
    starting = {"type": "Ready", "status": "False", "reason": reason, "message": message}
    r = inference_service({"status": {"conditions": [starting]}}, [])
    assert not r.ready and r.message is not None
    assert r.message.startswith("not ready: ") and "failed" not in r.message


def test_an_inference_service_still_starting_is_not_failed() -> None:
    """KServe copies the predictor Deployment's MinimumReplicasUnavailable onto Ready
    while its pods start: that is not a failure."""
    starting = {
        "type": "Ready",
        "status": "False",
        "reason": "MinimumReplicasUnavailable",
        "message": "Deployment does not have minimum availability.",
    }
    r = inference_service({"status": {"conditions": [starting]}}, [])
    assert not r.ready
    assert r.message == (
        "not ready: MinimumReplicasUnavailable: Deployment does not have minimum availability."
    )
