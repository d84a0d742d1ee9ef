"""A write of a few changed files (outindex.Delta): nothing done per unchanged file,
and every change to the output or the spare still seen."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from generator import outindex
from generator import write as write_module
from generator.outindex import digest, holds, index_path, load_index, spare_record_path, tree_digest
from generator.pipeline import build
from generator.write import (
    MANIFEST,
    OutputFolderError,
    manifest_bytes,
    part_folder,
    spare_folder,
    write_tree,
)
from tests.writeutil import FINISHED_BESIDE, left_beside, run_writer, snapshot, spied_scans

FIRST = {
    "models/a/base/x.yaml": b"a: 1\n",
    "models/a/overlays/dev/p.yaml": b"p: 1\n",
    "models/a/overlays/prod/q.yaml": b"q: 1\n",
    "models/b/base/y.yaml": b"b: 1\n",
    "clusters/dev/kustomization.yaml": b"k: 1\n",
    "README.md": b"# index\n",
}
SECOND = {**FIRST, "README.md": b"# second\n"}


def tree_of(files: Mapping[str, bytes]) -> str:
    return tree_digest({rel: digest(data) for rel, data in files.items()})


class Changed(dict[str, bytes]):
    """Files made from another tree by replacing a few (what a build from the latest
    stored build hands the writer)."""

    def __init__(self, base: Mapping[str, bytes], changed: Mapping[str, bytes]) -> None:
        super().__init__({**base, **changed})
        self._base, self._changed = tree_of(base), dict(changed)

    def changes(self) -> tuple[str, Mapping[str, bytes]]:
        return self._base, self._changed

    def digests(self) -> Mapping[str, bytes]:
        return {rel: digest(data) for rel, data in self.items()}


def write_changed(out: Path, base: Mapping[str, bytes], changed: Mapping[str, bytes]) -> Changed:
    files = Changed(base, changed)
    write_tree(out, files, tree=tree_of(files))
    return files


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output written twice (the first tree is now the spare, recorded relative to
    the output's index), in an earlier timestamp granule than what a test does next."""
    folder = tmp_path / "out"
    write_tree(folder, FIRST)
    write_tree(folder, SECOND)
    time.sleep(0.02)
    return folder


@pytest.fixture
def whole_write(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every whole write (the folder swapped after a sync of every path)."""
    calls: list[Path] = []
    real = write_module._replace_folder

    def spy(out: Path, *args: object, **kwargs: object) -> object:
        calls.append(out)
        return real(out, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(write_module, "_replace_folder", spy)
    return calls


def expected(files: Mapping[str, bytes]) -> dict[str, bytes]:
    return {**files, MANIFEST: manifest_bytes(files)}


def assert_indexed_exactly(out: Path, files: Mapping[str, bytes]) -> None:
    """The index records each file as it is (stat and digest of its bytes) and its
    signature is that of every folder and file now: the next look proves the folder."""
    index = load_index(out)
    assert index is not None and index.tree == tree_of(files)
    for rel, data in files.items():
        info = os.lstat(out / rel)
        assert index.stamps[rel] == (info.st_size, info.st_mtime_ns, info.st_ino, digest(data))
    assert outindex.prove(out) is not None
    assert holds(out, tree_of(files))


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each shortcut write went: "within" one folder, or through the "spare"
    (with files added or removed: "reshaped")."""
    taken: list[str] = []
    shortcuts = ("_write_within", "within"), ("_write_spare", "spare")
    for name, label in (*shortcuts, ("_write_reshaped", "reshaped")):
        real = getattr(write_module, name)

        def spy(change: object, real: Callable[[object], bool] = real, label: str = label) -> bool:
            done = real(change)
            taken.append(label if done else f"no {label}")
            return done

        monkeypatch.setattr(write_module, name, spy)
    return taken


def test_a_few_changed_files_are_written_without_the_whole_write(
    out: Path, whole_write: list[Path], routes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Files in one folder below the output's: that folder alone is swapped.
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    assert (whole_write, routes) == ([], ["within"])
    assert snapshot(out) == expected(third)
    assert_indexed_exactly(out, third)
    assert snapshot(spare_folder(out)) == expected(FIRST)  # left alone
    # Files in no common folder: through the spare, whose record was tied to the index
    # the last write made; and again within one folder.
    fourth = write_changed(out, third, {"models/b/base/y.yaml": b"b: 4\n", "README.md": b"# 4\n"})
    fifth = write_changed(out, fourth, {"models/a/overlays/dev/p.yaml": b"p: 5\n"})
    assert (whole_write, routes) == ([], ["within", "no within", "spare", "within"])
    assert snapshot(out) == expected(fifth)
    assert_indexed_exactly(out, fifth)
    assert snapshot(spare_folder(out)) == expected(third)
    sixth = write_changed(out, fifth, {"README.md": b"# 6\n"})
    assert routes[-1] == "spare" and whole_write == []
    assert snapshot(out) == expected(sixth)
    assert not part_folder(out).exists()
    # A whole write after them still uses the spare's record: nothing is listed.
    scanned = spied_scans(monkeypatch)
    seventh = {**sixth, "models/a/base/x.yaml": b"a: 7\n"}
    assert write_tree(out, seventh).written == ("models/a/base/x.yaml",)
    assert whole_write == [out]
    assert scanned == []
    assert snapshot(out) == expected(seventh)


def test_what_the_write_reports(out: Path) -> None:
    files = Changed(SECOND, {"README.md": b"# third\n", "models/b/base/y.yaml": b"b: 1\n"})
    stats = write_tree(out, files, tree=tree_of(files))
    assert stats.written == ("README.md",)  # the other file's bytes are what they were
    assert stats.unchanged == len(files) - 1 and stats.removed == ()


def test_unchanged_files_stay_one_inode_with_the_spare(out: Path) -> None:
    before = {rel: os.lstat(out / rel).st_ino for rel in SECOND}
    write_changed(out, SECOND, {"README.md": b"# third\n"})
    for rel in SECOND:
        if rel != "README.md":
            assert os.lstat(out / rel).st_ino == before[rel]
            assert os.lstat(spare_folder(out) / rel).st_ino == before[rel]
    assert os.lstat(out / "README.md").st_ino != before["README.md"]


# --- what happened to the output since its index was written: seen, as by a whole write --


def _same_size_edit(out: Path) -> None:
    target = out / "models/a/base/x.yaml"
    info = target.stat()
    with target.open("r+b") as handle:  # in place: same inode and size, a later mtime
        handle.write(b"z")
    assert target.stat().st_ino == info.st_ino


def _foreign_file(out: Path) -> None:
    (out / "models/b/base/notes.txt").write_bytes(b"mine\n")


def _removed(out: Path) -> None:
    (out / "models/b/base/y.yaml").unlink()


def _replaced(out: Path) -> None:
    (out / "models/b/base/new").write_bytes(b"b: 1\n")
    (out / "models/b/base/new").replace(out / "models/b/base/y.yaml")


@pytest.mark.parametrize("change", [_same_size_edit, _foreign_file, _removed, _replaced])
def test_a_change_to_the_output_is_seen(
    out: Path, whole_write: list[Path], change: Callable[[Path], None]
) -> None:
    change(out)
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    assert whole_write == [out]  # the index proved nothing: the whole write did it
    foreign = {"models/b/base/notes.txt": b"mine\n"} if change is _foreign_file else {}
    assert snapshot(out) == {**expected(third), **foreign}


@pytest.mark.parametrize("where", ["models/a/overlays/dev/link", "models/b/base/y.yaml"])
def test_a_symlink_in_the_output_is_refused(out: Path, where: str) -> None:
    (out / where).unlink(missing_ok=True)
    (out / where).symlink_to("/etc/passwd")
    with pytest.raises(OutputFolderError, match="symlink"):
        write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})


def test_a_folder_moved_away_and_linked_back_is_refused(out: Path, tmp_path: Path) -> None:
    (out / "models/a").rename(tmp_path / "elsewhere")
    (out / "models/a").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputFolderError, match="symlink"):
        write_changed(out, SECOND, {"models/b/base/y.yaml": b"b: 3\n"})
    assert (tmp_path / "elsewhere/base/x.yaml").read_bytes() == b"a: 1\n"


# --- what happened to the spare: never reaches the output -------------------------------


def _stray_file(spare: Path) -> None:
    (spare / "models/a/overlays/prod/stray.yaml").write_bytes(b"stray: 1\n")


def _stray_in_root(spare: Path) -> None:
    (spare / "stray.yaml").write_bytes(b"stray: 1\n")


def _replaced_in_spare(spare: Path) -> None:
    (spare / "models/a/overlays/prod/new").write_bytes(b"q: 9\n")
    (spare / "models/a/overlays/prod/new").replace(spare / "models/a/overlays/prod/q.yaml")


def _symlinked_file(spare: Path) -> None:
    (spare / "models/b/base/y.yaml").unlink()
    (spare / "models/b/base/y.yaml").symlink_to("/etc/passwd")


def _symlinked_folder(spare: Path) -> None:
    shutil.rmtree(spare / "models/a/overlays/prod")
    (spare / "models/a/overlays/prod").symlink_to(spare.parent / "victim")


def _remade_spare(spare: Path) -> None:
    copy = spare.with_name("copy")
    shutil.copytree(spare, copy, symlinks=True)
    shutil.rmtree(spare)
    copy.rename(spare)  # the same names and bytes, other inodes


def _removed_spare(spare: Path) -> None:
    shutil.rmtree(spare)


@pytest.mark.parametrize(
    "edit",
    [
        _stray_file,
        _stray_in_root,
        _replaced_in_spare,
        _symlinked_file,
        _symlinked_folder,
        _remade_spare,
        _removed_spare,
    ],
)
def test_a_change_to_the_spare_never_reaches_the_output(
    out: Path, tmp_path: Path, whole_write: list[Path], edit: Callable[[Path], None]
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_bytes(b"keep\n")
    edit(spare_folder(out))
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert whole_write == [out]
    assert snapshot(out) == expected(third)
    assert not any(path.is_symlink() for path in out.rglob("*"))
    assert snapshot(victim) == {"keep.txt": b"keep\n"}


def test_an_edit_in_place_through_the_spare_is_an_edit_of_the_output(out: Path) -> None:
    shared = spare_folder(out) / "models/a/overlays/prod/q.yaml"
    assert shared.stat().st_ino == (out / "models/a/overlays/prod/q.yaml").stat().st_ino
    with shared.open("r+b") as handle:
        handle.write(b"z")
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert snapshot(out) == expected(third)


# --- when the shortcut does not apply --------------------------------------------------


def test_files_from_another_tree_than_the_output_take_the_whole_write(
    out: Path, whole_write: list[Path]
) -> None:
    third = write_changed(out, FIRST, {"models/b/base/y.yaml": b"b: 3\n"})  # not SECOND
    assert whole_write == [out]
    assert snapshot(out) == expected(third)


class Digests(dict[str, bytes]):
    """Files that know their digests and nothing of the tree they were made from (a
    stored build of another edit, restored whole)."""

    def digests(self) -> Mapping[str, bytes]:
        return {rel: digest(data) for rel, data in self.items()}


def test_files_that_know_their_digests_take_the_shortcut_from_any_tree_of_their_paths(
    out: Path, whole_write: list[Path], routes: list[str]
) -> None:
    third = Digests({**SECOND, "models/b/base/y.yaml": b"b: 3\n", "README.md": b"# 3\n"})
    stats = write_tree(out, third, tree=tree_of(third))
    assert whole_write == [] and routes == ["no within", "spare"]
    assert stats.written == ("README.md", "models/b/base/y.yaml")
    assert snapshot(out) == expected(third)
    assert_indexed_exactly(out, third)
    fourth = Digests({**third, "models/c/base/z.yaml": b"c: 1\n"})  # one path more
    write_tree(out, fourth, tree=tree_of(fourth))
    assert whole_write == [] and routes[2:] == ["reshaped"]
    assert snapshot(out) == expected(fourth)
    assert_indexed_exactly(out, fourth)


RESHAPED = {  # SECOND with a file in new folders, one leaving its folder empty, one changed
    **{rel: data for rel, data in SECOND.items() if rel != "models/a/overlays/dev/p.yaml"},
    "models/c/overlays/dev/z.yaml": b"c: 1\n",
    "README.md": b"# reshaped\n",
}


def test_files_added_and_removed_are_written_through_the_spare(
    out: Path, whole_write: list[Path], routes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is done per unchanged file: the spare gets the changes, and is swapped in.
    The old tree, now the spare, is given the new paths: it differs from the output in
    the files written over old ones alone, as its record says, and the next writes, of
    paths added or of bytes changed, go through it again without listing anything."""
    scanned = spied_scans(monkeypatch)
    stats = write_tree(out, Digests(RESHAPED), tree=tree_of(RESHAPED))
    assert (whole_write, routes) == ([], ["reshaped"])
    assert stats.written == ("README.md", "models/c/overlays/dev/z.yaml")
    assert stats.removed == ("models/a/overlays/dev/p.yaml",)
    assert snapshot(out) == expected(RESHAPED)
    assert not (out / "models/a/overlays/dev").exists()
    assert_indexed_exactly(out, RESHAPED)
    spare = spare_folder(out)
    assert snapshot(spare) == expected({**RESHAPED, "README.md": SECOND["README.md"]})
    proof = outindex.prove(out)
    assert proof is not None
    record = outindex.load_spare_delta(out, spare, proof)
    assert record is not None and set(record.differing) == {"README.md"}
    for rel in (MANIFEST, "models/c/overlays/dev/z.yaml", "models/b/base/y.yaml"):
        assert os.lstat(spare / rel).st_ino == os.lstat(out / rel).st_ino
    time.sleep(0.02)
    more = Digests({**RESHAPED, "models/d/base/w.yaml": b"d: 1\n"})
    del more["models/c/overlays/dev/z.yaml"]  # its folders emptied, in the spare too
    write_tree(out, more, tree=tree_of(more))
    assert snapshot(out) == expected(more) and routes[1:] == ["reshaped"]
    assert_indexed_exactly(out, more)
    time.sleep(0.02)
    again = Digests({**more, "models/b/base/y.yaml": b"b: 5\n", "README.md": b"# 5\n"})
    write_tree(out, again, tree=tree_of(again))
    assert snapshot(out) == expected(again) and routes[2:] == ["no within", "spare"]
    assert_indexed_exactly(out, again)
    assert (whole_write, scanned) == ([], [])


def test_a_spare_recorded_whole_is_given_the_output_paths_first(
    out: Path, whole_write: list[Path], routes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a whole write of other paths the spare's record is whole: its extra files
    and folders go, the output's missing files are linked, then the changes are made."""
    bigger = {**SECOND, "models/e/base/v.yaml": b"e: 1\n", "README.md": b"# bigger\n"}
    write_tree(out, bigger)  # the whole write: the spare is SECOND, recorded whole
    assert whole_write == [out]
    time.sleep(0.02)
    scanned = spied_scans(monkeypatch)
    write_tree(out, Digests(RESHAPED), tree=tree_of(RESHAPED))
    assert (whole_write, routes, scanned) == ([out], ["reshaped"], [])
    assert snapshot(out) == expected(RESHAPED)
    assert_indexed_exactly(out, RESHAPED)
    assert not (out / "models/e").exists() and not (spare_folder(out) / "models/e").exists()
    time.sleep(0.02)
    again = Digests({**RESHAPED, "models/f/base/u.yaml": b"f: 1\n"})
    write_tree(out, again, tree=tree_of(again))
    assert (routes, scanned) == (["reshaped", "reshaped"], [])
    assert snapshot(out) == expected(again)


def test_a_write_of_part_of_the_output_does_not_reshape_it(
    out: Path, whole_write: list[Path], routes: list[str]
) -> None:
    """A write scoped to one environment keeps the files outside it: the whole write."""
    dev = {rel: data for rel, data in SECOND.items() if "prod" not in rel}
    dev["README.md"] = b"# dev\n"
    write_tree(out, Digests(dev), lambda rel: "prod" not in rel, tree=tree_of(dev))
    assert whole_write == [out] and "reshaped" not in routes
    assert snapshot(out) == expected({**dev, "models/a/overlays/prod/q.yaml": b"q: 1\n"})


def test_a_reshaping_write_that_fails_leaves_the_output_as_it_was(
    out: Path, routes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, made = write_module._new_file, []

    def failing(target: str, data: bytes, *args: object, **kwargs: object) -> object:
        made.append(target)
        if len(made) == 2:
            raise OSError(28, "No space left on device")
        return real(target, data, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(write_module, "_new_file", failing)
        with pytest.raises(write_module.CannotWriteError, match="No space left"):
            write_tree(out, Digests(RESHAPED), tree=tree_of(RESHAPED))
    assert routes == [] and snapshot(out) == expected(SECOND)
    time.sleep(0.02)
    write_tree(out, Digests(RESHAPED), tree=tree_of(RESHAPED))
    assert snapshot(out) == expected(RESHAPED)
    assert_indexed_exactly(out, RESHAPED)


def test_many_differing_files_take_the_whole_write(
    out: Path, whole_write: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_module, "_DIFFERING_LIMIT", 1)
    third = Digests({**SECOND, "models/b/base/y.yaml": b"b: 3\n", "README.md": b"# 3\n"})
    write_tree(out, third, tree=tree_of(third))
    assert whole_write == [out]
    assert snapshot(out) == expected(third)


def test_a_record_of_another_index_is_not_used(out: Path, whole_write: list[Path]) -> None:
    index = index_path(out)
    assert index is not None
    index.unlink()  # the next write reads the folder and writes another index
    write_tree(out, SECOND)
    time.sleep(0.02)
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert snapshot(out) == expected(third)
    assert snapshot(spare_folder(out)) == expected(SECOND)


def test_a_record_as_new_as_its_folders_is_racy(out: Path, whole_write: list[Path]) -> None:
    record = spare_record_path(out)
    assert record is not None
    spare = spare_folder(out)
    newest = max(p.lstat().st_mtime_ns for p in [spare, *spare.rglob("*")] if p.is_dir())
    os.utime(record, ns=(newest, newest))
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert whole_write == [out]
    assert snapshot(out) == expected(third)


def test_a_damaged_record_is_not_used(out: Path, whole_write: list[Path]) -> None:
    record = spare_record_path(out)
    assert record is not None
    record.write_bytes(record.read_bytes().replace(b"\t", b" "))
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert whole_write == [out]
    assert snapshot(out) == expected(third)


def test_without_the_cache_every_write_is_whole(
    out: Path, whole_write: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    third = write_changed(out, SECOND, {"README.md": b"# third\n"})
    assert whole_write == [out]
    assert snapshot(out) == expected(third)


def test_unchanged_bytes_write_nothing(out: Path) -> None:
    files = Changed(SECOND, {"README.md": SECOND["README.md"]})
    assert not write_tree(out, files, tree=tree_of(files)).changed
    assert snapshot(out) == expected(SECOND)


# --- from a build: a value edit in a spec renders through the shortcut ------------------


def test_a_value_edit_in_a_spec_is_written_through_the_shortcut(
    example_repo: Path, tmp_path: Path, whole_write: list[Path], routes: list[str]
) -> None:
    out = tmp_path / "out"
    write_tree(out, build(example_repo).files)
    spec = next(
        path
        for path in sorted((example_repo / "specs").rglob("*.yaml"))
        if re.search(r"max_replicas: \d+", path.read_text())
    )
    for edit in range(3):
        time.sleep(0.02)
        text = re.sub(
            r"max_replicas: (\d+)", lambda m: f"max_replicas: {int(m[1]) + 1}", spec.read_text()
        )
        spec.write_text(text)
        built = build(example_repo)
        assert isinstance(built.files, outindex.Delta) and built.files.changes() is not None
        stats = write_tree(out, built.files, tree=built.tree)
        assert stats.written, "the edit changes the model's files"
        fresh = tmp_path / f"fresh-{edit}"
        write_tree(fresh, dict(built.files))
        assert snapshot(out) == snapshot(fresh)
        assert_indexed_exactly(out, dict(built.files))
    # Only the first write is whole: each edit's files lie in its model's folder.
    assert whole_write.count(out) == 1
    assert routes == ["within"] * 3


# --- the folder a write within one folder prepares its copy in --------------------------


def test_an_interrupted_part_folder_is_removed(out: Path, routes: list[str]) -> None:
    part = part_folder(out)
    (part / "dev").mkdir(parents=True)
    (part / ".servegen-staging").touch()  # what a run killed while copying leaves
    (part / "dev/p.yaml").write_bytes(b"half")
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    assert routes == ["within"]
    assert snapshot(out) == expected(third)
    assert not part.exists()


@pytest.mark.parametrize("kind", ["folder", "symlink"])
def test_a_part_folder_servegen_did_not_make_is_left_alone(
    out: Path, tmp_path: Path, routes: list[str], kind: str
) -> None:
    part = part_folder(out)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_bytes(b"keep\n")
    if kind == "symlink":
        part.symlink_to(victim)
    else:
        part.mkdir()
        (part / "keep.txt").write_bytes(b"keep\n")
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    assert routes == ["no within", "spare"]
    assert snapshot(out) == expected(third)
    assert snapshot(part) == {"keep.txt": b"keep\n"}
    assert snapshot(victim) == {"keep.txt": b"keep\n"}


def test_a_change_to_the_spare_is_still_seen_after_writes_within_a_folder(
    out: Path, whole_write: list[Path], routes: list[str]
) -> None:
    """A write within one folder leaves the spare alone and ties its record to the new
    index; the record still holds the spare's folders as proven: a later stray is seen."""
    _stray_file(spare_folder(out))
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    fourth = write_changed(out, third, {"README.md": b"# 4\n", "models/b/base/y.yaml": b"b: 4\n"})
    assert routes == ["within", "no within", "no spare"]
    assert whole_write == [out]
    assert snapshot(out) == expected(fourth)


# --- SIGKILL at any moment of a write within one folder ----------------------------------

WRITER = """
import sys
from pathlib import Path
from generator.outindex import digest, tree_digest
from generator.write import write_tree
files = {f"models/big/base/f{i:04}.yaml": b"old %d\\\\n" % i for i in range(2000)}
files.update({f"models/m{i:03}/base/obj.yaml": b"m\\\\n" for i in range(200)})
files["README.md"] = b"index\\\\n"
def tree(found): return tree_digest({k: digest(v) for k, v in found.items()})
class Changed(dict):
    def __init__(self, base, changed):
        super().__init__({**base, **changed})
        self.hint = (tree(base), changed)
    def changes(self): return self.hint
    def digests(self): return {k: digest(v) for k, v in self.items()}
if sys.argv[2] == "new":
    files = Changed(files, {f"models/big/base/f{i:04}.yaml": b"new\\\\n" for i in (1, 500, 1999)})
print("ready", flush=True)
write_tree(Path(sys.argv[1]), files, tree=tree(files))
"""


def _write_in_subprocess(out: Path, version: str, kill_after: float | None) -> float:
    """Run the writer; kill it `kill_after` seconds after it is ready. Returns its run time."""
    return run_writer(WRITER, [str(out), version], kill_after)


def test_sigkill_at_any_moment_of_a_write_within_a_folder(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _write_in_subprocess(reference, "old", None)
    old = snapshot(reference)
    time.sleep(0.02)
    duration = _write_in_subprocess(reference, "new", None)
    new = snapshot(reference)
    assert old != new and not part_folder(reference).exists()
    assert not spare_folder(reference).exists()  # within the folder: no spare was made
    for step in range(12):
        out = tmp_path / f"run{step}" / "out"
        _write_in_subprocess(out, "old", None)
        time.sleep(0.02)
        _write_in_subprocess(out, "new", duration * step / 10)
        assert snapshot(out) in (old, new), f"kill at step {step} left a mixed tree"
        _write_in_subprocess(out, "new", None)  # the next run finishes the job
        assert snapshot(out) == new
        assert left_beside(out) in FINISHED_BESIDE, "stray files left"
        shutil.rmtree(out.parent)  # 2,200 files a run: not left for pytest to clean up


RESHAPER = """
import sys
from pathlib import Path
from generator.outindex import digest, tree_digest
from generator.write import write_tree
files = {f"models/big/base/f{i:04}.yaml": b"old %d\\n" % i for i in range(2000)}
files.update({f"models/m{i:03}/base/obj.yaml": b"m\\n" for i in range(200)})
files["README.md"] = sys.argv[2].encode()
class Digests(dict):
    def digests(self): return {k: digest(v) for k, v in self.items()}
if sys.argv[2] == "new":  # ten models' folders go, ten come: through the spare
    files = {k: v for k, v in files.items() if not k.startswith("models/m00")}
    files.update({f"models/n{i:03}/overlays/dev/obj.yaml": b"n\\n" for i in range(10)})
    files = Digests(files)
print("ready", flush=True)
write_tree(Path(sys.argv[1]), files, tree=tree_digest({k: digest(v) for k, v in files.items()}))
"""


def _reshape_in_subprocess(out: Path, version: str, kill_after: float | None) -> float:
    return run_writer(RESHAPER, [str(out), version], kill_after)


def _two_trees(out: Path) -> None:
    """The "old" tree written, then the same paths again: the spare, recorded relative."""
    _reshape_in_subprocess(out, "old", None)
    time.sleep(0.02)
    _reshape_in_subprocess(out, "base", None)
    time.sleep(0.02)


def test_sigkill_at_any_moment_of_a_write_of_files_added_and_removed(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _two_trees(reference)
    base = snapshot(reference)
    duration = _reshape_in_subprocess(reference, "new", None)
    new = snapshot(reference)
    assert base != new and not (reference / "models/m000").exists()
    assert "models/n009/overlays/dev/obj.yaml" in new
    spare = spare_folder(reference)  # given the new paths: the write went through it
    assert (spare / "models/n000").is_dir() and not (spare / "models/m000").exists()
    for step in range(8):  # from before the write starts to after it ends
        out = tmp_path / f"run{step}" / "out"
        _two_trees(out)
        _reshape_in_subprocess(out, "new", duration * step / 6)
        assert snapshot(out) in (base, new), f"kill at step {step} left a mixed tree"
        _reshape_in_subprocess(out, "new", None)  # the next run finishes the job
        assert snapshot(out) == new
        assert left_beside(out) == [
            ".out.servegen",
            "out",
            ".out.servegen/.gitignore",
            ".out.servegen/spare",
        ]
        shutil.rmtree(out.parent)


def test_a_large_folder_is_not_copied_the_spare_is_used(
    out: Path, routes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_module, "_WITHIN_LIMIT", 3)  # models/a: 5 folders, 3 files
    changed = {"models/a/base/x.yaml": b"a: 3\n", "models/a/overlays/dev/p.yaml": b"p: 3\n"}
    third = write_changed(out, SECOND, changed)
    assert routes == ["no within", "spare"]
    assert snapshot(out) == expected(third)
    fourth = write_changed(out, third, {"models/b/base/y.yaml": b"b: 4\n"})  # 2 folders, 1 file
    assert routes[2:] == ["within"]
    assert snapshot(out) == expected(fourth)


def test_an_empty_part_folder_is_removed(out: Path, routes: list[str]) -> None:
    """A run killed between making the part folder and marking it (or between removing
    its mark and the folder) leaves it empty: nothing there to keep."""
    part_folder(out).mkdir()
    third = write_changed(out, SECOND, {"models/a/overlays/dev/p.yaml": b"p: 3\n"})
    assert routes == ["within"]
    assert snapshot(out) == expected(third)
    assert not part_folder(out).exists()


# --- any sequence of writes and hand changes: the output is always what was asked for ------

_FILES = sorted(FIRST)
_STEP: st.SearchStrategy[tuple[str, frozenset[str]]] = st.one_of(
    st.tuples(st.just("change"), st.sets(st.sampled_from(_FILES), min_size=1, max_size=3)),
    st.tuples(st.just("whole"), st.just(frozenset())),
    st.tuples(st.just("reshape"), st.sets(st.sampled_from(_FILES), max_size=2)),
    st.tuples(
        st.sampled_from(["edit", "foreign", "remove", "spare stray", "spare edit"]),
        st.sampled_from(_FILES).map(lambda rel: frozenset([rel])),
    ),
)


def _perturb(out: Path, kind: str, rel: str, foreign: dict[str, bytes]) -> None:
    time.sleep(0.01)  # a later timestamp granule than the last write (git's caveat)
    spare = spare_folder(out)
    if kind == "edit" and (out / rel).is_file():
        with (out / rel).open("r+b") as handle:
            handle.write(b"#")
    elif kind == "foreign" and (out / rel).parent.is_dir():  # (a reshape may have removed it)
        name = f"{rel.rpartition('/')[0] or '.'}/mine.txt"
        (out / name).write_bytes(b"mine\n")
        foreign[name.removeprefix("./")] = b"mine\n"
    elif kind == "remove":
        (out / rel).unlink(missing_ok=True)
    elif kind == "spare stray" and (spare / rel).parent.is_dir():
        (spare / f"{rel}.stray").write_bytes(b"stray\n")
    elif (spare / rel).is_file() and kind == "spare edit":
        (spare / rel).unlink()
        (spare / rel).write_bytes(b"spare\n")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_STEP, min_size=1, max_size=8))
@example(steps=[("remove", frozenset(["README.md"])), ("edit", frozenset(["README.md"]))])
@example(steps=[("spare stray", frozenset(["README.md"])), ("change", frozenset(["README.md"]))])
def test_any_sequence_of_writes_and_hand_changes(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, frozenset[str]]]
) -> None:
    out = tmp_path_factory.mktemp("seq") / "out"
    write_tree(out, FIRST)
    files: dict[str, bytes] = dict(FIRST)
    foreign: dict[str, bytes] = {}
    for number, (kind, paths) in enumerate(steps):
        if kind in ("change", "whole", "reshape"):
            time.sleep(0.01)
            changed = {rel: f"v{number}: {rel}\n".encode() for rel in paths}
            if kind == "change":
                files = write_changed(out, files, changed)
            elif kind == "reshape":  # those paths removed, a file in new folders added
                kept = {rel: data for rel, data in files.items() if rel not in paths}
                files = Digests({**kept, f"models/n{number}/base/x.yaml": b"n: 1\n"})
                write_tree(out, files, tree=tree_of(files))
            else:
                files = {**files, "README.md": f"# {number}\n".encode()}
                write_tree(out, files)
            assert snapshot(out) == {**expected(files), **foreign}
            assert not any(path.is_symlink() for path in out.rglob("*"))
        else:
            _perturb(out, kind, next(iter(paths)), foreign)
    time.sleep(0.01)
    write_tree(out, dict(files))
    assert snapshot(out) == {**expected(files), **foreign}
