"""The spec repository as it is in a commit: exported to a temporary folder, then built.

`publish` builds HEAD, `diff` builds its base (and HEAD with --committed), `promote`
validates the source commit the deploy branch records, `status` renders it. All of them
read the commit through here: its tree is exported with git (no checkout, no hooks, the
user's worktree and index untouched) into a folder that is gone afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from generator import git
from generator.config import CONFIG_FILE
from generator.errors import GitError, ServegenError
from generator.pipeline import Build, build


def repository_prefix(repo: git.Repo, root: Path) -> str:
    """`root` relative to the repository's worktree, '' at the top."""
    if repo.worktree is None:
        raise GitError(f"{root} is inside a bare repository; publish needs a worktree")
    try:
        relative = root.resolve().relative_to(repo.worktree.resolve()).as_posix()
    except ValueError as exc:
        raise GitError(f"{root} is not inside the worktree {repo.worktree}") from exc
    return "" if relative == "." else relative


@contextmanager
def exported(repo: git.Repo, root: Path, commit: str) -> Iterator[Path]:
    """A temporary folder holding `root` as it is in `commit` (symlinks and submodules
    left out); removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="servegen-source-") as tmp:
        dest = Path(tmp) / "src"
        git.export_tree(repo, commit, dest, repository_prefix(repo, root), skip_special=True)
        yield dest


def build_at(
    repo: git.Repo,
    root: Path,
    commit: str,
    *,
    crds: Sequence[Path] = (),
    keep_objects: bool = False,
    require_config: bool = False,
) -> Build:
    """Build `root` as it is in `commit`.

    `require_config`: refuse a commit without servegen.yaml (one that predates servegen
    would otherwise build as an empty repository with the default config).
    """
    with exported(repo, root, commit) as dest:
        if require_config and not (dest / CONFIG_FILE).is_file():
            raise ServegenError(f"it has no {CONFIG_FILE} (predates servegen?)")
        return build(dest, crds=crds, keep_objects=keep_objects)
