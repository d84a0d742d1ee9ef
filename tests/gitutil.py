"""Git helpers shared by the tests: an isolated git environment and the real git CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# The variables the test harness itself sets; everything else GIT_* is scrubbed.
HARNESS_GIT_VARS = {
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_NOSYSTEM",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
}


def isolate_git(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    author: tuple[str, str] = ("Ada Author", "ada@example.com"),
    committer: tuple[str, str] = ("Servegen Bot", "bot@example.com"),
) -> None:
    """A private global git config and identity; no inherited GIT_* or SERVEGEN_*."""
    home = tmp_path / "home"
    home.mkdir()
    gitconfig = home / ".gitconfig"
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    for name in list(os.environ):
        if name.startswith(("GIT_", "SERVEGEN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", author[0])
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", author[1])
    monkeypatch.setenv("GIT_COMMITTER_NAME", committer[0])
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", committer[1])


def sh(cwd: Path, *args: str, input: bytes | None = None, check: bool = True) -> str:
    """Run the real git CLI for test setup and inspection (hooks disabled)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({k: v for k, v in os.environ.items() if k in HARNESS_GIT_VARS})
    proc = subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr.decode()}")
    return proc.stdout.decode("utf-8", "surrogateescape").strip()


def commit_tree_edits(
    cwd: Path, base: str, edits: dict[str, tuple[str, bytes] | None], message: str
) -> str:
    """A commit on top of `base` with `edits` applied (path -> (mode, content), or None
    to remove it), made with plumbing and a private index: nothing checked out, as
    someone pushing to a branch by hand could make it. Returns the commit's id."""
    index = cwd / ".git" / "servegen-test-index"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({k: v for k, v in os.environ.items() if k in HARNESS_GIT_VARS})
    env["GIT_INDEX_FILE"] = str(index)

    def git(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(
            ["git", "-c", "core.hooksPath=/dev/null", *args],
            cwd=cwd, input=data, capture_output=True, env=env, check=True,
        )  # fmt: skip
        return done.stdout.decode().strip()

    try:
        git("read-tree", base)
        for path, edit in edits.items():
            if edit is None:
                git("update-index", "--force-remove", "--", path)
                continue
            mode, content = edit
            blob = git("hash-object", "-w", "--stdin", data=content)
            git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}")
        tree = git("write-tree")
        return git("commit-tree", tree, "-p", base, "-m", message)
    finally:
        index.unlink(missing_ok=True)
