"""The output tree's layout helpers (the tree itself is guarded by the committed output/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.flux import flux_objects
from generator.layout import catalog_json, cluster_files, indented_json
from generator.pipeline import build
from runtimes.base import Endpoint

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)


def _reference(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@given(_JSON)
def test_indented_json_is_json_dumps_byte_for_byte(value: Any) -> None:
    assert indented_json(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"b": [], "a": {}, "c": [1, 2.5, None, True, "\u2028é\U0001f600\x7f"]},
        {"models": [{"name": "m", "endpoints": ["http://x/v1/chat"], "adapters": []}]},
        {1: "int key", 2: {"b": None}},  # keys json.dumps converts: left to it
        [float("nan"), float("inf"), -0.0, 10**30],
    ],
)
def test_indented_json_edge_cases(value: Any) -> None:
    assert indented_json(value) == _reference(value)


def test_indented_json_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError):
        indented_json({"a": object()})


@given(st.text(), st.lists(st.dictionaries(st.text(max_size=6), _JSON, max_size=5), max_size=4))
def test_the_catalog_made_entry_by_entry_is_indented_json_of_it_whole(
    env: str, entries: list[dict[str, Any]]
) -> None:
    assert catalog_json(env, iter(entries)) == _reference({"environment": env, "models": entries})


_ENDPOINTS = st.builds(
    Endpoint,
    name=st.text(),
    runtime=st.text(),
    namespace=st.text(),
    base_url=st.text(),
    model=st.text(),
    adapters=st.tuples() | st.lists(st.text(), max_size=3).map(tuple),
    features=st.lists(st.text(), max_size=3).map(tuple),
    paths=st.lists(st.text(), max_size=3).map(tuple),
)


@given(st.text(), st.lists(_ENDPOINTS, max_size=4))
def test_a_catalog_of_endpoints_is_indented_json_of_their_to_json(
    env: str, endpoints: list[Endpoint]
) -> None:
    """Endpoints are written straight from their fields: the same bytes as the
    generic walk (json.dumps) of their to_json()."""
    whole = {"environment": env, "models": [e.to_json() for e in endpoints]}
    assert catalog_json(env, iter(endpoints)) == _reference(whole)


@pytest.mark.parametrize(
    "endpoint",
    [
        Endpoint("m", "r", "ns", "http://x/v1/", "m", ["a"], ["f"], ["/chat"]),  # type: ignore[arg-type]
        Endpoint(5, "r", "ns", "http://x", "m"),  # type: ignore[arg-type]
        Endpoint("m", "r", "ns", "http://x", None, adapters="ab"),  # type: ignore[arg-type]
        Endpoint("m", "r", "ns", "http://x", "m", adapters=(1, None)),  # type: ignore[arg-type]
        Endpoint('\u2028é\U0001f600\x7f"\\\n', "r", "ns", "http://x/", "m", paths=("\x00",)),
    ],
)
def test_endpoints_of_other_types_are_written_as_json_dumps_would(endpoint: Endpoint) -> None:
    whole = {"environment": "dev", "models": [endpoint.to_json()]}
    assert catalog_json("dev", [endpoint]) == _reference(whole)


def test_a_catalog_mixes_endpoints_and_mappings() -> None:
    endpoint = Endpoint("m", "r", "ns", "http://x/v1", "m", ("a",), ("f",), ("/models",))
    other = {"name": "other", "extra": [1]}
    entries: list[Endpoint | dict[str, Any]] = [endpoint, other]
    whole = {"environment": "dev", "models": [endpoint.to_json(), other]}
    assert catalog_json("dev", entries) == _reference(whole)


def test_cluster_files_from_flux_objects_made_before_are_the_same(
    example_repo: Path, crds_dir: Path
) -> None:
    """The pipeline hands cluster_files() the Flux objects its checks made: the same
    files as making them again, and the build's own."""
    built = build(example_repo, crds=[crds_dir])
    models, config = built.models, built.config
    flux = [flux_objects(models, config, env) for env in config.environments]
    files = cluster_files(models, config, flux)
    assert files == cluster_files(models, config)
    assert any(path.startswith("flux/") for path in files)
    assert {path: built.files[path] for path in files} == files
