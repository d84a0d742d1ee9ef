"""Tests for generator.git against real git repositories (no mocks).

Every test runs with an isolated global config (HOME, GIT_CONFIG_GLOBAL,
GIT_CONFIG_NOSYSTEM) and identity set through the environment.  Setup uses the git
CLI directly (`sh`), independently of the module under test.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import git as g
from generator.errors import GitError
from tests.gitutil import sh

AUTHOR = g.Identity("Ada Author", "ada@example.com", "2024-05-01T12:00:00+02:00")
COMMITTER = g.Identity("Servegen Bot", "bot@example.com", "2024-05-01T12:30:00+00:00")

# Variables the test harness keeps for its own `git` calls; everything else GIT_* is
# dropped so a bogus GIT_DIR set by a test cannot redirect the setup commands.


pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def git_identity() -> tuple[tuple[str, str], tuple[str, str]]:
    """The setup identity differs from AUTHOR and COMMITTER, so tests see which one git used."""
    return ("Setup Author", "setup@example.com"), ("Setup Committer", "setup@example.com")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository standing in for the deploy remote."""
    path = tmp_path / "remote.git"
    sh(tmp_path, "init", "-q", "--bare", str(path))
    return path


@pytest.fixture
def work(tmp_path: Path, remote: Path) -> Path:
    """A spec checkout with one commit, an origin remote and a dirty working tree."""
    path = tmp_path / "work"
    (path / "specs" / "llama").mkdir(parents=True)
    (path / "specs" / "llama" / "serve.yaml").write_text("model: llama\n")
    (path / "servegen.yaml").write_text("deploy: {}\n")
    sh(tmp_path, "init", "-q", str(path))
    sh(path, "add", "-A")
    message = "Add llama\n\nServe llama-3 on the a100 pool.\n\nSigned-off-by: Ada <ada@x>\n"
    sh(path, "commit", "-q", "-F", "-", input=message.encode())
    sh(path, "remote", "add", "origin", str(remote))
    # Leave the user mid-edit: one staged, one unstaged, one untracked change.
    (path / "servegen.yaml").write_text("deploy: {branch: deploy}\n")
    (path / "specs" / "staged.yaml").write_text("staged: true\n")
    sh(path, "add", "specs/staged.yaml")
    (path / "notes.txt").write_text("untracked\n")
    return path


@pytest.fixture
def repo(work: Path) -> g.Repo:
    return g.open_repo(work)


def user_state(path: Path) -> tuple[str, bytes, str, str]:
    """Everything about the checkout the user could notice us touching."""
    return (
        sh(path, "status", "--porcelain=v1", "--untracked-files=all"),
        (path / ".git" / "index").read_bytes(),
        sh(path, "rev-parse", "HEAD"),
        sh(path, "symbolic-ref", "HEAD"),
    )


NESTED_FILES = {
    "README.md": b"# deploy\n",
    "clusters/prod/kustomization.yaml": b"resources:\n- llama.yaml\n",
    "clusters/prod/llama.yaml": b"kind: Model\r\nname: llama\n",  # CRLF kept verbatim
    "clusters/prod/deep/er/still/x.bin": bytes(range(256)) * 4,
    "clusters/staging/empty.yaml": b"",
    "clusters/staging/ünïcode name.yaml": "é: ü\n".encode(),
    "no-trailing-newline": b"abc",
}


# --------------------------------------------------------------------------- open / read


def test_open_repo_finds_toplevel_from_subdirectory(work: Path) -> None:
    opened = g.open_repo(work / "specs" / "llama")
    assert opened.worktree == work.resolve()
    assert opened.git_dir == (work / ".git").resolve()


def test_open_repo_bare(remote: Path) -> None:
    opened = g.open_repo(remote)
    assert opened.worktree is None
    assert opened.git_dir == remote.resolve()


def test_open_repo_outside_a_repository_is_a_git_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        g.open_repo(plain)
    with pytest.raises(GitError, match="not a directory"):
        g.open_repo(tmp_path / "missing")


def test_head_commit(repo: g.Repo, work: Path) -> None:
    info = g.head_commit(repo)
    assert info.sha == sh(work, "rev-parse", "HEAD")
    assert info.tree == sh(work, "rev-parse", "HEAD^{tree}")
    assert info.parents == ()
    assert info.subject == "Add llama"
    assert info.body == "Serve llama-3 on the a100 pool.\n\nSigned-off-by: Ada <ada@x>"
    assert info.trailers == (("Signed-off-by", "Ada <ada@x>"),)
    assert (info.author.name, info.author.email) == ("Setup Author", "setup@example.com")
    assert info.author.date == sh(work, "log", "-1", "--format=%aI")
    assert info.committer.name == "Setup Committer"


def test_commit_info_parses_dates_and_multiline_subject(repo: g.Repo) -> None:
    sha = g.commit_tree(
        repo,
        g.tree_of(repo, "HEAD"),
        [],
        "first line\nsecond line\n\nbody text\nmore\n",
        g.Identity("A", "a@x", "2001-02-03T04:05:06-0930"),
        COMMITTER,
    )
    info = g.commit_info(repo, sha)
    assert info.subject == "first line second line"
    assert info.body == "body text\nmore"
    assert info.trailers == ()
    assert info.author.date == "2001-02-03T04:05:06-09:30"
    assert info.committer.date == "2024-05-01T12:30:00+00:00"


def test_read_tree_files_of_head(repo: g.Repo) -> None:
    assert g.read_tree_files(repo, "HEAD") == {
        "servegen.yaml": b"deploy: {}\n",
        "specs/llama/serve.yaml": b"model: llama\n",
    }
    assert g.read_tree_files(repo, "HEAD", "specs") == {"llama/serve.yaml": b"model: llama\n"}
    assert g.read_tree_files(repo, "HEAD", "/specs/llama/") == {"serve.yaml": b"model: llama\n"}
    assert g.read_tree_files(repo, "HEAD", "no/such/dir") == {}


def test_read_tree_files_errors(repo: g.Repo) -> None:
    with pytest.raises(GitError, match="unknown revision"):
        g.read_tree_files(repo, "no-such-branch")
    with pytest.raises(GitError, match="not a directory"):
        g.read_tree_files(repo, "HEAD", "servegen.yaml")
    with pytest.raises(GitError, match="invalid revision"):
        g.read_tree_files(repo, "--output=/tmp/x")
    with pytest.raises(GitError, match="unsafe path"):
        g.read_tree_files(repo, "HEAD", "../etc")


def test_read_tree_files_many_files(tmp_path: Path) -> None:
    path = tmp_path / "many"
    expected: dict[str, bytes] = {}
    for i in range(2000):
        rel = f"d{i % 10}/sub{i % 37}/file-{i}.yaml"
        data = f"index: {i}\n".encode() * (i % 5) + bytes([i % 256])
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        expected[rel] = data
    sh(tmp_path, "init", "-q", str(path))
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "many")
    many = g.open_repo(path)

    files = g.read_tree_files(many, "HEAD")  # its speed: bench/bench_limits.py

    assert files == expected
    assert list(files) == sorted(expected)  # git order, deterministic
    assert g.read_tree_files(many, "HEAD", "d3") == {
        rel.removeprefix("d3/"): data for rel, data in expected.items() if rel.startswith("d3/")
    }


# --------------------------------------------------------------------------- build / CAS


def test_build_commit_roundtrip_and_noop_detection(repo: g.Repo, work: Path) -> None:
    sha = g.build_commit(repo, NESTED_FILES, None, "Publish\n\nDetails.", AUTHOR, COMMITTER)

    assert g.read_tree_files(repo, sha) == NESTED_FILES
    info = g.commit_info(repo, sha)
    assert info.parents == ()
    assert (info.subject, info.body) == ("Publish", "Details.")
    assert info.author == g.Identity("Ada Author", "ada@example.com", "2024-05-01T12:00:00+02:00")
    assert info.committer.name == "Servegen Bot"
    assert sh(work, "cat-file", "-p", sha).count("gpgsig") == 0
    # Same content, same tree: callers can skip a no-op commit.
    assert g.write_tree(repo, dict(reversed(NESTED_FILES.items()))) == g.tree_of(repo, sha)
    assert g.write_tree(repo, {**NESTED_FILES, "README.md": b"changed"}) != info.tree

    child = g.build_commit(repo, {"only.yaml": b"x: 1\n"}, sha, "next", AUTHOR, COMMITTER)
    assert g.commit_info(repo, child).parents == (sha,)
    assert g.read_tree_files(repo, child) == {"only.yaml": b"x: 1\n"}


_DIR = st.text(st.sampled_from("abcXYZ019-_.é ü"), min_size=1, max_size=6).map("d".__add__)
_FILE = st.text(st.sampled_from("abcXYZ019-_.é ü"), min_size=1, max_size=8).map("f".__add__)
_PATHS = st.builds(lambda dirs, name: "/".join([*dirs, name]), st.lists(_DIR, max_size=3), _FILE)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.dictionaries(_PATHS, st.binary(max_size=300), max_size=30))
def test_write_then_read_roundtrips_any_tree(repo: g.Repo, files: dict[str, bytes]) -> None:
    # Directories start with "d" and files with "f", so no path is both.
    sha = g.build_commit(repo, files, None, "property", AUTHOR, COMMITTER)
    assert g.read_tree_files(repo, sha) == files


def object_counts(path: Path) -> dict[str, str]:
    lines = sh(path, "count-objects", "-v").splitlines()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in lines)}


def test_existing_objects_are_not_written_again(repo: g.Repo, work: Path) -> None:
    g.write_tree(repo, NESTED_FILES)
    before = object_counts(work)
    g.write_tree(repo, NESTED_FILES)
    after = object_counts(work)
    assert (after["count"], after["in-pack"], after["packs"]) == (
        before["count"],
        before["in-pack"],
        before["packs"],
    )


def test_sha256_repository(tmp_path: Path) -> None:
    path = tmp_path / "sha256"
    sh(tmp_path, "init", "-q", "--object-format=sha256", str(path))
    repo = g.open_repo(path)
    assert repo.object_format == "sha256"
    sha = g.build_commit(repo, NESTED_FILES, None, "sha256", AUTHOR, COMMITTER)
    assert len(sha) == 64
    assert g.update_branch(repo, "deploy", sha, None)
    assert g.read_tree_files(repo, "deploy") == NESTED_FILES
    assert sh(path, "fsck", "--strict", "--no-dangling") == ""


def test_build_commit_empty_tree(repo: g.Repo) -> None:
    sha = g.build_commit(repo, {}, None, "empty", AUTHOR, COMMITTER)
    assert g.read_tree_files(repo, sha) == {}
    assert g.tree_of(repo, sha) == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.mark.parametrize(
    "bad",
    ["../escape", "/abs.yaml", "a//b", "a/./b", "a/", "", ".git/config", "x/.GIT/hooks/p", "a\\b"],
)
def test_build_commit_rejects_unsafe_paths(repo: g.Repo, bad: str) -> None:
    with pytest.raises(GitError, match="unsafe path"):
        g.write_tree(repo, {bad: b"x", "ok.yaml": b"y"})


def test_build_commit_rejects_file_directory_clash(repo: g.Repo) -> None:
    with pytest.raises(GitError, match="both as a file and a directory: a/b"):
        g.write_tree(repo, {"a/b": b"file", "a/b/c": b"nested"})


def test_update_branch_compare_and_swap(repo: g.Repo, work: Path) -> None:
    first = g.build_commit(repo, {"a.yaml": b"1"}, None, "one", AUTHOR, COMMITTER)
    second = g.build_commit(repo, {"a.yaml": b"2"}, first, "two", AUTHOR, COMMITTER)
    other = g.build_commit(repo, {"a.yaml": b"3"}, first, "three", AUTHOR, COMMITTER)

    assert g.branch_sha(repo, "deploy") is None
    assert g.update_branch(repo, "deploy", first, None) is True  # orphan branch created
    assert g.branch_sha(repo, "deploy") == first
    assert g.update_branch(repo, "deploy", second, None) is False  # exists already
    assert g.update_branch(repo, "deploy", second, other) is False  # stale old value
    assert g.branch_sha(repo, "deploy") == first
    assert g.update_branch(repo, "deploy", second, first) is True
    assert g.branch_sha(repo, "deploy") == second
    assert g.update_branch(repo, "gone", second, first) is False  # expected it to exist
    assert sh(work, "rev-parse", "refs/heads/deploy") == second


def test_update_branch_loses_to_a_concurrent_lock(repo: g.Repo, work: Path) -> None:
    first = g.build_commit(repo, {"a.yaml": b"1"}, None, "one", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", first, None)
    second = g.build_commit(repo, {"a.yaml": b"2"}, first, "two", AUTHOR, COMMITTER)
    lock = work / ".git" / "refs" / "heads" / "deploy.lock"
    lock.write_text("held by another writer\n")
    assert g.update_branch(repo, "deploy", second, first) is False
    lock.unlink()
    assert g.update_branch(repo, "deploy", second, first) is True


def test_update_branch_errors(repo: g.Repo, work: Path) -> None:
    sha = g.build_commit(repo, {"a": b"1"}, None, "one", AUTHOR, COMMITTER)
    with pytest.raises(GitError, match="unknown revision"):
        g.update_branch(repo, "deploy", "1" * 40, None)
    with pytest.raises(GitError, match="invalid branch name"):
        g.update_branch(repo, "bad..name", sha, None)
    with pytest.raises(GitError, match="invalid branch name 'HEAD'"):  # as git branch says
        g.update_branch(repo, "HEAD", sha, None)
    with pytest.raises(GitError, match="not a ref"):
        g.update_branch(repo, "refs/heads/x", sha, None)
    with pytest.raises(GitError, match="checked out"):
        g.update_branch(repo, "main", sha, sh(work, "rev-parse", "HEAD"))


def test_update_branch_refuses_branch_checked_out_in_linked_worktree(
    repo: g.Repo, work: Path, tmp_path: Path
) -> None:
    sh(work, "worktree", "add", "-q", "-b", "deploy", str(tmp_path / "linked"))
    head = sh(work, "rev-parse", "deploy")
    sha = g.build_commit(repo, {"a": b"1"}, head, "x", AUTHOR, COMMITTER)
    with pytest.raises(GitError, match="checked out"):
        g.update_branch(repo, "deploy", sha, head)
    assert sh(work, "rev-parse", "deploy") == head


def test_update_branch_ref_conflict_is_an_error_not_a_lost_race(repo: g.Repo) -> None:
    sha = g.build_commit(repo, {"a": b"1"}, None, "x", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", sha, None)
    with pytest.raises(GitError, match="cannot update refs/heads/deploy/sub"):
        g.update_branch(repo, "deploy/sub", sha, None)


def test_orphan_branch_leaves_checkout_alone(repo: g.Repo, work: Path) -> None:
    before = user_state(work)

    sha = g.build_commit(repo, NESTED_FILES, None, "deploy root", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", sha, None)
    child = g.build_commit(repo, {"x": b"y"}, sha, "deploy 2", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", child, sha)
    g.read_tree_files(repo, "deploy")
    g.export_tree(repo, "deploy", work.parent / "exported")

    assert user_state(work) == before
    assert g.merge_base(repo, "deploy", "main") is None  # unrelated (orphan) history
    assert sh(work, "log", "--format=%s", "deploy").splitlines() == ["deploy 2", "deploy root"]
    assert (work / "specs" / "staged.yaml").read_text() == "staged: true\n"


def test_build_commit_in_bare_repository(remote: Path) -> None:
    bare = g.open_repo(remote)
    sha = g.build_commit(bare, NESTED_FILES, None, "bare", AUTHOR, COMMITTER)
    assert g.update_branch(bare, "deploy", sha, None)
    assert g.read_tree_files(bare, "deploy") == NESTED_FILES


def test_fsck_clean_after_building_and_pushing(repo: g.Repo, work: Path, remote: Path) -> None:
    first = g.build_commit(repo, NESTED_FILES, None, "one", AUTHOR, COMMITTER)
    second = g.build_commit(repo, {**NESTED_FILES, "b": b"2"}, first, "two", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", second, None)
    assert g.push_branch(repo, "origin", second, "deploy", None).ok
    for path in (work, remote):
        proc = subprocess.run(
            ["git", "fsck", "--strict", "--no-dangling", "--no-progress"],
            cwd=path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "error" not in proc.stderr and "warning" not in proc.stderr, proc.stderr


def test_ancestry_helpers(repo: g.Repo) -> None:
    base = g.build_commit(repo, {"a": b"1"}, None, "base", AUTHOR, COMMITTER)
    left = g.build_commit(repo, {"a": b"2"}, base, "left", AUTHOR, COMMITTER)
    right = g.build_commit(repo, {"a": b"3"}, base, "right", AUTHOR, COMMITTER)
    assert g.is_ancestor(repo, base, left)
    assert g.is_ancestor(repo, left, left)
    assert not g.is_ancestor(repo, left, base)
    assert g.merge_base(repo, left, right) == base
    assert g.merge_base(repo, left, "HEAD") is None
    with pytest.raises(GitError):
        g.is_ancestor(repo, "no-such-rev", left)


# --------------------------------------------------------------------------- export


def test_export_tree_writes_regular_files(repo: g.Repo, tmp_path: Path) -> None:
    sha = g.build_commit(repo, NESTED_FILES, None, "x", AUTHOR, COMMITTER)
    dest = tmp_path / "out"
    written = g.export_tree(repo, sha, dest)
    assert sorted(written) == sorted(NESTED_FILES)
    for rel, data in NESTED_FILES.items():
        assert (dest / rel).read_bytes() == data
    with pytest.raises(GitError, match="missing or empty"):
        g.export_tree(repo, sha, dest)
    prefixed = tmp_path / "prefixed"
    assert g.export_tree(repo, sha, prefixed, "clusters/prod") == [
        "deep/er/still/x.bin",
        "kustomization.yaml",
        "llama.yaml",
    ]


def test_symlinks_and_submodules_are_refused_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "special"
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "run.sh").write_text("#!/bin/sh\n")
    (path / "bin" / "run.sh").chmod(0o755)
    (path / "plain.yaml").write_text("a: 1\n")
    (path / "link.yaml").symlink_to("/etc/passwd")
    sh(tmp_path, "init", "-q", str(path))
    sh(path, "add", "-A")
    sh(path, "update-index", "--add", "--cacheinfo", f"160000,{'a' * 40},vendor/sub")
    sh(path, "commit", "-q", "-m", "special entries")
    special = g.open_repo(path)

    with pytest.raises(GitError, match=r"symlink 'link\.yaml'.*submodule 'vendor/sub'"):
        g.read_tree_files(special, "HEAD")
    with pytest.raises(GitError, match=r"symlink 'link\.yaml'"):
        g.export_tree(special, "HEAD", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()

    assert g.read_tree_files(special, "HEAD", skip_special=True) == {
        "bin/run.sh": b"#!/bin/sh\n",
        "plain.yaml": b"a: 1\n",
    }
    dest = tmp_path / "skipped"
    assert g.export_tree(special, "HEAD", dest, skip_special=True) == ["bin/run.sh", "plain.yaml"]
    assert not (dest / "link.yaml").exists() and not (dest / "vendor").exists()
    assert (dest / "bin" / "run.sh").stat().st_mode & stat.S_IXUSR
    assert not (dest / "plain.yaml").stat().st_mode & stat.S_IXUSR

    # With links, the export is judged as a working tree is: a symlink is a link holding
    # the tree's text, never followed, and a submodule a folder holding a `.git` (which
    # the loader refuses among the specs), with nothing of the submodule's in it.
    linked = tmp_path / "linked"
    assert g.export_tree(special, "HEAD", linked, skip_special=True, links=True) == [
        "bin/run.sh",
        "plain.yaml",
    ]
    assert (linked / "link.yaml").readlink() == Path("/etc/passwd")
    assert [p.name for p in (linked / "vendor" / "sub").iterdir()] == [".git"]
    assert (linked / "vendor" / "sub" / ".git").read_bytes() == b""


def test_export_tree_refuses_hand_made_traversal(repo: g.Repo, work: Path, tmp_path: Path) -> None:
    # `git mktree` accepts a ".." entry; such a tree must not write outside dest.
    blob = sh(work, "hash-object", "-w", "--stdin", input=b"owned\n")
    inner = sh(work, "mktree", input=f"100644 blob {blob}\tpwned.txt\n".encode())
    outer = sh(work, "mktree", input=f"040000 tree {inner}\t..\n".encode())
    commit = sh(work, "commit-tree", outer, "-m", "evil")
    dest = tmp_path / "box" / "dest"
    with pytest.raises(GitError, match=r"unsafe path '\.\./pwned\.txt'"):
        g.export_tree(repo, commit, dest)
    assert not (tmp_path / "box" / "pwned.txt").exists()


def test_the_quick_path_check_refuses_exactly_what_the_pattern_refuses() -> None:
    """Every path of up to 5 characters over the letters that matter: the substring
    tests only ever pass a path the pattern passes, so _path_parts refuses the same."""
    letters = "a./\\\0giGT"
    for size in range(6):
        for chars in itertools.product(letters, repeat=size):
            path = "".join(chars)
            unsafe = g._UNSAFE_PATH.search(path) is not None
            assert not (g._plainly_safe(path) and unsafe), path
            try:
                g._path_parts(path)
            except GitError:
                assert unsafe, path
            else:
                assert not unsafe, path


# --------------------------------------------------------------------------- remotes


def test_push_to_bare_remote_and_fetch_back(repo: g.Repo, remote: Path) -> None:
    assert g.fetch_branch(repo, "origin", "deploy") is None
    first = g.build_commit(repo, NESTED_FILES, None, "one", AUTHOR, COMMITTER)

    result = g.push_branch(repo, "origin", first, "deploy", None)
    assert result.status is g.PushStatus.OK and result.ok
    assert sh(remote, "rev-parse", "refs/heads/deploy") == first
    assert g.fetch_branch(repo, "origin", "deploy") == first
    assert g.branch_sha(repo, "deploy") is None  # fetch never touches local branches

    again = g.push_branch(repo, "origin", first, "deploy", first)
    assert again.status is g.PushStatus.UP_TO_DATE and again.ok

    second = g.build_commit(repo, {"b": b"2"}, first, "two", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", second, "deploy", first).status is g.PushStatus.OK
    assert g.read_tree_files(g.open_repo(remote), "deploy") == {"b": b"2"}
    # A remote given as a URL works too, with its own private tracking ref.
    assert g.fetch_branch(repo, str(remote), "deploy") == second
    assert g.tracking_ref(str(remote), "deploy").startswith("refs/servegen/remotes/url-")


def test_remote_heads_sees_the_default_branch_and_the_deploy_tip(
    work: Path, repo: g.Repo, remote: Path
) -> None:
    """One ls-remote answers what check_pushable and the first tips used to fetch for."""
    head = sh(work, "rev-parse", "HEAD")
    branch = sh(work, "symbolic-ref", "--short", "HEAD")
    sh(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    sh(remote, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    assert g.remote_heads(repo, "origin", "deploy") == g.RemoteHeads(branch, head, None)
    first = g.build_commit(repo, {"a": b"1"}, None, "one", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", first, "deploy", None).ok
    # A ref whose name merely ends in the pattern is not the branch.
    sh(remote, "update-ref", "refs/tags/refs/heads/deploy", head)
    assert g.remote_heads(repo, "origin", "deploy") == g.RemoteHeads(branch, head, first)
    sh(remote, "update-ref", "--no-deref", "HEAD", head)  # detached: names no branch
    assert g.remote_heads(repo, "origin", "deploy") == g.RemoteHeads(None, None, first)


def test_fetch_seen_skips_only_a_fetch_that_would_bring_nothing(
    work: Path, repo: g.Repo, remote: Path, tmp_path: Path
) -> None:
    first = g.build_commit(repo, {"a": b"1"}, None, "one", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", first, "deploy", None).ok  # tracking ref: first
    # Another publisher moves the branch: what ls-remote saw is fetched, objects and all.
    other = tmp_path / "other"
    sh(tmp_path, "clone", "-q", "--branch", "deploy", str(remote), str(other))
    (other / "a").write_text("theirs")
    sh(other, "commit", "-q", "-am", "theirs")
    sh(other, "push", "-q", "origin", "deploy")
    theirs = g.remote_heads(repo, "origin", "deploy").branch_tip
    assert theirs == sh(other, "rev-parse", "HEAD") != first
    assert g.fetch_seen(repo, "origin", "deploy", theirs) == theirs
    assert g.read_tree_files(repo, theirs) == {"a": b"theirs"}
    assert sh(work, "rev-parse", g.tracking_ref("origin", "deploy")) == theirs
    # Seen where the tracking ref already is: no round trip (the remote is gone).
    (tmp_path / "remote.git").rename(tmp_path / "gone.git")
    assert g.fetch_seen(repo, "origin", "deploy", theirs) == theirs
    with pytest.raises(GitError, match="cannot fetch"):
        g.fetch_seen(repo, "origin", "deploy", first)  # anything else is fetched
    (tmp_path / "gone.git").rename(tmp_path / "remote.git")
    sh(remote, "update-ref", "-d", "refs/heads/deploy")
    assert g.fetch_seen(repo, "origin", "deploy", None) is None  # vanished: ref dropped
    assert g.branch_sha(repo, "deploy") is None
    assert sh(work, "for-each-ref", g.tracking_ref("origin", "deploy")) == ""


def test_repository_config_cannot_name_programs_for_push_or_fetch(
    work: Path, repo: g.Repo, remote: Path, tmp_path: Path
) -> None:
    """.git/config (and what it includes) used to run its own programs during publish --push."""
    ran = tmp_path / "ran"
    evil = f"touch {ran}/$(date +%N) && git-"
    included = tmp_path / "included.cfg"
    included.write_text(f"[core]\n\tsshCommand = touch {ran}/ssh\n")
    sh(work, "config", "remote.origin.receivepack", evil + "receive-pack")
    sh(work, "config", "remote.origin.uploadpack", evil + "upload-pack")
    sh(work, "config", "credential.helper", f"!touch {ran}/helper")
    sh(work, "config", "core.askPass", f"{ran}/askpass")
    sh(work, "config", "includeIf.gitdir:/.path", str(included))
    ran.mkdir()
    first = g.build_commit(repo, NESTED_FILES, None, "one", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", first, "deploy", None).ok
    assert g.fetch_branch(repo, "origin", "deploy") == first
    sh(work, "remote", "add", "ssh", "ssh://127.0.0.1:1/x.git")  # refused at once
    with pytest.raises(GitError):
        g.fetch_branch(repo, "ssh", "deploy")
    assert list(ran.iterdir()) == []
    overrides = g.transport_overrides(repo)
    assert "core.sshcommand=ssh" in overrides and "credential.helper=" in overrides


def test_repository_git_proxy_never_runs(work: Path, repo: g.Repo, tmp_path: Path) -> None:
    """git takes the first core.gitProxy it meets, config files before `-c`: the
    repository's own used to run for a git:// remote although a `-c` replaced it."""
    ran = tmp_path / "ran"
    ran.mkdir()
    proxy = tmp_path / "proxy.sh"
    proxy.write_text(f"#!/bin/sh\ntouch {ran}/proxy\n")
    proxy.chmod(0o755)
    sh(work, "config", "core.gitProxy", str(proxy))
    sh(work, "remote", "add", "daemon", "git://127.0.0.1:1/x.git")  # nothing listens
    with pytest.raises(GitError):
        g.fetch_branch(repo, "daemon", "deploy")
    assert list(ran.iterdir()) == []
    assert g.transport_env(repo) == {"GIT_PROXY_COMMAND": ""}


def test_repository_git_proxy_beside_the_users_own_is_refused(work: Path, repo: g.Repo) -> None:
    sh(work, "config", "--global", "core.gitProxy", "corp-proxy for example.com")
    assert g.transport_env(g.open_repo(work)) == {}  # the user's own: as git reads it
    sh(work, "config", "core.gitProxy", "evil")
    with pytest.raises(GitError, match="cannot override while your own config sets one"):
        g.transport_env(g.open_repo(work))


def test_users_own_program_config_still_applies(
    work: Path, repo: g.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sh(work, "config", "core.sshCommand", "evil")
    sh(work, "config", "--global", "core.sshCommand", "ssh -i /home/me/key")
    sh(work, "config", "--global", "credential.helper", "store")
    sh(work, "config", "credential.helper", "!evil")
    assert g.transport_overrides(repo) == [
        "core.sshcommand=ssh -i /home/me/key",
        "credential.helper=",
        "credential.helper=store",
    ]


def test_filter_drivers_of_the_repositorys_own_config_never_run(
    work: Path, repo: g.Repo, tmp_path: Path
) -> None:
    """`filter=<name>` in .gitattributes runs the program .git/config names for it, on
    every file git reads from the working tree: status, add and commit must not."""
    ran = tmp_path / "ran"
    ran.mkdir()
    for setting in ("clean", "smudge", "process"):
        sh(work, "config", f"filter.Evil.{setting}", f"sh -c 'touch {ran}/{setting}; cat'")
    sh(work, "config", "filter.Evil.required", "true")  # no program: not a failure either
    (work / ".git" / "info" / "attributes").write_text("* filter=Evil\n")
    spec = work / "specs" / "llama" / "serve.yaml"
    spec.write_text("model: llama-3\n")  # a changed stat: status filters the file
    assert g.worktree_status(repo, ["specs"]).entries
    assert "specs/llama/serve.yaml" in g.uncommitted_paths(repo, ["specs"])
    g.commit_paths(repo, ["specs/llama/serve.yaml"], "promote llama")
    assert list(ran.iterdir()) == []
    assert sh(work, "show", "HEAD:specs/llama/serve.yaml") == "model: llama-3"


def test_a_submodules_own_filter_drivers_never_run(
    work: Path, repo: g.Repo, tmp_path: Path
) -> None:
    """`git status` looks inside submodules, where git reads the submodule's own config:
    a filter driver it names ran during publish's check of the working tree."""
    ran = tmp_path / "ran"
    ran.mkdir()
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.txt").write_text("hi\n")
    (sub / ".gitattributes").write_text("* filter=Evil\n")
    sh(tmp_path, "init", "-q", str(sub))
    sh(sub, "add", "-A")
    sh(sub, "commit", "-qm", "sub")
    sh(work, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "specs/sub")
    sh(work, "commit", "-qm", "with a submodule")
    sh(work / "specs" / "sub", "config", "filter.Evil.clean", f"sh -c 'touch {ran}/clean; cat'")
    (work / "specs" / "sub" / "a.txt").write_text("hi\n")  # a new stat: status reads it
    assert g.uncommitted_paths(repo, ["specs"]) == []
    assert g.worktree_status(repo, ["specs"]).entries == ()
    assert list(ran.iterdir()) == []


def test_reading_the_working_tree_never_writes_the_users_index(work: Path, repo: g.Repo) -> None:
    """A plain `git status` refreshes the index and takes index.lock to write it back;
    a `git checkout` the user runs meanwhile then fails. servegen only reads."""
    index = work / ".git" / "index"
    for path in (work / "specs").rglob("*.yaml"):
        os.utime(path, ns=(1, 1))  # a stale stat: status would rewrite the index
    before = os.stat(index)
    assert g.uncommitted_paths(repo, ["specs"]) == ["specs/staged.yaml"]
    assert len(g.worktree_status(repo, ["specs"]).entries) == 1
    after = os.stat(index)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    sh(work, "status", "--porcelain")  # the yardstick: git's own status does write it
    now = os.stat(index)
    assert (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns)


def test_the_users_own_filter_drivers_still_apply(work: Path, repo: g.Repo) -> None:
    sh(work, "config", "--global", "filter.upper.clean", "tr a-z A-Z")
    sh(work, "config", "filter.upper.smudge", "evil")  # the repository adds to it: reset
    (work / ".git" / "info" / "attributes").write_text("*.yaml filter=upper\n")
    (work / "specs" / "llama" / "serve.yaml").write_text("model: llama-3\n")
    assert g.filter_overrides(repo) == [
        "filter.upper.clean=tr a-z A-Z",
        "filter.upper.smudge=",
        "filter.upper.required=false",
    ]
    g.commit_paths(repo, ["specs/llama/serve.yaml"], "promote llama")
    assert sh(work, "show", "HEAD:specs/llama/serve.yaml") == "MODEL: LLAMA-3"


def test_a_filter_driver_no_command_line_can_name_is_refused(work: Path, repo: g.Repo) -> None:
    sh(work, "config", "filter.a=b.clean", "evil")
    with pytest.raises(GitError, match="filter driver named 'a=b'"):
        g.worktree_status(repo, ["specs"])


def test_push_race_is_rejected_not_fatal(repo: g.Repo, tmp_path: Path, remote: Path) -> None:
    base = g.build_commit(repo, {"a": b"base"}, None, "base", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", base, "deploy", None).ok

    # Another publisher clones, commits on top of base and pushes first.
    other = tmp_path / "other"
    sh(tmp_path, "clone", "-q", "--branch", "deploy", str(remote), str(other))
    (other / "a").write_text("theirs")
    sh(other, "commit", "-q", "-am", "theirs")
    sh(other, "push", "-q", "origin", "deploy")

    ours = g.build_commit(repo, {"a": b"ours"}, base, "ours", AUTHOR, COMMITTER)
    lost = g.push_branch(repo, "origin", ours, "deploy", base)
    assert lost.status is g.PushStatus.REJECTED and lost.retryable
    assert "fetch first" in lost.summary

    theirs = g.fetch_branch(repo, "origin", "deploy")
    assert theirs == sh(other, "rev-parse", "HEAD")
    stale = g.push_branch(repo, "origin", ours, "deploy", base)
    assert stale.status is g.PushStatus.REJECTED and "non-fast-forward" in stale.summary
    assert sh(remote, "rev-parse", "refs/heads/deploy") == theirs

    rebuilt = g.build_commit(repo, {"a": b"ours"}, theirs, "ours", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", rebuilt, "deploy", theirs).ok


def test_push_ref_lock_race_is_retryable(repo: g.Repo, remote: Path) -> None:
    base = g.build_commit(repo, {"a": b"1"}, None, "base", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", base, "deploy", None).ok
    nxt = g.build_commit(repo, {"a": b"2"}, base, "next", AUTHOR, COMMITTER)
    lock = remote / "refs" / "heads" / "deploy.lock"
    lock.write_text("")
    raced = g.push_branch(repo, "origin", nxt, "deploy", base)
    assert raced.status is g.PushStatus.RACE and raced.retryable and not raced.ok
    lock.unlink()
    assert g.push_branch(repo, "origin", nxt, "deploy", base).ok


def test_push_declined_by_remote_hook(repo: g.Repo, remote: Path) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    sha = g.build_commit(repo, {"a": b"1"}, None, "x", AUTHOR, COMMITTER)
    declined = g.push_branch(repo, "origin", sha, "deploy", None)
    assert declined.status is g.PushStatus.DECLINED and not declined.retryable
    assert "branch is protected" in declined.detail


def test_push_and_fetch_fatal_errors_raise(repo: g.Repo, tmp_path: Path) -> None:
    sha = g.build_commit(repo, {"a": b"1"}, None, "x", AUTHOR, COMMITTER)
    missing = str(tmp_path / "nowhere.git")
    with pytest.raises(GitError, match="does not appear to be a git repository"):
        g.push_branch(repo, missing, sha, "deploy", None)
    with pytest.raises(GitError, match="cannot fetch"):
        g.fetch_branch(repo, missing, "deploy")
    with pytest.raises(GitError, match="invalid remote"):
        g.push_branch(repo, "--receive-pack=touch /tmp/x", sha, "deploy", None)


def test_push_refuses_to_leave_the_expected_history(repo: g.Repo) -> None:
    a = g.build_commit(repo, {"a": b"1"}, None, "a", AUTHOR, COMMITTER)
    b = g.build_commit(repo, {"b": b"1"}, None, "b", AUTHOR, COMMITTER)
    with pytest.raises(GitError, match="does not build on"):
        g.push_branch(repo, "origin", b, "deploy", a)


def test_remote_url(repo: g.Repo, remote: Path) -> None:
    assert g.remote_url(repo, "origin") == str(remote)
    assert g.remote_url(repo, "upstream") is None


@pytest.mark.parametrize(
    ("stdout", "status", "expected"),
    [
        ("To r\n*\tabc:refs/heads/d\t[new branch]\nDone\n", 0, g.PushStatus.OK),
        ("To r\n \tabc:refs/heads/d\t1..2\nDone\n", 0, g.PushStatus.OK),
        ("To r\n=\tabc:refs/heads/d\t[up to date]\nDone\n", 0, g.PushStatus.UP_TO_DATE),
        ("To r\n!\tabc:refs/heads/d\t[rejected] (fetch first)\nDone\n", 1, g.PushStatus.REJECTED),
        (
            "To r\n!\ta:refs/heads/d\t[rejected] (non-fast-forward)\nDone\n",
            1,
            g.PushStatus.REJECTED,
        ),
        (
            "To r\n!\ta:refs/heads/d\t[remote rejected] (failed to update ref)\n",
            1,
            g.PushStatus.RACE,
        ),
        (
            "To r\n!\ta:refs/heads/d\t[remote rejected] (incorrect old value provided)\n",
            1,
            g.PushStatus.RACE,
        ),
        ("To r\n!\ta:refs/heads/d\t[remote failure] (remote failed)\n", 1, g.PushStatus.RACE),
        (
            "To r\n!\ta:refs/heads/d\t[remote rejected] (pre-receive hook declined)\n",
            1,
            g.PushStatus.DECLINED,
        ),
    ],
)
def test_classify_push(stdout: str, status: int, expected: g.PushStatus) -> None:
    assert g.classify_push(status, stdout, "").status is expected


def test_classify_push_lock_message_on_stderr_and_fatal() -> None:
    lock = g.classify_push(
        1,
        "To r\n!\ta:refs/heads/d\t[remote rejected] (deploy)\n",
        "remote: error: cannot lock ref 'refs/heads/d': is at 1 but expected 2",
    )
    assert lock.status is g.PushStatus.RACE
    with pytest.raises(GitError, match="Authentication failed"):
        g.classify_push(128, "", "fatal: Authentication failed for 'https://x/'")


# --------------------------------------------------------------------------- safety


HOOK_NAMES = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "reference-transaction",
    "pre-push",
    "post-checkout",
    "post-merge",
    "post-rewrite",
    "post-index-change",
    "pre-auto-gc",
    "push-to-checkout",
    "fsmonitor-watchman",
)


def install_trap_hooks(hooks_dir: Path, marker: Path) -> None:
    hooks_dir.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        hook = hooks_dir / name
        hook.write_text(f"#!/bin/sh\necho {name} >> '{marker}'\nexit 1\n")
        hook.chmod(0o755)


def test_hooks_and_fsmonitor_never_run(
    repo: g.Repo, work: Path, remote: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "HOOK-RAN"
    install_trap_hooks(work / ".git" / "hooks", marker)
    # A configured hooks directory and fsmonitor program, as an attacker would set them.
    install_trap_hooks(tmp_path / "evil-hooks", marker)
    fsmonitor = tmp_path / "fsmonitor.sh"
    fsmonitor.write_text(f"#!/bin/sh\necho fsmonitor >> '{marker}'\nexit 1\n")
    fsmonitor.chmod(0o755)
    sh(work, "config", "core.fsmonitor", str(fsmonitor))

    g.head_commit(repo)
    g.read_tree_files(repo, "HEAD")
    first = g.build_commit(repo, NESTED_FILES, None, "one", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", first, None)
    assert g.push_branch(repo, "origin", first, "deploy", None).ok
    assert g.fetch_branch(repo, "origin", "deploy") == first
    sh(work, "config", "core.hooksPath", str(tmp_path / "evil-hooks"))
    second = g.build_commit(repo, {"x": b"1"}, first, "two", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", second, first)
    assert g.push_branch(repo, "origin", second, "deploy", first).ok
    g.export_tree(repo, "deploy", tmp_path / "export")
    g.identity_from_env_or_config(repo)

    assert not marker.exists(), marker.read_text()

    # Control: the traps are live, so the absence above means something.
    proc = subprocess.run(["git", "commit", "-q", "-m", "hooked"], cwd=work, check=False)
    assert proc.returncode != 0
    assert "pre-commit" in marker.read_text()


def test_inherited_git_environment_is_ignored(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    sh(tmp_path, "init", "-q", str(decoy))
    decoy_refs = sh(decoy, "for-each-ref")
    bogus_index = tmp_path / "bogus-index"
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(bogus_index))
    monkeypatch.setenv("GIT_OBJECT_DIRECTORY", str(tmp_path / "no-objects"))
    monkeypatch.setenv("GIT_ALTERNATE_OBJECT_DIRECTORIES", str(tmp_path / "no-alt"))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.hooksPath'='/tmp/evil'")
    monkeypatch.setenv("GIT_NAMESPACE", "elsewhere")
    before = user_state(work)

    repo = g.open_repo(work)
    assert repo.git_dir == (work / ".git").resolve()
    assert g.head_commit(repo).subject == "Add llama"
    sha = g.build_commit(repo, NESTED_FILES, None, "env", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", sha, None)
    assert g.read_tree_files(repo, "deploy") == NESTED_FILES
    assert g.push_branch(repo, "origin", sha, "deploy", None).ok

    assert sh(work, "rev-parse", "refs/heads/deploy") == sha
    assert sh(decoy, "for-each-ref") == decoy_refs
    assert not bogus_index.exists()
    assert not (tmp_path / "no-objects").exists()
    assert user_state(work) == before


def test_environment_identity_does_not_override_explicit_identity(
    repo: g.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Inherited")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2000-01-01T00:00:00+00:00")
    sha = g.build_commit(repo, {"a": b"1"}, None, "x", g.Identity("Explicit", "e@x"), COMMITTER)
    info = g.commit_info(repo, sha)
    assert info.author.name == "Explicit"
    assert info.author.date is not None and not info.author.date.startswith("2000-")


# --------------------------------------------------------------------------- identity


def test_identity_precedence(repo: g.Repo, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name)
    sh(work, "config", "user.name", "Config Name")
    sh(work, "config", "user.email", "config@example.com")
    assert g.identity_from_env_or_config(repo) == g.Identity("Config Name", "config@example.com")

    monkeypatch.setenv("GIT_COMMITTER_NAME", "Env Name")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "env@example.com")
    assert g.identity_from_env_or_config(repo) == g.Identity("Env Name", "env@example.com")

    monkeypatch.setenv("SERVEGEN_COMMITTER_NAME", "Servegen Name")
    assert g.identity_from_env_or_config(repo) == g.Identity("Servegen Name", "env@example.com")


def test_missing_identity_is_a_clear_error(repo: g.Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(name)
    with pytest.raises(GitError, match=r"no committer identity: set deploy\.committer"):
        g.identity_from_env_or_config(repo)


def test_identity_validation() -> None:
    with pytest.raises(GitError, match="contains"):
        g.Identity("Evil <x>", "e@x")
    with pytest.raises(GitError, match="empty"):
        g.Identity("Name", " ")


def test_signing_without_a_key_is_a_git_error(
    repo: g.Repo, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    sh(work, "config", "--global", "user.signingkey", "nobody@example.invalid")
    with pytest.raises(GitError, match="cannot sign"):
        g.build_commit(repo, {"a": b"1"}, None, "signed", AUTHOR, COMMITTER, sign=True)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gpg.program", "PROGRAM"),
        ("gpg.ssh.program", "PROGRAM"),
        ("gpg.ssh.defaultKeyCommand", "PROGRAM"),
        ("user.signingKey", "/tmp/the-authors-key"),
    ],
)
def test_signing_refuses_the_repositorys_own_signing_config(
    repo: g.Repo, work: Path, tmp_path: Path, key: str, value: str
) -> None:
    """The repository's gpg.program used to run for `publish --sign`."""
    ran = tmp_path / "ran"
    program = tmp_path / "sign.sh"
    program.write_text(f"#!/bin/sh\ntouch {ran}\nexit 1\n")
    program.chmod(0o755)
    sh(work, "config", "--global", "gpg.format", "ssh")
    sh(work, "config", key, value.replace("PROGRAM", str(program)))
    with pytest.raises(GitError, match=f"the repository's git config sets {key.lower()};"):
        g.build_commit(repo, {"a": b"1"}, None, "signed", AUTHOR, COMMITTER, sign=True)
    assert not ran.exists()


# --------------------------------------------------------------------------- incremental trees

# Paths that overlap as files and folders ("a" and "a/x"), so drawing two trees from them
# gives additions, changes, removals, renames and files turning into folders and back.
_UNIVERSE = ("a", "a/x", "a/y/z", "b", "b/c", "d/e", "d/e/f", "d/g", "é ü/h", "k")
_CONTENT = st.sampled_from([b"", b"1\n", b"2\n", bytes(range(7)), b"x" * 300])


def _without_clashes(files: dict[str, bytes]) -> dict[str, bytes]:
    folders = {p.rsplit("/", 1)[0] for p in files if "/" in p}
    folders |= {f.rsplit("/", 1)[0] for f in list(folders) if "/" in f}
    return {p: data for p, data in files.items() if p not in folders}


_TREES = st.dictionaries(st.sampled_from(_UNIVERSE), _CONTENT).map(_without_clashes)


def plain_git_tree(scratch: Path, files: dict[str, bytes]) -> str:
    """The tree id git itself gives `files`: written out, `git add -A`, `git write-tree`."""
    if not scratch.exists():
        sh(scratch.parent, "init", "-q", str(scratch))
    for entry in scratch.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for rel, data in files.items():
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch / rel).write_bytes(data)
    sh(scratch, "add", "-A")
    return sh(scratch, "write-tree")


def listed_by_git(repo: g.Repo, commit: str) -> g.Tree:
    g._LISTED.clear()  # list with ls-tree, not from what build_commit remembers
    return g.read_tree(repo, commit)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=_TREES, new=_TREES)
def test_incremental_tree_equals_a_full_rebuild(
    repo: g.Repo, tmp_path: Path, old: dict[str, bytes], new: dict[str, bytes]
) -> None:
    base = g.build_commit(repo, old, None, "base", AUTHOR, COMMITTER)
    listing = listed_by_git(repo, base)
    expected = plain_git_tree(tmp_path / "scratch", new)

    assert g.write_tree(repo, new, listing) == expected
    assert g.write_tree(repo, new) == expected
    child = g.build_commit(repo, new, base, "child", AUTHOR, COMMITTER, base=listing)
    assert g.tree_of(repo, child) == expected
    assert g.read_tree_files(repo, child) == new
    # The listing kept in memory for the next publish is the one git gives.
    remembered = g.read_tree(repo, child)
    fresh = listed_by_git(repo, child)
    assert (remembered.files, remembered.folders) == (fresh.files, fresh.folders)
    # Plain files only: git's listing makes no entry per file either, and gives the ids.
    assert isinstance(fresh.files, g.PlainFiles)
    assert dict(g.file_oids(fresh)) == {p: e.oid for p, e in remembered.files.items()}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=_TREES, contents=st.lists(_CONTENT, min_size=len(_UNIVERSE), max_size=len(_UNIVERSE)))
def test_same_paths_on_a_remembered_tree_equal_a_full_rebuild(
    repo: g.Repo, tmp_path: Path, old: dict[str, bytes], contents: list[bytes]
) -> None:
    """New contents at the paths of a tree build_commit wrote: rebuilt from its layout in
    memory (no path checks, changed folders only), it must still be git's tree."""
    g._LISTED.clear()
    base = g.build_commit(repo, old, None, "base", AUTHOR, COMMITTER)
    remembered = g.read_tree(repo, base)
    assert remembered.layout is not None
    new = {path: contents[_UNIVERSE.index(path)] for path in old}
    child = g.build_commit(repo, new, base, "child", AUTHOR, COMMITTER, base=remembered)
    assert g.tree_of(repo, child) == plain_git_tree(tmp_path / "scratch", new)
    assert g.read_tree_files(repo, child) == new
    kept = g.read_tree(repo, child)
    fresh = listed_by_git(repo, child)
    assert (kept.files, kept.folders) == (fresh.files, fresh.folders)


def test_incremental_tree_over_a_hand_made_base(repo: g.Repo, work: Path, tmp_path: Path) -> None:
    """Special entries of the base (executable, symlink, submodule, empty folder) never
    survive into the new tree, even where the content is the same."""
    blob = sh(work, "hash-object", "-w", "--stdin", input=b"same\n")
    empty = sh(work, "mktree", input=b"")
    inner = sh(work, "mktree", input=f"040000 tree {empty}\tnothing\n".encode())
    entries = (
        f"100755 blob {blob}\trun.sh\n"
        f"120000 blob {blob}\tlink.yaml\n"
        f"160000 commit {'a' * 40}\tvendor\n"
        f"100644 blob {blob}\tkept.yaml\n"
        f"040000 tree {inner}\tdir\n"
    )
    base = sh(work, "commit-tree", sh(work, "mktree", input=entries.encode()), "-m", "hand-made")
    new = {"run.sh": b"same\n", "link.yaml": b"same\n", "kept.yaml": b"same\n", "vendor/x": b"1"}

    listing = listed_by_git(repo, base)
    assert set(listing.folders) == {"dir", "dir/nothing"}
    # Each entry as git lists it: a tree with other entries than plain files keeps them.
    modes = {path: (entry.mode, entry.kind) for path, entry in listing.files.items()}
    assert modes == {
        "kept.yaml": ("100644", "blob"),
        "link.yaml": ("120000", "blob"),
        "run.sh": ("100755", "blob"),
        "vendor": ("160000", "commit"),
    }
    assert not isinstance(listing.files, g.PlainFiles)
    assert g.write_tree(repo, new, listing) == plain_git_tree(tmp_path / "scratch", new)
    with pytest.raises(GitError, match=r"only regular files.*symlink 'link\.yaml'"):
        g.read_unlike(repo, listing, new, g.blob_ids(repo, new))


def test_read_unlike_reads_only_the_blobs_that_differ(
    repo: g.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = {f"models/m{i}/base/model.yaml": f"model: {i}\n".encode() for i in range(50)}
    base = g.build_commit(repo, old, None, "base", AUTHOR, COMMITTER)
    new = {**old, "models/m7/base/model.yaml": b"model: seven\n", "models/new/x.yaml": b"x"}
    del new["models/m9/base/model.yaml"]
    requested: list[str] = []
    real = g._read_blobs

    def spy(repo: g.Repo, oids: list[str]) -> dict[str, bytes]:
        requested.extend(oids)
        return real(repo, oids)

    monkeypatch.setattr(g, "_read_blobs", spy)

    deployed = g.read_unlike(repo, listed_by_git(repo, base), new, g.blob_ids(repo, new))

    assert deployed == old  # exactly the base's files and bytes
    assert sorted(requested) == sorted(
        g.blob_ids(
            repo, {p: old[p] for p in ("models/m7/base/model.yaml", "models/m9/base/model.yaml")}
        ).values()
    )


def test_a_tree_git_would_name_differently_is_refused(
    repo: g.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mktree must confirm every tree id computed here, or nothing is committed."""
    monkeypatch.setattr(g, "_tree_id", lambda repo, raw: "1" * 40)  # a hashing slip
    with pytest.raises(GitError, match="other ids than computed"):
        g.write_tree(repo, {"b": b"1"})


@pytest.mark.parametrize("hashed", [0, 1000], ids=["mktree", "hash-object"])
def test_trees_written_either_way_are_gits_trees(
    repo: g.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hashed: int
) -> None:
    """A few trees are stored by hash-object, many by mktree: the same trees."""
    monkeypatch.setattr(g, "HASHED_TREES", hashed)
    files = {"a/b/c.yaml": b"1", "a/d.yaml": b"2", "a-b": b"3", "a.b/x": b"4", "e": b""}
    base = g.build_commit(repo, files, None, "base", AUTHOR, COMMITTER)
    assert g.tree_of(repo, base) == plain_git_tree(tmp_path / "one", files)
    files["a/b/c.yaml"] = b"5"
    child = g.build_commit(
        repo, files, base, "child", AUTHOR, COMMITTER, base=g.read_tree(repo, base)
    )
    assert g.tree_of(repo, child) == plain_git_tree(tmp_path / "two", files)
    assert sh(repo.git_dir, "fsck", "--strict", "--no-dangling") == ""
    monkeypatch.setattr(g, "_tree_id", lambda repo, raw: "1" * 40)  # a hashing slip
    with pytest.raises(GitError, match="other ids than computed"):
        g.write_tree(repo, {"b": b"1"})


def test_a_parent_that_is_not_a_commit_is_refused(repo: g.Repo, work: Path) -> None:
    blob = sh(work, "hash-object", "-w", "--stdin", input=b"not a commit\n")
    with pytest.raises(GitError, match="cannot commit"):
        g.build_commit(repo, {"a": b"1"}, blob, "x", AUTHOR, COMMITTER)
    with pytest.raises(GitError, match="unknown revision"):
        g.build_commit(repo, {"a": b"1"}, "no-such-branch", "x", AUTHOR, COMMITTER)


# --------------------------------------------------------------------------- fewer processes


def test_open_repo_inside_the_git_dir_is_bare(work: Path) -> None:
    opened = g.open_repo(work / ".git")
    assert opened.worktree is None
    assert opened.git_dir == (work / ".git").resolve()


def test_commit_info_of_what_is_no_commit_is_unknown(repo: g.Repo, work: Path) -> None:
    for rev in ("no-such-branch", sh(work, "rev-parse", "HEAD^{tree}"), "0" * 40):
        with pytest.raises(GitError, match="unknown revision"):
            g.commit_info(repo, rev)
    assert g.commit_info(repo, "HEAD").sha == sh(work, "rev-parse", "HEAD")


def test_a_commit_is_its_own_ancestor_and_other_pairs_still_ask_git(
    repo: g.Repo, work: Path
) -> None:
    head = sh(work, "rev-parse", "HEAD")
    assert g.is_ancestor(repo, head, head)
    other = g.commit_tree(repo, g.tree_of(repo, "HEAD"), [], "unrelated\n", AUTHOR, COMMITTER)
    assert not g.is_ancestor(repo, other, head)
    with pytest.raises(GitError, match="cannot compare"):
        g.is_ancestor(repo, "f" * 40, head)


def test_transport_config_is_read_once_per_opened_repository(repo: g.Repo, work: Path) -> None:
    assert g.transport_overrides(repo) == []
    sh(work, "config", "core.sshCommand", "touch /tmp/pwned")
    assert g.transport_overrides(repo) == []  # this handle already read it
    assert g.transport_overrides(g.open_repo(work)) == ["core.sshcommand=ssh"]


def test_a_broken_branch_ref_is_named_not_taken_for_absent(work: Path, repo: g.Repo) -> None:
    """git lists a ref whose file names no object as absent (with a warning): publish
    took the branch for new, and its compare-and-swap failed ten times."""
    (work / ".git" / "refs" / "heads" / "deploy").write_text("garbage\n")
    with pytest.raises(GitError, match="refs/heads/deploy is broken: it names no commit") as err:
        g.branch_refs(repo, "deploy", "origin")
    assert str(work / ".git" / "refs" / "heads" / "deploy") in str(err.value)


def test_branch_refs_reads_branch_tracking_ref_and_head_in_one_process(
    repo: g.Repo, work: Path, tmp_path: Path
) -> None:
    assert g.branch_refs(repo, "deploy", "origin") == g.BranchRefs(None, None, False)
    first = g.build_commit(repo, {"a": b"1"}, None, "one", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", first, None)
    assert g.branch_refs(repo, "deploy", "origin") == g.BranchRefs(first, None, False)
    assert g.push_branch(repo, "origin", first, "deploy", None).ok  # tracking ref: first
    second = g.build_commit(repo, {"a": b"2"}, first, "two", AUTHOR, COMMITTER)
    assert g.update_branch(repo, "deploy", second, first)
    assert g.branch_refs(repo, "deploy", "origin") == g.BranchRefs(second, first, False)
    assert g.branch_refs(repo, "deploy") == g.BranchRefs(second, None, False)
    # Refs below the names, or beside them, are not theirs.
    sh(work, "update-ref", "refs/heads/deployment", first)
    sh(work, "update-ref", g.tracking_ref("origin", "deploy") + "-old", second)
    assert g.branch_refs(repo, "deploy", "origin") == g.BranchRefs(second, first, False)
    assert g.branch_refs(repo, "deploy/x", "origin") == g.BranchRefs(None, None, False)
    # HEAD of the worktree opened: on main, detached, on another worktree's branch.
    head = sh(work, "rev-parse", "HEAD")
    assert g.branch_refs(repo, "main") == g.BranchRefs(head, None, True)
    sh(work, "checkout", "-q", "--detach")
    assert g.branch_refs(repo, "main").checked_out is False
    sh(work, "worktree", "add", "-q", str(tmp_path / "linked"), "deploy")
    assert g.branch_refs(repo, "deploy").checked_out is False  # not this worktree's HEAD
    linked = g.open_repo(tmp_path / "linked")
    assert g.branch_refs(linked, "deploy") == g.BranchRefs(second, None, True)


def test_update_branch_after_a_push_sets_the_tracking_ref_whatever_happens(
    repo: g.Repo, work: Path
) -> None:
    tracking = g.tracking_ref("origin", "deploy")
    first = g.build_commit(repo, {"a": b"1"}, None, "one", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", first, "deploy", None, track=False).ok
    assert sh(work, "for-each-ref", tracking) == ""  # left to update_branch
    assert g.update_branch(repo, "deploy", first, None, pushed_to="origin")
    assert sh(work, "rev-parse", tracking) == first == g.branch_sha(repo, "deploy")
    # The local branch lost its swap: the tracking ref follows the push all the same.
    second = g.build_commit(repo, {"a": b"2"}, first, "two", AUTHOR, COMMITTER)
    other = g.build_commit(repo, {"a": b"3"}, first, "three", AUTHOR, COMMITTER)
    sh(work, "update-ref", "refs/heads/deploy", other, first)
    assert g.push_branch(repo, "origin", second, "deploy", first, track=False).ok
    assert g.update_branch(repo, "deploy", second, first, pushed_to="origin") is False
    assert g.branch_sha(repo, "deploy") == other
    assert sh(work, "rev-parse", tracking) == second
    # ... and when moving the local branch is refused outright.
    third = g.build_commit(repo, {"a": b"4"}, second, "four", AUTHOR, COMMITTER)
    assert g.push_branch(repo, "origin", third, "deploy", second, track=False).ok
    sh(work, "worktree", "add", "-q", str(work.parent / "linked"), "deploy")
    with pytest.raises(GitError, match="checked out"):
        g.update_branch(repo, "deploy", third, other, pushed_to="origin")
    assert g.branch_sha(repo, "deploy") == other
    assert sh(work, "rev-parse", tracking) == third


def test_is_shallow_is_answered_when_the_repository_is_opened(
    work: Path, remote: Path, tmp_path: Path
) -> None:
    sh(work, "push", "-q", "origin", "HEAD:main")
    assert g.open_repo(work).shallow_at_open is False
    shallow = tmp_path / "shallow"
    sh(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(shallow))
    opened = g.open_repo(shallow)
    assert opened.shallow_at_open is True and g.is_shallow(opened)
    bare = g.open_repo(remote)
    assert bare.worktree is None and bare.shallow_at_open is False


_NAME_CHARS = st.sampled_from(["a", ".", "/", "\0", "\\", "g", "i", "t", "G", "I", "T", "-", "é"])


@given(names=st.sets(st.text(_NAME_CHARS, max_size=5), max_size=6))
def test_names_judged_together_as_one_by_one(names: set[str]) -> None:
    """A kept listing's names are judged all at once; the answer is the per-name rule's."""
    assert g._plain_names(names) == all(map(g._plain_name, names))


@pytest.mark.parametrize("folders", [0, 1, 2, 3, 7])
def test_a_listing_record_is_the_compact_json_of_the_listing(
    folders: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded a few folders at a time, byte for byte the listing encoded whole (names
    with quotes and non-ASCII letters included)."""
    monkeypatch.setattr(g, "_RECORD_FOLDERS", 2)
    layout: dict[str, dict[str, str | None]] = {"": {"a.yaml": "1" * 40, "d": None}}
    tree_ids = {}
    for number in range(folders):
        folder = f"d/f{number}\u00e9"
        tree_ids[folder] = f"{number:040x}"
        layout[folder] = {"k.yaml": f"{number + 7:040x}", 'n"q': f"{number + 9:040x}"}
    tree = g.Tree("c" * 40, g.PlainFiles({}), tree_ids, layout)
    whole = {"commit": tree.commit, "folders": tree_ids, "layout": layout}
    pieces = g.listing_record(tree)
    assert pieces is not None
    assert b"".join(pieces) == json.dumps(whole, separators=(",", ":")).encode()
    # Each object's braces and a piece per two of its entries, the commit and the glue:
    # the folders' object has `folders` entries, the layout's one more (the root).
    assert len(pieces) == 3 + (2 + -(-folders // 2)) + (2 + -(-(folders + 1) // 2))
