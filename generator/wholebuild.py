"""Whole builds in the build cache (generator/buildcache.py), and the latest build of
a repository, the base of a build with a few spec files changed.

A whole build is one entry: a JSON head line (key, counts, notes, warnings, the tree's
digest, and where each section lies, with its length and sha256), then four sections:
the model summaries (JSON), the output files' paths, lengths and digests (JSON), the
files' bytes, and per spec file its path, the digest of its bytes and of what it
contributes to what spans every model (see contribution()).
A hit reads the head alone: what `render`, `render --check` and `validate` need
when nothing changed. A section is read (and checked against its digest) only when a
caller asks for what it holds; a section found damaged then is a miss after all: the
entry is deleted and the build is done again (the `rebuild` given to load_build()).

Entries are written, read, marked used and pruned as buildcache's are, under the same
safety rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from generator import workers
from generator.buildcache import (
    DamagedEntryError,
    Range,
    compact_json,
    entry_path,
    flat_tuple,
    json_pieces,
    mark_used,
    model_from_json,
    model_text,
    read_entry,
    write_all,
    write_entry,
)
from generator.errors import Diagnostic
from generator.outindex import digest, tree_digest
from generator.outtree import model_folder, model_folder_of
from generator.render import ModelRender
from generator.spool import Span, Spool, SpooledFiles
from generator.validate import SpecName

_SECTIONS = ("models", "paths", "bytes", "sources")

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
        self._window: tuple[int, bytes] | None = None  # (where it starts, its bytes)
        self._reads = 0  # files read one by one (see _cut)
        self._windows = 0  # windows read (see _cut)
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
                self._models = tuple(model_from_json(m) for m in json.loads(self._read("models")))
            except (DamagedEntryError, ValueError, KeyError, TypeError, AttributeError):
                return self._fallback()[0]
        return self._models

    def listing(self, prefix: str = "") -> list[tuple[str, int, bytes]]:
        """Each output file's path, length and digest, in order, of the files whose
        paths start with `prefix` (raises when damaged). Every record is decoded and
        counted against the bytes section; only those are made into tuples and digests."""
        records = json.loads(self._read("paths"))
        if sum(int(length) for _, length, _ in records) != self._sections["bytes"][1]:
            raise DamagedEntryError("paths")
        return [
            (str(path), int(length), bytes.fromhex(hexed))
            for path, length, hexed in records
            if path.startswith(prefix)
        ]

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

    @property
    def spans_known(self) -> bool:
        """Whether spans() has decoded the paths section already."""
        return self._spans is not None

    def file(self, path: str) -> bytes:
        spans = self.spans()
        if spans is not None:
            start, end, expected = spans[path]
            data = self._cut(start, end)
            if data is not None and digest(data) == expected:
                return data
        return self._fallback()[1][path]

    def path_at(self, offset: int, length: int) -> str | None:
        """The file whose bytes lie at `offset` in the entry, `length` of them, if one
        does (an empty file may start where the next one does: both are compared)."""
        spans = self.spans()
        start = offset - self._sections["bytes"][0]
        where = (start, start + length)
        found = (path for path, (begin, end, _) in (spans or {}).items() if (begin, end) == where)
        return next(found, None)

    _ONE_BY_ONE = 256  # files read on their own before they are read in windows
    _WINDOW = 4 << 20  # bytes of the section read at once, from the file asked for on

    def _cut(self, start: int, end: int) -> bytes | None:
        """One file's bytes: read alone while few are asked for (a write of a few changed
        files); then cut from a window of the section that starts at the file asked for,
        since files are asked for in the entry's order (sorted, as a commit or a write of
        every file goes); and should they come in another order, so that windows are read
        again and again, cut from the whole section, read once.

        The whole section held was 50 MB of a new deploy branch's peak at 10,000 specs."""
        if self._blob is None and self._reads < self._ONE_BY_ONE:
            self._reads += 1
            return self._pread(start, end - start)
        if self._blob is not None:
            return self._blob[start:end]
        window = self._window
        if window is None or not window[0] <= start <= end <= window[0] + len(window[1]):
            self._windows += 1
            if self._windows > 4 * (self._sections["bytes"][1] // self._WINDOW) + 16:
                self._window = None
                with contextlib.suppress(DamagedEntryError):
                    self._blob = self._read("bytes")
                return None if self._blob is None else self._blob[start:end]
            window = self._window = (start, self._pread(start, max(self._WINDOW, end - start)))
        begin = start - window[0]
        return window[1][begin : begin + end - start]

    def _pread(self, start: int, length: int) -> bytes:
        """Up to `length` bytes of the bytes section from `start` (fewer at its end)."""
        offset, size, _ = self._sections["bytes"]
        return os.pread(self._fd, min(length, size - start), offset + start)

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
        self._changes: tuple[str, Mapping[str, bytes]] | None = None

    @property
    def stored(self) -> _Stored:
        return self._stored

    def changes(self) -> tuple[str, Mapping[str, bytes]] | None:
        """outindex.Delta: the tree this build was made from and the files swapped in
        (set by Latest.delta()), so a write of it need not look at the others."""
        return self._changes

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

    def digests_under(self, prefix: str) -> dict[str, bytes]:
        """digests() of the files whose paths start with `prefix` (a folder's few of
        62,000 at 10,000 specs: a third of the cost of decoding every record's span)."""
        stored = self._stored
        if stored.rebuilt or stored.spans_known:
            return {p: d for p, d in self.digests().items() if p.startswith(prefix)}
        try:
            return {path: file_digest for path, _, file_digest in stored.listing(prefix)}
        except (DamagedEntryError, ValueError, TypeError):
            return {p: d for p, d in self.digests().items() if p.startswith(prefix)}

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


def repository_key(build: str, root: Path, spec_files: Iterable[str]) -> str | None:
    """`build` plus every spec file's path and bytes; None when a file is a symlink
    (whatever it points at is for the loader to judge) or cannot be read."""
    digests = spec_digests(root, spec_files)
    return None if digests is None else repository_key_of(build, digests)


def spec_digests(root: Path, spec_files: Iterable[str]) -> list[tuple[str, bytes]] | None:
    """Each spec file's spec_digest(), by its path relative to `root` (as
    load.spec_files() lists them), in the order given; None when one is a symlink, not
    a regular file, too large or cannot be read. Many files are read by two processes
    (workers.in_two), half each."""
    rels = list(spec_files)
    base = f"{str(root).rstrip(os.sep)}{os.sep}"
    joined = workers.in_two(functools.partial(_digests, base), rels, _MIN_SPLIT)
    if len(joined) != _DIGEST_SIZE * len(rels):
        return None
    return [(rel, joined[i * _DIGEST_SIZE : (i + 1) * _DIGEST_SIZE]) for i, rel in enumerate(rels)]


_DIGEST_SIZE = hashlib.sha256().digest_size
_MIN_SPLIT = 4096  # spec files: about 40 ms of reading, against a fork's few


def _digests(base: str, rels: Sequence[str]) -> bytes:
    """The spec_digest() of each of `rels` below `base`, one after another; empty when
    one cannot be used (then the whole key is None)."""
    digests = []
    # os-level calls, no pathlib: this reads every spec file on each nothing-changed run.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a symlink fails (ELOOP)
    try:
        for rel in rels:
            fd = os.open(base + rel, flags)
            try:
                data = _read_small(fd)
            finally:
                os.close(fd)
            if data is None:
                return b""
            digests.append(spec_digest(data))
    except OSError:
        return b""
    return b"".join(digests)


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
        digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(file_digest)
    return digest.hexdigest()


def load_build(key: str, rebuild: Rebuild) -> CachedBuild | None:
    """A stored build, from its head alone; None when missing or not whole.

    Models and files are read when a caller first asks for them; should their section
    be damaged then, the entry is deleted and `rebuild()` gives them instead.
    """
    path = entry_path(key)
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
    mark_used(fd)
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
    model_texts: Sequence[Span | bytes | None] | None = None,
) -> str:
    """Store a whole build: model summaries, notes, warnings and every output file,
    with the digest of the tree they make (what the output folder's index compares),
    and what each spec file contributed (`sources`, for a later build's delta());
    returns the tree's digest. `model_texts`: each model's text where it is known
    already (buildcache.model_text(), as a worker made it), in the order of `models`."""
    spooled = files if isinstance(files, SpooledFiles) else None
    if spooled is not None:  # its bytes are copied from the spool by the kernel, unread
        digests, lengths = dict(spooled.digests()), dict(spooled.lengths())
    else:
        digests = {path: digest(data) for path, data in files.items()}
        lengths = {path: len(data) for path, data in files.items()}
    tree = tree_digest(digests)
    counts = {
        "models": len(models),
        "files": len(files),
        "objects": sum(len(env.objects) for m in models for env in m.environments.values()),
        "spec_files": len({model.path for model in models}),
    }
    # The JSON sections are written to a spool file as they are encoded, and copied
    # from it by the kernel: the head, which comes first, needs their lengths and
    # digests. Held in memory instead, at 10,000 specs they (and the JSON-ready dicts
    # of every model) were what raised a cold render's peak most.
    # Not stored when a text read back from another entry turned out damaged.
    with contextlib.suppress(OSError, DamagedEntryError), tempfile.TemporaryFile() as scratch:
        fd = scratch.fileno()
        texts = model_texts if model_texts is not None else [None] * len(models)
        listed = _spooled_texts(fd, (_model_text(m, t) for m, t in zip(models, texts, strict=True)))
        paths = _spooled(fd, ([p, size, digests[p].hex()] for p, size in lengths.items()))
        described = _spooled(fd, ([s.rel, s.digest.hex(), s.contribution] for s in sources))
        sections = [
            [listed[0][2], listed[1]],
            [paths[0][2], paths[1]],
            [sum(lengths.values()), ""],  # checked file by file
            [described[0][2], described[1]],
        ]
        head = _head(key, sections, counts, notes, failed_files, warnings, tree)
        pieces: list[bytes | Range] = [head, listed[0], paths[0]]
        pieces += [*(files.values() if spooled is None else spooled.pieces()), described[0]]
        write_entry(key, pieces)
    return tree


_json = compact_json  # every section, record and contribution is written with it


def _head(
    key: str,
    sections: Sequence[Sequence[object]],  # each: [length, sha256 or "" if checked per file]
    counts: Mapping[str, int],
    notes: Sequence[str],
    failed_files: Iterable[str],
    warnings: Iterable[Diagnostic],
    tree: str,
) -> bytes:
    """A whole-build entry's first line: each section's length and sha256, then what
    the build says beside its files."""
    head = {
        "key": key,
        "sections": sections,
        "counts": counts,
        "notes": list(notes),
        "failed_files": sorted(failed_files),
        "warnings": [dataclasses.astuple(w) for w in warnings],
        "tree": tree,
    }
    return _json(head) + b"\n"


def _model_text(model: ModelRender, known: Span | bytes | None) -> bytes:
    if known is None:
        return model_text(model)
    return known if isinstance(known, bytes) else known.spool.read_span(known)


def _spooled_texts(fd: int, texts: Iterable[bytes]) -> tuple[Range, str]:
    """Append the JSON list of these JSON texts to the file `fd`, as _spooled() would
    append the list of what they encode: where it lies, and its sha256."""
    return _appended(fd, _list_pieces(texts))


def _list_pieces(texts: Iterable[bytes]) -> Iterator[bytes]:
    """b"[" + b",".join(texts) + b"]", in pieces of about _WRITE_BATCH bytes."""
    batch = bytearray(b"[")
    for number, text in enumerate(texts):
        if number:
            batch += b","
        batch += text
        if len(batch) >= _WRITE_BATCH:
            yield bytes(batch)
            batch = bytearray()
    yield bytes(batch + b"]")


_WRITE_BATCH = 1 << 18  # bytes gathered before a write: few calls, little held


def _spooled(fd: int, items: Iterable[Any]) -> tuple[Range, str]:
    """Append _json(list(items)) to the file `fd`: where it lies, and its sha256."""
    return _appended(fd, json_pieces(items, _json))


def _appended(fd: int, pieces: Iterable[bytes]) -> tuple[Range, str]:
    start = os.lseek(fd, 0, os.SEEK_END)
    total = hashlib.sha256()
    for piece in pieces:
        total.update(piece)
        write_all(fd, piece)
    return (fd, start, os.lseek(fd, 0, os.SEEK_END) - start), total.hexdigest()


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
    models: Iterable[tuple[ModelRender, Iterable[str], Mapping[str, int], bytes | None]],
) -> str:
    """A digest of everything a spec file yields that something beyond its own model
    files reads: its specs' names and positions, its warnings, each model's summary
    (what Flux, the catalog, the README and the duplicate checks read), the paths of its
    files and the kinds it left unchecked. Two versions of a file with the same
    contribution differ only in the bytes of their models' files.

    The sha256 of _json([names, sorted unique warnings, [[text, paths, kinds], ...]]),
    where `text` is the hex outindex.digest() of the model summary's text
    (buildcache.model_text()): as given (a model read back from a whole build knows it,
    so its text is not read again) or made here."""
    total = hashlib.sha256(b"[")
    total.update(_json([flat_tuple(n) for n in names]) + b",")
    # Warnings as validation reports them (sorted, each once): read back from a whole
    # build, a file's warnings are known in that order only.
    total.update(_json([flat_tuple(w) for w in sorted(set(warnings))]) + b",[")
    for number, (model, paths, skipped, text_digest) in enumerate(models):
        known = digest(model_text(model)) if text_digest is None else text_digest
        total.update(b"," if number else b"")
        total.update(b'["' + known.hex().encode() + b'",')
        total.update(_json([sorted(paths), sorted(skipped.items())])[1:])
    total.update(b"]]")
    return total.hexdigest()


def _latest_key(build: str) -> str:
    # Not the repository's folder: an export of a commit to a temporary folder (publish,
    # diff) builds on the working tree's latest build and the other way round. Any
    # passing build under the same key is a correct base; the closest is the fastest.
    return hashlib.sha256(b"latest\0" + build.encode()).hexdigest()


def store_latest(build: str, key: str) -> None:
    """Point at `key` as the latest whole build under `build`."""
    write_entry(_latest_key(build), [_json({"key": _latest_key(build), "build": key})])


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
        swapped = dict(new)  # for the write (StoredFiles.changes())
        described = _json(
            [
                [rel, digests[rel].hex(), contribution]
                for rel, (_, contribution) in self.sources.items()
            ]
        )
        built = self.build
        if built.tree is not None and self._holds_already(new):
            # An edit that changed no output file (a comment, say): every section but
            # the spec files' is this entry's, copied whole.
            models, paths = stored.section("models"), stored.section("paths")
            size = stored.section("bytes")[2]
            sections = [[models[2], models[3]], [paths[2], paths[3]], [size, ""]]
            unchanged: list[bytes | Range] = [(stored.fd, models[1], models[2] + paths[2] + size)]
            tree, files = built.tree, len(built.files)  # a stored count: nothing read
        else:
            found = self._swapped(new)
            if found is None:
                return None
            listed, unchanged, size, tree, files = found
            models = stored.section("models")
            sections = [[models[2], models[3]], [len(listed), hashlib.sha256(listed).hexdigest()]]
            sections.append([size, ""])
            unchanged = [models[:3], listed, *unchanged]
        sections.append([len(described), hashlib.sha256(described).hexdigest()])
        counts = {
            "models": len(built.models),
            "files": files,
            "objects": built.objects,
            "spec_files": built.spec_files,
        }
        head = _head(key, sections, counts, built.notes, built.failed_files, built.warnings, tree)
        write_entry(key, [head, *unchanged, described])
        reused = load_build(key, stored.rebuild)
        if reused is None or not isinstance(reused.files, StoredFiles):
            return None
        if built.tree is not None:
            reused.files._changes = (built.tree, swapped)
        return reused.files, tree

    def _holds_already(self, new: Mapping[str, bytes]) -> bool:
        """Whether each of `new` is byte for byte the file this entry holds at its path.
        Each is looked up in the paths section's text, not decoded whole (62,000 files
        at 10,000 specs): `["<path>",` starts that path's record and nothing else, since
        a quote within a JSON string is escaped."""
        listed = self._stored._read("paths")  # checked against the head's digest
        for path, data in new.items():
            needle = b"[" + _json(path) + b","
            at = listed.find(needle)
            if at < 0:
                return False
            start = at + len(needle)
            length, hexed = json.loads(b"[" + listed[start : listed.index(b"]", start)] + b"]")
            if length != len(data) or bytes.fromhex(hexed) != digest(data):
                return False
        return True

    def _swapped(
        self, new: dict[str, bytes]
    ) -> tuple[bytes, list[bytes | Range], int, str, int] | None:
        """The paths section and the pieces of the bytes section with the files in `new`
        swapped in, the bytes section's size, the tree's digest and the file count; None
        when `new` has a path this entry does not.

        One pass over the records as JSON decoded them (62,000 at 10,000 specs), with
        the digests kept as their hex text but where the tree digest needs them: the
        new paths section is this one's text with only the swapped records replaced."""
        stored = self._stored
        listed = stored._read("paths")  # checked against the head's digest
        # The unchanged files are copied from this entry in runs, by the kernel: their
        # digests come along in the paths section, and are checked when they are read.
        start = stored.offset("bytes")
        pieces: list[bytes | Range] = []
        digests_of: dict[str, bytes] = {}
        replaced: dict[str, list[object]] = {}
        run, offset, size = 0, start, 0  # offset in this entry, size of the new section
        records = json.loads(listed)
        for path, length, hexed in records:
            data = new.pop(path, None)
            if data is None:
                run += length
                size += length
                digests_of[path] = bytes.fromhex(hexed)
            else:
                if run:
                    pieces.append((stored.fd, offset - run, run))
                    run = 0
                pieces.append(data)
                size += len(data)
                digests_of[path] = file_digest = digest(data)
                replaced[path] = [path, len(data), file_digest.hex()]
            offset += length
        if offset - start != stored.section("bytes")[2]:
            raise DamagedEntryError("paths")
        if run:
            pieces.append((stored.fd, offset - run, run))
        if new:  # a path this build does not have: not a delta after all
            return None
        spliced = _replace_records(listed, replaced)
        return spliced, pieces, size, tree_digest(digests_of), len(records)

    def seeds(self) -> dict[str, list[Seed]] | None:
        """Each spec file's models as this build holds them, in the order the file
        writes them (by where their names are), their texts and files left in this
        entry until asked for; None when the entry cannot be read."""
        try:
            return self._seeds()
        except (DamagedEntryError, OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def _seeds(self) -> dict[str, list[Seed]] | None:
        stored = self._stored
        if stored.rebuilt:
            return None
        reader = _EntryReader(stored)
        files = _model_files(reader, stored)
        found: dict[str, list[Seed]] = {}
        start = stored.offset("models")
        for data, at, text in _list_items(stored._read("models")):  # checked, too
            model = model_from_json(data)
            seed = Seed(
                model,
                _span(reader, start + at, len(text), digest(text)),
                SpooledFiles(files.pop(model.name, {})),
            )
            found.setdefault(model.path, []).append(seed)
        for seeds in found.values():
            seeds.sort(key=lambda seed: (seed.model.line, seed.model.col))
        return found


def _model_files(reader: _EntryReader, stored: _Stored) -> dict[str, dict[str, Span | bytes]]:
    """Each model's files in the entry, by the model's name (each where it lies and its
    digest, from the paths section: no file is read); raises when the section is
    damaged, as _Stored.listing() does.

    62,000 records at 10,000 specs, so each costs as little as it can: the paths are
    sorted, so a model's files are one run of records, and a path still in the folder
    of the one before is known by a startswith() alone (model_folder_of() otherwise)."""
    files: dict[str, dict[str, Span | bytes]] = {}
    start = offset = stored.offset("bytes")
    folder: dict[str, Span | bytes] = {}  # the current run's (an unused one at first)
    prefix = "\0"  # no path starts with it
    records = json.loads(stored._read("paths"))  # checked
    # Each record is let go of once its span is made, so spans take the memory records
    # leave (held to the end, they left a render's peak RSS 0.7 MB higher).
    records.reverse()
    while records:
        path, length, hexed = records.pop()
        if not path.startswith(prefix):
            name = model_folder_of(path)
            if name is None:
                folder, prefix = {}, "\0"  # a file of no model: left out
            else:
                folder = files.setdefault(name, {})
                prefix = model_folder(name)
        folder[path] = _span(reader, offset, length, bytes.fromhex(hexed))
        offset += length
    if offset - start != stored.section("bytes")[2]:
        raise DamagedEntryError("paths")
    return files


def _span(spool: Spool, offset: int, length: int, file_digest: bytes) -> Span:
    # Span(...) itself, without the Python-level __new__ a NamedTuple has: a third of
    # the cost, paid for each of 70,000 files and texts.
    return _new_tuple(Span, (spool, offset, length, file_digest))


_new_tuple = tuple.__new__


@dataclasses.dataclass(frozen=True)
class Seed:
    """One model of the latest build, read back for a build that keeps its spec file."""

    model: ModelRender  # its summary
    text: Span  # buildcache.model_text() of it, in the entry
    files: SpooledFiles  # its files, in the entry


class _EntryReader(Spool):
    """A whole-build entry read as a spool: its texts and files, each checked against
    its digest when read. The entry is never written in place (a new one replaces it),
    so a mismatch means it was damaged since: a file then is what a build without the
    entry gives (as _Stored.file() does), a text an error (for the caller's fallback)."""

    def __init__(self, stored: _Stored) -> None:
        super().__init__(stored.fd)
        self._stored = stored  # the entry stays open while a span refers to it

    def read_span(self, span: Span) -> bytes:
        with contextlib.suppress(OSError):
            data = self.read(span.offset, span.length)
            if digest(data) == span.digest:
                return data
        path = self._stored.path_at(span.offset, span.length)
        if path is None:
            raise DamagedEntryError("models")
        return self._stored.rebuilt_files()[path]


_DECODER = json.JSONDecoder()


def _list_items(listed: bytes) -> Iterator[tuple[Any, int, bytes]]:
    """What each item of a JSON list as _list_pieces() writes it holds, where its text
    starts in `listed` (in bytes) and that text."""
    text = listed.decode()
    del listed  # (the caller's only reference): the text alone is held from here on
    if text == "[]":
        return
    if text[:1] != "[":
        raise ValueError("not a list")
    at, offset = 1, 1  # in characters, in bytes
    while True:
        value, end = _DECODER.raw_decode(text, at)
        item = text[at:end].encode()
        yield value, offset, item
        if end == len(text) - 1 and text[end] == "]":
            return
        if text[end : end + 1] != ",":
            raise ValueError("not a list of texts")
        at, offset = end + 1, offset + len(item) + 1


def _replace_records(listed: bytes, records: Mapping[str, list[object]]) -> bytes:
    """A paths section (`_json` of [path, length, digest] records) with the record of
    each path in `records` replaced by its new one: byte for byte what `_json` of the
    whole new list gives. `["<path>",` starts that path's record and nothing else (a
    quote within a JSON string is escaped), and the record ends at the first `]` after
    it (the length and the hex digest hold none)."""
    cuts = []
    for path, record in records.items():
        needle = b"[" + _json(path) + b","
        at = listed.index(needle)
        cuts.append((at, listed.index(b"]", at + len(needle)) + 1, _json(record)))
    pieces, done = [], 0
    for at, end, text in sorted(cuts):
        pieces += [listed[done:at], text]
        done = end
    pieces.append(listed[done:])
    return b"".join(pieces)


def load_latest(build: str, rebuild: Rebuild) -> Latest | None:
    """The latest whole build stored under `build`."""
    try:
        entry = json.loads(read_entry(_latest_key(build)))
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
