"""Helpers for the deploy-commit tests: a source repository, a publish target, model
files, and the check that a deploy tip holds what a full rebuild would."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from generator import git
from generator import publish as pub
from generator.reporter import Notes
from tests.gitutil import sh

COMMITTER = git.Identity("Servegen Bot", "bot@example.com")


def without_metadata(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """A deploy tree's files but its metadata file (what a build renders)."""
    return {path: data for path, data in files.items() if path != pub.METADATA_FILE}


def make_work(tmp_path: Path) -> Path:
    """A repository with one committed spec file."""
    path = tmp_path / "work"
    (path / "specs").mkdir(parents=True)
    (path / "specs" / "a.yaml").write_text("a: 1\n")
    sh(tmp_path, "init", "-q", str(path))
    sh(path, "add", "-A")
    sh(path, "commit", "-q", "-m", "specs")
    return path


def make_target(work: Path) -> pub.Target:
    """Publishing to branch `deploy` of `work`, no remote."""
    return pub.Target(
        repo=git.open_repo(work),
        branch="deploy",
        remote=None,
        source_remote="origin",
        committer=COMMITTER,
        sign=False,
        allow_prune=True,
        max_shrink=0.3,
        max_attempts=3,
        reporter=Notes(),
    )


def make_source(target: pub.Target) -> pub.Source:
    return pub.Source(git.head_commit(target.repo), dirty=True, repo_url="https://example/r")


def model(name: str, replicas: int, envs: tuple[str, ...] = ("dev", "prod")) -> dict[str, bytes]:
    base = f"models/{name}/base"
    files = {
        f"{base}/kustomization.yaml": b"resources:\n- model.yaml\n",
        f"{base}/model.yaml": f"kind: Model\nname: {name}\nreplicas: {replicas}\n".encode(),
    }
    for env in envs:
        files[f"models/{name}/overlays/{env}/kustomization.yaml"] = (
            f"namespace: {env}\nresources:\n- ../../base\n".encode()
        )
    return files


def full_rebuild(target: pub.Target, files: dict[str, bytes]) -> str:
    """The tree id of `files` written from nothing (no base, no memory)."""
    return git.write_tree(target.repo, files)


def deploy_tip(work: Path) -> str:
    return sh(work, "rev-parse", "refs/heads/deploy")


def check_tree(work: Path, target: pub.Target, files: dict[str, bytes]) -> None:
    """The deploy tip holds exactly `files` plus metadata, as a full rebuild would."""
    tip = deploy_tip(work)
    deployed = git.read_tree_files(target.repo, tip)
    assert without_metadata(deployed) == files
    assert git.tree_of(target.repo, tip) == full_rebuild(target, deployed)
