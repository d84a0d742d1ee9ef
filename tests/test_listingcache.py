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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from generator import buildcache, git, listingcache
from generator import publish as pub
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


def fresh_publish(target: pub.Target, source: pub.Source, files: dict[str, bytes]) -> pub.Outcome:
    """A publish as a new process makes it: nothing remembered in memory."""
    git._LISTED.clear()
    return pub.publish_files(target, source, files)


def entry_of(target: pub.Target, commit: str) -> Path:
    return buildcache.entry_path(listingcache._key(target.repo, commit))


def rewrite(entry: Path, change: Any) -> None:
    """Change a kept listing's record and store it with a matching digest: only the
    checks on what it says can refuse it."""
    head, _, record = entry.read_bytes().partition(b"\n")
    data = change(json.loads(record))
    record = json.dumps(data).encode()
    found = json.loads(head)
    found["digest"] = hashlib.sha256(record).hexdigest()
    entry.write_bytes(json.dumps(found).encode() + b"\n" + record)


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
    data[-20] ^= 0x01  # one bit of the record
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
    head, _, record = entry.read_bytes().partition(b"\n")
    data = json.loads(record)
    data["layout"][""]["hydrator.metadata"] = "0" * 40
    entry.write_bytes(head + b"\n" + json.dumps(data).encode())


@pytest.mark.parametrize(
    "spoil",
    [
        damaged,
        truncated,
        for_another_commit,
        with_a_parent_folder_name,
        with_a_git_folder_name,
        with_an_unlisted_sub_folder,
        with_a_short_id,
        with_a_non_hex_id,
        with_a_folder_unlisted,
        with_another_files_id,
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
    first = fresh_publish(target, source, files).commit
    assert first is not None
    assert listingcache.load(target.repo, first) is not None
    spoil(entry_of(target, first))
    assert listingcache.load(target.repo, first) is None
    files.update(model("llama", 5))
    commands.clear()
    assert fresh_publish(target, source, files).status == "published"
    assert "ls-tree" in commands
    check_tree(work, target, files)


def test_the_kept_listing_is_the_listing_git_gives(target: pub.Target, source: pub.Source) -> None:
    files = {**model("llama", 1), **model("qwen", 2), "clusters/dev/kustomization.yaml": b"a\n"}
    for replicas in (1, 2):
        files.update(model("qwen", replicas))
        commit = fresh_publish(target, source, files).commit
        assert commit is not None
        kept = listingcache.load(target.repo, commit)
        listed = git.read_tree(target.repo, commit)
        assert kept is not None and kept.layout is not None
        assert kept.files == listed.files and kept.folders == listed.folders
