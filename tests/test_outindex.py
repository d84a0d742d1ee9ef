"""The output index's whole-folder check: a stat per folder and file, compared in bulk,
and every change that matters still seen."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from generator import outindex, workers
from generator.outindex import digest, holds, index_path, indexed, load_index, tree_digest
from generator.write import MANIFEST, OutputFolderError, stale_paths, write_tree
from tests.writeutil import counted_forks

FILES = {
    "models/a/base/x.yaml": b"a: 1\n",
    "models/a/overlays/dev/kustomization.yaml": b"k: a\n",
    "models/b/base/y.yaml": b"b: 1\n",
    "clusters/dev/kustomization.yaml": b"k: 1\n",
    "README.md": b"# index\n",
}
TREE = tree_digest({path: digest(data) for path, data in FILES.items()})


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    write_tree(folder, FILES)
    time.sleep(0.02)  # a later timestamp granule than the index: nothing below is racy
    return folder


def test_a_written_folder_holds_its_tree(out: Path) -> None:
    assert holds(out, TREE)
    other = tree_digest({**{p: digest(d) for p, d in FILES.items()}, "README.md": b"x"})
    assert not holds(out, other)


def test_the_index_stamps_what_it_records_in_bulk(out: Path) -> None:
    index = load_index(out)
    assert index is not None and index.tree == TREE
    assert set(index.stamps) == set(FILES)


def _edit(out: Path) -> None:
    path = out / "README.md"
    path.write_bytes(path.read_bytes().upper())  # same size, later mtime


def _plant_symlink(out: Path) -> None:
    (out / "models/a/base/link.yaml").symlink_to("x.yaml")


def _plant_file(out: Path) -> None:
    (out / "models/b/notes.txt").write_text("mine\n")


def _remove(out: Path) -> None:
    (out / "models/b/base/y.yaml").unlink()


def _edit_manifest(out: Path) -> None:
    manifest = out / MANIFEST
    manifest.write_bytes(manifest.read_bytes() + b"models/c/base/z.yaml\n")


def _folder_moved_and_linked(out: Path) -> None:
    """The files keep their inodes, sizes and mtimes; only a folder became a symlink."""
    away = out.parent / "elsewhere"
    (out / "models/a").rename(away)
    (out / "models/a").symlink_to(away)


def _chmod_folder(out: Path) -> None:
    (out / "models").chmod(0o700)  # its mode is not what the check compares


@pytest.mark.parametrize(
    ("change", "still_holds"),
    [
        (_edit, False),
        (_plant_symlink, False),
        (_plant_file, False),
        (_remove, False),
        (_edit_manifest, False),
        (_folder_moved_and_linked, False),
        (_chmod_folder, True),
    ],
    ids=["edit", "symlink", "foreign file", "removed", "manifest", "linked folder", "chmod"],
)
def test_what_changes_the_folder_is_seen(
    out: Path, change: Callable[[Path], None], still_holds: bool
) -> None:
    change(out)
    assert holds(out, TREE) == still_holds


@pytest.mark.parametrize(
    ("change", "still_holds"),
    [(_edit, False), (_plant_file, False), (_remove, False), (_chmod_folder, True)],
    ids=["edit", "foreign file", "removed", "chmod"],
)
def test_what_changes_the_folder_is_seen_with_the_stat_sweep_split_in_two(
    out: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path], None], still_holds: bool
) -> None:
    """A large output's lstat sweep is split with a forked child (workers.in_two); what
    either half finds decides, as in one process."""
    monkeypatch.setattr(workers, "MIN_SWEEP", 2)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")
    forks = counted_forks(monkeypatch)
    assert holds(out, TREE)
    change(out)
    assert holds(out, TREE) == still_holds
    assert len(forks) == 2


@pytest.mark.parametrize("change", [_plant_symlink, _folder_moved_and_linked])
def test_a_symlink_in_an_up_to_date_output_is_still_refused(
    out: Path, change: Callable[[Path], None]
) -> None:
    """The bulk check declines, so the file-by-file look refuses the link as before."""
    change(out)
    with pytest.raises(OutputFolderError, match="symlink"):
        write_tree(out, FILES, tree=TREE)
    with pytest.raises(OutputFolderError, match="symlink"):
        stale_paths(out, FILES, tree=TREE)


def test_a_foreign_file_in_an_up_to_date_output_is_kept(out: Path) -> None:
    _plant_file(out)
    stats = write_tree(out, FILES, tree=TREE)
    assert not stats.changed
    assert (out / "models/b/notes.txt").read_text() == "mine\n"
    assert holds(out, TREE)  # the index describes the folder as it is now


def test_an_edit_is_repaired_and_the_next_look_holds_again(out: Path) -> None:
    _edit(out)
    assert stale_paths(out, FILES, tree=TREE) == ["README.md"]
    assert write_tree(out, FILES, tree=TREE).written == ("README.md",)
    time.sleep(0.02)
    assert holds(out, TREE)


def test_entries_no_older_than_the_index_are_racy(out: Path) -> None:
    """git's racy rule: a same-size edit in the index's own timestamp granule keeps every
    stat field, so an index not clearly newer than its entries proves nothing."""
    index = index_path(out)
    assert index is not None
    newest = max(p.lstat().st_mtime_ns for p in [out, *out.rglob("*")])
    os.utime(index, ns=(newest, newest))
    assert not holds(out, TREE)


def test_the_index_is_newer_than_what_it_records(tmp_path: Path) -> None:
    """Written right after the files, it waits a granule if need be: the next look holds."""
    out = tmp_path / "out"
    write_tree(out, FILES)
    assert holds(out, TREE)


def test_a_damaged_or_missing_index_proves_nothing(out: Path) -> None:
    index = index_path(out)
    assert index is not None
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    assert not holds(out, TREE)
    index.unlink()
    assert not holds(out, TREE)
    assert stale_paths(out, FILES, tree=TREE) == []  # looked at file by file instead


def test_a_replaced_output_folder_is_not_taken_for_the_old_one(out: Path) -> None:
    copy = out.parent / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(out)
    copy.rename(out)  # same paths and bytes, other inodes
    assert not holds(out, TREE)
    assert stale_paths(out, FILES, tree=TREE) == []


# --- a write that changes files: the folder is taken from the index when it proves it ------


def test_a_write_takes_the_folder_from_a_proven_index(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generator import write

    def unread(*_: object) -> object:
        raise AssertionError("the folder was read")

    monkeypatch.setattr(write, "read_output", unread)
    changed = {**FILES, "models/b/base/y.yaml": b"b: 2\n"}
    assert write_tree(out, changed).written == ("models/b/base/y.yaml",)
    assert (out / "models/b/base/y.yaml").read_bytes() == b"b: 2\n"


@pytest.mark.parametrize("change", [_edit, _plant_file], ids=["hand edit", "foreign file"])
def test_a_write_reads_a_folder_its_index_cannot_vouch_for(
    out: Path, change: Callable[[Path], None]
) -> None:
    """A hand edit elsewhere is repaired along with the change; a foreign file is kept."""
    change(out)
    changed = {**FILES, "models/b/base/y.yaml": b"b: 2\n"}
    stats = write_tree(out, changed)
    assert "models/b/base/y.yaml" in stats.written
    for path, data in changed.items():
        assert (out / path).read_bytes() == data
    assert (out / "models/b/notes.txt").exists() == (change is _plant_file)


def test_the_index_of_a_removed_output_folder_is_not_read(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.rmtree(out)
    monkeypatch.setattr(outindex, "_read", lambda *_: pytest.fail("index read"))
    assert indexed(out) is None and not holds(out, TREE)
    write_tree(out, FILES)
    assert {p: (out / p).read_bytes() for p in FILES} == FILES


class _KnownDigests(dict[str, bytes]):
    """Files that know their digests (outindex.Digested), and count who asks."""

    asked = 0

    def digests(self) -> dict[str, bytes]:
        self.asked += 1
        return {rel: digest(data) for rel, data in self.items()}


@pytest.mark.parametrize("known", [False, True], ids=["bytes", "digested"])
def test_a_folders_digests_are_of_its_files_alone(known: bool) -> None:
    files = {"flux/dev/a.yaml": b"a", "flux/dev/b.yaml": b"b", "fluxes/c": b"c", "models/x": b"x"}
    given = _KnownDigests(files) if known else files
    assert outindex.digests_under(given, "flux/") == {
        "flux/dev/a.yaml": digest(b"a"),
        "flux/dev/b.yaml": digest(b"b"),
    }
    assert outindex.digests_under(given, "none/") == {}
    assert not known or (isinstance(given, _KnownDigests) and given.asked == 2)
