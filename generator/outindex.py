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
import itertools
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

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


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


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


def index_path(out: Path) -> Path | None:
    """Where `out`'s index lives; None with SERVEGEN_NO_CACHE=1 (always read files)."""
    if os.environ.get("SERVEGEN_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    where = hashlib.sha256(os.fsencode(out.parent.resolve() / out.name)).hexdigest()
    return Path(base) / "servegen" / "outputs" / f"{where[:40]}.index"


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


def _read(out: Path) -> tuple[list[str], bytes, bytes, int] | None:
    """The head's fields, the stamp lines, the watched paths and the index's mtime."""
    path = index_path(out)
    if path is None:
        return None
    try:
        data, written_ns = _read_stamped(path)
        head, _, rest = data.partition(b"\n")
        fields = head.decode().split(" ")
        if " ".join(fields[:-_FIELDS]) != _INDEX_HEAD or not data.endswith(b"\n"):
            return None
        fields = fields[-_FIELDS:]
        cut = int(fields[3])
    except (OSError, ValueError):
        return None
    return fields, rest[:cut], rest[cut:], written_ns


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
    return _verified(out, tree) is not None


def indexed(out: Path) -> Index | None:
    """The index of `out`, with every folder, when `out` provably holds the tree the
    index records (see holds()) and held nothing but servegen's files when it was
    indexed: then the index says all that reading the folder would."""
    found = _verified(out, None)
    if found is None:
        return None
    (tree, count, _, _, _, _, clean), lines, listed, written_ns, stats = found
    stamps = _stamps(lines, int(count))
    if clean != "1" or stamps is None:
        return None
    folders = tuple(listed[1 : len(listed) - 1 - len(stamps)])  # after ".", before MANIFEST
    return Index(tree, written_ns, stamps, folders, tuple(stats[: len(folders) + 2]))


def _verified(
    out: Path, tree: str | None
) -> tuple[list[str], bytes, list[str], int, list[Fields]] | None:
    """The index's parts when `out` holds what it records (and that is `tree`, if given),
    with the fields seen of every watched folder (and the manifest, the next path)."""
    found = _read(out)
    if found is None:
        return None
    fields, lines, paths, written_ns = found
    recorded, count, watched, _cut, signature, newest, _clean = fields
    try:
        if tree not in (None, recorded) or signature == _NO_SIGNATURE:
            return None
        if int(newest) >= written_ns:
            return None
        listed = paths.decode().split("\n")[:-1]
        if len(listed) != int(watched):
            return None
        keep = len(listed) - int(count) if tree is None else 0
        seen, stats = _signature(out, listed, keep)
        if seen != signature:
            return None
    except (OSError, ValueError, OverflowError):
        return None  # gone, or not what it was: looked at file by file
    return fields, lines, listed, written_ns, stats


_TYPE = stat.S_IFMT(0o177777)
_CHUNK = 4096  # stat results alive at once: a tenth of the memory of all of them


def _signature(out: Path, paths: Sequence[str], keep: int = 0) -> tuple[str, list[Fields]]:
    """A digest of the type, size, mtime and inode of each path below `out` (no symlink
    followed: `out` itself is opened with O_NOFOLLOW, and a folder that became a link
    has another type); and those fields of the first `keep` paths."""
    total = hashlib.sha256()
    kept: list[Fields] = []
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        lstat = functools.partial(os.lstat, dir_fd=fd)
        for start in range(0, len(paths), _CHUNK):
            found = map(lstat, paths[start : start + _CHUNK])
            chunk = [(s.st_mode & _TYPE, s.st_size, s.st_mtime_ns, s.st_ino) for s in found]
            if start < keep:
                kept.extend(chunk[: keep - start])
            _update(total, chunk)
    finally:
        os.close(fd)
    return total.hexdigest(), kept


def _fields(info: os.stat_result) -> Fields:
    return (info.st_mode & _TYPE, info.st_size, info.st_mtime_ns, info.st_ino)


def _update(total: Any, fields: Iterable[tuple[int, int, int, int]]) -> None:
    total.update(array.array("q", itertools.chain.from_iterable(fields)).tobytes())


def store_index(
    out: Path,
    stamps: Mapping[str, Stamp],
    folders: Iterable[str] | None = None,
    clean: bool = False,
    seen: Mapping[str, Fields] | None = None,
) -> None:
    """Record `stamps` (written last, after the swap: the index never runs ahead).

    With `folders` (every folder below `out`, the manifest listing exactly the stamped
    files) the index also records a signature of the whole folder, for holds(); `clean`
    says the folder holds nothing else (for indexed()). `seen` holds folders' fields
    the caller took since the last change in them (not lstat'ed again).
    """
    path = index_path(out)
    if path is None:
        return
    tree = tree_digest({rel: s.digest for rel, s in stamps.items()})
    watched = [] if folders is None else [".", *sorted(folders), MANIFEST, *stamps]
    signature, newest = _NO_SIGNATURE, 0
    if folders is not None:
        try:
            signature, newest = _observed(out, watched[: -len(stamps) or None], stamps, seen or {})
        except (OSError, OverflowError):
            watched = []
    lines = "".join(
        f"{s.digest.hex()}\t{s.size}\t{s.mtime_ns}\t{s.ino}\t{rel}\n" for rel, s in stamps.items()
    ).encode()
    fields = (tree, len(stamps), len(watched), len(lines), signature, newest, int(clean))
    head = " ".join([_INDEX_HEAD, *map(str, fields)]).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(head + lines + "".join(f"{rel}\n" for rel in watched).encode())
        tmp.replace(path)
        if newest:
            _after(path, newest)
    except OSError:
        tmp.unlink(missing_ok=True)  # an index only saves reads


def _observed(
    out: Path, fresh: list[str], stamps: Mapping[str, Stamp], known: Mapping[str, Fields]
) -> tuple[str, int]:
    """The signature holds() compares: the folders and manifest as they are now (or as
    `known`: seen since their last change), the files as stamped (regular files, by
    construction); and the newest mtime of all."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        seen = [known.get(rel) or _fields(os.lstat(rel, dir_fd=fd)) for rel in fresh]
    finally:
        os.close(fd)
    files = [(stat.S_IFREG, s.size, s.mtime_ns, s.ino) for s in stamps.values()]
    total = hashlib.sha256()
    _update(total, seen)
    _update(total, files)
    return total.hexdigest(), max(field[2] for field in itertools.chain(seen, files))


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
_SPARE_HEAD = "servegen spare index 1"


@dataclass(frozen=True)
class SpareState:
    """What the spare folder holds, as recorded and proven by its folders' fields."""

    files: dict[str, int]  # every entry that is not a folder -> its inode
    folders: tuple[str, ...]  # every folder below the spare
    seen: dict[str, Fields]  # ".", and each folder's fields, as just compared


def spare_record_path(out: Path) -> Path | None:
    path = index_path(out)
    return None if path is None else path.with_name(path.name + ".spare")


def _folder_fields(spare: Path, folders: Sequence[str]) -> list[Fields]:
    fd = os.open(spare, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        return [_fields(os.lstat(rel, dir_fd=fd)) for rel in (".", *folders)]
    finally:
        os.close(fd)


def _fields_digest(fields: Sequence[Fields]) -> str:
    total = hashlib.sha256()
    _update(total, fields)
    return total.hexdigest()


def store_spare(
    out: Path, files: Mapping[str, int], folders: Sequence[str], stats: Sequence[Fields]
) -> None:
    """Record that the spare holds `files` (path -> inode) and `folders`, whose fields
    (".", then each folder) were `stats` as verified before the swap: not looked at
    again, so an entry added since (even in the instant after the swap) fails the record.
    (An exchange of two folders keeps each one's mtime; were it not so, the record would
    only ever fail, and the spare be listed as before.)"""
    path = spare_record_path(out)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fields = list(stats)
        if len(fields) != len(folders) + 1:
            raise ValueError("one field per folder and the spare itself")
        newest = max(field[2] for field in fields)
        head = f"{_SPARE_HEAD} {_fields_digest(fields)} {newest} {len(folders)} {len(files)}\n"
        body = "".join(f"{rel}\n" for rel in folders) + "".join(
            f"{ino}\t{rel}\n" for rel, ino in files.items()
        )
        tmp.write_bytes((head + body).encode())
        tmp.replace(path)
        _after(path, newest)
    except (OSError, ValueError, OverflowError):
        tmp.unlink(missing_ok=True)
        forget_spare(out)  # a record only saves a listing


def load_spare(out: Path, spare: Path) -> SpareState | None:
    """The spare's record when every folder of the spare is as recorded (no folder
    newer than the record: racy, as for the index); else None (then it is listed)."""
    path = spare_record_path(out)
    if path is None:
        return None
    try:
        data, written_ns = _read_stamped(path)
        head, *lines = data.decode().split("\n")
        *magic, signature, newest, folder_count, file_count = head.split(" ")
        if " ".join(magic) != _SPARE_HEAD or lines[-1:] != [""] or int(newest) >= written_ns:
            return None
        folders = tuple(lines[: int(folder_count)])
        files = {}
        for line in lines[int(folder_count) : -1]:
            ino, rel = line.split("\t", 1)
            files[rel] = int(ino)
        if len(files) != int(file_count):
            return None
        fields = _folder_fields(spare, folders)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if _fields_digest(fields) != signature:
        return None
    return SpareState(files, folders, dict(zip((".", *folders), fields, strict=True)))


def forget_spare(out: Path) -> None:
    path = spare_record_path(out)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
