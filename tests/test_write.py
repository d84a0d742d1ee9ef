"""Writing the output folder: owned files only, no symlinks followed, all or nothing."""

from __future__ import annotations

import array
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import cli, outindex, spool
from generator import write as write_module
from generator.outindex import (
    Stamp,
    digest,
    holds,
    index_path,
    indexed,
    spare_record_path,
    tree_digest,
)
from generator.outtree import folders_of
from generator.write import (
    MANIFEST,
    CannotWriteError,
    OutputFolderError,
    is_manifest_of,
    manifest_bytes,
    scratch_folder,
    spare_folder,
    stale_paths,
    write_tree,
)
from tests.gitutil import sh
from tests.kustomize import kubectl
from tests.writeutil import (
    FINISHED_BESIDE,
    counted_forks,
    left_beside,
    run_writer,
    snapshot,
    spied_scans,
)

FILES = {
    "models/a/base/x.yaml": b"a: 1\n",
    "models/b/base/y.yaml": b"b: 1\n",
    "clusters/dev/kustomization.yaml": b"k: 1\n",
    "README.md": b"# index\n",
}


def test_first_write_has_a_manifest_of_exactly_what_was_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stats = write_tree(out, FILES)
    assert sorted(stats.written) == sorted(FILES)
    listed = (out / MANIFEST).read_text().splitlines()[1:]
    assert listed == sorted(FILES)
    assert {k: v for k, v in snapshot(out).items() if k != MANIFEST} == FILES


def test_up_to_date_output_is_not_touched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    inode = (out / "README.md").stat().st_ino
    stats = write_tree(out, FILES)
    assert not stats.changed and stats.unchanged == len(FILES)
    assert (out / "README.md").stat().st_ino == inode


def test_unchanged_files_keep_their_inode_when_others_change(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    inode = (out / "README.md").stat().st_ino
    stats = write_tree(out, {**FILES, "models/a/base/x.yaml": b"a: 2\n"})
    assert stats.written == ("models/a/base/x.yaml",)
    assert (out / "README.md").stat().st_ino == inode
    assert (out / "models/a/base/x.yaml").read_bytes() == b"a: 2\n"


def test_only_files_servegen_wrote_are_deleted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    (out / "NOTES.txt").write_text("mine\n")
    (out / "models" / "mine.txt").write_text("mine too\n")
    (out / ".git-like" / "empty").mkdir(parents=True)
    (out / "link").symlink_to("NOTES.txt")
    smaller = {k: v for k, v in FILES.items() if not k.startswith("models/b/")}
    stats = write_tree(out, smaller)
    assert stats.removed == ("models/b/base/y.yaml",)
    assert not (out / "models" / "b").exists()
    assert (out / "NOTES.txt").read_text() == "mine\n"
    assert (out / "models" / "mine.txt").read_text() == "mine too\n"
    assert (out / ".git-like" / "empty").is_dir()
    assert os.readlink(out / "link") == "NOTES.txt"


@pytest.mark.parametrize("out_arg", [".", "..", "specs"])
def test_render_refuses_a_folder_it_does_not_own(
    example_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], out_arg: str
) -> None:
    """`render --out .` used to delete unrelated files under models/ and overwrite README.md."""
    (example_repo / "models").mkdir()
    (example_repo / "models" / "weights.txt").write_text("precious\n")
    (example_repo / "README.md").write_text("my readme\n")
    before = snapshot(example_repo.parent)
    out = str(example_repo / out_arg)
    argv = ["-C", str(example_repo), "render", "--out", out, "--crds", str(crds_dir)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "was not written by servegen" in err and "Traceback" not in err
    assert snapshot(example_repo.parent) == before


def test_legacy_output_without_manifest_is_adopted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "models" / "gone" / "base").mkdir(parents=True)
    (out / "models" / "gone" / "base" / "x.yaml").write_text("x: 1\n")
    stats = write_tree(out, FILES)
    assert stats.removed == ("models/gone/base/x.yaml",)
    assert (out / MANIFEST).is_file()


def test_symlinked_managed_folder_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A committed `output/models -> ../../victim` made render empty and fill victim/."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("keep\n")
    out = tmp_path / "repo" / "output"
    write_tree(out, FILES)
    shutil.rmtree(out / "models")
    (out / "models").symlink_to(victim)
    with pytest.raises(OutputFolderError, match="symlink"):
        write_tree(out, FILES)
    assert snapshot(victim) == {"data.txt": b"keep\n"}


def test_symlink_inside_a_legacy_output_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("keep\n")
    out = tmp_path / "out"
    (out / "clusters").mkdir(parents=True)
    (out / "models").symlink_to(victim)
    with pytest.raises(OutputFolderError, match="symlink"):
        write_tree(out, FILES)
    with pytest.raises(OutputFolderError, match="symlink"):
        stale_paths(out, FILES)
    assert snapshot(victim) == {"data.txt": b"keep\n"}


def test_symlinked_file_in_output_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    out = tmp_path / "out"
    write_tree(out, FILES)
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(victim)
    with pytest.raises(OutputFolderError, match="symlink"):
        write_tree(out, FILES)
    assert victim.read_text() == "keep\n"


def test_output_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "out").symlink_to(victim)
    with pytest.raises(OutputFolderError, match="symlink"):
        write_tree(tmp_path / "out", FILES)
    assert list(victim.iterdir()) == []


def test_fifo_in_output_is_refused_without_hanging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    (out / "README.md").unlink()
    os.mkfifo(out / "README.md")
    with pytest.raises(OutputFolderError, match="not a regular file"):
        write_tree(out, FILES)


@pytest.mark.parametrize("target", ["file", "/dev/null"])
def test_render_out_at_a_file_is_a_usage_error(
    example_repo: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    path = example_repo / "file" if target == "file" else Path(target)
    if target == "file":
        path.write_text("x\n")
    code = cli.main(["-C", str(example_repo), "render", "--out", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "not a folder" in err and "Traceback" not in err


def test_render_out_where_nothing_can_be_written_is_a_usage_error(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["-C", str(example_repo), "render", "--out", "/proc/servegen-out"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot write" in err and "Traceback" not in err


def test_an_interrupted_spare_is_repaired_before_the_swap(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    write_tree(out, {**FILES, "README.md": b"# second\n"})
    spare = spare_folder(out)
    assert (spare / MANIFEST).is_file()  # the previous tree, kept for the next write
    # What a run killed while preparing the spare leaves: half-written and stray files.
    (spare / ".servegen-staging").touch()
    (spare / "models" / "a" / "base" / "x.yaml").write_bytes(b"a: half")
    (spare / "models" / "stray.yaml").write_bytes(b"x")
    (spare / "clusters").rename(spare / "moved")
    third = {**FILES, "README.md": b"# third\n"}
    write_tree(out, third)
    assert snapshot(out) == {**third, MANIFEST: manifest_bytes(third)}


def test_unchanged_files_are_shared_with_the_spare_not_copied(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    for n in range(3):
        write_tree(out, {**FILES, "README.md": f"# {n}\n".encode()})
        live = (out / "models/a/base/x.yaml").stat()
        assert live.st_nlink == 2  # one inode, in the live tree and the spare


@pytest.mark.parametrize("kind", ["symlink", "foreign"])
def test_a_spare_servegen_did_not_make_is_refused(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("keep\n")
    out = tmp_path / "out"
    write_tree(out, FILES)
    if kind == "symlink":
        spare_folder(out).symlink_to(victim)
    else:
        spare_folder(out).mkdir()
        (spare_folder(out) / "data.txt").write_text("keep\n")
    with pytest.raises(OutputFolderError, match="spare"):
        write_tree(out, {**FILES, "README.md": b"# changed\n"})
    assert snapshot(victim) == {"data.txt": b"keep\n"}
    assert (out / "README.md").read_bytes() == FILES["README.md"]


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_scratch_folder_servegen_did_not_make_is_refused(tmp_path: Path, kind: str) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    write_tree(out, FILES)
    shutil.rmtree(scratch_folder(out))
    if kind == "symlink":  # committed by a spec author: it could lead anywhere
        scratch_folder(out).symlink_to(victim)
    else:
        scratch_folder(out).write_text("keep\n")
    with pytest.raises(OutputFolderError, match=r"\.out\.servegen is not servegen's folder"):
        write_tree(out, {**FILES, "README.md": b"# changed\n"})
    assert snapshot(victim) == {}
    assert (out / "README.md").read_bytes() == FILES["README.md"]


def test_the_scratch_folder_is_made_whole_and_its_gitignore_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scratch = scratch_folder(out)
    killed = scratch.with_name(f"{scratch.name}.{os.getpid()}.tmp")  # a killed run's
    killed.mkdir()
    (killed / ".gitignore").write_text("*\n")
    write_tree(out, FILES)
    assert left_beside(out) == [".out.servegen", "out", ".out.servegen/.gitignore"]
    (scratch / ".gitignore").unlink()  # removed by hand: made again by the next write
    write_tree(out, {**FILES, "README.md": b"# second\n"})
    assert (scratch / ".gitignore").read_text().endswith("\n*\n")


def test_git_never_sees_the_spare(tmp_path: Path) -> None:
    """A repository that ignores only the output folder: `git add -A` after a render
    must not commit servegen's spare (a second copy of the output)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    sh(repo, "init", "-q")
    (repo / ".gitignore").write_text("/out/\n")
    out = repo / "out"
    write_tree(out, FILES)
    write_tree(out, {**FILES, "README.md": b"# second\n"})
    assert (spare_folder(out) / MANIFEST).is_file()
    assert sh(repo, "status", "--porcelain", "--untracked-files=all") == "?? .gitignore"


# --- the stat index: an unchanged file costs a stat, not a read ---------------------------


def _same_size_edit(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data.upper() if data.upper() != data else data.lower())
    assert len(path.read_bytes()) == len(data)


def test_a_same_size_edit_after_the_write_is_found(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    time.sleep(0.02)  # a later timestamp granule than the index
    _same_size_edit(out / "README.md")
    assert stale_paths(out, FILES) == ["README.md"]
    assert write_tree(out, FILES).written == ("README.md",)
    assert (out / "README.md").read_bytes() == FILES["README.md"]


@pytest.mark.parametrize("check", [False, True], ids=["write", "check"])
def test_a_folder_its_index_cannot_prove_is_swept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check: bool
) -> None:
    """The lstat sweep of every watched path is made once per write or check: when it
    shows a change, the folder is read, not swept again for the same answer."""
    out = tmp_path / "out"
    write_tree(out, FILES)
    time.sleep(0.02)  # a later timestamp granule than the index
    _same_size_edit(out / "README.md")
    sweeps: list[int] = []
    real = outindex._signature

    def spy(folder: Path, paths: Sequence[str]) -> array.array[int]:
        sweeps.append(len(paths))
        return real(folder, paths)

    monkeypatch.setattr(outindex, "_signature", spy)
    if check:
        tree = tree_digest(outindex.digests_of(FILES))
        assert stale_paths(out, FILES, tree=tree) == ["README.md"]
    else:
        assert write_tree(out, FILES).written == ("README.md",)
    assert sweeps == [len(FILES) + 2 + len(folders_of(FILES))]  # with "." and the manifest


def test_a_same_size_edit_in_the_granule_of_the_write_is_read_as_racy(tmp_path: Path) -> None:
    """Every stat field equal to what was recorded, but no older than the index: read."""
    out = tmp_path / "out"
    write_tree(out, FILES)
    index = index_path(out)
    assert index is not None and index.is_file()
    recorded = (out / "README.md").stat().st_mtime_ns
    _same_size_edit(out / "README.md")
    os.utime(out / "README.md", ns=(recorded, recorded))  # the edit kept the timestamp
    os.utime(index, ns=(recorded, recorded))  # and the index was written in that granule
    assert stale_paths(out, FILES) == ["README.md"]
    assert write_tree(out, FILES).written == ("README.md",)


def test_an_unchanged_stat_is_trusted_without_reading_the_file(tmp_path: Path) -> None:
    """git's caveat, on purpose: bytes changed behind a forged stat older than the index
    go unnoticed; deleting the index (the cache) makes every file read again."""
    out = tmp_path / "out"
    write_tree(out, FILES)
    path = out / "README.md"
    before = path.stat()
    time.sleep(0.02)
    _same_size_edit(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    index = index_path(out)
    assert index is not None
    later = index.stat().st_mtime_ns + 50_000_000
    os.utime(index, ns=(later, later))  # the index clearly newer than the file
    assert stale_paths(out, FILES) == []  # a stat, not a read
    index.unlink()
    assert stale_paths(out, FILES) == ["README.md"]


def test_the_index_records_what_was_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    index = index_path(out)
    assert index is not None
    lines = index.read_text().splitlines()[1 : 1 + len(FILES)]  # then the watched paths
    recorded = {line.split("\t")[4]: line.split("\t")[:4] for line in lines}
    assert set(recorded) == set(FILES)
    for rel, data in FILES.items():
        info = (out / rel).stat()
        want = [digest(data).hex(), str(len(data)), str(info.st_mtime_ns), str(info.st_ino)]
        assert recorded[rel] == want


def test_without_the_cache_every_file_is_compared_by_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    out = tmp_path / "out"
    write_tree(out, FILES)
    assert index_path(out) is None
    path = out / "README.md"
    before = path.stat()
    _same_size_edit(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stale_paths(out, FILES) == ["README.md"]


# --- a large write made by two processes --------------------------------------------------

MANY = {f"models/m{i:02}/base/obj.yaml": f"obj: {i}\n".encode() for i in range(40)}


def _recorded(out: Path) -> dict[str, list[str]]:
    """The index's record of each file: digest, size, mtime_ns, inode."""
    index = index_path(out)
    assert index is not None
    lines = index.read_text().splitlines()[1:]
    return {f[4]: f[:4] for f in (line.split("\t") for line in lines) if len(f) == 5}


def _as_written(out: Path, files: dict[str, bytes]) -> dict[str, list[str]]:
    return {
        rel: [digest(data).hex(), str(len(data)), str(info.st_mtime_ns), str(info.st_ino)]
        for rel, data in files.items()
        for info in [(out / rel).lstat()]
    }


@pytest.fixture
def split_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every write of more than two new files split with a forked child; its pids."""
    monkeypatch.setattr(write_module, "_MIN_SPLIT", 2)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")
    return counted_forks(monkeypatch)


def test_a_large_write_is_shared_with_a_child_and_indexed_as_one(
    tmp_path: Path, split_writes: list[int]
) -> None:
    out = tmp_path / "out"
    stats = write_tree(out, MANY)
    assert len(split_writes) == 1
    assert sorted(stats.written) == sorted(MANY)
    assert {k: v for k, v in snapshot(out).items() if k != MANIFEST} == MANY
    assert _recorded(out) == _as_written(out, MANY)  # the child's half too
    assert holds(out, tree_digest({rel: digest(data) for rel, data in MANY.items()}))
    changed = {**MANY, **{rel: b"changed\n" for rel in list(MANY)[::2]}}
    assert sorted(write_tree(out, changed).written) == sorted(list(MANY)[::2])
    assert {k: v for k, v in snapshot(out).items() if k != MANIFEST} == changed
    assert _recorded(out) == _as_written(out, changed)


def test_files_a_dying_child_made_are_made_again_by_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split_writes: list[int]
) -> None:
    """The child is killed after its third file; its whole half is written here."""
    parent, made = os.getpid(), [0]
    real = write_module._new_file

    def dying(
        target: str, data: bytes, known: bytes | None = None, *, again: bool = False
    ) -> Stamp:
        if os.getpid() != parent:
            made[0] += 1
            if made[0] > 3:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(target, data, known, again=again)

    monkeypatch.setattr(write_module, "_new_file", dying)
    out = tmp_path / "out"
    write_tree(out, MANY)
    assert len(split_writes) == 1
    assert {k: v for k, v in snapshot(out).items() if k != MANIFEST} == MANY
    assert _recorded(out) == _as_written(out, MANY)


def test_a_failure_in_the_parents_half_keeps_the_old_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split_writes: list[int]
) -> None:
    out = tmp_path / "out"
    write_tree(out, FILES)
    real = write_module._new_file

    def full(target: str, data: bytes, known: bytes | None = None, *, again: bool = False) -> Stamp:
        if target.endswith("m01/base/obj.yaml"):  # in the first half: the parent's
            raise OSError(errno.ENOSPC, "No space left on device", target)
        return real(target, data, known, again=again)

    monkeypatch.setattr(write_module, "_new_file", full)
    with pytest.raises(CannotWriteError, match="No space left on device"):
        write_tree(out, MANY)
    assert len(split_writes) == 2  # the first write's and this one's
    assert {k: v for k, v in snapshot(out).items() if k != MANIFEST} == FILES


# --- SIGKILL at any moment ----------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
from generator.write import write_tree
n, version = int(sys.argv[2]), sys.argv[3]
files = {f"models/m{i:04}/base/obj.yaml": f"{version} {i}\\n".encode() for i in range(n)}
if version == "new":  # new files, changed files and removed files
    files = {k: v for k, v in files.items() if not k.endswith(("7/base/obj.yaml",))}
    files.update({f"models/n{i:04}/base/obj.yaml": b"added\\n" for i in range(n // 10)})
files["README.md"] = version.encode()
print("ready", flush=True)
write_tree(Path(sys.argv[1]), files)
"""


def _write_in_subprocess(out: Path, version: str, kill_after: float | None) -> float:
    """Run the writer; kill it `kill_after` seconds after it is ready. Returns its run time."""
    return run_writer(WRITER, [str(out), "1000", version], kill_after)


def test_sigkill_at_any_moment_leaves_exactly_the_old_or_the_new_tree(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _write_in_subprocess(reference / "new", "new", None)
    _write_in_subprocess(reference / "old", "old", None)
    duration = _write_in_subprocess(reference / "old", "new", None)  # old -> new takes this long
    new = snapshot(reference / "new")
    _write_in_subprocess(reference / "old", "old", None)
    old = snapshot(reference / "old")
    assert old != new
    # Kill points spread over the whole run: reading, staging, swapping, cleaning up.
    for step in range(12):
        kill_after = duration * step / 10
        out = tmp_path / f"run{step}" / "out"
        _write_in_subprocess(out, "old", None)
        _write_in_subprocess(out, "new", kill_after)
        state = snapshot(out)
        assert state in (old, new), f"kill after {kill_after:.3f}s left a mixed tree"
        _write_in_subprocess(out, "new", None)  # the next run finishes the job
        assert snapshot(out) == new
        assert left_beside(out) in FINISHED_BESIDE, "stray files left"


def test_sigkill_during_render_kustomize_builds_old_or_new(
    example_repo: Path, crds_dir: Path, tmp_path: Path
) -> None:
    """A real `servegen render` killed mid-way: kustomize builds exactly one of the states."""
    base = [sys.executable, "-m", "generator", "-C", str(example_repo), "render"]

    def render(out: Path) -> list[str]:
        return [*base, "--out", str(out), "--crds", str(crds_dir)]

    old_copy, new_copy = tmp_path / "old", tmp_path / "new"
    subprocess.run(render(old_copy), check=True, capture_output=True)
    (example_repo / "specs" / "vllm" / "qwen-chat.yaml").unlink()
    bert = example_repo / "specs" / "kserve" / "bert-sentiment.yaml"
    bert.write_text(bert.read_text().replace("bert-sentiment", "bert-renamed"))
    subprocess.run(render(new_copy), check=True, capture_output=True)
    built = {
        name: kustomize_text(folder / "clusters" / "prod")
        for name, folder in (("old", old_copy), ("new", new_copy))
    }
    trees = {"old": snapshot(old_copy), "new": snapshot(new_copy)}
    assert built["old"] != built["new"]
    seen = set()
    # From at once (before the interpreter has started: the old tree, whatever the
    # machine's speed) to well after a render of this size on a loaded machine.
    for step, delay in enumerate((0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2)):
        out = tmp_path / f"run{step}" / "out"
        shutil.copytree(old_copy, out)
        proc = subprocess.Popen(render(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        state = next((name for name, tree in trees.items() if snapshot(out) == tree), None)
        assert state is not None, f"kill after {delay:.2f}s left a mixed tree"
        assert kustomize_text(out / "clusters" / "prod") == built[state]
        seen.add(state)
    assert "old" in seen  # the kill at once landed before the swap


def kustomize_text(folder: Path) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- the spare's record: after a swap the spare is the tree the index had proven ------------

DEEP = {
    **FILES,
    "models/a/overlays/dev/p.yaml": b"p: 1\n",
    "models/a/overlays/prod/q.yaml": b"q: 1\n",
}


def _two_writes(out: Path) -> None:
    write_tree(out, DEEP)
    write_tree(out, {**DEEP, "README.md": b"# second\n"})  # the first tree is now the spare


def test_a_recorded_spare_is_not_listed_and_the_next_index_proves_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _two_writes(out)
    scanned = spied_scans(monkeypatch)
    third = {**DEEP, "README.md": b"# second\n", "models/a/overlays/dev/p.yaml": b"p: 3\n"}
    assert write_tree(out, third).written == ("models/a/overlays/dev/p.yaml",)
    assert scanned == []  # neither the output (its index) nor the spare (its record)
    assert snapshot(out) == {**third, MANIFEST: manifest_bytes(third)}
    # The new index was made from the spare's folder stats where the sync left them:
    # it must match a fresh lstat of every folder, or the next write would read them all.
    index = indexed(out)
    assert index is not None and set(index.stamps) == set(third)
    assert write_tree(out, {**third, "README.md": b"# fourth\n"}).written == ("README.md",)
    assert scanned == []


@pytest.mark.parametrize("digested", [False, True], ids=["bytes", "digests"])
def test_a_write_of_another_tree_proves_the_output_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digested: bool
) -> None:
    """A stored build with a file added and one removed: the shortcut for the same paths
    declines, and the whole write starts from the proof the shortcut made (a stat of
    every folder and file: at 10,000 specs, half a second each time)."""
    out = tmp_path / "out"
    _two_writes(out)
    proofs: list[Path] = []
    prove = outindex.prove

    def counted(folder: Path, tree: str | None = None) -> object:
        proofs.append(folder)
        return prove(folder, tree)

    monkeypatch.setattr(outindex, "prove", counted)
    scanned = spied_scans(monkeypatch)
    new = {**DEEP, "README.md": b"# second\n", "models/c/base/x.yaml": b"c: 1\n"}
    del new["models/a/overlays/dev/p.yaml"]
    files = spool.merged({}, new) if digested else new
    stats = write_tree(out, files, tree=tree_digest({p: digest(d) for p, d in new.items()}))
    assert (stats.written, stats.removed) == (
        ("models/c/base/x.yaml",),
        ("models/a/overlays/dev/p.yaml",),
    )
    assert proofs == [out] and scanned == []
    assert snapshot(out) == {**new, MANIFEST: manifest_bytes(new)}
    index = indexed(out)
    assert index is not None and set(index.stamps) == set(new)


def _stray_file(spare: Path) -> None:
    (spare / "models/a/overlays/prod/stray.yaml").write_bytes(b"stray: 1\n")


def _stray_top_file(spare: Path) -> None:
    (spare / "models" / "stray.yaml").write_bytes(b"stray: 1\n")


def _replaced_file(spare: Path) -> None:
    # A new inode under the same name: the output's file (the old link) is not touched.
    target = spare / "models/a/overlays/prod/q.yaml"
    (spare / "models/a/overlays/prod/new").write_bytes(b"q: 9\n")
    (spare / "models/a/overlays/prod/new").replace(target)


def _symlinked_file(spare: Path) -> None:
    target = spare / "models/b/base/y.yaml"
    target.unlink()
    target.symlink_to("/etc/passwd")


def _symlinked_folder(spare: Path) -> None:
    shutil.rmtree(spare / "models/a/overlays/prod")
    (spare / "models/a/overlays/prod").symlink_to(spare.parent / "victim")


def _moved_folder(spare: Path) -> None:
    (spare / "models/a/overlays/dev").rename(spare / "models/a/overlays/gone")


def _remade_spare(spare: Path) -> None:
    copy = spare.with_name("copy")
    shutil.copytree(spare, copy, symlinks=True)
    shutil.rmtree(spare)
    copy.rename(spare)  # the same names and bytes, other inodes: not linked to the output


@pytest.mark.parametrize(
    "edit",
    [
        _stray_file,
        _stray_top_file,
        _replaced_file,
        _symlinked_file,
        _symlinked_folder,
        _moved_folder,
        _remade_spare,
    ],
)
def test_a_hand_edit_in_the_spare_is_seen_and_never_reaches_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: Callable[[Path], None]
) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_bytes(b"keep\n")
    out = tmp_path / "out"
    _two_writes(out)
    time.sleep(0.02)  # a later timestamp granule than the record
    edit(spare_folder(out))
    scanned = spied_scans(monkeypatch)
    third = {**DEEP, "README.md": b"# third\n"}
    write_tree(out, third)
    assert spare_folder(out) in scanned  # the record failed: the spare was listed
    assert snapshot(out) == {**third, MANIFEST: manifest_bytes(third)}
    assert not any(path.is_symlink() for path in out.rglob("*"))
    assert snapshot(victim) == {"keep.txt": b"keep\n"}
    assert write_tree(out, third).changed is False


def test_an_edit_through_a_link_the_spare_shares_with_the_output_is_seen(
    tmp_path: Path,
) -> None:
    """An unchanged file is one inode in the output and the spare: an edit in place in
    the spare is an edit of the output's file, which the output's index sees."""
    out = tmp_path / "out"
    _two_writes(out)
    time.sleep(0.02)
    shared = spare_folder(out) / "models/a/overlays/dev/p.yaml"
    assert shared.stat().st_ino == (out / "models/a/overlays/dev/p.yaml").stat().st_ino
    _same_size_edit(shared)
    third = {**DEEP, "README.md": b"# third\n"}
    assert set(write_tree(out, third).written) == {"README.md", "models/a/overlays/dev/p.yaml"}
    assert snapshot(out) == {**third, MANIFEST: manifest_bytes(third)}


def test_a_spare_record_as_new_as_its_folders_is_racy_and_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _two_writes(out)
    spare = spare_folder(out)
    record = spare_record_path(out)
    assert record is not None and record.is_file()
    newest = max(p.lstat().st_mtime_ns for p in [spare, *spare.rglob("*")] if p.is_dir())
    os.utime(record, ns=(newest, newest))  # written in the granule of a folder's change
    scanned = spied_scans(monkeypatch)
    third = {**DEEP, "README.md": b"# third\n"}
    write_tree(out, third)
    assert spare in scanned
    assert snapshot(out) == {**third, MANIFEST: manifest_bytes(third)}


def test_an_output_that_was_read_leaves_no_spare_record(tmp_path: Path) -> None:
    """A foreign file in the output: it was read, not proven, so the spare it becomes is
    listed next time (and a record from before is gone as soon as the spare changes)."""
    out = tmp_path / "out"
    _two_writes(out)
    (out / "notes.txt").write_bytes(b"mine\n")
    write_tree(out, {**DEEP, "README.md": b"# third\n"})
    record = spare_record_path(out)
    assert record is not None and not record.exists()
    assert (out / "notes.txt").read_bytes() == b"mine\n"


_PATHS = st.sets(st.text("ab/é\n", min_size=1, max_size=6), max_size=6)


@given(
    paths=_PATHS,
    other=_PATHS,
    cut=st.integers(0, 8),
    extra=st.sampled_from([b"", b"\n", b"x\n", b"#\n"]),
)
def test_is_manifest_of_is_equality_with_the_manifest_text(
    paths: set[str], other: set[str], cut: int, extra: bytes
) -> None:
    # It compares line by line; the answer must be exactly `==` of the whole text, for
    # the manifest of the same paths, of other paths, cut short, or with bytes added.
    exact = manifest_bytes(paths)
    candidates = [exact, manifest_bytes(other), exact[: len(exact) - cut], exact + extra]
    for candidate in candidates:
        assert is_manifest_of(candidate, paths) is (candidate == exact)
    assert not is_manifest_of(None, paths)


def _written_without_index(tmp_path: Path) -> tuple[Path, str]:
    """FILES written, then their index deleted (a cleared cache): the output folder and
    the tree digest of FILES."""
    out = tmp_path / "out"
    write_tree(out, FILES)
    index = index_path(out)
    assert index is not None
    index.unlink()  # the next write reads the folder file by file
    return out, tree_digest({rel: digest(data) for rel, data in FILES.items()})


def test_an_output_holding_the_tree_without_its_index_is_only_indexed(tmp_path: Path) -> None:
    out, tree = _written_without_index(tmp_path)
    before = snapshot(out)
    stats = write_tree(out, FILES, tree=tree)
    assert stats.written == () and stats.removed == ()
    assert snapshot(out) == before
    time.sleep(0.02)  # past the index's timestamp granule
    assert holds(out, tree)  # indexed again, from what was read


def test_a_manifest_edited_by_hand_is_written_again(tmp_path: Path) -> None:
    out, tree = _written_without_index(tmp_path)
    (out / MANIFEST).write_bytes((out / MANIFEST).read_bytes() + b"\n")  # a blank line
    write_tree(out, FILES, tree=tree)
    assert (out / MANIFEST).read_bytes() == manifest_bytes(FILES)
