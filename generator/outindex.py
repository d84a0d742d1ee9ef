"""The stat index of an output folder: what servegen wrote there, as git's index records it.

For each file servegen wrote: its size, mtime and inode, and a digest of the bytes. A file
whose lstat still matches is trusted to hold those bytes, so an unchanged output costs a
stat per file, not a read. The caveat is git's: an edit that keeps the size, the inode
and the nanosecond mtime goes unnoticed. As in git, a file modified no earlier than the
index itself was written ("racy": a same-size edit in that timestamp granule keeps every
field equal) is read anyway. `ctime` is not recorded: hard-linking an unchanged file into
the spare tree changes it on every write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stamp:
    """What git's index records of a file, and a digest of the bytes servegen wrote."""

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


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def tree_digest(digests: Mapping[str, bytes]) -> str:
    """One digest of a whole tree: every path and the digest of its bytes."""
    total = hashlib.blake2b(digest_size=16)
    for rel in sorted(digests):
        total.update(rel.encode() + b"\0" + digests[rel])
    return total.hexdigest()


_INDEX_HEAD = "servegen output index 1"


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


def index_path(out: Path) -> Path | None:
    """Where `out`'s index lives; None with SERVEGEN_NO_CACHE=1 (always read files)."""
    if os.environ.get("SERVEGEN_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    where = hashlib.sha256(os.fsencode(out.parent.resolve() / out.name)).hexdigest()
    return Path(base) / "servegen" / "outputs" / f"{where[:40]}.index"


def load_index(out: Path) -> Index | None:
    path = index_path(out)
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            text = handle.read().decode()
            written_ns = os.fstat(handle.fileno()).st_mtime_ns
        head, *lines = text.split("\n")
        magic, tree = head.rsplit(" ", 1)
        if magic != _INDEX_HEAD or lines.pop() != "":
            return None
        stamps = {}
        for line in lines:
            hexed, size, mtime, ino, rel = line.split("\t", 4)
            stamps[rel] = Stamp(int(size), int(mtime), int(ino), bytes.fromhex(hexed))
        return Index(tree, written_ns, stamps)
    except (OSError, ValueError):
        return None  # missing, unreadable or not an index: every file is read


def store_index(out: Path, stamps: Mapping[str, Stamp]) -> None:
    """Record `stamps` (written last, after the swap: the index never runs ahead)."""
    path = index_path(out)
    if path is None:
        return
    tree = tree_digest({rel: s.digest for rel, s in stamps.items()})
    lines = [f"{_INDEX_HEAD} {tree}\n"]
    lines.extend(
        f"{s.digest.hex()}\t{s.size}\t{s.mtime_ns}\t{s.ino}\t{rel}\n" for rel, s in stamps.items()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("".join(lines))
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # an index only saves reads


def forget_index(out: Path) -> None:
    path = index_path(out)
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
