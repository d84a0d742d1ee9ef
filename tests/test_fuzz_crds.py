"""Fuzzing CRD files: servegen.yaml names them, so spec authors write them, and
`crds --from-cluster` takes them from a cluster. Whatever schema a CRD holds, checking
an object against it ends in problems or none, or in one message that names the CRD
file (with a line and column where the schema is at fault): never an internal error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.check import ManifestChecker
from generator.errors import ServegenError
from generator.yamlio import YamlSyntaxError, load_documents
from tests.fuzzing import fuzzed
from tests.objects import crd

_KEYS = [
    "type", "format", "pattern", "enum", "required", "uniqueItems", "maximum", "minimum",
    "multipleOf", "maxLength", "minLength", "maxItems", "minItems", "maxProperties",
    "minProperties", "items", "properties", "additionalProperties", "allOf", "anyOf",
    "oneOf", "not", "nullable", "default", "description", "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type", "x-kubernetes-validations", "$ref", "$defs", "const",
    "exclusiveMinimum", "exclusiveMaximum",
]  # fmt: skip
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([2**63, -(2**63) - 1, 0.5, 1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "string",
            "integer",
            "number",
            "object",
            "array",
            "boolean",
            "null",
            "int32",
            "date-time",
            "([a-z",
            "^[a-z]+$",
            "[[:alpha:]]",
            "(?=a)",
            "a{2,1}",
            "#/x",
            "foo",
        ]
    ),
    st.text(max_size=6),
)


def _node(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    value = st.one_of(_VALUES, children, st.lists(st.one_of(_VALUES, children), max_size=3))
    named = st.dictionaries(st.sampled_from(["a", "b", "apiVersion", "metadata"]), children)
    return st.dictionaries(
        st.sampled_from(_KEYS),
        st.one_of(value, named),
        max_size=5,
    )


SCHEMA = st.recursive(
    st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3), _node, max_leaves=12
)
OBJECT_SPEC = st.recursive(
    _VALUES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner)
    ),
    max_leaves=6,
)


@fuzzed(300)
@given(schema=SCHEMA, spec=OBJECT_SPEC)
def test_any_crd_schema_judges_or_is_refused_with_its_file_named(
    tmp_path: Path, schema: Any, spec: Any
) -> None:
    path = tmp_path / "widgets.json"
    path.write_text(json.dumps(crd("example.com", "Widget", "v1", schema)))
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "ns"},
        "spec": spec,
    }
    try:
        result = ManifestChecker("1.33", [path]).check([obj])
    except ServegenError as exc:
        # At the schema's fault, never "cannot be compiled" with no place to look; with
        # its line and column, unless YAML cannot read the JSON to find them (a "\ud800").
        if not re.match(rf"{re.escape(str(path))}:\d+:\d+: spec\.versions", exc.message):
            assert exc.message.startswith(f"{path}: spec.versions"), exc
            with pytest.raises(YamlSyntaxError):
                load_documents(path.read_text())
        return
    for problem in result.problems:
        assert problem.kind == "Widget" and problem.message
