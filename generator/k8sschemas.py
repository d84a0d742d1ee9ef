"""The strict JSON schemas of built-in Kubernetes kinds (Deployment, Service, HPA, ...).

They come from the `kubernetes-validate` package, one folder per Kubernetes minor version:
every definition of a version lives in one `_definitions.json`, found here by its
`x-kubernetes-group-version-kind`, which is also what the package's per-kind files
(`deployment-apps-v1.json`, ...) point into. Unknown fields are errors, as with
`kubectl apply`'s default server-side strict field validation.

Beyond the generated schemas, object names (per kind), label keys and values and annotation
keys follow the API server's rules (generator/k8sformats.py). CRD schemas
(generator/crdschemas.py) share the ObjectMeta definition and the root-metadata rule.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from generator import k8sformats
from generator.errors import ServegenError
from generator.k8sformats import INT32_MAX, INT64_MAX, LABEL_VALUE, QUALIFIED_NAME, Rule

JSON = dict[str, Any]
Version = tuple[int, int]

VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")
_BUNDLED_DIR_RE = re.compile(r"^v(\d+)\.(\d+)\.\d+-local-strict$")

DEFS_PREFIX = "#/$defs/"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LABEL_SELECTOR = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
_ONE_OF_SCALARS = (
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
)


# --------------------------------------------------------------------------- versions


@cache
def _schema_root() -> Path:
    # Found without importing the package, which would cost ~60 ms (jsonschema, PyYAML).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise ServegenError("the kubernetes-validate package is not installed")
    return Path(spec.origin).parent / "kubernetes-json-schema"


@cache
def bundled_versions() -> tuple[Version, ...]:
    found = []
    for entry in _schema_root().iterdir():
        match = _BUNDLED_DIR_RE.match(entry.name)
        if match and (entry / "_definitions.json").is_file():
            found.append((int(match[1]), int(match[2])))
    return tuple(sorted(found))


def resolve_kubernetes_version(requested: str) -> Version:
    """The newest bundled schema version not newer than `requested` ("1.33", "v1.33.2")."""
    match = VERSION_RE.match(requested.strip())
    if not match:
        raise ServegenError(
            f"invalid kubernetes_version {requested!r}: expected MAJOR.MINOR such as '1.33'"
        )
    wanted = (int(match[1]), int(match[2]))
    candidates = [v for v in bundled_versions() if v <= wanted]
    if not candidates:
        supported = ", ".join(f"{a}.{b}" for a, b in bundled_versions())
        raise ServegenError(
            f"Kubernetes {wanted[0]}.{wanted[1]} is not supported for validation: "
            f"schemas exist for {supported}"
        )
    return candidates[-1]


def is_builtin_group(api_version: str) -> bool:
    # CRD groups must contain a dot and may not use the reserved *.k8s.io namespace.
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


# --------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class Definitions:
    """One Kubernetes version's definitions, and which of them each kind's schema is."""

    defs: dict[str, JSON]
    by_gvk: dict[tuple[str, str], str]  # (apiVersion, kind) -> definition name
    _refs: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    _bounded: dict[str, JSON] = field(default_factory=dict, repr=False)

    def bounded(self, name: str) -> JSON:
        """Definition `name` with its integers bounded by their formats (see
        `with_integer_bounds`); made on first use, like `refs`."""
        found = self._bounded.get(name)
        if found is None:
            found = self._bounded[name] = with_integer_bounds(self.defs[name])
        return found

    def refs(self, name: str) -> frozenset[str]:
        """The definitions `name` refers to directly; walked on first use, since only a
        few of the ~700 are ever reached."""
        found = self._refs.get(name)
        if found is None:
            found = self._refs[name] = frozenset(local_refs(self.defs[name]))
        return found


@cache
def definitions(version: Version) -> Definitions:
    path = _schema_root() / f"v{version[0]}.{version[1]}.0-local-strict" / "_definitions.json"
    with path.open("rb") as handle:
        defs: dict[str, JSON] = json.load(handle)["$defs"]
    _tighten_definitions(defs)
    by_gvk: dict[tuple[str, str], str] = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            group, ver = gvk["group"], gvk["version"]
            by_gvk.setdefault((f"{group}/{ver}" if group else ver, gvk["kind"]), name)
    return Definitions(defs, by_gvk)


def _label_map(key_rule: Rule, value_rule: Rule | None) -> JSON:
    schema: JSON = {"type": ["object", "null"], "propertyNames": {"pattern": key_rule.pattern}}
    values: JSON = {"type": ["string", "null"]}
    if value_rule:
        values.update(pattern=value_rule.pattern, maxLength=value_rule.max_length)
    schema["additionalProperties"] = values
    return schema


def _tighten_definitions(defs: dict[str, JSON]) -> None:
    """Make the generated schemas judge a few things closer to the API server."""
    # `oneOf: [string|null, integer|null]` rejects null (it matches both branches), which
    # the API server accepts as "unset"; the branches are otherwise disjoint, so anyOf.
    for name in _ONE_OF_SCALARS:
        if name in defs and "oneOf" in defs[name]:
            defs[name] = {**defs[name], "anyOf": defs[name]["oneOf"]}
            del defs[name]["oneOf"]
    meta = defs[_OBJECT_META] = {**defs[_OBJECT_META]}
    meta["properties"] = {
        **meta["properties"],
        "labels": _label_map(QUALIFIED_NAME, LABEL_VALUE),
        "annotations": _label_map(QUALIFIED_NAME, None),
    }
    selector = defs[_LABEL_SELECTOR] = {**defs[_LABEL_SELECTOR]}
    selector["properties"] = {
        **selector["properties"],
        "matchLabels": _label_map(QUALIFIED_NAME, LABEL_VALUE),
    }


def local_refs(node: Any) -> Iterator[str]:
    """The definition names of every `#/$defs/...` reference in `node`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS_PREFIX):
            yield ref[len(DEFS_PREFIX) :]
        for value in node.values():
            yield from local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from local_refs(value)


def bundle(root: JSON, definitions: Definitions) -> JSON:
    """`root` plus every definition it reaches, as one self-contained document.

    One document with local `#/$defs/...` refs needs no registry or retriever, and only
    the reachable part of the 700 definitions gets compiled. Definitions `root` brings
    in its own `$defs` (a CRD's shared subschemas) are kept beside them.
    """
    own: dict[str, JSON] = root.get("$defs", {})
    needed: set[str] = set()
    todo = [name for name in local_refs(root) if name not in own]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(definitions.refs(name) - needed)
    bounded = with_integer_bounds(root)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **bounded,
        "$defs": {**{name: definitions.bounded(name) for name in sorted(needed)}, **own},
    }


# `format: int32` and `int64` name Go types a number must fit (see k8sformats), while
# JSON Schema's `format` says nothing about integers. As bounds, the check refuses them
# too, in CRDs' schemas as well.
_INTEGER_BOUNDS = {
    "int32": (-INT32_MAX - 1, INT32_MAX),
    "int64": (-INT64_MAX - 1, INT64_MAX),
}


def with_integer_bounds(node: Any) -> Any:
    """`node` (a copy where anything changes) with `minimum` and `maximum` on every
    integer whose `format` is int32 or int64."""
    if isinstance(node, list):
        return [with_integer_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: with_integer_bounds(value) for key, value in node.items()}
    named = node.get("format")
    bounds = _INTEGER_BOUNDS.get(named) if isinstance(named, str) else None
    kinds = node.get("type")
    if bounds and (kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds)):
        out.setdefault("minimum", bounds[0])
        out.setdefault("maximum", bounds[1])
    return out


# --------------------------------------------------------------------------- metadata


def metadata_schema(name_rule: Rule | None) -> JSON:
    """ObjectMeta; at the root of an object also a required name that follows `name_rule`."""
    schema: JSON = {"$ref": DEFS_PREFIX + _OBJECT_META, "type": "object"}
    if name_rule is not None:
        schema["required"] = ["name"]
        schema["properties"] = {
            "name": {
                "type": "string",
                "maxLength": name_rule.max_length,
                "pattern": name_rule.pattern,
            }
        }
    return schema


def with_root_metadata(root: JSON, name_rule: Rule) -> JSON:
    required = list(root.get("required", ()))
    if "metadata" not in required:
        required.append("metadata")
    properties = {**root.get("properties", {}), "metadata": metadata_schema(name_rule)}
    return {**root, "type": "object", "properties": properties, "required": required}


def builtin_schema(definitions: Definitions, api_version: str, kind: str) -> JSON:
    """The self-contained schema of one built-in kind, or KeyError if the version has none."""
    name = definitions.by_gvk[(api_version, kind)]
    root = with_root_metadata(definitions.defs[name], k8sformats.name_rule(kind))
    return bundle(root, definitions)
