"""A persistent, content-addressed cache of per-spec-file build results.

What a spec file contributes (its specs' names and positions, its warnings, and each
model's summary, files under models/<name>/ and the kinds its objects had no schema for)
depends only on servegen itself, the configuration, the CRDs it is checked against and
the file's path and bytes; the cache key is a hash of exactly those, so any build
(`render`, `render --check`, `validate`, `publish`'s builds, `watch`'s first; `diff`
keeps full objects, which are not cached) reuses what an earlier process computed for
every file that did not change, without parsing or validating it. Only files whose
specs all passed every check are stored.

Safe by construction:
- each entry holds its full key and is used only when that key matches, so a truncated,
  foreign or colliding file is a miss, never a wrong result;
- entries are written to a temporary file and renamed over, so concurrent runs never
  read half an entry (the last writer wins, and both wrote the same bytes);
- anything that cannot be read or written is ignored: the cache only saves time, and
  deleting the folder at any moment is safe.

Whole builds are stored in entries of this folder too (generator/wholebuild.py).

It lives next to the CRD cache, in $XDG_CACHE_HOME/servegen/builds (~/.cache by default).
SERVEGEN_NO_CACHE=1 turns it off.

Eviction: an entry's modification time says when it was last used (a hit older than a
day touches it). At most once a day, the first process that stores something prunes
the folder: entries unused for MAX_AGE_DAYS go, then the least recently used until the
folder is under MAX_BYTES. That walk is a stat per entry (well under a second for the
entries of a 10,000-spec repository), paid once a day rather than on every run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import marshal
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from generator.cachedir import servegen_cache
from generator.config import Config
from generator.errors import Diagnostic
from generator.render import EnvironmentRender, ModelRender
from generator.validate import SpecName
from generator.version import installed_version, servegen_version
from generator.versions import ModelVersion
from runtimes.base import Endpoint

# Bump when what an entry holds changes shape.
FORMAT = "4"
_PACKAGES = ("generator", "runtimes", "schemas")
# Validation (pydantic), templates (jinja2), YAML reading, schema checks.
_LIBRARIES = ("pydantic", "pydantic-core", "jinja2", "ruamel.yaml", "jsonschema-rs")
DAY = 86_400.0
MAX_AGE_DAYS = 30  # an entry no run used for this long is deleted
MAX_BYTES = 1 << 30  # beyond this, the least recently used entries are deleted
_PRUNED = ".pruned"  # its modification time: when the folder was last pruned


@dataclasses.dataclass(frozen=True)
class Cached:
    """One model's stored result."""

    model: ModelRender  # a summary, as build() keeps it
    files: Mapping[str, bytes]
    skipped: Mapping[str, int]
    # model_text(model), once made: an entry, a worker's message, a spec file's
    # contribution and a whole build all hold the same text.
    text: bytes | None = None


@dataclasses.dataclass(frozen=True)
class CachedFile:
    """One spec file's stored result: every spec in it was valid and passed its checks."""

    names: tuple[SpecName, ...]
    warnings: tuple[Diagnostic, ...]
    models: tuple[Cached, ...]


def enabled() -> bool:
    return os.environ.get("SERVEGEN_NO_CACHE", "") in ("", "0")


def cache_dir() -> Path:
    return servegen_cache() / "builds"


@cache
def code_digest() -> str:
    """servegen's version, the bytes of its own code, templates and bundled CRDs, and
    the versions of Python and the libraries that decide what a spec renders to.

    The version alone would let an edited source tree reuse results of the old code.
    """
    digest = hashlib.sha256(f"{FORMAT}\0{servegen_version()}\0{sys.version}\0".encode())
    for library in _LIBRARIES:
        digest.update(f"{library}={installed_version(library) or 'missing'}\0".encode())
    here = Path(__file__).resolve().parent.parent
    for package in _PACKAGES:
        for path in sorted((here / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(here).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_key(config: Config, crd_files: Iterable[Path], root: Path | None = None) -> str:
    """What every model's result depends on besides its own spec file.

    A CRD file inside `root` (the repository) is named by its path there: the same
    commit exported to another temporary folder is the same input.
    """
    digest = hashlib.sha256(code_digest().encode() + b"\0")
    digest.update(config.model_dump_json().encode() + b"\0")
    for path in crd_files:  # configured CRDs, in the order they take precedence
        inside = root is not None and path.is_relative_to(root)
        name = f"root:{path.relative_to(root).as_posix()}" if inside and root else str(path)
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def file_key(build: str, path: str, content: bytes) -> str:
    """`build` plus one spec file's repository path and a digest of its bytes."""
    digest = hashlib.sha256(f"file\0{build}\0{path}\0".encode("utf-8", "surrogateescape"))
    digest.update(content)
    return digest.hexdigest()


def entry_path(key: str) -> Path:
    return Path(_entry_name(key))


def _entry_name(key: str) -> str:
    # A string, no Path: pathlib's parsing per entry was a tenth of a warm build.
    return f"{cache_dir()}/{key[:2]}/{key}.json"


def read_entry(key: str) -> bytes:
    """An entry's bytes (and the entry marked used)."""
    with open(_entry_name(key), "rb") as handle:  # noqa: PTH123 - a string, see above
        data = handle.read()
        mark_used(handle.fileno())
    return data


def mark_used(fd: int) -> None:
    """A hit on an entry not used for a day touches it: its mtime is its last use."""
    if os.fstat(fd).st_mtime < time.time() - DAY:
        with contextlib.suppress(OSError):  # a read-only cache is still used
            os.utime(fd)


def load(key: str) -> CachedFile | None:
    """The stored result for `key`, or None (missing, unreadable or not for this key)."""
    try:
        return decode(key, read_entry(key))
    except OSError:
        return None


def read_raw(key: str) -> bytes | None:
    """The bytes of the entry stored under `key`, unchecked (see decode()), or None."""
    try:
        return read_entry(key)
    except OSError:
        return None


def decode(key: str, data: bytes, blobs: Sequence[bytes] | None = None) -> CachedFile | None:
    """An entry's bytes as the result stored for `key`; None when they are damaged or
    are not that key's (what encode() made, or an entry file's bytes). `blobs`: the
    files' bytes, when encode() was given a list for them."""
    pieces = None if blobs is None else iter(blobs)
    try:
        entry = json.loads(data)
        if entry.get("key") != key:
            return None
        found = CachedFile(
            tuple(
                SpecName(_shared(str(n)), _shared(str(p)), int(line), int(col))
                for n, p, line, col in entry["names"]
            ),
            tuple(Diagnostic(*w) for w in entry["warnings"]),
            tuple(_cached_from(model, pieces) for model in entry["models"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        return None
    if pieces is not None and next(pieces, None) is not None:
        return None  # more files' bytes than the entry names
    return found


def _cached_from(entry: Mapping[str, Any], pieces: Iterator[bytes] | None) -> Cached:
    text = None
    if pieces is None:
        model = entry["model"]
        files = {path: content.encode() for path, content in entry["files"].items()}
    else:  # the model's text, then its files' bytes
        text = next(pieces)
        model = json.loads(text)
        files = {str(path): next(pieces) for path in entry["files"]}
    return Cached(
        model_from_json(model),
        files,
        {str(kind): int(count) for kind, count in entry["skipped"].items()},
        text,
    )


def store(key: str, result: CachedFile) -> None:
    data = encode(key, result)
    if data is not None:
        write_entry(key, [data])


def encode(key: str, result: CachedFile, blobs: list[bytes] | None = None) -> bytes | None:
    """The entry's bytes for `result` under `key` (None: a file that is not UTF-8):
    compact_json() of {"key", "names", "warnings", "models": [{"model", "files", "skipped"}]},
    put together from each model's text (made once, see with_texts()).

    Given `blobs`, each model's text and then its files' bytes are appended to it, and
    the entry's models list only their files' paths (how a worker process sends a
    result back, generator/workers.py).
    """
    try:
        models = [_model_entry(cached, inline=blobs is None) for cached in result.models]
    except UnicodeDecodeError:
        return None
    if blobs is not None:
        for cached in result.models:
            blobs.append(_text(cached))
            blobs.extend(cached.files.values())
    names = compact_json([flat_tuple(name) for name in result.names])
    warnings = compact_json([flat_tuple(w) for w in result.warnings])
    return (
        b'{"key":' + compact_json(key) + b',"names":' + names + b',"warnings":' + warnings
        + b',"models":[' + b",".join(models) + b"]}"
    )  # fmt: skip


def _model_entry(cached: Cached, *, inline: bool) -> bytes:
    """One model's object in an entry: its text and its files' texts (`inline`), or only
    its files' paths (a worker's message, whose blobs carry the rest)."""
    if inline:
        files = {path: data.decode() for path, data in cached.files.items()}
        head = b'{"model":' + _text(cached) + b',"files":' + compact_json(files)
    else:
        head = b'{"files":' + compact_json(list(cached.files))
    return head + b',"skipped":' + compact_json(dict(cached.skipped)) + b"}"


def model_text(model: ModelRender) -> bytes:
    """A model summary's JSON, as entries and whole builds hold it."""
    return compact_json(model_to_json(model))


def with_texts(result: CachedFile) -> CachedFile:
    """`result` with each model's text made, for the several encodings that hold it."""
    models = tuple(dataclasses.replace(c, text=_text(c)) for c in result.models)
    return dataclasses.replace(result, models=models)


def _text(cached: Cached) -> bytes:
    return cached.text if cached.text is not None else model_text(cached.model)


def derived_key(build: str, what: str, inputs: Any) -> str:
    """The key of something computed from `inputs` (plain data and flat dataclasses):
    the sha256 of `what`, `build` and the inputs as marshal writes them, or, when
    marshal cannot write them (a dataclass, a subclass of str), their canonical JSON.

    JSON escapes every character of every string in Python, and the inputs of a large
    repository's cluster files (every model's endpoints) took most of a second that
    way; marshal copies them. Its version 2 writes no references to objects met
    before, so equal values held by other objects give the same bytes; the bytes
    differ for different values, since marshal.loads() gives them back. Its format
    can change with Python's version, which `build` names (code_digest()).
    """
    total = hashlib.sha256(f"{what}\0{build}\0marshal\0".encode())
    try:
        _hash_marshal(total, inputs, 2)
    except ValueError:  # not plain data: the JSON text never holds a NUL, as above
        total = hashlib.sha256(f"{what}\0{build}\0".encode())
        _hash_json(total, inputs, 2)
    return total.hexdigest()


_MARSHAL_VERSION = 2  # the last without references (version 3 added them)


def _hash_marshal(total: Any, value: Any, depth: int) -> None:
    """Feed `value` as marshal writes it to `total`; lists and tuples `depth` levels
    down as their kind and length, then their items, a few hundred per marshal call
    (the whole text of a large repository's inputs was megabytes at once). Raises
    ValueError for what marshal cannot write."""
    kind = value.__class__
    if depth == 0 or (kind is not list and kind is not tuple):
        total.update(marshal.dumps(value, _MARSHAL_VERSION))
        return
    total.update(b"%s%d\0" % (b"L" if kind is list else b"T", len(value)))
    if depth == 1:
        for start in range(0, len(value), _BATCH):
            total.update(marshal.dumps(value[start : start + _BATCH], _MARSHAL_VERSION))
    else:
        for item in value:
            _hash_marshal(total, item, depth - 1)


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_fields
    ).encode()


def _hash_json(total: Any, value: Any, depth: int) -> None:
    """Feed _canonical(value) to `total`, the items of lists `depth` levels down a few
    hundred at a time: the inputs of a large repository's cluster files (every model's
    endpoints) made tens of megabytes of text at once."""
    if depth == 0 or not isinstance(value, list | tuple):
        total.update(_canonical(value))
    elif depth == 1:
        for piece in json_pieces(value, _canonical):
            total.update(piece)
    else:
        total.update(b"[")
        for number, item in enumerate(value):
            if number:
                total.update(b",")
            _hash_json(total, item, depth - 1)
        total.update(b"]")


def json_pieces(items: Iterable[Any], encode: Callable[[list[Any]], bytes]) -> Iterator[bytes]:
    """encode(list(items)), byte for byte, for an `encode` that writes a list as JSON
    does: as pieces to write (or hash) one after the other, each batch of a few hundred
    items encoded alone, so the whole text is never held at once."""
    yield b"["
    batch: list[Any] = []
    separator = b""
    for item in items:
        batch.append(item)
        if len(batch) == _BATCH:
            yield separator + encode(batch)[1:-1]
            separator, batch = b",", []
    if batch:
        yield separator + encode(batch)[1:-1]
    yield b"]"


_BATCH = 256  # items encoded by one json.dumps (or marshal.dumps) call


def load_files(key: str) -> dict[str, bytes] | None:
    """Output files stored under `key` (cluster files), or None."""
    try:
        entry = json.loads(read_entry(key))
        if entry.get("key") != key:
            return None
        return {str(path): text.encode() for path, text in entry["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store_files(key: str, files: Mapping[str, bytes]) -> None:
    """What compact_json({"key": key, "files": texts}) writes, a file at a time: the cluster
    files of a large repository are tens of megabytes, and copies of them all at once
    (as text, then JSON, then bytes) set a cold render's peak memory."""

    def pieces() -> Iterator[bytes]:
        yield b'{"key":' + _json_string(key) + b',"files":{'
        separator = b""
        for path, data in files.items():
            yield separator + _json_string(path) + b":" + _json_string(data.decode())
            separator = b","
        yield b"}}"

    with contextlib.suppress(UnicodeDecodeError):  # then it is not stored: nothing to save
        write_entry(key, pieces())


def _json_string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode()


def compact_json(data: Any) -> bytes:
    """json.dumps(data, ensure_ascii=False, separators=(",", ":")), encoded: what every
    cache entry and contribution digest is made of.

    One encoder for every call: json.dumps with any option but the defaults makes a new
    JSONEncoder each time, which was half the cost of encoding a small summary or path
    list (12 -> 6 us), and a build encodes tens of thousands of them. (encode(), not
    json.dump: only the former uses the C encoder.)"""
    return _COMPACT.encode(data).encode()


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class DamagedEntryError(Exception):
    """A section of a whole-build entry (generator/wholebuild.py) does not match the
    length or digest its head records."""


# A piece of an entry copied from another open entry: (its fd, offset, length).
Range = tuple[int, int, int]


def write_entry(key: str, entry: Mapping[str, Any] | Iterable[bytes | Range]) -> None:
    """Write an entry (a JSON object, or pieces: bytes, or ranges of another entry) whole
    or not at all: a temporary file renamed over the old one."""
    folder = f"{cache_dir()}/{key[:2]}"
    if isinstance(entry, Mapping):
        entry = [compact_json(entry)]
    # Unique per process and thread: concurrent writers of one key never share a file.
    tmp = f"{folder}/.{key}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        fd = _create(folder, tmp)
        try:
            try:
                for piece in entry:
                    if isinstance(piece, tuple):
                        _copy(*piece, fd)
                    else:
                        write_all(fd, piece)
            finally:
                os.close(fd)
            os.replace(tmp, f"{folder}/{key}.json")  # noqa: PTH105 - strings, no Path
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # noqa: PTH108
            raise
    except OSError:
        return  # a read-only or full cache folder is fine: the cache only saves time
    prune_daily()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy(source: int, offset: int, length: int, target: int) -> None:
    """Append `length` bytes of `source` from `offset` to `target`, in the kernel where
    it can (no copy through this process's memory)."""
    end = offset + length
    with contextlib.suppress(OSError):  # not on this system or file system: read them
        while offset < end:
            done = os.copy_file_range(source, target, end - offset, offset)
            if done == 0:
                raise DamagedEntryError("shorter than its head says")
            offset += done
    while offset < end:
        chunk = os.pread(source, min(end - offset, 1 << 22), offset)
        if not chunk:
            raise DamagedEntryError("shorter than its head says")
        write_all(target, chunk)
        offset += len(chunk)


_made: set[str] = set()  # folders this process made or found (one mkdir each)


def _create(folder: str, path: str) -> int:
    """Open a new file for writing, making its folder (again, if it was deleted)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if folder not in _made:
        os.makedirs(folder, exist_ok=True)  # noqa: PTH103 - strings, no Path
        _made.add(folder)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:  # the cache was deleted meanwhile: that is allowed
        os.makedirs(folder, exist_ok=True)  # noqa: PTH103
        return os.open(path, flags, 0o644)


# --- eviction ---------------------------------------------------------------------------


@cache
def prune_daily() -> None:
    """Prune the folder when no process did for a day; at most once per process.

    The stamp is touched before pruning, so concurrent runs do not all walk the folder.
    """
    stamp = cache_dir() / _PRUNED
    try:
        if stamp.stat().st_mtime > time.time() - DAY:
            return
    except OSError:
        pass  # never pruned
    try:
        stamp.touch()
    except OSError:
        return
    prune()


def prune(now: float | None = None) -> list[Path]:
    """Delete entries unused for MAX_AGE_DAYS, then the least recently used ones until
    the folder holds at most MAX_BYTES; returns what was deleted.

    Another process may read an entry while it goes: that is a miss, as for any entry.
    Temporary files a crashed writer left (a day old) go too.
    """
    now = time.time() if now is None else now
    kept: list[tuple[float, int, Path]] = []
    deleted: list[Path] = []
    for path in cache_dir().glob("??/*"):
        try:
            info = path.stat()
        except OSError:
            continue  # deleted meanwhile
        abandoned = path.name.endswith(".tmp") and info.st_mtime < now - DAY
        if abandoned or info.st_mtime < now - MAX_AGE_DAYS * DAY:
            deleted.append(path)
        elif path.suffix == ".json":
            kept.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, _ in kept)
    for _, size, path in sorted(kept):  # least recently used first
        if total <= MAX_BYTES:
            break
        deleted.append(path)
        total -= size
    for path in deleted:
        path.unlink(missing_ok=True)
    return deleted


# --- summaries <-> JSON ---------------------------------------------------------------


def model_to_json(model: ModelRender) -> dict[str, Any]:
    return {
        "name": model.name,
        "path": model.path,
        "line": model.line,
        "col": model.col,
        "runtime": model.runtime,
        "environments": {env: _environment_to(r) for env, r in model.environments.items()},
    }


def _environment_to(rendered: EnvironmentRender) -> dict[str, Any]:
    version = rendered.version
    return {
        "namespace": rendered.namespace,
        "labels": dict(rendered.labels),
        "annotations": dict(rendered.annotations),
        "objects": list(rendered.objects),
        "endpoint": _fields(rendered.endpoint),
        "version": None if version is None else _fields(version),
    }


def model_from_json(data: Mapping[str, Any]) -> ModelRender:
    return ModelRender(
        name=sys.intern(data["name"]),  # as the SpecName and endpoint read back with it
        path=sys.intern(data["path"]),
        line=data["line"],
        col=data["col"],
        runtime=sys.intern(data["runtime"]),
        base=(),
        environments={
            sys.intern(env): _environment_from(r) for env, r in data["environments"].items()
        },
    )


def _environment_from(data: Mapping[str, Any]) -> EnvironmentRender:
    try:
        return _usual_environment(data)
    except (_OtherShapeError, TypeError, KeyError, AttributeError):
        return _any_environment(data)


def _any_environment(data: Mapping[str, Any]) -> EnvironmentRender:
    """An environment's summary from its JSON, whatever its shape."""
    version = data["version"]
    return EnvironmentRender(
        namespace=sys.intern(data["namespace"]),
        labels=_shared(data["labels"]),
        annotations=_shared(data["annotations"]),
        variant=(),
        objects=tuple(map(_shared, data["objects"])),
        endpoint=Endpoint(**_tuples(data["endpoint"])),
        version=None if version is None else ModelVersion(**_tuples(version)),
    )


# _usual_environment() and its helpers give what _any_environment() gives, for the
# shape render.summary() makes, without _shared()'s call per string: 10,000 models
# read back from the latest build took 0.93 s, now 0.68 s (what is left is mostly
# making the objects themselves; interning all the strings is 0.05 s of it). They raise
# for any other shape (sys.intern() takes a str alone; each mapping's keys are checked),
# and then _any_environment() reads it: the result never depends on which one did
# (tests/test_buildcache.py compares them). A list is checked to be one: a string
# would make a tuple of its characters where _tuples() keeps the string.


def _usual_environment(data: Mapping[str, Any]) -> EnvironmentRender:
    """_any_environment() of labels and annotations that map strings to strings, objects
    as render.summary() keeps them, and an endpoint and a version of their own fields."""
    intern = sys.intern
    version = data["version"]
    return EnvironmentRender(
        namespace=intern(data["namespace"]),
        labels={intern(k): intern(v) for k, v in data["labels"].items()},
        annotations={intern(k): intern(v) for k, v in data["annotations"].items()},
        variant=(),
        objects=tuple(map(_usual_object, data["objects"])),
        endpoint=_usual_endpoint(data["endpoint"]),
        version=None if version is None else _usual_version(version),
    )


def _usual_object(value: Any) -> Any:
    """_shared() of {"apiVersion", "kind", "metadata": {"name", "namespace"}} (keys in
    that order), with "spec" last for a KubeAI Model."""
    keys, metadata = tuple(value), value["metadata"]
    if keys not in _OBJECT_KEYS or tuple(metadata) != _METADATA_KEYS:
        raise _OtherShapeError
    intern, namespace = sys.intern, metadata["namespace"]
    found = {
        "apiVersion": intern(value["apiVersion"]),
        "kind": intern(value["kind"]),
        "metadata": {
            "name": intern(metadata["name"]),
            "namespace": namespace if namespace is None else intern(namespace),
        },
    }
    if len(keys) > len(found):
        found["spec"] = _shared(value["spec"])
    return found


_OBJECT_KEYS = (("apiVersion", "kind", "metadata"), ("apiVersion", "kind", "metadata", "spec"))
_METADATA_KEYS = ("name", "namespace")


def _usual_endpoint(fields: Mapping[str, Any]) -> Endpoint:
    """Endpoint(**_tuples(fields)) of exactly its eight fields (each is looked up)."""
    adapters, features, paths = fields["adapters"], fields["features"], fields["paths"]
    lists = adapters.__class__ is features.__class__ is paths.__class__ is list
    if len(fields) != _ENDPOINT_FIELDS or not lists:
        raise _OtherShapeError
    intern = sys.intern
    return Endpoint(
        name=intern(fields["name"]),
        runtime=intern(fields["runtime"]),
        namespace=intern(fields["namespace"]),
        base_url=intern(fields["base_url"]),
        model=intern(fields["model"]),
        adapters=tuple(map(intern, adapters)),
        features=tuple(map(intern, features)),
        paths=tuple(map(intern, paths)),
    )


_ENDPOINT_FIELDS = 8


def _usual_version(fields: Mapping[str, Any]) -> ModelVersion:
    """ModelVersion(**_tuples(fields)) of exactly its four fields."""
    revision, image, adapters = fields["revision"], fields["image"], fields["adapters"]
    if len(fields) != _VERSION_FIELDS or adapters.__class__ is not list:
        raise _OtherShapeError
    intern = sys.intern
    return ModelVersion(
        model=intern(fields["model"]),
        revision=revision if revision is None else intern(revision),
        image=image if image is None else intern(image),
        adapters=tuple(map(intern, adapters)),
    )


_VERSION_FIELDS = 4


class _OtherShapeError(Exception):
    """A summary's JSON is not of the shape the _usual_*() readers know."""


def _shared(value: Any) -> Any:
    """`value` with its strings interned: every summary read back repeats the same keys,
    kinds and namespaces, which JSON decoding would otherwise hold once per model (at
    10,000 models, tens of megabytes)."""
    kind = value.__class__
    if kind is str:
        return sys.intern(value)
    if kind is dict:
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if kind is list:
        return [_shared(item) for item in value]
    return value


def _fields(flat: Any) -> dict[str, Any]:
    """A flat dataclass's fields (dataclasses.asdict copies deeply, ten times slower)."""
    names = _FIELD_NAMES.get(type(flat))
    if names is None:  # dataclasses.fields() per object was most of encoding a summary
        names = _FIELD_NAMES[type(flat)] = tuple(f.name for f in dataclasses.fields(flat))
    return {name: getattr(flat, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def flat_tuple(flat: Any) -> list[Any]:
    """dataclasses.astuple() of a flat dataclass, as the list JSON writes."""
    return list(_fields(flat).values())


def _tuples(fields: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold (strings shared)."""
    return {k: tuple(_shared(v)) if isinstance(v, list) else _shared(v) for k, v in fields.items()}


def crd_inputs(sources: Sequence[Path]) -> list[Path]:
    """Every configured CRD file a check may read (folders walked); the bundled ones are
    part of code_digest()."""
    out: list[Path] = []
    for source in sources:
        if source.is_dir():
            out.extend(sorted(p for p in source.rglob("*") if p.is_file()))
        else:
            out.append(source)
    return out
