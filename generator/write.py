"""Step 5: write an output tree to disk, all at once or not at all.

The output folder is replaced as a whole: the new tree is prepared in the spare
(`.<output>.servegen/spare`, beside the output) and swapped in with one
`renameat2(RENAME_EXCHANGE)`, so a reader (or `kubectl kustomize`) sees exactly the old
or exactly the new tree, even when servegen is killed at any moment. The swapped-out
tree stays as the next spare, so the next write only touches what changed since: files
whose bytes did not change are hard links to the live ones (same inode, same mtime), and
nothing at all happens when the output is already up to date. The spare's folder holds a
`.gitignore` of its own, so git never sees it, whatever the repository ignores.

servegen only ever deletes what it wrote itself: the output folder carries a manifest
(`.servegen-manifest`) listing those files. Anything else found there is carried over
into the new tree untouched. A non-empty folder without a manifest is refused, unless it
is an output written before manifests existed (only servegen's folders in it). Symlinks
inside servegen's folders are refused, never followed.

Whether a file still holds what servegen wrote is told by a stat, not a read: see
generator/outindex.py (git's index, and git's caveat). A caller that knows the digest of
the whole new tree (a build from the build cache) passes it, and an up-to-date folder is
recognised without looking at any of the new bytes. A tree known to be the output's with
a few files replaced (outindex.Delta) is written without anything per unchanged file:
see _write_delta (a copy of the one folder holding the changes is swapped in, prepared
in `.<output>.servegen/part`, or the spare is used as its record relative to the index
says).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import ctypes
import errno
import fcntl
import os
import re
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generator import outindex, workers
from generator.errors import ServegenError
from generator.outindex import (
    Delta,
    Digested,
    Fields,
    Index,
    SpareState,
    Stamp,
    digest,
    digests_of,
    fields_of,
    forget_index,
    forget_spare,
    indexed,
    load_index,
    load_spare,
    store_index,
    store_spare,
    store_spare_delta,
    tree_digest,
)
from generator.outtree import MANAGED, folders_of

MANIFEST = outindex.MANIFEST
MANIFEST_HEAD = b"# Files servegen wrote in this folder; it deletes only these. Do not edit.\n"
_STAGING_MARK = ".servegen-staging"
# Any control or line-break character: never part of a path servegen writes.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class OutputFolderError(ServegenError):
    """The output folder is not servegen's to write, or holds something unsafe."""


class CannotWriteError(OutputFolderError):
    """The file system refused: a path where no folder can be made or written."""


@dataclass(frozen=True)
class WriteStats:
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def safe_relative(path: str) -> str:
    # Plain string checks: pathlib per path was a third of a watch batch's write.
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if (
        path.startswith("/")
        or ".." in parts
        or not parts
        or parts[0] not in MANAGED
        or _UNSAFE_CHARS.search(path)
    ):
        raise ServegenError(f"refusing to write {path!r} outside the managed output folders")
    return path


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class OutputFolder:
    """What is on disk: digests of servegen's files and everything else (left alone)."""

    owned: dict[str, bytes]  # path -> digest of its bytes
    foreign: tuple[str, ...]  # files and symlinks servegen did not write
    folders: tuple[str, ...]  # every folder, so empty foreign ones are carried over too
    inodes: dict[str, int]  # every file's inode: the spare shares unchanged ones
    manifest: bytes | None
    exists: bool
    stamps: dict[str, Stamp] = field(default_factory=dict)  # owned files as they are now
    index_stale: bool = True  # the stat index does not describe this folder exactly
    # From a proving index only: the fields of ".", each folder and the manifest.
    verified: tuple[Fields, ...] = ()
    proven: Index | None = None  # that index


def read_output(out: Path, known: Mapping[str, bytes] | None = None) -> OutputFolder:
    """Read the output folder without following a single symlink; refuse foreign folders.

    A file whose lstat matches the stat index (see `_load_index`) is trusted to hold the
    bytes servegen wrote, as git trusts its index: a stat, not a read. `known` is what
    the caller last wrote there (the watcher): those bytes are trusted instead of read
    again when the index cannot vouch for a file.
    """
    if out.is_symlink():
        raise OutputFolderError(f"{out} is a symlink; servegen never writes through symlinks")
    if not out.exists():
        return OutputFolder({}, (), (), {}, None, exists=False)
    if not out.is_dir():
        raise OutputFolderError(f"{out} exists and is not a folder")
    index = load_index(out)
    scan = _scan(out)
    manifest = _read_regular(out / MANIFEST) if MANIFEST in scan.files else None
    listed = _listed(manifest) if manifest is not None else _legacy_owned(out, scan.files)
    owned: dict[str, bytes] = {}
    stamps: dict[str, Stamp] = {}
    foreign = []
    stale = index is None
    for rel in sorted(scan.files):  # the keys alone: 62,000 pairs at 10,000 specs
        _inode, is_link = scan.files[rel]
        if rel == MANIFEST:
            continue
        managed = rel.split("/")[0] in MANAGED
        if is_link and (managed or rel in listed):
            raise OutputFolderError(
                f"{out / rel} is a symlink inside servegen's output; servegen never follows "
                "symlinks there: remove it and render again"
            )
        if rel in listed and not is_link:
            stamp, trusted = _stamp(f"{out}/{rel}", index, rel, known)
            owned[rel], stamps[rel] = stamp.digest, stamp
            stale = stale or not trusted
        else:
            foreign.append(rel)
    del listed  # before the inodes are gathered: at 10,000 specs each is 62,000 entries
    if index is not None and set(index.stamps) != set(stamps):
        stale = True
    inodes = {rel: inode for rel, (inode, _link) in scan.files.items()}
    return OutputFolder(owned, tuple(foreign), scan.folders, inodes, manifest, True, stamps, stale)


def _stamp(
    path: str, index: Index | None, rel: str, known: Mapping[str, bytes] | None
) -> tuple[Stamp, bool]:
    """A listed file's stamp, and whether the index vouched for it (no read needed)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise OutputFolderError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise OutputFolderError(f"{path} is not a regular file; refusing to replace it")
    recorded = index.stamps.get(rel) if index is not None else None
    # A file modified no earlier than the index was written is "racy": a same-size edit
    # in that timestamp granule keeps every field equal, so it is read (as git does).
    racy = index is None or info.st_mtime_ns >= index.written_ns
    cached = None
    if recorded is not None and recorded.matches(info):
        if not racy:
            return recorded, True
        # What the watcher wrote stands in for a read only while the file's stat is
        # still the one recorded for it: a stat that moved means someone else wrote it.
        cached = known.get(rel) if known is not None else None
    data = cached if cached is not None else _read_regular(Path(path))
    return Stamp(info.st_size, info.st_mtime_ns, info.st_ino, digest(data)), False


@dataclass(frozen=True)
class _Scan:
    """One folder's entries, relative paths; read with scandir, no symlink followed."""

    files: dict[str, tuple[int, bool]]  # file or symlink -> (inode, is a symlink)
    folders: tuple[str, ...]


def _scan(folder: Path) -> _Scan:
    files: dict[str, tuple[int, bool]] = {}
    folders: list[str] = []
    pending = [""]
    top = str(folder)
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(f"{top}/{rel}" if rel else top) as entries:
                for entry in entries:
                    path = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(path)
                        pending.append(path)
                    else:
                        files[path] = (entry.inode(), entry.is_symlink())
        except OSError as exc:
            raise OutputFolderError(f"cannot read {folder / rel}: {exc.strerror or exc}") from exc
    return _Scan(files, tuple(sorted(folders)))


def _read_regular(path: Path) -> bytes:
    """A regular file's bytes; O_NOFOLLOW|O_NONBLOCK so neither a link nor a FIFO is entered."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise OutputFolderError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputFolderError(f"{path} is not a regular file; refusing to replace it")
        return handle.read()


def _listed(manifest: bytes) -> set[str]:
    lines = manifest.decode("utf-8", "replace").splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def _legacy_owned(out: Path, entries: Mapping[str, object]) -> set[str]:
    """An output from before manifests: only servegen's folders (and hidden entries)."""
    tops = {rel.split("/")[0] for rel in entries} | {p.name for p in out.iterdir()}
    visible = {top for top in tops if not top.startswith(".")}
    if visible - set(MANAGED):
        shown = ", ".join(sorted(visible - set(MANAGED))[:5])
        raise OutputFolderError(
            f"{out} is not empty and was not written by servegen (no {MANIFEST}; it holds "
            f"{shown}); refusing to write there. Render into an empty or new folder"
        )
    return {rel for rel in entries if rel.split("/")[0] in MANAGED}


def manifest_bytes(paths: Iterable[str]) -> bytes:
    return MANIFEST_HEAD + "".join(f"{p}\n" for p in sorted(paths)).encode()


def is_manifest_of(manifest: bytes | None, paths: Iterable[str]) -> bool:
    """Whether `manifest` is exactly manifest_bytes(paths), compared a line at a time:
    the whole text of a large tree's manifest is never made (4 MB at 10,000 specs)."""
    if manifest is None or not manifest.startswith(MANIFEST_HEAD):
        return False
    view, at = memoryview(manifest), len(MANIFEST_HEAD)
    for path in sorted(paths):
        line = f"{path}\n".encode()
        if view[at : at + len(line)] != line:
            return False
        at += len(line)
    return at == len(manifest)


# --------------------------------------------------------------------------- writing


def everything(_rel: str) -> bool:
    """The scope of a write of the whole output: every file servegen wrote there is the
    new tree's to keep or remove."""
    return True


def write_tree(
    out: Path,
    files: Mapping[str, bytes],
    scope: Callable[[str], bool] = everything,
    known: Mapping[str, bytes] | None = None,
    tree: str | None = None,
) -> WriteStats:
    """Make `out` hold `files`; servegen's files outside `scope` are kept, stale ones removed.

    `known` is what the caller last wrote to `out` (the watcher), saving a re-read.
    `tree` is `tree_digest()` of `files` when the caller knows it (a whole build from
    the build cache): when the folder already holds exactly that tree, not one of the
    bytes in `files` is looked at. When the index proves the folder holds what it
    records and nothing else, the folder is not read at all; files that know their
    digests (outindex.Digested) are read only where they differ from the folder's.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _locked(out.parent):  # read and swap as one: no other writer in between
            # Proven once (a stat per folder and file, nothing read), for both ways below.
            proof = outindex.prove(out)
            if tree is not None and proof is not None and proof.tree == tree:
                return WriteStats((), len(files), ())
            reshape = scope is everything  # (a scoped write keeps files outside it)
            if tree is not None and proof is not None:  # the output is servegen's: proven
                _scratch(out)  # the spare's and part folder's home
                done = _write_delta(out, files, tree, proof, reshape)
                if done is not None:
                    return done
            for rel in files:
                safe_relative(rel)
            current = _indexed_output(out, proof) or read_output(out, known)
            _scratch(out)  # (only now: read_output() refuses a folder servegen did not make)
            _clear_part(part_folder(out))  # what an interrupted write within a folder left
            del proof  # what the write needs of it is in `current` now (megabytes at 10,000)
            if tree is not None and _holds(current, files, tree):
                # holds() declined (a foreign file, a stale index): next time it need not.
                store_index(out, current.stamps, current.folders, not current.foreign)
                return WriteStats((), len(files), ())
            new = digests_of(files)
            kept = {r: d for r, d in current.owned.items() if r not in files and not scope(r)}
            wanted = {**kept, **new}
            written = tuple(sorted(r for r, d in new.items() if current.owned.get(r) != d))
            removed = tuple(sorted(set(current.owned) - set(wanted)))
            manifest = manifest_bytes(wanted)
            if written or removed or manifest != current.manifest or not current.exists:
                forget_index(out)  # until the new tree's is written
                made, folders, seen = _replace_folder(out, files, wanted, current, manifest)
                stamps = {r: made.get(r) or current.stamps[r] for r in wanted}
                clean = all(rel in wanted for rel in current.foreign)
                # What the records below do not need goes first: at 10,000 specs these
                # maps and the manifest are a tenth of the peak of a write of new paths.
                del new, kept, wanted, manifest, made
                signature = store_index(out, stamps, folders, clean, seen)
                _record_spare(out, current, stamps, folders, signature)
            elif current.index_stale:
                store_index(out, current.stamps, current.folders, not current.foreign)
    except OSError as exc:
        raise CannotWriteError(f"cannot write the output folder {out}: {exc}") from exc
    return WriteStats(written, len(files) - len(written), removed)


def _write_delta(
    out: Path,
    files: Mapping[str, bytes],
    tree: str,
    proof: outindex.Proof | None,
    reshape: bool = True,
) -> WriteStats | None:
    """Write `files` when they are the output's tree with a few files' bytes replaced
    (outindex.Delta), doing nothing per unchanged file; None when that cannot be shown
    (then the whole write does it).

    Shown means: the index records the tree the files were made from and proves the
    output holds exactly it (a stat of every folder and file, see outindex.holds()).
    Files that know their digests (outindex.Digested) but not that tree may start from
    any proven tree: the changed files are those whose digests differ from the index's,
    and (when `reshape`, i.e. the write's scope is the whole output) those it lacks or
    holds beyond them.
    When the changed files share a folder below the output's, a copy of that folder
    alone (its files linked, the changed ones written) is swapped in: see _write_within.
    Else the spare is used as by the whole write, when its record, relative to that very
    index, is proven: see _write_spare, and _write_reshaped for files added or removed.
    Either way the new index is the old one's bytes with the changed lines replaced (or
    removed, or added), and its signature the fields just seen, with those of what was
    touched taken anew.
    """
    hint = files.changes() if isinstance(files, Delta) else None
    if hint is None and not isinstance(files, Digested):
        return None
    if proof is None or not proof.clean or (hint is not None and proof.tree != hint[0]):
        return None
    found = (hint[1], [], []) if hint is not None else _differing(proof, files, reshape)
    if found is None:
        return None
    changed, gone, added = found
    located = proof.locate([*(rel for rel in changed if rel not in added), *gone])
    if located is None:
        return None
    new = {
        rel: data
        for rel, data in changed.items()
        if rel in added or digest(data) != located[rel][3].digest
    }
    if not new and not gone:
        return None
    for rel in new:
        safe_relative(rel)
    change = _Change(out, proof, located, new, tree, tuple(gone), frozenset(added))
    if gone or added:
        done = _write_reshaped(change)
    else:
        done = _write_within(change) or _write_spare(change)
    written, removed = tuple(sorted(new)), tuple(sorted(gone))
    return None if not done else WriteStats(written, len(files) - len(new), removed)


def _differing(
    proof: outindex.Proof, files: Mapping[str, bytes], reshape: bool
) -> tuple[dict[str, bytes], list[str], list[str]] | None:
    """The files (outindex.Digested) whose digests differ from what the proven output
    holds or that it lacks (with their bytes), and the files it holds that `files`
    lack (a stored build of another edit, say, or with a spec file added); None when
    paths differ but `reshape` is False (the write keeps files outside its scope)."""
    compared = proof.compare(files.digests()) if isinstance(files, Digested) else None
    if compared is None:
        return None
    differing, gone, added = compared
    if (gone or added) and not reshape:
        return None
    if len(differing) + len(gone) + len(added) > _DIFFERING_LIMIT:
        return None  # (many: the whole write takes each file's bytes one at a time)
    return {rel: files[rel] for rel in (*differing, *added)}, gone, added


_DIFFERING_LIMIT = 2048  # changed files whose bytes a shortcut write holds at once


@dataclass(frozen=True)
class _Change:
    """A few files of a proven output, to be written anew."""

    out: Path
    proof: outindex.Proof
    located: Mapping[str, tuple[int, int, int, Stamp]]  # each file's line in the index
    new: Mapping[str, bytes]  # path -> its new bytes
    tree: str  # tree_digest() of the tree once written
    gone: tuple[str, ...] = ()  # files the output holds and the tree does not
    added: frozenset[str] = frozenset()  # files of `new` the output does not hold

    def stamps(self, made: Mapping[str, Stamp]) -> dict[str, tuple[int, int, int, Stamp]]:
        return {rel: (*self.located[rel][:3], stamp) for rel, stamp in made.items()}

    @property
    def folders(self) -> list[str]:
        return self.proof.listed[1 : self.proof.folder_count + 1]


def _common_folder(paths: Iterable[str]) -> str:
    """The deepest folder every path lies in; "" for the output folder itself."""
    common: list[str] | None = None
    for rel in paths:
        parts = rel.split("/")[:-1]
        if common is None:
            common = parts
        else:
            same = 0
            while same < min(len(common), len(parts)) and common[same] == parts[same]:
                same += 1
            common = common[:same]
    return "/".join(common or ())


def scratch_folder(out: Path) -> Path:
    """servegen's own folder beside the output: the spare and the part folder live here."""
    return out.parent / f".{out.name}.servegen"


def part_folder(out: Path) -> Path:
    return scratch_folder(out) / "part"


def spare_folder(out: Path) -> Path:
    return scratch_folder(out) / "spare"


# A `.gitignore` that ignores its own folder, whatever the repository's own ignore rules:
# `git add -A` in a repository that ignores only `output/` must not commit the spare.
_IGNORE_ALL = b"# servegen's scratch space beside the output: never committed\n*\n"


def _scratch(out: Path) -> None:
    """Make sure the scratch folder is servegen's: a real folder (never a link, which
    could lead anywhere) holding the `.gitignore` that hides it from git."""
    folder = scratch_folder(out)
    if not os.path.lexists(folder):
        _make_scratch(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise OutputFolderError(f"{folder} is not servegen's folder; remove it")
    _write_ignore(folder)  # (removed by hand since, say)


def _make_scratch(folder: Path) -> None:
    """Made under a temporary name with its `.gitignore`, then renamed into place: a
    `git add -A` never finds the folder without it."""
    temp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    if os.path.lexists(temp):  # a killed run's, under a reused pid
        if temp.is_symlink() or not temp.is_dir():
            raise OutputFolderError(f"{temp} is not servegen's folder; remove it")
        remove_tree(temp, markers=False)
    temp.mkdir()
    _write_ignore(temp)
    try:
        os.rename(temp, folder)  # noqa: PTH104 - fails onto anything but an empty folder
    except OSError:
        remove_tree(temp, markers=False)  # what is there now is judged by the caller


def _write_ignore(folder: Path) -> None:
    with contextlib.suppress(FileExistsError):  # one already there (of any kind) is kept
        fd = os.open(folder / ".gitignore", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_IGNORE_ALL)


_WITHIN_LIMIT = 2048  # folders and files a copy may hold: beyond, the spare is used


def _write_within(change: _Change) -> bool:
    """Swap in a copy of the one folder below the output that holds every changed file:
    its folders made, its other files linked (the output is proven to hold nothing
    else there), the changed ones written; one renameat2(RENAME_EXCHANGE) of that
    folder, so a reader sees the old or the new tree as with the whole swap. The copy
    is prepared in the part folder (`.<output>.servegen/part`), where the old
    folder is removed after. The spare is not touched; its record, if relative to the
    old index, is tied to the new one (the files written are where it now differs)."""
    out, proof, top = change.out, change.proof, _common_folder(change.new)
    folders = change.folders
    lo, hi = bisect.bisect_left(folders, top + "/"), bisect.bisect_left(folders, top + "0")
    inner = [top, *folders[lo:hi]]  # top and every folder below it, parents first
    if not top or top not in folders or len(inner) > _WITHIN_LIMIT:
        return False
    prefix = top + "/"
    linked = [rel for rel in proof.listed[proof.folder_count + 2 :] if rel.startswith(prefix)]
    part = part_folder(out)
    if len(inner) + len(linked) > _WITHIN_LIMIT or not _clear_part(part):
        return False  # (a large folder: the spare's proof costs less than a copy)
    forget_index(out)  # until the new tree's is written
    part.mkdir()
    (part / _STAGING_MARK).touch()  # servegen's: an interrupted run's is removed
    copy = f"{part}/{top.rpartition('/')[2]}"
    for rel in inner:
        os.mkdir(copy + rel[len(top) :])  # noqa: PTH102
    made: dict[str, Stamp] = {}
    for rel in linked:
        target = copy + rel[len(top) :]
        if rel in change.new:
            made[rel] = _new_file(target, change.new[rel])
        else:
            os.link(f"{out}/{rel}", target, follow_symlinks=False)
    if made.keys() != change.new.keys():
        raise OutputFolderError(f"{out / top} is not as its index records")
    _exchange(Path(copy), out / top)
    remove_tree(part)
    retaken = [_parent(top), *inner]
    head = _retaken(out, proof.seen[: 4 * (proof.folder_count + 1)], folders, retaken)
    head.extend(proof.seen[4 * (proof.folder_count + 1) : 4 * (proof.folder_count + 2)])
    signature = outindex.store_index_delta(out, proof, change.tree, change.stamps(made), head)
    previous = {rel: change.located[rel][3].ino for rel in made}
    outindex.retie_spare(out, proof.signature, signature, previous)
    return True


def _clear_part(part: Path) -> bool:
    """Make room for the part folder: remove one an interrupted run left (it holds
    servegen's mark, or nothing at all); False when something else has that name (then
    it is left alone)."""
    if not os.path.lexists(part):
        return True
    if part.is_symlink() or not part.is_dir():
        return False
    if (part / _STAGING_MARK).is_file():
        remove_tree(part)
        return True
    try:  # made but not marked yet, or emptied but not removed yet: nothing is lost
        part.rmdir()
    except OSError:
        return False
    return True


def _write_spare(change: _Change) -> bool:
    """Prepare the new tree in the spare, as the whole write does, when the spare's record
    is relative to the proven index and proven by its folders: then the spare differs
    from the output only in the files the record names, linked again here, and in the
    changed files, written."""
    out, proof, new = change.out, change.proof, change.new
    spare = spare_folder(out)
    if spare.is_symlink() or not spare.is_dir():
        return False
    record = outindex.load_spare_delta(out, spare, proof)
    if record is None:
        return False
    relinked = [rel for rel in record.differing if rel not in new and rel != MANIFEST]
    if proof.locate(relinked) is None:
        return False
    for rel in relinked:
        safe_relative(rel)
    forget_index(out)  # until the new tree's is written
    forget_spare(out)  # the spare changes now
    _spare(out)  # checked, and marked as being prepared
    top, touched = str(spare), {"."}
    for rel in record.differing:
        if rel not in new:  # not the output's file: link the output's (the manifest too)
            (spare / rel).unlink()
            os.link(f"{out}/{rel}", f"{top}/{rel}", follow_symlinks=False)
            touched.add(_parent(rel))
    made = {}
    for rel, data in new.items():
        (spare / rel).unlink(missing_ok=True)
        made[rel] = _new_file(f"{top}/{rel}", data)
        touched.add(_parent(rel))
    (spare / _STAGING_MARK).unlink()
    _exchange(spare, out)  # the old tree is the next spare
    seen = _retaken(out, record.seen, change.folders, touched)
    end = 4 * (proof.folder_count + 1)
    seen.extend(proof.seen[end : end + 4])  # the manifest: the output's, linked
    signature = outindex.store_index_delta(out, proof, change.tree, change.stamps(made), seen)
    if signature:
        old = {rel: change.located[rel][3].ino for rel in new}
        store_spare_delta(out, signature, old, proof.seen[:end])
    return True


def _write_reshaped(change: _Change) -> bool:
    """_write_spare() with files added and removed: the spare, proven by its record
    relative to the index to be the output but for the files the record names, gets
    those linked again, the removed files and the folders they leave empty taken out,
    the new folders made, the new and changed files and a new manifest written; then
    it is swapped in. The new index is the old one with those lines replaced, removed
    and added (outindex.store_index_delta()); the old tree, now the spare, is given
    the new tree's paths (_align_spare())."""
    out, proof, new, gone = change.out, change.proof, change.new, set(change.gone)
    spare = spare_folder(out)
    if spare.is_symlink() or not spare.is_dir():
        return False
    found = _spare_against(change, spare)
    if found is None:
        return False
    differing, spare_seen, align = found
    relinked = [r for r in differing if r not in new and r not in gone and r != MANIFEST]
    if proof.locate(relinked) is None:
        return False
    for rel in relinked:
        safe_relative(rel)
    paths = [*(rel for rel in proof.files if rel not in gone), *change.added]
    old_folders, folders = change.folders, sorted(folders_of(paths))
    forget_index(out)  # until the new tree's is written
    forget_spare(out)  # the spare changes now
    _spare(out)  # checked, and marked as being prepared
    top, touched = str(spare), {".", *align()}
    emptied, made_folders = set(old_folders) - set(folders), set(folders) - set(old_folders)
    # The files the record names: not the output's, so the output's are linked.
    touched |= _reshape(top, out, change.gone, (emptied, made_folders), relinked)
    made = {}
    for rel, data in new.items():
        if rel not in change.added:
            (spare / rel).unlink()
        made[rel] = _new_file(f"{top}/{rel}", data)
        touched.add(_parent(rel))
    (spare / MANIFEST).unlink()
    _new_file(f"{top}/{MANIFEST}", manifest_bytes(paths))
    (spare / _STAGING_MARK).unlink()
    _exchange(spare, out)  # the old tree is the next spare
    carried = _carried(spare_seen, old_folders, folders)  # the spare's, now the output's
    seen = _retaken(out, carried, folders, touched - emptied)
    seen.extend(fields_of(os.lstat(out / MANIFEST)))
    lines: dict[str, tuple[int, int, int, Stamp | None]] = {
        rel: (*change.located[rel][:3], None) for rel in gone
    }
    lines.update(change.stamps({r: s for r, s in made.items() if r not in change.added}))
    added = {rel: made[rel] for rel in change.added}
    signature = outindex.store_index_delta(out, proof, change.tree, lines, seen, added, folders)
    if signature:
        with contextlib.suppress(OSError, OutputFolderError):  # then the spare is listed
            _align_spare(change, folders, (emptied, made_folders), signature)
    return True


def _spare_against(
    change: _Change, spare: Path
) -> tuple[Mapping[str, int], array.array[int], Callable[[], set[str]]] | None:
    """The spare against the proven output, as its record says: the files where it
    holds another inode (path -> the spare's), the fields of "." and each of the
    output's folders in it, and what first gives it the output's paths and folders
    (returning the folders it changed). A record relative to the output's index needs
    nothing first; a whole one (after a whole write) has the spare's files removed,
    folders made and removed and the output's files linked where they differ; None
    when neither is proven, or they differ in more than a shortcut write changes."""
    out, proof = change.out, change.proof
    record = outindex.load_spare_delta(out, spare, proof)
    if record is not None:
        return record.differing, record.seen, set
    state = outindex.load_spare(out, spare)  # (a relative record was declined above)
    if state is None:
        return None
    first = 4 * (proof.folder_count + 2)
    live = dict(zip(proof.files, proof.seen[first + 3 :: 4], strict=True))
    live[MANIFEST] = proof.seen[first - 1]
    extra = [rel for rel in state.files if rel not in live]
    missing = [rel for rel in live if rel not in state.files]
    differing = {r: ino for r, ino in state.files.items() if r in live and live[r] != ino}
    if len(extra) + len(missing) + len(differing) > _DIFFERING_LIMIT:
        return None
    folders = change.folders
    emptied, made = set(state.folders) - set(folders), set(folders) - set(state.folders)
    seen = array.array("q", state.seen["."])
    for rel in folders:
        seen.extend(state.seen.get(rel, (0, 0, 0, 0)))  # made ones are taken anew, touched

    return differing, seen, lambda: _reshape(str(spare), out, extra, (emptied, made), missing)


def _reshape(
    top: str,
    out: Path,
    gone: Iterable[str],
    moved: tuple[set[str], set[str]],
    linked: Iterable[str],
) -> set[str]:
    """In the tree at `top` (the spare): remove the files `gone`, then the folders they
    emptied (`moved[0]`, deepest first), make the new folders (`moved[1]`, parents
    first), and make each of `linked` the output's file (a hard link). Returns the
    folders whose entries changed, as they are now."""
    emptied, made = moved
    touched = set()
    for rel in gone:
        os.unlink(f"{top}/{rel}")  # noqa: PTH108 - a string: the spare's entry, not followed
        touched.add(_parent(rel))
    for rel in sorted(emptied, key=lambda r: r.count("/"), reverse=True):
        os.rmdir(f"{top}/{rel}")  # noqa: PTH106 - empty: what it held was just removed
        touched.add(_parent(rel))
    for rel in sorted(made, key=lambda r: r.count("/")):
        os.mkdir(f"{top}/{rel}")  # noqa: PTH102 - its parent was made just before
        touched.update((_parent(rel), rel))
    for rel in linked:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{top}/{rel}")  # noqa: PTH108
        os.link(f"{out}/{rel}", f"{top}/{rel}", follow_symlinks=False)
        touched.add(_parent(rel))
    return touched - emptied


def _carried(seen: array.array[int], old: Sequence[str], new: Sequence[str]) -> array.array[int]:
    """The fields of "." and each of the `new` folders (sorted) as `seen` holds them
    for ".", then each of the `old` folders (sorted); zeros for a folder `old` does
    not have (taken anew)."""
    fields, at = array.array("q", seen[:4]), 0
    for rel in new:
        while at < len(old) and old[at] < rel:
            at += 1
        if at < len(old) and old[at] == rel:
            fields.extend(seen[4 * (at + 1) : 4 * (at + 2)])
        else:
            fields.extend((0, 0, 0, 0))
    return fields


def _align_spare(
    change: _Change,
    folders: Sequence[str],
    moved: tuple[set[str], set[str]],
    signature: str,
) -> None:
    """Give the spare, the old tree swapped out, the new tree's paths and folders: the
    removed files and the folders they emptied taken out, the new folders made, the
    added files and the manifest linked to the output's. It then differs from the
    output only in the files written anew over old ones, as a record relative to the
    new index (`signature`) says, and the next write of a few files, with or without
    paths added or removed, goes through it again."""
    out, proof, spare = change.out, change.proof, spare_folder(change.out)
    linked = (*change.added, MANIFEST)
    touched = {".", *_reshape(str(spare), out, change.gone, moved, linked)}
    carried = _carried(proof.seen, change.folders, folders)  # the old output's: the spare's
    seen = _retaken(spare, carried, folders, touched)
    written = {rel: change.located[rel][3].ino for rel in change.new if rel not in change.added}
    store_spare_delta(out, signature, written, seen)


def _retaken(
    out: Path, seen: array.array[int], folders: Sequence[str], touched: Iterable[str]
) -> array.array[int]:
    """The fields of ".", then each of `folders` (sorted): as `seen`, but those of the
    `touched` folders taken again now."""
    fresh = array.array("q", seen)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for rel in touched:
            at = 0 if rel == "." else 1 + bisect.bisect_left(folders, rel)
            if at and (at > len(folders) or folders[at - 1] != rel):
                raise OutputFolderError(f"{out / rel} is not a folder the index records")
            fresh[4 * at : 4 * at + 4] = array.array("q", fields_of(os.lstat(rel, dir_fd=fd)))
    finally:
        os.close(fd)
    return fresh


def _indexed_output(out: Path, proof: outindex.Proof | None) -> OutputFolder | None:
    """The output folder as its index describes it, when `proof` (what prove(out) just
    gave) shows that `out` holds what the index records and nothing else
    (outindex.indexed()); else None (then the folder is read: proving it again would
    sweep it again for nothing)."""
    index = None if proof is None else indexed(out, proof)
    if index is None:
        return None
    owned = {rel: stamp.digest for rel, stamp in index.stamps.items()}
    inodes = {rel: stamp.ino for rel, stamp in index.stamps.items()}
    manifest = manifest_bytes(owned)
    return OutputFolder(
        owned, (), index.folders, inodes, manifest, True, index.stamps, False, index.stats, index
    )


def _record_spare(
    out: Path,
    swapped: OutputFolder,
    stamps: Mapping[str, Stamp],
    folders: set[str],
    signature: str,
) -> None:
    """After a swap, record the spare: exactly the tree `swapped` was, when an index
    proved that tree (its files, folders, and their fields as verified). Relative to
    the new index (`stamps`, `folders`, `signature`) when the paths are the same."""
    if len(swapped.verified) != len(swapped.folders) + 2:
        return  # the folder was read, not proven: the spare is listed next time
    old_manifest = swapped.verified[-1][3]
    if signature and swapped.stamps.keys() == stamps.keys() and folders == set(swapped.folders):
        differing = {r: s.ino for r, s in swapped.stamps.items() if s.ino != stamps[r].ino}
        with contextlib.suppress(OSError):
            if os.lstat(out / MANIFEST).st_ino != old_manifest:
                differing[MANIFEST] = old_manifest
            fields = outindex.flat(swapped.verified[:-1])
            store_spare_delta(out, signature, differing, fields)
            return
    files = {rel: stamp.ino for rel, stamp in swapped.stamps.items()}
    files[MANIFEST] = old_manifest
    store_spare(out, files, swapped.folders, swapped.verified[:-1])


def _holds(current: OutputFolder, files: Mapping[str, bytes], tree: str) -> bool:
    """Whether `current` is exactly the tree `files` (paths only, digests from `tree`)."""
    # The files' paths iterated, looked up in the plain dict: no set of either is made,
    # and a lazy Mapping of files is never asked for one (which may read its bytes).
    if len(current.owned) != len(files) or any(rel not in current.owned for rel in files):
        return False
    if not is_manifest_of(current.manifest, current.owned):
        return False
    return tree_digest(current.owned) == tree


def _replace_folder(
    out: Path,
    files: Mapping[str, bytes],
    wanted: Mapping[str, bytes],
    current: OutputFolder,
    manifest: bytes,
) -> tuple[dict[str, Stamp], set[str], dict[str, Fields]]:
    """Swap in the new tree; returns the stamps of the files written anew, its folders
    and the fields of those folders the sync left as they were verified."""
    recorded = _recorded_spare(out, current.proven)
    forget_spare(out)  # the spare changes now: its record would be stale
    spare = _spare(out)
    made, folders, touched = _sync(spare, out, files, wanted, current, manifest, recorded)
    (spare / _STAGING_MARK).unlink()
    if current.exists:
        _exchange(spare, out)  # the old tree is the next spare
    else:
        os.rename(spare, out)  # noqa: PTH104 - atomic; fails if `out` appeared meanwhile
    seen = {} if recorded is None else recorded.seen
    return made, folders, {r: f for r, f in seen.items() if r not in touched and r != "."}


def _recorded_spare(out: Path, index: Index | None) -> SpareState | None:
    """The spare as recorded after the last swap, when its folders prove the record
    (a record relative to the output's index needs that index, as proven)."""
    spare = spare_folder(out)
    usable = spare.is_dir() and not spare.is_symlink()
    return load_spare(out, spare, index) if usable else None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer per folder at a time: two renders must not share a spare."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _spare(out: Path) -> Path:
    """The folder the new tree is prepared in: servegen's own, or made now."""
    spare = spare_folder(out)
    if spare.is_symlink() or (spare.exists() and not spare.is_dir()):
        raise OutputFolderError(f"{spare} is not servegen's spare folder; remove it")
    if spare.exists():
        marked = (spare / MANIFEST).is_file() or (spare / _STAGING_MARK).is_file()
        # Unmarked: the tree swapped out was empty, or written before manifests.
        visible = {p.name for p in spare.iterdir() if not p.name.startswith(".")}
        if not marked and visible - set(MANAGED):
            raise OutputFolderError(f"{spare} was not made by servegen; remove it")
    else:
        spare.mkdir()
    (spare / _STAGING_MARK).touch()  # until the swap: an interrupted run is seen as such
    return spare


def _sync(
    spare: Path,
    out: Path,
    files: Mapping[str, bytes],
    wanted: Mapping[str, bytes],
    current: OutputFolder,
    manifest: bytes,
    recorded: SpareState | None = None,
) -> tuple[dict[str, Stamp], set[str], set[str]]:
    """Make `spare` hold `wanted` (path -> digest; new bytes in `files`), the manifest
    and the foreign entries of `out`; returns the stamps of the files written anew,
    every folder the spare holds, and the folders whose entries it changed. `recorded`
    (the spare's proven record) spares listing it."""
    have = _scan(spare) if recorded is None else _from_record(recorded)
    targets: dict[str, bytes | None] = {  # None: carry over `out`'s entry as it is
        **{rel: None for rel in current.foreign if rel not in wanted},
        **wanted,
        MANIFEST: None,
        _STAGING_MARK: None,
    }
    folders = folders_of(targets)
    folders.update(rel for rel in current.folders if rel.split("/")[0] not in MANAGED)
    touched = {"."}  # folders where an entry is added or removed: their fields change
    # Plain strings below, not a Path per file: they were most of relinking a whole
    # output (about 6 of 8 s at 10,000 specs), and a fifth of a first write.
    top, source = str(spare), str(out)
    for rel in sorted(set(have.files) - set(targets), reverse=True):
        os.unlink(f"{top}/{rel}")  # noqa: PTH108
        touched.add(_parent(rel))
    for rel in sorted(set(have.folders) - folders, key=lambda r: r.count("/"), reverse=True):
        _remove_entry(spare / rel)
        touched.add(_parent(rel))
    made = set(have.folders) & folders
    for rel in sorted(folders - made, key=lambda r: r.count("/")):
        if rel in have.files:
            _remove_entry(spare / rel)  # a file where a folder must be
        os.mkdir(f"{top}/{rel}")  # noqa: PTH102 - its parent was made just before
        touched.add(_parent(rel))
    present = set(have.files) | set(have.folders)  # what the spare held; nothing else does
    new: dict[str, bytes] = {}  # path -> digest of the files written anew
    for rel, wanted_digest in targets.items():
        if rel == _STAGING_MARK:
            continue
        if rel == MANIFEST:
            _remove_entry(spare / rel)
            _new_file(f"{top}/{rel}", manifest)
            continue
        unchanged = wanted_digest is None or current.owned.get(rel) == wanted_digest
        if not (unchanged and _in_step(rel, have, current)):
            touched.add(_parent(rel))
            if rel in present:
                _remove_entry(spare / rel)
            if unchanged or wanted_digest is None:
                _link(f"{top}/{rel}", f"{source}/{rel}")
            else:
                new[rel] = wanted_digest
    return _new_files(top, files, new), folders, touched


# Below this many new files one process writes them all: a fork of a large build costs
# a few milliseconds, what a few hundred file creations cost.
_MIN_SPLIT = 4_096
# What a file written anew records beyond its digest: size, mtime_ns, inode.
_STAMP = struct.Struct("<qqQ")


def _new_files(top: str, files: Mapping[str, bytes], new: Mapping[str, bytes]) -> dict[str, Stamp]:
    """Create every path of `new` (with its digest) under `top`, holding its bytes from
    `files`; a large write's second half is made by a forked child meanwhile
    (workers.in_two: a cold render writes tens of thousands of files)."""
    rels = list(new)

    def create(part: Sequence[str]) -> bytes:
        made = bytearray()
        for rel in part:
            stamp = _new_file(f"{top}/{rel}", files[rel], new[rel], again=True)
            made += _STAMP.pack(stamp.size, stamp.mtime_ns, stamp.ino)
        return bytes(made)

    made = _STAMP.iter_unpack(workers.in_two(create, rels, _MIN_SPLIT))
    return {
        rel: Stamp(size, mtime_ns, ino, new[rel])
        for rel, (size, mtime_ns, ino) in zip(rels, made, strict=True)
    }


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0] or "."


def _from_record(recorded: SpareState) -> _Scan:
    """The listing the spare's record stands for (the staging mark was just made)."""
    files = {rel: (ino, False) for rel, ino in recorded.files.items()}
    files[_STAGING_MARK] = (0, False)
    return _Scan(files, tuple(sorted(recorded.folders)))


def _in_step(rel: str, have: _Scan, current: OutputFolder) -> bool:
    """Whether the spare's entry is already right: the very file `out` holds."""
    entry = have.files.get(rel)
    live = current.inodes.get(rel)
    return entry is not None and live is not None and entry == (live, False)


def _link(target: str, source: str) -> None:
    if stat.S_ISLNK(os.lstat(source).st_mode):  # a foreign symlink, carried over as it is
        Path(target).symlink_to(Path(source).readlink())
    else:
        os.link(source, target, follow_symlinks=False)  # same inode, mtime and bytes


def _remove_entry(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        remove_tree(path, markers=False)
    elif os.path.lexists(path):
        path.unlink()  # a FIFO or socket


def _new_file(
    target: str, data: bytes, known: bytes | None = None, *, again: bool = False
) -> Stamp:
    """Create `target` holding `data`; `known` is digest(data) when the caller has it.

    `again`: a file already there is replaced, not an error (a half a forked child
    wrote before it failed is written again here; see workers.in_two)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        if not again:
            raise
        os.unlink(target)  # noqa: PTH108 - a string, as above; never follows a symlink
        fd = os.open(target, flags, 0o644)
    try:
        view = memoryview(data)
        while view:  # unbuffered: one write call for a file of any size servegen makes
            view = view[os.write(fd, view) :]
        info = os.fstat(fd)
    finally:
        os.close(fd)
    return Stamp(info.st_size, info.st_mtime_ns, info.st_ino, known or digest(data))


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2), else two renames as a fallback."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if done == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
            raise OSError(code, os.strerror(code), str(b))
    # No atomic exchange on this system or file system: a short window without `b`.
    old = a.with_name(f"{a.name}.old")  # beside `a`: servegen's folder, not the user's
    os.rename(b, old)  # noqa: PTH104
    os.rename(a, b)  # noqa: PTH104
    os.rename(old, a)  # noqa: PTH104


def remove_tree(folder: Path, *, markers: bool = True) -> None:
    """Delete a folder servegen made, never following a symlink; its markers go last."""
    keep = (MANIFEST, _STAGING_MARK) if markers else ()
    for current, dirs, names in os.walk(folder, topdown=False, followlinks=False):
        here = Path(current)
        for name in names:
            if here != folder or name not in keep:
                (here / name).unlink()
        for name in dirs:
            path = here / name
            path.unlink() if path.is_symlink() else path.rmdir()
    for marker in keep:
        (folder / marker).unlink(missing_ok=True)
    folder.rmdir()


def stale_paths(
    out: Path,
    files: Mapping[str, bytes],
    scope: Callable[[str], bool] = everything,
    tree: str | None = None,
) -> list[str]:
    """Paths that `write_tree` would change, without writing anything (`tree` as there)."""
    proof = outindex.prove(out)
    if tree is not None and proof is not None and proof.tree == tree:
        return []
    current = _indexed_output(out, proof) or read_output(out)
    del proof  # (megabytes at 10,000 specs)
    if tree is not None and _holds(current, files, tree):
        return []
    kept = [rel for rel in current.owned if rel not in files and not scope(rel)]
    changed = [rel for rel, d in digests_of(files).items() if current.owned.get(rel) != d]
    gone = [rel for rel in current.owned if rel not in files and scope(rel)]
    if current.manifest != manifest_bytes([*kept, *files]):
        changed.append(MANIFEST)
    return sorted(changed + gone)


def atomic_write(target: Path, data: bytes, *, folder_exists: bool = False) -> None:
    """Replace one file (a spec `promote` edits) in one step: readers see old or new bytes.

    The output tree is written by `write_tree`; this is for single files outside it.
    """
    if not folder_exists:
        target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)  # noqa: PTH105 - atomic on POSIX
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_inside(base: Path, rel: str, data: bytes) -> None:
    """atomic_write() of `base`/`rel`, never through a symlink: a folder on the way that
    is one is refused (it could lead anywhere), a file that is one is replaced.

    For the files servegen writes into a repository outside its output tree (`schema`,
    `init`), whose folders the repository's author may have made links.
    """
    folder = base
    *folders, name = rel.split("/")  # servegen's own names: no '..', no empty part
    for part in folders:
        folder = folder / part
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_symlink() or not folder.is_dir():
                what = "a symbolic link" if folder.is_symlink() else "not a folder"
                raise OutputFolderError(f"refusing to write {rel}: {folder} is {what}") from None
    atomic_write(folder / name, data, folder_exists=True)
