"""Fuzzing what `servegen status` reads from a cluster.

The API server returns what controllers and users wrote: a status of any shape, a
condition whose reason is a list, a revision full of escape sequences. Whatever the
objects hold, status must say so in a model's or environment's message (readiness's
Malformed), never crash, and print only printable text. Objects are drawn near the
shapes the controllers write (each field of the right type or of any JSON type), so
the rules behind the type checks are reached too.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from generator.commands.status import render
from generator.kube import Listing, WatchEvent, parse_event, parse_listing
from generator.readiness import Malformed, Readiness, deployment, inference_service, kubeai_model
from generator.status import DeployHistory, Snapshot, evaluate
from generator.statuslive import summary as live_summary
from generator.statusplan import (
    SERVEGEN_LABEL,
    SPEC_LABEL,
    EnvironmentPlan,
    Kind,
    ModelPlan,
    Ref,
)

# Words the rules look for, so that drawn objects reach them.
_WORDS = [
    "True", "False", "Unknown", "Ready", "Available", "Progressing", "Stalled",
    "NewReplicaSetAvailable", "ProgressDeadlineExceeded", "MinimumReplicasUnavailable",
    "DependencyNotReady", "servegen", "m", "\x1b[2J", "::error::x", "##[error]x", "a|b\nc",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(_WORDS),
    st.text(max_size=8),
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(_WORDS), st.text(max_size=4)), inner, max_size=3),
    ),
    max_leaves=8,
)


def _or_any(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field of the right type most of the time, of any JSON type otherwise."""
    return st.one_of(*[strategy] * 5, JSON)


_COUNT = _or_any(st.integers(min_value=0, max_value=4))
_CONDITION = st.fixed_dictionaries(
    {
        "type": _or_any(st.sampled_from(["Ready", "Available", "Progressing", "Stalled"])),
        "status": _or_any(st.sampled_from(["True", "False", "Unknown"])),
        "reason": _or_any(st.sampled_from(_WORDS)),
    },
    optional={"message": _or_any(st.text(max_size=12))},
)
_REPLICAS = st.fixed_dictionaries({}, optional={"all": _COUNT, "ready": _COUNT})
_STATUS = st.fixed_dictionaries(
    {},
    optional={
        "conditions": _or_any(st.lists(_or_any(_CONDITION), min_size=1, max_size=4)),
        "replicas": _or_any(st.one_of(_COUNT, _REPLICAS)),
        "readyReplicas": _COUNT,
        "availableReplicas": _COUNT,
        "updatedReplicas": _COUNT,
        "observedGeneration": _COUNT,
        "url": _or_any(st.text(max_size=12)),
        "cache": _or_any(st.fixed_dictionaries({}, optional={"loaded": _or_any(st.booleans())})),
        "lastAppliedRevision": _or_any(
            st.one_of(st.just("main@sha1:" + "a" * 40), st.text(max_size=12))
        ),
    },
)
_SPEC = st.fixed_dictionaries(
    {},
    optional={
        "replicas": _COUNT,
        "minReplicas": _COUNT,
        "autoscalingDisabled": _or_any(st.booleans()),
        "cacheProfile": _or_any(st.sampled_from(["", "efs"])),
        "progressDeadlineSeconds": _or_any(st.sampled_from([600, 2**31 - 1])),
    },
)
_LABELS = _or_any(
    st.dictionaries(
        st.sampled_from([SERVEGEN_LABEL, SPEC_LABEL, "serving.kserve.io/inferenceservice"]),
        _or_any(st.sampled_from(["servegen", "m", "isvc"])),
    )
)
_METADATA = st.fixed_dictionaries(
    {}, optional={"labels": _LABELS, "generation": _COUNT, "namespace": _or_any(st.just("ns"))}
)
OBJECT = st.fixed_dictionaries(
    {"metadata": _METADATA, "status": _or_any(_STATUS)}, optional={"spec": _or_any(_SPEC)}
)


def _read(call: Any) -> Readiness | None:
    """call()'s verdict; None when it said the object is malformed."""
    try:
        verdict = call()
    except Malformed as exc:
        assert str(exc)
        return None
    assert isinstance(verdict, Readiness)
    assert isinstance(verdict.message, str) and verdict.message
    return verdict


@given(OBJECT, st.lists(OBJECT, max_size=3))
def test_readiness_of_any_object_is_a_verdict_or_malformed(
    obj: dict[str, Any], predictors: list[dict[str, Any]]
) -> None:
    _read(lambda: kubeai_model(obj))
    _read(lambda: deployment(obj))
    _read(lambda: inference_service(obj, predictors))


# One environment reading one model of each primary kind, its Flux objects and orphans.
NS = "ns"
_MODEL = Kind("kubeai.org/v1", "Model")
_ISVC = Kind("serving.kserve.io/v1beta1", "InferenceService")
_DEPLOYMENT = Kind("apps/v1", "Deployment")
_KUSTOMIZATION = Kind("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
_GIT = Kind("source.toolkit.fluxcd.io/v1", "GitRepository")
_PRIMARIES = {"m": _MODEL, "isvc": _ISVC, "vllm": _DEPLOYMENT}
_FLUX = (
    Ref(_GIT, "flux-system", "deploy"),
    Ref(_KUSTOMIZATION, "flux-system", "deploy-dev"),
    Ref(_KUSTOMIZATION, "flux-system", "deploy-dev-flux"),
)
_MODELS = tuple(
    ModelPlan(name, "runtime", "http://x/v1", (Ref(kind, NS, name),), Ref(kind, NS, name))
    for name, kind in _PRIMARIES.items()
)
PLAN = EnvironmentPlan(
    name="dev",
    context=None,
    models=_MODELS,
    unrendered=("gone",),
    flux=_FLUX,
    reads={(kind, NS): None for kind in _PRIMARIES.values()}
    | {(ref.kind, ref.namespace): None for ref in _FLUX},
    expected=frozenset(m.primary for m in _MODELS if m.primary is not None) | frozenset(_FLUX),
)
_NAMES = st.sampled_from(["m", "isvc", "vllm", "deploy", "deploy-dev", "deploy-dev-flux", "x"])


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    """Every collection the plan reads, served or not, holding drawn objects. Each item
    is a dict whose metadata is a dict naming it: what kube.py's list and watch pass on."""
    snapshot = Snapshot()
    for kind, namespace in PLAN.reads:
        if draw(st.integers(0, 5)) == 0:
            snapshot.record(("ctx", kind, namespace), None)
            continue
        items = {}
        for name in draw(st.lists(_NAMES, max_size=4, unique=True)):
            obj = draw(OBJECT)
            obj["metadata"]["name"] = name
            items[name] = obj
        snapshot.record(("ctx", kind, namespace), Listing(items, "1"))
    return snapshot


def _printable_lines(text: str) -> bool:
    return all(line.isprintable() for line in text.split("\n"))


@given(snapshots(), st.sampled_from([None, "b" * 40]))
def test_status_of_any_cluster_state_is_reported_in_printable_text(
    snapshot: Snapshot, tip: str | None
) -> None:
    history = DeployHistory(None, None, tip, {})
    status = evaluate(PLAN, "ctx", snapshot, history)
    assert [m.name for m in status.models] == ["gone", "isvc", "m", "vllm"]
    for fmt in ("text", "markdown"):
        shown = render([status], fmt)
        assert _printable_lines(shown), shown
        assert not any(line.lstrip().startswith("::") for line in shown.split("\n"))
        assert "##[" not in shown
    assert json.loads(render([status], "json"))["environments"][0]["name"] == "dev"
    assert live_summary(status).isprintable()


# What the API server's list and watch responses hold, as the client hands them over.
_ITEM = _or_any(
    st.fixed_dictionaries(
        {"metadata": _or_any(st.fixed_dictionaries({}, optional={"name": _or_any(_NAMES)}))}
    )
)
_LIST = _or_any(
    st.fixed_dictionaries(
        {},
        optional={
            "items": _or_any(st.lists(_ITEM, max_size=4)),
            "metadata": _or_any(
                st.fixed_dictionaries({}, optional={"resourceVersion": _or_any(st.just("7"))})
            ),
        },
    )
)
_EVENT = _or_any(
    st.fixed_dictionaries(
        {
            "type": _or_any(st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"])),
            "raw_object": _or_any(
                st.one_of(
                    _ITEM,
                    st.fixed_dictionaries(
                        {"code": _or_any(st.sampled_from([410, 500])), "message": JSON}
                    ),
                )
            ),
        }
    )
)


@given(_LIST)
def test_a_list_response_of_any_shape_is_a_listing_or_refused(body: Any) -> None:
    listing = parse_listing(body)
    a_list = isinstance(body, dict) and (
        isinstance(body.get("items"), (list, type(None)))
        and isinstance(body.get("metadata"), (dict, type(None)))
    )
    assert (listing is not None) == a_list
    if listing is None:
        return
    assert isinstance(listing.resource_version, str)
    for name, item in listing.items.items():
        assert isinstance(name, str) and item["metadata"]["name"] == name


@given(_EVENT)
def test_a_watch_event_of_any_shape_is_an_event_an_error_or_ignored(event: Any) -> None:
    try:
        parsed = parse_event(event)
    except ApiException as exc:
        assert event["type"] == "ERROR" and isinstance(exc.status, int)
        return
    if parsed is not None:
        assert isinstance(parsed, WatchEvent) and isinstance(parsed.name, str)
        assert parsed.type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
        assert isinstance(parsed.obj["metadata"], dict)
