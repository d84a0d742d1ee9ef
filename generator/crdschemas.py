"""CRD files as JSON Schemas by kind: the index, the content keys and the two caches.

The conversion itself is generator/crdconvert.py. Parsing the 2 MB KServe CRD as YAML
costs about 0.6 s, so conversions are looked up by a content key: a hash of the CRD
file's bytes and of the converter's own source (`content_key`). The bundled CRDs'
conversions ship as package data (schemas/crdschemas/, written by `python -m
generator.crdschemas`); other CRD files are converted once per machine into
`$XDG_CACHE_HOME/servegen/crds`. An entry is used only under the key it carries, so an
edited CRD or converter is converted again, never served stale; a cache that cannot be
read or written only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from generator import crdconvert, crds, k8sformats, k8sschemas
from generator.cachedir import servegen_cache
from generator.crdconvert import JSON, Kind
from generator.errors import ServegenError

SHIPPED_DIR = "crdschemas"  # in the schemas package; not under crds/, which is a CRD folder
_INDEX = "index.json"


# --------------------------------------------------------------------------- content keys


@cache
def converter_digest() -> str:
    """A hash of the code that decides what a conversion produces."""
    digest = hashlib.sha256()
    for module in (crdconvert, k8sschemas, k8sformats):
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
        converted = Converted(content_key(data), crdconvert.convert_file(path, data))
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
    return servegen_cache() / "crds"


# A cache entry is the sha256 of its JSON, a newline, then the JSON: one damaged in any way
# (a disk, an editor, a crash) is converted again rather than trusted.
def _cached(key: str) -> Converted | None:
    try:
        raw = (cache_dir() / f"{key}.json").read_bytes()
    except OSError:
        return None
    digest, _, body = raw.partition(b"\n")
    if digest != hashlib.sha256(body).hexdigest().encode():
        return None
    try:
        return Converted.from_json(json.loads(body), key)
    except ValueError:
        return None


def _convert_and_cache(path: Path, data: bytes, key: str) -> Converted:
    converted = Converted(key, crdconvert.convert_file(path, data))
    target = cache_dir() / f"{key}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        body = json.dumps(converted.to_json()).encode()
        tmp.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        tmp.replace(target)  # atomic: concurrent runs write the same bytes
    except OSError:
        pass  # a read-only home is fine: the cache only saves time
    return converted


if __name__ == "__main__":
    # Run after changing a bundled CRD or the converter; tests/test_crdschemas.py checks it.
    for name in write_shipped() or ["(nothing changed)"]:
        print(name)
