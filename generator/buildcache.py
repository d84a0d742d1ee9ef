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

Whole builds are stored too (see "whole repositories" below): a head read on every hit,
sections read only when asked for, and a pointer to the latest build under each build
key, the base of a build with a few spec files changed.

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
import os
import stat
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, overload

from generator.config import Config
from generator.errors import Diagnostic
from generator.outindex import digest, tree_digest
from generator.render import EnvironmentRender, ModelRender
from generator.validate import SpecName
from generator.version import servegen_version
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


@dataclasses.dataclass(frozen=True)
class CachedFile:
    """One spec file's stored result: every spec in it was valid and passed its checks."""

    names: tuple[SpecName, ...]
    warnings: tuple[Diagnostic, ...]
    models: tuple[Cached, ...]


def enabled() -> bool:
    return os.environ.get("SERVEGEN_NO_CACHE", "") in ("", "0")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "servegen" / "builds"


@cache
def code_digest() -> str:
    """servegen's version, the bytes of its own code, templates and bundled CRDs, and
    the versions of Python and the libraries that decide what a spec renders to.

    The version alone would let an edited source tree reuse results of the old code.
    """
    digest = hashlib.sha256(f"{FORMAT}\0{servegen_version()}\0{sys.version}\0".encode())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}={metadata.version(library)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} missing\0".encode())
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
        digest.update(name.encode() + b"\0")
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def file_key(build: str, path: str, content: bytes) -> str:
    """`build` plus one spec file's repository path and a digest of its bytes."""
    digest = hashlib.sha256(f"file\0{build}\0{path}\0".encode())
    digest.update(content)
    return digest.hexdigest()


def _entry_path(key: str) -> Path:
    # One Path made from a string: pathlib's `/` per part was a tenth of a warm build.
    return Path(f"{cache_dir()}/{key[:2]}/{key}.json")


def _read(key: str) -> bytes:
    """An entry's bytes (and the entry marked used)."""
    with _entry_path(key).open("rb") as handle:
        data = handle.read()
        _mark_used(handle.fileno())
    return data


def _mark_used(fd: int) -> None:
    """A hit on an entry not used for a day touches it: its mtime is its last use."""
    if os.fstat(fd).st_mtime < time.time() - DAY:
        with contextlib.suppress(OSError):  # a read-only cache is still used
            os.utime(fd)


def load(key: str) -> CachedFile | None:
    """The stored result for `key`, or None (missing, unreadable or not for this key)."""
    try:
        entry = json.loads(_read(key))
        if entry.get("key") != key:
            return None
        return CachedFile(
            tuple(
                SpecName(str(n), str(p), int(line), int(col)) for n, p, line, col in entry["names"]
            ),
            tuple(Diagnostic(*w) for w in entry["warnings"]),
            tuple(_cached_from(model) for model in entry["models"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _cached_from(entry: Mapping[str, Any]) -> Cached:
    return Cached(
        _model_from(entry["model"]),
        {path: text.encode() for path, text in entry["files"].items()},
        {str(kind): int(count) for kind, count in entry["skipped"].items()},
    )


def store(key: str, result: CachedFile) -> None:
    try:
        models = [
            {
                "model": _model_to(cached.model),
                "files": {path: data.decode() for path, data in cached.files.items()},
                "skipped": dict(cached.skipped),
            }
            for cached in result.models
        ]
    except UnicodeDecodeError:
        return
    entry = {
        "key": key,
        "names": [dataclasses.astuple(name) for name in result.names],
        "warnings": [dataclasses.astuple(w) for w in result.warnings],
        "models": models,
    }
    _write(key, entry)


def derived_key(build: str, what: str, inputs: Any) -> str:
    """The key of something computed from `inputs` (plain data and flat dataclasses)."""
    text = json.dumps(
        inputs, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=_fields
    )
    return hashlib.sha256(f"{what}\0{build}\0{text}".encode()).hexdigest()


def load_files(key: str) -> dict[str, bytes] | None:
    """Output files stored under `key` (cluster files), or None."""
    try:
        entry = json.loads(_read(key))
        if entry.get("key") != key:
            return None
        return {str(path): text.encode() for path, text in entry["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def store_files(key: str, files: Mapping[str, bytes]) -> None:
    try:
        texts = {path: data.decode() for path, data in files.items()}
    except UnicodeDecodeError:
        return
    _write(key, {"key": key, "files": texts})


# A piece of an entry copied from another open entry: (its fd, offset, length).
_Range = tuple[int, int, int]


def _write(key: str, entry: Mapping[str, Any] | Sequence[bytes | _Range]) -> None:
    """Write an entry (a JSON object, or pieces: bytes, or ranges of another entry) whole
    or not at all: a temporary file renamed over the old one."""
    target = _entry_path(key)
    if isinstance(entry, Mapping):
        # json.dumps, not json.dump: only the former uses the C encoder.
        entry = [json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()]
    # Unique per process and thread: concurrent writers of one key never share a file.
    tmp = target.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = _create(tmp)
        try:
            try:
                for piece in entry:
                    if isinstance(piece, tuple):
                        _copy(*piece, fd)
                    else:
                        _write_all(fd, piece)
            finally:
                os.close(fd)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError:
        return  # a read-only or full cache folder is fine: the cache only saves time
    prune_daily()


def _write_all(fd: int, data: bytes) -> None:
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
        _write_all(target, chunk)
        offset += len(chunk)


_made: set[Path] = set()  # folders this process made or found (one mkdir each)


def _create(path: Path) -> int:
    """Open a new file for writing, making its folder (again, if it was deleted)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    if path.parent not in _made:
        path.parent.mkdir(parents=True, exist_ok=True)
        _made.add(path.parent)
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:  # the cache was deleted meanwhile: that is allowed
        path.parent.mkdir(parents=True, exist_ok=True)
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


# --- whole repositories -----------------------------------------------------------------
#
# A whole build is one entry: a JSON head line (key, counts, notes, warnings, the tree's
# digest, and where each section lies, with its length and sha256), then four sections:
# the model summaries (JSON), the output files' paths, lengths and digests (JSON), the
# files' bytes, and per spec file its path, the digest of its bytes and of what it
# contributes to what spans every model (see contribution()).
# A hit reads the head alone: what `render`, `render --check` and `validate` need
# when nothing changed. A section is read (and checked against its digest) only when a
# caller asks for what it holds; a section found damaged then is a miss after all: the
# entry is deleted and the build is done again (the `rebuild` given to load_build()).

_SECTIONS = ("models", "paths", "bytes", "sources")


class DamagedEntryError(Exception):
    """A section of a whole-build entry does not match the digest its head records."""


Rebuild = Callable[[], tuple[Sequence[ModelRender], Mapping[str, bytes]]]


class _Stored:
    """An open whole-build entry; its sections read when first needed."""

    def __init__(
        self, path: Path, fd: int, sections: Mapping[str, tuple[int, int, str]], rebuild: Rebuild
    ) -> None:
        self._path, self._fd, self._sections = path, fd, sections
        self._rebuild = rebuild
        self._closer = weakref.finalize(self, os.close, fd)
        self._models: tuple[ModelRender, ...] | None = None
        self._spans: dict[str, tuple[int, int, bytes]] | None = None
        self._blob: bytes | None = None
        self._reads = 0  # files read one by one (see _cut)
        self._rebuilt: tuple[Sequence[ModelRender], Mapping[str, bytes]] | None = None

    def _read(self, name: str) -> bytes:
        offset, length, expected = self._sections[name]
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise DamagedEntryError(name)
        # The bytes section is checked file by file, against the paths section's digests.
        if name != "bytes" and hashlib.sha256(data).hexdigest() != expected:
            raise DamagedEntryError(name)
        return data

    def _fallback(self) -> tuple[Sequence[ModelRender], Mapping[str, bytes]]:
        """The entry turned out damaged: forget it and build again, once."""
        if self._rebuilt is None:
            with contextlib.suppress(OSError):
                self._path.unlink()
            self._rebuilt = self._rebuild()
        return self._rebuilt

    def models(self) -> Sequence[ModelRender]:
        if self._rebuilt is not None:
            return self._rebuilt[0]
        if self._models is None:
            try:
                self._models = tuple(_model_from(m) for m in json.loads(self._read("models")))
            except (DamagedEntryError, ValueError, KeyError, TypeError, AttributeError):
                return self._fallback()[0]
        return self._models

    def listing(self) -> list[tuple[str, int, bytes]]:
        """Each output file's path, length and digest, in order (raises when damaged)."""
        found = [
            (str(path), int(length), bytes.fromhex(hexed))
            for path, length, hexed in json.loads(self._read("paths"))
        ]
        if sum(length for _, length, _ in found) != self._sections["bytes"][1]:
            raise DamagedEntryError("paths")
        return found

    def spans(self) -> Mapping[str, tuple[int, int, bytes]] | None:
        """Each file's place in the bytes section and its digest; None once rebuilt."""
        if self._rebuilt is not None:
            return None
        if self._spans is None:
            try:
                spans, offset = {}, 0
                for path, length, file_digest in self.listing():
                    spans[path] = (offset, offset + length, file_digest)
                    offset += length
            except (DamagedEntryError, ValueError, TypeError):
                self._fallback()
                return None
            self._spans = spans
        return self._spans

    def file(self, path: str) -> bytes:
        spans = self.spans()
        if spans is not None:
            start, end, expected = spans[path]
            data = self._cut(start, end)
            if data is not None and digest(data) == expected:
                return data
        return self._fallback()[1][path]

    _ONE_BY_ONE = 256  # files read on their own before the whole bytes section is

    def _cut(self, start: int, end: int) -> bytes | None:
        """One file's bytes: read alone while few are asked for (a write of a few changed
        files), else cut from the whole section, read once (a write of every file)."""
        if self._blob is None and self._reads < self._ONE_BY_ONE:
            self._reads += 1
            offset = self._sections["bytes"][0]
            return os.pread(self._fd, end - start, offset + start)
        if self._blob is None:
            with contextlib.suppress(DamagedEntryError):
                self._blob = self._read("bytes")
        return None if self._blob is None else self._blob[start:end]

    def rebuilt_files(self) -> Mapping[str, bytes]:
        return self._fallback()[1]

    @property
    def rebuilt(self) -> bool:
        return self._rebuilt is not None

    @property
    def rebuild(self) -> Rebuild:
        return self._rebuild

    @property
    def fd(self) -> int:
        return self._fd

    def offset(self, name: str) -> int:
        return self._sections[name][0]

    def section(self, name: str) -> tuple[int, int, int, str]:
        """(fd, offset, length, sha256) of a section, to copy it into another entry."""
        offset, length, expected = self._sections[name]
        return self._fd, offset, length, expected


class StoredModels(Sequence[ModelRender]):
    """A stored build's model summaries, decoded when first looked at (its length is
    known from the head)."""

    def __init__(self, stored: _Stored, count: int) -> None:
        self._stored, self._count = stored, count

    @overload
    def __getitem__(self, index: int) -> ModelRender: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ModelRender]: ...

    def __getitem__(self, index: int | slice) -> ModelRender | Sequence[ModelRender]:
        return self._stored.models()[index]

    def __len__(self) -> int:
        return len(self._stored.models()) if self._stored.rebuilt else self._count

    def __iter__(self) -> Iterator[ModelRender]:
        return iter(self._stored.models())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class StoredFiles(Mapping[str, bytes]):
    """A stored build's output files, each cut from the entry's bytes when asked for:
    a render that finds its output folder already holding this tree (by its digest)
    reads neither the paths nor the bytes of a 10,000-spec build."""

    def __init__(self, stored: _Stored, count: int) -> None:
        self._stored, self._count = stored, count

    @property
    def stored(self) -> _Stored:
        return self._stored

    def _files(self) -> Mapping[str, bytes] | Mapping[str, tuple[int, int, bytes]]:
        spans = self._stored.spans()
        return self._stored.rebuilt_files() if spans is None else spans

    def __getitem__(self, path: str) -> bytes:
        return self._stored.file(path)

    def digests(self) -> Mapping[str, bytes]:
        """outindex.digest() of each file, from the paths section: no file is read."""
        spans = self._stored.spans()
        if spans is None:
            return {path: digest(data) for path, data in self._stored.rebuilt_files().items()}
        return {path: file_digest for path, (_, _, file_digest) in spans.items()}

    def __contains__(self, path: object) -> bool:
        return path in self._files()

    def __iter__(self) -> Iterator[str]:
        return iter(self._files())

    def __len__(self) -> int:
        return len(self._files()) if self._stored.rebuilt else self._count


@dataclasses.dataclass(frozen=True)
class CachedBuild:
    """A whole successful build."""

    models: Sequence[ModelRender]  # summaries
    files: Mapping[str, bytes]  # every output file
    notes: tuple[str, ...]
    failed_files: frozenset[str]
    warnings: tuple[Diagnostic, ...]  # what validation warned about
    tree: str | None  # write.tree_digest() of the files
    objects: int  # how many objects the models have
    spec_files: int  # how many spec files the models come from


def spec_digest(data: bytes) -> bytes:
    """What a spec file's bytes contribute to the key of a whole build."""
    return hashlib.sha256(data).digest()


def repository_key(build: str, root: Path, spec_files: Iterable[Path]) -> str | None:
    """`build` plus every spec file's path and bytes; None when a file is a symlink
    (whatever it points at is for the loader to judge) or cannot be read."""
    digests = spec_digests(root, spec_files)
    return None if digests is None else repository_key_of(build, digests)


def spec_digests(root: Path, spec_files: Iterable[Path]) -> list[tuple[str, bytes]] | None:
    """Each spec file's repository path and spec_digest(), in the order given; None
    when one is a symlink, not a regular file, too large or cannot be read."""
    # pathlib drops a leading "./": below Path("."), "specs/a.yaml" has no prefix to cut.
    base = "" if str(root) == "." else f"{str(root).rstrip(os.sep)}{os.sep}"
    digests = []
    # os-level calls, no pathlib: this reads every spec file on each nothing-changed run.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a symlink fails (ELOOP)
    try:
        for path in spec_files:  # below root, as discover() lists them
            text = str(path)
            if not text.startswith(base):
                return None
            fd = os.open(text, flags)
            try:
                data = _read_small(fd)
            finally:
                os.close(fd)
            if data is None:
                return None
            # The relative path by slicing: relative_to() was a tenth of a warm build.
            rel = text[len(base) :].replace(os.sep, "/")
            digests.append((rel, spec_digest(data)))
    except OSError:
        return None
    return digests


_READ_LIMIT = 1 << 20  # load.MAX_FILE_BYTES: a larger file is for the loader to refuse


def _read_small(fd: int) -> bytes | None:
    """A regular file's bytes up to the spec size limit; None otherwise (a FIFO, a
    device, or too large: the loader words those)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > _READ_LIMIT:
        return None
    data = os.read(fd, info.st_size + 1)  # a short read is the end of a regular file
    if len(data) <= info.st_size:
        return data
    chunks = [data]  # it grew since: read to its end
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def repository_key_of(build: str, digests: Iterable[tuple[str, bytes]]) -> str:
    """repository_key() from each spec file's path and `spec_digest()`, in discover() order."""
    digest = hashlib.sha256(f"repository\0{build}\0".encode())
    for rel, file_digest in digests:
        digest.update(rel.encode() + b"\0")
        digest.update(file_digest)
    return digest.hexdigest()


def load_build(key: str, rebuild: Rebuild) -> CachedBuild | None:
    """A stored build, from its head alone; None when missing or not whole.

    Models and files are read when a caller first asks for them; should their section
    be damaged then, the entry is deleted and `rebuild()` gives them instead.
    """
    path = _entry_path(key)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            line = handle.readline(_HEAD_LIMIT)
        head = json.loads(line)
        if not isinstance(head, dict) or head.get("key") != key:
            raise ValueError("another key")
        sections, offset = {}, len(line)
        for name, (length, expected) in zip(_SECTIONS, head["sections"], strict=True):
            sections[name] = (offset, int(length), str(expected))
            offset += int(length)
        if offset != os.fstat(fd).st_size:
            raise ValueError("truncated, or longer than it says")
        counts = head["counts"]
        stored = _Stored(path, fd, sections, rebuild)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        os.close(fd)
        return None
    _mark_used(fd)
    try:
        return CachedBuild(
            StoredModels(stored, int(counts["models"])),
            StoredFiles(stored, int(counts["files"])),
            tuple(str(note) for note in head["notes"]),
            frozenset(str(path) for path in head["failed_files"]),
            tuple(Diagnostic(*w) for w in head["warnings"]),
            str(head["tree"]),
            int(counts["objects"]),
            int(counts["spec_files"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


_HEAD_LIMIT = 64 << 20  # a head line longer than this is not one servegen wrote


def store_build(
    key: str,
    models: Sequence[ModelRender],
    files: Mapping[str, bytes],
    notes: Sequence[str],
    failed_files: Iterable[str],
    warnings: Iterable[Diagnostic],
    sources: Sequence[Source] = (),
) -> str:
    """Store a whole build: model summaries, notes, warnings and every output file,
    with the digest of the tree they make (what the output folder's index compares),
    and what each spec file contributed (`sources`, for a later build's delta());
    returns the tree's digest."""
    digests = [digest(data) for data in files.values()]
    paths = [
        [path, len(data), d.hex()] for (path, data), d in zip(files.items(), digests, strict=True)
    ]
    sections = [
        [_json([_model_to(model) for model in models])],
        [_json(paths)],
        list(files.values()),
        [_json([[s.rel, s.digest.hex(), s.contribution] for s in sources])],
    ]
    counts = {
        "models": len(models),
        "files": len(files),
        "objects": sum(len(env.objects) for m in models for env in m.environments.values()),
        "spec_files": len({model.path for model in models}),
    }
    tree = tree_digest(dict(zip(files, digests, strict=True)))
    _store_sections(key, sections, counts, notes, failed_files, warnings, tree)
    return tree


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _store_sections(
    key: str,
    sections: Sequence[Sequence[bytes]],
    counts: Mapping[str, int],
    notes: Sequence[str],
    failed_files: Iterable[str],
    warnings: Iterable[Diagnostic],
    tree: str,
) -> None:
    described = []
    for name, parts in zip(_SECTIONS, sections, strict=True):
        total = hashlib.sha256()
        for part in parts if name != "bytes" else ():  # that one: file by file (_Stored.file)
            total.update(part)
        checked = total.hexdigest() if name != "bytes" else ""
        described.append([sum(len(part) for part in parts), checked])
    head = {
        "key": key,
        "sections": described,
        "counts": dict(counts),
        "notes": list(notes),
        "failed_files": sorted(failed_files),
        "warnings": [dataclasses.astuple(w) for w in warnings],
        "tree": tree,
    }
    _write(key, [_json(head) + b"\n", *(part for parts in sections for part in parts)])


# --- the latest build of a repository, for a build with a few spec files changed ----------


@dataclasses.dataclass(frozen=True)
class Source:
    """What one spec file of a passing build was and contributed."""

    rel: str
    digest: bytes  # spec_digest() of its bytes
    contribution: str  # contribution() of what it yields


def contribution(
    names: Sequence[SpecName],
    warnings: Sequence[Diagnostic],
    models: Iterable[tuple[ModelRender, Iterable[str], Mapping[str, int]]],
) -> str:
    """A digest of everything a spec file yields that something beyond its own model
    files reads: its specs' names and positions, its warnings, each model's summary
    (what Flux, the catalog, the README and the duplicate checks read), the paths of its
    files and the kinds it left unchecked. Two versions of a file with the same
    contribution differ only in the bytes of their models' files."""
    text = _json(
        [
            [dataclasses.astuple(n) for n in names],
            [dataclasses.astuple(w) for w in warnings],
            [
                [_model_to(m), sorted(paths), sorted(skipped.items())]
                for m, paths, skipped in models
            ],
        ]
    )
    return hashlib.sha256(text).hexdigest()


def _latest_key(build: str) -> str:
    # Not the repository's folder: an export of a commit to a temporary folder (publish,
    # diff) builds on the working tree's latest build and the other way round. Any
    # passing build under the same key is a correct base; the closest is the fastest.
    return hashlib.sha256(b"latest\0" + build.encode()).hexdigest()


def store_latest(build: str, key: str) -> None:
    """Point at `key` as the latest whole build under `build`."""
    _write(_latest_key(build), [_json({"key": _latest_key(build), "build": key})])


@dataclasses.dataclass(frozen=True)
class Latest:
    """The latest whole build of a repository, as a base for the next one."""

    build: CachedBuild
    sources: dict[str, tuple[bytes, str]]  # spec file -> (its digest, its contribution)
    _stored: _Stored

    def delta(
        self,
        key: str,
        digests: Mapping[str, bytes],
        changed: Mapping[str, Mapping[str, bytes]],
    ) -> tuple[StoredFiles, str] | None:
        """This build with the files in `changed` (each spec file's model files) swapped
        in, stored under `key` with the spec files' new `digests`: its files and tree
        digest; None if this entry cannot be read after all."""
        try:
            return self._delta(key, digests, changed)
        except (DamagedEntryError, OSError, ValueError, KeyError, TypeError):
            return None

    def _delta(
        self,
        key: str,
        digests: Mapping[str, bytes],
        changed: Mapping[str, Mapping[str, bytes]],
    ) -> tuple[StoredFiles, str] | None:
        stored = self._stored
        new = {path: data for files in changed.values() for path, data in files.items()}
        # The unchanged files are copied from this entry in runs, by the kernel: their
        # digests come along in the paths section, and are checked when they are read.
        start = stored.offset("bytes")
        pieces: list[bytes | _Range] = []
        paths: list[list[object]] = []
        digests_of: dict[str, bytes] = {}
        run, offset, size = 0, start, 0  # offset in this entry, size of the new section
        for path, length, file_digest in stored.listing():
            data = new.pop(path, None)
            if data is None:
                run += length
                size += length
                digests_of[path] = file_digest
            else:
                if run:
                    pieces.append((stored.fd, offset - run, run))
                    run = 0
                pieces.append(data)
                size += len(data)
                digests_of[path] = digest(data)
            paths.append([path, length if data is None else len(data), digests_of[path].hex()])
            offset += length
        if run:
            pieces.append((stored.fd, offset - run, run))
        if new:  # a path this build does not have: not a delta after all
            return None
        sources = [
            [rel, digests[rel].hex(), contribution]
            for rel, (_, contribution) in self.sources.items()
        ]
        built = self.build
        tree = tree_digest(digests_of)
        counts = {
            "models": len(built.models),
            "files": len(paths),
            "objects": built.objects,
            "spec_files": built.spec_files,
        }
        models = stored.section("models")
        listed, described = _json(paths), _json(sources)
        head = {
            "key": key,
            "sections": [
                [models[2], models[3]],
                [len(listed), hashlib.sha256(listed).hexdigest()],
                [size, ""],
                [len(described), hashlib.sha256(described).hexdigest()],
            ],
            "counts": counts,
            "notes": list(built.notes),
            "failed_files": sorted(built.failed_files),
            "warnings": [dataclasses.astuple(w) for w in built.warnings],
            "tree": tree,
        }
        _write(key, [_json(head) + b"\n", models[:3], listed, *pieces, described])
        reused = load_build(key, stored.rebuild)
        if reused is None or not isinstance(reused.files, StoredFiles):
            return None
        return reused.files, tree


def load_latest(build: str, rebuild: Rebuild) -> Latest | None:
    """The latest whole build stored under `build`."""
    try:
        entry = json.loads(_read(_latest_key(build)))
        if entry.get("key") != _latest_key(build):
            return None
        key = str(entry["build"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    found = load_build(key, rebuild)
    if found is None or not isinstance(found.files, StoredFiles):
        return None
    stored = found.files.stored
    try:
        sources = {
            str(rel): (bytes.fromhex(hexed), str(contribution))
            for rel, hexed, contribution in json.loads(stored._read("sources"))
        }
    except (DamagedEntryError, ValueError, TypeError):
        return None
    return Latest(found, sources, stored)


# --- summaries <-> JSON ---------------------------------------------------------------


def _model_to(model: ModelRender) -> dict[str, Any]:
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


def _model_from(data: Mapping[str, Any]) -> ModelRender:
    return ModelRender(
        name=data["name"],
        path=data["path"],
        line=data["line"],
        col=data["col"],
        runtime=data["runtime"],
        base=(),
        environments={env: _environment_from(r) for env, r in data["environments"].items()},
    )


def _environment_from(data: Mapping[str, Any]) -> EnvironmentRender:
    version = data["version"]
    return EnvironmentRender(
        namespace=data["namespace"],
        labels=data["labels"],
        annotations=data["annotations"],
        variant=(),
        objects=tuple(data["objects"]),
        endpoint=Endpoint(**_tuples(data["endpoint"])),
        version=None if version is None else ModelVersion(**_tuples(version)),
    )


def _fields(flat: Any) -> dict[str, Any]:
    """A flat dataclass's fields (dataclasses.asdict copies deeply, ten times slower)."""
    return {field.name: getattr(flat, field.name) for field in dataclasses.fields(flat)}


def _tuples(fields: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples the frozen dataclasses hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


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
