"""The deploy commit built from what changed (generator/publish.py with generator/git.py).

Publishing reads only the tip's blobs that differ from the new files and writes only the
changed folders' trees; these tests hold that to the tree a full rebuild gives, and
check that a tip moved, deleted or tampered with by someone else is never trusted from
memory. Real git throughout; another writer is plain git (`sh`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generator import git, immutable, outtree, spool
from generator import publish as pub
from generator.errors import GitError
from tests.gitutil import sh
from tests.publishutil import (
    check_tree,
    deploy_tip,
    make_source,
    make_target,
    make_work,
    model,
)

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return make_work(tmp_path)


@pytest.fixture
def target(work: Path) -> pub.Target:
    return make_target(work)


@pytest.fixture
def source(target: pub.Target) -> pub.Source:
    return make_source(target)


@pytest.fixture(autouse=True)
def _forget_listings() -> Iterator[None]:
    yield
    git._LISTED.clear()


def publish(target: pub.Target, source: pub.Source, files: dict[str, bytes]) -> pub.Outcome:
    outcome = pub.publish_files(target, source, files)
    assert outcome.status == "published"
    return outcome


def change(files: dict[str, bytes]) -> None:
    files.update(model("llama", 3))


def add(files: dict[str, bytes]) -> None:
    files.update(model("bert", 1, ("dev",)))


def remove(files: dict[str, bytes]) -> None:
    for path in [p for p in files if p.startswith("models/qwen/")]:
        del files[path]


def file_to_folder(files: dict[str, bytes]) -> None:
    files["clusters/dev/kustomization.yaml/x"] = files.pop("clusters/dev/kustomization.yaml")


def folder_to_file(files: dict[str, bytes]) -> None:
    files["clusters/dev/kustomization.yaml"] = files.pop("clusters/dev/kustomization.yaml/x")


def rename(files: dict[str, bytes]) -> None:
    for path in [p for p in files if p.startswith("models/bert/")]:
        files[path.replace("models/bert/", "models/bert2/")] = files.pop(path)


def test_each_publish_equals_a_full_rebuild(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    publish(target, source, files)
    check_tree(work, target, files)
    for step in (change, add, remove, file_to_folder, rename, folder_to_file):
        step(files)
        publish(target, source, files)
        check_tree(work, target, files)
    assert sh(work, "fsck", "--strict", "--no-dangling") == ""


def test_new_files_stored_by_several_fast_imports_make_the_same_commits(
    work: Path, target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New files are given to fast-import a few bytes' worth at a time: each of those
    runs stores what it was given under the ids computed here, and the commits are
    what a full rebuild gives."""
    runs: list[int] = []
    real = git._fast_import

    def counted(repo: git.Repo, oids: Any, stream: bytearray) -> None:
        runs.append(len(oids))
        real(repo, oids, stream)

    monkeypatch.setattr(git, "FAST_IMPORT_BYTES", 100)
    monkeypatch.setattr(git, "_fast_import", counted)
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    publish(target, source, files)
    assert len(runs) > 1 and sum(runs) == len(set(files.values())) + 1  # and the metadata
    check_tree(work, target, files)
    runs.clear()
    change(files)
    publish(target, source, files)
    assert sum(runs) >= 1
    check_tree(work, target, files)
    assert sh(work, "fsck", "--strict", "--no-dangling") == ""


def test_the_change_listing_is_the_same_as_from_whole_trees(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    files = {**model("llama", 1), **model("qwen", 2), **model("bert", 1, ("dev",))}
    publish(target, source, files)
    old = git.read_tree_files(target.repo, deploy_tip(work))
    files.update(model("llama", 5))
    files.update(model("new", 1))
    for path in [p for p in files if p.startswith("models/bert/")]:
        del files[path]

    outcome = publish(target, source, files)

    new = git.read_tree_files(target.repo, deploy_tip(work))
    assert outcome.changes == pub.model_changes(old, new)
    assert outcome.changes == {
        "dev": pub.EnvironmentChanges(("new",), ("llama",), ("bert",)),
        "prod": pub.EnvironmentChanges(("new",), ("llama",), ()),
    }


def test_a_tip_moved_by_another_writer_loses_the_swap_and_is_rebuilt_on(
    work: Path, target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**model("llama", 1), **model("qwen", 2)}
    first = publish(target, source, files).commit
    assert first is not None
    # Another writer commits on the deploy branch (plain git) just before our swap.
    theirs_tree = sh(work, "mktree", input=b"")
    theirs = sh(work, "commit-tree", theirs_tree, "-p", first, "-m", "someone else")
    real = git.update_branch
    moved: list[str] = []

    def race(
        repo: git.Repo, branch: str, new: str, expected: str | None, pushed_to: str | None = None
    ) -> bool:
        if not moved:
            sh(work, "update-ref", "refs/heads/deploy", theirs, first)
            moved.append(theirs)
        return real(repo, branch, new, expected, pushed_to)

    monkeypatch.setattr(git, "update_branch", race)
    files.update(model("llama", 2))

    outcome = publish(target, source, files)

    assert outcome.attempts == 2
    info = git.commit_info(target.repo, deploy_tip(work))
    assert info.parents == (theirs,)
    check_tree(work, target, files)  # their empty tree was not taken for ours


def test_a_tip_deleted_meanwhile_gives_a_fresh_orphan(
    work: Path, target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**model("llama", 1)}
    first = publish(target, source, files).commit
    real = git.update_branch
    deleted: list[bool] = []

    def race(
        repo: git.Repo, branch: str, new: str, expected: str | None, pushed_to: str | None = None
    ) -> bool:
        if not deleted:
            sh(work, "update-ref", "-d", "refs/heads/deploy", str(first))
            deleted.append(True)
        return real(repo, branch, new, expected, pushed_to)

    monkeypatch.setattr(git, "update_branch", race)
    files.update(model("llama", 2))

    outcome = publish(target, source, files)

    assert outcome.attempts == 2
    assert git.commit_info(target.repo, deploy_tip(work)).parents == ()
    check_tree(work, target, files)


def test_a_tip_replaced_behind_our_back_is_listed_again(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    """The listing kept from our own commit is never used for someone else's."""
    files = {**model("llama", 1), **model("qwen", 2)}
    ours = publish(target, source, files).commit
    # Another writer drops qwen and changes llama's base behind our back.
    other = work.parent / "other"
    sh(work.parent, "clone", "-q", "--branch", "deploy", str(work), str(other))
    sh(other, "rm", "-rq", "models/qwen")
    (other / "models/llama/base/model.yaml").write_text("tampered\n")
    sh(other, "commit", "-qam", "tampered")
    sh(work, "fetch", "-q", str(other), "deploy:deploy", "--update-head-ok")
    assert deploy_tip(work) != ours

    outcome = publish(target, source, files)

    assert outcome.changes["prod"] == pub.EnvironmentChanges(("qwen",), ("llama",), ())
    check_tree(work, target, files)


def test_a_tip_with_a_symlink_is_refused_and_left_alone(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    files = {**model("llama", 1)}
    publish(target, source, files)
    blob = sh(work, "hash-object", "-w", "--stdin", input=b"/etc/passwd")
    tree = sh(work, "mktree", input=f"120000 blob {blob}\tmodels\n".encode())
    evil = sh(work, "commit-tree", tree, "-p", deploy_tip(work), "-m", "evil")
    sh(work, "update-ref", "refs/heads/deploy", evil)

    with pytest.raises(GitError, match=r"only regular files.*symlink 'models'"):
        pub.publish_files(target, source, {**files, **model("qwen", 1)})

    assert deploy_tip(work) == evil


def test_new_contents_at_the_same_paths_give_the_tree_of_a_full_rebuild(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    """A tree we wrote, with the same paths again, is rebuilt from its layout in memory:
    folders of changed files only. Its listing must stay exactly git's."""
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    publish(target, source, files)
    for replicas in (2, 3, 4):
        files.update(model("llama", replicas))
        files["clusters/dev/kustomization.yaml"] = f"replicas {replicas}\n".encode()
        publish(target, source, files)
        check_tree(work, target, files)
        tip = deploy_tip(work)
        remembered = git.read_tree(target.repo, tip)
        assert remembered.layout is not None  # from memory: the fast path was taken
        git._LISTED.clear()
        listed = git.read_tree(target.repo, tip)
        assert listed.files == remembered.files and listed.folders == remembered.folders
    files.update(model("qwen", 9))  # the memory was dropped: built on a listing from git
    publish(target, source, files)
    check_tree(work, target, files)
    assert sh(work, "fsck", "--strict", "--no-dangling") == ""


def test_blob_ids_hash_every_new_object_whatever_was_hashed_before(target: pub.Target) -> None:
    repo = target.repo
    files = {"a.yaml": b"a\n", "b.yaml": b"b\n"}
    first = git.blob_ids(repo, files)
    files["a.yaml"] = b"changed\n"  # another object at a path seen before
    files["c.yaml"] = files.pop("b.yaml")  # the same object at another path
    second = git.blob_ids(repo, files)
    for path, data in files.items():
        assert second[path] == sh(target.repo.git_dir, "hash-object", "--stdin", input=data)
    assert second["c.yaml"] == first["b.yaml"] and second["a.yaml"] != first["a.yaml"]


def test_blob_ids_of_files_that_know_their_digests_read_only_changed_ones(
    target: pub.Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tree taken from a stored build (outindex.Digested): a file whose digest is the
    one hashed last time is not read; one whose digest changed is, and each id is
    git's. Plain bytes hashed before are no digest's memo, nor the other way round."""
    repo = target.repo
    made = spool.spool()
    assert made is not None
    first = {"a.yaml": b"a\n", "b.yaml": b"b\n", "c.yaml": b"c\n"}
    git.blob_ids(repo, first)  # as bytes: their digests were never hashed
    files = spool.merged(made.put(first).spans(), {})
    assert git.blob_ids(repo, files) == _git_ids(target, first)
    changed = {**files.spans(), **made.put({"b.yaml": b"changed\n"}).spans()}
    read: list[str] = []
    real = spool.Spool.read_span

    def counted(self: spool.Spool, span: spool.Span) -> bytes:
        data = real(self, span)
        read.append(data.decode())
        return data

    monkeypatch.setattr(spool.Spool, "read_span", counted)
    second = git.blob_ids(repo, spool.merged(changed, {"d.yaml": b"d\n"}))
    monkeypatch.undo()
    assert read == ["changed\n"]
    assert second == _git_ids(target, {**first, "b.yaml": b"changed\n", "d.yaml": b"d\n"})
    assert git.blob_ids(repo, {**first}) == _git_ids(target, first)  # bytes again: hashed


def _git_ids(target: pub.Target, files: dict[str, bytes]) -> dict[str, str]:
    return {
        path: sh(target.repo.git_dir, "hash-object", "--stdin", input=data)
        for path, data in files.items()
    }


def test_the_prune_guard_from_thetouched_models_equals_the_whole_trees() -> None:
    old = {pub.METADATA_FILE: b"{}\n", "clusters/dev/k.yaml": b"x\n"}
    for index in range(10):
        old.update(model(f"m{index}", 1))
    shrunk = {p: d for p, d in old.items() if not p.startswith(("models/m1/", "models/m2/"))}
    shrunk.update(model("m3", 2))  # changed
    grown = {**old, **model("m11", 1)}
    for new in (shrunk, grown, dict(old)):
        touched = pub.touched_models(old, new, pub.differing_paths(old, new))
        changes = pub.model_changes(*touched)
        for max_shrink in (0.0, 0.1, 0.5):
            whole = pub.prune_problems(old, new, max_shrink, pub.model_changes(old, new))
            assert pub.prune_problems(old, new, max_shrink, changes, touched) == whole
    assert "drop from 20 to 16" in pub.prune_problems(old, shrunk, 0.1)[-1]


class _Counted(dict[str, bytes]):
    """Files that record whose bytes were looked at."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(files)
        self.read: set[str] = set()

    def __getitem__(self, path: str) -> bytes:
        self.read.add(path)
        return super().__getitem__(path)

    def items(self) -> Any:
        raise AssertionError("every file's bytes were asked for")


def test_model_changes_reads_only_the_models_on_both_sides() -> None:
    """A model only one side has is added or removed by its paths alone: a first
    publish (every model new) looks at no file's bytes."""
    old = {**model("kept", 1), **model("changed", 1), **model("gone", 1)}
    new = {**model("kept", 1), **model("changed", 2), **model("new", 1)}
    counted_old, counted_new = _Counted(old), _Counted(new)
    changes = pub.model_changes(counted_old, counted_new)
    assert changes == pub.model_changes(dict(old), dict(new))
    for env in ("dev", "prod"):
        assert (changes[env].added, changes[env].changed, changes[env].removed) == (
            ("new",),
            ("changed",),
            ("gone",),
        )
    both = {p for p in old if p.startswith(("models/kept/", "models/changed/"))}
    assert counted_old.read == both
    first = _Counted(new)
    assert pub.model_changes({}, first)["dev"].added == ("changed", "kept", "new")
    assert first.read == set()


def test_a_tip_recording_the_sources_parent_needs_no_history_question(
    work: Path, target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tip that records the new source's parent cannot hold a newer source: publish
    asks git nothing about it. A grandparent (or anything else) is asked about."""
    files = {**model("llama", 1)}
    publish(target, source, files)
    asked: list[tuple[str, ...]] = []
    real = git._git

    def counted(cwd: Path, git_dir: Path | None, args: Any, **kwargs: Any) -> Any:
        if "--is-ancestor" in args:
            asked.append(tuple(args))
        return real(cwd, git_dir, args, **kwargs)

    monkeypatch.setattr(git, "_git", counted)
    for step in (1, 2):
        (work / "specs" / "a.yaml").write_text(f"a: {step + 1}\n")
        sh(work, "commit", "-qam", f"step {step}")
    child = pub.Source(git.head_commit(target.repo), dirty=True, repo_url="https://example/r")
    files.update(model("llama", 2))
    assert pub.publish_files(target, child, files).status == "published"
    assert [a for a in asked if source.sha in a] != []  # the grandparent: asked
    asked.clear()
    (work / "specs" / "a.yaml").write_text("a: 9\n")
    sh(work, "commit", "-qam", "step 3")
    grandchild = pub.Source(git.head_commit(target.repo), dirty=True, repo_url="https://x/r")
    files.update(model("llama", 3))
    outcome = pub.publish_files(target, grandchild, files)
    assert outcome.status == "published" and asked == []  # the parent: nothing asked
    # The other way round, a tip holding a newer source, is still refused.
    assert pub.publish_files(target, child, files).status == "newer"


def test_a_first_publish_parses_no_object(
    target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no deploy branch yet there is no object the cluster could refuse to update:
    the objects written are not parsed for that check. Once a tip holds them, a model
    that changed is."""
    checked: list[tuple[int, int]] = []
    real = immutable.tree_changes

    def spy(old: Any, new: Any) -> Any:
        checked.append((len(old), len(new)))
        return real(old, new)

    monkeypatch.setattr(pub, "tree_changes", spy)
    files = {**model("llama", 1), **model("qwen", 2)}
    publish(target, source, files)
    assert checked == []
    files.update(model("llama", 2))
    publish(target, source, files)
    assert checked == [(len(model("llama", 1)), len(model("llama", 2)))]


@pytest.mark.parametrize("count", [3, pub._FEW_MODELS + 1], ids=["few", "many"])
def test_thetouched_models_cut_holds_exactly_their_files(count: int) -> None:
    """Whether the touched models' folders pick the candidates or each path is asked,
    each side keeps exactly the files of the models with any difference."""
    old = {pub.METADATA_FILE: b"{}\n", "clusters/dev/k.yaml": b"x\n"}
    for index in range(count + 5):
        old.update(model(f"m{index}", 1))
    new = {**old, "clusters/dev/k.yaml": b"y\n"}
    for index in range(count):  # the first `count` models change
        new.update(model(f"m{index}", 2))
    del new["models/m0/base/kustomization.yaml"]  # and one loses a file
    touched = {f"m{index}" for index in range(count)}
    cut = pub.touched_models(old, new, pub.differing_paths(old, new))
    for side, kept in zip((old, new), cut, strict=True):
        assert kept == {p: d for p, d in side.items() if outtree.model_of(p) in touched}
