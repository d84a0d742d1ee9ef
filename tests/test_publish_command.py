"""`servegen publish` (the command): what it tells people about uncommitted spec edits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator import cli, git
from tests.conftest import EXAMPLES
from tests.gitutil import sh


@pytest.fixture
def repo(tmp_path: Path, isolated_git: None) -> Path:
    work = tmp_path / "specs-repo"
    shutil.copytree(EXAMPLES, work)
    sh(work, "init", "-q", "-b", "main")
    sh(work, "add", "-A")
    sh(work, "commit", "-qm", "Serve specs")
    return work


def publish(work: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = cli.main(["-C", str(work), "publish", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_uncommitted_spec_edit_is_named_and_worktree_suggested(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(repo, capsys)[0] == 0
    spec = repo / "specs" / "vllm" / "qwen-chat.yaml"
    edited = spec.read_text().replace('"8192"', '"4096"')
    assert edited != spec.read_text()
    spec.write_text(edited)
    (repo / "specs" / "new.yaml").write_text("# not yet committed\n")
    code, out, err = publish(repo, capsys)
    assert code == 0
    assert "is up to date" in out
    assert "HEAD only; uncommitted spec changes are not included" in out
    assert "2 uncommitted change(s) not published" in err
    assert "specs/new.yaml" in err and "specs/vllm/qwen-chat.yaml" in err
    assert "servegen publish --worktree" in err
    (repo / "specs" / "new.yaml").unlink()
    code, out, err = publish(repo, capsys, "--worktree")
    assert code == 0 and out.startswith("servegen: published") and "~1" in out
    assert "uncommitted" not in err  # --worktree publishes them: nothing left out


def test_no_note_when_the_specs_are_committed(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "notes.txt").write_text("not a spec\n")  # outside specs/: not an input
    code, out, err = publish(repo, capsys)
    assert code == 0 and out.startswith("servegen: published")
    code, out, err = publish(repo, capsys)
    assert code == 0 and "is up to date" in out and "HEAD only" not in out
    assert "uncommitted" not in err


def test_uncommitted_paths_sees_staged_unstaged_untracked_and_renamed(repo: Path) -> None:
    opened = git.open_repo(repo)
    assert git.uncommitted_paths(opened, ["specs", "servegen.yaml"]) == []
    (repo / "servegen.yaml").write_text((repo / "servegen.yaml").read_text() + "\n")
    sh(repo, "mv", "specs/vllm/whisper.yaml", "specs/vllm/whisper-small.yaml")
    (repo / "specs" / "new.yaml").write_text("x: 1\n")
    (repo / "elsewhere.yaml").write_text("x: 1\n")
    assert git.uncommitted_paths(opened, ["specs", "servegen.yaml"]) == [
        "servegen.yaml",
        "specs/new.yaml",
        "specs/vllm/whisper-small.yaml",
    ]


def test_specs_in_a_submodule_are_refused_by_validate_and_publish_alike(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A submodule's files are in none of this repository's commits: validate read them
    from the working tree while publish, building the commit, left them out."""
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(repo / "specs" / "vllm" / "qwen-cpu.yaml", sub / "m.yaml")
    (sub / "m.yaml").write_text((sub / "m.yaml").read_text().replace("qwen-cpu", "from-sub"))
    sh(tmp_path, "init", "-q", str(sub))
    sh(sub, "add", "-A")
    sh(sub, "commit", "-qm", "sub")
    sh(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "specs/sub")
    sh(repo, "commit", "-qm", "a submodule among the specs")
    message = "specs/sub:1:1: error: a git submodule or another repository"
    for command in (["validate"], ["publish"], ["diff", "--committed", "--base", "HEAD~1"]):
        code = cli.main(["-C", str(repo), *command])
        captured = capsys.readouterr()
        assert code == 1, (command, captured.out, captured.err)
        assert message in captured.out + captured.err, (command, captured.out, captured.err)
