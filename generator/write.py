"""Step 5: write an output tree to disk, touching only what changed.

Unchanged files are not rewritten (editors, watchers and `git status` stay quiet), each
changed file is replaced atomically (temp file + rename), and files servegen no longer
renders are removed, but only inside the folders servegen owns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from generator.errors import ServegenError

# Top-level entries of the output folder that servegen owns; anything else is left alone.
MANAGED = ("clusters", "models", "endpoints", "flux", "rbac", "README.md")


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
    if Path(path).is_absolute() or ".." in parts or not parts or parts[0] not in MANAGED:
        raise ServegenError(f"refusing to write {path!r} outside the managed output folders")
    return path


def write_tree(
    out: Path, files: Mapping[str, bytes], scope: Callable[[str], bool] = lambda _: True
) -> WriteStats:
    """Write `files` under `out`; stale files for which `scope` holds are removed."""
    existing = existing_files(out)  # one walk, instead of a stat per file
    folders: set[Path] = set()
    written, unchanged = [], 0
    for rel, data in files.items():
        target = out / safe_relative(rel)
        if rel in existing and not target.is_symlink() and target.read_bytes() == data:
            unchanged += 1
            continue
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        atomic_write(target, data, folder_exists=True)
        written.append(rel)
    removed = _remove_stale(out, existing - set(files), scope)
    return WriteStats(tuple(written), unchanged, tuple(removed))


def atomic_write(target: Path, data: bytes, *, folder_exists: bool = False) -> None:
    """Replace `target` with `data` in one step: readers see the old or the new bytes."""
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


def existing_files(out: Path) -> set[str]:
    found = set()
    for entry in MANAGED:
        top = out / entry
        if top.is_file():
            found.add(entry)
        elif top.is_dir():
            for current, _dirs, names in os.walk(top):
                for name in names:
                    found.add((Path(current) / name).relative_to(out).as_posix())
    return found


def _remove_stale(out: Path, stale: set[str], scope: Callable[[str], bool]) -> list[str]:
    removed = sorted(rel for rel in stale if scope(rel))
    for rel in removed:
        (out / rel).unlink()
    # Folders the removals emptied go too, deepest first, up to the output folder.
    folders = {parent for rel in removed for parent in (out / rel).parents if out in parent.parents}
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def stale_paths(out: Path, files: Mapping[str, bytes]) -> list[str]:
    """Paths that `write_tree` would change, without writing anything."""
    changed = [
        rel
        for rel, data in files.items()
        if not (out / rel).is_file() or (out / rel).read_bytes() != data
    ]
    return sorted(changed + sorted(existing_files(out) - set(files)))
