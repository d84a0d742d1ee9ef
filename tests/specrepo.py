"""A spec repository made from examples/ with a bare remote, and publishing from it.

Setup and inspection use the git CLI directly (`sh`), independently of the code under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator import cli
from tests.conftest import EXAMPLES
from tests.gitutil import sh

TINYLLAMA = "specs/kubeai/tinyllama-chat.yaml"
QWEN_CHAT = "specs/vllm/qwen-chat.yaml"
RERANKER = "specs/kubeai/bge-reranker.yaml"


def make_spec_repo(tmp_path: Path) -> Path:
    """A bare "remote" and a clone of it holding examples/, committed and pushed to main."""
    remote = tmp_path / "remote.git"
    sh(tmp_path, "init", "-q", "--bare", str(remote))
    work = tmp_path / "specs-repo"
    sh(tmp_path, "clone", "-q", str(remote), str(work))
    shutil.copytree(EXAMPLES, work, dirs_exist_ok=True)
    commit_all(work, "Initial specs", "The example models.")
    sh(work, "push", "-q", "origin", "main")
    return work


def commit_all(work: Path, subject: str, body: str = "") -> str:
    sh(work, "add", "-A")
    message = f"{subject}\n\n{body}" if body else subject
    sh(work, "commit", "-q", "--allow-empty", "-m", message)
    return sh(work, "rev-parse", "HEAD")


def publish(
    work: Path, crds: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = cli.main(["-C", str(work), "publish", "--crds", str(crds), *args])
    out, err = capsys.readouterr()
    return code, out, err


def tip(work: Path, ref: str = "deploy") -> str | None:
    value = sh(work, "rev-parse", "--verify", "--quiet", ref, check=False)
    return value or None


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def empty_spec_repo(root: Path) -> Path:
    """The examples' servegen.yaml and an empty specs/ folder in `root`."""
    shutil.copy(EXAMPLES / "servegen.yaml", root / "servegen.yaml")
    (root / "specs").mkdir()
    return root
