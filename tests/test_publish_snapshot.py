"""Building HEAD for publish: from the working tree only when it provably holds HEAD's
inputs, else from an export; and an export of the same bytes hits the build cache.

Real git repositories (examples/ committed to a clone of a bare remote), real builds.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from generator import buildcache, git, pipeline, snapshot
from generator.errors import GitError
from generator.pipeline import Build
from tests.gitutil import sh
from tests.specrepo import QWEN_CHAT, TINYLLAMA, commit_all, edit, make_spec_repo

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def spec_repo(tmp_path: Path) -> Path:
    return make_spec_repo(tmp_path)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files the test just wrote count as settled (no racy-timestamp fallback)."""
    monkeypatch.setattr(snapshot, "RACY_NS", -(10**18))


def head_build(work: Path, crds: Path) -> tuple[Build, bool]:
    repo = git.open_repo(work)
    return snapshot.build_head(repo, work, sh(work, "rev-parse", "HEAD"), crds=[crds])


def build_at_head(repo: git.Repo, work: Path, crds: Sequence[Path] = ()) -> Build:
    """HEAD's build from its export (gone once this returns)."""
    with snapshot.built_at(repo, work, sh(work, "rev-parse", "HEAD"), crds=crds) as built:
        return built


def exported_build(work: Path, crds: Path) -> Build:
    return build_at_head(git.open_repo(work), work, [crds])


@pytest.mark.usefixtures("settled")
def test_a_clean_worktree_is_built_in_place_and_equals_the_export(
    spec_repo: Path, crds_dir: Path
) -> None:
    built, in_place = head_build(spec_repo, crds_dir)
    assert in_place
    assert built.root == spec_repo
    assert built.files == exported_build(spec_repo, crds_dir).files


@pytest.mark.usefixtures("settled")
def test_the_in_place_build_starts_with_no_other_thread_running(
    spec_repo: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checks read git in threads; the build forks its workers only when it is the
    one thread left, so every thread is done with by then."""
    threads: list[int] = []
    real = pipeline.build

    def counted(root: Path, **kwargs: object) -> Build:
        threads.append(threading.active_count())
        return real(root, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("generator.snapshot.build", counted)
    _built, in_place = head_build(spec_repo, crds_dir)
    assert in_place and threads == [1]


@pytest.mark.usefixtures("settled")
def test_a_status_that_fails_fails_the_publish(
    spec_repo: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(repo: git.Repo, paths: list[str]) -> git.WorktreeStatus:
        raise GitError("cannot read the working tree status: broken")

    monkeypatch.setattr(git, "worktree_status", broken)
    with pytest.raises(GitError, match="broken"):
        head_build(spec_repo, crds_dir)


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize(
    "change",
    ["unstaged", "staged", "untracked", "ignored", "symlink", "nested-repo", "head-moved"],
)
def test_anything_head_lacks_means_an_export(spec_repo: Path, crds_dir: Path, change: str) -> None:
    head = sh(spec_repo, "rev-parse", "HEAD")
    expected = exported_build(spec_repo, crds_dir).files
    extra = spec_repo / "specs" / "kubeai" / "extra-copy.yaml"
    if change in ("unstaged", "staged"):
        edit(spec_repo / TINYLLAMA, "tinyllama-chat", "tinyllama-edited")
        if change == "staged":
            sh(spec_repo, "add", TINYLLAMA)
    elif change in ("untracked", "ignored"):
        text = (spec_repo / TINYLLAMA).read_text()
        extra.write_text(text.replace("tinyllama-chat", "tinyllama-extra"))
        if change == "ignored":
            (spec_repo / ".git" / "info" / "exclude").write_text("extra-copy.yaml\n")
            assert sh(spec_repo, "status", "--porcelain") == ""
    elif change == "symlink":  # a spec kept elsewhere in the repository, linked in
        kept = spec_repo / "common" / "qwen-chat.yaml"
        kept.parent.mkdir()
        (spec_repo / QWEN_CHAT).rename(kept)
        (spec_repo / QWEN_CHAT).symlink_to(Path("../../common/qwen-chat.yaml"))
        commit_all(spec_repo, "a symlinked spec")  # the export reads it through its link
    elif change == "nested-repo":
        nested = spec_repo / "specs" / "nested"
        nested.mkdir()
        sh(nested, "init", "-q")
        assert sh(spec_repo, "status", "--porcelain", "--ignored") != ""
    else:  # the commit asked for is no longer HEAD: the worktree holds another
        edit(spec_repo / TINYLLAMA, "tinyllama-chat", "tinyllama-edited")
        commit_all(spec_repo, "moved on")
        repo = git.open_repo(spec_repo)
        built, in_place = snapshot.build_head(repo, spec_repo, head, crds=[crds_dir])
        assert not in_place
        assert built.files == expected
        return
    built, in_place = head_build(spec_repo, crds_dir)
    assert not in_place
    assert built.files == expected
    assert not any("extra" in path for path in built.files)


@pytest.mark.usefixtures("settled")
def test_a_clean_status_with_other_bytes_means_an_export(spec_repo: Path, crds_dir: Path) -> None:
    """git status compares after eol conversion: CRLF on disk, LF committed, is clean."""
    expected = exported_build(spec_repo, crds_dir).files
    sh(spec_repo, "config", "core.autocrlf", "true")
    spec = spec_repo / TINYLLAMA
    spec.write_bytes(spec.read_bytes().replace(b"\n", b"\r\n"))
    sh(spec_repo, "add", TINYLLAMA)  # the index agrees: status shows nothing
    assert sh(spec_repo, "status", "--porcelain", "--ignored") == ""
    assert spec.read_bytes() != sh_blob(spec_repo, f"HEAD:{TINYLLAMA}")
    built, in_place = head_build(spec_repo, crds_dir)
    assert not in_place
    assert built.files == expected


@pytest.mark.usefixtures("settled")
def test_a_file_of_another_size_than_its_stat_means_an_export(
    spec_repo: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spec file that grew or shrank between its stat and its read is not trusted
    to be HEAD's, whatever its bytes hash to."""
    real = snapshot._input_stats
    spec = str(spec_repo / TINYLLAMA)

    def grown(root: Path, specs: str) -> dict[str, tuple[int, ...]] | None:
        stats = real(root, specs)
        assert stats is not None
        mode, size, *rest = stats[spec]
        return {**stats, spec: (mode, size - 1, *rest)}

    monkeypatch.setattr(snapshot, "_input_stats", grown)
    built, in_place = head_build(spec_repo, crds_dir)
    assert not in_place
    monkeypatch.undo()
    assert built.files == exported_build(spec_repo, crds_dir).files


def sh_blob(work: Path, rev: str) -> bytes:
    return git.read_tree_files(git.open_repo(work), "HEAD")[rev.split(":", 1)[1]]


@pytest.mark.usefixtures("settled")
def test_an_edit_while_the_build_reads_falls_back_to_the_export(
    spec_repo: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = exported_build(spec_repo, crds_dir).files
    real_build = pipeline.build  # what snapshot.build names

    def build_then_edit(root: Path, **kwargs: object) -> Build:
        built = real_build(root, **kwargs)  # type: ignore[arg-type]
        if root == spec_repo:  # the in-place build: the file changes as it is read
            edit(spec_repo / TINYLLAMA, "tinyllama-chat", "tinyllama-racing")
        return built

    monkeypatch.setattr(snapshot, "build", build_then_edit)
    built, in_place = head_build(spec_repo, crds_dir)
    assert not in_place
    assert built.files == expected


def test_a_just_written_input_is_exported(
    spec_repo: Path, crds_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the racy window a second edit could keep every timestamp: not trusted."""
    edit(spec_repo / TINYLLAMA, "tinyllama-chat", "tinyllama-fresh")
    commit_all(spec_repo, "fresh")
    # The build starts the instant the input was written, however long the two git
    # commands above took (on a loaded machine, more than the whole racy window).
    written = (spec_repo / TINYLLAMA).stat().st_ctime_ns
    monkeypatch.setattr(snapshot, "time", SimpleNamespace(time_ns=lambda: written))
    built, in_place = head_build(spec_repo, crds_dir)
    assert not in_place
    assert any("tinyllama-fresh" in path for path in built.files)


def test_status_is_read_only_and_sees_ignored_files(spec_repo: Path) -> None:
    repo = git.open_repo(spec_repo)
    index = (spec_repo / ".git" / "index").read_bytes()
    clean = git.worktree_status(repo, ["specs", "servegen.yaml"])
    assert clean.head == sh(spec_repo, "rev-parse", "HEAD")
    assert clean.entries == ()
    (spec_repo / ".gitignore").write_text("*.tmp\n")
    (spec_repo / "specs" / "scratch.tmp").write_text("x")
    found = git.worktree_status(repo, ["specs"])
    assert found.entries == ("! specs/scratch.tmp",)
    assert (spec_repo / ".git" / "index").read_bytes() == index


def test_an_export_with_relative_crds_hits_the_build_cache(spec_repo: Path, crds_dir: Path) -> None:
    """The CRD files' key names them inside the repository, not in the temporary folder."""
    shutil.copytree(crds_dir, spec_repo / "crds")
    config = spec_repo / "servegen.yaml"
    edit(config, "\nvalidation:\n", "\nvalidation:\n  crds: [crds]\n")
    commit_all(spec_repo, "repository CRDs")
    repo = git.open_repo(spec_repo)
    first = build_at_head(repo, spec_repo)
    entries = set(buildcache.cache_dir().rglob("*.json"))
    edit(spec_repo / TINYLLAMA, "tinyllama-chat", "tinyllama-renamed")
    commit_all(spec_repo, "one spec changed")
    second = build_at_head(repo, spec_repo)
    new = set(buildcache.cache_dir().rglob("*.json")) - entries
    # The changed file, its cluster files and the whole build: nothing else is stored.
    assert len(new) <= 3, sorted(p.name for p in new)
    assert len(first.models) == len(second.models)
