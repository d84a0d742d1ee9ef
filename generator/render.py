"""Step 3: render every valid spec into objects, per environment.

For each spec the runtime renders a base (the spec's own `serve`) and, for each enabled
environment whose overrides change anything, an environment variant. The final objects
of an environment are what `kubectl kustomize clusters/<env>` builds: the variant with
the environment's namespace, labels and annotations applied. Layout (files) is a
separate step, in generator/layout.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import runtimes
from generator.config import Config
from generator.errors import Diagnostic, RenderError
from generator.validate import ValidatedSpec
from generator.versions import ModelVersion, version_of
from runtimes.base import Endpoint, ObjectRef

MANAGED_BY = {"app.kubernetes.io/managed-by": "servegen"}

Object = dict[str, Any]


@dataclass(frozen=True)
class EnvironmentRender:
    """One model in one environment."""

    namespace: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    variant: tuple[Object, ...]  # rendered for the environment, before overlay transforms
    objects: tuple[Object, ...]  # as the cluster receives them
    endpoint: Endpoint
    version: ModelVersion | None = None  # the model version it runs (servegen diff, promote)


@dataclass(frozen=True)
class ModelRender:
    """Everything one spec renders to."""

    name: str
    path: str
    line: int
    col: int
    runtime: str
    base: tuple[Object, ...]
    environments: Mapping[str, EnvironmentRender]


def overlay_labels(spec_name: str, environment_labels: Mapping[str, str]) -> dict[str, str]:
    """Labels every object of a model gets in an environment; servegen's own win."""
    labels = dict(environment_labels)
    labels.update(MANAGED_BY)
    labels["app.kubernetes.io/name"] = spec_name
    labels["servegen.io/spec"] = spec_name
    return dict(sorted(labels.items()))


def render_spec(spec: ValidatedSpec, config: Config) -> ModelRender:
    try:
        base = tuple(spec.runtime.render(spec.base, config))
    except RenderError as exc:
        raise RenderError(f"{spec.path}: {exc.message}") from exc
    environments = {}
    for env, doc in spec.environments.items():
        environment = config.environments[env]
        namespace = spec.runtime.namespace_in(doc, config, env)
        same = doc is spec.base or doc.model_dump(exclude={"environments"}) == spec.base.model_dump(
            exclude={"environments"}
        )
        variant = base if same else tuple(spec.runtime.render(doc, config))
        labels = overlay_labels(spec.name, environment.labels)
        annotations = dict(sorted(environment.annotations.items()))
        objects = tuple(apply_overlay(obj, namespace, labels, annotations) for obj in variant)
        environments[env] = EnvironmentRender(
            namespace=namespace,
            labels=labels,
            annotations=annotations,
            variant=tuple(with_annotations(obj, annotations) for obj in variant),
            objects=objects,
            endpoint=spec.runtime.endpoint_in(doc, config, env, namespace),
            version=version_of(doc),
        )
    line, col = spec.document.position(("name",))
    return ModelRender(
        name=spec.name,
        path=spec.path,
        line=line,
        col=col,
        runtime=spec.runtime.kind,
        base=base,
        environments=environments,
    )


# Rendered objects are never mutated once made, so variants share everything but the
# metadata they change (a deep copy per object and environment was a tenth of a render).


def with_annotations(obj: Object, annotations: Mapping[str, str]) -> Object:
    """The environment variant of an object: annotations are carried by overlay patches."""
    if not annotations:
        return obj
    metadata = dict(obj["metadata"])
    metadata["annotations"] = {**metadata.get("annotations", {}), **annotations}
    return {**obj, "metadata": metadata}


def apply_overlay(
    obj: Object, namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> Object:
    """What kustomize makes of an object: namespace set, metadata labels added."""
    metadata = dict(obj["metadata"])
    metadata["namespace"] = namespace
    metadata["labels"] = {**metadata.get("labels", {}), **labels}
    if annotations:
        metadata["annotations"] = {**metadata.get("annotations", {}), **annotations}
    return {**obj, "metadata": metadata}


def summary(model: ModelRender) -> ModelRender:
    """`model` without its rendered objects: their identities and what Flux needs."""
    environments = {
        env: replace(rendered, variant=(), objects=tuple(map(_identity, rendered.objects)))
        for env, rendered in model.environments.items()
    }
    return replace(model, base=(), environments=environments)


def _identity(obj: Object) -> Object:
    metadata = obj["metadata"]
    out: Object = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": metadata["name"], "namespace": metadata.get("namespace")},
    }
    if obj["kind"] == "Model":  # Flux health checks skip Models that scale to zero
        out["spec"] = {"minReplicas": obj.get("spec", {}).get("minReplicas", 0)}
    return out


def render_all(specs: Iterable[ValidatedSpec], config: Config) -> list[ModelRender]:
    return [render_spec(spec, config) for spec in sorted(specs, key=lambda s: s.name)]


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    metadata = obj["metadata"]
    return (str(metadata.get("namespace", "")), group, str(obj.get("kind")), metadata["name"])


def duplicate_objects(
    models: Sequence[ModelRender], config: Config | None = None
) -> list[Diagnostic]:
    """Two specs (or two environments on one cluster) writing one object would fight.

    With `config`, environments on the same cluster (`environments.<env>.cluster`, all of
    them when unset) are compared with each other too: two Flux Kustomizations applying
    one object take it from each other, and pruning one deletes the other's. Objects a
    controller makes for a rendered one (the runtime's `controller_objects()`, e.g. KServe's
    predictor for an InferenceService) count as written by its spec. Models come sorted
    by name, and `<name>` sorts before `<name>-predictor`: a KServe predictor's objects
    are always seen before a spec that collides with them.
    """
    seen: dict[_ClaimKey, _Writer] = {}
    out: list[Diagnostic] = []
    for model in models:
        runtime = runtimes.get(model.runtime)  # once per model, not per object
        for env, rendered in model.environments.items():
            cluster = config.cluster_of(env) if config is not None else env
            # One writer per environment for what it renders: a claim of its own is then
            # an identity check, with no tuple made per object.
            own: _Writer = (model, env, None)
            for obj in rendered.objects:
                other = seen.setdefault(_claim_key(cluster, obj), own)
                if other is not own:
                    _collision(out, model, env, obj, other)
                if runtime is not None:
                    for made, made_by in runtime.controller_objects(obj):
                        writer: _Writer = (model, env, made_by)
                        other = seen.setdefault(_claim_key(cluster, made), writer)
                        if other is not writer:
                            _collision(out, model, env, made, other)
    return out


# Who claims an object (the model, its environment, the runtime's words for the
# controller that makes it), under its cluster and object_key().
_Writer = tuple[ModelRender, str, str | None]
_ClaimKey = tuple[str, str, str, str, str]


def _claim_key(cluster: str, obj: Object) -> _ClaimKey:
    """The object's identity (object_key(), the one place of that rule) in its cluster."""
    return (cluster, *object_key(obj))


def _collision(
    out: list[Diagnostic], model: ModelRender, env: str, obj: Object, other: _Writer
) -> None:
    """Report `model` in `env` writing `obj`, which `other` claimed first (unless that
    was the same model in the same environment)."""
    other_model, other_env, other_made_by = other
    if other_model is model and other_env == env:
        return
    namespace = str(obj["metadata"].get("namespace", ""))
    what = f"{ObjectRef.of(obj)} in namespace {namespace}"
    if other_model is model:
        message = (
            f"{what} is written by both environment {other_env} and {env}, which "
            f"share one cluster; {_shared_hint(model, obj, namespace)}"
        )
    else:
        where = f"{other_model.path}:{other_model.line}:{other_model.col}"
        envs = env if other_env == env else f"{other_env} and {env}"
        by = other_made_by or "also rendered by"
        message = f"{what} (environment {envs}) is {by} {where}"
    out.append(Diagnostic(model.path, model.line, model.col, "name", message))


def _shared_hint(model: ModelRender, obj: Object, namespace: str) -> str:
    runtime = runtimes.get(model.runtime)
    hint = runtime.shared_object_hint(obj, namespace) if runtime is not None else None
    return hint or (
        "give the environments different namespaces, declare separate clusters "
        "(environments.<env>.cluster), or disable the model in one environment"
    )
