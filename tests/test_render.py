"""generator/render.py's duplicate_objects() against a plain statement of its rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import runtimes
from generator.config import Config
from generator.errors import Diagnostic
from generator.render import (
    EnvironmentRender,
    ModelRender,
    _collision,
    duplicate_objects,
    object_key,
)
from runtimes.base import Endpoint

_ENVIRONMENTS = ("dev", "prod", "stage")


def _reference(models: Sequence[ModelRender], config: Config | None) -> list[Diagnostic]:
    """duplicate_objects() as first written: every claim (each rendered object, then
    what a controller makes for it) is its own (model, environment, made_by), and
    the first claim of an object under its cluster is the one others are told of.
    The message of a collision is render.py's own (_collision): what is compared is
    which claims collide, and with which first claim."""
    seen: dict[Any, tuple[ModelRender, str, str | None]] = {}
    out: list[Diagnostic] = []
    for model in models:
        runtime = runtimes.get(model.runtime)
        for env, rendered in model.environments.items():
            cluster = config.cluster_of(env) if config is not None else env
            claims: list[tuple[Any, str | None]] = []
            for obj in rendered.objects:
                claims.append((obj, None))
                if runtime is not None:
                    claims.extend(runtime.controller_objects(obj))
            for obj, made_by in claims:
                key = (cluster, object_key(obj))
                first = seen.setdefault(key, (model, env, made_by))
                _collision(out, model, env, obj, first)
    return out


@st.composite
def _object(draw: st.DrawFn) -> dict[str, Any]:
    api, kind = draw(
        st.sampled_from(
            [
                ("apps/v1", "Deployment"),
                ("v1", "Service"),
                ("serving.kserve.io/v1beta1", "InferenceService"),
                ("kubeai.org/v1", "Model"),
            ]
        )
    )
    # Few names and namespaces, so that objects collide; a KServe predictor's name too.
    metadata: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b", "a-predictor"]))}
    namespace = draw(st.sampled_from(["ns", "other", None, "missing"]))
    if namespace != "missing":
        metadata["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": metadata}


@st.composite
def _model(draw: st.DrawFn) -> ModelRender:
    name = draw(st.sampled_from(["m1", "m2", "m3"]))
    environments = {
        env: EnvironmentRender(
            namespace="ns",
            labels={},
            annotations={},
            variant=(),
            objects=tuple(draw(st.lists(_object(), max_size=3))),
            endpoint=Endpoint(name, "r", "ns", "http://x", name),
        )
        for env in draw(st.lists(st.sampled_from(_ENVIRONMENTS), unique=True, max_size=3))
    }
    runtime = draw(st.sampled_from(["huggingfaceserve", "kubeai-text", "vllmserve-text", "x"]))
    line = draw(st.integers(1, 9))
    return ModelRender(name, f"specs/{name}.yaml", line, 1, runtime, (), environments)


def _config(clusters: list[str | None]) -> Config:
    environments = {env: {"cluster": c} for env, c in zip(_ENVIRONMENTS, clusters, strict=True)}
    return Config.model_validate({"environments": environments})


_CONFIGS = st.none() | st.lists(st.sampled_from([None, "one", "two"]), min_size=3, max_size=3).map(
    _config
)


@settings(max_examples=200)
@given(st.lists(_model(), max_size=4), _CONFIGS)
def test_duplicate_objects_reports_what_the_plain_rule_reports(
    models: list[ModelRender], config: Config | None
) -> None:
    """Each claim's writer and key are made more cheaply than one tuple apiece: the
    same collisions, in the same order, with the same messages."""
    assert duplicate_objects(models, config) == _reference(models, config)
