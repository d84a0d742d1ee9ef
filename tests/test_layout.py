"""The output tree's layout helpers (the tree itself is guarded by the committed output/)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.layout import catalog_json, indented_json

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
