"""Step 5: write an output tree to disk, all at once or not at all.

The output folder is replaced as a whole: the new tree is built in a sibling folder and
swapped in with one `renameat2(RENAME_EXCHANGE)`, so a reader (or `kubectl kustomize`)
sees exactly the old or exactly the new tree, even when servegen is killed at any
moment. Files whose bytes did not change are hard-linked into the new tree rather than
rewritten, and nothing changes at all when the output is already up to date.

servegen only ever deletes what it wrote itself: the output folder carries a manifest
(`.servegen-manifest`) listing those files. Anything else found there is carried over
into the new tree untouched. A non-empty folder without a manifest is refused, unless it
is an output written before manifests existed (only servegen's folders in it). Symlinks
inside servegen's folders are refused, never followed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from generator.errors import ServegenError

# Top-level entries of the output folder that servegen owns.
MANAGED = ("clusters", "models", "endpoints", "flux", "README.md")
MANIFEST = ".servegen-manifest"
MANIFEST_HEAD = b"# Files servegen wrote in this folder; it deletes only these. Do not edit.\n"
_STAGING_MARK = ".servegen-staging"
_SWAP = re.compile(r"\.(?P<name>.+)\.servegen-swap-(?P<pid>[0-9]+)")
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
    parts = Path(path).parts
    if (
        Path(path).is_absolute()
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
    """What is on disk: servegen's files (bytes) and everything else (left alone)."""

    owned: dict[str, bytes]
    foreign: tuple[str, ...]  # files and symlinks servegen did not write
    folders: tuple[str, ...]  # every folder, so empty foreign ones are carried over too
    manifest: bytes | None
    exists: bool


def read_output(out: Path, known: Mapping[str, bytes] | None = None) -> OutputFolder:
    """Read the output folder without following a single symlink; refuse foreign folders.

    `known` is what the caller last wrote there (the watcher): those bytes are trusted
    instead of read again.
    """
    if out.is_symlink():
        raise OutputFolderError(f"{out} is a symlink; servegen never writes through symlinks")
    if not out.exists():
        return OutputFolder({}, (), (), None, exists=False)
    if not out.is_dir():
        raise OutputFolderError(f"{out} exists and is not a folder")
    entries, folders = _walk(out)
    manifest = _read_regular(out / MANIFEST) if MANIFEST in entries else None
    listed = _listed(manifest) if manifest is not None else _legacy_owned(out, entries)
    owned: dict[str, bytes] = {}
    foreign = []
    for rel, is_link in sorted(entries.items()):
        if rel == MANIFEST:
            continue
        managed = rel.split("/")[0] in MANAGED
        if is_link and (managed or rel in listed):
            raise OutputFolderError(
                f"{out / rel} is a symlink inside servegen's output; servegen never follows "
                "symlinks there: remove it and render again"
            )
        if rel in listed and not is_link:
            cached = known.get(rel) if known is not None else None
            owned[rel] = cached if cached is not None else _read_regular(out / rel)
        else:
            foreign.append(rel)
    return OutputFolder(owned, tuple(foreign), folders, manifest, exists=True)


def _walk(out: Path) -> tuple[dict[str, bool], tuple[str, ...]]:
    """Files and symlinks under `out` (path -> is a symlink), and folders; no link followed."""
    found: dict[str, bool] = {}
    folders: list[str] = []

    def fail(exc: OSError) -> None:
        raise OutputFolderError(f"cannot read the output folder {out}: {exc.strerror or exc}")

    for current, dirs, names in os.walk(out, onerror=fail, followlinks=False):
        here = Path(current)
        for name in [*dirs, *names]:
            path = here / name
            if path.is_symlink():
                found[path.relative_to(out).as_posix()] = True
            elif name in names:
                found[path.relative_to(out).as_posix()] = False
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        folders.extend((here / d).relative_to(out).as_posix() for d in dirs)
    return found, tuple(folders)


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


def _legacy_owned(out: Path, entries: Mapping[str, bool]) -> set[str]:
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


# --------------------------------------------------------------------------- writing


def write_tree(
    out: Path,
    files: Mapping[str, bytes],
    scope: Callable[[str], bool] = lambda _: True,
    known: Mapping[str, bytes] | None = None,
) -> WriteStats:
    """Make `out` hold `files`; servegen's files outside `scope` are kept, stale ones removed.

    `known` is what the caller last wrote to `out` (the watcher), saving a re-read.
    """
    for rel in files:
        safe_relative(rel)
    current = read_output(out, known)
    kept = {rel: data for rel, data in current.owned.items() if rel not in files and not scope(rel)}
    wanted = {**kept, **files}
    written = tuple(sorted(rel for rel, data in files.items() if current.owned.get(rel) != data))
    removed = tuple(sorted(set(current.owned) - set(wanted)))
    manifest = manifest_bytes(wanted)
    if written or removed or manifest != current.manifest or not current.exists:
        _replace_folder(out, wanted, current, manifest)
    else:
        _clean_leftovers(out)
    return WriteStats(written, len(files) - len(written), removed)


def _replace_folder(
    out: Path, wanted: Mapping[str, bytes], current: OutputFolder, manifest: bytes
) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clean_leftovers(out)
        stage = out.parent / f".{out.name}.servegen-swap-{os.getpid()}"
        stage.mkdir()
        (stage / _STAGING_MARK).touch()
        _fill(stage, out, wanted, current, manifest)
        (stage / _STAGING_MARK).unlink()
        if current.exists:
            _exchange(stage, out)  # stage now holds the old tree
            remove_tree(stage)
        else:
            os.rename(stage, out)  # noqa: PTH104 - atomic; fails if `out` appeared meanwhile
    except OSError as exc:
        raise CannotWriteError(f"cannot write the output folder {out}: {exc}") from exc


def _fill(
    stage: Path, out: Path, wanted: Mapping[str, bytes], current: OutputFolder, manifest: bytes
) -> None:
    folders: set[Path] = {stage}
    for rel in current.folders:
        if rel.split("/")[0] not in MANAGED:
            _mkdirs(stage / rel, folders)
    for rel in current.foreign:  # carried over as they are: files linked, links copied
        if rel in wanted:
            continue  # servegen's layout claims this path: the new file replaces it
        source, target = out / rel, stage / rel
        _mkdirs(target.parent, folders)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            os.link(source, target, follow_symlinks=False)
    for rel, data in wanted.items():
        target = stage / rel
        _mkdirs(target.parent, folders)
        if current.owned.get(rel) == data:
            os.link(out / rel, target, follow_symlinks=False)  # unchanged: same inode, mtime
        else:
            _new_file(target, data)
    _new_file(stage / MANIFEST, manifest)


def _mkdirs(folder: Path, made: set[Path]) -> None:
    if folder not in made:
        folder.mkdir(parents=True, exist_ok=True)
        made.update((folder, *folder.parents))


def _new_file(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


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
    old = b.with_name(f"{a.name}.old")
    os.rename(b, old)  # noqa: PTH104
    os.rename(a, b)  # noqa: PTH104
    os.rename(old, a)  # noqa: PTH104


def remove_tree(folder: Path) -> None:
    """Delete a folder servegen made, never following a symlink; its markers go last."""
    for current, dirs, names in os.walk(folder, topdown=False, followlinks=False):
        here = Path(current)
        for name in names:
            if here != folder or name not in (MANIFEST, _STAGING_MARK):
                (here / name).unlink()
        for name in dirs:
            path = here / name
            path.unlink() if path.is_symlink() else path.rmdir()
    for marker in (MANIFEST, _STAGING_MARK):
        (folder / marker).unlink(missing_ok=True)
    folder.rmdir()


def _clean_leftovers(out: Path) -> None:
    """Remove swap folders a killed run left beside `out` (only ours, only dead runs')."""
    with contextlib.suppress(OSError):
        for entry in out.parent.iterdir():
            match = _SWAP.fullmatch(entry.name)
            if not match or match["name"] != out.name or entry.is_symlink() or not entry.is_dir():
                continue
            marked = (entry / _STAGING_MARK).is_file() or (entry / MANIFEST).is_file()
            if marked and not _alive(int(match["pid"])):
                remove_tree(entry)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a previous run of ours with a recycled pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_paths(
    out: Path, files: Mapping[str, bytes], scope: Callable[[str], bool] = lambda _: True
) -> list[str]:
    """Paths that `write_tree` would change, without writing anything."""
    current = read_output(out)
    kept = [rel for rel in current.owned if rel not in files and not scope(rel)]
    changed = [rel for rel, data in files.items() if current.owned.get(rel) != data]
    gone = [rel for rel in current.owned if rel not in files and scope(rel)]
    if current.manifest != manifest_bytes([*kept, *files]):
        changed.append(MANIFEST)
    return sorted(changed + gone)
