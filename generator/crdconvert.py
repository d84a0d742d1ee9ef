"""A CRD file as JSON Schemas, with the API server's structural-schema rules.

Each served version's `openAPIV3Schema` becomes JSON Schema 2020-12: unknown (pruned)
fields are errors unless `x-kubernetes-preserve-unknown-fields`,
`x-kubernetes-int-or-string` means integer or string, `nullable` admits null,
`x-kubernetes-embedded-resource` objects carry apiVersion/kind/ObjectMeta, and the root
`metadata` is a real ObjectMeta whose name must be a DNS-1123 subdomain. Not converted,
because no schema can say them: CEL rules (`x-kubernetes-validations`), uniqueness of
`x-kubernetes-list-type: map` keys, `format`s.

What this module (with k8sschemas.py and k8sformats.py) produces is part of every
conversion's content key (generator/crdschemas.py), so editing it retires old results.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema_rs

from generator import k8sschemas
from generator.errors import ServegenError, cut
from generator.k8sformats import DNS1123_SUBDOMAIN
from generator.k8sschemas import metadata_schema, with_root_metadata
from generator.yamlio import YamlSyntaxError, load_documents

JSON = dict[str, Any]
Kind = tuple[str, str]  # (apiVersion, kind)
Where = tuple[str | int, ...]  # keys, and indices into lists


def convert_file(path: Path, data: bytes) -> dict[Kind, JSON]:
    """The served versions of the CRDs in one file, as JSON Schemas; ServegenError if none."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServegenError(f"{path}:1:1: CRD file is not UTF-8 text") from exc
    if path.suffix == ".json":
        try:
            documents = [json.loads(text)]
        except json.JSONDecodeError as exc:
            raise ServegenError(
                f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
            ) from exc
    else:
        documents = _yaml_documents(path, text)
    found = [
        (index, d)
        for index, d in enumerate(documents)
        if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]
    if not found:
        raise ServegenError(f"CRD file {path} contains no CustomResourceDefinition")
    converted: dict[Kind, JSON] = {}
    for index, crd in found:
        try:
            converted.update(_crd_versions(crd))
        except _Refused as exc:
            raise ServegenError(f"{_located(path, text, index, exc.where)}: {exc}") from None
    return converted


class _Refused(ValueError):
    """What makes a CRD unusable, at `where` in its document (the message says where too)."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where = where


def _located(path: Path, text: str, index: int, where: Where) -> str:
    """`path:line:col` of the node at `where` in the file's document `index` (or of its
    deepest existing parent), read again with positions, which only a refused file needs;
    `path` alone when the text cannot be read so (JSON that YAML reads otherwise)."""
    try:
        line, col = load_documents(text)[index].position(where)
    except (YamlSyntaxError, IndexError):
        return str(path)
    return f"{path}:{line}:{col}"


def _dotted(where: Where) -> str:
    """`spec.versions[0].schema`: keys as they are, list indices in brackets."""
    out = ""
    for step in where:
        out += f"[{step}]" if isinstance(step, int) else f".{step}" if out else step
    return out


def _yaml_documents(path: Path, text: str) -> list[Any]:
    # The reader specs go through: strict, aliases bounded (a CRD file is named by
    # servegen.yaml, so it is the spec authors'), and faster than ruamel's C loader on
    # the 2 MB KServe CRD. Where and what only: the parser's text may quote the file.
    try:
        return [document.data for document in load_documents(text)]
    except YamlSyntaxError as exc:
        raise ServegenError(f"{path}:{exc.line}:{exc.col}: invalid YAML: {exc.message}") from None


def _crd_versions(crd: JSON) -> Iterator[tuple[Kind, JSON]]:
    spec = _field(crd, dict, "spec")
    group = _field(spec, str, "spec", "group")
    kind = _field(_field(spec, dict, "spec", "names"), str, "spec", "names", "kind")
    versions = _field(spec, list, "spec", "versions")
    for index, version in enumerate(versions):
        where = ("spec", "versions", index)
        if not isinstance(version, dict):
            raise _not_a_crd(where, dict)
        if not version.get("served", True):
            continue
        name = _field(version, str, *where, "name")
        schema = _field(version, dict, *where, "schema")
        schema = _field(schema, dict, *where, "schema", "openAPIV3Schema")
        try:
            converted = convert(schema, structural=True)
        except SchemaError as exc:
            at = (*where, "schema", "openAPIV3Schema", *exc.where)
            raise _Refused(at, f"{_dotted(at)}: {exc}") from None
        root = with_root_metadata(converted, DNS1123_SUBDOMAIN)
        yield (f"{group}/{name}", kind), share_repeats(root)


def _field(node: Mapping[str, Any], want: type, *where: str | int) -> Any:
    """node[where[-1]], which must be a `want`; else a message that names the field."""
    value = node.get(str(where[-1]))
    if not isinstance(value, want):
        raise _not_a_crd(where, want)
    return value


def _not_a_crd(where: Where, want: type) -> _Refused:
    what = "a mapping" if want is dict else "a list" if want is list else "a string"
    return _Refused(
        where,
        f"not an apiextensions.k8s.io/v1 CustomResourceDefinition: {_dotted(where)} must be {what}",
    )


# Keys not copied as they are: documentation and defaults, which the API server does not
# judge by, CEL rules, which it cannot here, and extensions that _apply_extensions translates.
_IGNORED_KEYS = frozenset(
    {
        "description",
        "default",
        "example",
        "externalDocs",
        "title",
        "nullable",
        "x-kubernetes-validations",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
        "x-kubernetes-list-type",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-embedded-resource",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
_INT_OR_STRING_BRANCHES = [{"type": "integer"}, {"type": "string"}]


class SchemaError(ValueError):
    """A CRD schema node the API server would refuse, at `where` below openAPIV3Schema."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where = where


# apiextensions-apiserver (k8s v1.33) pkg/apis/apiextensions/validation/validation.go,
# validateSchemaPropsForOpenAPI... : these JSONSchemaProps fields are refused in a CRD.
# `$ref` also matters here: JSON Schema would fetch what it names (a file, a URL).
_REFUSED_KEYS = frozenset(
    {"$ref", "$schema", "id", "definitions", "dependencies", "patternProperties", "additionalItems"}
)
# Counts, which JSON Schema's own rules (its meta-schema) hold to 0 or more: a negative
# one is refused at its place, rather than as a schema that "cannot be compiled".
_COUNTS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties")
# JSONSchemaProps (k8s.io/apiextensions-apiserver v1 types_jsonschema.go) fields copied
# as they are, with the JSON type each must have.
_COPIED_KEYS: dict[str, tuple[type, ...]] = {
    "type": (str,),
    "format": (str,),
    "pattern": (str,),
    "enum": (list,),
    "required": (list,),
    "uniqueItems": (bool,),
    **dict.fromkeys(("maximum", "minimum", "multipleOf"), (int, float)),
    **dict.fromkeys(_COUNTS, (int,)),
}
# Deeper than any CRD servegen knows (KServe's InferenceService: 14 schemas deep), and far
# from Python's recursion limit.
_MAX_DEPTH = 64


def convert(
    node: Mapping[str, Any], *, structural: bool, where: Where = (), depth: int = 0
) -> JSON:
    """One OpenAPI v3 (structural) schema node as JSON Schema 2020-12.

    `structural` is False inside anyOf/allOf/oneOf/not: fields named there are value
    validations only, so they neither prune nor make anything unknown. A node the API
    server would refuse raises SchemaError, naming where it is.
    """
    if depth > _MAX_DEPTH:
        raise SchemaError(where, f"schemas nested more than {_MAX_DEPTH} deep")
    out: JSON = {}
    for key, value in node.items():
        at = (*where, str(key))
        if key in _IGNORED_KEYS:
            continue
        if key == "properties":
            _expect(value, Mapping, at, "a mapping of schemas")
            out[key] = {k: _child(v, (*at, str(k)), structural, depth) for k, v in value.items()}
        elif key in ("items", "not") or (
            key == "additionalProperties" and value is not True and value is not False
        ):
            out[key] = _child(value, at, structural and key != "not", depth)
        elif key == "additionalProperties":
            out[key] = value
        elif key in ("allOf", "anyOf", "oneOf"):
            _expect(value, list, at, "a list of schemas")
            if value:  # empty, it constrains nothing to the API server; JSON Schema refuses it
                out[key] = [_child(v, (*at, i), False, depth) for i, v in enumerate(value)]
        elif key in _REFUSED_KEYS:
            raise SchemaError(
                at, f"`{key}` is not supported in a CRD schema (the API server refuses it)"
            )
        elif key in _COPIED_KEYS:
            _expect(value, _COPIED_KEYS[key], at, _COPIED_TYPES[_COPIED_KEYS[key]])
            if key == "required" and not all(isinstance(name, str) for name in value):
                raise SchemaError(at, "must be a list of field names")
            if key == "required":  # a name twice means it once (JSON Schema refuses it)
                value = list(dict.fromkeys(value))
            if key == "type" and value == "":
                continue  # no type, as Go reads an empty string (x-kubernetes-int-or-string)
            if key == "type" and value not in _TYPES:
                raise SchemaError(at, f"{cut(repr(value))} is not one of {', '.join(_TYPES)}")
            if key == "pattern" and not _readable_pattern(value):
                raise SchemaError(
                    at, f"{cut(repr(value))} is not a regular expression JSON Schema can read"
                )
            if key in _COUNTS and value < 0:
                raise SchemaError(at, f"{cut(str(value))} is negative: a count is 0 or more")
            if key == "multipleOf" and value <= 0:
                raise SchemaError(at, f"{cut(str(value))}: must be greater than 0")
            out[key] = value
        elif not str(key).startswith("x-kubernetes-"):
            raise SchemaError(
                at, "not a field of a CRD schema (apiextensions.k8s.io/v1 JSONSchemaProps)"
            )
    _apply_extensions(node, out)
    if structural:
        _drop_defaulted_required(node, out)
        if _prunes_unknown_fields(node, out):
            out["additionalProperties"] = False
            # Without `properties`, jsonschema_rs reports only the first unknown field, as
            # "False schema does not allow ..." at the parent; with it, all of them by name.
            out.setdefault("properties", {})
    return out


# The types a CRD schema may name: JSON Schema's, but `null` (apiextensions-apiserver
# validation.go: "type cannot be set to null"; nullable says it instead).
_TYPES = ("array", "boolean", "integer", "number", "object", "string")


@functools.lru_cache(maxsize=256)  # a CRD repeats its patterns (quantities: hundreds)
def _readable_pattern(pattern: str) -> bool:
    """Whether the validator can compile `pattern`: refused here, at its field, rather
    than when the first object of the kind is judged. (The API server compiles it with
    Go's regexp when the CRD is created: apiextensions-apiserver v0.33
    pkg/apiserver/schema/validation.go; JSON Schema reads it as ECMA-262.)"""
    try:
        jsonschema_rs.validator_for({"pattern": pattern})
    except ValueError:
        return False
    return True


_COPIED_TYPES = {
    (str,): "a string",
    (list,): "a list",
    (bool,): "true or false",
    (int, float): "a number",
    (int,): "an integer",
}


def _expect(value: Any, want: type | tuple[type, ...], where: Where, what: str) -> None:
    # bool is an int to Python, never to JSON Schema.
    if not isinstance(value, want) or (
        isinstance(value, bool) and bool not in (want if isinstance(want, tuple) else (want,))
    ):
        raise SchemaError(where, f"must be {what}")


def _child(value: Any, where: Where, structural: bool, depth: int) -> JSON:
    """A subschema at `where`, one level below its parent, converted."""
    _expect(value, Mapping, where, "a schema (a mapping)")
    return convert(value, structural=structural, where=where, depth=depth + 1)


def _drop_defaulted_required(node: Mapping[str, Any], out: JSON) -> None:
    """The API server fills in defaults before it validates, so a required field that has
    a default can never be missing."""
    properties = node.get("properties")
    if "required" not in out or not isinstance(properties, Mapping):
        return
    required = [r for r in out["required"] if "default" not in properties.get(r, {})]
    if required:
        out["required"] = required
    else:
        del out["required"]


def _apply_extensions(node: Mapping[str, Any], out: JSON) -> None:
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        if out.get("anyOf") == _INT_OR_STRING_BRANCHES:
            del out["anyOf"]  # implied by the type; dropping it halves the error messages
    if node.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties["metadata"] = metadata_schema(None)
        out["required"] = sorted({*out.get("required", ()), "apiVersion", "kind"})
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    # OpenAPI 3.0 exclusive bounds are booleans that modify minimum/maximum.
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]


def _prunes_unknown_fields(node: Mapping[str, Any], out: JSON) -> bool:
    """Whether the API server drops (and, with strict field validation, rejects) fields
    not named in `properties` at this node."""
    if node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in out:
        return False
    return "properties" in out or out.get("type") == "object"


# --------------------------------------------------------------------------- sharing

# Subschemas smaller than this (in schema nodes) stay inline: a $ref costs more than it saves.
_SHARED_MIN_NODES = 8
_SCHEMA_MAPS = ("properties",)
_SCHEMA_VALUES = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def share_repeats(root: JSON) -> JSON:
    """`root` with every subschema that occurs more than once kept once, in `$defs`.

    CRDs inline the same schema many times (KServe's InferenceService repeats the
    container and volume schemas of each component: 2.8 MB of 3.3 MB). Compiling the
    shared form takes a sixth of the time and judges every object the same way; the
    `crd.<digest>` names cannot collide with the Kubernetes definitions' `io.k8s...`.
    """
    digests: dict[int, tuple[str, int]] = {}  # id(node) -> (digest, size in nodes)
    counts: dict[str, int] = {}
    _digest(root, digests, counts)
    shared: JSON = {}

    def rebuild(node: JSON, top: bool = False) -> JSON:
        digest, size = digests[id(node)]
        if top or counts[digest] < 2 or size < _SHARED_MIN_NODES:
            return _map_children(node, rebuild)
        name = f"crd.{digest[:24]}"
        if name not in shared:
            shared[name] = _map_children(node, rebuild)
        return {"$ref": f"{k8sschemas.DEFS_PREFIX}{name}"}

    out = rebuild(root, top=True)
    if shared:
        out["$defs"] = dict(sorted(shared.items()))
    return out


def _children(node: JSON) -> Iterator[JSON]:
    """The subschemas directly inside `node` (converted schemas are plain dicts)."""
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, dict))
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            yield value
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            yield from (v for v in value if isinstance(v, dict))


def _map_children(node: JSON, change: Callable[[JSON], JSON]) -> JSON:
    """A copy of `node` with `change` applied to each of its direct subschemas."""
    out: JSON = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: change(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif key in _SCHEMA_VALUES and isinstance(value, dict):
            out[key] = change(value)
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [change(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def _digest(node: JSON, digests: dict[int, tuple[str, int]], counts: dict[str, int]) -> str:
    """A hash of `node`'s content, from its children's hashes: linear in the schema's size."""
    size = 1
    for child in _children(node):
        _digest(child, digests, counts)
        size += digests[id(child)][1]
    flat = _map_children(node, lambda child: {"#": digests[id(child)][0]})
    digest = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()
    digests[id(node)] = (digest, size)
    counts[digest] = counts.get(digest, 0) + 1
    return digest
