"""Changes the cluster refuses to make in place, found by comparing two deploy trees.

Some fields cannot be updated on an existing object: the API server (CRD transition
rules, built-in validation) or an admission webhook rejects the update, so Flux's apply
fails on every reconcile until someone deletes the object. `diff` and `publish` compare
what the deploy branch holds with what would replace it and say so before that happens.

Both sides are read from output trees (the files servegen writes and publishes): each
model's base objects with its environment overlay applied (namespace and the JSON
patches servegen generates), which is what `kubectl kustomize clusters/<env>` builds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from generator import outtree
from generator.errors import ServegenError
from generator.yamlio import YamlSyntaxError, parse_rendered

Object = dict[str, Any]
Key = tuple[str, str, str]  # kind, namespace, name

# kubeai v0.22.1 manifests/crds/kubeai.org_models.yaml: loadBalancing.prefixHash
# defaults, so a Model that never set replication holds 256.
DEFAULT_PREFIX_REPLICATION = 256
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"


@dataclass(frozen=True)
class ImmutableChange:
    environment: str
    kind: str
    api_version: str
    namespace: str
    name: str
    field: str
    old: str
    new: str
    rule: str  # who refuses it, and where that rule lives

    def describe(self) -> str:
        group = self.api_version.rpartition("/")[0]
        resource = f"{self.kind.lower()}s" + (f".{group}" if group else "")
        return (
            f"{self.environment}: {self.kind} {self.namespace}/{self.name}: {self.field} "
            f"cannot change in place ({self.old} -> {self.new}): {self.rule}. Flux's apply "
            "would fail until the object is deleted. Either give the model a new name "
            "(it is created beside the old one, which is then pruned), or pass "
            f"--allow-replace and delete it when this is deployed (kubectl -n "
            f"{self.namespace} delete {resource} {self.name}) so Flux creates it anew"
        )


# --------------------------------------------------------------------------- reading trees


def tree_objects(files: Mapping[str, bytes]) -> dict[str, dict[Key, Object]]:
    """environment -> (kind, namespace, name) -> object, from an output tree.

    Trees servegen did not write (or that do not parse) contribute nothing: this only
    warns about changes, it never decides what is deployed.
    """
    out: dict[str, dict[Key, Object]] = {}
    for path in sorted(files):
        parsed = outtree.parse(path)
        if parsed is None or parsed.kind != "overlay" or parsed.file != outtree.KUSTOMIZATION:
            continue
        assert parsed.model is not None and parsed.environment is not None
        try:
            objects = _overlay_objects(files, parsed.model, parsed.environment)
        except (ServegenError, YamlSyntaxError, ValueError, LookupError, TypeError, AttributeError):
            continue
        env = out.setdefault(parsed.environment, {})
        for obj in objects:
            metadata = obj["metadata"]
            env[(str(obj["kind"]), str(metadata.get("namespace", "")), metadata["name"])] = obj
    return out


def _documents(files: Mapping[str, bytes], path: str) -> list[Any]:
    return [doc for doc in parse_rendered(files[path].decode("utf-8")) if doc is not None]


def _overlay_objects(files: Mapping[str, bytes], model: str, env: str) -> list[Object]:
    folder = outtree.overlay_dir(model, env)
    (kustomization,) = _documents(files, f"{folder}/{outtree.KUSTOMIZATION}")
    objects: list[Object] = []
    for resource in kustomization.get("resources", []):
        if resource == outtree.BASE_FROM_OVERLAY:
            base = outtree.base_dir(model)
            (listing,) = _documents(files, f"{base}/{outtree.KUSTOMIZATION}")
            for name in listing.get("resources", []):
                objects.extend(_documents(files, f"{base}/{name}"))
        else:
            objects.extend(_documents(files, f"{folder}/{resource}"))
    objects = copy.deepcopy(objects)
    for patch in kustomization.get("patches", []):
        (operations,) = _documents(files, f"{folder}/{patch['path']}")
        target = patch.get("target")
        if target is None:  # `$patch: delete`
            objects = [o for o in objects if not _same(o, operations)]
            continue
        for obj in objects:
            if obj["kind"] == target["kind"] and obj["metadata"]["name"] == target["name"]:
                for operation in operations:
                    _apply(obj, operation)
    labels = {k: v for entry in kustomization.get("labels", []) for k, v in entry["pairs"].items()}
    for obj in objects:
        obj["metadata"]["namespace"] = kustomization["namespace"]
        if labels:
            obj["metadata"]["labels"] = {**obj["metadata"].get("labels", {}), **labels}
    return objects


def _same(obj: Object, other: Object) -> bool:
    return bool(
        obj["kind"] == other["kind"] and obj["metadata"]["name"] == other["metadata"]["name"]
    )


def _apply(obj: Object, operation: Mapping[str, Any]) -> None:
    """One RFC 6902 add/remove/replace, the operations generator/layout.py writes."""
    steps = [s.replace("~1", "/").replace("~0", "~") for s in operation["path"].split("/")[1:]]
    parent: Any = obj
    for step in steps[:-1]:
        parent = parent[int(step)] if isinstance(parent, list) else parent[step]
    last: Any = int(steps[-1]) if isinstance(parent, list) else steps[-1]
    if operation["op"] == "remove":
        del parent[last]
    elif operation["op"] in ("add", "replace"):
        parent[last] = copy.deepcopy(operation["value"])
    else:
        raise ValueError(f"unexpected patch operation {operation['op']!r}")


# --------------------------------------------------------------------------- the rules


def _get(obj: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(step)
    return obj


def _text(value: Any) -> str:
    return "(none)" if value is None else str(value)


Rule = Callable[[Object, Object], Iterator[tuple[str, Any, Any, str]]]


def _model_rules(old: Object, new: Object) -> Iterator[tuple[str, Any, Any, str]]:
    crd = "the KubeAI CRD refuses it (kubeai v0.22.1 manifests/crds/kubeai.org_models.yaml"
    old_cache, new_cache = _get(old, "spec", "cacheProfile"), _get(new, "spec", "cacheProfile")
    if old_cache is not None and new_cache is not None and old_cache != new_cache:
        yield "spec.cacheProfile", old_cache, new_cache, f"{crd}: cacheProfile is immutable)"
    elif old_cache is not None and new_cache is None:
        # The CRD's rule holds only with both values; the controller (kubeai v0.22.1
        # cache.go, model_controller.go) adds a cache-eviction finalizer for a shared
        # cache and removes it on deletion only while cacheProfile is set.
        yield (
            "spec.cacheProfile",
            old_cache,
            "(none)",
            "KubeAI removes its cache-eviction finalizer only while cacheProfile is set "
            "(kubeai v0.22.1 model_controller.go): the Model could never be deleted",
        )
    old_url, new_url = _get(old, "spec", "url"), _get(new, "spec", "url")
    if old_cache is not None and old_url != new_url:
        yield "spec.url", old_url, new_url, f"{crd}: url is immutable when using cacheProfile)"
    old_rep, new_rep = _replication(old), _replication(new)
    if old_rep != new_rep:
        field = "spec.loadBalancing.prefixHash.replication"
        yield field, old_rep, new_rep, f"{crd}: replication is immutable)"


def _replication(obj: Object) -> Any:
    value = _get(obj, "spec", "loadBalancing", "prefixHash", "replication")
    return DEFAULT_PREFIX_REPLICATION if value is None else value


def _isvc_rules(old: Object, new: Object) -> Iterator[tuple[str, Any, Any, str]]:
    old_mode = _get(old, "metadata", "annotations", DEPLOYMENT_MODE)
    new_mode = _get(new, "metadata", "annotations", DEPLOYMENT_MODE)
    if old_mode is not None and new_mode is not None and old_mode != new_mode:
        yield (
            f"metadata.annotations[{DEPLOYMENT_MODE}]",
            old_mode,
            new_mode,
            "KServe's webhook refuses it (kserve v0.20.0 pkg/apis/serving/v1beta1/"
            "inference_service_validation.go validateDeploymentMode)",
        )


def _deployment_rules(old: Object, new: Object) -> Iterator[tuple[str, Any, Any, str]]:
    old_selector, new_selector = _get(old, "spec", "selector"), _get(new, "spec", "selector")
    if old_selector != new_selector:
        yield (
            "spec.selector",
            old_selector,
            new_selector,
            "the API server refuses it (kubernetes pkg/apis/apps/validation/validation.go "
            "ValidateDeploymentUpdate: field is immutable)",
        )


RULES: dict[tuple[str, str], Rule] = {
    ("kubeai.org", "Model"): _model_rules,
    ("serving.kserve.io", "InferenceService"): _isvc_rules,
    ("apps", "Deployment"): _deployment_rules,
}


def immutable_changes(
    old: Mapping[str, Mapping[Key, Object]], new: Mapping[str, Mapping[Key, Object]]
) -> list[ImmutableChange]:
    """Every object present on both sides whose update the cluster would refuse."""
    out = []
    for env in sorted(old.keys() & new.keys()):
        before, after = old[env], new[env]
        for key in sorted(before.keys() & after.keys()):
            was, now = before[key], after[key]
            group = str(now.get("apiVersion", "")).rpartition("/")[0]
            rule = RULES.get((group, key[0]))
            if rule is None or str(was.get("apiVersion", "")).rpartition("/")[0] != group:
                continue
            for field, a, b, why in rule(was, now):
                out.append(
                    ImmutableChange(
                        env,
                        key[0],
                        str(now["apiVersion"]),
                        key[1],
                        key[2],
                        field,
                        _text(a),
                        _text(b),
                        why,
                    )
                )
    return out


def tree_changes(
    deployed: Mapping[str, bytes], rendered: Mapping[str, bytes]
) -> list[ImmutableChange]:
    """Immutable changes from the deploy branch's tree to a newly rendered tree."""
    return immutable_changes(tree_objects(deployed), tree_objects(rendered))
