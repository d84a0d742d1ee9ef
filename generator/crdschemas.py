"""CRD files as JSON Schemas: conversion, the per-kind index, and the two caches.

A CustomResourceDefinition's `openAPIV3Schema` is converted to JSON Schema 2020-12 with
the API server's structural-schema rules: unknown (pruned) fields are errors unless
`x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string` means integer or
string, `nullable` admits null, `x-kubernetes-embedded-resource` objects carry
apiVersion/kind/ObjectMeta, and the root `metadata` is a real ObjectMeta whose name must
be a DNS-1123 subdomain. Not converted, because no schema can say them: CEL rules
(`x-kubernetes-validations`), uniqueness of `x-kubernetes-list-type: map` keys, `format`s.

Parsing the 2 MB KServe CRD as YAML costs about 0.6 s, so conversions are looked up by a
content key: a hash of the CRD file's bytes and of the converter's own source
(`content_key`). The bundled CRDs' conversions ship as package data
(schemas/crdschemas/, written by `python -m generator.crdschemas`); other CRD files
are converted once per machine into `$XDG_CACHE_HOME/servegen/crds`. An entry is used only
under the key it carries, so an edited CRD or converter is converted again, never served
stale; a cache that cannot be read or written only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from generator import crds, k8sformats, k8sschemas
from generator.errors import ServegenError
from generator.k8sformats import DNS1123_SUBDOMAIN
from generator.k8sschemas import metadata_schema, with_root_metadata

JSON = dict[str, Any]
Kind = tuple[str, str]  # (apiVersion, kind)

SHIPPED_DIR = "crdschemas"  # in the schemas package; not under crds/, which is a CRD folder
_INDEX = "index.json"


# --------------------------------------------------------------------------- content keys


@cache
def converter_digest() -> str:
    """A hash of the code that decides what a conversion produces."""
    digest = hashlib.sha256()
    for module in (sys.modules[__name__], k8sschemas, k8sformats):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


def content_key(data: bytes) -> str:
    """The key of one CRD file's conversion: its bytes and the converter's source."""
    return hashlib.sha256(f"crd-schemas\0{converter_digest()}\0".encode() + data).hexdigest()


# --------------------------------------------------------------------------- the index


@dataclass(frozen=True)
class Converted:
    """The served versions one CRD file defines, as converted schemas."""

    key: str  # content_key of the file
    schemas: dict[Kind, JSON]  # refer to ObjectMeta by `#/$defs/...`, not yet bundled

    def to_json(self) -> JSON:
        versions = [
            {"api_version": api_version, "kind": kind, "schema": schema}
            for (api_version, kind), schema in self.schemas.items()
        ]
        return {"key": self.key, "versions": versions}

    @staticmethod
    def from_json(data: Any, key: str) -> Converted:
        """ValueError unless `data` is an entry written under `key`."""
        try:
            if data["key"] != key:
                raise ValueError("written under another key")
            schemas = {(v["api_version"], v["kind"]): v["schema"] for v in data["versions"]}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed entry: {exc}") from exc
        return Converted(key, schemas)


@dataclass(frozen=True)
class CrdFile:
    """One CRD file: which kinds it serves, and their schemas, read on first use."""

    path: Path
    key: str
    kinds: tuple[Kind, ...]
    _load: Callable[[], Converted] = field(repr=False, compare=False)
    _loaded: list[Converted] = field(default_factory=list, repr=False, compare=False)

    def schema(self, kind: Kind) -> JSON:
        if not self._loaded:
            self._loaded.append(self._load())
        return self._loaded[0].schemas[kind]


@dataclass(frozen=True)
class CrdIndex:
    files: dict[Kind, CrdFile]  # the file whose schema judges each (apiVersion, kind)
    served: dict[tuple[str, str], tuple[str, ...]]  # (group, kind) -> served versions


def load_crd_index(sources: Sequence[Path], fallback: Sequence[Path] = ()) -> CrdIndex:
    """CRDs from `sources`, then from `fallback` (the bundled CRDs) for every kind that
    no source defines: a configured CRD replaces the bundled one of its kind."""
    configured = [crd_file(path) for path in crds.crd_files(sources)]
    defined = {_group_kind(kind) for file in configured for kind in file.kinds}
    files: dict[Kind, CrdFile] = {}
    served: dict[tuple[str, str], tuple[str, ...]] = {}
    for file in (*configured, *(crd_file(path) for path in fallback)):
        for kind in file.kinds:
            if file not in configured and _group_kind(kind) in defined:
                continue
            # The first definition of a kind wins, so that a CRD present in two
            # directories (e.g. a chart and its source) is not an error.
            if kind not in files:
                files[kind] = file
                group, _, version = kind[0].rpartition("/")
                served[(group, kind[1])] = (*served.get((group, kind[1]), ()), version)
    return CrdIndex(files, served)


def _group_kind(kind: Kind) -> tuple[str, str]:
    return kind[0].rpartition("/")[0], kind[1]


_FILE_CACHE: dict[tuple[str, int, int], CrdFile] = {}


def crd_file(path: Path) -> CrdFile:
    """One CRD file, read once per process and (path, mtime, size)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ServegenError(f"cannot read CRD file {path}: {exc.strerror}") from exc
    identity = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if identity not in _FILE_CACHE:
        _FILE_CACHE[identity] = _read_crd_file(path)
    return _FILE_CACHE[identity]


def _read_crd_file(path: Path) -> CrdFile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ServegenError(f"cannot read CRD file {path}: {exc.strerror}") from exc
    key = content_key(data)
    shipped = _shipped_index().get(path.name)
    if shipped is not None and shipped[0] == key:
        kinds = shipped[1]
        return CrdFile(path, key, kinds, lambda: _load_shipped(path.name, key))
    converted = _cached(key) or _convert_and_cache(path, data, key)
    return CrdFile(path, key, tuple(converted.schemas), lambda: converted)


# --------------------------------------------------------------------------- package data


def shipped_dir() -> Path:
    return crds.bundled_dir().parent / SHIPPED_DIR


@cache
def _shipped_index() -> dict[str, tuple[str, tuple[Kind, ...]]]:
    """File name -> (content key, kinds) of the conversions shipped with servegen."""
    try:
        data = json.loads((shipped_dir() / _INDEX).read_bytes())
        return {
            name: (entry["key"], tuple((a, k) for a, k in entry["kinds"]))
            for name, entry in data.items()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # not shipped (a source checkout mid-edit): convert instead


def _load_shipped(name: str, key: str) -> Converted:
    try:
        return Converted.from_json(json.loads((shipped_dir() / f"{name}.json").read_bytes()), key)
    except (OSError, ValueError):
        path = crds.bundled_dir() / name
        return _convert_and_cache(path, path.read_bytes(), key)


def write_shipped(directory: Path | None = None) -> list[str]:
    """(Re)write the bundled CRDs' conversions; the names of the files written."""
    target = directory or shipped_dir()
    target.mkdir(parents=True, exist_ok=True)
    index: JSON = {}
    written = []
    for path in crds.bundled_files():
        data = path.read_bytes()
        converted = Converted(content_key(data), _convert_file(path, data))
        index[path.name] = {"key": converted.key, "kinds": [list(k) for k in converted.schemas]}
        written += _write_if_changed(target / f"{path.name}.json", converted.to_json())
    written += _write_if_changed(target / _INDEX, index)
    for stale in sorted(set(target.glob("*.json")) - {target / f"{n}.json" for n in index}):
        if stale.name != _INDEX:
            stale.unlink()
            written.append(stale.name)
    return written


def _write_if_changed(path: Path, data: JSON) -> list[str]:
    text = json.dumps(data, separators=(",", ":")) + "\n"  # key order is the CRD's own
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return []
    path.write_text(text, encoding="utf-8")
    return [path.name]


# --------------------------------------------------------------------------- disk cache


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "servegen" / "crds"


def _cached(key: str) -> Converted | None:
    try:
        return Converted.from_json(json.loads((cache_dir() / f"{key}.json").read_bytes()), key)
    except (OSError, ValueError):
        return None


def _convert_and_cache(path: Path, data: bytes, key: str) -> Converted:
    converted = Converted(key, _convert_file(path, data))
    target = cache_dir() / f"{key}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(converted.to_json()), encoding="utf-8")
        tmp.replace(target)  # atomic: concurrent runs write the same bytes
    except OSError:
        pass  # a read-only home is fine: the cache only saves time
    return converted


# --------------------------------------------------------------------------- conversion


def _convert_file(path: Path, data: bytes) -> dict[Kind, JSON]:
    try:
        text = data.decode("utf-8")
        documents = [json.loads(text)] if path.suffix == ".json" else _yaml_documents(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServegenError(f"cannot parse CRD file {path}: {exc}") from exc
    found = [
        d for d in documents if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
    ]
    if not found:
        raise ServegenError(f"CRD file {path} contains no CustomResourceDefinition")
    return {kind: schema for crd in found for kind, schema in _crd_versions(crd, path)}


def _yaml_documents(text: str) -> list[Any]:
    # Imported here: only a CRD file with no conversion cached needs a YAML parser.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        # The C loader (ruamel.yaml.clib): the KServe CRD alone is 2 MB of YAML.
        return list(YAML(typ="safe", pure=False).load_all(text))
    except YAMLError as exc:
        raise ValueError(str(exc)) from exc


def _crd_versions(crd: JSON, path: Path) -> Iterator[tuple[Kind, JSON]]:
    try:
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            root = with_root_metadata(convert(schema, structural=True), DNS1123_SUBDOMAIN)
            root = share_repeats(root)
            yield (f"{group}/{version['name']}", kind), root
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


def convert(node: Mapping[str, Any], *, structural: bool) -> JSON:
    """One OpenAPI v3 (structural) schema node as JSON Schema 2020-12.

    `structural` is False inside anyOf/allOf/oneOf/not: fields named there are value
    validations only, so they neither prune nor make anything unknown.
    """
    out: JSON = {}
    for key, value in node.items():
        if key in _IGNORED_KEYS:
            continue
        if key == "properties":
            out[key] = {k: convert(v, structural=structural) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = convert(value, structural=structural and key != "not")
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [convert(v, structural=False) for v in value]
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


if __name__ == "__main__":
    # Run after changing a bundled CRD or the converter; tests/test_crdschemas.py checks it.
    for name in write_shipped() or ["(nothing changed)"]:
        print(name)
