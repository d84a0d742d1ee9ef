"""The stat index of an output folder: what servegen wrote there, as git's index records it.

For each file servegen wrote: its size, mtime and inode, and a digest of the bytes. A file
whose lstat still matches is trusted to hold those bytes, so an unchanged output costs a
stat per file, not a read. The caveat is git's: an edit that keeps the size, the inode
and the nanosecond mtime goes unnoticed. As in git, a file modified no earlier than the
index itself was written ("racy": a same-size edit in that timestamp granule keeps every
field equal) is read anyway. `ctime` is not recorded: hard-linking an unchanged file into
the spare tree changes it on every write.

The index also records every folder, and one digest of the type, size, mtime and inode of
each folder and file as written: holds() compares that digest with a fresh `lstat` of
each, so an up-to-date folder is proven without reading, listing or parsing anything
per file (see holds() for why folder stats stand for their listings).
"""

from __future__ import annotations

import array
import contextlib
import functools
import hashlib
import io
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from generator import workers
from generator.cachedir import servegen_cache

MANIFEST = ".servegen-manifest"  # write.MANIFEST: the list of files servegen wrote


Fields = tuple[int, int, int, int]  # type, size, mtime and inode: what a signature covers


class Stamp(NamedTuple):
    """What git's index records of a file, and a digest of the bytes servegen wrote.

    A named tuple, not a dataclass: an index holds one per output file (62,000 at
    10,000 specs) and a tuple is built in a quarter of the time."""

    size: int
    mtime_ns: int
    ino: int
    digest: bytes

    def matches(self, info: os.stat_result) -> bool:
        return (info.st_size, info.st_mtime_ns, info.st_ino) == (
            self.size,
            self.mtime_ns,
            self.ino,
        )


@runtime_checkable
class Digested(Protocol):
    """Files that know the digest of each one's bytes without reading them (a stored build)."""

    def digests(self) -> Mapping[str, bytes]: ...


@runtime_checkable
class Delta(Protocol):
    """Files that are another tree with a few files' bytes replaced (a build made from
    the latest one): the very same paths."""

    def changes(self) -> tuple[str, Mapping[str, bytes]] | None:
        """tree_digest() of that other tree, and the bytes of each file that may differ
        from it (every other file is that tree's); None when not known."""
        ...


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def digests_of(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """Each file's digest: from what a stored build records, else from its bytes."""
    if isinstance(files, Digested):
        return dict(files.digests())
    return {rel: digest(data) for rel, data in files.items()}


@runtime_checkable
class DigestedFolders(Protocol):
    """Digested files that give the digests of one folder's files alone for less."""

    def digests_under(self, prefix: str) -> dict[str, bytes]: ...


def digests_under(files: Mapping[str, bytes], prefix: str) -> dict[str, bytes]:
    """digests_of() the files whose paths start with `prefix`."""
    if isinstance(files, DigestedFolders):
        return files.digests_under(prefix)
    if isinstance(files, Digested):
        return {rel: d for rel, d in files.digests().items() if rel.startswith(prefix)}
    return {rel: digest(data) for rel, data in files.items() if rel.startswith(prefix)}


class KnownDigests(Mapping[str, bytes]):
    """Files held in memory, with the digest of each (a Digested: computed once)."""

    def __init__(self, files: Mapping[str, bytes], digests: Mapping[str, bytes]) -> None:
        self._files, self._digests = files, digests

    def __getitem__(self, path: str) -> bytes:
        return self._files[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, path: object) -> bool:
        return path in self._files  # (Mapping's reads the file)

    def digests(self) -> Mapping[str, bytes]:
        return self._digests


def tree_digest(digests: Mapping[str, bytes]) -> str:
    """One digest of a whole tree: every path and the digest of its bytes."""
    total = hashlib.blake2b(digest_size=16)
    for rel in sorted(digests):
        total.update(rel.encode() + b"\0" + digests[rel])
    return total.hexdigest()


_INDEX_HEAD = "servegen output index 2"
_NO_SIGNATURE = "-"


@dataclass(frozen=True)
class Index:
    """What servegen last wrote into one output folder: each owned file's stamp.

    It lives in the user's cache folder (never in the output, which is committed, nor
    beside it), keyed by the output folder's absolute path; deleting it only means the
    next write reads every file once.
    """

    tree: str  # tree_digest() of the owned files
    written_ns: int  # the index file's own mtime: files at least as new are racy
    stamps: dict[str, Stamp]
    folders: tuple[str, ...] = ()  # every folder below the output (from indexed() only)
    # indexed() only: the lstat fields (type, size, mtime, inode) of ".", each folder and
    # the manifest as verified, for the spare's record once this tree is swapped out.
    stats: tuple[Fields, ...] = ()
    signature: str = ""  # indexed() only: the signature of the folder it proved


def index_path(out: Path) -> Path | None:
    """Where `out`'s index lives; None with SERVEGEN_NO_CACHE=1 (always read files)."""
    if os.environ.get("SERVEGEN_NO_CACHE", "") not in ("", "0"):
        return None
    where = hashlib.sha256(os.fsencode(out.parent.resolve() / out.name)).hexdigest()
    return servegen_cache() / "outputs" / f"{where[:40]}.index"


# The file: a head line (magic, tree, how many stamps, how many watched paths, the
# length in bytes of the stamp lines, the signature and the newest mtime it covers), a
# line per owned file (digest, size, mtime, inode, path), then the watched paths, one a
# line: every folder ("." is the output folder itself), the manifest and every owned file;
# last in the head, whether the folder held anything else (0) or not (1).
_FIELDS = 7  # after the magic


def _read_stamped(path: Path) -> tuple[bytes, int]:
    """A record's bytes and its mtime, from one open file (what was read is what is dated)."""
    with path.open("rb") as handle:
        return handle.read(), os.fstat(handle.fileno()).st_mtime_ns


def _read(out: Path, tree: str | None = None) -> tuple[list[str], bytes, bytes, int] | None:
    """The head's fields, the stamp lines, the watched paths and the index's mtime;
    None at once, from the head alone, when the index records another `tree`."""
    path = index_path(out)
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            head = handle.readline()
            if not head.endswith(b"\n"):
                return None
            fields = head[:-1].decode().split(" ")
            if " ".join(fields[:-_FIELDS]) != _INDEX_HEAD:
                return None
            fields = fields[-_FIELDS:]
            if tree not in (None, fields[0]):
                return None  # (a render of a changed tree: the rest is read once, later)
            # Read as the two parts, not cut from one read: at 62,000 files each is
            # megabytes, and a copy of both was a large render's peak memory.
            cut = int(fields[3])
            lines = handle.read(cut)
            watched = handle.read()
            written_ns = os.fstat(handle.fileno()).st_mtime_ns
    except (OSError, ValueError):
        return None
    if len(lines) != cut or not (watched or lines).endswith(b"\n"):
        return None
    return fields, lines, watched, written_ns


def load_index(out: Path) -> Index | None:
    found = _read(out)
    if found is None:
        return None  # missing, unreadable or not an index: every file is read
    (tree, count, *_), lines, _watched, written_ns = found
    stamps = _stamps(lines, int(count))
    return None if stamps is None else Index(tree, written_ns, stamps)


def _stamps(lines: bytes, count: int) -> dict[str, Stamp] | None:
    try:
        stamps = {}
        for line in lines.decode().split("\n")[:-1]:
            hexed, size, mtime, ino, rel = line.split("\t", 4)
            stamps[rel] = Stamp(int(size), int(mtime), int(ino), bytes.fromhex(hexed))
    except ValueError:
        return None
    return stamps if len(stamps) == count else None


def holds(out: Path, tree: str) -> bool:
    """Whether `out` provably holds the tree whose digest is `tree`, as servegen wrote it
    (manifest included), by a stat of each of its folders and files compared in bulk
    with what the index recorded; False when that cannot be shown (then read_output()
    looks file by file).

    A folder's mtime changes whenever an entry is added, removed or renamed in it, so
    equal folder stats mean no entry appeared (a symlink, say) and none went; equal
    file stats mean unchanged files, with git's caveat (see the module docstring). As
    for files, a folder or file no older than the index is racy: not trusted here.
    """
    return prove(out, tree) is not None


def indexed(out: Path, proof: Proof | None = None) -> Index | None:
    """The index of `out`, with every folder, when `out` provably holds the tree the
    index records (see holds()) and held nothing but servegen's files when it was
    indexed: then the index says all that reading the folder would. `proof`: what
    prove(out) just gave, when the caller has it."""
    proof = prove(out) if proof is None else proof
    if proof is None or not proof.clean:
        return None
    stamps = _stamps(proof.lines, proof.count)
    if stamps is None:
        return None
    folders = tuple(proof.listed[1 : proof.folder_count + 1])  # after ".", before MANIFEST
    seen, end = proof.seen, 4 * (proof.folder_count + 2)
    stats = tuple(_as_fields(seen[i : i + 4]) for i in range(0, end, 4))
    return Index(proof.tree, proof.written_ns, stamps, folders, stats, proof.signature)


def _as_fields(four: Sequence[int]) -> Fields:
    return (four[0], four[1], four[2], four[3])


@dataclass(frozen=True)
class Proof:
    """An index, in its raw parts, whose output folder was just shown to hold exactly
    what it records (see holds()), with what each watched path's lstat gave."""

    head: list[str]  # the head's fields after the magic
    lines: bytes  # the stamp lines
    watched: bytes  # the watched paths, as stored
    listed: list[str]  # the same, one a path: ".", each folder, the manifest, each file
    written_ns: int
    seen: array.array[int]  # type, size, mtime and inode of each watched path, in order

    @property
    def tree(self) -> str:
        return self.head[0]

    @property
    def count(self) -> int:
        return int(self.head[1])

    @property
    def signature(self) -> str:
        return self.head[4]

    @property
    def clean(self) -> bool:
        return self.head[6] == "1"

    @property
    def folder_count(self) -> int:
        return len(self.listed) - self.count - 2

    def compare(self, wanted: Mapping[str, bytes]) -> tuple[list[str], list[str], list[str]] | None:
        """The recorded files whose digest is not the one in `wanted`, the recorded
        files `wanted` lacks, and the paths of `wanted` not recorded; None when the
        lines cannot be read. A line at a time: 62,000 lines, or their stamps, at once
        took tens of megabytes."""
        differing: list[str] = []
        gone: list[str] = []
        count = 0
        try:
            for line in io.BytesIO(self.lines):
                hexed, _, rest = line.partition(b"\t")
                rel = rest[:-1].rpartition(b"\t")[2].decode()  # a path holds no tab
                found = wanted.get(rel)
                if found is None:
                    gone.append(rel)
                elif found != bytes.fromhex(hexed.decode()):
                    differing.append(rel)
                count += 1
        except ValueError:
            return None
        if count != self.count:
            return None
        added: list[str] = []
        if len(wanted) != count - len(gone):
            recorded = set(self.files)
            added = [rel for rel in wanted if rel not in recorded]
        return differing, gone, added

    @property
    def files(self) -> list[str]:
        """The recorded files, in the order of their lines."""
        return self.listed[self.folder_count + 2 :]

    def locate(self, paths: Iterable[str]) -> dict[str, tuple[int, int, int, Stamp]] | None:
        """Each path's stamp line: (its number, where it starts and ends, its stamp);
        None when one is not recorded. A line ends in a tab, the path and a newline, and
        a path holds neither, so that needle finds the one line of that path."""
        found = {}
        try:
            for rel in paths:
                needle = b"\t" + rel.encode() + b"\n"
                at = self.lines.find(needle)
                if at < 0:
                    return None
                start, end = self.lines.rfind(b"\n", 0, at) + 1, at + len(needle)
                hexed, size, mtime, ino, _ = self.lines[start:end].decode().split("\t", 4)
                stamp = Stamp(int(size), int(mtime), int(ino), bytes.fromhex(hexed))
                found[rel] = (0, start, end, stamp)
        except ValueError:
            return None
        numbered, number, last = {}, 0, 0
        for rel, (_, start, end, stamp) in sorted(found.items(), key=lambda item: item[1][1]):
            number += self.lines.count(b"\n", last, start)
            numbered[rel], last = (number, start, end, stamp), start
        return numbered


def prove(out: Path, tree: str | None = None) -> Proof | None:
    """The index of `out` when `out` holds what it records (and that is `tree`, if
    given), with the fields seen of every watched path; else None."""
    if not out.is_dir():  # nothing to prove: its index (megabytes, for a large tree) unread
        return None
    found = _read(out, tree)
    if found is None:
        return None
    fields, lines, paths, written_ns = found
    recorded, _count, watched, _cut, signature, newest, _clean = fields
    try:
        if tree not in (None, recorded) or signature == _NO_SIGNATURE:
            return None
        if int(newest) >= written_ns:
            return None
        listed = paths.decode().split("\n")[:-1]
        if len(listed) != int(watched) or len(listed) < int(_count) + 2:
            return None
        seen = _swept(out, listed)
        if _fields_digest(seen) != signature:
            return None
    except (OSError, ValueError, OverflowError):
        return None  # gone, or not what it was: looked at file by file
    return Proof(fields, lines, paths, listed, written_ns, seen)


_TYPE = stat.S_IFMT(0o177777)
_CHUNK = 4096  # stat results alive at once


def _signature(out: Path, paths: Sequence[str]) -> array.array[int]:
    """The type, size, mtime and inode of each path below `out`, four numbers each (no
    symlink followed: `out` itself is opened with O_NOFOLLOW, and a folder that became
    a link has another type)."""
    seen = array.array("q")
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        lstat = functools.partial(os.lstat, dir_fd=fd)
        for start in range(0, len(paths), _CHUNK):
            found = map(lstat, paths[start : start + _CHUNK])
            seen.extend(
                itertools.chain.from_iterable(
                    (s.st_mode & _TYPE, s.st_size, s.st_mtime_ns, s.st_ino) for s in found
                )
            )
    finally:
        os.close(fd)
    return seen


def _swept(out: Path, paths: Sequence[str]) -> array.array[int]:
    """_signature(out, paths), a large sweep's second half done by a forked child
    meanwhile (workers.in_two): an lstat is the whole cost, one core's worth."""
    seen = array.array("q")
    seen.frombytes(workers.in_two(lambda part: _signature(out, part).tobytes(), paths))
    return seen


def fields_of(info: os.stat_result) -> Fields:
    return (info.st_mode & _TYPE, info.st_size, info.st_mtime_ns, info.st_ino)


def flat(fields: Iterable[Fields]) -> array.array[int]:
    return array.array("q", itertools.chain.from_iterable(fields))


def _fields_digest(fields: array.array[int]) -> str:
    """What a signature is: a digest of the fields, four 64-bit numbers per path."""
    return hashlib.sha256(fields).hexdigest()


def _write_index(path: Path, head: Sequence[object], parts: Sequence[bytes | memoryview]) -> None:
    """Write an index file whole (a temporary file, then a rename): head, then `parts`."""
    line = " ".join([_INDEX_HEAD, *map(str, head)]).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            handle.write(line)
            for part in parts:
                handle.write(part)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # an index only saves reads
        raise


def store_index(
    out: Path,
    stamps: Mapping[str, Stamp],
    folders: Iterable[str] | None = None,
    clean: bool = False,
    seen: Mapping[str, Fields] | None = None,
) -> str:
    """Record `stamps` (written last, after the swap: the index never runs ahead).

    With `folders` (every folder below `out`, the manifest listing exactly the stamped
    files) the index also records a signature of the whole folder, for holds(); `clean`
    says the folder holds nothing else (for indexed()). `seen` holds folders' fields
    the caller took since the last change in them (not lstat'ed again). Returns the
    signature recorded ("" for none).
    """
    path = index_path(out)
    if path is None:
        return ""
    tree = tree_digest({rel: s.digest for rel, s in stamps.items()})
    watched = [] if folders is None else [".", *sorted(folders), MANIFEST, *stamps]
    signature, newest = _NO_SIGNATURE, 0
    if folders is not None:
        try:
            signature, newest = _observed(out, watched[: -len(stamps) or None], stamps, seen or {})
        except (OSError, OverflowError):
            watched = []
    lines = _encoded(
        f"{s.digest.hex()}\t{s.size}\t{s.mtime_ns}\t{s.ino}\t{rel}\n" for rel, s in stamps.items()
    )
    size = sum(map(len, lines))
    fields = (tree, len(stamps), len(watched), size, signature, newest, int(clean))
    try:
        _write_index(path, fields, [*lines, *_encoded(f"{rel}\n" for rel in watched)])
        if newest:
            _after(path, newest)
    except OSError:
        return ""
    return "" if signature == _NO_SIGNATURE else signature


_LINES_PER_PIECE = 1024


def _encoded(lines: Iterable[str]) -> list[bytes]:
    """The lines, encoded a thousand at a time: for a large output, all of them joined
    at once (behind it, the list of every line, then the text) took tens of megabytes
    just as a cold render's memory peaked."""
    pieces, lines = [], iter(lines)
    while batch := list(itertools.islice(lines, _LINES_PER_PIECE)):
        pieces.append("".join(batch).encode())
    return pieces


def _stamp_line(rel: str, s: Stamp) -> bytes:
    return f"{s.digest.hex()}\t{s.size}\t{s.mtime_ns}\t{s.ino}\t{rel}\n".encode()


def store_index_delta(
    out: Path,
    proof: Proof,
    tree: str,
    lines: Mapping[str, tuple[int, int, int, Stamp | None]],
    seen: array.array[int],
    added: Mapping[str, Stamp] | None = None,
    folders: Sequence[str] | None = None,
) -> str:
    """Record the proven index with a few files written anew, removed or added:
    `lines` maps each recorded file written anew (its new stamp) or removed (None) to
    its place, as Proof.locate() gives it; `added` holds the new files' stamps (their
    lines come last); `folders` every folder now, sorted (default: the proof's), and
    `seen` the fields of ".", each of them and the manifest now. Every other file is
    as `proof` saw it: its line and fields are taken over in runs, and with the very
    same paths the watched list is the proof's bytes, so nothing is done per file.
    `tree` is tree_digest() of the new tree. Returns the signature recorded."""
    path = index_path(out)
    if path is None:
        return ""
    old_folders = proof.listed[1 : proof.folder_count + 1]
    folders = old_folders if folders is None else folders
    if len(seen) != 4 * (len(folders) + 2):
        raise ValueError("one field per folder, the output folder and the manifest")
    added = added or {}
    removed = any(line[3] is None for line in lines.values())
    same = not added and not removed and folders == old_folders
    first = 4 * (proof.folder_count + 2)  # where the files' fields start in proof.seen
    recorded, text = proof.files, memoryview(proof.lines)  # unchanged lines: not copied
    fields, pieces, paths = array.array("q", seen), list[bytes | memoryview](), list[str]()
    last, number_after = 0, 0  # where the run of unchanged lines starts, and its number
    for rel, (number, start, end, stamp) in sorted(lines.items(), key=lambda i: i[1][1]):
        pieces.append(text[last:start])
        fields.extend(proof.seen[first + 4 * number_after : first + 4 * number])
        paths += [] if same else recorded[number_after:number]
        if stamp is not None:
            pieces.append(_stamp_line(rel, stamp))
            fields.extend((stat.S_IFREG, stamp.size, stamp.mtime_ns, stamp.ino))
            paths.append(rel)
        last, number_after = end, number + 1
    pieces.append(text[last:])
    fields.extend(proof.seen[first + 4 * number_after :])
    paths += [] if same else recorded[number_after:]
    for rel, stamp in added.items():
        pieces.append(_stamp_line(rel, stamp))
        fields.extend((stat.S_IFREG, stamp.size, stamp.mtime_ns, stamp.ino))
        paths.append(rel)
    if same:
        count, watched = proof.count, [proof.watched]
        listed = len(proof.listed)
    else:
        count, listed = len(paths), len(folders) + 2 + len(paths)
        watched = _encoded(f"{rel}\n" for rel in (".", *folders, MANIFEST, *paths))
    signature, newest = _fields_digest(fields), max(fields[2::4])
    head = (tree, count, listed, sum(map(len, pieces)), signature, newest, proof.head[6])
    try:
        _write_index(path, head, [*pieces, *watched])
        _after(path, newest)
    except OSError:
        return ""
    return signature


def _observed(
    out: Path, fresh: list[str], stamps: Mapping[str, Stamp], known: Mapping[str, Fields]
) -> tuple[str, int]:
    """The signature holds() compares: the folders and manifest as they are now (or as
    `known`: seen since their last change), the files as stamped (regular files, by
    construction); and the newest mtime of all."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        seen = flat(known.get(rel) or fields_of(os.lstat(rel, dir_fd=fd)) for rel in fresh)
    finally:
        os.close(fd)
    seen.extend(
        itertools.chain.from_iterable(
            (stat.S_IFREG, s.size, s.mtime_ns, s.ino) for s in stamps.values()
        )
    )
    return _fields_digest(seen), max(seen[2::4])


def _after(path: Path, newest: int) -> None:
    """Make the index's mtime later than every mtime it records, waiting a timestamp
    granule or two if need be, so that none is racy at the next look (git's racy rule
    would otherwise send the next run file by file). Once this returns, the clock is
    past every recorded mtime: any later edit changes one. (An edit made while servegen
    is still writing, in the granule of its own write, is not seen; as an edit made
    just before the write is overwritten.) Gives up after ~50 ms (a file system with
    coarse timestamps): then holds() declines and files are looked at."""
    for _ in range(10):
        if path.stat().st_mtime_ns > newest:
            return
        time.sleep(0.005)
        os.utime(path)


def forget_index(out: Path) -> None:
    path = index_path(out)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


# The spare folder's record. After a swap the spare is exactly the tree that was the
# output, which the index had just proven (indexed()): its files' inodes and its folders
# are known without listing it. Only its folders are lstat'ed to trust that record: an
# entry added, removed or replaced in a folder changes the folder's mtime (as holds()
# relies on), and a file edited in place is the live output's file too (a hard link:
# same inode) and is seen by the output's own index; any other file is replaced anyway.
#
# A record is either whole (each file's inode and every folder) or, when the spare has
# the very paths and folders of the output, relative to the output's index: only the
# files whose inode differs from the one the index records (those written anew by the
# last write), tied to that index by its signature (which covers every inode). A
# relative record is what lets a write of a few files do nothing per unchanged file.
_SPARE_HEAD = "servegen spare index 1"
_SPARE_DELTA = "servegen spare delta 1"


@dataclass(frozen=True)
class SpareState:
    """What the spare folder holds, as recorded and proven by its folders' fields."""

    files: dict[str, int]  # every entry that is not a folder -> its inode
    folders: tuple[str, ...]  # every folder below the spare
    seen: dict[str, Fields]  # ".", and each folder's fields, as just compared


@dataclass(frozen=True)
class SpareDelta:
    """A spare holding the output's paths and folders, as a relative record says."""

    differing: dict[str, int]  # file -> its inode in the spare, where not the output's
    seen: array.array[int]  # ".", then each folder's fields, as just compared


def spare_record_path(out: Path) -> Path | None:
    path = index_path(out)
    return None if path is None else path.with_name(path.name + ".spare")


def _folder_fields(spare: Path, folders: Sequence[str]) -> array.array[int]:
    """The fields of the spare itself and of each of its folders, four numbers each."""
    return _swept(spare, [".", *folders])


def _store_record(out: Path, head: str, body: str | Iterable[str], newest: int) -> None:
    """Write a spare record: `head`, then `body` (lines, encoded a thousand at a time
    when given one by one, as the index's are)."""
    path = spare_record_path(out)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(head.encode())
            for piece in [body.encode()] if isinstance(body, str) else _encoded(body):
                handle.write(piece)
        tmp.replace(path)
        _after(path, newest)
    except OSError:
        tmp.unlink(missing_ok=True)
        forget_spare(out)  # a record only saves a listing


def store_spare(
    out: Path, files: Mapping[str, int], folders: Sequence[str], stats: Sequence[Fields]
) -> None:
    """Record that the spare holds `files` (path -> inode) and `folders`, whose fields
    (".", then each folder) were `stats` as verified before the swap: not looked at
    again, so an entry added since (even in the instant after the swap) fails the record.
    (An exchange of two folders keeps each one's mtime; were it not so, the record would
    only ever fail, and the spare be listed as before.)"""
    if len(stats) != len(folders) + 1:
        raise ValueError("one field per folder and the spare itself")
    fields = flat(stats)
    newest = max(fields[2::4])
    head = f"{_SPARE_HEAD} {_fields_digest(fields)} {newest} {len(folders)} {len(files)}\n"
    lines = itertools.chain(
        (f"{rel}\n" for rel in folders), (f"{ino}\t{rel}\n" for rel, ino in files.items())
    )
    _store_record(out, head, lines, newest)


def store_spare_delta(
    out: Path, signature: str, differing: Mapping[str, int], stats: array.array[int]
) -> None:
    """Record that the spare holds the paths and folders of the output whose index has
    `signature`, each file the index's inode but those in `differing` (path -> inode),
    its folders' fields (".", then each, as verified before the swap) being `stats`."""
    newest = max(stats[2::4])
    head = f"{_SPARE_DELTA} {_fields_digest(stats)} {newest} {signature} {len(differing)}\n"
    _store_record(out, head, "".join(f"{ino}\t{rel}\n" for rel, ino in differing.items()), newest)


def retie_spare(out: Path, old: str, new: str, written: Mapping[str, int]) -> None:
    """After a write that left the spare alone, tie a record relative to the index
    whose signature was `old` to the new index (`new`): the files written (path -> the
    inode the old index recorded) are where the spare now differs from the output too,
    unless it did already. A whole record does not depend on the index: kept as it is."""
    found = _load_record(out)
    if found is None or found[0][0] != _SPARE_DELTA:
        return
    head, lines = found
    if head[3] != old or not new:
        forget_spare(out)
        return
    try:
        differing = _inodes(lines)
    except ValueError:
        forget_spare(out)
        return
    for rel, ino in written.items():
        differing.setdefault(rel, ino)
    line = f"{_SPARE_DELTA} {head[1]} {head[2]} {new} {len(differing)}\n"
    body = "".join(f"{ino}\t{rel}\n" for rel, ino in differing.items())
    _store_record(out, line, body, int(head[2]))


def _load_record(out: Path) -> tuple[list[str], list[str]] | None:
    """A spare record's head fields (magic first) and lines, unless it is racy."""
    path = spare_record_path(out)
    if path is None:
        return None
    try:
        data, written_ns = _read_stamped(path)
        head, *lines = data.decode().split("\n")
        fields = head.split(" ")
        magic, rest = " ".join(fields[:4]), fields[4:]
        if magic not in (_SPARE_HEAD, _SPARE_DELTA) or len(rest) != 4 or lines[-1:] != [""]:
            return None
        if int(rest[1]) >= written_ns:
            return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return [magic, *rest], lines[:-1]


def _inodes(lines: Sequence[str]) -> dict[str, int]:
    found = {}
    for line in lines:
        ino, rel = line.split("\t", 1)
        found[rel] = int(ino)
    return found


def load_spare(out: Path, spare: Path, index: Index | None = None) -> SpareState | None:
    """The spare's record when every folder of the spare is as recorded (no folder
    newer than the record: racy, as for the index); else None (then it is listed). A
    relative record needs `index`, the output's as indexed() proved it."""
    found = _load_record(out)
    if found is None:
        return None
    head, lines = found
    try:
        if head[0] == _SPARE_DELTA:
            if index is None or head[3] != index.signature:
                return None
            delta = _proven_delta(spare, head, lines, index.folders)
            if delta is None:
                return None
            files = {rel: stamp.ino for rel, stamp in index.stamps.items()}
            files[MANIFEST] = index.stats[-1][3]
            files.update(delta.differing)
            folders, seen = index.folders, delta.seen
        else:
            _, signature, _, folder_count, file_count = head
            folders = tuple(lines[: int(folder_count)])
            files = _inodes(lines[int(folder_count) :])
            if len(files) != int(file_count):
                return None
            seen = _folder_fields(spare, folders)
            if _fields_digest(seen) != signature:
                return None
    except (OSError, ValueError):
        return None
    fields = [_as_fields(seen[i : i + 4]) for i in range(0, len(seen), 4)]
    return SpareState(files, folders, dict(zip((".", *folders), fields, strict=True)))


def load_spare_delta(out: Path, spare: Path, proof: Proof) -> SpareDelta | None:
    """The spare as a relative record says, relative to the index `proof` proved, when
    every folder of the spare is as recorded; else None."""
    found = _load_record(out)
    if found is None:
        return None
    head, lines = found
    if head[0] != _SPARE_DELTA or head[3] != proof.signature:
        return None
    try:
        folders = proof.listed[1 : proof.folder_count + 1]
        return _proven_delta(spare, head, lines, folders)
    except (OSError, ValueError):
        return None


def _proven_delta(
    spare: Path, head: Sequence[str], lines: Sequence[str], folders: Sequence[str]
) -> SpareDelta | None:
    differing = _inodes(lines)
    if len(differing) != int(head[4]):
        return None
    seen = _folder_fields(spare, folders)
    return SpareDelta(differing, seen) if _fields_digest(seen) == head[1] else None


def forget_spare(out: Path) -> None:
    path = spare_record_path(out)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
