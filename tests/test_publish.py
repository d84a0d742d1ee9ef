"""`servegen publish` against real git repositories (no mocks).

Every test gets an isolated global git config and identity through the environment, a
bare repository standing in for the remote, and a spec repository made from examples/.
Setup and inspection use the git CLI directly (`sh`), independently of the code under
test.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator import git
from generator import publish as pub
from generator.errors import GitError
from generator.outtree import deployed_objects, models_by_environment
from generator.pipeline import build
from generator.reporter import Notes
from generator.version import servegen_version
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.gitutil import HARNESS_GIT_VARS, sh
from tests.publishutil import without_metadata
from tests.specrepo import (
    QWEN_CHAT,
    RERANKER,
    TINYLLAMA,
    commit_all,
    edit,
    make_spec_repo,
    publish,
    tip,
)

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def spec_repo(tmp_path: Path) -> Path:
    return make_spec_repo(tmp_path)


@pytest.fixture
def remote(spec_repo: Path) -> Path:
    return spec_repo.parent / "remote.git"


def clone(tmp_path: Path, remote: Path, name: str) -> Path:
    target = tmp_path / name
    sh(tmp_path, "clone", "-q", str(remote), str(target))
    return target


def tree_files(work: Path, rev: str = "deploy") -> dict[str, bytes]:
    return git.read_tree_files(git.open_repo(work), rev)


def deploy_metadata(work: Path, rev: str = "deploy") -> dict[str, str]:
    data: dict[str, str] = json.loads(tree_files(work, rev)[pub.METADATA_FILE])
    return data


def user_state(work: Path) -> tuple[str, bytes, str, str]:
    return (
        sh(work, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
        (work / ".git" / "index").read_bytes(),
        sh(work, "rev-parse", "HEAD"),
        sh(work, "symbolic-ref", "HEAD"),
    )


# --------------------------------------------------------------------------- first publish


def test_first_publish_is_an_orphan_with_the_build_and_metadata(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sh(spec_repo, "rev-parse", "HEAD")
    code, out, err = publish(spec_repo, crds_dir, capsys)
    assert code == 0, err
    assert f"published {source[:7]} to deploy" in out
    deploy = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert deploy.parents == ()
    expected = build(EXAMPLES, crds=[crds_dir]).files
    files = tree_files(spec_repo)
    assert without_metadata(files) == expected
    assert set(files) == {*expected, "hydrator.metadata"}
    raw = files["hydrator.metadata"]
    assert raw.endswith(b"}\n")
    meta = json.loads(raw)
    assert list(meta) == sorted(meta)
    assert meta == {
        "drySha": source,
        "repoURL": str(spec_repo.parent / "remote.git"),
        "author": "Ada Author <ada@example.com>",
        "date": meta["date"],
        "subject": "Initial specs",
        "body": "The example models.",
        "servegen": servegen_version(),
    }
    assert meta["date"] == git.commit_info(git.open_repo(spec_repo), source).author.date


def test_commit_message_format_and_trailers(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = sh(spec_repo, "rev-parse", "HEAD")
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    deploy = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert deploy.subject == f"{source[:7]}: Initial specs"
    assert "dev:\n  added: bert-sentiment, bge-embed," in deploy.body
    assert "prod:\n  added: bert-sentiment, bge-embed, bge-reranker, llama-kserve," in deploy.body
    assert dict(deploy.trailers) == {
        "Source-Commit": source,
        "Source-Repository": str(spec_repo.parent / "remote.git"),
        "Co-authored-by": "Ada Author <ada@example.com>",
    }
    assert (deploy.committer.name, deploy.committer.email) == ("Servegen Bot", "bot@example.com")
    assert (deploy.author.name, deploy.author.email) == ("Servegen Bot", "bot@example.com")


def test_object_count_of_a_deploy_tree_matches_the_build(crds_dir: Path) -> None:
    result = build(EXAMPLES, crds=[crds_dir])
    objects = deployed_objects(result.files)
    assert sum(len(v) for v in objects.values()) == result.object_count()
    assert models_by_environment(result.files)["prod"] >= {"llama-kserve", "qwen-chat"}


# --------------------------------------------------------------------------- idempotency


def test_second_publish_and_metadata_only_change_commit_nothing(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    code, out, _ = publish(spec_repo, crds_dir, capsys)
    assert code == 0 and "up to date" in out
    assert tip(spec_repo) == first
    # A new source commit that renders the same output: duplicate detection skips it.
    (spec_repo / "NOTES.md").write_text("unrelated\n")
    commit_all(spec_repo, "Docs only")
    code, out, _ = publish(spec_repo, crds_dir, capsys)
    assert code == 0 and "up to date" in out
    assert tip(spec_repo) == first


def test_changed_spec_makes_a_commit_listing_the_change(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    edit(spec_repo / TINYLLAMA, 'VLLM_CPU_KVCACHE_SPACE: "4"', 'VLLM_CPU_KVCACHE_SPACE: "8"')
    source = commit_all(spec_repo, "More KV cache for tinyllama in dev")
    code, out, err = publish(spec_repo, crds_dir, capsys)
    assert code == 0, err
    assert "dev: +0 ~1 -0" in out
    info = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert info.parents == (first,)
    assert info.subject == f"{source[:7]}: More KV cache for tinyllama in dev"
    # Only dev's overlay changed; a model counts as changed where any of its files did.
    assert info.body.startswith("dev:\n  changed: tinyllama-chat\n\nSource-Commit: ")
    assert deploy_metadata(spec_repo)["drySha"] == source
    expected = build(spec_repo, crds=[crds_dir]).files
    assert without_metadata(tree_files(spec_repo)) == expected


# --------------------------------------------------------------------------- prune guard


def test_removed_spec_is_refused_without_allow_prune(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    sh(spec_repo, "rm", "-q", QWEN_CHAT)
    commit_all(spec_repo, "Retire qwen-chat")
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1
    assert "dev: model(s) removed: qwen-chat" in err
    assert "prod: model(s) removed: qwen-chat" in err
    assert "--allow-prune" in err
    assert tip(spec_repo) == first
    code, _, err = publish(spec_repo, crds_dir, capsys, "--allow-prune")
    assert code == 0, err
    info = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert "dev:\n  removed: qwen-chat\nprod:\n  removed: qwen-chat\n" in info.body
    assert not any(p.startswith("models/qwen-chat/") for p in tree_files(spec_repo))


def test_object_count_shrink_is_refused(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(
        spec_repo / "servegen.yaml",
        "deploy:\n  branch: deploy\n",
        "deploy:\n  branch: deploy\n  max_shrink: 0.01\n",
    )
    commit_all(spec_repo, "Tight shrink guard")
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    before = deployed_objects(tree_files(spec_repo))
    # Dropping bge-embed's prod autoscaling removes its HPA (and PDB) but no model.
    text = (spec_repo / "specs/vllm/bge-embed.yaml").read_text()
    assert "environments:" in text
    (spec_repo / "specs/vllm/bge-embed.yaml").write_text(text.split("environments:")[0])
    commit_all(spec_repo, "Same settings everywhere")
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1
    assert "rendered objects would drop from 31 to" in err
    assert "prod/bge-embed/horizontalpodautoscaler-bge-embed.yaml" in err
    assert "model(s) removed" not in err
    assert tip(spec_repo) == first
    assert publish(spec_repo, crds_dir, capsys, "--allow-prune")[0] == 0
    after = deployed_objects(tree_files(spec_repo))
    assert sum(map(len, after.values())) < sum(map(len, before.values()))


def test_prune_problems_unit() -> None:
    meta = {pub.METADATA_FILE: b"{}"}
    old = {
        **meta,
        "models/a/base/deployment-a.yaml": b"a",
        "models/a/base/kustomization.yaml": b"k",
        "models/a/overlays/dev/kustomization.yaml": b"k",
        "models/a/overlays/prod/kustomization.yaml": b"k",
        "models/a/overlays/prod/service-a.yaml": b"s",
    }
    assert pub.prune_problems(old, old, 0.3) == []
    assert pub.prune_problems({}, old, 0.3) == []
    without_prod = {k: v for k, v in old.items() if "/prod/" not in k}
    problems = pub.prune_problems(old, without_prod, 0.3)
    assert problems[0] == "prod: model(s) removed: a"
    assert "drop from 3 to 1" in problems[1]
    assert "prod/a/service-a.yaml" in problems[1]
    foreign = {"README.md": b"hand-written"}
    assert "not written by servegen" in pub.prune_problems(foreign, old, 0.3)[0]


def test_flux_objects_renamed_or_an_environment_removed_need_allow_prune(
    example_repo: Path, crds_dir: Path
) -> None:
    """kustomize-controller v1.9.4: renamed Flux objects delete every model of the
    environment before the new ones create them again; a removed environment's objects
    stop at "path not found" and remove nothing. Neither used to be said."""
    old = build(example_repo, crds=[crds_dir]).files
    config = example_repo / "servegen.yaml"
    text = config.read_text()
    assert "\nflux:\n" in text and "  name: " not in text.split("\nflux:\n")[1].split("\n\n")[0]
    config.write_text(text.replace("\nflux:\n", "\nflux:\n  name: llm\n", 1))
    renamed = build(example_repo, crds=[crds_dir]).files
    assert pub.flux_problems(old, old) == []
    assert pub.flux_problems(old, renamed) == [
        f"{env}: the Flux objects change name or namespace: the old ones would delete "
        "every model of the environment before the new ones create them again (README, "
        "'Renaming the Flux objects')"
        for env in ("dev", "prod")
    ]
    no_flux = {k: v for k, v in old.items() if not k.startswith("flux/")}
    assert pub.flux_problems(old, no_flux) == []  # `flux:` dropped: Flux is run otherwise
    without_prod = {
        k: v for k, v in old.items() if not k.startswith(("flux/prod/", "clusters/prod/"))
    }
    assert pub.flux_problems(old, without_prod) == [
        "prod: environment removed: its Flux objects would stop at 'path not found' and "
        "remove nothing; tear it down on the cluster (README, 'Removing an environment')"
    ]
    meta = {pub.METADATA_FILE: b"{}"}  # a deploy tree, as publish reads it
    problems = pub.prune_problems({**old, **meta}, {**renamed, **meta}, 0.3)
    assert pub.flux_problems(old, renamed)[0] in problems


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("flux/dev/gitrepository-servegen-dev.yaml", b"\xff\xfe not UTF-8\n"),
        ("flux/dev/gitrepository-servegen-dev.yaml", b"kind: [unclosed\n"),
        ("flux/dev/gitrepository-servegen-dev.yaml", b"kind: GitRepository\nmetadata: 5\n"),
        (pub.METADATA_FILE, b"[" * 100_000),
    ],
)
@pytest.mark.parametrize("spec_changed", [True, False])
def test_a_deploy_tip_edited_by_hand_into_anything_is_replaced(
    spec_repo: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
    path: str,
    content: bytes,
    spec_changed: bool,
) -> None:
    """publish owns the deploy branch: a file there that servegen cannot read (someone
    committed to the branch) tells it nothing, and the next publish writes the tree anew
    (it used to end in an internal error), metadata included, even when the source
    renders the same files (status and promote read the source commit there)."""
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    edit_deploy_branch(spec_repo, path, content)
    if spec_changed:
        edit(spec_repo / TINYLLAMA, 'VLLM_CPU_KVCACHE_SPACE: "4"', 'VLLM_CPU_KVCACHE_SPACE: "8"')
        commit_all(spec_repo, "More KV cache")
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 0, err
    assert without_metadata(tree_files(spec_repo)) == build(spec_repo, crds=[crds_dir]).files
    assert deploy_metadata(spec_repo)["drySha"] == sh(spec_repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("spec_changed", [True, False])
def test_a_deploy_tip_without_its_metadata_is_foreign_until_allow_prune(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], spec_changed: bool
) -> None:
    """Without hydrator.metadata nothing says servegen wrote the branch; once taken over,
    the metadata is back even when the source renders the same files (it used to be
    "up to date" then, and promote kept asking for a publish)."""
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    edit_deploy_branch(spec_repo, pub.METADATA_FILE, None)
    if spec_changed:
        edit(spec_repo / TINYLLAMA, 'VLLM_CPU_KVCACHE_SPACE: "4"', 'VLLM_CPU_KVCACHE_SPACE: "8"')
        commit_all(spec_repo, "More KV cache")
    hand_made = tip(spec_repo)
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1 and "file(s) not written by servegen (no hydrator.metadata)" in err
    assert tip(spec_repo) == hand_made
    code, _, err = publish(spec_repo, crds_dir, capsys, "--allow-prune")
    assert code == 0, err
    assert without_metadata(tree_files(spec_repo)) == build(spec_repo, crds=[crds_dir]).files
    assert deploy_metadata(spec_repo)["drySha"] == sh(spec_repo, "rev-parse", "HEAD")


def edit_deploy_branch(work: Path, path: str, content: bytes | None) -> None:
    """A commit on the deploy branch made by hand: `path` written, or removed (None)."""
    checkout = work.parent / "deploy-checkout"
    sh(work, "worktree", "add", "-q", str(checkout), "deploy")
    if content is None:
        (checkout / path).unlink()
    else:
        (checkout / path).write_bytes(content)
    commit_all(checkout, "Edited by hand")
    sh(work, "worktree", "remove", "--force", str(checkout))


def test_existing_foreign_branch_is_not_taken_over_silently(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(spec_repo, "branch", "deploy", "HEAD")  # a branch of the same name, not ours
    before = tip(spec_repo)
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1 and "shares history with the source" in err
    assert tip(spec_repo) == before
    # Not even --allow-prune: a source branch is never turned into manifests.
    assert publish(spec_repo, crds_dir, capsys, "--allow-prune")[0] == 1
    assert tip(spec_repo) == before


def test_existing_unrelated_branch_needs_allow_prune(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = sh(spec_repo, "hash-object", "-w", "--stdin", input=b"theirs\n")
    tree = sh(spec_repo, "mktree", input=f"100644 blob {blob}\tnotes.txt\n".encode())
    before = sh(spec_repo, "commit-tree", tree, "-m", "someone else's")
    sh(spec_repo, "update-ref", "refs/heads/deploy", before)
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1 and "not written by servegen" in err
    assert tip(spec_repo) == before
    assert publish(spec_repo, crds_dir, capsys, "--allow-prune")[0] == 0
    assert git.commit_info(git.open_repo(spec_repo), "deploy").parents == (before,)


BROKEN_SPEC = """kind: vllm
name: qwen-chat
spec:
  model: Qwen/Qwen2.5-0.5B-Instruct
  enginee: oops
"""


def test_broken_spec_publishes_nothing_even_with_allow_prune(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    # The spec fails to load: were it treated as removed, its model would be pruned.
    (spec_repo / QWEN_CHAT).write_text(BROKEN_SPEC)
    commit_all(spec_repo, "Break qwen-chat")
    for extra in ((), ("--allow-prune",)):
        code, out, err = publish(spec_repo, crds_dir, capsys, *extra)
        assert code == 1
        assert f"{QWEN_CHAT}:" in err and ": error: " in err
        assert "Traceback" not in out + err
        assert tip(spec_repo) == first


# --------------------------------------------------------------------------- history


def test_never_publishes_an_older_source(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = sh(spec_repo, "rev-parse", "HEAD")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    new = commit_all(spec_repo, "Newer")
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    published = tip(spec_repo)
    sh(spec_repo, "checkout", "-q", old)
    code, out, err = publish(spec_repo, crds_dir, capsys)
    assert code == 0, err
    assert f"already holds source {new[:7]}, which contains {old[:7]}" in out
    assert tip(spec_repo) == published
    assert deploy_metadata(spec_repo)["drySha"] == new


def test_worktree_and_index_are_untouched(
    spec_repo: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Inherited variables that would redirect git to the user's index or elsewhere.
    monkeypatch.setenv("GIT_INDEX_FILE", str(spec_repo / ".git" / "index"))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("GIT_WORK_TREE", str(tmp_path))
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 5\n")  # unstaged
    (spec_repo / "staged.txt").write_text("staged\n")
    sh(spec_repo, "add", "staged.txt")
    (spec_repo / "untracked.txt").write_text("untracked\n")
    before = user_state(spec_repo)
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    assert user_state(spec_repo) == before
    # HEAD was published, not the uncommitted edit.
    sh(spec_repo, "stash", "-q", "--include-untracked")
    expected = build(spec_repo, crds=[crds_dir]).files
    assert without_metadata(tree_files(spec_repo)) == expected


def test_worktree_flag_publishes_uncommitted_changes(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = sh(spec_repo, "rev-parse", "HEAD")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 5\n")
    code, _, err = publish(spec_repo, crds_dir, capsys, "--worktree")
    assert code == 0, err
    info = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert f"Rendered from the working tree at {head} (with uncommitted changes)." in info.body
    assert deploy_metadata(spec_repo)["drySha"] == head
    assert without_metadata(tree_files(spec_repo)) == build(spec_repo, crds=[crds_dir]).files


def test_publishes_a_spec_folder_inside_a_larger_repository(
    tmp_path: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "mono"
    sh(tmp_path, "init", "-q", str(work))
    (work / "app").mkdir()
    (work / "app" / "main.py").write_text("print('hi')\n")
    shutil.copytree(EXAMPLES, work / "serving")
    commit_all(work, "Monorepo")
    code, _, err = publish(work / "serving", crds_dir, capsys)
    assert code == 0, err
    files = tree_files(work)
    assert without_metadata(files) == build(EXAMPLES, crds=[crds_dir]).files


def test_hooks_never_run(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    hook_dirs = [spec_repo / ".git" / "hooks", tmp_path / "configured-hooks"]
    hook_dirs[1].mkdir()
    names = [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "reference-transaction",
        "pre-push",
        "post-checkout",
        "post-index-change",
        "pre-auto-gc",
        "post-rewrite",
        "fsmonitor",
    ]
    for folder in hook_dirs:
        for name in names:
            hook = folder / name
            hook.write_text(f"#!/bin/sh\ntouch '{markers}/{folder.name}-{name}'\nexit 1\n")
            hook.chmod(0o755)
    sh(spec_repo, "config", "core.hooksPath", str(hook_dirs[1]))
    code, _, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0, err
    assert list(markers.iterdir()) == []
    assert tip(spec_repo.parent / "remote.git", "deploy") == tip(spec_repo)


def test_committer_from_config_and_clear_error_without_identity(
    spec_repo: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GIT_COMMITTER_NAME")
    monkeypatch.delenv("GIT_COMMITTER_EMAIL")
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1 and "no committer identity" in err
    assert "SERVEGEN_COMMITTER_NAME/SERVEGEN_COMMITTER_EMAIL" in err  # in the order tried
    assert tip(spec_repo) is None
    edit(
        spec_repo / "servegen.yaml",
        "deploy:\n  branch: deploy\n",
        "deploy:\n  branch: deploy\n  committer: {name: Deploy Bot, email: deploy@example.com}\n",
    )
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Setup")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "setup@example.com")
    commit_all(spec_repo, "Configure the committer")
    monkeypatch.delenv("GIT_COMMITTER_NAME")
    monkeypatch.delenv("GIT_COMMITTER_EMAIL")
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    info = git.commit_info(git.open_repo(spec_repo), "deploy")
    assert (info.committer.name, info.committer.email) == ("Deploy Bot", "deploy@example.com")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_sign_uses_the_configured_signing_key(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = tmp_path / "signing-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sh(spec_repo, "config", "--global", "gpg.format", "ssh")  # the user's own config
    sh(spec_repo, "config", "--global", "user.signingkey", str(key))
    assert publish(spec_repo, crds_dir, capsys, "--sign")[0] == 0
    assert "gpgsig -----BEGIN SSH SIGNATURE-----" in sh(spec_repo, "cat-file", "commit", "deploy")


def test_public_url_drops_credentials() -> None:
    assert git.public_url("https://user:tok@github.com/o/r.git") == "https://github.com/o/r.git"
    assert git.public_url("https://x-access-token@host/r") == "https://host/r"
    assert git.public_url("git@github.com:o/r.git") == "git@github.com:o/r.git"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:p@ss@host/o/r",
        "https://user:p/ss@host/o/r",
        "https://host/o/r?private_token=s3cret",
        "https://host/o/r#s3cret",
        "https://u:pa%40ss@host/o/r?x=1&token=s3cret",
        "ssh://user:s3cret@host/o/r",
    ],
)
def test_public_url_keeps_no_part_of_any_credential(url: str) -> None:
    public = git.public_url(url)
    assert public in ("https://host/o/r", "ssh://host/o/r")
    assert not any(part in public for part in ("p@ss", "ss@", "s3cret", "user", "token"))


# --------------------------------------------------------------------------- pushing


def test_push_creates_and_advances_the_remote_branch(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0 and "and pushed" in out, err
    assert tip(remote) == tip(spec_repo)
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(spec_repo, "Scale")
    sh(spec_repo, "push", "-q", "origin", "main")  # only merged commits are pushed
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    assert tip(remote) == tip(spec_repo)
    assert sh(remote, "rev-list", "--count", "deploy") == "2"


def test_push_of_a_source_the_default_branch_has_moved_past(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default branch's tip is not the source: the branch is fetched and must hold it."""
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    source = commit_all(spec_repo, "Scale")
    sh(spec_repo, "push", "-q", "origin", "main")
    other = clone(tmp_path, remote, "other")
    edit(other / RERANKER, "max_replicas: 2}", "max_replicas: 3}")
    later = commit_all(other, "Scale the reranker")
    sh(other, "push", "-q", "origin", "main")
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0 and "and pushed" in out, err
    assert deploy_metadata(remote, "deploy")["drySha"] == source
    tracking = git.tracking_ref("origin", "main")
    assert sh(spec_repo, "rev-parse", tracking) == later


def test_push_to_a_remote_named_by_a_relative_path(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`../remote.git` means what it means to the user's git: relative to the worktree."""
    sh(spec_repo, "remote", "set-url", "origin", "../remote.git")
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0 and "and pushed" in out, err
    assert tip(remote) == tip(spec_repo)


def test_push_to_a_remote_without_a_default_branch_says_how_to_set_one(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sh(remote, "symbolic-ref", "HEAD", "refs/heads/nothing-here")
    code, _, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 1
    assert "origin names no default branch" in err
    assert "git symbolic-ref HEAD refs/heads/main" in err
    assert tip(remote) is None


def test_push_starts_from_the_remote_branch_when_local_is_behind(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    other = clone(tmp_path, remote, "other")
    edit(other / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(other, "Scale from another clone")
    sh(other, "push", "-q", "origin", "main")
    assert publish(other, crds_dir, capsys, "--push")[0] == 0  # no local deploy branch there
    assert git.commit_info(git.open_repo(remote), "deploy").parents == (tip(spec_repo),)
    sh(spec_repo, "pull", "-q", "--ff-only", "origin", "main")
    code, out, _ = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0 and "up to date" in out
    assert tip(spec_repo) == tip(remote)  # the local branch caught up


def test_rejected_push_is_rebuilt_on_the_new_remote_tip(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    older = sh(spec_repo, "rev-parse", "HEAD")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    newer = commit_all(spec_repo, "Scale")
    sh(spec_repo, "push", "-q", "origin", "main")
    settings = pub.PublishSettings(push=True, crds=(crds_dir,))
    target, source, files = pub.prepare(spec_repo, settings, Notes())
    stale = pub.current_tips(target)
    # Meanwhile another clone publishes a source on a side branch (not an ancestor).
    other = clone(tmp_path, remote, "other")
    sh(other, "checkout", "-q", "-b", "side", older)
    edit(other / RERANKER, "max_replicas: 2}", "max_replicas: 3}")
    side = commit_all(other, "Side scale")
    sh(other, "push", "-q", "origin", "side")
    # (Straight through the publish loop: `publish --push` only takes merged commits.)
    side_target, side_source, side_files = pub.prepare(other, settings, Notes())
    side_tips = pub.current_tips(side_target)
    assert pub.attempt_publish(side_target, side_source, side_files, side_tips) is not None
    moved = tip(remote)
    assert moved is not None
    assert pub.attempt_publish(target, source, files, stale) is None  # rejected: remote moved
    assert tip(remote) == moved
    outcome = pub.publish_files(target, source, files)
    assert outcome.status == "published" and outcome.pushed
    info = git.commit_info(git.open_repo(remote), "deploy")
    assert info.parents == (moved,)
    assert dict(info.trailers)["Source-Commit"] == newer
    # The body is recomputed against the new parent: `side` changed bge-reranker.
    assert info.body.startswith(
        "dev:\n  changed: bge-reranker, tinyllama-chat\n"
        "prod:\n  changed: bge-reranker, tinyllama-chat\n"
    )
    assert deploy_metadata(remote, moved)["drySha"] == side


def test_push_race_inside_the_remote_is_retried(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The remote's pre-receive hook lets another clone publish first, once."""
    other = clone(tmp_path, remote, "other")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    newer = commit_all(spec_repo, "Scale")
    sh(spec_repo, "push", "-q", "origin", "main")
    marker = tmp_path / "raced"
    env = " ".join(
        f"{k}='{v}'"
        for k, v in os.environ.items()
        if k in HARNESS_GIT_VARS or k in ("HOME", "PATH")
    )
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        f"[ -e '{marker}' ] && exit 0\n"
        f"touch '{marker}'\n"
        f"cd '{REPO_ROOT}' && env -i {env} '{sys.executable}' -m generator -C '{other}' "
        f"publish --push --crds '{crds_dir}' >'{tmp_path}/other.log' 2>&1\n"
        "exit 0\n"
    )
    hook.chmod(0o755)
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0, err
    assert "and pushed (attempt 2)" in out
    assert marker.exists()
    assert "published" in (tmp_path / "other.log").read_text()
    first = git.commit_info(git.open_repo(remote), "deploy")
    assert dict(first.trailers)["Source-Commit"] == newer
    assert len(first.parents) == 1  # built on the other clone's publish
    assert tip(other) == first.parents[0]
    assert tip(spec_repo) == tip(remote)


def test_never_backwards_across_clones_fetches_the_recorded_source(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stale = clone(tmp_path, remote, "stale")  # cloned before the newer commit exists
    old = sh(stale, "rev-parse", "HEAD")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    newer = commit_all(spec_repo, "Newer")
    sh(spec_repo, "push", "-q", "origin", "main")
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    published = tip(remote)
    assert sh(stale, "cat-file", "-t", newer, check=False) == ""
    code, out, err = publish(stale, crds_dir, capsys, "--push")
    assert code == 0, err
    assert f"already holds source {newer[:7]}, which contains {old[:7]}" in out
    assert tip(remote) == published


def _run_cli(work: Path, crds: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "generator", "-C", str(work), "publish", "--crds", str(crds), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_concurrent_publishers_from_different_clones(
    spec_repo: Path, remote: Path, tmp_path: Path, crds_dir: Path
) -> None:
    sources = []
    for replicas in (3, 4, 5, 6):
        text = (spec_repo / TINYLLAMA).read_text()
        current = text.split("max_replicas: ")[1].split("\n")[0]
        edit(spec_repo / TINYLLAMA, f"max_replicas: {current}\n", f"max_replicas: {replicas}\n")
        sources.append(commit_all(spec_repo, f"Scale to {replicas}"))
    sh(spec_repo, "push", "-q", "origin", "main")
    clones = []
    for index, sha in enumerate(sources):
        work = clone(tmp_path, remote, f"publisher-{index}")
        sh(work, "checkout", "-q", sha)
        clones.append(work)
    procs = [_run_cli(work, crds_dir, "--push") for work in clones]
    results = []
    for proc in procs:
        code = proc.wait(timeout=240)
        out, err = (stream.decode() for stream in proc.communicate())
        results.append((code, out, err))
    for code, out, err in results:
        assert code == 0, out + err
        assert "published" in out or "already holds" in out, out + err
        assert "Traceback" not in err
    assert deploy_metadata(remote)["drySha"] == sources[-1]
    # Never backwards along the deploy history: each recorded source contains the previous.
    chain = sh(remote, "rev-list", "--first-parent", "--reverse", "deploy").split()
    recorded = [deploy_metadata(remote, c)["drySha"] for c in chain]
    for before, after in itertools.pairwise(recorded):
        sh(spec_repo, "merge-base", "--is-ancestor", before, after)
    assert without_metadata(tree_files(remote)) == build(spec_repo, crds=[crds_dir]).files


def test_killed_publish_leaves_the_branch_old_or_new(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    old = tip(spec_repo)
    assert old is not None
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(spec_repo, "Scale")
    # One undisturbed run gives the expected tree and how long a whole publish takes.
    started = time.monotonic()
    proc = _run_cli(spec_repo, crds_dir)
    assert proc.wait(timeout=120) == 0, proc.communicate()
    proc.communicate()
    duration = time.monotonic() - started
    expected_tree = git.commit_info(git.open_repo(spec_repo), "deploy").tree
    rng = random.Random(1234)
    deadline = time.monotonic() + 120
    killed = 0
    for iteration in range(16):
        if time.monotonic() > deadline:
            break
        sh(spec_repo, "update-ref", "refs/heads/deploy", old)
        # Half anywhere in the run, half late, where the git writes happen.
        low = 0.0 if iteration % 2 else 0.6 * duration
        proc = _run_cli(spec_repo, crds_dir)
        try:
            proc.wait(timeout=rng.uniform(low, 1.05 * duration))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the publisher and its git children
            killed += 1
        proc.communicate()
        # git killed while moving the ref leaves its lock behind, as after any crash; git
        # (and so publish, which says so) refuses the ref until it is removed.
        (spec_repo / ".git" / "refs" / "heads" / "deploy.lock").unlink(missing_ok=True)
        now = tip(spec_repo)
        if now != old:
            info = git.commit_info(git.open_repo(spec_repo), "deploy")
            assert info.parents == (old,)
            assert info.tree == expected_tree
        fsck = subprocess.run(
            ["git", "fsck", "--no-dangling", "--no-progress"],
            cwd=spec_repo,
            capture_output=True,
            text=True,
            check=False,
        )
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert killed >= 3
    sh(spec_repo, "update-ref", "refs/heads/deploy", old)
    code, out, err = publish(spec_repo, crds_dir, capsys)
    assert code == 0 and "published" in out, err
    assert git.commit_info(git.open_repo(spec_repo), "deploy").tree == expected_tree


def test_the_core_reports_notes_to_its_reporter_and_prints_nothing(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = pub.PublishSettings(allow_replace=True, crds=(crds_dir,))
    assert pub.publish(spec_repo, settings, Notes()).status == "published"
    edit(spec_repo / TINYLLAMA, "replication: 256", "replication: 512")
    commit_all(spec_repo, "More prefix-hash replication")
    notes = Notes()
    assert pub.publish(spec_repo, settings, notes).status == "published"
    (note,) = notes.notes
    assert note.startswith("publishing changes that need a replacement:\n  - dev: Model ")
    assert "\n  - prod: Model " in note
    assert capsys.readouterr() == ("", "")


def test_deploy_branch_checked_out_elsewhere(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    first = tip(spec_repo)
    sh(spec_repo, "worktree", "add", "-q", str(tmp_path / "deploy-wt"), "deploy")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(spec_repo, "Scale")
    code, _, err = publish(spec_repo, crds_dir, capsys)
    assert code == 1 and "checked out" in err
    assert tip(spec_repo) == first
    # With --push the remote is the target; the checked-out local branch is left alone.
    sh(spec_repo, "push", "-q", "origin", "main")
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0 and "and pushed" in out, err
    assert "local deploy not updated" in err
    assert tip(spec_repo) == first and tip(remote) != first


# --------------------------------------------------------------------------- hostile setups


@pytest.mark.parametrize("where", ["unpushed", "feature"])
def test_push_only_publishes_commits_on_the_default_branch(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """An unpushed or feature-branch commit on the deploy branch blocked later merges."""
    if where == "feature":
        sh(spec_repo, "checkout", "-q", "-b", "feature")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    sha = commit_all(spec_repo, "Scale")
    if where == "feature":
        sh(spec_repo, "push", "-q", "origin", "feature")
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 1, out + err
    assert f"source commit {sha[:7]} is not on origin's default branch main" in err
    assert "merge it into main" in err
    assert tip(remote) is None and tip(spec_repo) is None
    assert publish(spec_repo, crds_dir, capsys)[0] == 0  # without --push: a local commit


def test_push_never_carries_a_local_publish_of_an_unmerged_source(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local preview of a feature branch that removes models was pushed by the next
    `publish --push` of main, past the merged check and the prune guard."""
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    pushed = tip(remote)
    sh(spec_repo, "checkout", "-q", "-b", "cleanup")
    sh(spec_repo, "rm", "-rq", "specs/kubeai")
    commit_all(spec_repo, "wip: drop the KubeAI models")
    assert publish(spec_repo, crds_dir, capsys, "--allow-prune")[0] == 0  # a local preview
    preview = tip(spec_repo)
    sh(spec_repo, "checkout", "-q", "main")
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0, out + err
    assert tip(remote) == pushed  # main's render was there already: nothing pushed
    assert preview not in sh(remote, "rev-list", "--all").split()
    assert tip(spec_repo) == pushed  # the local branch follows the remote again
    assert "holds deploy commits origin does not" in err


@pytest.mark.parametrize("branch", ["main", "feature"])
def test_deploy_branch_that_is_a_source_branch_is_refused(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str], branch: str
) -> None:
    """`deploy.branch: main` plus --push fast-forwarded main to the manifests."""
    if branch == "feature":  # not checked out, but it shares history with the source
        sh(spec_repo, "push", "-q", "origin", "main:feature")
    before = sh(remote, "rev-parse", "refs/heads/main")
    args = ("--push", "--allow-prune", "--branch", branch)  # CI passes --allow-prune on main
    code, out, err = publish(spec_repo, crds_dir, capsys, *args)
    assert code == 1, out + err
    assert f"refusing to publish to {branch}" in err and "Traceback" not in err
    assert sh(remote, "rev-parse", "refs/heads/main") == before
    assert (spec_repo / "servegen.yaml").is_file()


def test_shallow_clone_cannot_publish_backwards(
    spec_repo: Path, remote: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shallow clone lacking the history between two sources must not guess."""
    old = sh(spec_repo, "rev-parse", "HEAD")
    sh(spec_repo, "tag", "old")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(spec_repo, "Scale tinyllama")
    edit(spec_repo / TINYLLAMA, "max_replicas: 3\n", "max_replicas: 4\n")
    new = commit_all(spec_repo, "Scale tinyllama more")
    sh(spec_repo, "push", "-q", "origin", "main", "old")
    code, _, err = publish(spec_repo, crds_dir, capsys, "--push")
    assert code == 0, err
    published = sh(remote, "rev-parse", "refs/heads/deploy")
    # CI re-running the older commit, with a depth-1 checkout of each ref it fetched.
    shallow = spec_repo.parent / "shallow"
    url = f"file://{remote}"
    sh(spec_repo.parent, "clone", "-q", "--depth", "1", "--branch", "old", url, str(shallow))
    sh(shallow, "fetch", "-q", "--depth", "1", "origin", new)
    assert sh(shallow, "rev-parse", "HEAD") == old
    code, out, err = publish(shallow, crds_dir, capsys, "--push")
    assert code == 1, out + err
    assert "shallow clone" in err and "git fetch --unshallow" in err
    assert sh(remote, "rev-parse", "refs/heads/deploy") == published
    # With the history, the same run sees that a newer source was published: no change.
    sh(shallow, "fetch", "-q", "--unshallow", "origin")
    code, out, err = publish(shallow, crds_dir, capsys, "--push")
    assert code == 0 and "nothing to publish" in out, out + err
    assert sh(remote, "rev-parse", "refs/heads/deploy") == published


def test_a_lock_left_by_a_killed_git_stops_publish_with_a_clear_reason(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert publish(spec_repo, crds_dir, capsys)[0] == 0
    old = tip(spec_repo)
    (spec_repo / ".git" / "refs" / "heads" / "deploy.lock").write_text("")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    commit_all(spec_repo, "Scale")
    settings = pub.PublishSettings(crds=(crds_dir,), max_attempts=2)
    with pytest.raises(GitError, match=r"after 2 attempt\(s\).*stale \.lock file"):
        pub.publish(spec_repo, settings, Notes())
    assert tip(spec_repo) == old


def test_an_unreachable_remote_url_is_named_without_its_credentials(
    spec_repo: Path, crds_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://user:s3cret-value@127.0.0.1:1/r.git"
    code, out, err = publish(spec_repo, crds_dir, capsys, "--push", "--remote", url)
    assert code == 1, out + err
    assert "cannot reach 'https://127.0.0.1:1/r.git'" in err
    assert "s3cret" not in out + err


def test_a_source_rewritten_away_by_a_force_push_no_longer_blocks_publishing(
    spec_repo: Path,
    remote: Path,
    tmp_path: Path,
    crds_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The deploy branch recorded a merge that a force-push then removed from main: every
    later publish failed for good, asking for a full history the clone already had."""
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 9\n")
    gone = commit_all(spec_repo, "a bad merge")
    sh(spec_repo, "push", "-q", "origin", "main")
    assert publish(spec_repo, crds_dir, capsys, "--push")[0] == 0
    sh(spec_repo, "reset", "-q", "--hard", "HEAD~1")
    edit(spec_repo / TINYLLAMA, "max_replicas: 2\n", "max_replicas: 3\n")
    fixed = commit_all(spec_repo, "the fix instead")
    sh(spec_repo, "push", "-q", "-f", "origin", "main")
    sh(remote, "reflog", "expire", "--expire=now", "--all")
    sh(remote, "gc", "-q", "--prune=now")
    fresh = clone(tmp_path, remote, "fresh")  # a complete clone without the old merge
    code, out, err = publish(fresh, crds_dir, capsys, "--push")
    assert code == 0, out + err
    assert f"source commit {gone[:7]}, which neither this repository nor origin has" in err
    assert sh(remote, "log", "-1", "--format=%s", "deploy").startswith(f"{fixed[:7]}: ")
