"""The deploy tip's tree listing, kept in the build cache under the tip's commit id.

A fresh `publish` builds its commit on the deploy tip. Listing that tip with git
(`ls-tree -r`, about 12,000 entries at 1,000 specs) and parsing it was a fifth of the
deploy commit. The commit before was made by servegen itself, which knows its listing:
it is kept here, keyed by the commit id, and the next process reads it back instead.

Trust: a commit id names its tree for good, so a listing kept for that id is the
listing of that commit in any repository holding it. The tip is always read from the
branch first; only a listing kept under exactly that id is used, so a tip someone else
moved, rewrote or pushed is listed with git. An entry holds its key, the commit id
and a digest of its listing; any mismatch or damage is a miss.

Beside the listing, an entry keeps the outindex.digest() of each file whose blob id was
computed from a file that knew its digest (a tree taken from a stored build). The next
publish then finds a file's blob id by its digest (git.remember_blobs()), without
reading or hashing its bytes: at 10,000 specs, 62,000 files. The digest and the blob id
were computed from the same bytes in the process that made the commit.

The digests are raw bytes, one fixed-size record per file in the listing's own order
(git.layout_entries()): a flag byte, then the digest or zeros. Kept as JSON beside
each file's path, at 10,000 specs they were 5.6 MB of text whose parse (the paths
again, a hex string each) held 20 MB more at the peak of a one-spec publish.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping

from generator import buildcache, git
from generator.outindex import digest

# Bump when a record's shape changes.
FORMAT = "3"

_SIZE = len(digest(b""))  # of each file's digest
_KNOWN, _UNKNOWN = b"\x01", b"\x00"  # the flag before it
_NONE = _UNKNOWN + bytes(_SIZE)  # a file whose digest is not known


def _key(repo: git.Repo, commit: str) -> str:
    text = f"deploy listing\0{FORMAT}\0{repo.object_format}\0{commit}"
    return hashlib.sha256(text.encode()).hexdigest()


def read_tree(repo: git.Repo, commit: str) -> git.Tree:
    """The listing of `commit`: made in this process, else kept (its files' digests
    then remembered for git.blob_ids()), else from git."""
    made = git.made_listing(repo, commit)
    if made is not None:
        return made
    kept = load(repo, commit)
    if kept is None:
        return git.read_tree(repo, commit)
    tree, digests = kept
    git.remember_blobs(repo, digests, git.file_oids(tree))
    return tree


def load(repo: git.Repo, commit: str) -> tuple[git.Tree, dict[str, bytes]] | None:
    """The listing kept for `commit` and its files' digests, or None (none kept,
    damaged, not for this id)."""
    if not buildcache.enabled():
        return None
    key = _key(repo, commit)
    try:
        entry = buildcache.read_entry(key)
        first = entry.index(b"\n")
        second = entry.index(b"\n", first + 1)  # (the record, compact JSON, holds none)
        found = json.loads(entry[:first])
        record, packed = entry[first + 1 : second], entry[second + 1 :]
        # One copy of its megabytes at a time: at 10,000 specs the record is 10 MB and
        # its parse three times that.
        del entry
        if found.get("key") != key or found.get("digest") != _digest((record,), packed):
            return None
        tree = git.listing_from_record(repo, commit, record)
        del record
        if tree is None:
            return None
        # The tree's files are in the record's order (git.layout_entries()), as stored.
        digests = _unpacked(git.file_oids(tree), packed)
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    return None if digests is None else (tree, digests)


def _unpacked(paths: Iterable[str], packed: bytes) -> dict[str, bytes] | None:
    """path -> digest of each file `packed` (_packed()) knows, the files being `paths`
    in the order it was packed in; None when it is not one record per file."""
    found: dict[str, bytes] = {}
    at, step = 0, len(_NONE)
    for path in paths:
        if packed[at : at + 1] == _KNOWN:
            found[path] = packed[at + 1 : at + step]
        elif packed[at : at + step] != _NONE:
            return None  # damaged, or cut short
        at += step
    return found if at == len(packed) else None


def _packed(files: Iterable[str], known: Mapping[str, bytes]) -> bytes:
    """The digest `known` has for each of `files`, in their order, as _unpacked() reads."""
    return b"".join(
        _KNOWN + found if found is not None and len(found) == _SIZE else _NONE
        for found in map(known.get, files)
    )


def store(repo: git.Repo, commit: str) -> None:
    """Keep the listing of `commit`, a commit `build_commit` just made in this process,
    with the digests its files' blob ids were found from, and drop its parent's: the
    branch has moved on, and a listing is about as large as the output's paths (a
    megabyte at 1,000 specs), one per publish otherwise."""
    made = git.made_listing(repo, commit)
    record = git.listing_record(made) if made is not None else None
    if made is None or made.layout is None or record is None or not buildcache.enabled():
        return
    known = git.known_blobs(repo, git.file_oids(made))
    # In the order the record lists the files: the order load() reads them back in.
    files = (path for path, oid in git.layout_entries(made.layout) if oid is not None)
    packed = _packed(files, known)
    del known
    key = _key(repo, commit)
    head = json.dumps({"key": key, "digest": _digest(record, packed)}).encode()
    buildcache.write_entry(key, [head + b"\n", *record, b"\n", packed])
    for parent in made.parents:  # a reader that has it open still reads it whole
        with contextlib.suppress(OSError):
            buildcache.entry_path(_key(repo, parent)).unlink(missing_ok=True)


def _digest(record: Iterable[bytes], packed: bytes) -> str:
    """The digest an entry's head records: of what follows the head (the record in
    one piece or several)."""
    total = hashlib.sha256()
    for piece in record:
        total.update(piece)
    total.update(b"\n")
    total.update(packed)
    return total.hexdigest()
