"""Validate rendered Kubernetes objects the way the API server will judge them, fast.

Built-in kinds (Deployment, Service, HPA, ...) are checked against the strict JSON schemas
that the `kubernetes-validate` package bundles per Kubernetes minor version: every
definition of a version lives in one `_definitions.json`, indexed here by its
`x-kubernetes-group-version-kind`, which is also what the package's per-kind files
(`deployment-apps-v1.json`, ...) point into. Unknown fields are errors, as with
`kubectl apply`'s default server-side strict field validation.

Custom resources are checked against the `openAPIV3Schema` of their
CustomResourceDefinition, converted to JSON Schema with the API server's structural-schema
rules: unknown (pruned) fields are errors unless `x-kubernetes-preserve-unknown-fields`,
`x-kubernetes-int-or-string` means integer or string, `nullable` admits null,
`x-kubernetes-embedded-resource` objects carry apiVersion/kind/ObjectMeta, and the root
`metadata` is a real ObjectMeta whose name must be a DNS-1123 subdomain. CRDs come from
the given sources first; `bundled_crds` (servegen's own copies) cover only the kinds no
source defines. A custom resource with no CRD at all is not an error: its kind is
reported in `CheckResult.skipped_kinds` so the caller can say so once.

Also checked, as the API server does: object names (per kind: DNS-1123 subdomain, DNS-1123
label for Namespace, DNS-1035 label for Service), label keys and values, annotation keys.

Not checked, because no schema can say it without running the API server's code:
CEL rules (`x-kubernetes-validations`), uniqueness of `x-kubernetes-list-type: map` keys,
`format`s (int32 ranges, date-time, ...), and the hand-written Go validation of built-in
kinds (e.g. duplicate container names, selector matching template labels).

Schemas are loaded once per process and compiled validators are cached per
(Kubernetes version, apiVersion, kind), so after warm-up validating an object costs a
dictionary lookup and one pass of the Rust validator (`jsonschema_rs`).

Optionally (`kubeconform="auto"|"always"`) the objects are also given to an installed
`kubeconform` binary, with the converted CRD schemas written where it can find them.
Note that kubeconform's `default` schema location downloads the built-in schemas over
HTTP, so that second opinion needs network access or kubeconform's own cache.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from generator.errors import ServegenError
from generator.yamlio import format_path

__all__ = [
    "CheckResult",
    "ManifestValidator",
    "ObjectProblem",
    "format_path",
    "kubeconform_command",
    "parse_kubeconform_output",
    "resolve_kubernetes_version",
]

JSON = dict[str, Any]


@dataclass(frozen=True)
class ObjectProblem:
    """One thing the API server would reject in one object; `path` like `spec.replicas`."""

    api_version: str
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.api_version}/{self.kind} {self.name or '<unnamed>'}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class CheckResult:
    """All problems found, and the custom-resource kinds (`group/version/Kind`) not checked."""

    problems: tuple[ObjectProblem, ...]
    skipped_kinds: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------- versions

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?$")
_BUNDLED_DIR_RE = re.compile(r"^v(\d+)\.(\d+)\.\d+-local-strict$")

Version = tuple[int, int]


@cache
def _schema_root() -> Path:
    # Found without importing the package, which would cost ~60 ms (jsonschema, PyYAML).
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or spec.origin is None:
        raise ServegenError("the kubernetes-validate package is not installed")
    return Path(spec.origin).parent / "kubernetes-json-schema"


@cache
def _bundled_versions() -> tuple[Version, ...]:
    found = []
    for entry in _schema_root().iterdir():
        match = _BUNDLED_DIR_RE.match(entry.name)
        if match and (entry / "_definitions.json").is_file():
            found.append((int(match[1]), int(match[2])))
    return tuple(sorted(found))


def resolve_kubernetes_version(requested: str) -> Version:
    """The newest bundled schema version not newer than `requested` ("1.33", "v1.33.2")."""
    match = _VERSION_RE.match(requested.strip())
    if not match:
        raise ServegenError(
            f"invalid kubernetes_version {requested!r}: expected MAJOR.MINOR such as '1.33'"
        )
    wanted = (int(match[1]), int(match[2]))
    candidates = [v for v in _bundled_versions() if v <= wanted]
    if not candidates:
        supported = ", ".join(f"{a}.{b}" for a, b in _bundled_versions())
        raise ServegenError(
            f"Kubernetes {wanted[0]}.{wanted[1]} is not supported for validation: "
            f"schemas exist for {supported}"
        )
    return candidates[-1]


# --------------------------------------------------------------------------- name rules

# The API server's own regular expressions (k8s.io/apimachinery/pkg/util/validation).
_DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
_PATH_SEGMENT = r"^(?!\.{1,2}$)[^/%]+$"
_QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

# Raw regexes make unreadable messages; these are what users are told instead.
_PATTERN_MEANING = {
    _DNS1123_LABEL: "must be a DNS-1123 label: at most 63 lowercase letters, digits or '-', "
    "starting and ending with a letter or digit",
    _DNS1123_SUBDOMAIN: "must be a DNS-1123 subdomain: lowercase letters, digits, '-' or '.', "
    "starting and ending with a letter or digit",
    _DNS1035_LABEL: "must be a DNS-1035 label: at most 63 lowercase letters, digits or '-', "
    "starting with a letter and ending with a letter or digit",
    _PATH_SEGMENT: "must not contain '/' or '%' and must not be '.' or '..'",
    _QUALIFIED_NAME: "must be a qualified name: an optional DNS subdomain prefix and '/', then "
    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    _LABEL_VALUE: "must be empty or at most 63 letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit",
}

_NAME_RULES: dict[str, tuple[str, int]] = {
    "label": (_DNS1123_LABEL, 63),
    "subdomain": (_DNS1123_SUBDOMAIN, 253),
    "dns1035": (_DNS1035_LABEL, 63),
    "segment": (_PATH_SEGMENT, 253),
}
# Kinds whose name rule is not a DNS-1123 subdomain; built-ins not listed in either table
# only get the path-segment rule, which every named object must satisfy (RBAC names may
# contain ':', for instance).
_SPECIAL_NAME_RULE = {"Service": "dns1035", "Namespace": "label"}
_SUBDOMAIN_KINDS = frozenset(
    {
        "ConfigMap",
        "CronJob",
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "IngressClass",
        "Job",
        "NetworkPolicy",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "Pod",
        "PodDisruptionBudget",
        "PriorityClass",
        "ReplicaSet",
        "Secret",
        "ServiceAccount",
        "StatefulSet",
        "StorageClass",
    }
)


def _builtin_name_rule(kind: str) -> str:
    if kind in _SPECIAL_NAME_RULE:
        return _SPECIAL_NAME_RULE[kind]
    return "subdomain" if kind in _SUBDOMAIN_KINDS else "segment"


# --------------------------------------------------------------------------- built-in schemas

_DEFS_PREFIX = "#/$defs/"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LABEL_SELECTOR = "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"
_ONE_OF_SCALARS = (
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
)


@dataclass(frozen=True)
class _Definitions:
    defs: dict[str, JSON]
    by_gvk: dict[tuple[str, str], str]  # (apiVersion, kind) -> definition name
    refs: dict[str, frozenset[str]]  # definition name -> names it refers to directly


@cache
def _definitions(version: Version) -> _Definitions:
    path = _schema_root() / f"v{version[0]}.{version[1]}.0-local-strict" / "_definitions.json"
    with path.open("rb") as handle:
        defs: dict[str, JSON] = json.load(handle)["$defs"]
    _tighten_definitions(defs)
    by_gvk: dict[tuple[str, str], str] = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            group, ver = gvk["group"], gvk["version"]
            by_gvk.setdefault((f"{group}/{ver}" if group else ver, gvk["kind"]), name)
    refs = {name: frozenset(_local_refs(schema)) for name, schema in defs.items()}
    return _Definitions(defs, by_gvk, refs)


def _label_map(key_pattern: str, value_pattern: str | None) -> JSON:
    schema: JSON = {"type": ["object", "null"], "propertyNames": {"pattern": key_pattern}}
    values: JSON = {"type": ["string", "null"]}
    if value_pattern:
        values.update(pattern=value_pattern, maxLength=63)
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
        "labels": _label_map(_QUALIFIED_NAME, _LABEL_VALUE),
        "annotations": _label_map(_QUALIFIED_NAME, None),
    }
    selector = defs[_LABEL_SELECTOR] = {**defs[_LABEL_SELECTOR]}
    selector["properties"] = {
        **selector["properties"],
        "matchLabels": _label_map(_QUALIFIED_NAME, _LABEL_VALUE),
    }


def _local_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX):
            yield ref[len(_DEFS_PREFIX) :]
        for value in node.values():
            yield from _local_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _local_refs(value)


def _bundle(root: JSON, definitions: _Definitions) -> JSON:
    """`root` plus every definition it reaches, as one self-contained document.

    One document with local `#/$defs/...` refs needs no registry or retriever, and only
    the reachable part of the 700 definitions gets compiled.
    """
    needed: set[str] = set()
    todo = list(_local_refs(root))
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(definitions.refs[name] - needed)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **root,
        "$defs": {name: definitions.defs[name] for name in sorted(needed)},
    }


def _metadata_schema(name_rule: str | None) -> JSON:
    """ObjectMeta; at the root of an object also a required name that follows `name_rule`."""
    schema: JSON = {"$ref": _DEFS_PREFIX + _OBJECT_META, "type": "object"}
    if name_rule is not None:
        pattern, max_length = _NAME_RULES[name_rule]
        schema["required"] = ["name"]
        schema["properties"] = {
            "name": {"type": "string", "maxLength": max_length, "pattern": pattern}
        }
    return schema


def _with_root_metadata(root: JSON, name_rule: str) -> JSON:
    required = list(root.get("required", ()))
    if "metadata" not in required:
        required.append("metadata")
    properties = {**root.get("properties", {}), "metadata": _metadata_schema(name_rule)}
    return {**root, "type": "object", "properties": properties, "required": required}


def _builtin_schema(definitions: _Definitions, api_version: str, kind: str) -> JSON:
    name = definitions.by_gvk[(api_version, kind)]
    root = _with_root_metadata(definitions.defs[name], _builtin_name_rule(kind))
    return _bundle(root, definitions)


# --------------------------------------------------------------------------- CRDs


@dataclass(frozen=True)
class _CrdVersion:
    api_version: str
    kind: str
    schema: JSON  # converted; refers to ObjectMeta by `#/$defs/...`, not yet bundled
    source: tuple[str, int, int]  # (file, mtime, size): identifies this exact schema


@dataclass(frozen=True)
class _CrdIndex:
    versions: dict[tuple[str, str], _CrdVersion]  # (apiVersion, kind)
    served: dict[tuple[str, str], tuple[str, ...]]  # (group, kind) -> served versions


_CRD_FILE_CACHE: dict[tuple[str, int, int], tuple[_CrdVersion, ...]] = {}
_CRD_SUFFIXES = (".yaml", ".yml", ".json")


def crd_files(sources: Sequence[Path]) -> Iterator[Path]:
    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix in _CRD_SUFFIXES)
            if not found:
                raise ServegenError(f"CRD directory {source} contains no YAML or JSON files")
            yield from found
        elif source.is_file():
            yield source
        else:
            raise ServegenError(f"CRD source {source} does not exist")


def _load_crd_index(sources: Sequence[Path], fallback: Sequence[Path] = ()) -> _CrdIndex:
    """CRDs from `sources`, then from `fallback` (the bundled CRDs) for every kind that
    no source defines: a configured CRD replaces the bundled one of its kind."""
    versions: dict[tuple[str, str], _CrdVersion] = {}
    served: dict[tuple[str, str], tuple[str, ...]] = {}
    configured = [crd for path in crd_files(sources) for crd in _crd_file(path)]
    defined = {(crd.api_version.rpartition("/")[0], crd.kind) for crd in configured}
    defaults = [
        crd
        for path in fallback
        for crd in _crd_file(path)
        if (crd.api_version.rpartition("/")[0], crd.kind) not in defined
    ]
    for crd in (*configured, *defaults):
        # The first definition of a kind wins, so that a CRD present in two
        # directories (e.g. a chart and its source) is not an error.
        key = (crd.api_version, crd.kind)
        if key not in versions:
            versions[key] = crd
            group, _, version = crd.api_version.rpartition("/")
            served[(group, crd.kind)] = (*served.get((group, crd.kind), ()), version)
    return _CrdIndex(versions, served)


def _crd_file(path: Path) -> tuple[_CrdVersion, ...]:
    """The served versions defined in one file, parsed once per (path, mtime, size)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ServegenError(f"cannot read CRD file {path}: {exc.strerror}") from exc
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _CRD_FILE_CACHE:
        _CRD_FILE_CACHE[key] = tuple(_parse_crd_file(path, key))
    return _CRD_FILE_CACHE[key]


# Bump when _convert changes what it produces, so cached conversions are not reused.
_CONVERTER_VERSION = "1"


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "servegen" / "crds"


def _parse_crd_file(path: Path, key: tuple[str, int, int]) -> Iterator[_CrdVersion]:
    """Converted CRD versions, from an on-disk cache keyed by the file's content hash.

    Parsing the 2 MB KServe CRD as YAML costs ~0.6 s per process; its converted schemas
    as JSON load in a few milliseconds. A cache that cannot be read or written is ignored.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ServegenError(f"cannot read CRD file {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(_CONVERTER_VERSION.encode() + b"\0" + data).hexdigest()
    cached = _cache_dir() / f"{digest}.json"
    try:
        entries = json.loads(cached.read_bytes())
        return iter([_CrdVersion(e["api_version"], e["kind"], e["schema"], key) for e in entries])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    versions = list(_parse_crd_text(path, key))
    entries = [{"api_version": v.api_version, "kind": v.kind, "schema": v.schema} for v in versions]
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries), encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home is fine: the cache only saves time
    return iter(versions)


def _parse_crd_text(path: Path, key: tuple[str, int, int]) -> Iterator[_CrdVersion]:
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            documents: list[Any] = [json.loads(text)]
        else:
            # The C loader (ruamel.yaml.clib): the KServe CRD alone is 2 MB of YAML.
            documents = list(YAML(typ="safe", pure=False).load_all(text))
    except (OSError, UnicodeDecodeError, ValueError, YAMLError) as exc:
        raise ServegenError(f"cannot parse CRD file {path}: {exc}") from exc
    crds = [
        d for d in documents if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]
    if not crds:
        raise ServegenError(f"CRD file {path} contains no CustomResourceDefinition")
    for crd in crds:
        yield from _crd_versions(crd, path, key)


def _crd_versions(crd: JSON, path: Path, key: tuple[str, int, int]) -> Iterator[_CrdVersion]:
    try:
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            root = _with_root_metadata(_convert(schema, structural=True), "subdomain")
            yield _CrdVersion(f"{group}/{version['name']}", kind, root, key)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ServegenError(
            f"CRD file {path}: not a valid apiextensions.k8s.io/v1 CRD (missing or malformed {exc})"
        ) from exc


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


def _convert(node: Mapping[str, Any], *, structural: bool) -> JSON:
    """One OpenAPI v3 (structural) schema node as JSON Schema 2020-12.

    `structural` is False inside anyOf/allOf/oneOf/not: fields named there are value
    validations only, so they neither prune nor make anything unknown.
    """
    out: JSON = {}
    for key, value in node.items():
        if key in _IGNORED_KEYS:
            continue
        if key == "properties":
            out[key] = {k: _convert(v, structural=structural) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = _convert(value, structural=structural and key != "not")
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_convert(v, structural=False) for v in value]
        else:
            out[key] = value
    _apply_extensions(node, out)
    if structural:
        _drop_defaulted_required(node, out)
        if _prunes_unknown_fields(node, out):
            out["additionalProperties"] = False
            # Without `properties`, jsonschema_rs reports only the first unknown field, as
            # "False schema does not allow ..." at the parent; with it, all of them by name.
            out.setdefault("properties", {})
    return out


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
        properties["metadata"] = _metadata_schema(None)
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


# --------------------------------------------------------------------------- validators

_COMPILED: dict[tuple[Any, ...], jsonschema_rs.Validator] = {}


def _compile(key: tuple[Any, ...], build: Callable[[], JSON]) -> jsonschema_rs.Validator:
    """Compile once per process: the same schema is shared by every ManifestValidator."""
    validator = _COMPILED.get(key)
    if validator is None:
        schema = build()
        try:
            validator = jsonschema_rs.validator_for(schema)
        except (ValueError, jsonschema_rs.ReferencingError) as exc:
            raise ServegenError(f"schema for {key[1]}/{key[2]} cannot be compiled: {exc}") from exc
        _COMPILED[key] = validator
    return validator


def _is_builtin_group(api_version: str) -> bool:
    # CRD groups must contain a dot and may not use the reserved *.k8s.io namespace.
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


# --------------------------------------------------------------------------- errors

# bool before int: in Python a bool is an int, in JSON it is not.
_JSON_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "object"),
    (list, "array"),
    (type(None), "null"),
)


def _json_type(value: Any) -> str:
    return next(
        (name for t, name in _JSON_TYPE_NAMES if isinstance(value, t)), type(value).__name__
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: jsonschema_rs.ValidationError) -> Iterator[tuple[list[str | int], str]]:
    """(path, message) pairs for one error, worded for someone reading a manifest."""
    kind, path = error.kind, list(error.instance_path)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        for field in kind.unexpected:
            yield [*path, field], f'unknown field "{field}"'
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        yield [*path, kind.property], "required field is missing"
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        yield path, _type_message([kind.types], error.instance)
    elif isinstance(
        kind,
        (jsonschema_rs.ValidationErrorKind.AnyOf, jsonschema_rs.ValidationErrorKind.OneOfNotValid),
    ):
        yield path, _alternatives_message(error)
    elif isinstance(kind, jsonschema_rs.ValidationErrorKind.PropertyNames):
        key = str(kind.error.instance)
        yield [*path, key], f"key {_message(kind.error)}"
    else:
        yield path, _message(error)


def _message(error: jsonschema_rs.ValidationError) -> str:
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Pattern):
        meaning = _PATTERN_MEANING.get(kind.pattern)
        if meaning:
            return f"{_short(error.instance)} {meaning}"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        # jsonschema_rs abbreviates long lists ("or 2 other candidates"); users need them all.
        allowed = ", ".join(_short(option) for option in kind.options)
        return f"{_short(error.instance)} is not one of: {allowed}"
    return error.message


def _type_message(alternatives: list[list[str]], value: Any) -> str:
    wanted = [t for types in alternatives for t in types if t != "null"]
    unique = list(dict.fromkeys(wanted)) or ["null"]
    return f"must be {' or '.join(unique)}, not {_json_type(value)} ({_short(value)})"


def _alternatives_message(error: jsonschema_rs.ValidationError) -> str:
    branches = getattr(error.kind, "context", [])
    types: list[list[str]] = []
    for branch in branches:
        for sub in branch:
            if not isinstance(sub.kind, jsonschema_rs.ValidationErrorKind.Type):
                return error.message
            types.append(list(sub.kind.types))
    return _type_message(types, error.instance) if types else error.message


# --------------------------------------------------------------------------- the validator


@dataclass(frozen=True)
class _Target:
    validator: jsonschema_rs.Validator | None = None
    skipped: str = ""  # set for a custom resource without a configured CRD
    problem: str = ""  # set when the kind itself cannot be judged


class ManifestValidator:
    """Judge rendered objects against Kubernetes `kubernetes_version` and the given CRDs.

    `bundled_crds` apply to the kinds no file of `crd_sources` defines.

    Raises ServegenError for an unsupported version, a missing or unparsable CRD source,
    or `kubeconform="always"` without a kubeconform binary on PATH.
    """

    def __init__(
        self,
        kubernetes_version: str,
        crd_sources: Sequence[Path] = (),
        kubeconform: str = "never",
        bundled_crds: Sequence[Path] = (),
    ) -> None:
        self.schema_version = resolve_kubernetes_version(kubernetes_version)
        self._requested_version = kubernetes_version
        self._definitions = _definitions(self.schema_version)
        self._crds = _load_crd_index([Path(p) for p in crd_sources], bundled_crds)
        self._kubeconform = _find_kubeconform(kubeconform)
        self._targets: dict[tuple[str, str], _Target] = {}

    def validate(self, objects: Iterable[Mapping[str, Any]]) -> CheckResult:
        problems: list[ObjectProblem] = []
        skipped: dict[str, None] = {}
        passed: list[Mapping[str, Any]] = []  # judged and found valid
        for obj in objects:
            target, found = self._check_one(obj)
            problems.extend(found)
            if target is not None and target.skipped:
                skipped[target.skipped] = None
            elif target is not None and target.validator is not None and not found:
                passed.append(obj)
        if self._kubeconform and passed:
            # Only a second opinion on what passed here: an object already rejected would
            # just have its problems reported twice, in kubeconform's words.
            problems.extend(self._second_opinion(passed))
        return CheckResult(tuple(problems), tuple(skipped))

    def _check_one(self, obj: Any) -> tuple[_Target | None, list[ObjectProblem]]:
        if not isinstance(obj, Mapping):
            return None, [ObjectProblem("", "", "", "", f"not an object: {_short(obj)}")]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else None
        name = name if isinstance(name, str) else ""
        if not isinstance(api_version, str) or not isinstance(kind, str):
            missing = "apiVersion" if not isinstance(api_version, str) else "kind"
            problem = ObjectProblem(
                str(api_version or ""),
                str(kind or ""),
                name,
                missing,
                "required field is missing or not a string",
            )
            return None, [problem]
        target = self._target(api_version, kind)
        if target.problem:
            return target, [ObjectProblem(api_version, kind, name, "kind", target.problem)]
        if target.validator is None:
            return target, []
        return target, [
            ObjectProblem(api_version, kind, name, path, message)
            for path, message in _errors(target.validator, obj)
        ]

    def _target(self, api_version: str, kind: str) -> _Target:
        key = (api_version, kind)
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = self._make_target(api_version, kind)
        return target

    def _make_target(self, api_version: str, kind: str) -> _Target:
        version = self.schema_version
        if (api_version, kind) in self._definitions.by_gvk:
            return _Target(
                _compile(
                    ("builtin", api_version, kind, version),
                    lambda: _builtin_schema(self._definitions, api_version, kind),
                )
            )
        crd = self._crds.versions.get((api_version, kind))
        if crd is not None:
            return _Target(
                _compile(
                    ("crd", api_version, kind, version, crd.source),
                    lambda: _bundle(crd.schema, self._definitions),
                )
            )
        if _is_builtin_group(api_version):
            return _Target(
                problem=f"no schema for {api_version}/{kind} in Kubernetes "
                f"{version[0]}.{version[1]}"
            )
        group, _, wanted = api_version.rpartition("/")
        served = self._crds.served.get((group, kind))
        if served:
            return _Target(
                problem=f"the configured CRD for {group} {kind} does not serve "
                f"version {wanted} (served: {', '.join(served)})"
            )
        return _Target(skipped=f"{api_version}/{kind}")

    # ----------------------------------------------------------------- kubeconform

    def _second_opinion(self, objects: list[Mapping[str, Any]]) -> list[ObjectProblem]:
        assert self._kubeconform is not None
        with tempfile.TemporaryDirectory(prefix="servegen-kubeconform-") as tmp:
            schema_dir = Path(tmp)
            self._write_crd_schemas(schema_dir)
            command = kubeconform_command(self._kubeconform, self._requested_version, schema_dir)
            output = _run_kubeconform(command, objects)
        return parse_kubeconform_output(output)

    def _write_crd_schemas(self, schema_dir: Path) -> None:
        """Standalone CRD schemas in the `{group}/{kind}_{version}.json` layout."""
        for (api_version, kind), crd in self._crds.versions.items():
            group, _, version = api_version.rpartition("/")
            target = schema_dir / group / f"{kind.lower()}_{version}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(_bundle(crd.schema, self._definitions)), encoding="utf-8")


def _errors(
    validator: jsonschema_rs.Validator, obj: Any, *, retried: bool = False
) -> list[tuple[str, str]]:
    try:
        # The common case, and much cheaper than collecting errors.
        if validator.is_valid(obj):
            return []
        errors = list(validator.iter_errors(obj))
    except ValueError as exc:
        # jsonschema_rs takes only dicts as objects; any other Mapping gets one retry as
        # dicts. What still fails holds a value JSON cannot, such as a datetime.
        if not retried:
            return _errors(validator, _as_dicts(obj), retried=True)
        return [("", f"not representable as JSON: {exc}")]
    found: dict[tuple[str, str], None] = {}
    for error in errors:
        for parts, message in _describe(error):
            found[(format_path(parts), message)] = None
    return list(found)


def _as_dicts(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _as_dicts(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_as_dicts(item) for item in value]
    return value


# --------------------------------------------------------------------------- kubeconform

_KUBECONFORM_MODES = ("auto", "always", "never")


def _find_kubeconform(mode: str) -> str | None:
    if mode not in _KUBECONFORM_MODES:
        raise ServegenError(
            f"invalid kubeconform setting {mode!r}: expected one of {', '.join(_KUBECONFORM_MODES)}"
        )
    if mode == "never":
        return None
    binary = shutil.which("kubeconform")
    if binary is None and mode == "always":
        raise ServegenError("kubeconform is set to 'always' but no kubeconform binary is on PATH")
    return binary


def kubeconform_command(binary: str, kubernetes_version: str, schema_dir: Path) -> list[str]:
    """The kubeconform command line: objects on stdin, CRD schemas from `schema_dir`."""
    match = _VERSION_RE.match(kubernetes_version.strip())
    assert match is not None  # the constructor has already validated the version
    version = f"{match[1]}.{match[2]}.{match[3] or 0}"
    template = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
    crd_location = f"{schema_dir}{os.sep}{template}"
    return [
        binary,
        "-strict",
        "-output",
        "json",
        "-kubernetes-version",
        version,
        "-schema-location",
        "default",
        "-schema-location",
        crd_location,
        "-",
    ]


def _run_kubeconform(command: list[str], objects: list[Mapping[str, Any]]) -> str:
    # JSON is YAML, so a stream of JSON documents is a valid multi-document input.
    stdin = "".join(f"---\n{json.dumps(obj, default=str)}\n" for obj in objects)
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServegenError(f"cannot run kubeconform: {exc}") from exc
    if done.returncode not in (0, 1) or not done.stdout.strip():
        detail = done.stderr.strip() or f"exit status {done.returncode}"
        raise ServegenError(f"kubeconform failed: {detail}")
    return done.stdout


def parse_kubeconform_output(output: str) -> list[ObjectProblem]:
    """Problems from `kubeconform -output json`: one per validation error, else per resource."""
    try:
        resources = json.loads(output).get("resources") or []
    except (ValueError, AttributeError) as exc:
        raise ServegenError(f"kubeconform printed something that is not its JSON: {exc}") from exc
    problems = []
    for resource in resources:
        if resource.get("status") not in ("statusInvalid", "statusError"):
            continue
        ident = (
            str(resource.get("version", "")),
            str(resource.get("kind", "")),
            str(resource.get("name", "")),
        )
        details = resource.get("validationErrors") or []
        if not details:
            problems.append(ObjectProblem(*ident, "", f"kubeconform: {resource.get('msg', '')}"))
        for detail in details:
            path = _pointer_to_path(str(detail.get("path", "")))
            problems.append(ObjectProblem(*ident, path, f"kubeconform: {detail.get('msg', '')}"))
    return problems


def _pointer_to_path(pointer: str) -> str:
    """JSON pointer `/spec/containers/0/image` -> `spec.containers[0].image`."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    return format_path([int(t) if t.isdigit() else t for t in tokens])
