"""The deploy tip's listing kept in the build cache (generator/listingcache.py).

A fresh process builds on the tip servegen made without `ls-tree`; these tests hold
that to the tree a full rebuild gives, and check that a tip anyone else made, and a
kept listing that is damaged, foreign or names unsafe entries, is never trusted: the
tip is listed with git. "A fresh process" is a publish after the in-memory listing is
dropped (`git._LISTED`). Real git throughout; another writer is plain git (`sh`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from generator import buildcache, git, listingcache
from generator import publish as pub
from generator.outindex import KnownDigests, digest
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


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The git commands servegen runs from now on (each process, by its subcommand)."""
    seen: list[str] = []
    real = git._git

    def counted(cwd: Path, git_dir: Path | None, args: Sequence[str], **kwargs: Any) -> Any:
        seen.append(args[0])
        return real(cwd, git_dir, args, **kwargs)

    monkeypatch.setattr(git, "_git", counted)
    return seen


def fresh_publish(
    target: pub.Target, source: pub.Source, files: Mapping[str, bytes]
) -> pub.Outcome:
    """A publish as a new process makes it: nothing remembered in memory (no listing,
    no blob id)."""
    git._LISTED.clear()
    git._LAST_BLOBS.clear()
    return pub.publish_files(target, source, files)


class CountedReads(dict[str, bytes]):
    """Files, each read of one by its path counted."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        super().__init__(files)
        self.read: list[str] = []

    def __getitem__(self, path: str) -> bytes:
        self.read.append(path)
        return super().__getitem__(path)


def stored(files: Mapping[str, bytes]) -> tuple[KnownDigests, CountedReads]:
    """`files` as a stored build gives them (each knows its digest), and their reads."""
    counted = CountedReads(files)
    return KnownDigests(counted, {path: digest(data) for path, data in files.items()}), counted


def entry_of(target: pub.Target, commit: str) -> Path:
    return buildcache.entry_path(listingcache._key(target.repo, commit))


def parts(entry: Path) -> tuple[bytes, bytes, bytes]:
    """A kept listing's head and record (a line each), then its files' digests (raw
    bytes, newlines among them)."""
    head, record, packed = entry.read_bytes().split(b"\n", 2)
    return head, record, packed


def rewrite(entry: Path, change: Any) -> None:
    """Change a kept listing's record and store it with a matching digest: only the
    checks on what it says can refuse it."""
    head, record, blobs = parts(entry)
    record = json.dumps(change(json.loads(record))).encode()
    found = json.loads(head)
    found["digest"] = hashlib.sha256(record + b"\n" + blobs).hexdigest()
    entry.write_bytes(json.dumps(found).encode() + b"\n" + record + b"\n" + blobs)


def test_a_fresh_publish_builds_on_the_kept_listing_without_listing_the_tip(
    work: Path, target: pub.Target, source: pub.Source, commands: list[str]
) -> None:
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    first = fresh_publish(target, source, files)
    assert first.commit is not None and entry_of(target, first.commit).is_file()
    for replicas in (2, 3):
        files.update(model("llama", replicas))
        commands.clear()
        outcome = fresh_publish(target, source, files)
        assert outcome.status == "published"
        assert "ls-tree" not in commands  # the tip's listing came from the cache
        check_tree(work, target, files)
    files.update(model("bert", 1))  # new paths: built from the kept listing all the same
    fresh_publish(target, source, files)
    check_tree(work, target, files)
    assert sh(work, "fsck", "--strict", "--no-dangling") == ""


def test_files_that_know_their_digests_are_read_only_where_they_changed(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    """The kept listing records each file's digest beside its blob id: a fresh publish
    of a stored build's files finds the blob id of every unchanged file by its digest,
    and reads only the files of the models that changed (to hash what changed, and to
    compare those models' objects). The tree is what a full rebuild gives."""
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    first, counted = stored(files)
    assert fresh_publish(target, source, first).status == "published"
    assert set(counted.read) == set(files)  # nothing kept yet: each file hashed
    for replicas in (2, 3):
        before = dict(files)
        files.update(model("llama", replicas))
        files["models/bert/base/model.yaml"] = f"bert: {replicas}\n".encode()  # and paths
        touched = {p for p in files if p.startswith(("models/llama/", "models/bert/"))}
        again, counted = stored(files)
        outcome = fresh_publish(target, source, again)
        assert outcome.status == "published"
        assert set(counted.read) == touched
        assert {p for p in files if before.get(p) != files[p]} < touched  # (what changed)
        check_tree(work, target, files)


def test_a_kept_digest_is_used_only_for_the_path_it_was_kept_for(
    work: Path, target: pub.Target, source: pub.Source
) -> None:
    """Two paths trading their bytes trade digests too: each is read and hashed again,
    and the tree holds each path's new bytes."""
    files = {"models/a/base/model.yaml": b"one\n", "models/b/base/model.yaml": b"two\n"}
    fresh_publish(target, source, stored(files)[0])
    swapped = {"models/a/base/model.yaml": b"two\n", "models/b/base/model.yaml": b"one\n"}
    again, counted = stored(swapped)
    assert fresh_publish(target, source, again).status == "published"
    assert set(counted.read) == set(swapped)
    check_tree(work, target, swapped)


def test_each_kept_digest_is_the_digest_of_the_file_at_its_path(
    target: pub.Target, source: pub.Source
) -> None:
    """The digests are kept in the listing's own order, not beside their paths: read
    back, each must still be its own file's (many folders, names that sort apart)."""
    files = {
        **{f"models/m{i:02d}/base/model.yaml": f"model: {i}\n".encode() for i in range(30)},
        **{f"models/m{i:02d}/overlays/prod/patch.yaml": f"p: {i}\n".encode() for i in range(30)},
        "clusters/dev/kustomization.yaml": b"a\n",
        "README.md": b"readme\n",
    }
    commit = fresh_publish(target, source, stored(files)[0]).commit
    assert commit is not None
    found = listingcache.load(target.repo, commit)
    assert found is not None
    tree, digests = found
    assert tree.layout is not None  # its files in the order the digests were kept in:
    in_order = [path for path, oid in git.layout_entries(tree.layout) if oid is not None]
    assert list(git.file_oids(tree)) == in_order
    committed = git.read_tree_files(target.repo, commit)
    assert set(git.file_oids(tree)) == set(committed) == {*files, "hydrator.metadata"}
    # Every file knew its digest here: each is read back as its own file's.
    assert digests == {path: digest(data) for path, data in committed.items()}


def test_a_tip_someone_else_made_is_listed_with_git(
    work: Path, target: pub.Target, source: pub.Source, commands: list[str]
) -> None:
    """Our listing is kept for our commit; another writer's commit on top is a tip
    with no kept listing: what they changed is seen, not what we wrote."""
    files = {**model("llama", 1), **model("qwen", 2)}
    ours = fresh_publish(target, source, files).commit
    assert ours is not None
    other = work.parent / "other"
    sh(work.parent, "clone", "-q", "--branch", "deploy", str(work), str(other))
    (other / "models/llama/base/model.yaml").write_text("tampered\n")
    sh(other, "commit", "-qam", "tampered")
    sh(work, "fetch", "-q", str(other), "deploy:deploy", "--update-head-ok")
    theirs = deploy_tip(work)
    commands.clear()

    outcome = fresh_publish(target, source, files)  # the very files we published before

    assert "ls-tree" in commands
    assert outcome.status == "published"  # not "up-to-date": their change was seen
    assert outcome.changes["prod"] == pub.EnvironmentChanges((), ("llama",), ())
    assert git.commit_info(target.repo, deploy_tip(work)).parents == (theirs,)
    check_tree(work, target, files)


def test_only_the_latest_listing_is_kept(target: pub.Target, source: pub.Source) -> None:
    files = {**model("llama", 1)}
    first = fresh_publish(target, source, files).commit
    files.update(model("llama", 2))
    second = fresh_publish(target, source, files).commit
    assert first is not None and second is not None
    assert entry_of(target, second).is_file() and not entry_of(target, first).exists()


def test_the_watcher_keeps_no_listing(target: pub.Target, source: pub.Source) -> None:
    files = {**model("llama", 1)}
    outcome = pub.publish_files(dataclasses.replace(target, keep_listing=False), source, files)
    assert outcome.commit is not None
    assert not entry_of(target, outcome.commit).exists()


def test_no_listing_is_kept_or_read_with_the_cache_off(
    target: pub.Target, source: pub.Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**model("llama", 1)}
    first = fresh_publish(target, source, files).commit
    assert first is not None and entry_of(target, first).is_file()
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    assert listingcache.load(target.repo, first) is None
    files.update(model("llama", 2))
    second = fresh_publish(target, source, files).commit
    assert second is not None and not entry_of(target, second).exists()


def damaged(entry: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[len(parts(entry)[0]) + 20] ^= 0x01  # one bit of the record
    entry.write_bytes(bytes(data))


def truncated(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-100])


def for_another_commit(entry: Path) -> None:
    rewrite(entry, lambda data: {**data, "commit": "1" * 40})


def with_a_parent_folder_name(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["layout"][""][".."] = data["layout"][""].pop("hydrator.metadata")
        return data

    rewrite(entry, change)


def with_a_git_folder_name(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        folder = data["layout"]["models/llama/base"]
        folder[".GIT"] = folder.pop("model.yaml")
        return data

    rewrite(entry, change)


def with_an_unlisted_sub_folder(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["layout"][""]["extra"] = None
        return data

    rewrite(entry, change)


def with_a_short_id(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["layout"][""]["hydrator.metadata"] = "abc"
        return data

    rewrite(entry, change)


def with_a_non_hex_id(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["folders"]["models/llama"] = "g" * 40
        return data

    rewrite(entry, change)


def with_a_folder_unlisted(entry: Path) -> None:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        del data["layout"]["models/llama/base"]
        del data["folders"]["models/llama/base"]
        return data

    rewrite(entry, change)


def with_another_files_id(entry: Path) -> None:
    """A well-formed id that is not the file's: caught by the digest alone."""
    head, record, blobs = parts(entry)
    data = json.loads(record)
    data["layout"][""]["hydrator.metadata"] = "0" * 40
    entry.write_bytes(head + b"\n" + json.dumps(data).encode() + b"\n" + blobs)


def with_another_files_digest(entry: Path) -> None:
    """A file's digest changed in the digests: caught by the entry's digest."""
    head, record, packed = parts(entry)
    changed = bytes([packed[0], packed[1] ^ 0x01]) + packed[2:]  # the first file's
    entry.write_bytes(head + b"\n" + record + b"\n" + changed)


def repacked(entry: Path, change: Any) -> None:
    """Change a kept listing's digests and store them with a matching entry digest:
    only the checks on their records can refuse them."""
    head, record, packed = parts(entry)
    packed = change(packed)
    found = json.loads(head)
    found["digest"] = hashlib.sha256(record + b"\n" + packed).hexdigest()
    entry.write_bytes(json.dumps(found).encode() + b"\n" + record + b"\n" + packed)


def with_a_digest_too_few(entry: Path) -> None:
    repacked(entry, lambda packed: packed[: -len(listingcache._NONE)])


def with_a_digest_too_many(entry: Path) -> None:
    repacked(entry, lambda packed: packed + listingcache._NONE)


def with_an_unknown_flag(entry: Path) -> None:
    repacked(entry, lambda packed: b"\x02" + packed[1:])


def with_an_unknown_digest_not_zero(entry: Path) -> None:
    """A file whose digest is not known has zeros where the digest goes: the first
    file's flag says unknown, its digest is left there."""
    repacked(entry, lambda packed: b"\x00" + packed[1:])


@pytest.mark.parametrize(
    "spoil",
    [
        damaged,
        with_a_digest_too_few,
        with_a_digest_too_many,
        with_an_unknown_flag,
        with_an_unknown_digest_not_zero,
        truncated,
        for_another_commit,
        with_a_parent_folder_name,
        with_a_git_folder_name,
        with_an_unlisted_sub_folder,
        with_a_short_id,
        with_a_non_hex_id,
        with_a_folder_unlisted,
        with_another_files_id,
        with_another_files_digest,
    ],
)
def test_a_spoilt_listing_is_a_miss_and_the_tip_is_listed_with_git(
    work: Path,
    target: pub.Target,
    source: pub.Source,
    commands: list[str],
    spoil: Any,
) -> None:
    files = {**model("llama", 1), **model("qwen", 2)}
    first = fresh_publish(target, source, stored(files)[0]).commit  # digests kept too
    assert first is not None
    assert listingcache.load(target.repo, first) is not None
    spoil(entry_of(target, first))
    assert listingcache.load(target.repo, first) is None
    files.update(model("llama", 5))
    commands.clear()
    again, counted = stored(files)
    assert fresh_publish(target, source, again).status == "published"
    assert set(counted.read) == set(files)  # no digest taken from the spoilt entry
    assert "ls-tree" in commands
    check_tree(work, target, files)


@pytest.mark.parametrize("folders", [1, 3, git._RECORD_FOLDERS])
def test_the_kept_listing_is_the_listing_git_gives(
    target: pub.Target, source: pub.Source, folders: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever number of folders the record's layout is encoded at a time."""
    monkeypatch.setattr(git, "_RECORD_FOLDERS", folders)
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    for replicas in (1, 2):
        files.update(model("qwen", replicas))
        commit = fresh_publish(target, source, files).commit
        assert commit is not None
        found = listingcache.load(target.repo, commit)
        made = git.made_listing(target.repo, commit)
        git._LISTED.clear()
        listed = git.read_tree(target.repo, commit)  # by git
        assert found is not None and made is not None and made.layout is not None
        kept = found[0]
        assert kept.files == listed.files and kept.folders == listed.folders
        assert kept.layout == {folder: dict(names) for folder, names in made.layout.items()}
