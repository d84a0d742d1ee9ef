"""Step 5: write an output tree to disk, touching only what changed.

Unchanged files are not rewritten (editors, watchers and `git status` stay quiet), each
changed file is replaced atomically (temp file + rename), and files servegen no longer
renders are removed, but only inside the folders servegen owns.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from generator.errors import ServegenError

# Top-level entries of the output folder that servegen owns; anything else is left alone.
MANAGED = ("clusters", "models", "endpoints", "flux", "README.md")


@dataclass(frozen=True)
class WriteStats:
    written: tuple[str, ...]
    unchanged: int
    removed: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def _safe_relative(path: str) -> str:
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts or not parts or parts[0] not in MANAGED:
        raise ServegenError(f"refusing to write {path!r} outside the managed output folders")
    return path


def write_tree(
    out: Path, files: Mapping[str, bytes], scope: Callable[[str], bool] = lambda _: True
) -> WriteStats:
    """Write `files` under `out`; stale files for which `scope` holds are removed."""
    written, unchanged = [], 0
    for rel, data in files.items():
        target = out / _safe_relative(rel)
        if target.is_file() and not target.is_symlink() and target.read_bytes() == data:
            unchanged += 1
            continue
        _atomic_write(target, data)
        written.append(rel)
    removed = _remove_stale(out, files, scope)
    return WriteStats(tuple(written), unchanged, tuple(removed))


def _atomic_write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # noqa: PTH101 - mkstemp creates 0600 files
        os.replace(tmp, target)  # noqa: PTH105 - atomic on POSIX
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


def _remove_stale(out: Path, files: Mapping[str, bytes], scope: Callable[[str], bool]) -> list[str]:
    stale = sorted(rel for rel in existing_files(out) - set(files) if scope(rel))
    for rel in stale:
        (out / rel).unlink()
    for entry in MANAGED:
        top = out / entry
        if top.is_dir():
            for current, _dirs, _names in sorted(os.walk(top), reverse=True):
                if not any(Path(current).iterdir()):
                    Path(current).rmdir()
    return stale


def stale_paths(out: Path, files: Mapping[str, bytes]) -> list[str]:
    """Paths that `write_tree` would change, without writing anything."""
    changed = [
        rel
        for rel, data in files.items()
        if not (out / rel).is_file() or (out / rel).read_bytes() != data
    ]
    return sorted(changed + sorted(existing_files(out) - set(files)))
