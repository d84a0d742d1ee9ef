"""Sample Kubernetes objects, one valid object per kind servegen renders or checks."""

from __future__ import annotations

from typing import Any


def deployment(name: str = "llama") -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "llm", "labels": dict(labels)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.6.3",
                            "args": ["--model", "/models/x"],
                            "ports": [{"name": "http", "containerPort": 8000}],
                            "resources": {"limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}},
                            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
                        }
                    ]
                },
            },
        },
    }


def service(name: str = "llama") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def hpa(name: str = "llama") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def pdb(name: str = "llama") -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
    }


def kubeai_model(name: str = "llama") -> dict[str, Any]:
    return {
        "apiVersion": "kubeai.org/v1",
        "kind": "Model",
        "metadata": {"name": name},
        "spec": {
            "url": "hf://x/y",
            "engine": "VLLM",
            "features": ["TextGeneration"],
            "resourceProfile": "cpu:1",
        },
    }


def inference_service(name: str = "llama") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "huggingface"},
                    "storageUri": "hf://a/b",
                    "args": ["--model_name=llama", "--max_model_len=4096"],
                    "resources": {
                        "limits": {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "1"},
                        "requests": {"cpu": 6, "memory": "24Gi"},
                    },
                }
            }
        },
    }


def git_repository() -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "serving", "namespace": "flux-system"},
        "spec": {
            "interval": "1m",
            "url": "https://example.com/org/serving.git",
            "ref": {"branch": "main"},
        },
    }


def kustomization() -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "serving", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "path": "./clusters/prod",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "serving"},
        },
    }


def crd(group: str, kind: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A namespaced CustomResourceDefinition serving one version whose `spec` is `spec`."""
    plural = kind.lower() + "s"
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }
    served = {"name": version, "served": True, "storage": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural},
            "scope": "Namespaced",
            "versions": [{**served, "schema": {"openAPIV3Schema": schema}}],
        },
    }
